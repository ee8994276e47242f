"""A correct CS231n-style SPATIAL BatchNorm on (N, C, H, W): statistics per channel over the axes
(0, 2, 3), M = N·H·W elements each; the backward is the compact form over the same axes."""

import numpy as np

AXES = (0, 2, 3)


def _channel(v):
    return v.reshape(1, -1, 1, 1)


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    eps = bn_param.get("eps", 1e-5)
    mu = x.mean(axis=AXES, keepdims=True)
    xc = x - mu
    var = (xc * xc).mean(axis=AXES, keepdims=True)
    inv = 1 / np.sqrt(var + eps)
    xhat = xc * inv
    return _channel(gamma) * xhat + _channel(beta), (xhat, inv, gamma)


def spatial_batchnorm_backward(dout, cache):
    xhat, inv, gamma = cache
    m = dout.shape[0] * dout.shape[2] * dout.shape[3]
    dbeta = dout.sum(axis=AXES)
    dgamma = (dout * xhat).sum(axis=AXES)
    dx = _channel(gamma) * inv / m * (m * dout - _channel(dbeta) - xhat * _channel(dgamma))
    return dx, dgamma, dbeta
