"""Printing the index notation for people: one-line Unicode for terminals and LaTeX for reports.

Both are SymPy printer subclasses (``_print_X`` methods); nothing else formats mathematics.
Names follow the posts: μ, σ², ε, γ, β, x̂; adjoints print as ∂L/∂σ², ∂L/∂x̂ₖ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp
from sympy.printing.latex import LatexPrinter
from sympy.printing.str import StrPrinter

from bnderive.core.derive import derive
from bnderive.core.evaluate import evaluate
from bnderive.core.graph import Graph
from bnderive.core.notation import i as INDEX_I
from bnderive.core.points import symbolic_env
from bnderive.core.spec import Spec

_SCALARS_UNICODE = {"mu": "μ", "var": "σ²", "eps": "ε", "gamma": "γ", "beta": "β", "epsilon": "ε"}
#: Arrays named like a scalar where a family indexes them per element (γᵢ, βᵢ of LayerNorm).
_ARRAYS_UNICODE = {"xhat": "x̂", "gamma": "γ", "beta": "β"}
_ARRAYS_LATEX = {"xhat": r"\hat{x}", "gamma": r"\gamma", "beta": r"\beta"}
_SCALARS_LATEX = {
    "mu": r"\mu",
    "var": r"\sigma^{2}",
    "eps": r"\epsilon",
    "epsilon": r"\epsilon",
    "gamma": r"\gamma",
    "beta": r"\beta",
    "ms": r"\mathrm{ms}",
}
_ADJOINT_OF = {
    "dy": "y",
    "dxhat": "x̂",
    "dvar": "σ²",
    "dmu": "μ",
    "dx": "x",
    "dgamma": "γ",
    "dbeta": "β",
    "dms": "ms",
}
_ADJOINT_OF_LATEX = {
    "dy": "y",
    "dxhat": r"\hat{x}",
    "dvar": r"\sigma^{2}",
    "dmu": r"\mu",
    "dx": "x",
    "dgamma": r"\gamma",
    "dbeta": r"\beta",
    "dms": r"\mathrm{ms}",
}
#: Adjoints of the composite Linear → BatchNorm → ReLU (core.composite), always indexed.
_COMPOSITE_OF = {"dW": "W", "dX": "X", "dh": "h", "db": "b"}
_SUB = str.maketrans(
    dict(zip("0123456789+-=()aeijklmnoprstuvx", "₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎ₐₑᵢⱼₖₗₘₙₒₚᵣₛₜᵤᵥₓ", strict=True))
)
_SUP = str.maketrans(dict(zip("0123456789+-=()/n", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ᐟⁿ", strict=True)))


def subscript(text: str) -> str:
    return text.translate(_SUB)


class UnicodePrinter(StrPrinter):
    """One line of Unicode: Σₖ(…), √(…), ∂L/∂σ², x̂ₖ, γ₀."""

    printmethod = "_bnderive_unicode"  # not Indexed._sympystr: our methods decide

    def _print_Symbol(self, expr: sp.Symbol) -> str:
        name = expr.name
        if name in _SCALARS_UNICODE:
            return _SCALARS_UNICODE[name]
        if name in _ADJOINT_OF:
            return f"∂L/∂{_ADJOINT_OF[name]}"
        base, _, sub = name.partition("_")
        if base in ("sigma2", "dsigma2"):
            prefix = "∂L/∂" if base.startswith("d") else ""
            return f"{prefix}σ²{subscript(sub)}"
        if base in ("dmu",):
            return f"∂L/∂μ{subscript(sub)}"
        if base == "dms":
            return f"∂L/∂ms{subscript(sub)}"
        greek = {"mu": "μ", "gamma": "γ", "beta": "β", "xhat": "x̂", "r": "r"}.get(base, base)
        return greek + subscript(sub)

    def _print_Indexed(self, expr: sp.Indexed) -> str:
        name = str(expr.base.label)
        index = subscript("".join(self._print(i) for i in expr.indices))
        if name in _ADJOINT_OF:
            return f"∂L/∂{_ADJOINT_OF[name]}{index}"
        if name in _COMPOSITE_OF:
            return f"∂L/∂{_COMPOSITE_OF[name]}{index}"
        return _ARRAYS_UNICODE.get(name, name) + index

    def _print_Sum(self, expr: sp.Sum) -> str:
        indices = "".join(self._print(limit[0]) for limit in expr.limits)
        return f"Σ{subscript(indices)}({self._print(expr.function)})"

    def _print_KroneckerDelta(self, expr: sp.KroneckerDelta) -> str:
        return "δ" + subscript("".join(self._print(a) for a in expr.args))

    def _print_Pow(self, expr: sp.Pow, rational: bool = False) -> str:
        base, exp = expr.args
        if exp == sp.Rational(1, 2):
            return f"√({self._print(base)})"
        if exp == sp.Rational(-1, 2):
            return f"1/√({self._print(base)})"
        inner = self.parenthesize(base, 1000)
        if isinstance(exp, sp.Rational) and exp.q in (1, 2):
            return inner + self._print(exp).translate(_SUP)
        if isinstance(exp, sp.Rational):  # (σ²+ε)^(1/4): no superscript slash for a quarter
            return f"{inner}^({exp.p}/{exp.q})"
        return super()._print_Pow(expr, rational).replace("**", "^")

    def _print_Mul(self, expr: sp.Mul) -> str:
        return super()._print_Mul(expr).replace("*", "·")

    def _as_ordered_terms(self, expr: sp.Expr, order: str | None = None) -> list[sp.Expr]:
        """Positive terms first, as people write them: xᵢ - μ, not -μ + xᵢ."""
        terms = super()._as_ordered_terms(expr, order)
        return [t for t in terms if not t.could_extract_minus_sign()] + [
            t for t in terms if t.could_extract_minus_sign()
        ]

    def _print_Partial(self, expr: sp.Expr) -> str:
        of = self._print(expr.args[0])
        if not isinstance(expr.args[0], sp.Indexed | sp.Symbol):
            of = f"({of})"
        return f"∂{of}/∂{self._print(expr.args[1])}"

    def _print_Positive(self, expr: sp.Expr) -> str:  # ReLU's derivative (core.composite)
        return f"[{self._print(expr.args[0])} > 0]"

    def _print_ExprNode(self, expr: sp.Expr) -> str:  # a sub-expression as a node (issue 12)
        return f"({self._print(expr.args[0])})"

    def _print_ExprAdjoint(self, expr: sp.Expr) -> str:
        return f"∂L/∂({self._print(expr.args[0])})"

    def _print_Max(self, expr: sp.Expr) -> str:
        return f"max({', '.join(self._print(a) for a in expr.args)})"


class TexPrinter(LatexPrinter):
    """LaTeX in the posts' notation: \\hat{x}_k, \\sigma^{2}, \\frac{\\partial L}{\\partial \\mu}."""

    printmethod = "_bnderive_latex"

    def _print_Symbol(self, expr: sp.Symbol, style: str = "plain") -> str:
        name = expr.name
        if name in _SCALARS_LATEX:
            return _SCALARS_LATEX[name]
        if name in _ADJOINT_OF_LATEX:
            return rf"\frac{{\partial L}}{{\partial {_ADJOINT_OF_LATEX[name]}}}"
        base, _, sub = name.partition("_")
        if base == "sigma2":
            return rf"\sigma^{{2}}_{{{sub}}}"
        if base == "dsigma2":
            return rf"\frac{{\partial L}}{{\partial \sigma^{{2}}_{{{sub}}}}}"
        if base == "dmu":
            return rf"\frac{{\partial L}}{{\partial \mu_{{{sub}}}}}"
        if base == "ms":
            return rf"\mathrm{{ms}}_{{{sub}}}"
        if base == "dms":
            return rf"\frac{{\partial L}}{{\partial \mathrm{{ms}}_{{{sub}}}}}"
        return super()._print_Symbol(expr, style)

    def _print_Partial(self, expr: sp.Expr) -> str:
        of = self._print(expr.args[0])
        if not isinstance(expr.args[0], sp.Indexed | sp.Symbol):
            of = rf"\left({of}\right)"
        return rf"\frac{{\partial {of}}}{{\partial {self._print(expr.args[1])}}}"

    def _print_Positive(self, expr: sp.Expr) -> str:  # ReLU's derivative (core.composite)
        return rf"\mathbb{{1}}\left[{self._print(expr.args[0])} > 0\right]"

    def _print_ExprNode(self, expr: sp.Expr) -> str:  # a sub-expression as a node (issue 12)
        return rf"\left({self._print(expr.args[0])}\right)"

    def _print_ExprAdjoint(self, expr: sp.Expr) -> str:
        return rf"\frac{{\partial L}}{{\partial \left({self._print(expr.args[0])}\right)}}"

    def _print_Indexed(self, expr: sp.Indexed) -> str:
        name = str(expr.base.label)
        index = "".join(self._print(i) for i in expr.indices)
        if name in _ADJOINT_OF_LATEX:
            return rf"\frac{{\partial L}}{{\partial {_ADJOINT_OF_LATEX[name]}_{{{index}}}}}"
        if name in _COMPOSITE_OF:
            return rf"\frac{{\partial L}}{{\partial {_COMPOSITE_OF[name]}_{{{index}}}}}"
        base = _ARRAYS_LATEX.get(name, name)
        return f"{base}_{{{index}}}"


def unicode(expr: sp.Basic) -> str:
    return UnicodePrinter().doprint(expr)


def latex(expr: sp.Basic) -> str:
    return TexPrinter().doprint(expr)


# -- the teaching view of ``bnderive derive`` ---------------------------------------------------
@dataclass(frozen=True)
class Step:
    """One line of the derivation: a forward stage or an adjoint."""

    kind: str  # "forward" | "backward"
    name: str  # stage or adjoint name: "mu", "dvar", ...
    lhs: sp.Expr  # what it defines, in index notation (x̂[i], ∂L/∂σ², ...)
    general: sp.Expr  # the definition in index notation, any M
    paths: tuple[tuple[str, sp.Expr], ...]  # chain-rule terms (backward) by consumer stage
    instance: sp.Expr  # channel 0, element 1, for the spec's sizes
    meaning: str


_LHS = {
    "mu": sp.Symbol("mu"),
    "var": sp.Symbol("var"),
    "ms": sp.Symbol("ms"),
    "xhat": sp.IndexedBase("xhat")[INDEX_I],
    "y": sp.IndexedBase("y")[INDEX_I],
    "L": sp.Symbol("L"),
}

_MEANING = {
    "dy": "the upstream gradient g, given",
    "dxhat": "through y = γx̂ + β",
    "dvar": "x̂ depends on σ² (x and μ held fixed)",
    "dmu": "μ reaches L through x̂ and through σ²",
    "dx": "x reaches L through x̂, σ² and μ",
    "dgamma": "γ scales every x̂",
    "dbeta": "β shifts every y",
}
#: Where γ and β are one per element (LayerNorm, GroupNorm, RMSNorm), each is used by one element
#: of a set: the set's part of ∂L/∂γᵢ is one term, and ∂L/∂γ adds the parts of every set.
_MEANING_PER_ELEMENT = {
    "dxhat": "through yᵢ = γᵢx̂ᵢ + βᵢ",
    "dgamma": "γᵢ scales x̂ᵢ: this set's part; ∂L/∂γ adds it up over the sets that share γᵢ",
    "dbeta": "βᵢ shifts yᵢ: this set's part; ∂L/∂β adds it up over the sets",
    "dms": "x̂ depends on the mean square ms (x held fixed)",
    "dx": "x reaches L through x̂ and through ms",
}


def meaning(spec: Spec, name: str) -> str:
    """What an adjoint's line says, in words, for the spec's family."""
    if spec.norm.affine_per_element and name in _MEANING_PER_ELEMENT:
        if name == "dx" and spec.norm.centred:
            return _MEANING[name]
        if name == "dxhat" and not spec.norm.has_beta:
            return "through yᵢ = γᵢx̂ᵢ"
        return _MEANING_PER_ELEMENT[name]
    return _MEANING.get(name, "")


def derivation_view(spec: Spec, instantiate: bool = True) -> list[Step]:
    """Forward stages and adjoints, each in index notation and (unless ``instantiate`` is
    False) instantiated for channel 0 of the spec's sizes."""
    graph = Graph.build(spec)
    truth = derive(graph)
    if not instantiate:
        return [
            Step("forward", st.name, _LHS[st.name], st.at(INDEX_I), (), sp.Integer(0), st.meaning)
            for st in graph.stages
        ] + [
            Step(
                "backward",
                adj.name,
                adj.reference(INDEX_I),
                adj.expr,
                tuple((t.via, t.expr) for t in adj.terms),
                sp.Integer(0),
                meaning(spec, adj.name),
            )
            for adj in truth.adjoints
        ]
    inst = symbolic_env(spec, 0)
    env = inst.env.child()
    steps: list[Step] = []
    for stage in graph.stages:
        general = stage.at(INDEX_I)
        if stage.name in ("mu", "var", "ms"):
            instance = evaluate(general, env)
        else:
            value = evaluate(general, env, INDEX_I if stage.elementwise else None)
            instance = value[0] if stage.elementwise else value
        steps.append(
            Step("forward", stage.name, _LHS[stage.name], general, (), instance, stage.meaning)
        )
    for adj in truth.adjoints:
        value = evaluate(adj.expr, env, INDEX_I if adj.elementwise else None)
        if adj.elementwise:
            env.store(adj.name, value, True)
            instance = value[0]
        else:
            # Later lines refer to this adjoint by name, as a staged derivation does.
            env.store(adj.name, sp.Symbol(f"d{_instance_name(adj.node)}_0"), False)
            instance = value
        paths = tuple((t.via, t.expr) for t in adj.terms)
        steps.append(
            Step(
                "backward",
                adj.name,
                adj.reference(INDEX_I),
                adj.expr,
                paths,
                instance,
                meaning(spec, adj.name),
            )
        )
    return steps


def _instance_name(node: str) -> str:
    return {"var": "sigma2"}.get(node, node)


__all__ = ["Step", "TexPrinter", "UnicodePrinter", "derivation_view", "latex", "unicode"]

_ = np
