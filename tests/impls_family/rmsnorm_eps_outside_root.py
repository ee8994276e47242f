# style of: the RMSNorm of allenai/OLMo before issue #281 (https://github.com/allenai/OLMo/issues/281), which
#           divided by the root mean square plus eps, x / (rms_x + eps), where LLaMA's RMSNorm uses
#           x * rsqrt(mean(x**2) + eps); here as a NumPy forward/backward pair with the weight called `weight`,
#           the backward derived consistently for that forward (written by the project, not copied)
# layout: rmsnorm_forward(x, weight, eps) -> (out, cache), rmsnorm_backward(dout, cache) -> (dx, dweight)
# expected: --norm rms: out, dx and dgamma refuted; dx and dgamma named eps-outside (ε added to the root mean
#           square instead of inside the root); the forward named eps-outside too
import numpy as np


def rmsnorm_forward(x, weight, eps):
    rms_x = np.sqrt(np.mean(x * x, axis=-1, keepdims=True))
    denom = rms_x + eps
    out = weight * (x / denom)
    return out, (x, weight, rms_x, denom)


def rmsnorm_backward(dout, cache):
    x, weight, rms_x, denom = cache
    n = x.shape[-1]
    dweight = np.sum(dout * x / denom, axis=0)
    dn = dout * weight  # gradient of x / denom
    # d(x_i/denom)/dx_j = δ_ij/denom − x_i·x_j/(n·rms_x·denom²)
    dx = dn / denom - x * np.sum(dn * x, axis=-1, keepdims=True) / (n * rms_x * denom**2)
    return dx, dweight
