"""Emit a proven form as a self-contained NumPy module, verified before it is returned.

The mathematics of one reduction set (DESIGN.md §1) becomes array code over the reduction axes:
(0,) for PER_ACTIVATION (N, D) input and (0, 2, 3) for SPATIAL (N, C, H, W) input.  A form's
equations are inlined into dx[i], dγ and dβ and rewritten in three steps:

1. **Centring.**  x_k = μ + xmu_k: every quantity is written through the centred input, so no
   one-pass variance Σx² − (Σx)²/M can appear (it loses every digit in float32 at large means).
2. **Reductions.**  Each Σ_k is expanded, factors free of k move out, a constant summand becomes
   M·c, δ_ik picks k = i, and what remains is one named per-channel reduction per monomial
   (Σ dout_k → ``sum_dout``, Σ dout_k·xmu_k → ``sum_dout_xmu``; Σ xmu_k² is the variance).
   The index is renamed away here, so Σ_k g_k(x_k − μ) and Σ_j g_j(x_j − μ) are one reduction.
3. **Per-channel coefficients.**  With ε = inv_std⁻² − σ² the radicals become powers of
   inv_std = 1/√(σ²+ε).  Every correct training-mode form is then affine in the element's own
   dout_i and xmu_i, dx_i = c1·dout_i + c2·xmu_i + c3 with c1, c2, c3 per channel; they are
   read off by differentiation, shared by ``sympy.cse``, and the elementwise work is one fused
   pass.  (A form that is not syntactically affine is printed elementwise as it stands.)

All code is printed by :class:`NumPyEmitter`, a SymPy printer subclass whose ``_print_X``
methods print both the mathematics (reductions, powers, sizes) and the statements (functions,
assignments, in-place updates).  The module is then imported in a fresh namespace and compared
with the ground truth (``verify_module``): exactly, in rational arithmetic, at a point where
√(σ²+ε) is rational, and in float64 at adversarial random inputs.  A mismatch raises
:class:`EmitVerificationError`; nothing unverified is returned.
"""

from __future__ import annotations

import ast
import unicodedata
from dataclasses import dataclass, field
from typing import Any

import sympy as sp
from sympy.printing.precedence import precedence
from sympy.printing.pycode import PythonCodePrinter

from bnderive.core import notation as N
from bnderive.core import python_syntax
from bnderive.core.derive import derive, inline
from bnderive.core.graph import Graph
from bnderive.core.spec import Mode, Spec
from bnderive.core.sums import SumRewriter
from bnderive.errors import FormError
from bnderive.read.forms import Form


class EmitVerificationError(RuntimeError):
    """The emitted module disagrees with the ground truth (the form is wrong, or bnderive is).

    ``refuted``: the form itself is refuted (exit 1); otherwise bnderive failed (exit 4)."""

    def __init__(self, message: str, refuted: bool = False) -> None:
        super().__init__(message)
        self.refuted = refuted


# -- array-level symbols of the emitted code ---------------------------------------------------------
#: Elementwise arrays: the upstream gradient, the input, the centred input.
DOUT = sp.Symbol("dout")
X = sp.Symbol("x")
XMU = sp.Symbol("xmu")
#: Per-channel values (shape (1, C, 1, 1) or (1, D) inside the functions).
MU = sp.Symbol("mu")
VAR = sp.Symbol("var")
INV_STD = sp.Symbol("inv_std", positive=True)
GAMMA = sp.Symbol("gamma")
BETA = sp.Symbol("beta")
EPS = sp.Symbol("eps")
XHAT = sp.Symbol("xhat")
OUT = sp.Symbol("out")
M_SYM = sp.Symbol("M")  # the size of the reduction set: a Python int from the shape
DX, DGAMMA, DBETA = sp.symbols("dx dgamma dbeta")
C1, C2, C3 = sp.symbols("c1 c2 c3")
_ARRAYS = (DOUT, X, XMU, XHAT)

#: Index-notation bases after centring.
_XMU_BASE = sp.IndexedBase("xmu")
_DOUT_BASE = sp.IndexedBase("dout")


# -- statement nodes: what the printer prints ------------------------------------------------------
class Reduce(sp.Function):
    """Σ over the reduction axes of an elementwise expression, one value per channel
    (a SymPy function, so that it takes part in arithmetic: ``Reduce(x) / M``)."""

    nargs = 1

    @property
    def expr(self) -> sp.Expr:
        return self.args[0]


@dataclass(frozen=True)
class Size:
    """M, the number of elements per channel, as a product of the array's reduced extents."""

    array: sp.Symbol


@dataclass(frozen=True)
class PerChannel:
    """A (C,) parameter vector viewed so that it broadcasts against the input."""

    array: sp.Symbol


@dataclass(frozen=True)
class Flat:
    """A per-channel value returned as a (C,) vector, the shape of γ and β."""

    array: sp.Symbol


@dataclass(frozen=True)
class Assign:
    target: sp.Symbol | tuple[sp.Symbol, ...]
    value: Any
    comment: str = ""


@dataclass(frozen=True)
class Update:
    """An in-place update ``target op= value`` of an array the function owns."""

    target: sp.Symbol
    op: str  # "+", "*"
    value: Any
    comment: str = ""


@dataclass(frozen=True)
class Return:
    values: tuple[Any, ...]


@dataclass(frozen=True)
class FunctionDef:
    name: str
    params: tuple[str, ...]
    doc: str
    body: tuple[Any, ...]


@dataclass(frozen=True)
class UserText:
    """A string that came from the user's form (its name, title, a source), with what it is, for
    the message when it cannot be written: printed only inside a checked docstring line."""

    what: str
    text: str
    prefix: str = ""  # bnderive's own words before it on the same line
    suffix: str = ""  # and after it


#: One line of a docstring: bnderive's own text, or the user's after a prefix of ours.
DocLine = str | UserText


@dataclass(frozen=True)
class Module:
    """The module: its docstring (the header), the imports the target needs, its functions."""

    header: tuple[DocLine, ...]
    functions: tuple[Any, ...]
    imports: tuple[str, ...] = ("numpy",)


# -- the printer ---------------------------------------------------------------------------------------
_LETTERS = {Mode.PER_ACTIVATION: ("nd", "d"), Mode.SPATIAL: ("nchw", "c")}


class NumPyEmitter(PythonCodePrinter):
    """Prints the statement nodes above and the array mathematics as vectorized NumPy.

    Numbers are printed so that the code is exact on exact inputs and keeps float32 float32:
    integers only (a rational coefficient p/q prints as ``p*…/q``), sizes are Python ints.
    """

    printmethod = "_bnderive_numpy"  # not Indexed/Sum's own printing: our methods decide
    _default_settings = {**PythonCodePrinter._default_settings, "mode": Mode.SPATIAL}

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        super().__init__(settings or {})
        self.mode: Mode = self._settings["mode"]

    # -- layout -------------------------------------------------------------------------------
    @property
    def axes(self) -> tuple[int, ...]:
        return (0,) if self.mode is Mode.PER_ACTIVATION else (0, 2, 3)

    @property
    def channel_shape(self) -> str:
        return "1, -1" if self.mode is Mode.PER_ACTIVATION else "1, -1, 1, 1"

    # -- mathematics ---------------------------------------------------------------------------
    def _print_Reduce(self, node: Reduce) -> str:
        """Σ over N (and H, W): einsum for a product of two arrays (no temporary product
        array), else ``np.sum(..., keepdims=True)``."""
        factors = sp.Mul.make_args(node.expr)
        if len(factors) == 2 and all(isinstance(f, sp.Symbol) for f in factors):
            operands = [self._print(f) for f in factors]
        elif isinstance(node.expr, sp.Pow) and node.expr.exp == 2 and node.expr.base.is_Symbol:
            operands = [self._print(node.expr.base)] * 2
        else:
            return f"np.sum({self._print(node.expr)}, axis={self.axes}, keepdims=True)"
        full, kept = _LETTERS[self.mode]
        spec = ",".join([full] * len(operands)) + "->" + kept
        return f'np.einsum("{spec}", {", ".join(operands)}).reshape({self.channel_shape})'

    def _print_Size(self, node: Size) -> str:
        name = self._print(node.array)
        return " * ".join(f"{name}.shape[{a}]" for a in self.axes)

    def _print_PerChannel(self, node: PerChannel) -> str:
        return f"{self._print(node.array)}.reshape({self.channel_shape})"

    def _print_Flat(self, node: Flat) -> str:
        return f"{self._print(node.array)}.reshape(-1)"

    def _print_Pow(self, expr: sp.Pow, rational: bool = False) -> str:
        base, exp = expr.args
        b = self.parenthesize(base, precedence(expr), strict=False)
        if exp == sp.Rational(1, 2):
            return f"np.sqrt({self._print(base)})"
        if exp == sp.Rational(-1, 2):
            return f"1 / np.sqrt({self._print(base)})"
        if exp.is_Integer and exp > 0:
            return f"{b}**{exp}"
        if exp.is_Integer and exp < 0:
            inner = self._print(base) if exp == -1 else f"{b}**{-exp}"
            if exp != -1 or not base.is_Atom:
                inner = f"({inner})" if (exp != -1 or not base.is_Atom) else inner
            return f"1 / {inner}"
        if exp.is_Rational and exp.q == 2:  # odd multiple of ½: an integer power times a root
            whole = sp.Pow(base, (exp.p - 1) // 2) if exp > 0 else sp.Pow(base, (exp.p + 1) // 2)
            root = sp.sqrt(base) if exp > 0 else 1 / sp.sqrt(base)
            return f"{self.parenthesize(whole, precedence(expr))} * {self._print(root)}"
        raise EmitVerificationError(f"cannot print the power {expr} exactly")

    def _print_Mul(self, expr: sp.Mul) -> str:
        # A rational coefficient p/q prints as p*rest/q: integers only, exact on Fractions.
        coeff, rest = expr.as_coeff_Mul()
        if coeff.is_Rational and coeff.q != 1:
            numerator = self._print(sp.Mul(sp.Integer(coeff.p), rest))
            return f"{numerator}/{coeff.q}"
        return super()._print_Mul(expr)

    def _print_Add(self, expr: sp.Add, order: str | None = None) -> str:
        # Array terms first, subtracted terms after added ones, ε last: x - mu, var + eps.
        terms = self._as_ordered_terms(expr, order=order)

        def rank(term: sp.Expr) -> tuple[int, int, int]:
            array = not term.has(*_ARRAYS)
            return (array, term.could_extract_minus_sign(), term.has(EPS))

        terms = sorted(terms, key=rank)
        text = self._print(terms[0])
        for term in terms[1:]:
            if term.could_extract_minus_sign():
                text += f" - {self.parenthesize(-term, precedence(expr))}"
            else:
                text += f" + {self.parenthesize(term, precedence(expr))}"
        return text

    def _print_Rational(self, expr: sp.Rational) -> str:
        return str(expr.p) if expr.q == 1 else f"({expr.p}/{expr.q})"

    def _print_Float(self, expr: sp.Float) -> str:  # pragma: no cover - forms are exact
        raise EmitVerificationError(f"a float constant {expr} would break exactness")

    # -- statements ----------------------------------------------------------------------------
    def print_module(self, module: Module) -> str:
        """The module's source (CodePrinter.doprint would sympify the statement nodes)."""
        return self._print(module)

    def _target(self, target: sp.Symbol | tuple[sp.Symbol, ...]) -> str:
        if isinstance(target, tuple):
            return ", ".join(self._print(t) for t in target)
        return self._print(target)

    # Every piece of text in the module that is not code goes through one of the two methods
    # below: a comment (bnderive's own words, one line) or a docstring (a string literal whose
    # content is checked line by line and escaped, so that nothing in it can end it).
    def _comment(self, code: str, comment: str) -> str:
        if not comment:
            return code
        if _unprintable(comment) is not None:
            raise EmitVerificationError(f"bnderive bug: the comment {comment!r} is not one line")
        return f"{code}  # {comment}"

    def _docstring(self, lines: tuple[DocLine, ...], indent: str = "") -> str:
        """A triple-quoted string literal whose value is exactly ``lines`` joined by newlines.

        Each line must be one line of printable text: a line break, carriage return, NUL or any
        other control or format character (U+2028, bidirectional overrides) in the user's text
        is a ``FormError`` naming it; backslashes and quotes are escaped, so that no text can end
        the literal or start an escape sequence."""
        text = [self._doc_line(line) for line in lines]
        if len(text) == 1:
            value = text[0]
        else:  # the closing quotes on a line of their own, indented like the rest
            rows = [text[0], *(f"{indent}{t}" if t else "" for t in text[1:]), indent]
            value = "\n".join(rows)
        literal = '"""' + value.replace("\\", "\\\\").replace('"', '\\"') + '"""'
        # The literal must read back as the text, character for character.
        if ast.literal_eval(literal) != value:
            raise EmitVerificationError("bnderive bug: a docstring does not read back as its text")
        return indent + literal

    def _doc_line(self, line: DocLine) -> str:
        if isinstance(line, UserText):
            bad = _unprintable(line.text)
            if bad is not None:
                at, char = bad
                raise FormError(
                    f"{line.what} contains {_char_name(char)} at character {at + 1}: "
                    f"{line.text[:at]!r}…; emit writes it into the module's docstring, as one "
                    "line of printable text. Remove it from the form file (in TOML, a string "
                    "without \\n, \\r or other control characters)."
                )
            return line.prefix + line.text + line.suffix
        if _unprintable(line) is not None:
            raise EmitVerificationError(
                f"bnderive bug: the docstring line {line!r} is not one line"
            )
        return line

    def _print_Assign(self, node: Assign) -> str:
        line = f"{self._target(node.target)} = {self._print(node.value)}"
        return self._comment(line, node.comment)

    def _print_Update(self, node: Update) -> str:
        line = f"{self._print(node.target)} {node.op}= {self._print(node.value)}"
        return self._comment(line, node.comment)

    def _print_Return(self, node: Return) -> str:
        return "return " + ", ".join(self._print(v) for v in node.values)

    def _print_FunctionDef(self, node: FunctionDef) -> str:
        lines = [f"def {node.name}({', '.join(node.params)}):"]
        lines.append(self._docstring(tuple(node.doc.strip().splitlines()), "    "))
        lines += [f"    {self._print(stmt)}" for stmt in node.body]
        return "\n".join(lines)

    def _print_Module(self, node: Module) -> str:
        imports = [f"import {m}" + (" as np" if m == "numpy" else "") for m in node.imports]
        parts = [self._docstring(node.header), "\n".join(imports)]
        parts += [self._print(f) for f in node.functions]
        source = parts[0] + "\n\n" + "\n\n\n".join(parts[1:]) + "\n"
        _check_structure(source, node)
        return source


_UNPRINTABLE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def _unprintable(text: str) -> tuple[int, str] | None:
    """The first control, format (bidi overrides, zero-width), surrogate, private-use,
    unassigned or line/paragraph-separator character of ``text``, with its position."""
    for at, char in enumerate(text):
        if unicodedata.category(char) in _UNPRINTABLE:
            return at, char
    return None


def _char_name(char: str) -> str:
    names = {"\n": "a line break (\\n)", "\r": "a carriage return (\\r)", "\x00": "a NUL (\\x00)"}
    name = unicodedata.name(char, "a control character")
    return names.get(char, f"U+{ord(char):04X} ({name.lower()})")


def _check_structure(source: str, node: Module) -> None:
    """The printed module, parsed back: exactly its docstring, its imports and its functions at
    the top level, nothing else (a last guard: no text can have become a statement)."""
    tree = python_syntax.parse(source)
    want = ["docstring", *(f"import {m}" for m in node.imports)]
    want += [f"def {_name(f)}" for f in node.functions]
    got = []
    for k, stmt in enumerate(tree.body):
        if k == 0 and isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            got.append("docstring")
        elif isinstance(stmt, ast.Import) and len(stmt.names) == 1:
            got.append(f"import {stmt.names[0].name}")
        elif isinstance(stmt, ast.FunctionDef):
            got.append(f"def {stmt.name}")
        else:
            got.append(type(stmt).__name__)
    if got != want:
        raise EmitVerificationError(
            f"bnderive bug: the printed module has the statements {got}, not {want}"
        )


def _name(function: Any) -> str:
    return function.name if isinstance(function, FunctionDef) else function.function.name


# -- from a form to statements --------------------------------------------------------------------------
@dataclass
class _Plan:
    """The backward of one form as per-channel statements and the elementwise dx."""

    reductions: dict[sp.Symbol, sp.Expr] = field(default_factory=dict)  # name -> summand
    needs_var: bool = False
    per_channel: list[tuple[sp.Symbol, sp.Expr]] = field(default_factory=list)
    dx: sp.Expr | None = None  # elementwise expression (None: the c1·dout + c2·xmu + c3 form)
    coefficients: tuple[sp.Expr, sp.Expr, sp.Expr] | None = None
    dgamma: sp.Expr = sp.Integer(0)
    dbeta: sp.Expr = sp.Integer(0)
    borrowed: tuple[str, ...] = ()  # outputs the form does not define, taken from the truth


def _reduction_name(summand: sp.Expr) -> str:
    parts = []
    for factor in sorted(sp.Mul.make_args(summand), key=str):
        base, power = factor.as_base_exp()
        if not isinstance(base, sp.Symbol) or not power.is_Integer or power < 1:
            return ""
        parts.append(f"{base}{power if power != 1 else ''}")
    return "sum_" + "_".join(parts)


class _Rewriter(SumRewriter):
    """Sums over the reduction set → named per-channel reductions (DESIGN.md §7)."""

    def __init__(self, divisor: sp.Expr) -> None:
        self.divisor = divisor  # σ² = Σ xmu² / divisor
        self.reductions: dict[sp.Symbol, sp.Expr] = {}

    def size(self) -> sp.Expr:
        return M_SYM

    def refuse(self, what: str) -> None:
        raise FormError(f"{what} cannot be emitted")

    def reduction(self, summand: sp.Expr, index: sp.Symbol) -> sp.Expr:
        element = summand.xreplace({_XMU_BASE[index]: XMU, _DOUT_BASE[index]: DOUT})
        if element.has(sp.Indexed) or index in element.free_symbols:
            raise FormError(f"the summand {summand} cannot be emitted as a reduction")
        return self._named(element)

    def _named(self, element: sp.Expr) -> sp.Expr:
        # Σ (x − μ) is zero in exact arithmetic but kept as computed: a form that uses it,
        # like the staged dμ, corrects the rounding of μ in floating point.
        if element == XMU**2:
            return self.divisor * VAR  # the centred variance, computed once
        name = _reduction_name(element) or f"sum_{len(self.reductions) + 1}"
        symbol = sp.Symbol(name)
        self.reductions[symbol] = element
        return symbol


def _supported(form: Form) -> None:
    if form.order != 1:
        raise FormError(
            f"{form.name} is a double backward (order 2): emit writes first-order backward code."
        )
    if not form.training:
        raise FormError(
            f"{form.name} is an eval-mode form: emit writes training-mode code for now."
        )
    if not form.eps_inside:
        raise FormError(
            f"{form.name} puts ε outside the root: emit writes code for √(σ²+ε) for now."
        )
    if not any(eq.name == "dx" for eq in form.equations):
        raise FormError(f"{form.name} does not define dx[i]: there is no backward to emit.")


def plan_backward(form: Form, mode: Mode) -> _Plan:
    """The form's dx, dγ, dβ as named reductions, per-channel coefficients and one pass.

    Four steps: the form's lines with the truth's dγ, dβ where the form leaves them out
    (``_definitions``); each output inlined and written in the centred variables of the code
    (``_lower``); dx read as c1·dout + c2·xmu + c3 where it is affine in them, and the common
    subexpressions shared (``_share``); subexpressions of M alone put back (``_exact_in_m``)."""
    _supported(form)
    spec = form.spec(Spec(mode=mode, n=2, h=2 if mode is Mode.SPATIAL else 1, w=1))
    definitions, borrowed = _definitions(form, spec)
    rewriter = _Rewriter(M_SYM - 1 if form.unbiased else M_SYM)
    dx = _lower(N.reference("dx", N.i), definitions, rewriter, form.name)
    dgamma = sp.expand(_lower(sp.Symbol("dgamma"), definitions, rewriter, form.name))
    dbeta = sp.expand(_lower(sp.Symbol("dbeta"), definitions, rewriter, form.name))
    for value in (dgamma, dbeta):
        if value.has(DOUT) or value.has(XMU):
            raise FormError(f"{form.name}: dγ and dβ must be sums, one value per channel")
    plan = _Plan(borrowed=tuple(borrowed))
    replacements, reduced = _share(plan, dx, dgamma, dbeta)
    _exact_in_m(plan, replacements)
    plan.reductions = rewriter.reductions
    everything = [e for _, e in replacements] + list(reduced)
    plan.needs_var = any(e.has(VAR) for e in everything)
    return plan


def _definitions(form: Form, spec: Spec) -> tuple[dict[str, tuple[bool, sp.Expr]], list[str]]:
    """What each name means for the code: x̂ and y from the graph, the form's lines, and the
    truth's dγ = Σ g x̂, dβ = Σ g (with the adjoints they refer to) where the form has none;
    and the names so borrowed."""
    graph = Graph.build(spec)
    truth = derive(graph)
    definitions: dict[str, tuple[bool, sp.Expr]] = {}
    for stage in graph.stages:
        if stage.elementwise:
            definitions[stage.name] = (True, stage.at(N.i))
    borrowed = []
    for name in ("dgamma", "dbeta"):
        if not any(eq.name == name for eq in form.equations):
            definitions[name] = (False, truth[name].expr)  # the truth's: Σ g x̂, Σ g
            borrowed.append(name)
    for eq in form.equations:
        definitions[eq.name] = (eq.elementwise, eq.expr)
    if borrowed:
        # The truth's adjoints refer to its own earlier adjoints by name: supply them.
        for adj in truth.adjoints:
            definitions.setdefault(adj.name, (adj.elementwise, adj.expr))
    return definitions, borrowed


def _lower(
    expr: sp.Expr,
    definitions: dict[str, tuple[bool, sp.Expr]],
    rewriter: _Rewriter,
    name: str,
) -> sp.Expr:
    """An output in the code's variables: inlined; centred (x_k = μ + xmu_k for every index,
    the upstream gradient renamed dout); its sums named reductions (``rewriter``); and the
    radical eliminated: ε = inv_std⁻² − σ², so √(σ²+ε) is 1/inv_std (inv_std > 0) and
    (σ²+ε)^(−3/2) is inv_std³."""
    expr = inline(expr, definitions)
    mapping: dict[sp.Basic, sp.Expr] = {}
    for node in expr.atoms(sp.Indexed):
        base = str(node.base.label)
        if base == "x":
            mapping[node] = MU + _XMU_BASE[node.indices[0]]
        elif base == "g":
            mapping[node] = _DOUT_BASE[node.indices[0]]
        else:
            raise FormError(f"{name}: {node} cannot be emitted (unknown array)")
    expr = rewriter.rewrite(expr.xreplace(mapping))
    expr = expr.xreplace({_XMU_BASE[N.i]: XMU, _DOUT_BASE[N.i]: DOUT, N.M: M_SYM})
    if expr.has(sp.Indexed):
        raise FormError(f"{name}: an element other than i is left in {expr}")
    expr = expr.xreplace({N.eps: INV_STD**-2 - N.var, N.mu: MU, N.var: VAR})
    return expr.xreplace({N.gamma: GAMMA, N.beta: BETA})


def _share(
    plan: _Plan, dx: sp.Expr, dgamma: sp.Expr, dbeta: sp.Expr
) -> tuple[list[tuple[sp.Symbol, sp.Expr]], list[sp.Expr]]:
    """dx_i = c1·dout_i + c2·xmu_i + c3, the coefficients read off by differentiation and the
    identity checked exactly (then the pass is one fused line); else dx as it is.  Common
    subexpressions of the coefficients (or dx) and dγ, dβ become per-channel temporaries
    (``sp.cse``).  Fills the plan's outputs; returns (temporaries, reduced expressions)."""
    c1, c2 = sp.diff(dx, DOUT), sp.diff(dx, XMU)
    c3 = dx.xreplace({DOUT: 0, XMU: 0})
    affine = not any(c.has(DOUT) or c.has(XMU) for c in (c1, c2)) and (
        sp.expand(dx - (c1 * DOUT + c2 * XMU + c3)) == 0
    )
    outputs = [sp.factor_terms(sp.expand(v)) for v in (dgamma, dbeta)]
    if affine:
        coefficients = [sp.factor_terms(sp.expand(c)) for c in (c1, c2, c3)]
        replacements, reduced = sp.cse(
            coefficients + outputs, symbols=sp.numbered_symbols("t"), optimizations=None
        )
        plan.coefficients = tuple(reduced[:3])  # type: ignore[assignment]
        plan.dgamma, plan.dbeta = reduced[3:]
    else:
        replacements, reduced = sp.cse([dx] + outputs, symbols=sp.numbered_symbols("t"))
        plan.dx = reduced[0]
        plan.dgamma, plan.dbeta = reduced[1:]
    return replacements, reduced


def _exact_in_m(plan: _Plan, replacements: list[tuple[sp.Symbol, sp.Expr]]) -> None:
    """A subexpression of M alone (1/M) would be a Python float: put it back, so that the code
    divides by the int M (exact on rationals, and float32 stays float32).  The others are the
    plan's per-channel temporaries."""
    back: dict[sp.Symbol, sp.Expr] = {}
    kept = []
    for name, value in replacements:
        value = value.xreplace(back)
        if value.free_symbols <= {M_SYM}:
            back[name] = value
        else:
            kept.append((name, value))
    if back:
        plan.coefficients = (
            tuple(c.xreplace(back) for c in plan.coefficients) if plan.coefficients else None
        )
        plan.dx = plan.dx.xreplace(back) if plan.dx is not None else None
        plan.dgamma, plan.dbeta = plan.dgamma.xreplace(back), plan.dbeta.xreplace(back)
    plan.per_channel = kept


# -- the module -------------------------------------------------------------------------------------
def _conventions(form: Form) -> str:
    return ", ".join(
        [
            "training mode",
            "Bessel variance 1/(M−1)" if form.unbiased else "biased variance 1/M",
            "ε inside the root: x̂ = (x − μ)/√(σ² + ε)",
        ]
    )


def _layout(mode: Mode) -> str:
    if mode is Mode.PER_ACTIVATION:
        return "PER_ACTIVATION: x is (N, D), statistics per feature over axis 0; M = N"
    return "SPATIAL: x is (N, C, H, W), statistics per channel over axes (0, 2, 3); M = N·H·W"


def _backward_body(plan: _Plan, own_xmu: bool) -> list[Any]:
    """Statements shared by backward and backward_cached, after xmu and inv_std are known."""
    body: list[Any] = [Assign(GAMMA, PerChannel(GAMMA))]
    comments = {
        "sum_dout": "Σ dout = dβ",
        "sum_dout_xmu": "Σ dout·(x − μ)",
        "sum_xmu": "Σ (x − μ): zero exactly, kept: it corrects the rounding of μ",
    }
    for name, element in plan.reductions.items():
        body.append(Assign(name, Reduce(element), comments.get(str(name), "")))
    for i, (name, value) in enumerate(plan.per_channel):
        body.append(Assign(name, value, "per-channel subexpression" if i == 0 else ""))
    if plan.coefficients is not None:
        c1, c2, c3 = plan.coefficients
        body.append(Assign(C1, c1, "dx = c1·dout + c2·(x − μ) + c3, c1..c3 per channel"))
        body.append(Assign(C2, c2))
        body.append(Assign(C3, c3))
        if own_xmu:
            # xmu is this function's own temporary: update it in place, one fresh array (dx).
            body.append(Update(XMU, "*", C2, "xmu is ours: reuse it for c2·(x − μ)"))
            body.append(Update(XMU, "+", C3))
            body.append(Assign(DX, C1 * DOUT))
            body.append(Update(DX, "+", XMU))
        else:
            body.append(Assign(DX, C1 * DOUT))
            body.append(Update(DX, "+", C2 * XMU))
            body.append(Update(DX, "+", C3))
    else:
        body.append(Assign(DX, plan.dx))
    body.append(Assign(DGAMMA, plan.dgamma))
    body.append(Assign(DBETA, plan.dbeta))
    body.append(Return((DX, Flat(DGAMMA), Flat(DBETA))))
    return body


def build_module(form: Form, mode: Mode, version: str) -> Module:
    """The module as a tree the printer writes: a header saying what was proven and how it was
    verified (``_header``), then forward, backward and backward_cached (``_functions``)."""
    plan = plan_backward(form, mode)
    return Module(tuple(_header(form, mode, version, plan)), _functions(form, plan))


def _functions(form: Form, plan: _Plan) -> tuple[FunctionDef, ...]:
    """forward (out and the cache), backward (from x) and backward_cached (from the cache):
    the statistics μ, x − μ, σ², 1/√(σ²+ε) computed once, the centred way."""
    divisor = M_SYM - 1 if form.unbiased else M_SYM
    statistics = [
        Assign(M_SYM, Size(X), "M: elements per channel, a Python int"),
        Assign(MU, Reduce(X) / M_SYM, "μ = Σ x / M"),
        Assign(XMU, X - MU, "the centred input; the variance is never Σx² − (Σx)²/M"),
        Assign(VAR, Reduce(XMU**2) / divisor, "σ² = Σ (x − μ)² / " + str(divisor)),
        Assign(INV_STD, 1 / sp.sqrt(VAR + EPS), "1/√(σ² + ε)"),
    ]
    forward = FunctionDef(
        "forward",
        ("x", "gamma", "beta", "eps"),
        "BatchNorm forward in training mode: out = γ·x̂ + β.\n\n"
        "Returns out and the cache (x − μ, μ, inv_std) for backward_cached; μ and inv_std have\n"
        "the per-channel broadcast shape.",
        tuple(
            statistics
            + [
                Assign(XHAT, XMU * INV_STD, "x̂ = (x − μ)/√(σ² + ε)"),
                Assign(GAMMA, PerChannel(GAMMA)),
                Assign(BETA, PerChannel(BETA)),
                Assign(OUT, GAMMA * XHAT + BETA, "y = γ·x̂ + β"),
                Return((OUT, sp.Tuple(XMU, MU, INV_STD))),
            ]
        ),
    )
    backward = FunctionDef(
        "backward",
        ("dout", "x", "gamma", "eps"),
        "∂L/∂x, ∂L/∂γ, ∂L/∂β from the upstream gradient dout = ∂L/∂y and the input x.",
        tuple(statistics + _backward_body(plan, own_xmu=True)),
    )
    cached = [Assign((XMU, MU, INV_STD), sp.Symbol("cache"), "from forward")]
    cached.append(Assign(M_SYM, Size(XMU), "M: elements per channel, a Python int"))
    if plan.needs_var:
        cached.append(Assign(VAR, Reduce(XMU**2) / divisor, "σ², used by this form"))
    backward_cached = FunctionDef(
        "backward_cached",
        ("dout", "cache", "gamma"),
        "The same gradients from forward's cache (x − μ, μ, inv_std); the cache is not modified.",
        tuple(cached + _backward_body(plan, own_xmu=False)),
    )
    return (forward, backward, backward_cached)


def _header(form: Form, mode: Mode, version: str, plan: _Plan) -> list[DocLine]:
    """The module's docstring: the form (its user strings as ``UserText``, escaped by the
    printer), its conventions and layout, its lines as proven, and how the module was verified."""
    from bnderive.core import printing as display

    where = form.path or form.name
    header: list[DocLine] = [
        UserText(
            f"{where}: the form's name",
            form.name,
            f"BatchNorm backward, emitted by bnderive {version} from the form '",
            "':",
        ),
        UserText(f"{where}: the form's title", form.title, "  "),
        *(UserText(f"{where}: source {k}", s, "  source: ") for k, s in enumerate(form.sources, 1)),
        f"Conventions: {_conventions(form)}.",
        f"Mode: {_layout(mode)}.",
        "The form's lines, as proven (∂L/∂y is dout):",
        *(
            UserText(f"{where}: line {eq.number}", f"{eq.label} = {display.unicode(eq.expr)}", "  ")
            for eq in form.equations
        ),
    ]
    if plan.borrowed:
        header.append(
            f"  {', '.join(plan.borrowed)} not defined by the form: the ground truth's (Σ g·x̂, Σ g)."
        )
    header += [
        "Verified by bnderive before it was written, in a separate process: exact rational",
        "arithmetic at a point where √(σ²+ε) is rational, and float64 at adversarial random",
        "inputs, against the ground truth. dtype is preserved (float32 in, float32 out); pass eps",
        "as a Python float.",
    ]
    return header


def render(form: Form, mode: Mode, version: str) -> str:
    """The module's source, not yet verified (see ``emit``)."""
    return NumPyEmitter({"mode": mode}).print_module(build_module(form, mode, version))
