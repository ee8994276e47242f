"""BatchNorm backward (fused numba kernel), emitted by bnderive 0.1.0 from the form 'staged':
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

import numba
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


@numba.njit(parallel=True, fastmath={"contract", "reassoc"}, cache=False)
def _backward_kernel(dout, xmu, gamma, inv_std, rows, partial, coef, dx, dgamma, dbeta):
    """Fused backward, in place: pass 1 reduces, pass 2 writes dx.

    dout, xmu, dx: (N, D) (PER_ACTIVATION); rows: rows per chunk; partial: zeros
    (chunks, sums, C) of the accumulator dtype (float64, or object for exact rationals);
    coef: (3, C) of dout's dtype, for c1, c2, c3.
    """
    n, c = dout.shape
    M = n  # M: elements per channel
    chunks = partial.shape[0]
    for q in numba.prange(chunks):  # pass 1: every chunk of rows reduces into its own partial sums
        for i in range(q*rows, min(n, q*rows + rows)):
            for ch in range(c):
                dout_e = dout[i, ch]
                xmu_e = xmu[i, ch]
                partial[q, 0, ch] += xmu_e  # sum_xmu
                partial[q, 1, ch] += dout_e*xmu_e  # sum_dout_xmu
                partial[q, 2, ch] += dout_e  # sum_dout
    for ch in range(c):  # per channel: c1, c2, c3, dγ, dβ
        sum_xmu = partial[0, 0, ch]  # the chunks' partial sums
        sum_dout_xmu = partial[0, 1, ch]
        sum_dout = partial[0, 2, ch]
        for p in range(1, chunks):
            sum_xmu += partial[p, 0, ch]
            sum_dout_xmu += partial[p, 1, ch]
            sum_dout += partial[p, 2, ch]
        gamma_c = gamma[ch]
        inv_std_c = inv_std[ch]
        t0 = gamma_c*inv_std_c
        coef[0, ch] = t0  # c1
        coef[1, ch] = -gamma_c*inv_std_c**3*sum_dout_xmu/M  # c2
        coef[2, ch] = t0*(inv_std_c**2*sum_dout_xmu*sum_xmu/M - sum_dout)/M  # c3
        dgamma[ch] = inv_std_c*sum_dout_xmu
        dbeta[ch] = sum_dout
    for q in numba.prange(chunks):  # pass 2: dx = c1·dout + c2·(x − μ) + c3
        b = chunks - q - 1  # last chunk first: still in cache
        for i in range(b*rows, min(n, b*rows + rows)):
            for ch in range(c):
                c1 = coef[0, ch]
                c2 = coef[1, ch]
                c3 = coef[2, ch]
                dout_e = dout[i, ch]
                xmu_e = xmu[i, ch]
                dx[i, ch] = c1*dout_e + c2*xmu_e + c3


def backward_cached(dout, cache, gamma, rows=None):
    """The gradients from forward's cache (x − μ, μ, inv_std), by the fused numba kernel.

    rows: rows (samples or images) per parallel chunk; by default chunks of about
    262144 elements. The result does not depend on the number of threads.
    """
    xmu, mu, inv_std = cache  # from forward
    n = dout.shape[0]
    c = gamma.shape[0]
    rows = max(1, 262144 * n // max(1, dout.size)) if rows is None else rows  # rows per parallel chunk, about 262144 elements
    chunks = (n + rows - 1) // rows
    dx = np.empty_like(dout)
    dgamma = np.empty(c, dtype=dout.dtype)
    dbeta = np.empty(c, dtype=dout.dtype)
    partial = np.zeros((chunks, 3, c), dtype=np.result_type(dout.dtype, np.float64))
    coef = np.empty((3, c), dtype=dout.dtype)
    _backward_kernel(dout, xmu, gamma, inv_std.reshape(-1), rows, partial, coef, dx, dgamma, dbeta)
    return dx, dgamma, dbeta


def backward(dout, x, gamma, eps):
    """∂L/∂x, ∂L/∂γ, ∂L/∂β from dout and x: NumPy statistics, then the numba kernel."""
    _, cache = forward(x, gamma, 0 * gamma, eps)  # the statistics, by NumPy
    return backward_cached(dout, cache, gamma)
