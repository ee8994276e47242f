# style of: https://github.com/haru-mingshi052/numpy-DeepLearning (batch_normalization/base_batchnorm.py, batch_norm2d.py)
# layout: GPU-minded code written against `cp` (CuPy) and run here with NumPy imported under that name; a base class
#         BaseBatchNormalization(gamma, beta, momentum, running_mean, running_var) with forward_(x, train) /
#         backward_(dout) and a BatchNorm2d subclass whose forward(x, train) / backward(dout) flatten (N,C,H,W) to
#         (N, C*H*W). Training normalises with a literal eps 1e-5, inference with 10e-7 (= 1e-6): the two modes
#         disagree. The 4-D wrapper gives statistics per (c,h,w) over N, not per channel.
# expected: BaseBatchNormalization.forward_ out holds (eps fixed at 1e-5); running stats: cs231n
# expected: BaseBatchNormalization.forward_ eval_out refuted: eps-mismatch(1e-6)
# expected: BaseBatchNormalization.backward_ dx, dgamma, dbeta holds (eps fixed at 1e-5)
# expected: BatchNorm2d.forward[4d] out refuted: wrong-axes (eps fixed at 1e-5)
# expected: BatchNorm2d.backward[4d] dx refuted: wrong-axes (eps fixed at 1e-5)
import numpy as cp


class BaseBatchNormalization:
    def __init__(self, gamma, beta, momentum, running_mean, running_var):
        self.gamma = gamma
        self.beta = beta
        self.momentum = momentum
        self.running_mean = running_mean
        self.running_var = running_var
        self.dgamma = None
        self.dbeta = None

    def forward_(self, x, train):
        if self.running_mean is None:
            self.running_mean = cp.zeros(x.shape[1])
            self.running_var = cp.zeros(x.shape[1])
        if train:
            mu = x.mean(axis=0)
            self.xc = x - mu
            var = cp.mean(self.xc ** 2, axis=0)
            self.std = cp.sqrt(var + 1e-5)
            self.xn = self.xc / self.std
            self.batch_size = x.shape[0]
            self.running_mean = self.momentum * self.running_mean + (1 - self.momentum) * mu
            self.running_var = self.momentum * self.running_var + (1 - self.momentum) * var
            xn = self.xn
        else:
            xn = (x - self.running_mean) / cp.sqrt(self.running_var + 10e-7)
        return self.gamma * xn + self.beta

    def backward_(self, dout):
        self.dbeta = dout.sum(axis=0)
        self.dgamma = cp.sum(self.xn * dout, axis=0)
        dxn = self.gamma * dout
        dxc = dxn / self.std
        dstd = -cp.sum(dxn * self.xc / (self.std * self.std), axis=0)
        dvar = 0.5 * dstd / self.std
        dxc = dxc + (2.0 / self.batch_size) * self.xc * dvar
        dmu = -cp.sum(dxc, axis=0)
        return dxc + dmu / self.batch_size


class BatchNorm2d(BaseBatchNormalization):
    def __init__(self, gamma=1.0, beta=0.0, momentum=0.9, running_mean=None, running_var=None):
        super().__init__(gamma, beta, momentum, running_mean, running_var)

    def forward(self, x, train):
        self.input_shape = x.shape
        out = self.forward_(x.reshape(x.shape[0], -1), train)
        return out.reshape(*self.input_shape)

    def backward(self, dout):
        dx = self.backward_(dout.reshape(dout.shape[0], -1))
        return dx.reshape(*self.input_shape)
