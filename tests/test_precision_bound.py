"""check-impl's rounding bound (``usercode/precision.py``), term by term and against real rounding.

The bound decides check-impl's float verdicts: a result within it of the truth is consistent
with rounding.  Too small, and a right float32 implementation is refuted; too large, and a wrong
one within it is accepted.  The mutation run of issue 10 item 11 found terms of it that no test
looked at.  Two kinds of test here:

* **it is a bound**: float16 and float32 computations of BatchNorm's forward and backward, by
  the algorithms real code uses (two-pass and one-pass variance, the fused dx of the Caffe and
  CS231n posts and the staged chain), stay within it of the float64 value at random inputs,
  including a large mean (where the one-pass variance cancels);
* **it is the documented one**: every entry equals the first-order propagation written in the
  module's docstring (Higham §2.2, §4.2), recomputed here element by element in plain Python
  from that table, so a term lost or doubled in the code is seen.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from bnderive.usercode.precision import (
    FACTOR,
    UNIT_ROUNDOFF,
    rounding_bounds,
    running_bound,
    unit_roundoff,
)

U = {"float16": 2.0**-11, "float32": 2.0**-24, "float64": 2.0**-53}


def documented(x, g, gamma, beta, eps, u, training=True, mu=0.0, var=1.0):
    """The docstring's table, transcribed element by element (lists, not arrays)."""
    m = len(x)
    ex = [u * abs(v) for v in x]
    eg = [u * abs(v) for v in g]
    e_gamma, e_beta, e_eps = u * abs(gamma), u * abs(beta), u * abs(eps)
    if training:
        mu = sum(x) / m
        e_mu = (m + 1) * u * sum(abs(v) for v in x) / m + sum(ex) / m
        xc = [v - mu for v in x]
        e_xc = [ex[k] + e_mu + u * (abs(x[k]) + abs(mu)) for k in range(m)]
        var = sum(c * c for c in xc) / m
        two_pass = sum(2 * abs(xc[k]) * e_xc[k] for k in range(m)) / m + (m + 2) * u * var
        one_pass = (
            (m + 2) * u * sum(v * v for v in x) / m
            + 2 * sum(abs(x[k]) * ex[k] for k in range(m)) / m
            + 2 * abs(mu) * e_mu
            + 2 * u * mu * mu
        )
        e_var = max(two_pass, one_pass)
    else:
        e_mu, e_var = u * abs(mu), u * abs(var)
        xc = [v - mu for v in x]
        e_xc = [ex[k] + e_mu + u * (abs(x[k]) + abs(mu)) for k in range(m)]
    s = var + eps
    e_s = e_var + e_eps + u * s
    r = math.sqrt(s)
    e_r = e_s / (2 * r) + u * r
    e_ir = e_r / r**2 + u / r
    xh = [c / r for c in xc]
    e_xh = [e_xc[k] / r + abs(xc[k]) * e_ir + u * abs(xh[k]) for k in range(m)]
    e_out = [
        abs(gamma) * e_xh[k]
        + e_gamma * abs(xh[k])
        + e_beta
        + 2 * u * (abs(gamma * xh[k]) + abs(beta))
        for k in range(m)
    ]
    dbeta = sum(g)
    dgamma = sum(g[k] * xh[k] for k in range(m))
    e_dbeta = sum(eg) + m * u * sum(abs(v) for v in g)
    e_dgamma = sum(
        eg[k] * abs(xh[k]) + abs(g[k]) * e_xh[k] + u * abs(g[k] * xh[k]) for k in range(m)
    ) + m * u * sum(abs(g[k] * xh[k]) for k in range(m))
    e_dx = []
    for k in range(m):
        if training:
            a = g[k] - dbeta / m - xh[k] * dgamma / m
            e_a = (
                eg[k]
                + e_dbeta / m
                + (e_xh[k] * abs(dgamma) + abs(xh[k]) * e_dgamma) / m
                + 3 * u * (abs(g[k]) + abs(dbeta) / m + abs(xh[k] * dgamma) / m)
            )
            dx = gamma / r * a
            e = (e_gamma / r + abs(gamma) * e_ir) * abs(a) + abs(gamma) * e_a / r
        else:
            dx = gamma * g[k] / r
            e = (e_gamma / r + abs(gamma) * e_ir) * abs(g[k]) + abs(gamma) * eg[k] / r
        e_dx.append(e + 2 * u * abs(dx))
    return {
        "out": [2 * e for e in e_out],
        "dx": [2 * e for e in e_dx],
        "dgamma": 2 * e_dgamma,
        "dbeta": 2 * e_dbeta,
        "mean": 2 * e_mu,
        "var": 2 * e_var,
    }


CASES = {
    "centred": ([0.5, -1.25, 2.0, -0.75, 1.5], [1.0, -2.0, 0.25, 3.0, -0.5], 1.5, -0.25, 1e-5),
    "a large mean": ([60.0, 58.0, 63.0, 61.0], [1.0, -2.0, 3.0, 0.5], 2.0, 1.0, 0.5),
    "negative γ, large ε": ([3.0, -7.0, 1.0], [-1.5, 0.5, 2.5], -0.75, 0.125, 4.0),
}


@pytest.mark.parametrize("training", [True, False], ids=["training", "eval"])
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("x, g, gamma, beta, eps", CASES.values(), ids=CASES.keys())
def test_the_bound_is_the_documented_propagation(x, g, gamma, beta, eps, dtype, training):
    stats = {} if training else {"running_mean": 1.75, "running_var": 2.5}
    got = rounding_bounds(
        np.array(x), np.array(g), gamma, beta, eps, dtype, training=training, **stats
    )
    want = documented(
        x, g, gamma, beta, eps, U[dtype], training, stats.get("running_mean", 0.0),
        stats.get("running_var", 1.0),
    )  # fmt: skip
    for name in ("out", "dx"):
        assert np.allclose(getattr(got, name), want[name], rtol=1e-12, atol=0), name
    for name in ("dgamma", "dbeta", "mean", "var"):
        assert math.isclose(getattr(got, name), want[name], rel_tol=1e-12), name


def test_the_constants():
    assert FACTOR == 2.0
    assert UNIT_ROUNDOFF == U
    assert unit_roundoff("float32") == 2.0**-24
    assert unit_roundoff("longdouble") == 2.0**-53  # wider than float64 counts as float64
    # the running update (1 − w)·old + w·batch: the batch's error, w and 1 − w rounded, two
    # products and a sum
    u = 2.0**-24
    assert math.isclose(
        running_bound(-3.0, 5.0, 1e-6, "float32"),
        2 * (1e-6 + u * 3.0 + 3 * u * (3.0 + 5.0)),
        rel_tol=1e-12,
    )


# -- it is a bound: real rounding stays within it ------------------------------------------------------
def _forward_backward(x, g, gamma, beta, eps, dtype, variance, staged):
    """BatchNorm over one reduction set, every operation in ``dtype`` (the styles of the CS231n
    assignment and the Caffe layer, as tests/impls/ writes them)."""
    t = np.dtype(dtype).type
    x, g = x.astype(dtype), g.astype(dtype)
    gamma, beta, eps, m = t(gamma), t(beta), t(eps), t(len(x))
    mu = x.sum(dtype=dtype) / m
    if variance == "two-pass":
        var = ((x - mu) ** 2).sum(dtype=dtype) / m
    else:
        var = (x * x).sum(dtype=dtype) / m - mu * mu
    inv = t(1) / np.sqrt(var + eps)
    xhat = (x - mu) * inv
    out = gamma * xhat + beta
    dbeta = g.sum(dtype=dtype)
    dgamma = (g * xhat).sum(dtype=dtype)
    if staged:  # dx̂, dσ², dμ, then dx (the staged chain)
        dxhat = g * gamma
        dvar = (dxhat * (x - mu)).sum(dtype=dtype) * t(-0.5) * inv**3
        dmu = -(dxhat * inv).sum(dtype=dtype) + dvar * (t(-2) * (x - mu)).sum(dtype=dtype) / m
        dx = dxhat * inv + dvar * t(2) * (x - mu) / m + dmu / m
    else:  # the fused form
        dx = gamma * inv / m * (m * g - dbeta - xhat * dgamma)
    return out, dx, dgamma, dbeta, mu, var


@pytest.mark.parametrize("staged", [False, True], ids=["fused dx", "staged dx"])
@pytest.mark.parametrize("variance", ["two-pass", "one-pass"])
@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_real_rounding_stays_within_the_bound(dtype, variance, staged):
    rng = np.random.default_rng(11)
    for trial in range(40):
        m = int(rng.integers(2, 9))
        shift = 0.0 if trial % 2 else float(rng.uniform(-20, 20))  # half of them off-centre
        x = (rng.normal(size=m) * rng.uniform(0.5, 3) + shift).astype(dtype).astype(float)
        g = rng.normal(size=m).astype(dtype).astype(float)
        gamma = float(np.array(rng.uniform(0.5, 2), dtype=dtype))
        beta = float(np.array(rng.uniform(-1, 1), dtype=dtype))
        eps = float(np.array(0.5, dtype=dtype))
        rounded = _forward_backward(x, g, gamma, beta, eps, dtype, variance, staged)
        exact = _forward_backward(x, g, gamma, beta, eps, "float64", "two-pass", False)
        bounds = rounding_bounds(x, g, gamma, beta, eps, dtype)
        names = ("out", "dx", "dgamma", "dbeta", "mean", "var")
        for name, got, want in zip(names, rounded, exact, strict=True):
            error = np.abs(np.asarray(got, dtype=float) - np.asarray(want, dtype=float))
            assert np.all(error <= getattr(bounds, name)), (trial, name, error)
