"""Evaluation of index notation on one reduction set: sums, deltas, fixed elements, exact roots."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from bnderive import EvaluationError, FormError, Mode, Spec, find_form
from bnderive.core import notation as N
from bnderive.core.evaluate import RATIONAL, SYMBOLIC, Env, NotRational, evaluate, rational
from bnderive.core.points import point_env, random_point
from bnderive.verify.lines import form_definitions, run_lines

X = [3, -1, 4, 1, -5]
G = [2, 7, -1, 8, -2]


def as_fraction(value) -> Fraction:
    """A value of either backend (gmpy2.mpq, Fraction or a SymPy Rational) as a Fraction."""
    if isinstance(value, sp.Basic):
        assert value.is_Rational, value
        return Fraction(int(value.p), int(value.q))
    return Fraction(int(value.numerator), int(value.denominator))


def rational_env(**scalars) -> Env:
    env = Env(len(X), RATIONAL)
    env.arrays["x"] = np.array([rational(v) for v in X], dtype=object)
    env.arrays["g"] = np.array([rational(v) for v in G], dtype=object)
    for name, value in scalars.items():
        env.scalars[name] = rational(value)
    return env


def symbolic_env_here(**scalars) -> Env:
    env = Env(len(X), SYMBOLIC)
    env.arrays["x"] = np.array([sp.Integer(v) for v in X], dtype=object)
    env.arrays["g"] = np.array([sp.Integer(v) for v in G], dtype=object)
    for name, value in scalars.items():
        env.scalars[name] = sp.Rational(value)
    return env


def ev(text: str, env: Env, index=None):
    value = evaluate(N.parse(text), env, index)
    if index is None:
        return as_fraction(value)
    return [as_fraction(v) for v in value]


@pytest.fixture(params=["rational", "symbolic"])
def env(request) -> Env:
    make = rational_env if request.param == "rational" else symbolic_env_here
    return make(gamma=Fraction(3, 2), mu=Fraction(2, 5))


def test_elementwise_and_scalar_values(env):
    assert ev("x[i]*g[i] + gamma", env, N.i) == [
        Fraction(a * b) + Fraction(3, 2) for a, b in zip(X, G, strict=True)
    ]
    assert ev("sum(x[k]*g[k], k)", env) == sum(a * b for a, b in zip(X, G, strict=True))
    assert ev("M", env) == len(X)


def test_kronecker_delta_picks_one_element(env):
    # Σ_k δ_ik f(k) = f(i), at every i
    assert ev("sum(delta(i, k)*x[k]**2*g[k], k)", env, N.i) == [
        a * a * b for a, b in zip(X, G, strict=True)
    ]
    assert ev("sum(delta(k, i)*(x[k] - mu), k)", env, N.i) == [a - Fraction(2, 5) for a in X]
    # a delta in a sum of terms, and one that is not summed over
    assert ev("sum((delta(i, k) + 1)*x[k], k)", env, N.i) == [a + sum(X) for a in X]
    assert ev("delta(i, 2)*g[i]", env, N.i) == [b if n == 1 else 0 for n, b in enumerate(G)]


def test_delta_derivative_of_the_mean(env):
    # ∂μ/∂x_i written with deltas: Σ_k δ_ki / M = 1/M at every element
    assert ev("sum(delta(k, i), k)/M", env, N.i) == [Fraction(1, len(X))] * len(X)


def test_nested_sums(env):
    assert ev("sum(sum(x[k]*g[l], l), k)", env) == sum(X) * sum(G)
    assert ev("sum(sum(delta(k, l)*x[k]*g[l], l), k)", env) == sum(
        a * b for a, b in zip(X, G, strict=True)
    )
    # an inner sum that depends on the outer index
    assert ev("sum(x[k]*sum(g[l]*x[l] - x[k], l), k)", env) == sum(
        a * sum(b * c - a for b, c in zip(G, X, strict=True)) for a in X
    )
    # a sum over k with the free index i inside
    assert ev("sum(x[k]*g[i], k)", env, N.i) == [sum(X) * b for b in G]


def test_constant_summands(env):
    m = len(X)
    assert ev("sum(1, k)", env) == m
    assert ev("sum(gamma, k)", env) == m * Fraction(3, 2)
    assert ev("sum(sum(1, l), k)", env) == m * m
    assert ev("sum(x[i], k)", env, N.i) == [m * a for a in X]


def test_fixed_element_indices(env):
    assert ev("x[2]", env) == X[1]
    assert ev("x[1] + g[5]", env) == X[0] + G[4]
    assert ev("x[i] - x[3]", env, N.i) == [a - X[2] for a in X]
    with pytest.raises(EvaluationError, match="outside 1..M"):
        evaluate(N.parse("x[6]"), env)  # M = 5 here; a larger M has an element 6
    with pytest.raises(FormError, match="by its number 1..M"):
        N.parse("x[0]")  # no M has an element 0: refused when read


def test_free_index_in_a_scalar_is_an_error(env):
    with pytest.raises(EvaluationError, match="free index"):
        evaluate(N.parse("x[i]*gamma"), env)


def test_undefined_names_and_bad_ranges(env):
    with pytest.raises(EvaluationError, match="earlier line"):
        evaluate(N.parse("dvar*gamma"), env)
    with pytest.raises(EvaluationError, match="earlier line"):
        evaluate(N.parse("dxhat[i]"), env, N.i)
    with pytest.raises(EvaluationError, match="from 1 to M"):
        evaluate(sp.Sum(N.x[N.k], (N.k, 1, 2)), env)


def test_division_by_zero_is_an_evaluation_error():
    env = rational_env(gamma=0)
    with pytest.raises(EvaluationError, match="divides by zero"):
        evaluate(N.parse("(gamma)**(-1)"), env)


@pytest.mark.parametrize(
    ("value", "exponent", "want"),
    [
        (Fraction(9, 4), "1/2", Fraction(3, 2)),
        (Fraction(9, 4), "-1/2", Fraction(2, 3)),
        (Fraction(4), "-3/2", Fraction(1, 8)),
        (Fraction(27, 8), "2/3", Fraction(9, 4)),
        (Fraction(-8), "1/3", Fraction(-2)),
        (Fraction(0), "1/2", Fraction(0)),
        (Fraction(10**40), "1/2", Fraction(10**20)),
        (Fraction((2**61 - 1) ** 2, 9), "1/2", Fraction(2**61 - 1, 3)),
    ],
)
def test_exact_roots_of_perfect_powers(value, exponent, want):
    env = Env(1, RATIONAL, scalars={"var": rational(value)})
    got = evaluate(N.parse(f"var**({exponent})"), env)
    assert as_fraction(got) == want
    assert got ** int(sp.Rational(exponent).q) == rational(value) ** int(sp.Rational(exponent).p)


@pytest.mark.parametrize(
    ("value", "exponent"),
    [
        (Fraction(2), "1/2"),
        (Fraction(9, 2), "1/2"),
        (Fraction(3, 4), "-1/2"),
        (Fraction(4), "1/3"),
        (Fraction(-4), "1/2"),
        (Fraction(10**40 + 1), "1/2"),
        (Fraction((2**61 - 1) ** 2 + 1), "-3/2"),
    ],
)
def test_roots_that_are_not_rational_raise(value, exponent):
    env = Env(1, RATIONAL, scalars={"var": rational(value)})
    with pytest.raises(NotRational):
        evaluate(N.parse(f"var**({exponent})"), env)


def test_symbolic_backend_keeps_irrational_roots_exact():
    env = Env(1, SYMBOLIC, scalars={"var": sp.Integer(2)})
    value = evaluate(N.parse("var**(-3/2)"), env)
    assert value == sp.sqrt(2) / 4
    assert not value.is_Rational


# -- the two exact backends agree -------------------------------------------------------------------
@st.composite
def points(draw):
    m = draw(st.integers(min_value=2, max_value=6))
    x = draw(st.lists(st.integers(-6, 6), min_size=m, max_size=m))
    g = draw(st.lists(st.integers(-6, 6), min_size=m, max_size=m))
    gamma = draw(st.integers(-5, 5).filter(lambda v: v not in (0, 1)))
    beta = draw(st.integers(-5, 5))
    # σ² = (M Σx² − (Σx)²)/M²: choose r > √σ² so that ε = r² − σ² > 0 and √(σ²+ε) = r
    var = Fraction(m * sum(v * v for v in x) - sum(x) ** 2, m * m)
    d = draw(st.sampled_from([1, 2, 3]))
    r = Fraction(math.isqrt(math.ceil(var * d * d)) + 1 + draw(st.integers(0, 3)), d)
    assert r * r > var
    return m, {"x": x, "g": g, "gamma": gamma, "beta": beta, "r": r}


@settings(max_examples=40, deadline=None)
@given(points())
def test_rational_and_symbolic_backends_agree_on_the_compact_form(case):
    m, point = case
    spec = Spec(Mode.PER_ACTIVATION, n=m, c=1)
    full = random_point(spec, 0, 5)  # every key the environment wants (e.g. double backward)
    full.update(point)
    full.pop("eps", None)
    form = find_form("compact")
    values = {}
    for backend in (RATIONAL, SYMBOLIC):
        inst = point_env(spec, 0, full, backend)
        out = run_lines(form_definitions(form), inst.env)
        assert not out.errors, out.errors
        assert as_fraction(inst.env.scalars["eps"]) > 0
        values[backend.name] = (
            [as_fraction(v) for v in out.values["dx"]],
            as_fraction(out.values["dgamma"]),
            as_fraction(out.values["dbeta"]),
        )
    assert values["rational"] == values["symbolic"]
    dx, _, dbeta = values["rational"]
    assert dbeta == sum(point["g"])
    assert sum(dx) == 0  # in training the gradient of x sums to zero over the set
