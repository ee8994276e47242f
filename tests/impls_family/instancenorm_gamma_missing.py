# style of: CS231n assignment 2's layer functions (cs231n/layers.py: *_forward(x, gamma, beta, *_param) -> (out, cache),
#           *_backward(dout, cache) -> (dx, dgamma, dbeta)) written for InstanceNorm (statistics per sample and channel
#           over H, W, as torch.nn.InstanceNorm2d with affine=True), with BatchNorm's compact backward; written by the
#           project
# layout: instancenorm_forward(x, gamma, beta, in_param), instancenorm_backward(dout, cache); gamma, beta (C,)
# expected: --norm instance: out, dgamma, dbeta hold; dx refuted and named gamma-missing (BatchNorm's mutants: an
#           InstanceNorm set is BatchNorm's per-set mathematics)
import numpy as np


def instancenorm_forward(x, gamma, beta, in_param):
    eps = in_param.get("eps", 1e-5)
    mu = x.mean(axis=(2, 3), keepdims=True)
    var = ((x - mu) ** 2).mean(axis=(2, 3), keepdims=True)
    std = np.sqrt(var + eps)
    xhat = (x - mu) / std
    out = gamma.reshape(1, -1, 1, 1) * xhat + beta.reshape(1, -1, 1, 1)
    return out, (xhat, gamma, std)


def instancenorm_backward(dout, cache):
    xhat, gamma, std = cache
    N, C, H, W = dout.shape
    m = H * W
    dgamma = (dout * xhat).sum(axis=(0, 2, 3))
    dbeta = dout.sum(axis=(0, 2, 3))
    dxhat = dout  # gamma forgotten
    centred = dxhat - dxhat.mean(axis=(2, 3), keepdims=True)
    dx = (centred - xhat * (dxhat * xhat).mean(axis=(2, 3), keepdims=True)) / std
    return dx, dgamma, dbeta
