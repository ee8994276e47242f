# style of: https://github.com/pytorch/pytorch/issues/77427 and https://github.com/pytorch/pytorch/issues/60528 (PyTorch
#           normalises with the biased variance but feeds the *unbiased* one into running_var),
#           https://github.com/tinygrad/tinygrad/pull/807 (a from-scratch BatchNorm2d made to match that)
# layout: PyTorch-flavoured NumPy module: BatchNorm1d(num_features, eps=1e-5, momentum=0.1) where momentum weighs the
#         *new* batch; weight/bias attributes, self.training flag, forward(x) and backward(grad_out) -> grad_in with
#         weight.grad / bias.grad attributes stored as self.grad_weight / self.grad_bias; running_var gets
#         N/(N-1) * var. A convention, not a mistake.
# expected: BatchNorm1d.forward out, eval_out holds; running stats: pytorch
# expected: BatchNorm1d.backward dx, dgamma, dbeta holds
import numpy as np


class BatchNorm1d:
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        self.eps = eps
        self.momentum = momentum
        self.weight = np.ones(num_features)
        self.bias = np.zeros(num_features)
        self.running_mean = np.zeros(num_features)
        self.running_var = np.ones(num_features)
        self.training = True

    def forward(self, x):
        if self.training:
            n = x.shape[0]
            mean = x.mean(axis=0)
            var = x.var(axis=0)
            self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * mean
            self.running_var = (1 - self.momentum) * self.running_var + self.momentum * var * n / (n - 1)
            self._inv_std = 1.0 / np.sqrt(var + self.eps)
            self._xhat = (x - mean) * self._inv_std
            return self.weight * self._xhat + self.bias
        return self.weight * (x - self.running_mean) / np.sqrt(self.running_var + self.eps) + self.bias

    def backward(self, grad_out):
        self.grad_weight = (grad_out * self._xhat).sum(axis=0)
        self.grad_bias = grad_out.sum(axis=0)
        g = grad_out * self.weight
        return self._inv_std * (g - g.mean(axis=0) - self._xhat * (g * self._xhat).mean(axis=0))
