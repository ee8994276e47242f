# style of: the "compact" LayerNorm backward of from-scratch NumPy transformer posts and repositories that reuse
#           BatchNorm's one-line form (CS231n's batchnorm_backward_alt, dx = γ/σ·(dy − mean(dy) − x̂·mean(dy·x̂)))
#           for LayerNorm, e.g. the LayerNorm layers of https://github.com/karpathy/llm.c (doc/layernorm, whose
#           correct version keeps dnorm = dy·γ inside the means) and the derivation it is the BatchNorm
#           habit of (Kevin Zakka, "Deriving the Gradient for the Backward Pass of Batch Normalization"):
#           written by the project, not copied
# layout: CS231n-style names layernorm_forward(x, gamma, beta, ln_param) / layernorm_backward(dout, cache)
# expected: --norm layer: out, dgamma, dbeta hold; dx refuted, named gamma-outside-sum (γ_i pulled out of the
#           means over the features, which BatchNorm's one γ per channel allows and LayerNorm's γ per feature
#           does not)
import numpy as np


def layernorm_forward(x, gamma, beta, ln_param):
    eps = ln_param.get("eps", 1e-5)
    mean = x.mean(axis=1, keepdims=True)
    var = x.var(axis=1, keepdims=True)
    rstd = 1 / np.sqrt(var + eps)
    norm = (x - mean) * rstd
    out = norm * gamma + beta
    return out, (norm, gamma, rstd)


def layernorm_backward(dout, cache):
    norm, gamma, rstd = cache
    dgamma = (dout * norm).sum(axis=0)
    dbeta = dout.sum(axis=0)
    # BatchNorm's compact line, γ in front: right for one γ per set, wrong for one γ per feature
    dx = gamma * rstd * (
        dout - dout.mean(axis=1, keepdims=True) - norm * (dout * norm).mean(axis=1, keepdims=True)
    )
    return dx, dgamma, dbeta
