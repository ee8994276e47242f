# style of: https://github.com/oreilly-japan/deep-learning-from-scratch (common/layers.py, class BatchNormalization)
#           https://github.com/haru-mingshi052/numpy-DeepLearning (batch_normalization/batch_norm2d.py)
# layout: "Deep Learning from Scratch" layer class: BatchNormalization(gamma, beta, momentum=0.9, running_mean=None,
#         running_var=None); forward(x, train_flg=True) returns out; backward(dout) returns dx and stores self.dgamma,
#         self.dbeta; state (xc, xn, std, batch_size) on self; name-mangled private __forward/__backward; eps is the
#         literal 10e-7 (= 1e-6) in train and test; the module starts with the book's package-relative imports
#         (`from common.functions import *`, `from common.util import im2col, col2im`), so it only imports inside the
#         book's directory layout. A 4-D input is flattened to (N, C*H*W): statistics per (c,h,w) position over N,
#         not per channel (gamma/beta must then have C*H*W entries).
# expected: import fails: ModuleNotFoundError (no package 'common')
# expected: with stub package common: BatchNormalization.forward out, eval_out holds (eps fixed at 1e-6)
# expected: with stub package common: BatchNormalization.forward running_mean, running_var holds; running stats: cs231n
# expected: with stub package common: BatchNormalization.backward dx, dgamma, dbeta holds (eps fixed at 1e-6)
# expected: with stub package common: BatchNormalization.forward[4d] out refuted: wrong-axes (eps fixed at 1e-6)
# expected: with stub package common: BatchNormalization.backward[4d] dx refuted: wrong-axes (eps fixed at 1e-6)
import numpy as np
from common.functions import *
from common.util import im2col, col2im


class BatchNormalization:
    def __init__(self, gamma, beta, momentum=0.9, running_mean=None, running_var=None):
        self.gamma = gamma
        self.beta = beta
        self.momentum = momentum
        self.input_shape = None
        self.running_mean = running_mean
        self.running_var = running_var
        self.batch_size = None
        self.xc = None
        self.xn = None
        self.std = None
        self.dgamma = None
        self.dbeta = None

    def forward(self, x, train_flg=True):
        self.input_shape = x.shape
        if x.ndim != 2:
            x = x.reshape(x.shape[0], -1)
        return self.__forward(x, train_flg).reshape(*self.input_shape)

    def __forward(self, x, train_flg):
        if self.running_mean is None:
            self.running_mean = np.zeros(x.shape[1])
            self.running_var = np.zeros(x.shape[1])
        if train_flg:
            mu = x.mean(axis=0)
            xc = x - mu
            var = np.mean(xc ** 2, axis=0)
            std = np.sqrt(var + 10e-7)
            xn = xc / std
            self.batch_size = x.shape[0]
            self.xc, self.xn, self.std = xc, xn, std
            self.running_mean = self.momentum * self.running_mean + (1 - self.momentum) * mu
            self.running_var = self.momentum * self.running_var + (1 - self.momentum) * var
        else:
            xn = (x - self.running_mean) / np.sqrt(self.running_var + 10e-7)
        return self.gamma * xn + self.beta

    def backward(self, dout):
        if dout.ndim != 2:
            dout = dout.reshape(dout.shape[0], -1)
        return self.__backward(dout).reshape(*self.input_shape)

    def __backward(self, dout):
        self.dbeta = dout.sum(axis=0)
        self.dgamma = np.sum(self.xn * dout, axis=0)
        dxn = self.gamma * dout
        dxc = dxn / self.std
        dstd = -np.sum(dxn * self.xc / (self.std * self.std), axis=0)
        dvar = 0.5 * dstd / self.std
        dxc = dxc + (2.0 / self.batch_size) * self.xc * dvar
        dmu = np.sum(dxc, axis=0)
        return dxc - dmu / self.batch_size
