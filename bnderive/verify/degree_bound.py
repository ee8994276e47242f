"""A degree bound for the randomized check (Schwartz–Zippel needs one).

For an index-notation expression, ``degree_bound`` returns (p, q): the expression, after the
radical elimination ε = r² − σ², is a ratio of polynomials in x, g, γ, β, r of total degrees at
most p and q.  The rules are the usual ones (deg(a·b) ≤ deg a + deg b; a sum over a common
denominator); a root b^(p/q) of a radicand that is a perfect q-th power (as √(σ²+ε) = r is) has
degree deg(b)·|p|/q, rounded up.  A sum over the reduction set keeps the degree of its summand
when the summand's denominator does not depend on the summation index, and is charged M times
otherwise (M is taken as the symbol's value when known, else 4096).
"""

from __future__ import annotations

import math

import sympy as sp

from bnderive.core import notation as N

_LEAF_DEGREE = {N.mu: 1, N.var: 2, N.ms: 2, N.eps: 2, N.gamma: 1, N.beta: 1}


def degree_bound(expr: sp.Expr, m: int = 4096) -> tuple[int, int]:
    if isinstance(expr, sp.Number) or expr == N.M or isinstance(expr, sp.KroneckerDelta):
        return (0, 0)
    if isinstance(expr, sp.Symbol):
        return (_LEAF_DEGREE.get(expr, 1), 0)
    if isinstance(expr, sp.Indexed):
        return (1, 0)
    if isinstance(expr, sp.Mul):
        parts = [degree_bound(a, m) for a in expr.args]
        return (sum(p for p, _ in parts), sum(q for _, q in parts))
    if isinstance(expr, sp.Add):
        parts = [degree_bound(a, m) for a in expr.args]
        den = sum(q for _, q in parts)
        return (max(p + den - q for p, q in parts), den)
    if isinstance(expr, sp.Pow):
        p, q = degree_bound(expr.base, m)
        e = expr.exp
        if not isinstance(e, sp.Rational):
            raise ValueError(f"symbolic exponent in {expr}")
        num = (abs(int(e.p)) * p, abs(int(e.p)) * q)
        num = (math.ceil(num[0] / int(e.q)), math.ceil(num[1] / int(e.q)))
        return num if e >= 0 else (num[1], num[0])
    if isinstance(expr, sp.Sum):
        p, q = degree_bound(expr.function, m)
        count = 1
        for index, _, _ in expr.limits:
            if q and _denominator_depends(expr.function, index):
                count *= m
        return (p + (count - 1) * q, count * q)
    raise ValueError(f"cannot bound the degree of {type(expr).__name__}")


def _denominator_depends(expr: sp.Expr, index: sp.Symbol) -> bool:
    for node in sp.preorder_traversal(expr):
        if isinstance(node, sp.Pow) and node.exp.is_negative and index in node.base.free_symbols:
            return True
    return False
