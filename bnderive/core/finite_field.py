"""Exact evaluation in the prime field F_p, vectorized: the fast screen of the random method.

Schwartz–Zippel holds over any field: a nonzero polynomial of degree d vanishes at a uniformly
random point of F_p^n with probability at most d/p.  With p = 2³¹ − 1 every product of two
residues fits in int64, so whole arrays of M = 4096 elements are evaluated by NumPy instead of
element by element in Python rationals.  The radical is handled as in the exact method: the
point fixes r and sets ε = r² − σ², so √(σ² + ε) is r; a root of anything else is not decided
here (``NotRational``) and the caller falls back to rational arithmetic.  A value that is not
zero mod p proves the rational function nonzero (its reduction mod p would vanish otherwise);
a division by a multiple of p makes the point unusable (``ZeroDivisionError``, "not decided in
F_p": a form's line that divides by one, such as a constant 1/p, is then checked in rational
arithmetic instead, where 1/p is not 0).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sympy as sp

from bnderive.core.evaluate import Backend, NotRational

P = 2**31 - 1  # a Mersenne prime: products of residues stay below 2^62


def _add(a: Any, b: Any) -> Any:
    return (a + b) % P


def _mul(a: Any, b: Any) -> Any:
    return (a * b) % P


def _pow_pos(v: Any, n: int) -> Any:
    result: Any = 1
    base = v
    while n:
        if n & 1:
            result = (result * base) % P
        base = (base * base) % P
        n >>= 1
    return result


def _power(v: Any, n: int) -> Any:
    if n >= 0:
        return _pow_pos(v, n)
    if np.any(np.asarray(v) % P == 0):
        raise ZeroDivisionError("division by a multiple of p: not decided in F_p")
    return _pow_pos(_pow_pos(v, P - 2), -n)  # Fermat: v^(p−2) = 1/v


def _number(r: sp.Rational) -> int:
    q = int(r.q) % P
    if q == 0:
        raise ZeroDivisionError("a denominator divisible by p: not decided in F_p")
    return (int(r.p) % P) * pow(q, P - 2, P) % P


def _total(arr: np.ndarray) -> Any:
    # At most 4096 (or so) residues below 2^31: the sum stays far below 2^63.
    return np.sum(arr, axis=-1) % P


def _full(m: int, value: Any) -> np.ndarray:
    return np.full(m, int(value) % P, dtype=np.int64)


def modular_backend(r: int) -> Backend:
    """The F_p backend for a point whose √(σ²+ε) is ``r``."""
    r2 = r * r % P

    def root(value: Any, exponent: sp.Rational) -> Any:
        if not (2 * exponent).is_integer or not np.all(np.asarray(value) % P == r2):
            raise NotRational("a radical other than √(σ²+ε): not decided in F_p")
        return _power(np.int64(r) if isinstance(value, np.ndarray) else r, int(2 * exponent))

    return Backend("modular", _number, root, _total, _add, _mul, _power, _full)
