# style of: https://github.com/kingtaurus/cs231n (spatial_batchnorm_forward), https://github.com/BiEchi/MedoFlow (help/operators/bn_autodiff.ipynb)
# layout: CS231n API for the spatial case only, written directly on (N,C,H,W): statistics with axis=(0,2,3) and
#         keepdims, gamma/beta reshaped to (1,C,1,1), the reduction size M = N*H*W computed explicitly; cache is a
#         tuple (x_hat, inv_std, gamma4); running stats and eps from bn_param.
# expected: spatial_batchnorm_forward out, eval_out holds; running stats: cs231n
# expected: spatial_batchnorm_backward dx, dgamma, dbeta holds
import numpy as np

AXES = (0, 2, 3)


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    n, c, h, w = x.shape
    eps = bn_param.get('eps', 1e-5)
    mom = bn_param.get('momentum', 0.9)
    rm = bn_param.get('running_mean', np.zeros(c))
    rv = bn_param.get('running_var', np.ones(c))
    g4 = gamma.reshape(1, c, 1, 1)
    b4 = beta.reshape(1, c, 1, 1)
    cache = None
    if bn_param['mode'] == 'train':
        mu = x.mean(axis=AXES, keepdims=True)
        var = ((x - mu) ** 2).mean(axis=AXES, keepdims=True)
        inv_std = 1.0 / np.sqrt(var + eps)
        x_hat = (x - mu) * inv_std
        out = g4 * x_hat + b4
        bn_param['running_mean'] = mom * rm + (1.0 - mom) * mu.ravel()
        bn_param['running_var'] = mom * rv + (1.0 - mom) * var.ravel()
        cache = (x_hat, inv_std, g4)
    else:
        out = g4 * (x - rm.reshape(1, c, 1, 1)) / np.sqrt(rv.reshape(1, c, 1, 1) + eps) + b4
    return out, cache


def spatial_batchnorm_backward(dout, cache):
    x_hat, inv_std, g4 = cache
    n, c, h, w = dout.shape
    m = n * h * w
    dbeta = dout.sum(axis=AXES)
    dgamma = (dout * x_hat).sum(axis=AXES)
    g = dout * g4
    dx = inv_std / m * (m * g - g.sum(axis=AXES, keepdims=True)
                        - x_hat * (g * x_hat).sum(axis=AXES, keepdims=True))
    return dx, dgamma, dbeta
