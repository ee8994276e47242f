# style of: https://github.com/1602077/stanford-cs231n, https://github.com/2421468125/cs231n-assignment (assignment2/cs231n/layers.py)
# layout: CS231n API; eps is folded into the variance once (var = x.var(0) + eps) and that sum is what goes into the
#         running average, so running_var drifts by (1-momentum)*eps per step; test mode then takes sqrt(running_var)
#         with no eps. The cache is a positional 3-tuple (std, gamma, x_hat) read back as cache[0], cache[1], cache[2].
#         Training out and all gradients are right.
# expected: batchnorm_forward out holds
# expected: batchnorm_forward running_mean holds; running stats: cs231n
# expected: batchnorm_forward running_var refuted: includes-eps
# expected: batchnorm_forward eval_out refuted: eps-dropped
# expected: batchnorm_backward dx, dgamma, dbeta holds
# expected: batchnorm_backward_alt dx, dgamma, dbeta holds
import numpy as np


def batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param["mode"]
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)
    D = x.shape[1]
    running_mean = bn_param.get("running_mean", np.zeros(D, dtype=x.dtype))
    running_var = bn_param.get("running_var", np.zeros(D, dtype=x.dtype))
    cache = None
    if mode == "train":
        mean = np.average(x, axis=0)
        var = np.var(x, axis=0) + eps
        x_hat = (x - mean) / np.sqrt(var)
        out = x_hat * gamma + beta
        cache = (np.sqrt(var), gamma, x_hat)
        running_mean = momentum * running_mean + (1 - momentum) * mean
        running_var = momentum * running_var + (1 - momentum) * var
    elif mode == "test":
        out = (x - running_mean) / np.sqrt(running_var) * gamma + beta
    else:
        raise ValueError(mode)
    bn_param["running_mean"] = running_mean
    bn_param["running_var"] = running_var
    return out, cache


def batchnorm_backward(dout, cache):
    n = dout.shape[0]
    centered = cache[2] * cache[0]
    dbeta = np.sum(dout, axis=0)
    dgamma = np.sum(dout * cache[2], axis=0)
    g = dout * cache[1]
    dvar = np.sum(g * centered, axis=0) * (-0.5) * cache[0] ** -3
    dmean = -np.sum(g, axis=0) / cache[0]
    dx = g / cache[0] + dvar * 2.0 * centered / n + dmean / n
    return dx, dgamma, dbeta


def batchnorm_backward_alt(dout, cache):
    n = dout.shape[0]
    centered = cache[2] * cache[0]
    g = dout * cache[1]
    dx = (g / cache[0]
          - centered / n * cache[0] ** -3 * np.sum(g * centered, axis=0)
          - np.sum(g, axis=0) / cache[0] / n)
    return dx, np.sum(dout * cache[2], axis=0), np.sum(dout, axis=0)
