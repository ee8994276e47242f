"""Malformed: never returns."""


def bn_backward(x, gamma, beta, dout, eps):
    while True:
        pass
