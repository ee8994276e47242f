"""The randomized method's degree bound, value by value (``verify/degree_bound.py``).

The randomized "holds" is a Schwartz–Zippel bound (d/S)^trials, and d comes from here: a bound
below the true degree makes a false "holds" more likely than the verdict says (and a degree near
S/2 would say "holds" where agreement proves nothing).  The mutation run of issue 10 item 11
found no test that looked at a value of this function, so every rule is fixed here on an
expression whose degrees are known: for the radical-free ones they are recomputed independently
(the sums expanded at the explicit M, the expression put over a common denominator by SymPy, the
total degrees of its numerator and denominator, with σ², ε and the mean square counted as degree
2 as the radical elimination ε = r² − σ² makes them); the radical ones are worked out in the
comments.  On each of these the bound is tight, so it must equal the true degree.
"""

from __future__ import annotations

import pytest
import sympy as sp

from bnderive.core import notation as N
from bnderive.verify.degree_bound import degree_bound

i, j, k = N.i, N.j, N.k
x, g = N.x, N.g
#: The degree-2 leaves (σ², ε, the mean square) written as products of two fresh symbols.
_PAIRS = {s: sp.Symbol(f"{s}_a") * sp.Symbol(f"{s}_b") for s in (N.var, N.eps, N.ms)}


def true_degrees(expr: sp.Expr, m: int) -> tuple[int, int]:
    """Total degrees of the numerator and the denominator of ``expr`` over a common denominator,
    its sums expanded with M = m (no radicals)."""
    expanded = expr.xreplace({N.M: m}).doit().xreplace(_PAIRS)
    elements = {e: sp.Symbol(str(e)) for e in expanded.atoms(sp.Indexed)}
    numerator, denominator = sp.fraction(sp.together(expanded.xreplace(elements)))
    gens = sorted(numerator.free_symbols | denominator.free_symbols, key=str)
    if not gens:
        return (0, 0)
    return (
        sp.Poly(numerator, *gens).total_degree(),
        sp.Poly(denominator, *gens).total_degree(),
    )


#: (expression, M, the degrees) for radical-free expressions: recomputed by ``true_degrees``.
RATIONAL_CASES = {
    "an element": (x[i], 4, (1, 0)),
    "γ": (N.gamma, 4, (1, 0)),
    "β": (N.beta, 4, (1, 0)),
    "μ": (N.mu, 4, (1, 0)),
    "σ²": (N.var, 4, (2, 0)),
    "ε": (N.eps, 4, (2, 0)),
    "the mean square": (N.ms, 4, (2, 0)),
    "a number": (sp.Rational(3, 7), 4, (0, 0)),
    "a product": (N.gamma * x[i] * g[i], 4, (3, 0)),
    "a quotient": (x[i] / (g[i] * N.gamma), 4, (1, 2)),
    "a sum over one denominator": (x[i] / g[i] + N.gamma, 4, (2, 1)),
    "a sum over two denominators": (1 / x[i] + 1 / g[i] + N.gamma, 4, (3, 2)),
    "a power": ((x[i] + g[i]) ** 3, 4, (3, 0)),
    "a negative power": ((x[i] + N.var) ** -2, 4, (0, 4)),
    "σ² over a product": (N.var / (x[i] * g[i]), 4, (2, 2)),
    "a sum of products": (sp.Sum(g[k] * x[k], (k, 1, N.M)), 3, (2, 0)),
    "a sum of squares": (sp.Sum(x[k] ** 2, (k, 1, N.M)), 3, (2, 0)),
    # the summand's denominator depends on k: M fractions over a common denominator
    "a sum of fractions": (sp.Sum(1 / (x[k] + g[k]), (k, 1, N.M)), 3, (2, 3)),
    # ... and here it does not: one denominator, whatever M is
    "a sum over a fixed denominator": (sp.Sum(x[k] / g[i], (k, 1, N.M)), 3, (1, 1)),
    "a double sum of fractions": (
        sp.Sum(1 / (x[k] + g[j]), (k, 1, N.M), (j, 1, N.M)),
        2,
        (3, 4),
    ),
}


@pytest.mark.parametrize("expr, m, degrees", RATIONAL_CASES.values(), ids=RATIONAL_CASES.keys())
def test_the_bound_on_a_rational_expression_is_its_true_degree(expr, m, degrees):
    assert true_degrees(expr, m) == degrees  # the table is right
    assert degree_bound(expr, m) == degrees


#: Roots: r = √(σ²+ε) has degree 1 (the elimination ε = r² − σ² makes σ² + ε = r²).
RADICAL_CASES = {
    "γ/√(σ²+ε) = γ/r": (N.gamma / sp.sqrt(N.var + N.eps), (1, 1)),
    "(σ²+ε)^(3/2) = r³": ((N.var + N.eps) ** sp.Rational(3, 2), (3, 0)),
    "(σ²+ε)^(−3/2) = 1/r³": ((N.var + N.eps) ** sp.Rational(-3, 2), (0, 3)),
    # a root of a radicand of odd degree is rounded up: √(x+g) counts as degree 1
    "√(x+g)": (sp.sqrt(x[i] + g[i]), (1, 0)),
    "(x+g)^(−1/2)": (1 / sp.sqrt(x[i] + g[i]), (0, 1)),
    # the root of a quotient: √x/√g, each side rounded up
    "√(x/g)": (sp.sqrt(x[i] / g[i]), (1, 1)),
    "√((σ²+ε)/g²)": (sp.Pow((N.var + N.eps) / g[i] ** 2, sp.Rational(1, 2)), (1, 1)),
    # the Caffe form's dx: γ/r·(g_i − Σg/M − x̂_i Σ g x̂/M) with x̂ = (x − μ)/r is
    # γ·(g_i r² − r² Σg/M − (x_i − μ) Σ g (x − μ)/M) / r³: degrees 1 + 3 and 3
    "Caffe's dx": (
        N.gamma
        / sp.sqrt(N.var + N.eps)
        * (
            g[i]
            - sp.Sum(g[k], (k, 1, N.M)) / N.M
            - (x[i] - N.mu)
            / sp.sqrt(N.var + N.eps)
            * sp.Sum(g[k] * (x[k] - N.mu) / sp.sqrt(N.var + N.eps), (k, 1, N.M))
            / N.M
        ),
        (4, 3),
    ),
}


@pytest.mark.parametrize("expr, degrees", RADICAL_CASES.values(), ids=RADICAL_CASES.keys())
def test_the_bound_on_a_root(expr, degrees):
    assert degree_bound(expr, 8) == degrees


def test_a_sum_whose_denominator_depends_on_the_index_is_charged_m_times():
    fractions = sp.Sum(1 / (x[k] + g[k]), (k, 1, N.M))
    assert degree_bound(fractions) == (4095, 4096)  # M = 4096 when it is not given
    assert degree_bound(fractions, 10) == (9, 10)


def test_the_symbols_of_no_degree():
    assert degree_bound(N.M) == (0, 0)
    assert degree_bound(sp.KroneckerDelta(i, k)) == (0, 0)
    assert degree_bound(sp.Symbol("t")) == (1, 0)  # any other symbol: a variable


@pytest.mark.parametrize(
    "expr",
    [x[i] ** N.M, sp.sin(x[i]), sp.exp(N.gamma)],
    ids=["symbolic exponent", "sin", "exp"],
)
def test_what_it_cannot_bound_is_an_error_not_a_guess(expr):
    """The caller turns the error into "no degree bound: undecided" (tests/test_soundness_paths)."""
    with pytest.raises(ValueError):
        degree_bound(expr)
