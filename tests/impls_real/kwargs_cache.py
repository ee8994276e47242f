# style of: https://kratzert.github.io/2016/02/12/understanding-the-gradient-flow-through-the-batch-normalization-layer.html
#           (forward with eps as the 4th parameter), https://github.com/Anner-deJong/CS231n_2016 (dict cache)
# layout: batchnorm_forward(x, gamma, beta, eps) -> (out, cache) where cache is a dict meant to be splatted:
#         batchnorm_backward(dout, *, xhat, inv_std, gamma, **_) -> (dx, dgamma, dbeta), called as
#         batchnorm_backward(dout, **cache); the dict carries extra keys the backward ignores.
# expected: batchnorm_forward out holds
# expected: batchnorm_backward dx, dgamma, dbeta holds
import numpy as np


def batchnorm_forward(x, gamma, beta, eps):
    mean = x.mean(0)
    var = x.var(0)
    inv_std = (var + eps) ** -0.5
    xhat = (x - mean) * inv_std
    out = gamma * xhat + beta
    return out, dict(xhat=xhat, inv_std=inv_std, gamma=gamma, mean=mean, var=var, eps=eps)


def batchnorm_backward(dout, *, xhat, inv_std, gamma, **_):
    dbeta = dout.sum(0)
    dgamma = (dout * xhat).sum(0)
    g = gamma * dout
    dx = inv_std * (g - g.mean(0) - xhat * (g * xhat).mean(0))
    return dx, dgamma, dbeta
