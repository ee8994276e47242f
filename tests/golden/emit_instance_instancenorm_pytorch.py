"""InstanceNorm backward, emitted by bnderive 0.1.0 from the form 'instancenorm-pytorch':
  InstanceNorm as BatchNorm of the (1, N·C, H, W) view (PyTorch)
  source: D. Ulyanov, A. Vedaldi and V. Lempitsky, Instance Normalization: The Missing Ingredient for Fast Stylization, 2016, arXiv:1607.08022, equation 2 (statistics per instance and channel)
  source: PyTorch, aten/src/ATen/native/Normalization.cpp, instance_norm (the (1, b·c, …) view and at::batch_norm) and batch_norm_backward_cpu_template (read at commit 000e0689816596fada756234dbc4cf0a73790876)
Conventions: biased variance, ε inside √: x̂ = (x − μ)/√(σ² + ε).
Layout: x is (N, C, H, W) (or (N, C, L)): one reduction set per sample and channel; viewed as (N, C, H·W), sums over axis 2; M = H·W.
γ, β: one per channel (C,), the same for every element of a set; dγ adds the sets' sums.
The form's lines, as proven for one reduction set (∂L/∂y is dout):
  dotp = Σₖ((xₖ - μ)·gₖ)
  proj = dotp/(M·(ε + σ²))
  dx[i] = γ·(gᵢ - proj·(xᵢ - μ) - Σₖ(gₖ)/M)/√(ε + σ²)
  dgamma = dotp/√(ε + σ²)
  dbeta = Σₖ(gₖ)
Verified by bnderive before it was written, in a separate process: exact rational
arithmetic at a point where every set's root is rational, and float64 at adversarial
random inputs, against the ground truth of the whole layer. dtype is preserved
(float32 in, float32 out); pass eps as a Python float.
"""

import numpy as np


def forward(x, gamma, beta, eps):
    """InstanceNorm forward: out = γ·x̂ + β, every set by its own statistics.

    Returns out and the cache (xmu, mu, inv_std) for backward_cached, in the view's
    shape (one value per set for the statistics).
    """
    shape = x.shape  # the input's shape
    x = x.reshape(x.shape[0], x.shape[1], -1)  # one reduction set per (n, c)
    M = x.shape[2]  # M: elements per set, an int
    mu = np.sum(x, axis=(2,), keepdims=True)/M  # μ = Σ x / M, per set
    xmu = x - mu  # the centred input; the variance is never Σx² − (Σx)²/M
    var = np.einsum("ncs,ncs->nc", xmu, xmu)[..., None]/M  # σ² = Σ (x − μ)² / M
    inv_std = 1 / np.sqrt(var + eps)  # 1/√(σ² + ε)
    xhat = inv_std*xmu  # x̂, per element
    gamma = gamma.reshape(1, -1, 1)  # γ against the view
    beta = beta.reshape(1, -1, 1)
    out = gamma*xhat + beta  # y = γ·x̂ + β
    return out.reshape(shape), (xmu, mu, inv_std)


def backward(dout, x, gamma, eps):
    """∂L/∂x, ∂L/∂γ, ∂L/∂β from the upstream gradient dout = ∂L/∂y and the input x."""
    shape = x.shape  # the input's shape
    x = x.reshape(x.shape[0], x.shape[1], -1)  # one reduction set per (n, c)
    M = x.shape[2]  # M: elements per set, an int
    mu = np.sum(x, axis=(2,), keepdims=True)/M  # μ = Σ x / M, per set
    xmu = x - mu  # the centred input; the variance is never Σx² − (Σx)²/M
    var = np.einsum("ncs,ncs->nc", xmu, xmu)[..., None]/M  # σ² = Σ (x − μ)² / M
    inv_std = 1 / np.sqrt(var + eps)  # 1/√(σ² + ε)
    dout = dout.reshape(x.shape)  # dout in the same view
    gamma = gamma.reshape(1, -1, 1)  # γ against the view
    sum_dout = np.sum(dout, axis=(2,), keepdims=True)  # Σ dout, per set
    sum_dout_xmu = np.einsum("ncs,ncs->nc", dout, xmu)[..., None]  # Σ dout·(x − μ), per set
    t0 = gamma*inv_std  # per-set subexpression
    dgamma = np.sum(inv_std*sum_dout_xmu, axis=0).reshape(-1)  # dγ: the sets' parts added up
    dbeta = np.sum(sum_dout, axis=0).reshape(-1)  # dβ: the sets' parts added up
    c1 = t0  # dx = c1·dout + c2·xmu + c3, c1..c3 per set
    c2 = -gamma*inv_std**3*sum_dout_xmu/M
    c3 = -sum_dout*t0/M
    xmu *= c2  # xmu is ours: reuse it for c2·xmu
    xmu += c3
    dx = c1*dout
    dx += xmu
    return dx.reshape(shape), dgamma, dbeta


def backward_cached(dout, cache, gamma):
    """The same gradients from forward's cache (xmu, mu, inv_std); the cache is not modified."""
    xmu, mu, inv_std = cache  # from forward
    shape = dout.shape  # the input's shape
    M = xmu.shape[2]  # M: elements per set, an int
    dout = dout.reshape(xmu.shape)  # dout in the cache's view
    gamma = gamma.reshape(1, -1, 1)  # γ against the view
    sum_dout = np.sum(dout, axis=(2,), keepdims=True)  # Σ dout, per set
    sum_dout_xmu = np.einsum("ncs,ncs->nc", dout, xmu)[..., None]  # Σ dout·(x − μ), per set
    t0 = gamma*inv_std  # per-set subexpression
    dgamma = np.sum(inv_std*sum_dout_xmu, axis=0).reshape(-1)  # dγ: the sets' parts added up
    dbeta = np.sum(sum_dout, axis=0).reshape(-1)  # dβ: the sets' parts added up
    c1 = t0  # dx = c1·dout + c2·xmu + c3, c1..c3 per set
    c2 = -gamma*inv_std**3*sum_dout_xmu/M
    c3 = -sum_dout*t0/M
    dx = c1*dout
    dx += c2*xmu
    dx += c3
    return dx.reshape(shape), dgamma, dbeta
