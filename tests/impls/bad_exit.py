"""Malformed: calls sys.exit when imported."""

import sys

sys.exit(3)


def bn_backward(x, gamma, beta, dout, eps):
    return dout, dout.sum(axis=0), dout.sum(axis=0)
