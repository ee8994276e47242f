# style of: https://github.com/zwleagle/firstai (ai1/Batchnorm_simple_for_train.py)
# layout: tutorial fragment Batchnorm_simple_for_train(x, gamma, beta, bn_param, eps) - eps passed as a fifth
#         argument next to bn_param; reads bn_param['running_mean'/'running_var'] but uses a name `momentum` that is
#         never defined (it lives only in the docstring), so every call raises NameError; the fragment also stops
#         before returning anything. The normalisation it computes before failing is the right one.
# expected: Batchnorm_simple_for_train raises NameError (momentum undefined)
# expected: with momentum = 0.9 injected: Batchnorm_simple_for_train returns None (no return statement)
import numpy as np


def Batchnorm_simple_for_train(x, gamma, beta, bn_param, eps):
    running_mean = bn_param['running_mean']
    running_var = bn_param['running_var']
    x_mean = x.mean(axis=0)
    x_var = x.var(axis=0)
    x_normalized = (x - x_mean) / np.sqrt(x_var + eps)
    results = gamma * x_normalized + beta
    running_mean = momentum * running_mean + (1 - momentum) * x_mean
