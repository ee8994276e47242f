"""A correct CS231n-API BatchNorm that keeps PyTorch's running statistics: the momentum (default
0.1) weighs the NEW batch value, and running_var averages the unbiased batch variance
n/(n−1)·σ², while the forward normalizes with the biased σ²."""

import numpy as np


def batchnorm_forward(x, gamma, beta, bn_param):
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.1)
    if bn_param["mode"] == "train":
        n = x.shape[0]
        mu = x.mean(axis=0)
        xc = x - mu
        var = (xc * xc).mean(axis=0)
        bn_param["running_mean"] = (1 - momentum) * bn_param["running_mean"] + momentum * mu
        unbiased = var * n / (n - 1)
        bn_param["running_var"] = (1 - momentum) * bn_param["running_var"] + momentum * unbiased
    else:
        xc = x - bn_param["running_mean"]
        var = bn_param["running_var"]
    inv = 1 / np.sqrt(var + eps)
    xhat = xc * inv
    return gamma * xhat + beta, (xhat, inv, gamma)


def batchnorm_backward(dout, cache):
    xhat, inv, gamma = cache
    n = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dx = gamma * inv / n * (n * dout - dbeta - xhat * dgamma)
    return dx, dgamma, dbeta
