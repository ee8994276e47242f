"""LayerNorm backward, emitted by bnderive 0.1.0 from the form 'layernorm-pytorch':
  LayerNorm, PyTorch's CPU kernel: dx = a·γ·dy + b·x + c
  source: J. L. Ba, J. R. Kiros and G. E. Hinton, Layer Normalization, 2016, arXiv:1607.06450, section 3 (the statistics over the hidden units of one sample)
  source: PyTorch, aten/src/ATen/native/cpu/layer_norm_kernel.cpp, LayerNormBackwardKernelImplInternal (read at commit 00a9f8839ac5d425a9f95840b649b1f2e0a20aa1)
Conventions: biased variance, ε inside √: x̂ = (x − μ)/√(σ² + ε).
Layout: x is (…, *gamma.shape): one reduction set per index of the leading axes, over the trailing axes γ has; viewed as (R, M) with M = gamma.size, sums over axis 1.
γ, β: shaped like the normalized axes, one per element of a set; dγ adds over the sets.
The form's lines, as proven for one reduction set (∂L/∂y is dout):
  ds = Σₖ(gₖ·γₖ·xₖ)
  db = Σₖ(gₖ·γₖ)
  a = 1/√(ε + σ²)
  b = (a)³·(db·μ - ds)/M
  c = -b·μ - a·db/M
  dx[i] = a·gᵢ·γᵢ + b·xᵢ + c
  dgamma[i] = (a·xᵢ - a·μ)·gᵢ
  dbeta[i] = gᵢ
Verified by bnderive before it was written, in a separate process: exact rational
arithmetic at a point where every set's root is rational, and float64 at adversarial
random inputs, against the ground truth of the whole layer. dtype is preserved
(float32 in, float32 out); pass eps as a Python float.
"""

import numpy as np


def forward(x, gamma, beta, eps):
    """LayerNorm forward: out = γ·x̂ + β, every set by its own statistics.

    Returns out and the cache (xmu, mu, inv_std) for backward_cached, in the view's
    shape (one value per set for the statistics).
    """
    shape = x.shape  # the input's shape
    M = gamma.size  # M: elements per set, an int
    x = x.reshape(-1, M)  # one reduction set per row
    mu = np.sum(x, axis=(1,), keepdims=True)/M  # μ = Σ x / M, per set
    xmu = x - mu  # the centred input; the variance is never Σx² − (Σx)²/M
    var = np.einsum("rm,rm->r", xmu, xmu)[..., None]/M  # σ² = Σ (x − μ)² / M
    inv_std = 1 / np.sqrt(var + eps)  # 1/√(σ² + ε)
    xhat = inv_std*xmu  # x̂, per element
    gamma = gamma.reshape(1, -1)  # γ against the view
    beta = beta.reshape(1, -1)
    out = gamma*xhat + beta  # y = γ·x̂ + β
    return out.reshape(shape), (xmu, mu, inv_std)


def backward(dout, x, gamma, eps):
    """∂L/∂x, ∂L/∂γ, ∂L/∂β from the upstream gradient dout = ∂L/∂y and the input x."""
    shape = x.shape  # the input's shape
    M = gamma.size  # M: elements per set, an int
    x = x.reshape(-1, M)  # one reduction set per row
    gamma_shape = gamma.shape  # γ's shape, for dγ and dβ
    mu = np.sum(x, axis=(1,), keepdims=True)/M  # μ = Σ x / M, per set
    xmu = x - mu  # the centred input; the variance is never Σx² − (Σx)²/M
    var = np.einsum("rm,rm->r", xmu, xmu)[..., None]/M  # σ² = Σ (x − μ)² / M
    inv_std = 1 / np.sqrt(var + eps)  # 1/√(σ² + ε)
    dout = dout.reshape(x.shape)  # dout in the same view
    gamma = gamma.reshape(1, -1)  # γ against the view
    dxhat = dout*gamma  # ∂L/∂x̂ = γ·dout, per element
    sum_dxhat = np.sum(dxhat, axis=(1,), keepdims=True)  # Σ dxhat, per set
    sum_dxhat_xmu = np.einsum("rm,rm->r", dxhat, xmu)[..., None]  # Σ dxhat·(x − μ), per set
    dgamma = np.sum(dout*inv_std*xmu, axis=0).reshape(gamma_shape)  # dγ: the sets' parts added up
    dbeta = np.sum(dout, axis=0).reshape(gamma_shape)  # dβ: the sets' parts added up
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
    shape = dout.shape  # the input's shape
    M = gamma.size  # M: elements per set, an int
    gamma_shape = gamma.shape  # γ's shape, for dγ and dβ
    dout = dout.reshape(xmu.shape)  # dout in the cache's view
    gamma = gamma.reshape(1, -1)  # γ against the view
    dxhat = dout*gamma  # ∂L/∂x̂ = γ·dout, per element
    sum_dxhat = np.sum(dxhat, axis=(1,), keepdims=True)  # Σ dxhat, per set
    sum_dxhat_xmu = np.einsum("rm,rm->r", dxhat, xmu)[..., None]  # Σ dxhat·(x − μ), per set
    dgamma = np.sum(dout*inv_std*xmu, axis=0).reshape(gamma_shape)  # dγ: the sets' parts added up
    dbeta = np.sum(dout, axis=0).reshape(gamma_shape)  # dβ: the sets' parts added up
    c1 = inv_std  # dx = c1·dxhat + c2·xmu + c3, c1..c3 per set
    c2 = -inv_std**3*sum_dxhat_xmu/M
    c3 = -inv_std*sum_dxhat/M
    dx = c1*dxhat
    dx += c2*xmu
    dx += c3
    return dx.reshape(shape), dgamma, dbeta
