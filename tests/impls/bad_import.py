"""Malformed: imports a module that does not exist, and the BatchNorm code uses it."""

import cs231n_layers_that_do_not_exist
import numpy as np  # noqa: F401


def bn_backward(x, gamma, beta, dout, eps):
    return cs231n_layers_that_do_not_exist.zeros(x), gamma, beta
