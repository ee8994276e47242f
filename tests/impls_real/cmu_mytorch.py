# style of: https://github.com/Elaineeeeeeeeeeee/implement-my-own-MLP-from-scratch (mytorch/nn/batchnorm.py, the
#           CMU 11-785 "mytorch" homework layer)
# layout: BatchNorm1d(num_features, alpha=0.9) with (1, D)-shaped parameters BW/Bb and gradients dLdBW/dLdBb, running
#         statistics running_M/running_V of shape (1, D), eps fixed at 1e-8; forward(Z, eval=False) keeps
#         keepdims=True statistics on self; backward(dLdBZ) returns only dLdZ.
# expected: BatchNorm1d.forward out, eval_out holds (eps fixed at 1e-8); running stats: cs231n
# expected: BatchNorm1d.backward dx, dgamma, dbeta holds (eps fixed at 1e-8; dgamma/dbeta shaped (1, D))
import numpy as np


class BatchNorm1d:
    def __init__(self, num_features, alpha=0.9):
        self.alpha = alpha
        self.eps = 1e-8
        self.BW = np.ones((1, num_features))
        self.Bb = np.zeros((1, num_features))
        self.dLdBW = np.zeros((1, num_features))
        self.dLdBb = np.zeros((1, num_features))
        self.running_M = np.zeros((1, num_features))
        self.running_V = np.ones((1, num_features))

    def forward(self, Z, eval=False):
        self.Z = Z
        self.N = Z.shape[0]
        if eval:
            self.NZ = (Z - self.running_M) / np.sqrt(self.running_V + self.eps)
        else:
            self.M = Z.mean(axis=0, keepdims=True)
            self.V = Z.var(axis=0, keepdims=True)
            self.NZ = (Z - self.M) / np.sqrt(self.V + self.eps)
            self.running_M = self.alpha * self.running_M + (1 - self.alpha) * self.M
            self.running_V = self.alpha * self.running_V + (1 - self.alpha) * self.V
        self.BZ = self.BW * self.NZ + self.Bb
        return self.BZ

    def backward(self, dLdBZ):
        self.dLdBW = np.sum(dLdBZ * self.NZ, axis=0, keepdims=True)
        self.dLdBb = np.sum(dLdBZ, axis=0, keepdims=True)
        dLdNZ = dLdBZ * self.BW
        dLdV = -0.5 * np.sum(dLdNZ * (self.Z - self.M) * (self.V + self.eps) ** -1.5, axis=0, keepdims=True)
        dLdM = (-np.sum(dLdNZ / np.sqrt(self.V + self.eps), axis=0, keepdims=True)
                - 2.0 * dLdV * np.mean(self.Z - self.M, axis=0, keepdims=True))
        return dLdNZ / np.sqrt(self.V + self.eps) + dLdV * 2.0 * (self.Z - self.M) / self.N + dLdM / self.N
