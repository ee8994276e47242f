"""Malformed: prints megabytes."""


def bn_backward(x, gamma, beta, dout, eps):
    for _ in range(100):
        print("x" * 100_000)
    return dout, dout.sum(axis=0), dout.sum(axis=0)
