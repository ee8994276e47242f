# style of: the Kratzert graph-walk code (https://kratzert.github.io/2016/02/12/understanding-the-gradient-flow-through-the-batch-normalization-layer.html)
#           as adapted with `ddof = 1 if N > 1 else 0` in the variance step (a copy found by content search of
#           public code); cf. https://github.com/pytorch/pytorch/issues/60528 on biased vs unbiased variance
# layout: batchnorm_forward(x, gamma, beta, eps) -> (out, cache) with eps as 4th parameter and the 7-tuple
#         Kratzert cache; step 4 divides by N-1 (Bessel) so the layer normalises with the *unbiased* variance; the
#         graph-walk backward still spreads dvar with 1/N (step 4 unchanged), so it is the biased-variance gradient
#         formula evaluated at the unbiased variance - neither the truth nor the derivative of its own forward.
# expected: batchnorm_forward out refuted: unbiased-var
# expected: batchnorm_backward dx, dgamma refuted: unbiased-var
# expected: batchnorm_backward dbeta holds
import numpy as np


def batchnorm_forward(x, gamma, beta, eps):
    N, D = x.shape
    ddof = 1 if N > 1 else 0
    mu = np.sum(x, axis=0) / N
    xmu = x - mu
    sq = xmu ** 2
    var = np.sum(sq, axis=0) / (N - ddof)
    sqrtvar = np.sqrt(var + eps)
    ivar = 1. / sqrtvar
    xhat = xmu * ivar
    out = gamma * xhat + beta
    return out, (xhat, gamma, xmu, ivar, sqrtvar, var, eps)


def batchnorm_backward(dout, cache):
    xhat, gamma, xmu, ivar, sqrtvar, var, eps = cache
    N, D = dout.shape
    dbeta = np.sum(dout, axis=0)
    dgamma = np.sum(dout * xhat, axis=0)
    dxhat = dout * gamma
    divar = np.sum(dxhat * xmu, axis=0)
    dxmu1 = dxhat * ivar
    dsqrtvar = -1. / (sqrtvar ** 2) * divar
    dvar = 0.5 * 1. / np.sqrt(var + eps) * dsqrtvar
    dsq = 1. / N * np.ones((N, D)) * dvar
    dxmu2 = 2 * xmu * dsq
    dx1 = dxmu1 + dxmu2
    dmu = -1 * np.sum(dxmu1 + dxmu2, axis=0)
    dx2 = 1. / N * np.ones((N, D)) * dmu
    return dx1 + dx2, dgamma, dbeta
