# style of: https://github.com/nash911/PyDL (pydl/conf.py: a library-wide dtype setting, here set to float32),
#           https://github.com/denizyuret/Knet.jl/issues/288 (BatchNorm gradient tests that only misbehave in Float32)
# layout: layer object that stores parameters and computes everything in float32 (DTYPE = np.float32; inputs cast on
#         entry), BN(num_features, eps=1e-5, momentum=0.9) with __call__(x, training=True) and grad(dy) returning
#         (dx, dgamma, dbeta) - all float32. Correct, so it should pass within float32 rounding, not float64 tolerance.
# expected: BN.__call__ out, eval_out holds (float32 tolerance); running stats: cs231n
# expected: BN.grad dx, dgamma, dbeta holds (float32 tolerance)
import numpy as np

DTYPE = np.float32


class BN:
    def __init__(self, num_features, eps=1e-5, momentum=0.9):
        self.gamma = np.ones(num_features, dtype=DTYPE)
        self.beta = np.zeros(num_features, dtype=DTYPE)
        self.eps = DTYPE(eps)
        self.momentum = DTYPE(momentum)
        self.running_mean = np.zeros(num_features, dtype=DTYPE)
        self.running_var = np.ones(num_features, dtype=DTYPE)

    def __call__(self, x, training=True):
        x = np.asarray(x, dtype=DTYPE)
        if not training:
            return self.gamma * (x - self.running_mean) / np.sqrt(self.running_var + self.eps) + self.beta
        mu = x.mean(axis=0, dtype=DTYPE)
        xc = x - mu
        var = (xc * xc).mean(axis=0, dtype=DTYPE)
        self.inv = (DTYPE(1) / np.sqrt(var + self.eps)).astype(DTYPE)
        self.xhat = xc * self.inv
        one = DTYPE(1)
        self.running_mean = self.momentum * self.running_mean + (one - self.momentum) * mu
        self.running_var = self.momentum * self.running_var + (one - self.momentum) * var
        return self.gamma * self.xhat + self.beta

    def grad(self, dy):
        dy = np.asarray(dy, dtype=DTYPE)
        g = dy * self.gamma
        dx = self.inv * (g - g.mean(axis=0, dtype=DTYPE) - self.xhat * (g * self.xhat).mean(axis=0, dtype=DTYPE))
        return dx, (dy * self.xhat).sum(axis=0, dtype=DTYPE), dy.sum(axis=0, dtype=DTYPE)
