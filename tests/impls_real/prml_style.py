# style of: https://github.com/oilneck/prml_python (prml/deepL_module/nn/layers/hipstar_tech.py, Batch_norm_Layer)
# layout: small layer class with *scalar* default parameters Batch_norm_Layer(gamma=1., beta=0., momentum=0.9)
#         (per-feature arrays assigned later through set_param), forward(x, is_training) with a required flag,
#         eps the literal 1e-8, moving averages mov_mean/mov_var created lazily as zeros; backward(delta) returns only
#         dx and leaves self.dgamma / self.dbeta on the object.
# expected: Batch_norm_Layer.forward out, eval_out holds (eps fixed at 1e-8); running stats: cs231n
# expected: Batch_norm_Layer.backward dx, dgamma, dbeta holds (eps fixed at 1e-8)
import numpy as np


class Batch_norm_Layer():
    def __init__(self, gamma=1., beta=0., momentum=0.9):
        self.gamma = gamma
        self.beta = beta
        self.moment = momentum
        self.dgamma = None
        self.dbeta = None
        self.mov_mean = None
        self.mov_var = None

    def set_param(self, gamma, beta):
        self.gamma, self.beta = gamma, beta

    def forward(self, x, is_training):
        if self.mov_mean is None:
            self.mov_mean = np.zeros(x.shape[1])
            self.mov_var = np.zeros(x.shape[1])
        if is_training:
            mu = x.mean(axis=0)
            x_mu = x - mu
            var = x.var(axis=0)
            x_norm = x_mu / np.sqrt(var + 1e-8)
            self.cache = (x.shape[0], x_mu, var, x_norm)
            self.mov_mean = self.moment * self.mov_mean + (1 - self.moment) * mu
            self.mov_var = self.moment * self.mov_var + (1 - self.moment) * var
        else:
            x_norm = (x - self.mov_mean) / np.sqrt(self.mov_var + 1e-8)
        return self.gamma * x_norm + self.beta

    def backward(self, delta):
        n, x_mu, var, x_norm = self.cache
        std_inv = 1. / np.sqrt(var + 1e-8)
        dnorm = delta * self.gamma
        dvar = -.5 * np.sum(dnorm * x_mu, axis=0) * std_inv ** 3
        dmu = -np.sum(dnorm * std_inv, axis=0) + dvar * np.mean(-2. * x_mu, axis=0)
        self.dgamma = np.sum(delta * x_norm, axis=0)
        self.dbeta = np.sum(delta, axis=0)
        return dnorm * std_inv + 2. * dvar * x_mu / n + dmu / n
