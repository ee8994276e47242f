"""Wrong: functional.py with Bessel's 1/(N−1) variance (np.var(..., ddof=1)) where BatchNorm's
training-mode variance is biased (1/N); otherwise a functional BatchNorm backward
(PER_ACTIVATION), through np.mean and np.var.

With x̂ = (x − μ)/√(σ²+ε), the compact form: dx = γ/√(σ²+ε) · (g − mean(g) − x̂ · mean(g·x̂)).
In eval mode μ and σ² are the running statistics, constants: dx = γ g /√(running_var + ε).
"""

import numpy as np


def bn_backward(x, gamma, beta, dout, eps):
    mu = np.mean(x, axis=0)
    var = np.var(x, axis=0, ddof=1)  # Bessel in the forward
    inv = 1 / np.sqrt(var + eps)
    xhat = (x - mu) * inv
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dx = gamma * inv * (dout - np.mean(dout, axis=0) - xhat * np.mean(dout * xhat, axis=0))
    return dx, dgamma, dbeta


def bn_backward_eval(x, gamma, beta, dout, eps, running_mean, running_var):
    inv = 1 / np.sqrt(running_var + eps)
    xhat = (x - running_mean) * inv
    return gamma * inv * dout, (dout * xhat).sum(axis=0), dout.sum(axis=0)
