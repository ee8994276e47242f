# style of: https://github.com/BiEchi/MedoFlow (help/operators/bn_autodiff.ipynb: NCHW batch norm with keepdims
#           statistics), https://github.com/f-dangel/backpack (einsum-based BatchNorm derivatives)
# layout: functional spatial pair on (N, C, H, W) written with np.einsum reductions:
#         bn2d_forward(x, gamma, beta, eps=1e-5) -> (y, cache), bn2d_backward(dy, cache) -> (dx, dgamma, dbeta);
#         per-channel sums via einsum('nchw->c'), products via einsum('nchw,nchw->c').
# expected: bn2d_forward out holds
# expected: bn2d_backward dx, dgamma, dbeta holds
import numpy as np


def bn2d_forward(x, gamma, beta, eps=1e-5):
    n, c, h, w = x.shape
    m = n * h * w
    mu = np.einsum('nchw->c', x) / m
    xc = x - mu[None, :, None, None]
    var = np.einsum('nchw,nchw->c', xc, xc) / m
    inv = 1.0 / np.sqrt(var + eps)
    xhat = xc * inv[None, :, None, None]
    y = gamma[None, :, None, None] * xhat + beta[None, :, None, None]
    return y, (xhat, inv, gamma, m)


def bn2d_backward(dy, cache):
    xhat, inv, gamma, m = cache
    dbeta = np.einsum('nchw->c', dy)
    dgamma = np.einsum('nchw,nchw->c', dy, xhat)
    coef = (gamma * inv / m)[None, :, None, None]
    dx = coef * (m * dy - dbeta[None, :, None, None] - xhat * dgamma[None, :, None, None])
    return dx, dgamma, dbeta
