# style of: https://github.com/kingtaurus/cs231n (assignment2/cs231n/layers.py, batchnorm_forward)
# layout: CS231n API; the running averages put `momentum` on the new batch value instead of the old running value
#         (running = momentum*batch + (1-momentum)*running, with the CS231n default momentum 0.9), biased variance;
#         test mode has a misplaced parenthesis: x_hat = x - running_mean/sqrt(running_var+eps), and then
#         out = gamma*(x_hat - running_mean)/sqrt(running_var+eps) + beta. Training out and the backward are right.
#         cache = (gamma, x_hat, mean, var+eps) - the backward rebuilds x - mean from x_hat.
# expected: batchnorm_forward out holds
# expected: batchnorm_forward running_mean, running_var refuted: inverted-momentum
# expected: batchnorm_forward eval_out refuted: eval-misplaced-parenthesis
# expected: batchnorm_backward dx, dgamma, dbeta holds
import numpy as np


def batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param['mode']
    eps = bn_param.get('eps', 1e-5)
    momentum = bn_param.get('momentum', 0.9)
    N, D = x.shape
    running_mean = bn_param.get('running_mean', np.zeros(D))
    running_var = bn_param.get('running_var', np.ones(D))
    mean = x.mean(axis=0)
    var = x.var(axis=0)
    cache = None
    if mode == 'train':
        running_mean = momentum * mean + (1 - momentum) * running_mean
        running_var = momentum * var + (1 - momentum) * running_var
        x_hat = (x - mean) / np.sqrt(var + eps)
        out = gamma * x_hat + beta
        cache = (gamma, x_hat, mean, var + eps)
    elif mode == 'test':
        x_hat = (x - running_mean / np.sqrt(running_var + eps))
        out = gamma * (x_hat - running_mean) / np.sqrt(running_var + eps) + beta
    else:
        raise ValueError('Invalid forward batchnorm mode "%s"' % mode)
    bn_param['running_mean'] = running_mean
    bn_param['running_var'] = running_var
    return out, cache


def batchnorm_backward(dout, cache):
    gamma, x_hat, mean, var_eps = cache
    N = dout.shape[0]
    std = np.sqrt(var_eps)
    xmu = x_hat * std
    dxhat = dout * gamma
    dvar = np.sum(dxhat * xmu, axis=0) * -0.5 / (std * var_eps)
    dmu = np.sum(-dxhat / std, axis=0) + dvar * np.mean(-2.0 * xmu, axis=0)
    dx = dxhat / std + dvar * 2.0 * xmu / N + dmu / N
    return dx, np.sum(dout * x_hat, axis=0), np.sum(dout, axis=0)
