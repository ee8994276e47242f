# style of: https://github.com/oilneck/prml_python (prml/deepL_module/nn/layers/hipstar_tech.py: np.sqrt(var + 1e-8)),
#           https://github.com/wiseodd/hipsternet (hipsternet/constant.py eps = 1e-8) - transplanted into the CS231n API
#           of https://github.com/zlotus/cs231n
# layout: CS231n API; batchnorm_forward reads eps from bn_param but normalises with a literal 1e-8 (train and test);
#         batchnorm_backward differentiates that forward exactly (the literal again), so the pair is consistent with
#         itself and wrong only where the caller's eps is not 1e-8.
# expected: batchnorm_forward out, eval_out refuted: eps-hardcoded(1e-8)
# expected: batchnorm_forward running_mean, running_var holds; running stats: cs231n
# expected: batchnorm_backward dx self-consistent with its own forward, but forward uses hard-coded eps=1e-8 instead of bn_param eps
# expected: batchnorm_backward dgamma refuted: eps-hardcoded(1e-8)
# expected: batchnorm_backward dbeta holds
import numpy as np


def batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param['mode']
    eps = bn_param.get('eps', 1e-5)          # read, never used below
    momentum = bn_param.get('momentum', 0.9)
    D = x.shape[1]
    running_mean = bn_param.get('running_mean', np.zeros(D))
    running_var = bn_param.get('running_var', np.zeros(D))
    cache = None
    if mode == 'train':
        mu = np.mean(x, axis=0)
        x_mu = x - mu
        var = np.var(x, axis=0)
        x_norm = x_mu / np.sqrt(var + 1e-8)
        out = gamma * x_norm + beta
        running_mean = momentum * running_mean + (1 - momentum) * mu
        running_var = momentum * running_var + (1 - momentum) * var
        cache = (x.shape[0], x_mu, var, x_norm, gamma)
    elif mode == 'test':
        out = gamma * (x - running_mean) / np.sqrt(running_var + 1e-8) + beta
    else:
        raise ValueError(mode)
    bn_param['running_mean'] = running_mean
    bn_param['running_var'] = running_var
    return out, cache


def batchnorm_backward(dout, cache):
    N, x_mu, var, x_norm, gamma = cache
    std_inv = 1. / np.sqrt(var + 1e-8)
    dx_norm = dout * gamma
    dvar = -0.5 * np.sum(dx_norm * x_mu, axis=0) * std_inv ** 3
    dmu = np.sum(-dx_norm * std_inv, axis=0) + dvar * np.mean(-2. * x_mu, axis=0)
    dx = dx_norm * std_inv + 2. * dvar * x_mu / N + dmu / N
    return dx, np.sum(dout * x_norm, axis=0), np.sum(dout, axis=0)
