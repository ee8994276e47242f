# style of: https://kratzert.github.io/2016/02/12/understanding-the-gradient-flow-through-the-batch-normalization-layer.html
#           https://kevinzakka.github.io/2016/09/14/batch_normalization/
#           https://github.com/zlotus/cs231n (assignment2/cs231n/layers.py), https://github.com/7forz/CS231n_assignments
# layout: CS231n assignment-2 API. batchnorm_forward(x, gamma, beta, bn_param) -> (out, cache) with eps/momentum
#         read from bn_param (defaults 1e-5 / 0.9), running stats written back into bn_param, 'test' mode uses them;
#         cache is a 7-tuple; batchnorm_backward walks the computational graph node by node; batchnorm_backward_alt
#         is the simplified one-line formula; spatial_* transpose (N,C,H,W) -> (N*H*W, C) and reuse the vanilla code.
# expected: batchnorm_forward out, eval_out holds; running stats: cs231n
# expected: batchnorm_backward dx, dgamma, dbeta holds
# expected: batchnorm_backward_alt dx, dgamma, dbeta holds
# expected: spatial_batchnorm_forward out, eval_out holds; running stats: cs231n
# expected: spatial_batchnorm_backward dx, dgamma, dbeta holds
import numpy as np


def batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param['mode']
    eps = bn_param.get('eps', 1e-5)
    momentum = bn_param.get('momentum', 0.9)
    n_feat = x.shape[1]
    run_mu = bn_param.get('running_mean', np.zeros(n_feat, dtype=x.dtype))
    run_var = bn_param.get('running_var', np.zeros(n_feat, dtype=x.dtype))
    cache = None
    if mode == 'train':
        m = x.shape[0]
        mean = x.sum(axis=0) / m                # node 1
        centered = x - mean                     # node 2
        squared = centered ** 2                 # node 3
        variance = squared.sum(axis=0) / m      # node 4
        root = np.sqrt(variance + eps)          # node 5
        inv_root = 1.0 / root                   # node 6
        normed = centered * inv_root            # node 7
        scaled = gamma * normed                 # node 8
        out = scaled + beta                     # node 9
        run_mu = momentum * run_mu + (1 - momentum) * mean
        run_var = momentum * run_var + (1 - momentum) * variance
        cache = (normed, gamma, centered, inv_root, root, variance, eps)
    elif mode == 'test':
        out = gamma * (x - run_mu) / np.sqrt(run_var + eps) + beta
    else:
        raise ValueError('unknown mode %r' % mode)
    bn_param['running_mean'] = run_mu
    bn_param['running_var'] = run_var
    return out, cache


def batchnorm_backward(dout, cache):
    normed, gamma, centered, inv_root, root, variance, eps = cache
    m = dout.shape[0]
    dbeta = dout.sum(axis=0)                                  # node 9
    dgamma = (dout * normed).sum(axis=0)                      # node 8
    d_normed = dout * gamma
    d_inv_root = (d_normed * centered).sum(axis=0)            # node 7, branch to inv_root
    d_centered_a = d_normed * inv_root                        # node 7, branch to centered
    d_root = -d_inv_root / root ** 2                          # node 6
    d_variance = 0.5 * d_root / np.sqrt(variance + eps)       # node 5
    d_squared = np.ones_like(dout) * d_variance / m           # node 4
    d_centered_b = 2.0 * centered * d_squared                 # node 3
    d_centered = d_centered_a + d_centered_b
    d_mean = -d_centered.sum(axis=0)                          # node 2
    dx = d_centered + np.ones_like(dout) * d_mean / m         # node 1
    return dx, dgamma, dbeta


def batchnorm_backward_alt(dout, cache):
    normed, gamma, centered, inv_root, root, variance, eps = cache
    m = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * normed).sum(axis=0)
    dx = (gamma * inv_root / m) * (m * dout - dbeta - normed * dgamma)
    return dx, dgamma, dbeta


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    n, c, h, w = x.shape
    flat = x.transpose(0, 2, 3, 1).reshape(-1, c)
    out, cache = batchnorm_forward(flat, gamma, beta, bn_param)
    return out.reshape(n, h, w, c).transpose(0, 3, 1, 2), cache


def spatial_batchnorm_backward(dout, cache):
    n, c, h, w = dout.shape
    flat = dout.transpose(0, 2, 3, 1).reshape(-1, c)
    dx, dgamma, dbeta = batchnorm_backward_alt(flat, cache)
    return dx.reshape(n, h, w, c).transpose(0, 3, 1, 2), dgamma, dbeta
