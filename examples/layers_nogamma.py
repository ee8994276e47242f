"""examples/layers.py with one mistake: the staged backward forgets γ (dx̂ = dout).

A test with γ = 1 cannot see it.  Try:  bnderive check-impl examples/layers_nogamma.py
"""

import numpy as np


def batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param["mode"]
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)
    running_mean = bn_param.get("running_mean", np.zeros(x.shape[1], dtype=x.dtype))
    running_var = bn_param.get("running_var", np.zeros(x.shape[1], dtype=x.dtype))
    if mode == "train":
        mu = x.mean(axis=0)
        xmu = x - mu
        var = (xmu**2).mean(axis=0)
        inv_std = 1 / np.sqrt(var + eps)
        xhat = xmu * inv_std
        out = gamma * xhat + beta
        running_mean = momentum * running_mean + (1 - momentum) * mu
        running_var = momentum * running_var + (1 - momentum) * var
        cache = (xhat, xmu, inv_std, gamma)
    else:
        out = gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta
        cache = None
    bn_param["running_mean"] = running_mean
    bn_param["running_var"] = running_var
    return out, cache


def batchnorm_backward(dout, cache):
    xhat, xmu, inv_std, gamma = cache
    n = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dxhat = dout  # (γ forgotten: y = γ x̂ + β)
    dvar = (dxhat * xmu).sum(axis=0) * -0.5 * inv_std**3  # x̂ = (x − μ)(σ² + ε)^(−1/2)
    dmu = -(dxhat * inv_std).sum(axis=0) + dvar * -2 * xmu.mean(axis=0)  # the second term is 0
    dx = dxhat * inv_std + dvar * 2 * xmu / n + dmu / n  # σ² = mean((x − μ)²), μ = mean(x)
    return dx, dgamma, dbeta


def batchnorm_backward_alt(dout, cache):
    xhat, xmu, inv_std, gamma = cache
    n = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dx = gamma * inv_std / n * (n * dout - dbeta - xhat * dgamma)
    return dx, dgamma, dbeta
