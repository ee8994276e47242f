# style of: CS231n assignment 2 (2019+) cs231n/layers.py, layernorm_forward(x, gamma, beta, ln_param) ->
#           (out, cache) and layernorm_backward(dout, cache) -> (dx, dgamma, dbeta), as in the solutions of
#           https://github.com/zlotus/cs231n and https://github.com/AnirudhM1/CS231n-2022-Solutions (statistics per
#           sample over the features, computed on the transpose so that the batchnorm code's axis=0 is reused)
# layout: CS231n names for LayerNorm; eps from ln_param; gamma, beta per feature (D,)
# expected: --norm layer: out, dgamma, dbeta hold; dx refuted (the mean of dx̂ taken with the batch size N, a batchnorm
#           habit), with no name: no mutant of LayerNorm's mathematics has it
import numpy as np


def layernorm_forward(x, gamma, beta, ln_param):
    eps = ln_param.get("eps", 1e-5)
    xt = x.T  # (D, N): one column per sample
    mu = xt.mean(axis=0)
    xc = xt - mu
    var = (xc**2).mean(axis=0)
    std = np.sqrt(var + eps)
    xhat = (xc / std).T  # back to (N, D)
    out = gamma * xhat + beta
    cache = (xhat, gamma, std)
    return out, cache


def layernorm_backward(dout, cache):
    xhat, gamma, std = cache
    D = xhat.shape[1]
    dgamma = np.sum(dout * xhat, axis=0)
    dbeta = np.sum(dout, axis=0)
    dxhat = (dout * gamma).T  # (D, N)
    xh = xhat.T
    N = xhat.shape[0]
    dx = (dxhat - dxhat.sum(axis=0) / N - xh * (dxhat * xh).sum(axis=0) / N) / std
    return dx.T, dgamma, dbeta
