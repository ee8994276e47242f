"""A right backward written with loops into np.zeros buffers, as students do: the buffers must
not turn the exact run into float64."""

import numpy as np


def bn_backward(x, gamma, beta, dout, eps):
    N, D = x.shape
    dx = np.zeros_like(x)
    dgamma = np.zeros(D)
    dbeta = np.zeros(D)
    for d in range(D):
        col = x[:, d]
        mu = sum(col) / N
        var = sum((v - mu) ** 2 for v in col) / N
        inv = 1 / np.sqrt(var + eps)
        xh = [(v - mu) * inv for v in col]
        dbeta[d] = sum(dout[:, d])
        dgamma[d] = sum(g * h for g, h in zip(dout[:, d], xh, strict=True))
        for n in range(N):
            dx[n, d] = gamma[d] * inv / N * (N * dout[n, d] - dbeta[d] - xh[n] * dgamma[d])
    return dx, dgamma, dbeta
