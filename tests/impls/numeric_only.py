"""A correct backward that cannot run exactly: it takes the root through exp and log."""

import numpy as np


def bn_backward(x, gamma, beta, dout, eps):
    mu = x.mean(axis=0)
    var = ((x - mu) ** 2).mean(axis=0)
    inv = np.exp(-0.5 * np.log(var + eps))
    xhat = (x - mu) * inv
    n = x.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dx = gamma * inv / n * (n * dout - dbeta - xhat * dgamma)
    return dx, dgamma, dbeta
