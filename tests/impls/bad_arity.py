"""Malformed: returns two values instead of (dx, dgamma, dbeta)."""


def bn_backward(x, gamma, beta, dout, eps):
    return dout * gamma, dout.sum(axis=0)
