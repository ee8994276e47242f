# style of: the one-function formulations in https://kevinzakka.github.io/2016/09/14/batch_normalization/ and
#           https://github.com/ddbourgin/numpy-ml (BatchNorm1D._bwd recomputing statistics from X)
# layout: a single self-contained gradient function bn_backward(x, gamma, beta, dout, eps) -> (dx, dgamma, dbeta)
#         (no forward, no cache: everything recomputed from x), plus a helper bn_apply(x, gamma, beta, eps) -> out.
# expected: bn_apply out holds
# expected: bn_backward dx, dgamma, dbeta holds
import numpy as np


def bn_apply(x, gamma, beta, eps):
    return gamma * (x - x.mean(0)) / np.sqrt(x.var(0) + eps) + beta


def bn_backward(x, gamma, beta, dout, eps):
    n = x.shape[0]
    rstd = 1.0 / np.sqrt(x.var(0) + eps)
    xhat = (x - x.mean(0)) * rstd
    dbeta = dout.sum(0)
    dgamma = (dout * xhat).sum(0)
    dx = gamma * rstd / n * (n * dout - dbeta - xhat * dgamma)
    return dx, dgamma, dbeta
