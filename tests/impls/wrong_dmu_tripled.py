"""A staged backward whose path through μ is three times too large: no known mistake, but the
error is the same for every element of a feature, which points at dμ."""

import numpy as np


def bn_backward(x, gamma, beta, dout, eps):
    n = x.shape[0]
    mu = x.mean(axis=0)
    xc = x - mu
    var = (xc * xc).mean(axis=0)
    inv = 1 / np.sqrt(var + eps)
    dxhat = dout * gamma
    dvar = np.sum(dxhat * xc, axis=0) * -0.5 * inv**3
    dmu = -np.sum(dxhat * inv, axis=0)
    dx = dxhat * inv + dvar * 2 * xc / n + 3 * dmu / n
    return dx, np.sum(dout * xc * inv, axis=0), np.sum(dout, axis=0)
