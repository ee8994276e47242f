# style of: https://github.com/ecbme4040/e4040-2022fall-assign2-tw2834 (utils/reg_funcs.py, the course-provided
#           bn_backward of Columbia ECBM E4040 assignment 2)
# layout: bn_forward(x, gamma, beta, bn_params, mode) -> (out, cache) with the mode as a separate argument and the
#         Keras/TensorFlow-flavoured keys bn_params['epsilon'], ['decay'], ['moving_mean'], ['moving_var'] (decay on
#         the old value, biased variance); cache = (x, gamma, beta, eps, mean, var); bn_backward(dout, cache) treats
#         mean and var as constants: dx = dout*gamma/sqrt(var+eps), which is the eval-mode gradient used in training.
# expected: bn_forward out, eval_out holds; running stats: cs231n
# expected: bn_backward dgamma, dbeta holds
# expected: bn_backward dx refuted: stats-constant
import numpy as np


def bn_forward(x, gamma, beta, bn_params, mode):
    eps = bn_params.get("epsilon", 1e-5)
    decay = bn_params.get("decay", 0.9)
    N, D = x.shape
    moving_mean = bn_params.get("moving_mean", np.zeros(D, dtype=x.dtype))
    moving_var = bn_params.get("moving_var", np.ones(D, dtype=x.dtype))
    if mode == "train":
        mean = x.mean(axis=0)
        var = x.var(axis=0)
        moving_mean = decay * moving_mean + (1 - decay) * mean
        moving_var = decay * moving_var + (1 - decay) * var
    elif mode == "test":
        mean, var = moving_mean, moving_var
    else:
        raise ValueError(mode)
    out = gamma * (x - mean) / np.sqrt(var + eps) + beta
    bn_params["moving_mean"] = moving_mean
    bn_params["moving_var"] = moving_var
    return out, (x, gamma, beta, eps, mean, var)


def bn_backward(dout, cache):
    x, gamma, beta, eps, mean, var = cache
    x_hat = (x - mean) / np.sqrt(var + eps)
    dgamma = np.sum(dout * x_hat, axis=0)
    dbeta = np.sum(dout, axis=0)
    dx = dout * gamma / np.sqrt(var + eps)
    return dx, dgamma, dbeta
