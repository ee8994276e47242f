# style of: https://github.com/eriklindernoren/ML-From-Scratch (mlfromscratch/deep_learning/layers.py, BatchNormalization)
# layout: Keras-flavoured layer: BatchNormalization(momentum=0.99) with eps fixed as the attribute self.eps = 0.01;
#         initialize(optimizer) creates gamma/beta and per-parameter optimizer copies; forward_pass(X, training=True);
#         the running statistics are *initialised from the first batch* and then averaged with 0.99 on the old value
#         (biased variance); backward_pass(accum_grad) hands dgamma/dbeta to the optimizers (gamma updated in place)
#         and returns only the input gradient, computed with the gamma of the forward pass.
# expected: BatchNormalization.forward_pass out, eval_out holds (eps fixed at 0.01); running stats: keras-init
# expected: BatchNormalization.backward_pass dx, dgamma, dbeta holds (eps fixed at 0.01; dgamma/dbeta as given to the optimizer)
import copy
import numpy as np


class BatchNormalization:
    def __init__(self, momentum=0.99):
        self.momentum = momentum
        self.trainable = True
        self.eps = 0.01
        self.running_mean = None
        self.running_var = None
        self.input_shape = None

    def initialize(self, optimizer):
        self.gamma = np.ones(self.input_shape)
        self.beta = np.zeros(self.input_shape)
        self.gamma_opt = copy.copy(optimizer)
        self.beta_opt = copy.copy(optimizer)

    def forward_pass(self, X, training=True):
        if self.running_mean is None:
            self.running_mean = np.mean(X, axis=0)
            self.running_var = np.var(X, axis=0)
        if training:
            mean = np.mean(X, axis=0)
            var = np.var(X, axis=0)
            self.X_centered = X - mean
            self.stddev_inv = 1.0 / np.sqrt(var + self.eps)
            self.running_mean = self.momentum * self.running_mean + (1 - self.momentum) * mean
            self.running_var = self.momentum * self.running_var + (1 - self.momentum) * var
        else:
            mean, var = self.running_mean, self.running_var
        return self.gamma * (X - mean) / np.sqrt(var + self.eps) + self.beta

    def backward_pass(self, accum_grad):
        gamma = self.gamma
        if self.trainable:
            x_norm = self.X_centered * self.stddev_inv
            self.gamma = self.gamma_opt.update(self.gamma, np.sum(accum_grad * x_norm, axis=0))
            self.beta = self.beta_opt.update(self.beta, np.sum(accum_grad, axis=0))
        m = accum_grad.shape[0]
        return (1.0 / m) * gamma * self.stddev_inv * (
            m * accum_grad
            - np.sum(accum_grad, axis=0)
            - self.X_centered * self.stddev_inv ** 2 * np.sum(accum_grad * self.X_centered, axis=0))
