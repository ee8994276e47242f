"""A correct functional backward that is named batchnorm_backward but takes (x, gamma, beta, dout,
eps): the name alone must not make it the CS231n API."""

import numpy as np


def batchnorm_backward(x, gamma, beta, dout, eps):
    m = x.shape[0]
    mean = x.mean(0)
    var = x.var(0)
    invstd = 1.0 / np.sqrt(var + eps)
    xhat = (x - mean) * invstd
    dgamma = (dout * xhat).sum(0)
    dbeta = dout.sum(0)
    dx = gamma * invstd * (dout - dbeta / m - xhat * dgamma / m)
    return dx, dgamma, dbeta
