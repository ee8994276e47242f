# style of: https://github.com/wiseodd/hipsternet (hipsternet/layer.py bn_forward/bn_backward, hipsternet/constant.py),
#           https://agustinus.kristia.de/techblog/2016/07/04/batchnorm/
# layout: functional pair where the forward takes the running statistics in as a tuple and returns *four* values:
#         bn_forward(X, gamma, beta, cache, momentum=.9, train=True) -> (out, cache, running_mean, running_var);
#         eps is a module-level constant EPS = 1e-8 (hipsternet keeps it in a constants module); inference
#         (train=False) returns cache None; bn_backward(dout, cache) -> (dX, dgamma, dbeta) via dvar/dmu.
# expected: bn_forward out, eval_out holds (eps fixed at 1e-8); running stats: cs231n
# expected: bn_backward dx, dgamma, dbeta holds (eps fixed at 1e-8)
import numpy as np

EPS = 1e-8


def running_avg(old, new, decay=.9):
    return decay * old + (1. - decay) * new


def bn_forward(X, gamma, beta, cache, momentum=.9, train=True):
    running_mean, running_var = cache
    if train:
        mu = np.mean(X, axis=0)
        var = np.var(X, axis=0)
        X_norm = (X - mu) / np.sqrt(var + EPS)
        out = gamma * X_norm + beta
        cache = (X, X_norm, mu, var, gamma, beta)
        running_mean = running_avg(running_mean, mu, momentum)
        running_var = running_avg(running_var, var, momentum)
    else:
        out = gamma * (X - running_mean) / np.sqrt(running_var + EPS) + beta
        cache = None
    return out, cache, running_mean, running_var


def bn_backward(dout, cache):
    X, X_norm, mu, var, gamma, beta = cache
    N = X.shape[0]
    X_mu = X - mu
    std_inv = 1. / np.sqrt(var + EPS)
    dX_norm = dout * gamma
    dvar = np.sum(dX_norm * X_mu, axis=0) * -.5 * std_inv ** 3
    dmu = np.sum(-dX_norm * std_inv, axis=0) + dvar * np.mean(-2. * X_mu, axis=0)
    dX = dX_norm * std_inv + dvar * 2 * X_mu / N + dmu / N
    return dX, np.sum(dout * X_norm, axis=0), np.sum(dout, axis=0)
