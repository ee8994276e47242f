# style of: https://kevinzakka.github.io/2016/09/14/batch_normalization/ (compact dx formula whose prefactor is named
#           inv_var although it is 1/sqrt(var+eps)); the sigma/sigma^2 confusion itself is the one surveyed in
#           https://github.com/Al73r/CS231n (running_var averages the std) and https://github.com/hmchen47/DataScience
#           (running_std kept in place of running_var)
# layout: functional API batchnorm_backward(x, gamma, beta, dout, eps) -> (dx, dgamma, dbeta), no forward function;
#         the variable called inv_var is really 1/(var+eps), and it is used where 1/sqrt(var+eps) belongs in dx
#         (x_hat itself is computed correctly, so dgamma/dbeta are right).
# expected: batchnorm_backward dx refuted: var-for-std
# expected: batchnorm_backward dgamma, dbeta holds
import numpy as np


def batchnorm_backward(x, gamma, beta, dout, eps):
    N = x.shape[0]
    mu = np.mean(x, axis=0)
    var = np.var(x, axis=0)
    inv_var = 1.0 / (var + eps)
    x_hat = (x - mu) * np.sqrt(inv_var)
    dxhat = dout * gamma
    dx = (1.0 / N) * inv_var * (N * dxhat - np.sum(dxhat, axis=0) - x_hat * np.sum(dxhat * x_hat, axis=0))
    return dx, np.sum(x_hat * dout, axis=0), np.sum(dout, axis=0)
