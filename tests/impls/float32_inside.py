"""A right backward that computes in float32 but returns float64 (γ is float64 and promotes):
its error is float32 rounding, which no float64 tolerance can tell from a small mistake."""

import numpy as np


def bn_backward(x, gamma, beta, dout, eps):
    x, dout = x.astype(np.float32), dout.astype(np.float32)
    m = x.shape[0]
    inv = 1 / np.sqrt(x.var(0) + eps)
    xhat = (x - x.mean(0)) * inv
    dgamma, dbeta = (dout * xhat).sum(0), dout.sum(0)
    return gamma * inv / m * (m * dout - dbeta - xhat * dgamma), dgamma, dbeta
