"""A BatchNorm backward whose path through μ is three times too large (for bnderive's README).

No known mistake matches it; bnderive localises the error to the term dμ/M of the staged chain.
Try:  bnderive check-impl examples/mybn_dmu.py
"""

import numpy as np


def bn_backward(x, gamma, beta, dout, eps):
    n = x.shape[0]
    mu = x.mean(axis=0)
    xmu = x - mu
    inv_std = 1 / np.sqrt((xmu**2).mean(axis=0) + eps)
    xhat = xmu * inv_std
    dxhat = dout * gamma
    dvar = -0.5 * (dxhat * xmu).sum(axis=0) * inv_std**3
    dmu = -3 * (dxhat * inv_std).sum(axis=0)  # should be −Σ dx̂ / √(σ²+ε)
    dx = dxhat * inv_std + dvar * 2 * xmu / n + dmu / n
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)
