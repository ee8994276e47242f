"""A correct CS231n-API BatchNorm whose test-mode forward returns a cache, so that its backward
also serves eval mode: there μ and σ² are the running statistics, constants, and the gradient is
dx = γ·dout/√(running_var + ε); dγ = Σ dout·x̂ and dβ = Σ dout as in training."""

import numpy as np


def batchnorm_forward(x, gamma, beta, bn_param):
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)
    training = bn_param["mode"] == "train"
    if training:
        mu, var = x.mean(axis=0), x.var(axis=0)
        bn_param["running_mean"] = momentum * bn_param["running_mean"] + (1 - momentum) * mu
        bn_param["running_var"] = momentum * bn_param["running_var"] + (1 - momentum) * var
    else:
        mu, var = bn_param["running_mean"], bn_param["running_var"]
    inv = 1 / np.sqrt(var + eps)
    xhat = (x - mu) * inv
    return gamma * xhat + beta, (xhat, inv, gamma, training)


def batchnorm_backward(dout, cache):
    xhat, inv, gamma, training = cache
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    if not training:
        return gamma * inv * dout, dgamma, dbeta
    n = dout.shape[0]
    return gamma * inv / n * (n * dout - dbeta - xhat * dgamma), dgamma, dbeta
