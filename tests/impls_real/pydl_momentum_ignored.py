# style of: https://github.com/nash911/PyDL (pydl/nn/batchnorm.py, pydl/conf.py)
# layout: library class BatchNorm(gamma=None, beta=None, feature_size=None, momentum=0.99) with properties
#         (avg_mean, avg_var, gamma_grad, beta_grad); forward(X, inference=False), backward(inp_grad, inputs=None)
#         returns only the input gradient; a first training batch *initialises* the averages; eps is 1e-32 (no
#         regularisation at all); the constructor validates momentum with `type(momentum) in ['int', 'float']`,
#         comparing a type with strings, so any momentum argument is silently replaced by 0.99.
# expected: BatchNorm.forward out holds (eps fixed at 1e-32)
# expected: BatchNorm.forward eval_out holds (eps fixed at 1e-32)
# expected: BatchNorm.forward running_mean, running_var refuted: momentum-ignored(0.99)
# expected: BatchNorm.backward dx, dgamma, dbeta holds (eps fixed at 1e-32)
import numpy as np


class BatchNorm(object):
    def __init__(self, gamma=None, beta=None, feature_size=None, momentum=0.99):
        self._gamma = gamma if gamma is not None else np.ones(feature_size)
        self._beta = beta if beta is not None else np.zeros(feature_size)
        self._momentum = momentum if type(momentum) in ['int', 'float'] else 0.99
        self._avg_mean = None
        self._avg_var = None
        self._gamma_grad = None
        self._beta_grad = None

    @property
    def avg_mean(self):
        return self._avg_mean

    @avg_mean.setter
    def avg_mean(self, value):
        self._avg_mean = value

    @property
    def avg_var(self):
        return self._avg_var

    @avg_var.setter
    def avg_var(self, value):
        self._avg_var = value

    @property
    def gamma_grad(self):
        return self._gamma_grad

    @property
    def beta_grad(self):
        return self._beta_grad

    def forward(self, X, inference=False):
        if inference:
            if self._avg_mean is None:
                return X
            mean, var = self._avg_mean, self._avg_var
        else:
            mean = np.mean(X, axis=0)
            var = np.var(X, axis=0)
            if self._avg_mean is None:
                self._avg_mean, self._avg_var = mean, var
            else:
                self._avg_mean = self._avg_mean * self._momentum + mean * (1.0 - self._momentum)
                self._avg_var = self._avg_var * self._momentum + var * (1.0 - self._momentum)
        self._std_eps = np.sqrt(var + 1e-32)
        self._X_norm = (X - mean) / self._std_eps
        return self._X_norm * self._gamma + self._beta

    def backward(self, inp_grad, inputs=None):
        if inputs is not None:
            self.forward(inputs)
        self._gamma_grad = np.sum(self._X_norm * inp_grad, axis=0)
        self._beta_grad = np.sum(inp_grad, axis=0)
        m = inp_grad.shape[0]
        g = self._gamma * inp_grad
        return (m * g - g.sum(axis=0, keepdims=True)
                - self._X_norm * (g * self._X_norm).sum(axis=0, keepdims=True)) / (m * self._std_eps)
