"""BatchNorm backward, emitted by bnderive 0.1.0 from the form 'kronecker':
  Kronecker-delta index form, reduced
  source: C. Thorey, What does the gradient flowing through batch normalization looks like?, 2016, http://cthorey.github.io/blog/2016/backpropagation/
Conventions: training mode, biased variance 1/M, ε inside the root: x̂ = (x − μ)/√(σ² + ε).
Mode: PER_ACTIVATION: x is (N, D), statistics per feature over axis 0; M = N.
The form's lines, as proven (∂L/∂y is dout):
  dx[i] = γ·(M·gᵢ - Σₖ(gₖ) - (xᵢ - μ)·Σₖ((xₖ - μ)·gₖ)/(ε + σ²))/(M·√(ε + σ²))
  dgamma = Σₖ((xₖ - μ)·gₖ)/√(ε + σ²)
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
    sum_dout = np.sum(dout, axis=(0,), keepdims=True)  # Σ dout = dβ
    sum_dout_xmu = np.einsum("nd,nd->d", dout, xmu).reshape(1, -1)  # Σ dout·(x − μ)
    t0 = gamma*inv_std  # per-channel subexpression
    c1 = t0  # dx = c1·dout + c2·(x − μ) + c3, c1..c3 per channel
    c2 = -gamma*inv_std**3*sum_dout_xmu/M
    c3 = -sum_dout*t0/M
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
    sum_dout = np.sum(dout, axis=(0,), keepdims=True)  # Σ dout = dβ
    sum_dout_xmu = np.einsum("nd,nd->d", dout, xmu).reshape(1, -1)  # Σ dout·(x − μ)
    t0 = gamma*inv_std  # per-channel subexpression
    c1 = t0  # dx = c1·dout + c2·(x − μ) + c3, c1..c3 per channel
    c2 = -gamma*inv_std**3*sum_dout_xmu/M
    c3 = -sum_dout*t0/M
    dx = c1*dout
    dx += c2*xmu
    dx += c3
    dgamma = inv_std*sum_dout_xmu
    dbeta = sum_dout
    return dx, dgamma.reshape(-1), dbeta.reshape(-1)
