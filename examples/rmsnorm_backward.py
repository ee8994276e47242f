# style of: the NumPy reference RMSNorm backward of LLM-from-scratch notebooks (e.g. the llm.c discussion
#           https://github.com/karpathy/llm.c/pull/763 and its NumPy checks): x / sqrt(mean(x**2) + eps) * weight,
#           one functional backward that recomputes the statistics
# layout: functional f(x, gamma, dout, eps) -> (dx, dgamma); no beta
# expected: --norm rms: dgamma holds; dx refuted and named: the weight forgotten in the correction term (gamma-missing)
import numpy as np


def rmsnorm_backward(x, gamma, dout, eps):
    ms = (x**2).mean(axis=1, keepdims=True)
    rstd = 1 / np.sqrt(ms + eps)
    xhat = x * rstd
    dgamma = np.sum(dout * xhat, axis=0)
    dxhat = dout * gamma
    D = x.shape[1]
    dx = rstd * (dxhat - xhat * (dout * xhat).sum(axis=1, keepdims=True) / D)
    return dx, dgamma
