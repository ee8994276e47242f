# style of: https://github.com/denizyuret/Knet.jl/issues/288 (the same slip in Knet's CPU batchnorm backward: the
#           input gradient built from dy instead of gamma*dy), written in the CS231n layout of
#           https://github.com/kaiweihuang/CS231n (assignment2/cs231n/layers.py)
# layout: CS231n API; cache = (x, x_mean, x_var, x_normed, gamma, beta, eps); the staged backward multiplies
#         dgamma/dbeta correctly but propagates dout itself into the normalisation (dx_normed = dout), so dx lacks the
#         factor gamma (invisible with a fresh layer's gamma = 1); the compact _alt version is right.
# expected: batchnorm_forward out, eval_out holds; running stats: cs231n
# expected: batchnorm_backward dgamma, dbeta holds
# expected: batchnorm_backward dx refuted: gamma-missing
# expected: batchnorm_backward_alt dx, dgamma, dbeta holds
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
        x_mean = np.mean(x, axis=0)
        x_var = np.var(x, axis=0)
        x_normed = (x - x_mean) / np.sqrt(x_var + eps)
        out = gamma * x_normed + beta
        running_mean = momentum * running_mean + (1 - momentum) * x_mean
        running_var = momentum * running_var + (1 - momentum) * x_var
        cache = (x, x_mean, x_var, x_normed, gamma, beta, eps)
    elif mode == 'test':
        out = gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta
    else:
        raise ValueError(mode)
    bn_param['running_mean'] = running_mean
    bn_param['running_var'] = running_var
    return out, cache


def batchnorm_backward(dout, cache):
    x, x_mean, x_var, x_normed, gamma, beta, eps = cache
    N, D = x.shape
    dbeta = np.sum(dout, axis=0)
    dgamma = np.sum(dout * x_normed, axis=0)
    dx_normed = dout
    d_inv_sqrt = np.sum(dx_normed * (x - x_mean), axis=0)
    dxmu1 = dx_normed / np.sqrt(x_var + eps)
    d_sqrt = d_inv_sqrt * (-1.0 / (x_var + eps))
    d_var = d_sqrt * 0.5 / np.sqrt(x_var + eps)
    dxmu2 = 2.0 * (x - x_mean) * np.ones((N, D)) * d_var / N
    dxmu = dxmu1 + dxmu2
    dmu = -np.sum(dxmu, axis=0)
    dx = dxmu + np.ones((N, D)) * dmu / N
    return dx, dgamma, dbeta


def batchnorm_backward_alt(dout, cache):
    x, x_mean, x_var, x_normed, gamma, beta, eps = cache
    N = x.shape[0]
    dxn = dout * gamma
    dvar = np.sum(-0.5 * x_normed * dxn / (x_var + eps), axis=0)
    dmean = np.sum(-dxn / np.sqrt(x_var + eps), axis=0)
    dx = dxn / np.sqrt(x_var + eps) + 2.0 / N * dvar * (x - x_mean) + dmean / N
    return dx, np.sum(dout * x_normed, axis=0), np.sum(dout, axis=0)
