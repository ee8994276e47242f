"""Malformed: imports a module that does not exist."""

import cs231n_layers_that_do_not_exist  # noqa: F401
import numpy as np


def bn_backward(x, gamma, beta, dout, eps):
    return np.zeros_like(x), gamma, beta
