# style of: https://stats.stackexchange.com/questions/328242/matrix-form-of-backpropagation-with-batch-normalization
#           (matrix/Kronecker formulation of the BN layer), https://brettkoonce.github.io/lean4-mlir/blueprint/chap-bn.html
#           (d(x_j - mu)/dx_i = delta_ij - 1/n)
# layout: functional pair bn_forward(x, gamma, beta, eps=1e-5) -> (out, cache), bn_backward(dout, cache) ->
#         (dx, dgamma, dbeta); the backward materialises the full (N*D x N*D) Jacobian of vec(out) w.r.t. vec(x)
#         (feature-major vec) as a sum of Kronecker products kron(E_dd, J_d) with
#         J_d = gamma_d / sigma_d * (I - 11^T/N - xhat_d xhat_d^T / N) built from np.eye, then dx = J^T vec(dout).
# expected: bn_forward out holds
# expected: bn_backward dx, dgamma, dbeta holds
import numpy as np


def bn_forward(x, gamma, beta, eps=1e-5):
    mu = x.mean(axis=0)
    sigma = np.sqrt(x.var(axis=0) + eps)
    xhat = (x - mu) / sigma
    return gamma * xhat + beta, (xhat, sigma, gamma)


def bn_backward(dout, cache):
    xhat, sigma, gamma = cache
    n, d = xhat.shape
    eye_n = np.eye(n)
    ones = np.ones((n, n)) / n
    jac = np.zeros((n * d, n * d))
    for k in range(d):
        sel = np.zeros((d, d))
        sel[k, k] = 1.0
        block = gamma[k] / sigma[k] * (eye_n - ones - np.outer(xhat[:, k], xhat[:, k]) / n)
        jac += np.kron(sel, block)
    vec_dout = dout.T.reshape(-1)              # feature-major: [dout[:,0], dout[:,1], ...]
    dx = (jac.T @ vec_dout).reshape(d, n).T
    return dx, np.einsum('nd,nd->d', dout, xhat), dout.sum(axis=0)
