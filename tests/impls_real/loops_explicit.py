# style of: https://csclub.uwaterloo.ca/~n52jain/bn.html (element-by-element "fool's way" derivation), an explicit-loop
#           class BatchNorm(gamma, beta) with per-column Python loops found by content search of public code (repository
#           not attributable), and the unpacked-argument backward of https://github.com/BiEchi/MedoFlow
# layout: batch_norm_forward(x, gamma, beta, eps) -> out only; batch_norm_backward(dout, x, gamma, eps) ->
#         (dx, dgamma, dbeta) recomputing everything with explicit Python for-loops over features and samples
#         (np.zeros buffers filled element by element; math.sqrt on scalars).
# expected: batch_norm_forward out holds
# expected: batch_norm_backward dx, dgamma, dbeta holds
import math
import numpy as np


def _stats(col):
    n = len(col)
    mu = 0.0
    for v in col:
        mu += v
    mu = mu / n
    var = 0.0
    for v in col:
        var += (v - mu) * (v - mu)
    return mu, var / n


def batch_norm_forward(x, gamma, beta, eps):
    n, d = x.shape
    out = np.zeros((n, d))
    for j in range(d):
        mu, var = _stats(x[:, j])
        s = math.sqrt(var + eps)
        for i in range(n):
            out[i, j] = gamma[j] * (x[i, j] - mu) / s + beta[j]
    return out


def batch_norm_backward(dout, x, gamma, eps):
    n, d = x.shape
    dx = np.zeros((n, d))
    dgamma = np.zeros(d)
    dbeta = np.zeros(d)
    for j in range(d):
        mu, var = _stats(x[:, j])
        s = math.sqrt(var + eps)
        xhat = [(x[i, j] - mu) / s for i in range(n)]
        sum_g = 0.0
        sum_gx = 0.0
        for i in range(n):
            dbeta[j] += dout[i, j]
            dgamma[j] += dout[i, j] * xhat[i]
            sum_g += dout[i, j] * gamma[j]
            sum_gx += dout[i, j] * gamma[j] * xhat[i]
        for i in range(n):
            dx[i, j] = (dout[i, j] * gamma[j] - sum_g / n - xhat[i] * sum_gx / n) / s
    return dx, dgamma, dbeta
