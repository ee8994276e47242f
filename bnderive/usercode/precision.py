"""How far from the truth rounding can put a BatchNorm result: a derived error bound per entry.

A result computed in floating point differs from the exact value by rounding; how much depends
on the dtype (its unit roundoff u: 2⁻¹¹ float16, 2⁻²⁴ float32, 2⁻⁵³ float64), on the inputs
(a large mean makes x − μ and the variance cancel) and on the size M of the reduction.  Instead of
a fixed count of ulps, ``rounding_bounds`` bounds the error of every entry by propagating the
standard model of floating-point arithmetic through the computation (Higham, *Accuracy and
Stability of Numerical Algorithms*, §2.2 and §4.2):

    fl(a ∘ b) = (a ∘ b)(1 + δ),  |δ| ≤ u            (one operation)
    |fl(Σ aᵢ) − Σ aᵢ| ≤ (n − 1)·u·Σ|aᵢ| + O(u²)     (a sum of n terms, in any order)

to first order.  Each quantity q carries an absolute bound e_q; with a = |value|:

    inputs x, g, γ, β, ε:       e = u·a (rounded to the dtype on entry)
    μ = Σx/M:                   e_μ = (M + 1)·u·mean|x| + mean(e_x)
    x − μ:                      e_xc = e_x + e_μ + u(|x| + |μ|)
    σ², two-pass Σ(x−μ)²/M:     mean(2|x−μ|·e_xc) + (M + 2)·u·σ²
    σ², one-pass Σx²/M − μ²:    (M + 2)·u·mean(x²) + 2·mean(|x|e_x) + 2|μ|e_μ + 2u·μ²
                                (e_σ² is the larger of the two: either algorithm is right)
    s = σ² + ε, r = √s, 1/r:    e_s = e_σ² + e_ε + u·s,  e_r = e_s/(2r) + u·r,  e_1/r = e_r/r² + u/r
    x̂ = (x − μ)/r:              e_x̂ = e_xc/r + |x − μ|·e_1/r + u|x̂|
    out = γx̂ + β:               |γ|e_x̂ + e_γ|x̂| + e_β + 2u(|γx̂| + |β|)
    dβ = Σg, dγ = Σ g·x̂:        Σe_g + M·u·Σ|g|,  Σ(e_g|x̂| + |g|e_x̂ + u|g x̂|) + M·u·Σ|g x̂|
    dx = γ/r·A, A = g − dβ/M − x̂·dγ/M (training; the staged chain adds the same three terms):
                                e_A = e_g + e_dβ/M + (e_x̂|dγ| + |x̂|e_dγ)/M + 3u(|g| + |dβ|/M + |x̂ dγ|/M)
                                e_dx = (e_γ/r + |γ|e_1/r)|A| + |γ|e_A/r + 2u|dx|
    dx = γ·g/r (eval):          (e_γ/r + |γ|e_1/r)|g| + |γ|e_g/r + 2u|dx|

In eval mode μ and σ² are the running statistics, inputs (e = u·a).  The bound returned is
``FACTOR`` = 2 times the first-order one: the factor covers the second-order terms (γₙ = nu/(1−nu)
≤ 1.01·nu while n·u ≤ 1/100, true for float16 up to n = 20 and for the wider dtypes far beyond)
and one more rounding per operation for a different order of the same operations (a division
written as a multiplication by a rounded reciprocal, a mean as a sum times 1/M).

A result within the bound of the truth is consistent with rounding; whether that makes it right
depends on whether the bound also admits the known mistakes (``check_impl`` asks that).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from bnderive.core.spec import Spec

#: The bound is this many times the first-order propagation (see the module docstring).
FACTOR = 2.0

#: Unit roundoff of each floating dtype: half the distance from 1 to the next number.
UNIT_ROUNDOFF = {
    "float16": 2.0**-11,
    "float32": 2.0**-24,
    "float64": 2.0**-53,
}


def unit_roundoff(dtype: str) -> float:
    """u of ``dtype``; a float wider than float64 (longdouble) counts as float64."""
    return UNIT_ROUNDOFF.get(dtype, UNIT_ROUNDOFF["float64"])


@dataclass(frozen=True)
class Bounds:
    """Absolute error bounds of one reduction set's results: out and dx per element, dγ and dβ
    one number, and the batch statistics μ and σ² (for the running statistics)."""

    out: np.ndarray
    dx: np.ndarray
    dgamma: float
    dbeta: float
    mean: float
    var: float
    xhat: np.ndarray | None = None  # x̂ per element (for sums across sets: ``layer_bounds``)


def rounding_bounds(
    x: np.ndarray,
    g: np.ndarray,
    gamma: float,
    beta: float,
    eps: float,
    dtype: str,
    *,
    training: bool = True,
    running_mean: float = 0.0,
    running_var: float = 1.0,
    g_error: np.ndarray | None = None,
    centred: bool = True,
) -> Bounds:
    """The bounds of one reduction set (x and g over its M elements) computed in ``dtype``;
    ``g_error``: the error of g when it is itself computed (else u·|g|, rounded on entry).
    ``centred`` False is RMSNorm's chain (training): no mean (μ = 0 without error, σ² the mean
    square) and dx = γ/r·(g − x̂·dγ/M), the same table without the dβ term."""
    u = unit_roundoff(dtype)
    x, g = np.asarray(x, dtype=float), np.asarray(g, dtype=float)
    m = len(x)
    ax, ag = np.abs(x), np.abs(g)
    e_x, e_g = u * ax, (u * ag if g_error is None else np.asarray(g_error, dtype=float))
    e_gamma, e_beta, e_eps = u * abs(gamma), u * abs(beta), u * abs(eps)
    if training:
        mu = float(np.mean(x)) if centred else 0.0
        e_mu = (m + 1) * u * float(np.mean(ax)) + float(np.mean(e_x)) if centred else 0.0
        xc = x - mu
        e_xc = e_x + e_mu + u * (ax + abs(mu))
        var = float(np.mean(xc * xc))
        two_pass = float(np.mean(2 * np.abs(xc) * e_xc)) + (m + 2) * u * var
        one_pass = (
            (m + 2) * u * float(np.mean(x * x))
            + 2 * float(np.mean(ax * e_x))
            + 2 * abs(mu) * e_mu
            + 2 * u * mu * mu
        )
        e_var = max(two_pass, one_pass)
    else:
        mu, var = float(running_mean), float(running_var)
        e_mu, e_var = u * abs(mu), u * abs(var)
        xc = x - mu
        e_xc = e_x + e_mu + u * (ax + abs(mu))
    s = var + eps
    e_s = e_var + e_eps + u * s
    r = math.sqrt(s)
    e_r = e_s / (2 * r) + u * r
    ir = 1 / r
    e_ir = e_r / (r * r) + u * ir
    xh = xc * ir
    e_xh = e_xc * ir + np.abs(xc) * e_ir + u * np.abs(xh)
    e_out = (
        abs(gamma) * e_xh + e_gamma * np.abs(xh) + e_beta + 2 * u * (np.abs(gamma * xh) + abs(beta))
    )
    dbeta = float(np.sum(g))
    e_dbeta = float(np.sum(e_g)) + m * u * float(np.sum(ag))
    gx = g * xh
    dgamma = float(np.sum(gx))
    e_gx = e_g * np.abs(xh) + ag * e_xh + u * np.abs(gx)
    e_dgamma = float(np.sum(e_gx)) + m * u * float(np.sum(np.abs(gx)))
    if training:
        mean_term = dbeta / m if centred else 0.0  # RMSNorm's dx has no mean of g
        a = g - mean_term - xh * dgamma / m
        terms = ag + abs(mean_term) + np.abs(xh * dgamma) / m
        e_mean = e_dbeta / m if centred else 0.0
        e_a = e_g + e_mean + (e_xh * abs(dgamma) + np.abs(xh) * e_dgamma) / m + 3 * u * terms
        dx = gamma * ir * a
        e_dx = (e_gamma * ir + abs(gamma) * e_ir) * np.abs(a) + abs(gamma) * ir * e_a
    else:
        dx = gamma * ir * g
        e_dx = (e_gamma * ir + abs(gamma) * e_ir) * ag + abs(gamma) * ir * e_g
    e_dx = e_dx + 2 * u * np.abs(dx)
    return Bounds(
        FACTOR * e_out,
        FACTOR * e_dx,
        FACTOR * e_dgamma,
        FACTOR * e_dbeta,
        FACTOR * e_mu,
        FACTOR * e_var,
        FACTOR * e_xh,
    )


def layer_bounds(
    spec: Spec,
    x: np.ndarray,
    g: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray | None,
    eps: float,
    dtype: str,
) -> dict[str, np.ndarray]:
    """The bounds of out, dx (shaped like x), dγ and dβ (shaped like γ; RMSNorm has no β) of
    a LayerNorm, InstanceNorm, GroupNorm or RMSNorm layer (training) computed in ``dtype``
    (RMSNorm: ``rounding_bounds``' chain without the mean, ``centred`` False).

    Each reduction set is BatchNorm's chain with dx̂ = γ ⊙ dy in the place of dy and γ = 1:
    dx = (dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂))/√(σ²+ε), the family's truth, where the product
    h = γ·g enters with e_h = u|h| + |γ|·u|g| + |g|·u|γ| = 3u|h| (γ per element, or one per
    set: the same bound, looser for one γ).  out = γ·x̂ + β per element with BatchNorm's
    formula at that element's γ and β.  dγ_k = Σ g·x̂ and dβ_k = Σ g over every element that
    shares γ_k (across sets): Σ(e_g|x̂| + |g|e_x̂ + u|g x̂|) + (K − 1)·u·Σ|g x̂| and
    Σ u|g| + (K − 1)·u·Σ|g| for K terms summed in any order.  FACTOR times the first order, as
    for BatchNorm."""
    centred = spec.norm.centred
    u = unit_roundoff(dtype)
    xf, gf = np.asarray(x, dtype=float), np.asarray(g, dtype=float)
    gam = np.asarray(gamma, dtype=float)
    bet = np.zeros(gam.shape) if beta is None else np.asarray(beta, dtype=float)
    out, dx = np.zeros(spec.shape), np.zeros(spec.shape)
    dgamma, dbeta = np.zeros(spec.affine_shape), np.zeros(spec.affine_shape)
    terms_g, terms_b = np.zeros(spec.affine_shape), np.zeros(spec.affine_shape)
    count = np.zeros(spec.affine_shape)
    for index in range(spec.sets):
        positions = spec.positions(index)
        at = [spec.affine_index(p) for p in positions]
        xs = np.array([xf[p] for p in positions])
        gs = np.array([gf[p] for p in positions])
        gk = np.array([gam[a] for a in at])
        bk = np.array([bet[a] for a in at])
        h = gk * gs
        b = rounding_bounds(xs, h, 1.0, 0.0, eps, dtype, g_error=3 * u * np.abs(h), centred=centred)
        assert b.xhat is not None
        e_xh = b.xhat / FACTOR
        xc = xs - xs.mean() if centred else xs
        xh = xc / math.sqrt(float(np.mean(xc**2)) + eps)
        e_out = (
            np.abs(gk) * e_xh + u * np.abs(gk * xh) + u * np.abs(bk)
            + 2 * u * (np.abs(gk * xh) + np.abs(bk))
        )  # fmt: skip
        gx = gs * xh
        e_gx = u * np.abs(gs) * np.abs(xh) + np.abs(gs) * e_xh + u * np.abs(gx)
        for k, (p, a) in enumerate(zip(positions, at, strict=True)):
            out[p], dx[p] = FACTOR * e_out[k], b.dx[k]
            dgamma[a] += e_gx[k]
            terms_g[a] += abs(gx[k])
            dbeta[a] += u * abs(gs[k])
            terms_b[a] += abs(gs[k])
            count[a] += 1
    sums = np.maximum(count - 1, 0) * u
    found = {"out": out, "dx": dx, "dgamma": FACTOR * (dgamma + sums * terms_g)}
    if spec.norm.has_beta:
        found["dbeta"] = FACTOR * (dbeta + sums * terms_b)
    return found


def running_bound(old: float, batch: float, e_batch: float, dtype: str) -> float:
    """The bound of one running statistic updated as (1 − w)·old + w·batch in ``dtype``, for any
    weight 0 ≤ w ≤ 1 (the code's momentum is its own): the batch statistic's error ``e_batch``
    (times w ≤ 1), w and 1 − w rounded, two products and a sum, each term at most |old| or
    |batch|."""
    u = unit_roundoff(dtype)
    return FACTOR * (e_batch + u * abs(old) + 3 * u * (abs(old) + abs(batch)))


def visible_mistake(value: Any, truth: np.ndarray, visible: np.ndarray) -> np.ndarray | None:
    """A known mistake's value as floats shaped like ``truth``, or None where it is not finite
    everywhere or lies within float64's bound (``visible``) of the truth at every entry: such a
    mistake is that truth at this point, not visible at any precision (dγ = Σ g·x̂ = 0 at a
    point makes every factor in front of it vanish too)."""
    values = np.asarray(value, dtype=float).reshape(truth.shape)
    if np.all(np.isfinite(values)) and np.any(np.abs(values - truth) > visible):
        return values
    return None
