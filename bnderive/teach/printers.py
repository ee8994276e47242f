"""How the lesson writes mathematics, numbers and NumPy: SymPy printer subclasses, nothing else.

* ``TeachUnicodePrinter`` and ``TeachLatexPrinter`` extend the index-notation printers of
  ``core.printing`` with the local derivatives of the chain rule (∂x̂ₖ/∂σ²), which the lesson
  writes as unevaluated ``Derivative`` objects;
* ``ValuePrinter`` writes exact values (Fractions, as SymPy rationals) as fractions, or as short
  decimals beside them;
* ``NumPyPrinter`` writes an index-notation expression of one reduction set as NumPy over 1-D
  arrays: ``x[i]`` is the array ``x``, ``Σₖ f(k)`` is ``np.sum(f)``, so an elementwise line
  broadcasts the per-set sums, as a student writes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import sympy as sp
from sympy.printing.pycode import PythonCodePrinter
from sympy.printing.str import StrPrinter

from bnderive.core.printing import TexPrinter, UnicodePrinter, subscript

#: An exact value of the lesson: one number per reduction set, or one per element.
Value = Fraction | tuple[Fraction, ...]


class ChainProduct(sp.Basic):
    """One path of the chain rule, ∂L/∂u · ∂u/∂v, kept as written (not multiplied out).

    ``args`` = (adjoint of u, local derivative ∂u/∂v, summation index or 0): with an index the
    path is Σₖ ∂L/∂uₖ · ∂uₖ/∂v, because the scalar v feeds every element of u."""

    @property
    def adjoint(self) -> sp.Expr:
        return self.args[0]

    @property
    def local(self) -> sp.Expr:
        return self.args[1]

    @property
    def index(self) -> sp.Symbol | None:
        return self.args[2] if isinstance(self.args[2], sp.Symbol) else None


class Chain(sp.Basic):
    """The paths of one adjoint, in the order a derivation writes them (summed)."""


def _reading_order(terms: list[sp.Expr]) -> list[sp.Expr]:
    """Terms as a derivation writes them: subtracted terms last, ε and β after the others
    (xᵢ − μ, σ² + ε, γ·x̂ᵢ + β), SymPy's order otherwise."""
    trailing = {sp.Symbol("eps"), sp.Symbol("beta")}
    return sorted(terms, key=lambda t: (t.could_extract_minus_sign(), t in trailing))


class TeachUnicodePrinter(UnicodePrinter):
    """The index notation in Unicode, with ∂u/∂v for a local derivative of the chain rule."""

    def _as_ordered_terms(self, expr: sp.Expr, order: str | None = None) -> list[sp.Expr]:
        return _reading_order(super()._as_ordered_terms(expr, order))

    def _print_ChainProduct(self, expr: ChainProduct) -> str:
        factors = (
            self._print(expr.local)
            if expr.adjoint == 1
            else f"{self._print(expr.adjoint)}·{self._print(expr.local)}"
        )
        if expr.index is None:
            return factors
        return f"Σ{subscript(self._print(expr.index))} {factors}"

    def _print_Chain(self, expr: Chain) -> str:
        return " + ".join(self._print(path) for path in expr.args)

    def _print_Derivative(self, expr: sp.Derivative) -> str:
        (variable, _count), *_ = expr.variable_count
        return f"∂{self._print(expr.expr)}/∂{self._print(variable)}"


class TeachLatexPrinter(TexPrinter):
    """The index notation in LaTeX, with \\frac{\\partial u}{\\partial v} for a local derivative."""

    def _as_ordered_terms(self, expr: sp.Expr, order: str | None = None) -> list[sp.Expr]:
        return _reading_order(super()._as_ordered_terms(expr, order))

    def _print_ChainProduct(self, expr: ChainProduct) -> str:
        factors = (
            self._print(expr.local)
            if expr.adjoint == 1
            else rf"{self._print(expr.adjoint)} \cdot {self._print(expr.local)}"
        )
        if expr.index is None:
            return factors
        return rf"\sum_{{{self._print(expr.index)}}} {factors}"

    def _print_Chain(self, expr: Chain) -> str:
        return " + ".join(self._print(path) for path in expr.args)

    def _print_Derivative(self, expr: sp.Derivative) -> str:
        (variable, _count), *_ = expr.variable_count
        return rf"\frac{{\partial {self._print(expr.expr)}}}{{\partial {self._print(variable)}}}"

    def _print_Symbol(self, expr: sp.Symbol, style: str = "plain") -> str:
        if expr.name == "L":
            return "L"
        return super()._print_Symbol(expr, style)


class ValuePrinter(StrPrinter):
    """Exact values as fractions (``-12/13``), or with ``decimal`` as 4 significant digits."""

    def __init__(self, decimal: bool = False) -> None:
        super().__init__()
        self.decimal = decimal

    def _print_Rational(self, expr: sp.Rational) -> str:
        if self.decimal:
            return _short_decimal(float(expr))
        return str(expr.p) if expr.q == 1 else f"{expr.p}/{expr.q}"

    _print_Integer = _print_Rational

    def _print_Tuple(self, expr: sp.Tuple) -> str:
        return "[" + ", ".join(self._print(v) for v in expr) + "]"


class LatexValuePrinter(TeachLatexPrinter):
    """Exact values in LaTeX: \\frac{12}{13}, vectors as a bracketed list; with ``decimal``,
    four significant digits."""

    def __init__(self, decimal: bool = False) -> None:
        super().__init__()
        self.decimal = decimal

    def _print_Rational(self, expr: sp.Rational) -> str:
        if self.decimal:
            return _short_decimal(float(expr))
        return super()._print_Rational(expr)

    def _print_Integer(self, expr: sp.Integer) -> str:
        return self._print_Rational(expr)

    def _print_Tuple(self, expr: sp.Tuple) -> str:
        return r"\left[" + ",\\ ".join(self._print(v) for v in expr) + r"\right]"


class NumPyPrinter(PythonCodePrinter):
    """One reduction set in NumPy: 1-D arrays for the elements, Python numbers for the scalars.

    Written in the style of SymPy's own code printers (a ``_print_X`` method per node)."""

    def __init__(self) -> None:
        super().__init__({"standard": "python3", "fully_qualified_modules": False})

    def _as_ordered_terms(self, expr: sp.Expr, order: str | None = None) -> list[sp.Expr]:
        return _reading_order(super()._as_ordered_terms(expr, order))

    def _print_Indexed(self, expr: sp.Indexed) -> str:
        # Element i (or k inside a Σ) of a per-element quantity: the whole array; sums reduce it.
        return str(expr.base.label)

    def _print_Sum(self, expr: sp.Sum) -> str:
        if len(expr.limits) != 1:
            raise ValueError(f"one Σ at a time: {expr}")
        (k, *_bounds), *_ = expr.limits
        outside = [
            a for a in expr.free_symbols - {k} if isinstance(a, sp.Symbol) and _element_of(expr, a)
        ]
        if not outside:
            return f"np.sum({self._print(expr.function)})"
        # An element xᵢ inside Σₖ (LayerNorm's Σₖ (xₖ − μ)(xᵢ − μ)…) is printed as the array x,
        # like xₖ: the sum would mix the two.  Split the summand into terms and take out of each
        # the factors that do not depend on k: Σₖ a·f(k) = a·Σₖ f(k), exactly.
        parts = []
        for term in sp.Add.make_args(sp.expand(expr.function, deep=False)):
            fixed, summed = term.as_independent(k, as_Add=False)
            parts.append(sp.Mul(fixed, sp.Function("_reduce")(summed), evaluate=False))
        return "(" + " + ".join(self._print(p) for p in parts) + ")"

    def _print_Function(self, expr: sp.Function) -> str:
        if expr.func.__name__ == "_reduce":
            return f"np.sum({self._print(expr.args[0])})"
        return super()._print_Function(expr)

    def _print_Pow(self, expr: sp.Pow, rational: bool = False) -> str:
        base, exp = expr.args
        if exp == sp.Rational(1, 2):
            return f"np.sqrt({self._print(base)})"
        if exp == sp.Rational(-1, 2):
            return f"1/np.sqrt({self._print(base)})"
        return super()._print_Pow(expr, rational)

    def _print_Rational(self, expr: sp.Rational) -> str:
        return str(expr.p) if expr.q == 1 else f"{expr.p}/{expr.q}"

    def _print_Symbol(self, expr: sp.Symbol) -> str:
        return expr.name

    def _print_KroneckerDelta(self, expr: sp.KroneckerDelta) -> str:
        raise ValueError("δ has no 1-D NumPy form; the lesson's code uses the reduced forms")


def _element_of(expr: sp.Sum, index: sp.Symbol) -> bool:
    """Does ``expr`` read an element at ``index`` (an Indexed x[index])?"""
    return any(i.indices == (index,) for i in expr.atoms(sp.Indexed))


def _short_decimal(value: float) -> str:
    text = format(value, ".4g")
    return "0" if text in ("0", "-0") else text


# -- entry points ------------------------------------------------------------------------------------
def unicode(expr: sp.Basic) -> str:
    return TeachUnicodePrinter().doprint(expr)


def latex(expr: sp.Basic) -> str:
    return TeachLatexPrinter().doprint(expr)


def numpy(expr: sp.Basic) -> str:
    return NumPyPrinter().doprint(expr)


def as_sympy(value: Value) -> sp.Basic:
    """A lesson value as SymPy: a Rational, or a Tuple of them."""
    if isinstance(value, tuple | list):
        return sp.Tuple(*(sp.Rational(v.numerator, v.denominator) for v in value))
    return sp.Rational(value.numerator, value.denominator)


def exact(value: Value) -> str:
    """-12/13, or [6/5, -6/5] for one value per element."""
    return ValuePrinter().doprint(as_sympy(value))


def decimal(value: Value) -> str:
    """-0.9231, or [1.2, -1.2]: four significant digits."""
    return ValuePrinter(decimal=True).doprint(as_sympy(value))


def latex_value(value: Value) -> str:
    return LatexValuePrinter().doprint(as_sympy(value))


def latex_decimal(value: Value) -> str:
    return LatexValuePrinter(decimal=True).doprint(as_sympy(value))


def is_exact_decimal(value: Value) -> bool:
    """Whether the short decimal is the value itself (then the lesson writes = rather than ≈)."""
    values: Sequence[Fraction] = value if isinstance(value, tuple) else (value,)
    return all(Fraction(_short_decimal(float(v))) == v for v in values)


def with_decimal(value: Value) -> str:
    """'-12/13 ≈ -0.9231', '6/5 = 1.2', or '3' for a whole number."""
    text = exact(value)
    values = value if isinstance(value, tuple) else (value,)
    if all(v.denominator == 1 for v in values):
        return text
    sign = "=" if is_exact_decimal(value) else "≈"
    return f"{text} {sign} {decimal(value)}"


__all__ = [
    "Chain",
    "ChainProduct",
    "LatexValuePrinter",
    "NumPyPrinter",
    "TeachLatexPrinter",
    "TeachUnicodePrinter",
    "Value",
    "ValuePrinter",
    "as_sympy",
    "decimal",
    "exact",
    "is_exact_decimal",
    "latex",
    "latex_decimal",
    "latex_value",
    "numpy",
    "unicode",
    "with_decimal",
]
