# style of: https://github.com/Anner-deJong/CS231n_2016 (assignment2/cs231n/layers.py)
# layout: CS231n API; the cache is a dict (keys 'x', 'g', 'std', 'xn', 'eps'); the variance is computed from raw
#         moments E[x^2] - E[x]^2 (mathematically exact, numerically weaker for large means); backward recomputes the
#         mean from the cached x; running stats and eps from bn_param; no spatial functions.
# expected: batchnorm_forward out, eval_out holds; running stats: cs231n
# expected: batchnorm_backward dx, dgamma, dbeta holds
# expected: batchnorm_backward_alt dx, dgamma, dbeta holds
import numpy as np


def batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param['mode']
    eps = bn_param.get('eps', 1e-5)
    momentum = bn_param.get('momentum', 0.9)
    n, d = x.shape
    running_mean = bn_param.get('running_mean', np.zeros(d))
    running_var = bn_param.get('running_var', np.zeros(d))
    cache = None
    if mode == 'train':
        first = np.sum(x, axis=0) / n
        second = np.sum(x * x, axis=0) / n
        var = second - first * first
        std = np.sqrt(var + eps)
        xn = (x - first) / std
        out = gamma * xn + beta
        running_mean = momentum * running_mean + (1 - momentum) * first
        running_var = momentum * running_var + (1 - momentum) * var
        cache = {'x': x, 'g': gamma, 'std': std, 'xn': xn, 'eps': eps}
    else:
        out = gamma * ((x - running_mean) / np.sqrt(running_var + eps)) + beta
    bn_param['running_mean'] = running_mean
    bn_param['running_var'] = running_var
    return out, cache


def batchnorm_backward(dout, cache):
    x, g, std, xn = cache['x'], cache['g'], cache['std'], cache['xn']
    n = x.shape[0]
    xc = x - np.mean(x, axis=0)
    dxn = dout * g
    dstd_term = -(np.sum(dxn * xc, axis=0)) / std ** 3 / n    # d/dvar path, already times dvar/dx
    dm = dxn / std + xc * dstd_term
    dx = dm - np.sum(dm, axis=0) / n
    return dx, np.sum(dout * xn, axis=0), np.sum(dout, axis=0)


def batchnorm_backward_alt(dout, cache):
    x, g, std, xn = cache['x'], cache['g'], cache['std'], cache['xn']
    n = x.shape[0]
    xc = x - x.mean(axis=0)
    dxn = dout * g
    dx = (dxn - dxn.sum(axis=0) / n - xc * (xc * dxn).sum(axis=0) / (n * std ** 2)) / std
    return dx, (dout * xn).sum(axis=0), dout.sum(axis=0)
