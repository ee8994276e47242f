# style of: https://github.com/0Kelvins/cs231n-assignment (assignment2/cs231n/layers.py, spatial_batchnorm_backward)
# layout: CS231n API, spatial functions written directly on (N,C,H,W) with axis=(0,2,3); the backward follows the
#         paper's three-term formula (dvar, dmean, dx) but divides by the batch size N taken from dout.shape instead of
#         the reduction size N*H*W. Forward, dgamma and dbeta are right; with H = W = 1 the mistake is invisible.
# expected: spatial_batchnorm_forward out, eval_out holds; running stats: cs231n
# expected: spatial_batchnorm_backward dgamma, dbeta holds
# expected: spatial_batchnorm_backward dx refuted: count-N-not-NHW
import numpy as np


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param["mode"]
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)
    N, C, H, W = x.shape
    running_mean = bn_param.get("running_mean", np.zeros(C))
    running_var = bn_param.get("running_var", np.zeros(C))
    cache = None
    if mode == "train":
        mu = np.mean(x, axis=(0, 2, 3))
        var = np.var(x, axis=(0, 2, 3))
        centered = x - mu.reshape(1, C, 1, 1)
        inv = 1.0 / np.sqrt(var.reshape(1, C, 1, 1) + eps)
        xhat = centered * inv
        out = gamma.reshape(1, C, 1, 1) * xhat + beta.reshape(1, C, 1, 1)
        running_mean = momentum * running_mean + (1 - momentum) * mu
        running_var = momentum * running_var + (1 - momentum) * var
        cache = (xhat, gamma, inv, centered, var, eps)
    else:
        out = (gamma.reshape(1, C, 1, 1) * (x - running_mean.reshape(1, C, 1, 1))
               / np.sqrt(running_var.reshape(1, C, 1, 1) + eps) + beta.reshape(1, C, 1, 1))
    bn_param["running_mean"] = running_mean
    bn_param["running_var"] = running_var
    return out, cache


def spatial_batchnorm_backward(dout, cache):
    xhat, gamma, inv, centered, var, eps = cache
    N, C, H, W = dout.shape
    dbeta = np.sum(dout, axis=(0, 2, 3))
    dgamma = np.sum(dout * xhat, axis=(0, 2, 3))
    dxhat = dout * gamma.reshape(1, C, 1, 1)
    dvar = np.sum(dxhat * centered * -0.5 * (var.reshape(1, C, 1, 1) + eps) ** -1.5, axis=(0, 2, 3))
    dmean = np.sum(-dxhat * inv, axis=(0, 2, 3))
    dx = (dxhat * inv
          + dmean.reshape(1, C, 1, 1) / N
          + dvar.reshape(1, C, 1, 1) * 2.0 * centered / N)
    return dx, dgamma, dbeta
