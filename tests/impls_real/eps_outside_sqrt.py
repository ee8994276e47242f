# style of: https://github.com/BenJaEGo/cs231n_2017_spring and https://github.com/Akettle44/cs231n (eps added outside the
#           square root), https://github.com/awfssv/pytorch-cn (pytorch.nn.md documents y = (x - mean)/(sqrt(Var)+eps)),
#           https://github.com/pbielak/graph-barlow-twins (gssl/loss.py normalises with (std + EPS))
# layout: layer class with the std-plus-eps normalisation in training: StdBatchNorm(num_features, eps=1e-5,
#         momentum=0.9); forward(x, train=True) computes x_hat = (x - mu) / (np.std(x) + eps); backward(dy) returns
#         (dx, dgamma, dbeta) and is the exact derivative of *that* forward (it differentiates std, not std+eps under a
#         root). Consistent with itself, wrong against BatchNorm with eps inside the root.
# expected: StdBatchNorm.forward out, eval_out refuted: eps-outside-sqrt
# expected: StdBatchNorm.forward running_mean, running_var holds; running stats: cs231n
# expected: StdBatchNorm.backward dx self-consistent with its own forward, but the forward adds eps outside the square root
# expected: StdBatchNorm.backward dx, dgamma refuted: eps-outside-sqrt
# expected: StdBatchNorm.backward dbeta holds
import numpy as np


class StdBatchNorm:
    def __init__(self, num_features, eps=1e-5, momentum=0.9):
        self.eps, self.momentum = eps, momentum
        self.gamma = np.ones(num_features)
        self.beta = np.zeros(num_features)
        self.running_mean = np.zeros(num_features)
        self.running_var = np.ones(num_features)

    def forward(self, x, train=True):
        if not train:
            return self.gamma * (x - self.running_mean) / (np.sqrt(self.running_var) + self.eps) + self.beta
        mu = np.mean(x, axis=0)
        self.xc = x - mu
        self.sd = np.std(x, axis=0)
        self.den = self.sd + self.eps
        self.xhat = self.xc / self.den
        self.running_mean = self.momentum * self.running_mean + (1 - self.momentum) * mu
        self.running_var = self.momentum * self.running_var + (1 - self.momentum) * self.sd ** 2
        return self.gamma * self.xhat + self.beta

    def backward(self, dy):
        n = dy.shape[0]
        g = dy * self.gamma
        dx = g / self.den - g.mean(axis=0) / self.den \
            - self.xc * np.sum(g * self.xc, axis=0) / (n * self.sd * self.den ** 2)
        return dx, np.sum(dy * self.xhat, axis=0), np.sum(dy, axis=0)
