"""Wrong: cs231n_staged.py with the sign of dσ² flipped in the staged backward.

Otherwise a CS231n-style BatchNorm, written from the graph: the staged backward walks the forward
stages in reverse (x̂ → σ² → μ → x), the alternative one uses the compact closed form."""

import numpy as np


def batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param["mode"]
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)
    n, d = x.shape
    running_mean = bn_param.get("running_mean", np.zeros(d, dtype=x.dtype))
    running_var = bn_param.get("running_var", np.zeros(d, dtype=x.dtype))
    if mode == "train":
        mu = 1.0 / n * np.sum(x, axis=0)
        xc = x - mu
        var = 1.0 / n * np.sum(xc**2, axis=0)
        std = np.sqrt(var + eps)
        istd = 1.0 / std
        xhat = xc * istd
        out = gamma * xhat + beta
        cache = (xhat, xc, istd, std, var, gamma, eps)
        running_mean = momentum * running_mean + (1 - momentum) * mu
        running_var = momentum * running_var + (1 - momentum) * var
    else:
        xhat = (x - running_mean) / np.sqrt(running_var + eps)
        out = gamma * xhat + beta
        cache = None
    bn_param["running_mean"] = running_mean
    bn_param["running_var"] = running_var
    return out, cache


def batchnorm_backward(dout, cache):
    xhat, xc, istd, std, var, gamma, eps = cache
    n = dout.shape[0]
    dbeta = np.sum(dout, axis=0)
    dgamma = np.sum(dout * xhat, axis=0)
    dxhat = dout * gamma
    # x̂ = xc · istd: both factors depend on x
    dxc = dxhat * istd
    distd = np.sum(dxhat * xc, axis=0)
    dstd = -1.0 / std**2 * distd
    dvar = -0.5 / np.sqrt(var + eps) * dstd  # sign flipped
    # var = mean(xc²)
    dsq = 1.0 / n * np.ones_like(dout) * dvar
    dxc += 2 * xc * dsq
    # xc = x − μ
    dmu = -np.sum(dxc, axis=0)
    dx = dxc + 1.0 / n * np.ones_like(dout) * dmu
    return dx, dgamma, dbeta


def batchnorm_backward_alt(dout, cache):
    xhat, xc, istd, std, var, gamma, eps = cache
    n = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dx = gamma * istd / n * (n * dout - dbeta - xhat * dgamma)
    return dx, dgamma, dbeta
