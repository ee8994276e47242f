"""GroupNorm (G = 2) backward, emitted by bnderive 0.1.0 from the form 'groupnorm-pytorch':
  GroupNorm, PyTorch's CPU kernel: dx = c1·dy + c2·x + c3
  source: Y. Wu and K. He, Group Normalization, ECCV 2018, arXiv:1803.08494, section 3.1 (S_i: the same sample and channel group)
  source: PyTorch, aten/src/ATen/native/cpu/group_norm_kernel.cpp, GroupNormBackwardKernelImplInternal (read at commit 015da71f1e1e1b11ddbebc1ed98c0ff7a26ca1e3)
Conventions: biased variance, ε inside √: x̂ = (x − μ)/√(σ² + ε).
Layout: x is (N, C, H, W) (or (N, C, L)) with G = 2 groups of C/G channels: one reduction set per sample and group; viewed as (N, G, C/G, H·W), sums over axes (2, 3); M = C/G·H·W.
γ, β: one per channel (C,), so within a set (a group) γ varies from channel to channel; dγ adds dout·x̂ over the samples and H·W.
The form's lines, as proven for one reduction set (∂L/∂y is dout):
  ds = Σₖ(gₖ·γₖ·xₖ)
  db = Σₖ(gₖ·γₖ)
  c2 = (db·μ - ds)/(M·(ε + σ²)³ᐟ²)
  c3 = -c2·μ - db/(M·√(ε + σ²))
  dx[i] = c2·xᵢ + c3 + gᵢ·γᵢ/√(ε + σ²)
  dgamma[i] = (gᵢ·xᵢ - μ·gᵢ)/√(ε + σ²)
  dbeta[i] = gᵢ
Verified by bnderive before it was written, in a separate process: exact rational
arithmetic at a point where every set's root is rational, and float64 at adversarial
random inputs, against the ground truth of the whole layer. dtype is preserved
(float32 in, float32 out); pass eps as a Python float.
"""

import numpy as np


def forward(x, gamma, beta, eps):
    """GroupNorm forward: out = γ·x̂ + β, every set by its own statistics.

    Returns out and the cache (xmu, mu, inv_std) for backward_cached, in the view's
    shape (one value per set for the statistics).
    """
    G = 2  # G: the groups this module is for
    shape = x.shape  # the input's shape
    x = x.reshape(x.shape[0], G, x.shape[1] // G, -1)  # one reduction set per (n, g)
    M = x.shape[2] * x.shape[3]  # M: elements per set, an int
    mu = np.sum(x, axis=(2, 3), keepdims=True)/M  # μ = Σ x / M, per set
    xmu = x - mu  # the centred input; the variance is never Σx² − (Σx)²/M
    var = np.einsum("ngks,ngks->ng", xmu, xmu)[..., None, None]/M  # σ² = Σ (x − μ)² / M
    inv_std = 1 / np.sqrt(var + eps)  # 1/√(σ² + ε)
    xhat = inv_std*xmu  # x̂, per element
    gamma = gamma.reshape(1, G, -1, 1)  # γ against the view
    beta = beta.reshape(1, G, -1, 1)
    out = gamma*xhat + beta  # y = γ·x̂ + β
    return out.reshape(shape), (xmu, mu, inv_std)


def backward(dout, x, gamma, eps):
    """∂L/∂x, ∂L/∂γ, ∂L/∂β from the upstream gradient dout = ∂L/∂y and the input x."""
    G = 2  # G: the groups this module is for
    shape = x.shape  # the input's shape
    x = x.reshape(x.shape[0], G, x.shape[1] // G, -1)  # one reduction set per (n, g)
    M = x.shape[2] * x.shape[3]  # M: elements per set, an int
    mu = np.sum(x, axis=(2, 3), keepdims=True)/M  # μ = Σ x / M, per set
    xmu = x - mu  # the centred input; the variance is never Σx² − (Σx)²/M
    var = np.einsum("ngks,ngks->ng", xmu, xmu)[..., None, None]/M  # σ² = Σ (x − μ)² / M
    inv_std = 1 / np.sqrt(var + eps)  # 1/√(σ² + ε)
    dout = dout.reshape(x.shape)  # dout in the same view
    gamma = gamma.reshape(1, G, -1, 1)  # γ against the view
    dxhat = dout*gamma  # ∂L/∂x̂ = γ·dout, per element
    sum_dxhat = np.sum(dxhat, axis=(2, 3), keepdims=True)  # Σ dxhat, per set
    sum_dxhat_xmu = np.einsum("ngks,ngks->ng", dxhat, xmu)[..., None, None]  # Σ dxhat·(x − μ), per set
    dgamma = np.sum(dout*inv_std*xmu, axis=(0, 3)).reshape(-1)  # dγ: the sets' parts added up
    dbeta = np.sum(dout, axis=(0, 3)).reshape(-1)  # dβ: the sets' parts added up
    c1 = inv_std  # dx = c1·dxhat + c2·xmu + c3, c1..c3 per set
    c2 = -inv_std**3*sum_dxhat_xmu/M
    c3 = -inv_std*sum_dxhat/M
    xmu *= c2  # xmu is ours: reuse it for c2·xmu
    xmu += c3
    dx = c1*dxhat
    dx += xmu
    return dx.reshape(shape), dgamma, dbeta


def backward_cached(dout, cache, gamma):
    """The same gradients from forward's cache (xmu, mu, inv_std); the cache is not modified."""
    xmu, mu, inv_std = cache  # from forward
    G = 2  # G: the groups this module is for
    shape = dout.shape  # the input's shape
    M = xmu.shape[2] * xmu.shape[3]  # M: elements per set, an int
    dout = dout.reshape(xmu.shape)  # dout in the cache's view
    gamma = gamma.reshape(1, G, -1, 1)  # γ against the view
    dxhat = dout*gamma  # ∂L/∂x̂ = γ·dout, per element
    sum_dxhat = np.sum(dxhat, axis=(2, 3), keepdims=True)  # Σ dxhat, per set
    sum_dxhat_xmu = np.einsum("ngks,ngks->ng", dxhat, xmu)[..., None, None]  # Σ dxhat·(x − μ), per set
    dgamma = np.sum(dout*inv_std*xmu, axis=(0, 3)).reshape(-1)  # dγ: the sets' parts added up
    dbeta = np.sum(dout, axis=(0, 3)).reshape(-1)  # dβ: the sets' parts added up
    c1 = inv_std  # dx = c1·dxhat + c2·xmu + c3, c1..c3 per set
    c2 = -inv_std**3*sum_dxhat_xmu/M
    c3 = -inv_std*sum_dxhat/M
    dx = c1*dxhat
    dx += c2*xmu
    dx += c3
    return dx.reshape(shape), dgamma, dbeta
