# style of: https://github.com/hannawong/MLE-interview (编程语言基础/pytorch/BN实现.md, class MyBN)
# layout: interview-notes snippet: class MyBN(momentum, eps, num_features) holding _running_mean/_running_var
#         (initialised to the scalars 0 and 1), _gamma/_beta; the forward `batch_norm(self, x)` is written at module
#         level (dedented out of the class), so it is a plain function taking the layer object explicitly:
#         batch_norm(layer, x) -> y. Forward only, no backward, no inference branch; momentum weighs the old value.
# expected: batch_norm out holds; running stats: cs231n
import numpy as np


class MyBN:
    def __init__(self, momentum, eps, num_features):
        self._running_mean = 0
        self._running_var = 1
        self._momentum = momentum
        self._eps = eps
        self._beta = np.zeros(shape=(num_features,))
        self._gamma = np.ones(shape=(num_features,))


def batch_norm(self, x):
    x_mean = x.mean(axis=0)
    x_var = x.var(axis=0)
    self._running_mean = (1 - self._momentum) * x_mean + self._momentum * self._running_mean
    self._running_var = (1 - self._momentum) * x_var + self._momentum * self._running_var
    x_hat = (x - x_mean) / np.sqrt(x_var + self._eps)
    return self._gamma * x_hat + self._beta
