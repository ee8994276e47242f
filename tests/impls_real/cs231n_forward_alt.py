# style of: https://github.com/BenJaEGo/cs231n_2017_spring, https://github.com/Akettle44/cs231n (assignment2/cs231n/layers.py)
# layout: CS231n API plus an extra batchnorm_forward_alt: batchnorm_forward keeps a 10-tuple cache of every graph node
#         for the staged batchnorm_backward, batchnorm_forward_alt keeps only (x_norm, gamma, std) for
#         batchnorm_backward_alt; feeding the alt backward the long cache fails with a ValueError on unpacking.
#         Both forwards compute test mode as (x - running_mean) / (sqrt(running_var) + eps): eps outside the root.
# expected: batchnorm_forward out holds; running stats: cs231n
# expected: batchnorm_forward eval_out refuted: eps-outside-sqrt
# expected: batchnorm_backward dx, dgamma, dbeta holds
# expected: batchnorm_forward_alt out holds; running stats: cs231n
# expected: batchnorm_forward_alt eval_out refuted: eps-outside-sqrt
# expected: batchnorm_backward_alt dx, dgamma, dbeta holds
# expected: batchnorm_backward_alt[forward-cache] raises ValueError
import numpy as np


def batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param['mode']
    eps = bn_param.get('eps', 1e-5)
    momentum = bn_param.get('momentum', 0.9)
    N, D = x.shape
    running_mean = bn_param.get('running_mean', np.zeros(D))
    running_var = bn_param.get('running_var', np.zeros(D))
    cache = None
    if mode == 'train':
        s_mean = np.mean(x, axis=0)
        minus = x - s_mean
        square = minus ** 2
        s_var = np.mean(square, axis=0)
        root = np.sqrt(s_var + eps)
        div = minus / root
        mult = gamma * div
        out = mult + beta
        running_mean = momentum * running_mean + (1. - momentum) * s_mean
        running_var = momentum * running_var + (1. - momentum) * s_var
        cache = (minus, square, root, div, mult, s_mean, s_var, gamma, beta, eps)
    elif mode == 'test':
        out = (x - running_mean) / (np.sqrt(running_var) + eps) * gamma + beta
    else:
        raise ValueError(mode)
    bn_param['running_mean'] = running_mean
    bn_param['running_var'] = running_var
    return out, cache


def batchnorm_backward(dout, cache):
    minus, square, root, div, mult, s_mean, s_var, gamma, beta, eps = cache
    N = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * div).sum(axis=0)
    ddiv = dout * gamma
    dminus1 = ddiv / root
    droot = np.sum(-ddiv * minus / root ** 2, axis=0)
    dvar = droot * 0.5 / np.sqrt(s_var + eps)
    dminus2 = 2.0 * minus * dvar / N
    dminus = dminus1 + dminus2
    dmean = -np.sum(dminus, axis=0)
    return dminus + dmean / N, dgamma, dbeta


def batchnorm_forward_alt(x, gamma, beta, bn_param):
    mode = bn_param['mode']
    eps = bn_param.get('eps', 1e-5)
    momentum = bn_param.get('momentum', 0.9)
    N, D = x.shape
    running_mean = bn_param.get('running_mean', np.zeros(D))
    running_var = bn_param.get('running_var', np.zeros(D))
    cache = None
    if mode == 'train':
        mu = x.mean(axis=0)
        var = ((x - mu) ** 2).mean(axis=0)
        std = np.sqrt(var + eps)
        x_norm = (x - mu) / std
        out = x_norm * gamma + beta
        running_mean = momentum * running_mean + (1. - momentum) * mu
        running_var = momentum * running_var + (1. - momentum) * var
        cache = (x_norm, gamma, std)
    elif mode == 'test':
        out = (x - running_mean) / (np.sqrt(running_var) + eps) * gamma + beta
    else:
        raise ValueError(mode)
    bn_param['running_mean'] = running_mean
    bn_param['running_var'] = running_var
    return out, cache


def batchnorm_backward_alt(dout, cache):
    x_norm, gamma, std = cache
    N = dout.shape[0]
    dgamma = np.sum(x_norm * dout, axis=0)
    dbeta = np.sum(dout, axis=0)
    dx = (N * dout * gamma - np.sum(dout * gamma, axis=0) - x_norm * np.sum(dout * gamma * x_norm, axis=0)) / (N * std)
    return dx, dgamma, dbeta
