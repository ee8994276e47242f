"""Malformed: dgamma not reduced over the batch, shape (N, D) instead of (D,)."""


def bn_backward(x, gamma, beta, dout, eps):
    return dout * gamma, dout * x, dout.sum(axis=0)
