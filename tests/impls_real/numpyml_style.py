# style of: https://github.com/ddbourgin/numpy-ml (numpy_ml/neural_nets/layers/layers.py, class BatchNorm1D)
# layout: library layer object: BatchNorm1D(momentum=0.9, epsilon=1e-5); parameters live in a dict
#         self.parameters = {'scaler', 'intercept', 'running_mean', 'running_var'}; lazy initialisation on the first
#         forward; forward(X, retain_derived=True) stores X in a list; backward(dLdy, retain_grads=True) returns only
#         dX and *accumulates* (+=) into self.gradients['scaler'/'intercept']; the backward recomputes mean and var from
#         the stored X rather than reading a cache. retain_derived=False is the inference path.
# expected: BatchNorm1D.forward out, eval_out holds; running stats: cs231n
# expected: BatchNorm1D.backward dx, dgamma, dbeta holds
import numpy as np


class BatchNorm1D:
    def __init__(self, momentum=0.9, epsilon=1e-5):
        self.momentum = momentum
        self.epsilon = epsilon
        self.n_in = None
        self.is_initialized = False
        self.X = []
        self.parameters = {}
        self.gradients = {}

    def _init_params(self):
        self.parameters = {
            "scaler": np.random.rand(self.n_in),
            "intercept": np.zeros(self.n_in),
            "running_mean": np.zeros(self.n_in),
            "running_var": np.ones(self.n_in),
        }
        self.gradients = {"scaler": np.zeros(self.n_in), "intercept": np.zeros(self.n_in)}
        self.is_initialized = True

    def forward(self, X, retain_derived=True):
        if not self.is_initialized:
            self.n_in = X.shape[1]
            self._init_params()
        p = self.parameters
        mean, var = p["running_mean"], p["running_var"]
        if retain_derived:
            mean, var = X.mean(axis=0), X.var(axis=0)
            p["running_mean"] = self.momentum * p["running_mean"] + (1.0 - self.momentum) * mean
            p["running_var"] = self.momentum * p["running_var"] + (1.0 - self.momentum) * var
            self.X.append(X)
        return p["scaler"] * (X - mean) / np.sqrt(var + self.epsilon) + p["intercept"]

    def backward(self, dLdy, retain_grads=True):
        grads = [self._bwd(dy, x) for dy, x in zip([dLdy], self.X)]
        dX, dscaler, dintercept = grads[0]
        if retain_grads:
            self.gradients["scaler"] += dscaler
            self.gradients["intercept"] += dintercept
        return dX

    def _bwd(self, dLdy, X):
        n = X.shape[0]
        var = X.var(axis=0)
        norm = (X - X.mean(axis=0)) / np.sqrt(var + self.epsilon)
        dnorm = dLdy * self.parameters["scaler"]
        dX = (n * dnorm - dnorm.sum(axis=0) - norm * (dnorm * norm).sum(axis=0)) / (n * np.sqrt(var + self.epsilon))
        return dX, (dLdy * norm).sum(axis=0), dLdy.sum(axis=0)
