# style of: https://github.com/hmchen47/DataScience (ML/MLNN-Hinton/src/batchnorm_forward.py)
# layout: Q&A / notes snippet in the CS231n API with no `import numpy` at all (np is whatever the caller's namespace
#         provides); normalises with np.std (no eps: bn_param['eps'] is read and ignored); keeps a running *std*
#         (bn_param['running_std']) instead of running_var and uses it in test mode; cache = (x, gamma, beta, m, s);
#         the backward is the closed form for that eps-free forward.
# expected: module imports, but calling batchnorm_forward raises NameError (np undefined)
# expected: with numpy injected: batchnorm_forward out refuted: eps-ignored
# expected: with numpy injected: batchnorm_forward running_mean holds; running stats: cs231n
# expected: with numpy injected: batchnorm_forward running_var refuted: unchanged
# expected: with numpy injected: batchnorm_forward eval_out refuted: eps-dropped
# expected: with numpy injected: batchnorm_backward dx, dgamma refuted: eps-ignored
# expected: with numpy injected: batchnorm_backward dbeta holds


def batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param['mode']
    eps = bn_param.get('eps', 1e-7)
    momentum = bn_param.get('momentum', 0.9)
    N, D = x.shape
    running_mean = bn_param.get('running_mean', np.zeros(D))
    running_std = bn_param.get('running_std', np.ones(D))
    if mode == 'train':
        m = np.mean(x, axis=0)
        s = np.std(x, axis=0)
        out = gamma * (x - m) / s + beta
        running_mean = momentum * running_mean + (1 - momentum) * m
        running_std = momentum * running_std + (1 - momentum) * s
    elif mode == 'test':
        m = running_mean
        s = running_std
        out = gamma * (x - m) / s + beta
    else:
        raise ValueError('Invalid forward batchnorm mode "%s"' % mode)
    bn_param['running_mean'] = running_mean
    bn_param['running_std'] = running_std
    return out, (x, gamma, beta, m, s)


def batchnorm_backward(dout, cache):
    N, D = dout.shape
    x, gamma, beta, m, s = cache
    xm = x - m
    dx = (gamma / s * dout
          - gamma / (N * s) * np.sum(dout, axis=0)
          - gamma / (N * s ** 3) * xm * np.sum(dout * xm, axis=0))
    return dx, np.sum(dout * xm / s, axis=0), np.sum(dout, axis=0)
