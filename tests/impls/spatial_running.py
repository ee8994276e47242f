"""A correct CS231n SPATIAL BatchNorm written the assignment's way: (N, C, H, W) is laid out as
(N·H·W, C) and handed to the PER_ACTIVATION functions, so the statistics of channel c run over
M = N·H·W elements, and so do its running statistics (CS231n's convention: the momentum, default
0.9, weighs the old value; running_var averages the biased σ²)."""

import numpy as np


def batchnorm_forward(x, gamma, beta, bn_param):
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)
    if bn_param["mode"] == "train":
        mu = x.mean(axis=0)
        xc = x - mu
        var = (xc * xc).mean(axis=0)
        bn_param["running_mean"] = momentum * bn_param["running_mean"] + (1 - momentum) * mu
        bn_param["running_var"] = momentum * bn_param["running_var"] + (1 - momentum) * var
        inv = 1 / np.sqrt(var + eps)
        xhat = xc * inv
        return gamma * xhat + beta, (xhat, inv, gamma)
    xhat = (x - bn_param["running_mean"]) / np.sqrt(bn_param["running_var"] + eps)
    return gamma * xhat + beta, None


def batchnorm_backward(dout, cache):
    xhat, inv, gamma = cache
    m = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    return gamma * inv / m * (m * dout - dbeta - xhat * dgamma), dgamma, dbeta


def _rows(x):
    n, c, h, w = x.shape
    return x.transpose(0, 2, 3, 1).reshape(n * h * w, c)


def _unrows(rows, shape):
    n, c, h, w = shape
    return rows.reshape(n, h, w, c).transpose(0, 3, 1, 2)


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    out, cache = batchnorm_forward(_rows(x), gamma, beta, bn_param)
    return _unrows(out, x.shape), cache


def spatial_batchnorm_backward(dout, cache):
    dx, dgamma, dbeta = batchnorm_backward(_rows(dout), cache)
    return _unrows(dx, dout.shape), dgamma, dbeta
