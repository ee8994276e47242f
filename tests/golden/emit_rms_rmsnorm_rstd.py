"""RMSNorm backward, emitted by bnderive 0.1.0 from the form 'rmsnorm-rstd':
  RMSNorm through the reciprocal RMS r: r·g − (r³/N)·x·(gᵀx)
  source: limei1221/triton-rmsnorm, README.md, Backward pass: ∂L/∂x = r g − (r³/N) x (gᵀx), g = dy ⊙ w, r = 1/RMS(x)
  source: B. Zhang and R. Sennrich, Root Mean Square Layer Normalization, NeurIPS 2019, arXiv:1910.07467
Conventions: no mean, ε inside √: x̂ = x/√(mean(x²) + ε).
Layout: x is (…, *gamma.shape): one reduction set per index of the leading axes, over the trailing axes γ has; viewed as (R, M) with M = gamma.size, sums over axis 1.
γ: shaped like the normalized axes, one per element of a set; dγ adds over the sets.
The form's lines, as proven for one reduction set (∂L/∂y is dout):
  rinv = 1/√(ε + ms)
  dxhat[i] = gᵢ·γᵢ
  dx[i] = rinv·∂L/∂x̂ᵢ - (rinv)³·xᵢ·Σₖ(∂L/∂x̂ₖ·xₖ)/M
  dgamma[i] = rinv·gᵢ·xᵢ
Verified by bnderive before it was written, in a separate process: exact rational
arithmetic at a point where every set's root is rational, and float64 at adversarial
random inputs, against the ground truth of the whole layer. dtype is preserved
(float32 in, float32 out); pass eps as a Python float.
"""

import numpy as np


def forward(x, gamma, eps):
    """RMSNorm forward: out = γ·x̂, every set by its own statistics.

    Returns out and the cache (x, inv_rms) for backward_cached, in the view's
    shape (one value per set for the statistics).
    """
    shape = x.shape  # the input's shape
    M = gamma.size  # M: elements per set, an int
    x = x.reshape(-1, M)  # one reduction set per row
    ms = np.einsum("rm,rm->r", x, x)[..., None]/M  # ms = Σ x² / M: the mean square (no mean)
    inv_rms = 1 / np.sqrt(ms + eps)  # 1/√(ms + ε)
    xhat = inv_rms*x  # x̂, per element
    gamma = gamma.reshape(1, -1)  # γ against the view
    out = gamma*xhat  # y = γ·x̂
    return out.reshape(shape), (x, inv_rms)


def backward(dout, x, gamma, eps):
    """∂L/∂x, ∂L/∂γ from the upstream gradient dout = ∂L/∂y and the input x."""
    shape = x.shape  # the input's shape
    M = gamma.size  # M: elements per set, an int
    x = x.reshape(-1, M)  # one reduction set per row
    gamma_shape = gamma.shape  # γ's shape, for dγ and dβ
    ms = np.einsum("rm,rm->r", x, x)[..., None]/M  # ms = Σ x² / M: the mean square (no mean)
    inv_rms = 1 / np.sqrt(ms + eps)  # 1/√(ms + ε)
    dout = dout.reshape(x.shape)  # dout in the same view
    gamma = gamma.reshape(1, -1)  # γ against the view
    dxhat = dout*gamma  # ∂L/∂x̂ = γ·dout, per element
    sum_dxhat_x = np.einsum("rm,rm->r", dxhat, x)[..., None]  # Σ dxhat·x, per set
    dgamma = np.sum(dout*inv_rms*x, axis=0).reshape(gamma_shape)  # dγ: the sets' parts added up
    c1 = inv_rms  # dx = c1·dxhat + c2·x, c1, c2 per set
    c2 = -inv_rms**3*sum_dxhat_x/M
    dx = c1*dxhat
    dx += c2*x
    return dx.reshape(shape), dgamma


def backward_cached(dout, cache, gamma):
    """The same gradients from forward's cache (x, inv_rms); the cache is not modified."""
    x, inv_rms = cache  # from forward
    shape = dout.shape  # the input's shape
    M = gamma.size  # M: elements per set, an int
    gamma_shape = gamma.shape  # γ's shape, for dγ and dβ
    dout = dout.reshape(x.shape)  # dout in the cache's view
    gamma = gamma.reshape(1, -1)  # γ against the view
    dxhat = dout*gamma  # ∂L/∂x̂ = γ·dout, per element
    sum_dxhat_x = np.einsum("rm,rm->r", dxhat, x)[..., None]  # Σ dxhat·x, per set
    dgamma = np.sum(dout*inv_rms*x, axis=0).reshape(gamma_shape)  # dγ: the sets' parts added up
    c1 = inv_rms  # dx = c1·dxhat + c2·x, c1, c2 per set
    c2 = -inv_rms**3*sum_dxhat_x/M
    dx = c1*dxhat
    dx += c2*x
    return dx.reshape(shape), dgamma
