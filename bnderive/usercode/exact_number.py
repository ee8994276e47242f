"""Exact rationals that NumPy object arrays can compute with: the number type of the exact run.

This module is loaded by the child that runs a user's file (``child.py``), so it imports only the
standard library, NumPy and gmpy2, never the rest of bnderive.

Every input of the exact run is an object array of ``Exact`` numbers, rationals that NumPy's
object loops carry through ``np.sqrt``, ``np.mean``, ``np.var``, ``np.sum`` and ``**``: the
square root is exact because the inputs are chosen so that √(σ²+ε) is rational (a root that is
not rational raises ``NotExact``, and the run is then not exact).  A float literal in the user's
code (0.5, 1e-5, ``1./N``) becomes exact on contact: a short decimal is read as that decimal, a
float that is the nearest double to a fraction with a small denominator (1/3) as that fraction;
anything else is kept as the exact value of the double and reported (``CONVERSIONS``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np

try:  # C rationals: an order of magnitude faster than fractions.Fraction
    from gmpy2 import isqrt as _isqrt
    from gmpy2 import mpq as _Q
except ImportError:  # pragma: no cover - gmpy2 is a dependency
    _Q = Fraction  # type: ignore[assignment,misc]
    _isqrt = math.isqrt  # type: ignore[assignment]


class NotExact(ArithmeticError):
    """A value with no exact rational representation (an irrational root, NaN, ∞)."""


#: Float constants met during the run: (float, the fraction it was read as, how).
CONVERSIONS: dict[str, tuple[str, str]] = {}


def _float_to_q(value: float | np.floating) -> Any:
    """A float met in the user's code as an exact rational (see the module docstring)."""
    f = float(value)
    if not math.isfinite(f):
        raise NotExact(f"{f} has no exact value")
    if f == int(f) and abs(f) < 2**53:
        return _Q(int(f))
    text = str(value)  # the shortest repr, for float32 too
    digits = text.lower().split("e")[0].lstrip("-").replace(".", "").lstrip("0")
    if len(digits) <= 12:
        return _Q(Fraction(text))
    kind = type(value) if isinstance(value, np.floating) else float
    for bound in (10, 100, 1000, 10_000, 100_000, 1_000_000):
        candidate = Fraction(f).limit_denominator(bound)
        if kind(candidate.numerator / candidate.denominator) == value:
            CONVERSIONS.setdefault(text, (str(candidate), "fraction"))
            return _Q(candidate)
    exact = Fraction(f)
    CONVERSIONS.setdefault(text, (str(exact), "binary"))
    return _Q(exact)


def _coerce(other: Any) -> Any:
    if isinstance(other, Exact):
        return other.q
    if isinstance(other, bool | int | np.integer):
        return _Q(int(other))
    if isinstance(other, float | np.floating):
        return _float_to_q(other)
    if isinstance(other, Fraction):
        return _Q(other.numerator, other.denominator)
    if type(other) is type(_Q(0)):
        return other
    return NotImplemented


def _exact_root(q: Any, k: int) -> Any:
    """The k-th root of a rational, or NotExact."""
    num, den = int(q.numerator), int(q.denominator)
    if num < 0 and k % 2 == 0:
        raise NotExact(f"even root of the negative number {num}/{den}")

    def root(a: int) -> int:
        r = int(_isqrt(a)) if k == 2 else round(a ** (1.0 / k))
        for cand in (r - 1, r, r + 1):
            if cand >= 0 and cand**k == a:
                return cand
        raise NotExact(f"the root of order {k} of {q_text(q)} is not rational")

    sign = -1 if num < 0 else 1
    return _Q(sign * root(abs(num)), root(den))


class Exact:
    """An exact rational that NumPy object arrays can compute with."""

    __slots__ = ("q",)

    def __init__(self, value: Any = 0) -> None:
        if isinstance(value, str):
            self.q = _Q(Fraction(value))
        else:
            q = _coerce(value)
            if q is NotImplemented:
                raise TypeError(f"cannot make an exact number of {type(value).__name__}")
            self.q = q

    @classmethod
    def _of(cls, q: Any) -> Exact:
        out = cls.__new__(cls)
        out.q = q
        return out

    # arithmetic: the other operand is made exact first (floats on contact)
    def _binary(self, other: Any, op: Callable[[Any, Any], Any]) -> Any:
        o = _coerce(other)
        if o is NotImplemented:
            return NotImplemented
        return Exact._of(op(self.q, o))

    def __add__(self, o: Any) -> Any:
        return self._binary(o, lambda a, b: a + b)

    def __radd__(self, o: Any) -> Any:
        return self._binary(o, lambda a, b: b + a)

    def __sub__(self, o: Any) -> Any:
        return self._binary(o, lambda a, b: a - b)

    def __rsub__(self, o: Any) -> Any:
        return self._binary(o, lambda a, b: b - a)

    def __mul__(self, o: Any) -> Any:
        return self._binary(o, lambda a, b: a * b)

    def __rmul__(self, o: Any) -> Any:
        return self._binary(o, lambda a, b: b * a)

    def __truediv__(self, o: Any) -> Any:
        return self._binary(o, lambda a, b: a / b)

    def __rtruediv__(self, o: Any) -> Any:
        return self._binary(o, lambda a, b: b / a)

    def __neg__(self) -> Exact:
        return Exact._of(-self.q)

    def __pos__(self) -> Exact:
        return self

    def __abs__(self) -> Exact:
        return Exact._of(abs(self.q))

    def __pow__(self, exponent: Any) -> Any:
        e = _coerce(exponent)
        if e is NotImplemented:
            return NotImplemented
        p, k = int(e.numerator), int(e.denominator)
        base = self.q if k == 1 else _exact_root(self.q, k)
        if p < 0 and base == 0:
            raise ZeroDivisionError("0 to a negative power")
        return Exact._of(base**p)

    def __rpow__(self, base: Any) -> Any:
        b = _coerce(base)
        if b is NotImplemented:
            return NotImplemented
        return Exact._of(b) ** self

    # what NumPy's object loops call: np.sqrt, np.conjugate, .real (np.var), np.abs
    def sqrt(self) -> Exact:
        return Exact._of(_exact_root(self.q, 2))

    def conjugate(self) -> Exact:
        return self

    @property
    def real(self) -> Exact:
        return self

    @property
    def imag(self) -> Exact:
        return Exact._of(_Q(0))

    # comparisons and conversions
    def _compare(self, other: Any) -> Any:
        try:
            return _coerce(other)
        except NotExact:
            return NotImplemented

    def __eq__(self, o: object) -> bool:
        q = self._compare(o)
        return NotImplemented if q is NotImplemented else self.q == q

    def __lt__(self, o: Any) -> bool:
        q = self._compare(o)
        return NotImplemented if q is NotImplemented else self.q < q

    def __le__(self, o: Any) -> bool:
        q = self._compare(o)
        return NotImplemented if q is NotImplemented else self.q <= q

    def __gt__(self, o: Any) -> bool:
        q = self._compare(o)
        return NotImplemented if q is NotImplemented else self.q > q

    def __ge__(self, o: Any) -> bool:
        q = self._compare(o)
        return NotImplemented if q is NotImplemented else self.q >= q

    def __hash__(self) -> int:
        return hash(Fraction(int(self.q.numerator), int(self.q.denominator)))

    def __float__(self) -> float:
        return float(self.q)

    def __int__(self) -> int:
        return int(self.q)

    def __bool__(self) -> bool:
        return self.q != 0

    def __str__(self) -> str:
        return q_text(self.q)

    __repr__ = __str__


def q_text(q: Any) -> str:
    num, den = int(q.numerator), int(q.denominator)
    return str(num) if den == 1 else f"{num}/{den}"
