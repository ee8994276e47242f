# style of: https://github.com/Al73r/CS231n (assignment2/cs231n/layers.py, batchnorm_forward; backward left as `pass`)
# layout: CS231n API, forward only (the backward functions are unimplemented stubs returning None, as in the surveyed
#         work-in-progress file): the shift is added before scaling, out = (x - mean + beta) / std * gamma; the std is
#         np.std without eps (bn_param['eps'] ignored); running_var averages the std instead of the variance and test
#         mode divides by running_var itself; the cache is a dict.
# expected: batchnorm_forward out refuted: beta-inside + eps-ignored
# expected: batchnorm_forward running_mean holds; running stats: cs231n
# expected: batchnorm_forward running_var refuted: std-for-var
# expected: batchnorm_forward eval_out refuted: beta-inside + var-for-std + eps-dropped
# expected: batchnorm_backward dx, dgamma, dbeta returns None (unimplemented stub)
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
        xmean = x.mean(axis=0)
        xstd = x.std(axis=0)
        tmp = x - xmean + beta
        out = tmp / xstd * gamma
        cache = {'xstd': xstd, 'gamma': gamma, 'tmp': tmp, 'x': x}
        running_mean = momentum * running_mean + (1 - momentum) * xmean
        running_var = momentum * running_var + (1 - momentum) * xstd
    elif mode == 'test':
        tmp = x - running_mean + beta
        out = tmp / running_var * gamma
    else:
        raise ValueError(mode)
    bn_param['running_mean'] = running_mean
    bn_param['running_var'] = running_var
    return out, cache


def batchnorm_backward(dout, cache):
    dx, dgamma, dbeta = None, None, None
    pass
    return dx, dgamma, dbeta
