# style of: https://github.com/Aaron-Cai/cs231n_assignment (assignment2/cs231n/layers.py, batchnorm_backward)
# layout: CS231n API; forward right (cache = (x_norm, mu, var, stdev)); the backward is a first attempt that
#         treats the batch statistics as constants AND drops gamma: dx = dout / stdev; dgamma is written as a matrix
#         product dout.T @ x_norm, a (D, D) matrix whose diagonal is the right dgamma; batchnorm_backward_alt just
#         calls batchnorm_backward.
# expected: batchnorm_forward out, eval_out holds; running stats: cs231n
# expected: batchnorm_backward dx refuted: gamma-missing + stats-constant
# expected: batchnorm_backward dgamma refuted: shape-DxD
# expected: batchnorm_backward dbeta holds
# expected: batchnorm_backward_alt dx refuted: gamma-missing + stats-constant
# expected: batchnorm_backward_alt dgamma refuted: shape-DxD
# expected: batchnorm_backward_alt dbeta holds
import numpy as np


def batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param['mode']
    eps = bn_param.get('eps', 1e-5)
    momentum = bn_param.get('momentum', 0.9)
    D = x.shape[1]
    running_mean = bn_param.get('running_mean', np.zeros(D))
    running_var = bn_param.get('running_var', np.zeros(D))
    cache = None
    if mode == 'train':
        mu = np.mean(x, axis=0)
        var = np.var(x, axis=0)
        stdev = np.sqrt(var + eps)
        x_norm = (x - mu) / stdev
        out = gamma * x_norm + beta
        running_mean = momentum * running_mean + (1 - momentum) * mu
        running_var = momentum * running_var + (1 - momentum) * var
        cache = (x_norm, mu, var, stdev)
    elif mode == 'test':
        stdev = np.sqrt(running_var + eps)
        out = gamma * (x - running_mean) / stdev + beta
    else:
        raise ValueError(mode)
    bn_param['running_mean'] = running_mean
    bn_param['running_var'] = running_var
    return out, cache


def batchnorm_backward(dout, cache):
    x_norm, mu, var, stdev = cache
    dx = dout / stdev
    dgamma = np.dot(dout.T, x_norm)
    dbeta = np.sum(dout, axis=0)
    return dx, dgamma, dbeta


def batchnorm_backward_alt(dout, cache):
    return batchnorm_backward(dout, cache)
