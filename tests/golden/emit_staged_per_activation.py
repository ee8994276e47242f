"""BatchNorm backward, emitted by bnderive 0.1.0 from the form 'staged':
  Staged backward: dx̂, dσ², dμ, then dx
  source: S. Ioffe and C. Szegedy, Batch Normalization: Accelerating Deep Network Training by Reducing Internal Covariate Shift, ICML 2015, arXiv:1502.03167, section 3
  source: Stanford CS231n, assignment 2, BatchNormalization.ipynb: batchnorm_backward
  source: F. Kratzert, Understanding the backward pass through Batch Normalization Layer, 2016, https://kratzert.github.io/2016/02/12/understanding-the-gradient-flow-through-the-batch-normalization-layer.html
Conventions: training mode, biased variance 1/M, ε inside the root: x̂ = (x − μ)/√(σ² + ε).
Mode: PER_ACTIVATION: x is (N, D), statistics per feature over axis 0; M = N.
The form's lines, as proven (∂L/∂y is dout):
  dxhat[i] = γ·gᵢ
  dvar = -Σₖ((xₖ - μ)·∂L/∂x̂ₖ)/(2·(ε + σ²)³ᐟ²)
  dmu = Σₖ(-∂L/∂x̂ₖ/√(ε + σ²)) + ∂L/∂σ²·Σₖ(2·μ - 2·xₖ)/M
  dx[i] = ∂L/∂x̂ᵢ/√(ε + σ²) + ∂L/∂μ/M + 2·∂L/∂σ²·(xᵢ - μ)/M
  dgamma = Σₖ(gₖ·x̂ₖ)
  dbeta = Σₖ(gₖ)
Verified by bnderive before it was written, in a separate process: exact rational
arithmetic at a point where √(σ²+ε) is rational, and float64 at adversarial random
inputs, against the ground truth. dtype is preserved (float32 in, float32 out); pass eps
as a Python float.
"""

import numpy as np


def forward(x, gamma, beta, eps):
    """BatchNorm forward in training mode: out = γ·x̂ + β.

    Returns out and the cache (x − μ, μ, inv_std) for backward_cached; μ and inv_std have
    the per-channel broadcast shape.
    """
    M = x.shape[0]  # M: elements per channel, a Python int
    mu = np.sum(x, axis=(0,), keepdims=True)/M  # μ = Σ x / M
    xmu = x - mu  # the centred input; the variance is never Σx² − (Σx)²/M
    var = np.einsum("nd,nd->d", xmu, xmu).reshape(1, -1)/M  # σ² = Σ (x − μ)² / M
    inv_std = 1 / np.sqrt(var + eps)  # 1/√(σ² + ε)
    xhat = inv_std*xmu  # x̂ = (x − μ)/√(σ² + ε)
    gamma = gamma.reshape(1, -1)
    beta = beta.reshape(1, -1)
    out = gamma*xhat + beta  # y = γ·x̂ + β
    return out, (xmu, mu, inv_std)


def backward(dout, x, gamma, eps):
    """∂L/∂x, ∂L/∂γ, ∂L/∂β from the upstream gradient dout = ∂L/∂y and the input x."""
    M = x.shape[0]  # M: elements per channel, a Python int
    mu = np.sum(x, axis=(0,), keepdims=True)/M  # μ = Σ x / M
    xmu = x - mu  # the centred input; the variance is never Σx² − (Σx)²/M
    var = np.einsum("nd,nd->d", xmu, xmu).reshape(1, -1)/M  # σ² = Σ (x − μ)² / M
    inv_std = 1 / np.sqrt(var + eps)  # 1/√(σ² + ε)
    gamma = gamma.reshape(1, -1)
    sum_xmu = np.sum(xmu, axis=(0,), keepdims=True)  # Σ (x − μ): zero exactly, kept: it corrects the rounding of μ
    sum_dout_xmu = np.einsum("nd,nd->d", dout, xmu).reshape(1, -1)  # Σ dout·(x − μ)
    sum_dout = np.sum(dout, axis=(0,), keepdims=True)  # Σ dout = dβ
    t0 = gamma*inv_std  # per-channel subexpression
    c1 = t0  # dx = c1·dout + c2·(x − μ) + c3, c1..c3 per channel
    c2 = -gamma*inv_std**3*sum_dout_xmu/M
    c3 = t0*(inv_std**2*sum_dout_xmu*sum_xmu/M - sum_dout)/M
    xmu *= c2  # xmu is ours: reuse it for c2·(x − μ)
    xmu += c3
    dx = c1*dout
    dx += xmu
    dgamma = inv_std*sum_dout_xmu
    dbeta = sum_dout
    return dx, dgamma.reshape(-1), dbeta.reshape(-1)


def backward_cached(dout, cache, gamma):
    """The same gradients from forward's cache (x − μ, μ, inv_std); the cache is not modified."""
    xmu, mu, inv_std = cache  # from forward
    M = xmu.shape[0]  # M: elements per channel, a Python int
    gamma = gamma.reshape(1, -1)
    sum_xmu = np.sum(xmu, axis=(0,), keepdims=True)  # Σ (x − μ): zero exactly, kept: it corrects the rounding of μ
    sum_dout_xmu = np.einsum("nd,nd->d", dout, xmu).reshape(1, -1)  # Σ dout·(x − μ)
    sum_dout = np.sum(dout, axis=(0,), keepdims=True)  # Σ dout = dβ
    t0 = gamma*inv_std  # per-channel subexpression
    c1 = t0  # dx = c1·dout + c2·(x − μ) + c3, c1..c3 per channel
    c2 = -gamma*inv_std**3*sum_dout_xmu/M
    c3 = t0*(inv_std**2*sum_dout_xmu*sum_xmu/M - sum_dout)/M
    dx = c1*dout
    dx += c2*xmu
    dx += c3
    dgamma = inv_std*sum_dout_xmu
    dbeta = sum_dout
    return dx, dgamma.reshape(-1), dbeta.reshape(-1)
