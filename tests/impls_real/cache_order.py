# style of: cache-tuple unpacking as in https://kevinzakka.github.io/2016/09/14/batch_normalization/ (cache
#           x_mu, inv_var, x_hat, gamma) combined with a forward that packs the same names in a different order
#           (the mismatch the CS231n forward/backward split invites, cf. https://github.com/BenJaEGo/cs231n_2017_spring)
# layout: bn_forward(x, gamma, beta, eps=1e-5) -> (out, cache) packs cache = (x_hat, x_mu, inv_var, gamma);
#         bn_backward(dout, cache) unpacks x_mu, x_hat, inv_var, gamma = cache - the first two swapped. Shapes agree,
#         so nothing fails: the backward's "x_hat" is really x - mu.
# expected: bn_forward out holds
# expected: bn_backward dx, dgamma refuted: cache-order(x_hat<->x_mu)
# expected: bn_backward dbeta holds
import numpy as np


def bn_forward(x, gamma, beta, eps=1e-5):
    mu = np.mean(x, axis=0)
    x_mu = x - mu
    inv_var = 1.0 / np.sqrt(np.mean(x_mu ** 2, axis=0) + eps)
    x_hat = x_mu * inv_var
    return gamma * x_hat + beta, (x_hat, x_mu, inv_var, gamma)


def bn_backward(dout, cache):
    x_mu, x_hat, inv_var, gamma = cache
    N = dout.shape[0]
    dxhat = dout * gamma
    dx = (1. / N) * inv_var * (N * dxhat - np.sum(dxhat, axis=0) - x_hat * np.sum(dxhat * x_hat, axis=0))
    dbeta = np.sum(dout, axis=0)
    dgamma = np.sum(x_hat * dout, axis=0)
    return dx, dgamma, dbeta
