"""An independent float64 reference for the corpus of real derivations (tests only).

This file knows nothing of bnderive: NumPy and the chain rule over BatchNorm's graph
x → μ → σ²(x, μ) → s → x̂ → y (s = √(σ²+ε), √σ² + ε, or √σ² when ε = 0), written out by hand,
with a finite-difference check of the main quantities (``fd_check``).  The names are those of the
corpus's ``*.expected.toml`` files (see their README): the canonical quantities (mu, var, xhat,
y, dxhat, dvar, dmu, dx, dgamma, dbeta), local partials (dxhat_dvar, dvar_dx, ...: each node
differentiated with its other direct inputs held), Jacobians [k, i] = ∂out_k/∂x_i (dxhat_dx,
dy_dx, dxmu_dx), and the named sub-expressions posts use (xmu, sq, s, istd, ds, distd, ...).
"""

from __future__ import annotations

import numpy as np


def forward(x, gamma, beta, eps, epsilon="inside", variance="biased", mu=None, var=None):
    m = len(x)
    mv = m if variance == "biased" else m - 1
    mu = x.mean() if mu is None else mu
    var = np.sum((x - mu) ** 2) / mv if var is None else var
    if epsilon == "inside":
        s = np.sqrt(var + eps)
    elif epsilon == "outside":
        s = np.sqrt(var) + eps
    else:
        s = np.sqrt(var)
    xhat = (x - mu) / s
    return mu, var, s, xhat, gamma * xhat + beta


def values(x, g, gamma, beta, eps, epsilon="inside", variance="biased"):
    """Every named quantity at one point (float64)."""
    m = len(x)
    mv = m if variance == "biased" else m - 1
    mu, var, s, xhat, y = forward(x, gamma, beta, eps, epsilon, variance)
    xmu = x - mu
    std = np.sqrt(var)
    # ds/dσ²: the root's derivative (ε inside: 1/(2√(σ²+ε)); outside or none: 1/(2√σ²))
    ds_dvar = 0.5 / np.sqrt(var + eps) if epsilon == "inside" else 0.5 / np.sqrt(var)
    ones = np.ones(m)
    eye = np.eye(m)
    v: dict[str, object] = {}
    v.update(mu=mu, var=var, xmu=xmu, sq=xmu**2, std=std, s=s, sqrtvar=s)
    v.update(istd=1 / s, ivar=1 / s, xhat=xhat, y=y, gammaxhat=gamma * xhat)
    # backward, stage by stage
    dxhat = g * gamma
    distd = np.sum(dxhat * xmu)  # x̂ = xmu · istd
    ds = -distd / s**2
    dvar = ds * ds_dvar
    dxmu1 = dxhat / s
    dxmu2 = 2 * xmu * dvar / mv
    dxmu = dxmu1 + dxmu2
    dmu = -np.sum(dxmu)  # = −Σ dx̂/s + dσ²·(−2/Mv)Σ(x−μ), the second term zero
    dx = dxmu + dmu / m
    # LayerNorm (γ, β one per element): ∂L/∂γ_i of one sample is its own term g_i x̂_i
    layer = np.ndim(gamma) > 0
    dgamma, dbeta = (g * xhat, g) if layer else (np.sum(g * xhat), np.sum(g))
    v.update(dy=g, dgammaxhat=g, dxhat=dxhat, dgamma=dgamma, dbeta=dbeta)
    v.update(distd=distd, divar=distd, ds=ds, dsqrtvar=ds, dvar=dvar, dsq=dvar / mv * ones)
    v.update(dxmu1=dxmu1, dxmu2=dxmu2, dxmu=dxmu, dmu=dmu, dx=dx)
    v.update(dx_direct=dxhat / s, dx_via_var=dvar * 2 * xmu / mv, dx_via_mu=dmu / m * ones)
    v.update(dnorm_mean=np.mean(dxhat), dnorm_norm_mean=np.mean(dxhat * xhat))
    # local partials: one node against one of its direct inputs, the others held
    v.update(dy_dxhat=gamma * ones, dy_dgamma=xhat, dy_dbeta=ones)
    v.update(dxhat_dvar=-xmu * ds_dvar / s**2, dxhat_dmu=-ones / s, dxhat_dx_direct=ones / s)
    v.update(dxhat_distd=xmu, distd_ds=-1 / s**2, ds_dvar=ds_dvar, distd_dvar=-ds_dvar / s**2)
    v.update(dvar_dmu=-2 * np.sum(xmu) / mv, dvar_dx=2 * xmu / mv, dvar_dsq=1 / mv)
    v.update(dsq_dxmu=2 * xmu, dmu_dx=ones / m, dstd_dx=xmu / (mv * std))
    v.update(ds_dx=ds_dvar * 2 * xmu / mv, distd_dx=-ds_dvar / s**2 * 2 * xmu / mv)
    v.update(dvar_dxmu=2 * xmu / mv, dxmu_dmu=-ones, sum_xmu=np.sum(xmu))
    # Jacobians [k, i] = ∂out_k/∂x_i, through μ and σ²
    dxmu_dx = eye - 1 / m
    jac = dxmu_dx / s + np.outer(xmu, 2 * xmu / mv) * (-ds_dvar / s**2)
    dy_dx = np.asarray(gamma)[..., None] * jac if layer else gamma * jac  # row k times γ_k
    v.update(dxmu_dx=dxmu_dx, dxhat_dx=jac, dy_dx=dy_dx, dxk_dxi=eye)
    # ∂x̂_i/∂x_i, ∂y_i/∂x_i: the total derivative (the diagonal) or the partial, μ and σ² held
    v.update(dxhat_dx_total=np.diag(jac), dy_dx_total=np.diag(dy_dx), dy_dx_direct=gamma * ones / s)
    return v


def fd_check(x, g, gamma, beta, eps, epsilon="inside", variance="biased", h=1e-6):
    """Central differences against ``values``: the largest relative error (a test asserts it
    is tiny), for dx, dgamma, dbeta (the loss L = Σ g·y) and dvar, dmu (μ, σ² as inputs)."""
    v = values(x, g, gamma, beta, eps, epsilon, variance)

    def loss(xx=x, gm=gamma, bt=beta, mu=None, var=None):
        return np.sum(g * forward(xx, gm, bt, eps, epsilon, variance, mu, var)[4])

    def central(f, at):
        return (f(at + h) - f(at - h)) / (2 * h)

    layer = np.ndim(gamma) > 0
    checks = {
        "dx": np.array(
            [central(lambda t, k=k: loss(xx=_bump(x, k, t - x[k])), x[k]) for k in range(len(x))]
        ),
        "dgamma": (
            np.array(
                [
                    central(lambda t, k=k: loss(gm=_bump(gamma, k, t - gamma[k])), gamma[k])
                    for k in range(len(x))
                ]
            )
            if layer
            else central(lambda t: loss(gm=t), gamma)
        ),
        "dbeta": (
            np.array(
                [
                    central(lambda t, k=k: loss(bt=_bump(beta, k, t - beta[k])), beta[k])
                    for k in range(len(x))
                ]
            )
            if layer
            else central(lambda t: loss(bt=t), beta)
        ),
        "dvar": central(lambda t: loss(var=t), v["var"]),
        "dmu": central(lambda t: loss(mu=t), v["mu"]),
    }
    worst = 0.0
    for name, approx in checks.items():
        exact = np.asarray(v[name], dtype=float)
        worst = max(worst, float(np.max(np.abs(exact - approx)) / max(np.max(np.abs(exact)), 1e-3)))
    return worst


def _bump(x, k, delta):
    out = np.array(x, dtype=float)
    out[k] += delta
    return out


def points(seed=20260101, layer=False):
    """Adversarial points: γ ≠ ±1, σ² far from 1 both ways, a mean far from 0, M ≥ 4, ε not
    tiny, a non-uniform upstream gradient.  ``layer``: LayerNorm's γ and β, one per element
    (spread around the BatchNorm point's value, never equal)."""
    if layer:
        rng = np.random.default_rng(seed + 1)
        out = []
        for x, g, gamma, beta, eps in points(seed):
            m = len(x)
            gammas = gamma * (1 + 0.5 * np.linspace(-1, 1, m)) + 0.1 * rng.standard_normal(m)
            betas = beta + np.linspace(-0.7, 0.9, m)
            out.append((x, g, gammas, betas, eps))
        return out
    rng = np.random.default_rng(seed)
    out = []
    for m, scale, offset, gamma, beta, eps in (
        (4, 3.0, 2.5, 1.7, 0.37, 0.1),
        (5, 0.15, -1.3, -0.6, -1.2, 0.1),
        (7, 1.9, 0.8, 2.3, 0.8, 0.25),
        (6, 0.4, 4.0, 0.45, 0.05, 0.1),
    ):
        x = offset + scale * rng.standard_normal(m)
        g = rng.standard_normal(m) * np.linspace(0.5, 2.0, m)
        out.append((x, g, gamma, beta, eps))
    return out
