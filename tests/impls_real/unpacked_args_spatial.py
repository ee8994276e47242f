# style of: https://github.com/BiEchi/MedoFlow (help/operators/bn_autodiff.ipynb, np_batch_norm_2d_backward)
# layout: spatial functional pair on (N,C,H,W) where the backward takes the raw inputs instead of a cache:
#         np_batch_norm_2d(x, gamma, beta, eps=1e-5) -> y, np_batch_norm_2d_backward(dout, x, gamma, eps=1e-5) ->
#         (dx, dgamma, dbeta); gamma/beta are (1, C, 1, 1) arrays and dgamma/dbeta come back (1, C, 1, 1)
#         (keepdims=True); the backward recomputes mean and variance and uses the paper's dvar/dmean terms.
# expected: np_batch_norm_2d out holds
# expected: np_batch_norm_2d_backward dx, dgamma, dbeta holds (dgamma/dbeta shaped (1, C, 1, 1))
import numpy as np


def np_batch_norm_2d(x, gamma, beta, eps=1e-5):
    mean = np.mean(x, axis=(0, 2, 3), keepdims=True)
    var = np.var(x, axis=(0, 2, 3), keepdims=True)
    return gamma * (x - mean) / np.sqrt(var + eps) + beta


def np_batch_norm_2d_backward(dout, x, gamma, eps=1e-5):
    N, C, H, W = x.shape
    m = N * H * W
    mean = np.mean(x, axis=(0, 2, 3), keepdims=True)
    var = np.mean((x - mean) ** 2, axis=(0, 2, 3), keepdims=True)
    istd = 1.0 / np.sqrt(var + eps)
    x_norm = (x - mean) * istd
    dgamma = np.sum(dout * x_norm, axis=(0, 2, 3), keepdims=True)
    dbeta = np.sum(dout, axis=(0, 2, 3), keepdims=True)
    dx_norm = dout * gamma
    dvar = np.sum(dx_norm * (x - mean) * -0.5 * istd ** 3, axis=(0, 2, 3), keepdims=True)
    dmean = (np.sum(-dx_norm * istd, axis=(0, 2, 3), keepdims=True)
             + dvar * np.mean(-2.0 * (x - mean), axis=(0, 2, 3), keepdims=True))
    dx = dx_norm * istd + dvar * 2.0 * (x - mean) / m + dmean / m
    return dx, dgamma, dbeta
