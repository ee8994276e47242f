"""Matrix notation over the batch, translated into index form where its meaning is certain.

Some posts write the backward pass with vectors over the batch (Yeh 2017: ``\\frac{1}{N} R^T R``,
``\\hat{X}^T \\frac{\\partial J}{\\partial Y}``, ``(I - \\frac{1}{N}\\mathbf{1}) X``,
``[-\\frac{1}{N}\\hat{X}\\hat{X}^T + I]\\frac{\\partial J}{\\partial \\hat{X}}``).  Each factor
has a shape: a scalar (one number per channel: μ, σ², γ, ∂L/∂β), a column vector over the batch
(X, \\hat{X}, X − μ, ∂J/∂Y, tfjgeorge's column y_i of feature i: its element is the reader's
value at the row index), its transpose
(a row vector), or an M×M matrix (I, the matrix of ones \\mathbf{1}, an outer product u v^T);
\\mathbf{1} transposed, 1 1^⊤, is the vector of ones (``latex_meaning.matrix_value``).
A product is the matrix product: a row times a column is the sum over the batch, a matrix
times a column the sum over its second index, a column times a row the outer product.  A
product the shapes do not allow (two columns side by side, a matrix plus a scalar) has no
certain meaning and is refused, never guessed; so is a result that is a matrix or a row.

Values are SymPy expressions in index form: ``row`` (the reader's bare element) indexes a
column, ``COL`` a row vector's element and a matrix's second index; a sum is
``notation.reduce_sum`` over a fresh index, as the reader writes Σ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sympy as sp

from bnderive.core import notation as N

#: a row vector's element, a matrix's second (column) index
COL = sp.Symbol("_col", integer=True)
#: the largest value one step may build (nodes of the expression): a derivation's matrix
#: expression is small, and a hostile product of 25 sums must not expand into 2^25 terms
MATRIX_NODES = 4000

SHAPE_WORDS = {"s": "a scalar", "c": "a column vector", "r": "a row vector", "m": "a matrix"}


class ShapeError(Exception):
    """Matrix notation whose meaning the shapes do not decide."""


@dataclass(frozen=True)
class Shaped:
    """A value with its shape: ``s`` scalar, ``c`` column, ``r`` row, ``m`` matrix."""

    kind: str
    expr: sp.Expr


def _terms_with_delta(expr: sp.Expr, k: sp.Symbol) -> list[sp.Expr]:
    """``expr`` as a sum of terms, distributed only over the sums that hold a δ of ``k``
    ((δ_ik − 1/M) f_k is δ_ik f_k − f_k/M); everything else keeps its form."""
    out: list[sp.Expr] = []
    if len(sp.Add.make_args(expr)) > MATRIX_NODES // 20:
        raise ShapeError(_TOO_LARGE)
    for term in sp.Add.make_args(expr):
        factors = sp.Mul.make_args(term)
        split = next(
            (
                f
                for f in factors
                if isinstance(f, sp.Add)
                and any(k in d.free_symbols for d in f.atoms(sp.KroneckerDelta))
            ),
            None,
        )
        if split is None:
            out.append(term)
            continue
        rest = sp.Mul(*[f for f in factors if f is not split])
        for part in sp.Add.make_args(split):
            out += _terms_with_delta(rest * part, k)
            if len(out) > MATRIX_NODES // 20:
                raise ShapeError(_TOO_LARGE)
    return out


_TOO_LARGE = f"too large to write in index form (beyond {MATRIX_NODES:,} nodes)"


def bounded(a: Shaped) -> Shaped:
    """``a``, or ShapeError when its expression has more than MATRIX_NODES nodes."""
    for count, _ in enumerate(sp.preorder_traversal(a.expr)):
        if count > MATRIX_NODES:
            raise ShapeError(_TOO_LARGE)
    return a


def _sum_term(term: sp.Expr, k: sp.Symbol) -> sp.Expr:
    """Σ_k of one term of a product: a Kronecker δ_kj picks k = j (Σ_k δ_kj f_k = f_j), the
    factors without k come out of the sum, and a term without k is M times itself."""
    factors = sp.Mul.make_args(term)
    for f in factors:
        if isinstance(f, sp.KroneckerDelta) and k in f.free_symbols:
            other = f.args[1] if f.args[0] == k else f.args[0]
            if k not in other.free_symbols:
                rest = sp.Mul(*[g for g in factors if g is not f])
                return rest.xreplace({k: other})
    outside = sp.Mul(*[f for f in factors if k not in f.free_symbols])
    inside = sp.Mul(*[f for f in factors if k in f.free_symbols])
    if inside == 1:
        return N.M * outside
    return outside * N.reduce_sum(inside, k)


@dataclass
class MatrixAlgebra:
    """The operations on shaped values; ``row`` is the column vectors' element, ``fresh``
    gives a new index for a sum over the batch."""

    row: sp.Symbol
    fresh: Callable[[], sp.Symbol]

    def leaf(self, expr: sp.Expr) -> Shaped:
        """A value the reader read (an element at ``row``, or a number per channel)."""
        return Shaped("c" if self.row in expr.free_symbols else "s", expr)

    def identity(self) -> Shaped:
        return Shaped("m", sp.KroneckerDelta(self.row, COL))

    @staticmethod
    def ones(kind: str) -> Shaped:
        """The matrix of ones (``m``), the vector of ones (``c``), or its transpose (``r``)."""
        return Shaped(kind, sp.Integer(1))

    def transpose(self, a: Shaped) -> Shaped:
        swap = {self.row: COL, COL: self.row}
        kind = {"s": "s", "c": "r", "r": "c", "m": "m"}[a.kind]
        return Shaped(kind, a.expr.xreplace(swap))

    def contract(self, a: sp.Expr, b: sp.Expr) -> sp.Expr:
        """Σ_k a[COL = k] b[row = k]: the inner index of a matrix product."""
        if a == sp.KroneckerDelta(self.row, COL):
            return b  # I b
        if b == sp.KroneckerDelta(self.row, COL):
            return a  # a I
        k = self.fresh()
        body = a.xreplace({COL: k}) * b.xreplace({self.row: k})
        return sp.Add(*[_sum_term(term, k) for term in _terms_with_delta(body, k)])

    def multiply(self, a: Shaped, b: Shaped) -> Shaped:
        return bounded(self._multiply(a, b))

    def _multiply(self, a: Shaped, b: Shaped) -> Shaped:
        if a.kind == "s" or b.kind == "s":
            return Shaped(b.kind if a.kind == "s" else a.kind, a.expr * b.expr)
        if a.kind == "c" and b.kind == "r":
            return Shaped("m", a.expr * b.expr)  # the outer product u v^T
        after = {("r", "c"): "s", ("m", "c"): "c", ("r", "m"): "r", ("m", "m"): "m"}
        kind = after.get((a.kind, b.kind))
        if kind is None:
            raise ShapeError(
                f"{SHAPE_WORDS[a.kind]} times {SHAPE_WORDS[b.kind]}: not a matrix product, "
                "and an elementwise one is not what matrix notation writes"
            )
        return Shaped(kind, self.contract(a.expr, b.expr))

    def add(self, a: Shaped, b: Shaped) -> Shaped:
        return bounded(self._add(a, b))

    def _add(self, a: Shaped, b: Shaped) -> Shaped:
        """a + b: the same shapes, or a vector and a number per channel (X − μ broadcasts μ,
        as every post means it); a matrix and a scalar (I − 1/N) has no certain meaning."""
        if a.kind == b.kind:
            return Shaped(a.kind, a.expr + b.expr)
        kinds = {a.kind, b.kind}
        if kinds in ({"c", "s"}, {"r", "s"}):
            return Shaped((kinds - {"s"}).pop(), a.expr + b.expr)
        raise ShapeError(f"{SHAPE_WORDS[a.kind]} plus {SHAPE_WORDS[b.kind]}: the shapes do not add")

    def divide(self, a: Shaped, b: Shaped) -> Shaped:
        if b.kind != "s":
            raise ShapeError(f"a division by {SHAPE_WORDS[b.kind]}")
        return Shaped(a.kind, a.expr / b.expr)

    def power(self, a: Shaped, exponent: sp.Expr) -> Shaped:
        if a.kind != "s":
            raise ShapeError(f"a power of {SHAPE_WORDS[a.kind]}")
        return Shaped("s", a.expr**exponent)

    def value(self, a: Shaped) -> sp.Expr:
        """A line's side: a scalar, or a column vector's element at ``row``."""
        if a.kind in ("r", "m"):
            raise ShapeError(
                f"the expression is {SHAPE_WORDS[a.kind]}: bnderive checks the vectors over "
                "the batch and the numbers per channel a line states"
            )
        return a.expr
