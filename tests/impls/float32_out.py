"""A right float32 kernel: every result is float32, so float32 rounding is allowed for."""

import numpy as np


def bn_backward(x, gamma, beta, dout, eps):
    x, dout, gamma = x.astype(np.float32), dout.astype(np.float32), gamma.astype(np.float32)
    m = x.shape[0]
    inv = 1 / np.sqrt(x.var(0) + np.float32(eps))
    xhat = (x - x.mean(0)) * inv
    dgamma, dbeta = (dout * xhat).sum(0), dout.sum(0)
    return gamma * inv / m * (m * dout - dbeta - xhat * dgamma), dgamma, dbeta
