# style of: the affine-free batch normalisation of Barlow Twins heads (https://github.com/theolepage/sslsv,
#           sslsv/losses/BarlowTwins.py uses BatchNorm1d(affine=False)) written in NumPy like
#           https://github.com/BiEchi/MedoFlow's functional backward
# layout: no gamma/beta at all: batch_norm(x, eps=1e-5) -> (x_hat, cache); batch_norm_backward(dout, cache) -> dx only;
#         (N, D) input, keepdims statistics, eps default 1e-5.
# expected: batch_norm out holds (gamma = 1, beta = 0)
# expected: batch_norm_backward dx holds (gamma = 1)
import numpy as np


def batch_norm(x, eps=1e-5):
    mu = x.mean(axis=0, keepdims=True)
    var = x.var(axis=0, keepdims=True)
    x_hat = (x - mu) / np.sqrt(var + eps)
    return x_hat, (x_hat, var, eps)


def batch_norm_backward(dout, cache):
    x_hat, var, eps = cache
    return (dout - dout.mean(axis=0, keepdims=True)
            - x_hat * (dout * x_hat).mean(axis=0, keepdims=True)) / np.sqrt(var + eps)
