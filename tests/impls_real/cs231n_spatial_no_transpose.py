# style of: https://github.com/Aliasgarsaifee/CS231n, https://github.com/AmirEstiri/DeepLearning-CS231 (assignment2/cs231n/layers.py)
# layout: CS231n API; per-activation functions are right; the spatial wrappers reshape (N,C,H,W) straight to
#         (N*H*W, C) and back to (N,C,H,W) without moving the channel axis last, so each "column" mixes channels and
#         positions. Shapes all work, so nothing fails loudly.
# expected: batchnorm_forward out, eval_out holds; running stats: cs231n
# expected: batchnorm_backward dx, dgamma, dbeta holds
# expected: spatial_batchnorm_forward out, eval_out, running_mean, running_var refuted: reshape-without-transpose
# expected: spatial_batchnorm_backward dx, dgamma, dbeta refuted: reshape-without-transpose
import numpy as np


def batchnorm_forward(x, gamma, beta, bn_param):
    eps = bn_param.get('eps', 1e-5)
    momentum = bn_param.get('momentum', 0.9)
    D = x.shape[1]
    rmean = bn_param.get('running_mean', np.zeros(D))
    rvar = bn_param.get('running_var', np.zeros(D))
    if bn_param['mode'] == 'train':
        mean = x.mean(axis=0)
        var = x.var(axis=0)
        xhat = (x - mean) / np.sqrt(var + eps)
        out = gamma * xhat + beta
        bn_param['running_mean'] = momentum * rmean + (1 - momentum) * mean
        bn_param['running_var'] = momentum * rvar + (1 - momentum) * var
        return out, (xhat, gamma, var + eps)
    out = gamma * (x - rmean) / np.sqrt(rvar + eps) + beta
    return out, None


def batchnorm_backward(dout, cache):
    xhat, gamma, var_eps = cache
    N = dout.shape[0]
    dgamma = np.sum(dout * xhat, axis=0)
    dbeta = np.sum(dout, axis=0)
    dx = gamma / np.sqrt(var_eps) * (dout - dbeta / N - xhat * dgamma / N)
    return dx, dgamma, dbeta


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    N, C, H, W = x.shape
    out, cache = batchnorm_forward(np.reshape(x, (N * H * W, C)), gamma, beta, bn_param)
    return np.reshape(out, (N, C, H, W)), cache


def spatial_batchnorm_backward(dout, cache):
    N, C, H, W = dout.shape
    dx, dgamma, dbeta = batchnorm_backward(np.reshape(dout, (-1, C)), cache)
    return np.reshape(dx, dout.shape), dgamma, dbeta
