"""Malformed: the CS231n API without its backward."""


def batchnorm_forward(x, gamma, beta, bn_param):
    return x, None


def helper(x):
    return x
