"""Malformed: dgamma not reduced over the batch, shape (N, D) instead of (D,); dx and dbeta are
right, and are still checked (the wrong dgamma gets its own row)."""

import numpy as np


def bn_backward(x, gamma, beta, dout, eps):
    inv = 1 / np.sqrt(x.var(axis=0) + eps)
    xhat = (x - x.mean(axis=0)) * inv
    dx = gamma * inv * (dout - dout.mean(axis=0) - xhat * (dout * xhat).mean(axis=0))
    return dx, dout * xhat, dout.sum(axis=0)
