"""The exact reference: ∂L/∂x of BatchNorm's training graph at float inputs, without rounding.

The inputs a float study starts from (x, g, γ, ε in float32, float16, …) are binary fractions,
so they are exact rationals.  At them every quantity of the graph is rational except the one
radical r = √(σ² + ε) (DESIGN §4): with the forward stages μ = Σx/M and σ² = Σ(x − μ)²/M and
the ground truth's ∂L/∂x regrouped per element,

    ∂L/∂x_i = (1/r) · A_i,   A_i = γ·[g_i − Σg/M − (x_i − μ)·Σ g(x − μ)/(M·r²)],   r² = σ² + ε,

where A_i and r² are exact rationals (gmpy2).  The one irrational factor 1/r is taken to 128
bits with an integer square root, and each ∂L/∂x_i is kept as a pair of float64 numbers
(hi + lo, about 32 significant digits) so that a float result's error is measured without the
reference adding its own.  ``tests/test_stability.py`` checks ``A_i/r`` against the ground truth
of ``core.derive`` evaluated exactly (at inputs where r is rational).
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from bnderive.core.evaluate import rational

#: Bits of the rational approximation of 1/r (float64 has 53).
_BITS = 128


@dataclass(frozen=True)
class ExactGradient:
    """∂L/∂x_i = A_i / √d exactly; ``hi + lo`` its value to about 32 digits."""

    numerators: tuple  # A_i, exact rationals
    radicand: object  # d = σ² + ε, an exact rational
    hi: np.ndarray  # float64, correctly rounded ∂L/∂x
    lo: np.ndarray  # float64, the rest: hi + lo is good to about 2^-106 relatively

    @property
    def root(self) -> Fraction | None:
        """√d when it is rational (then A_i / √d is the gradient exactly), else None."""
        d = Fraction(int(self.radicand.numerator), int(self.radicand.denominator))
        p, q = math.isqrt(d.numerator), math.isqrt(d.denominator)
        return Fraction(p, q) if p * p == d.numerator and q * q == d.denominator else None


def exact_statistics(x: np.ndarray) -> tuple[object, object]:
    """μ and the biased σ² of float values, exactly (rationals)."""
    values = _exact(x)
    m = len(values)
    total = sum(values, rational(0))
    return total / m, _biased_variance(values, total)


def exact_dx(x: np.ndarray, g: np.ndarray, gamma: float, eps: float) -> ExactGradient:
    """The exact ∂L/∂x of one reduction set at float inputs (any float dtype; read exactly)."""
    xs, gs = _exact(x), _exact(g)
    if len(xs) != len(gs) or not xs:
        raise ValueError("x and g must have the same, non-zero length")
    if not all(math.isfinite(float(v)) for v in (*np.asarray(x).ravel(), gamma, eps)):
        raise ValueError("the inputs must be finite")
    m = len(xs)
    gam, e = rational(Fraction(float(gamma))), rational(Fraction(float(eps)))
    total = sum(xs, rational(0))
    mu = total / m
    d = _biased_variance(xs, total) + e
    if d <= 0:
        raise ValueError("σ² + ε must be positive")
    mean_g = sum(gs, rational(0)) / m
    # Σ g(x − μ) = Σ g·x − μ·Σ g, exactly
    sgx = sum(map(operator.mul, gs, xs), rational(0)) - mu * mean_g * m
    k = sgx / (m * d)
    numerators = tuple(gam * (gv - mean_g - (xv - mu) * k) for gv, xv in zip(gs, xs, strict=True))
    inv_r = _inverse_root(d)
    hi = np.empty(m)
    lo = np.empty(m)
    for j, a in enumerate(numerators):
        v = a * inv_r
        h = float(v)
        hi[j] = h
        lo[j] = float(v - rational(h))
    return ExactGradient(numerators, d, hi, lo)


def _exact(values: np.ndarray) -> list:
    """Float values as exact rationals (a binary float is one)."""
    return [rational(float(v)) for v in np.asarray(values).ravel()]


def _biased_variance(values: list, total: object) -> object:
    """Σ(x − μ)²/M = (M·Σx² − (Σx)²)/M², exactly (no rounding, so no cancellation)."""
    m = len(values)
    squares = sum((v * v for v in values), rational(0))
    return (m * squares - total * total) / (m * m)


def _inverse_root(d: object) -> object:
    """1/√d to about 2^-_BITS relatively, as an exact rational (d > 0 rational)."""
    p, q = int(d.numerator), int(d.denominator)
    # 1/√(p/q) = √(p·q)/p; scale p·q by 4^s so its root has _BITS + 8 bits.
    s = max(0, (2 * (_BITS + 8) - (p * q).bit_length()) // 2 + 1)
    root = math.isqrt((p * q) << (2 * s))
    return rational(Fraction(root, p << s))


def relative_error(got: np.ndarray, want: ExactGradient) -> float:
    """max_i |got_i − dx_i| / max_i |dx_i| (the normwise relative error; inf or NaN values
    give inf)."""
    values = np.asarray(got, dtype=np.float64).ravel()
    if values.shape != want.hi.shape:
        raise ValueError(f"{values.shape} values for {want.hi.shape} references")
    if not np.all(np.isfinite(values)):
        return math.inf
    scale = float(np.max(np.abs(want.hi)))
    diff = (values - want.hi) - want.lo
    return float(np.max(np.abs(diff))) / scale if scale > 0 else math.inf
