"""Malformed: raises in the backward."""


def bn_backward(x, gamma, beta, dout, eps):
    scale = gamma / 0.0 if False else gamma
    return dout * scale, undefined_name, dout.sum(axis=0)  # noqa: F821
