# style of: https://github.com/DrewAfromsky/CNN-Optimization-Regularization-Data-Augmentation-Kaggle (utils/reg_funcs.py)
# layout: the ECBM E4040 bn_forward(x, gamma, beta, bn_params, mode) skeleton filled in with local names
#         (current_mean/current_var) while the skeleton's `mean, var = None, None` are what go into the cache, so the
#         provided bn_backward fails on x - None. The forward itself (train and test) is right.
# expected: bn_forward out, eval_out holds; running stats: cs231n
# expected: bn_backward raises TypeError
import numpy as np


def bn_forward(x, gamma, beta, bn_params, mode):
    eps = bn_params.get("epsilon", 1e-5)
    decay = bn_params.get("decay", 0.9)
    N, D = x.shape
    moving_mean = bn_params.get('moving_mean', np.zeros(D))
    moving_var = bn_params.get('moving_var', np.ones(D))
    out, mean, var = None, None, None
    if mode == "train":
        current_mean = np.mean(x, axis=0)
        current_var = np.var(x, axis=0)
        out = gamma * (x - current_mean) / np.sqrt(current_var + eps) + beta
        moving_mean = decay * moving_mean + (1 - decay) * current_mean
        moving_var = decay * moving_var + (1 - decay) * current_var
    elif mode == 'test':
        out = gamma * (x - moving_mean) / np.sqrt(moving_var + eps) + beta
    cache = (x, gamma, beta, eps, mean, var)
    bn_params['moving_mean'] = moving_mean
    bn_params['moving_var'] = moving_var
    return out, cache


def bn_backward(dout, cache):
    x, gamma, beta, eps, mean, var = cache
    N, D = dout.shape
    x_hat = (x - mean) / np.sqrt(np.tile(var, (N, 1)) + eps)
    dgamma = np.sum(dout * x_hat, axis=0)
    dbeta = np.sum(dout, axis=0)
    dx = dout * gamma / np.sqrt(np.tile(var, (N, 1)) + eps)
    return dx, dgamma, dbeta
