# style of: https://github.com/AgainstEntropy/CS231n-assignment2021 (assignment2/cs231n/layers.py)
# layout: CS231n API; the spatial forward loops over channels and calls the vanilla batchnorm_forward on each
#         channel's (N, H*W) slice with scalar gamma[c], beta[c], so every (c, h, w) position is normalised over N
#         only (wrong reduction axes) and a list of per-channel caches is returned; the spatial backward loops the
#         same way. The vanilla test mode forgets gamma and beta (returns x_hat). The per-channel calls get copies of
#         bn_param without the running statistics, so the caller's running_mean/running_var never move, and the
#         spatial test mode normalises with the zero defaults: x / sqrt(eps), no gamma, no beta.
# expected: batchnorm_forward out holds; running stats: cs231n
# expected: batchnorm_forward eval_out refuted: gamma-beta-missing
# expected: batchnorm_backward dx, dgamma, dbeta holds
# expected: spatial_batchnorm_forward out refuted: wrong-axes
# expected: spatial_batchnorm_forward running_mean, running_var refuted: unchanged
# expected: spatial_batchnorm_forward eval_out refuted: running-ignored + gamma-beta-missing
# expected: spatial_batchnorm_backward dx, dgamma refuted: wrong-axes
# expected: spatial_batchnorm_backward dbeta holds
import numpy as np


def batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param["mode"]
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)
    N, D = x.shape
    running_mean = bn_param.get("running_mean", np.zeros(D))
    running_var = bn_param.get("running_var", np.zeros(D))
    cache = None
    if mode == "train":
        mean = np.mean(x, axis=0)
        var = np.var(x, axis=0)
        out_unit = (x - mean) / np.sqrt(var + eps)
        out = gamma * out_unit + beta
        running_mean = momentum * running_mean + (1 - momentum) * mean
        running_var = momentum * running_var + (1 - momentum) * var
        cache = x, mean, var, eps, gamma, beta, out_unit
    elif mode == "test":
        out = (x - running_mean) / np.sqrt(running_var + eps)
    else:
        raise ValueError(mode)
    bn_param["running_mean"] = running_mean
    bn_param["running_var"] = running_var
    return out, cache


def batchnorm_backward(dout, cache):
    x, mean, var, eps, gamma, beta, out_unit = cache
    N = x.shape[0]
    dbeta = np.sum(dout, axis=0)
    dgamma = np.sum(dout * out_unit, axis=0)
    g = dout * gamma
    dx = (g - np.mean(g, axis=0) - out_unit * np.mean(g * out_unit, axis=0)) / np.sqrt(var + eps)
    return dx, dgamma, dbeta


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    N, C, H, W = x.shape
    per_channel = x.reshape(N, C, -1).transpose(1, 0, 2)       # C x N x (H*W)
    out = np.zeros_like(per_channel)
    cache = []
    for c in range(C):
        sub = dict(bn_param)
        sub.pop("running_mean", None)
        sub.pop("running_var", None)
        out[c], cache_c = batchnorm_forward(per_channel[c], gamma[c], beta[c], sub)
        cache.append(cache_c)
    return out.transpose(1, 0, 2).reshape(N, C, H, W), cache


def spatial_batchnorm_backward(dout, cache):
    N, C, H, W = dout.shape
    per_channel = dout.reshape(N, C, -1).transpose(1, 0, 2)
    dx = np.zeros_like(per_channel)
    dgamma = np.zeros(C)
    dbeta = np.zeros(C)
    for c in range(C):
        dx[c], dg, db = batchnorm_backward(per_channel[c], cache[c])
        dgamma[c] = np.sum(dg)
        dbeta[c] = np.sum(db)
    return dx.transpose(1, 0, 2).reshape(N, C, H, W), dgamma, dbeta
