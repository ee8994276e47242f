# style of: CS231n assignment 2 (2019+) cs231n/layers.py, spatial_groupnorm_forward(x, gamma, beta, G, gn_param)
#           with gamma and beta of shape (1, C, 1, 1), as in https://github.com/zlotus/cs231n and
#           https://github.com/kantarcise/cs231n (x reshaped to (N, G, C//G, H, W), statistics over the last three)
# layout: CS231n names for GroupNorm; G a positional parameter; eps from gn_param
# expected: --norm group --groups 2: every row holds
import numpy as np


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    eps = gn_param.get("eps", 1e-5)
    N, C, H, W = x.shape
    xg = x.reshape(N, G, C // G, H, W)
    mu = xg.mean(axis=(2, 3, 4), keepdims=True)
    var = ((xg - mu) ** 2).mean(axis=(2, 3, 4), keepdims=True)
    std = np.sqrt(var + eps)
    xhat = ((xg - mu) / std).reshape(N, C, H, W)
    out = gamma * xhat + beta
    return out, (xhat, gamma, std, G)


def spatial_groupnorm_backward(dout, cache):
    xhat, gamma, std, G = cache
    N, C, H, W = dout.shape
    dgamma = np.sum(dout * xhat, axis=(0, 2, 3), keepdims=True)
    dbeta = np.sum(dout, axis=(0, 2, 3), keepdims=True)
    dxhat = (dout * gamma).reshape(N, G, C // G, H, W)
    xh = xhat.reshape(N, G, C // G, H, W)
    m = (C // G) * H * W
    dx = (
        dxhat
        - dxhat.sum(axis=(2, 3, 4), keepdims=True) / m
        - xh * (dxhat * xh).sum(axis=(2, 3, 4), keepdims=True) / m
    ) / std
    return dx.reshape(N, C, H, W), dgamma, dbeta
