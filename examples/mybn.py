"""A BatchNorm backward as one function, the way many posts write it (for bnderive's README).

It holds μ and σ² constant: the eval-mode gradient, used for a training-mode layer.
Try:  bnderive check-impl examples/mybn.py
"""

import numpy as np


def bn_backward(x, gamma, beta, dout, eps):
    mu = x.mean(axis=0)
    inv_std = 1 / np.sqrt(x.var(axis=0) + eps)
    xhat = (x - mu) * inv_std
    dgamma = (dout * xhat).sum(axis=0)
    dbeta = dout.sum(axis=0)
    dx = gamma * inv_std * dout
    return dx, dgamma, dbeta
