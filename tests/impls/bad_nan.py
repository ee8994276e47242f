"""Malformed: NaN in dx."""

import numpy as np


def bn_backward(x, gamma, beta, dout, eps):
    return dout * np.nan, dout.sum(axis=0), dout.sum(axis=0)
