"""A SPATIAL BatchNorm that takes its statistics over N alone, for every (c, h, w), as an (N, D)
layer would: the axes (0,) where spatial BatchNorm reduces over (0, 2, 3)."""

import numpy as np


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    eps = bn_param.get("eps", 1e-5)
    mu = x.mean(axis=0, keepdims=True)  # over N only
    xc = x - mu
    var = (xc * xc).mean(axis=0, keepdims=True)
    inv = 1 / np.sqrt(var + eps)
    xhat = xc * inv
    g = gamma.reshape(1, -1, 1, 1)
    return g * xhat + beta.reshape(1, -1, 1, 1), (xhat, inv, gamma)


def spatial_batchnorm_backward(dout, cache):
    xhat, inv, gamma = cache
    n = dout.shape[0]
    g = gamma.reshape(1, -1, 1, 1)
    dbeta = dout.sum(axis=(0, 2, 3))
    dgamma = (dout * xhat).sum(axis=(0, 2, 3))
    # the per-activation compact form, reduced over N only
    dbeta_col = dout.sum(axis=0, keepdims=True)
    dgamma_col = (dout * xhat).sum(axis=0, keepdims=True)
    dx = g * inv / n * (n * dout - dbeta_col - xhat * dgamma_col)
    return dx, dgamma, dbeta
