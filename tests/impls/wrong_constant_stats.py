"""Wrong: the training-mode backward with μ and σ² treated as constants (the eval formula)."""

import numpy as np


def bn_backward(x, gamma, beta, dout, eps):
    mu = x.mean(axis=0)
    var = x.var(axis=0)
    inv = 1 / np.sqrt(var + eps)
    xhat = (x - mu) * inv
    return gamma * inv * dout, (dout * xhat).sum(axis=0), dout.sum(axis=0)
