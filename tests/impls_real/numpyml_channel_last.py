# style of: https://github.com/ddbourgin/numpy-ml (numpy_ml/neural_nets/layers/layers.py, class BatchNorm2D)
# layout: channel-last spatial layer for (N, H, W, C) input (TensorFlow/Keras image layout): statistics over axes
#         (0, 1, 2); the backward reshapes to (N*H*W, C) - correct because C is already the last axis; parameters
#         in self.parameters ('scaler', 'intercept', running stats), gradients accumulated in self.gradients;
#         backward returns only dX.
# expected: BatchNorm2D.forward[nhwc] out, eval_out holds; running stats: cs231n
# expected: BatchNorm2D.backward[nhwc] dx, dgamma, dbeta holds
import numpy as np


class BatchNorm2D:
    def __init__(self, momentum=0.9, epsilon=1e-5):
        self.momentum = momentum
        self.epsilon = epsilon
        self.in_ch = None
        self.X = []
        self.parameters = {}
        self.gradients = {}

    def _init_params(self):
        c = self.in_ch
        self.parameters = {"scaler": np.random.rand(c), "intercept": np.zeros(c),
                           "running_mean": np.zeros(c), "running_var": np.ones(c)}
        self.gradients = {"scaler": np.zeros(c), "intercept": np.zeros(c)}

    def forward(self, X, retain_derived=True):
        if self.in_ch is None:
            self.in_ch = X.shape[3]
            self._init_params()
        p = self.parameters
        mean, var = p["running_mean"], p["running_var"]
        if retain_derived:
            mean, var = X.mean(axis=(0, 1, 2)), X.var(axis=(0, 1, 2))
            p["running_mean"] = self.momentum * p["running_mean"] + (1.0 - self.momentum) * mean
            p["running_var"] = self.momentum * p["running_var"] + (1.0 - self.momentum) * var
            self.X.append(X)
        return p["scaler"] * (X - mean) / np.sqrt(var + self.epsilon) + p["intercept"]

    def backward(self, dLdy, retain_grads=True):
        X = self.X[-1]
        shape = X.shape
        x2 = X.reshape(-1, shape[3])
        d2 = dLdy.reshape(-1, shape[3])
        m = x2.shape[0]
        sd = np.sqrt(x2.var(axis=0) + self.epsilon)
        norm = (x2 - x2.mean(axis=0)) / sd
        dnorm = d2 * self.parameters["scaler"]
        dX = (m * dnorm - dnorm.sum(axis=0) - norm * (dnorm * norm).sum(axis=0)) / (m * sd)
        if retain_grads:
            self.gradients["scaler"] += (d2 * norm).sum(axis=0)
            self.gradients["intercept"] += d2.sum(axis=0)
        return dX.reshape(shape)
