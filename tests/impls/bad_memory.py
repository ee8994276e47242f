"""Malformed: allocates without bound."""


def bn_backward(x, gamma, beta, dout, eps):
    hoard = []
    while True:
        hoard.append(bytearray(10**8))
