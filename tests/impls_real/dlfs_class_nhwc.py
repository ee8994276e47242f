# style of: https://github.com/oreilly-japan/deep-learning-from-scratch (common/layers.py) as extended in DLfS-derived
#           course code that moves the channel axis last before normalising (x.transpose(0, 2, 3, 1) then
#           reshape(N*H*W, C), comments "NHWCに入れ替え"; two such copies found by content search, repositories not
#           attributable), contrasted with https://github.com/haru-mingshi052/numpy-DeepLearning which does not
# layout: book-style layer class with explicit eps: BatchNorm(gamma, beta, momentum=0.9, eps=1e-5);
#         forward(x, is_training=True) / backward(dout); helpers calc_forward / calc_backward; 4-D input is
#         transposed to NHWC, flattened to (N*H*W, C), normalised per channel and restored; grads on self.dgamma,
#         self.dbeta; running stats start at zeros / ones.
# expected: BatchNorm.forward out, eval_out holds; running stats: cs231n
# expected: BatchNorm.backward dx, dgamma, dbeta holds
# expected: BatchNorm.forward[4d] out, eval_out holds; running stats: cs231n
# expected: BatchNorm.backward[4d] dx, dgamma, dbeta holds
import numpy as np


class BatchNorm:
    def __init__(self, gamma, beta, momentum=0.9, eps=1e-5):
        self.gamma, self.beta = gamma, beta
        self.momentum, self.eps = momentum, eps
        self.running_mean = np.zeros_like(gamma, dtype=float)
        self.running_var = np.ones_like(gamma, dtype=float)
        self.dgamma = self.dbeta = None
        self._shape = None

    def forward(self, x, is_training=True):
        self._shape = x.shape
        if x.ndim == 4:
            n, c, h, w = x.shape
            flat = x.transpose(0, 2, 3, 1).reshape(n * h * w, c)
            return self.calc_forward(flat, is_training).reshape(n, h, w, c).transpose(0, 3, 1, 2)
        return self.calc_forward(x, is_training)

    def calc_forward(self, x, is_training):
        if is_training:
            mu = x.mean(axis=0)
            self.xc = x - mu
            var = (self.xc ** 2).mean(axis=0)
            self.std = np.sqrt(var + self.eps)
            self.xn = self.xc / self.std
            self.m = x.shape[0]
            self.running_mean = self.momentum * self.running_mean + (1 - self.momentum) * mu
            self.running_var = self.momentum * self.running_var + (1 - self.momentum) * var
            xn = self.xn
        else:
            xn = (x - self.running_mean) / np.sqrt(self.running_var + self.eps)
        return self.gamma * xn + self.beta

    def backward(self, dout):
        if dout.ndim == 4:
            n, c, h, w = dout.shape
            flat = dout.transpose(0, 2, 3, 1).reshape(-1, c)
            return self.calc_backward(flat).reshape(n, h, w, c).transpose(0, 3, 1, 2)
        return self.calc_backward(dout)

    def calc_backward(self, dout):
        self.dbeta = dout.sum(axis=0)
        self.dgamma = (self.xn * dout).sum(axis=0)
        dxn = self.gamma * dout
        return (dxn - dxn.mean(axis=0) - self.xn * (dxn * self.xn).mean(axis=0)) / self.std
