"""Linear → BatchNorm → ReLU: the layer of the CS231n assignment and of Thorey's derivation.

    h_nj = Σ_p X_np W_pj + b_j          an affine map (X is (N, D_in), W is (D_in, D))
    y_nj = BN(h)_nj                     BatchNorm per feature j over the batch n (PER_ACTIVATION)
    a_nj = max(0, y_nj)                 ReLU
    L    = Σ_nj dout_nj a_nj            dout = ∂L/∂a, the upstream gradient

The chain rule, stage by stage from the top:

    g_nj     = ∂L/∂y_nj = dout_nj · [y_nj > 0]       ReLU passes the gradient where it passed y
    ∂L/∂h_nj = BatchNorm's ∂L/∂x at upstream g       (feature j is one reduction set)
    ∂L/∂W_pj = Σ_n X_np ∂L/∂h_nj                     h is linear in W
    ∂L/∂X_np = Σ_j ∂L/∂h_nj W_pj                     ... and in X
    ∂L/∂b_j  = Σ_n ∂L/∂h_nj = 0                      in training mode, exactly

The last line is the point of seed 002: b shifts every h_nj of feature j by the same amount, μ_j
shifts with it, and h − μ, σ², ĥ, y and L do not move; so L does not depend on b at all.  (In
eval mode μ is a constant and ∂L/∂b_j = Σ_n γ_j g_nj /√(running σ²_j + ε) is not zero.)
``verify.composite`` proves both facts for every batch size; this module evaluates the layer at
explicit inputs, the truth an implementation checker compares ``affine_bn_relu_backward`` with.

ReLU's derivative at y = 0 does not exist; like PyTorch's ``threshold_backward`` (and CS231n's
``relu_backward``, dout·(x > 0)) the gradient there is taken as 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sympy as sp

from bnderive.core import notation as N
from bnderive.core.layer import layer_truth
from bnderive.core.spec import Mode, Spec
from bnderive.errors import EvaluationError

# -- the chain in index notation (feature j is one reduction set; k, i run over the batch) ----------
X = sp.IndexedBase("X")
W = sp.IndexedBase("W")
H = sp.IndexedBase("h")
A = sp.IndexedBase("a")  # the ReLU's output
DOUT = sp.IndexedBase("dout")
DH = sp.IndexedBase("dh")
B = sp.IndexedBase("b")
j, p = sp.Symbol("j", integer=True), sp.Symbol("p", integer=True)
D_IN = sp.Symbol("D_in", integer=True, positive=True)
D_OUT = sp.Symbol("D", integer=True, positive=True)


class Positive(sp.Function):
    """[v > 0]: ReLU's derivative (0 at v = 0, as PyTorch's and CS231n's backward take it)."""

    nargs = 1


def chain() -> list[tuple[str, sp.Expr, sp.Expr, str]]:
    """The composite's stages and adjoints as (kind, left side, right side, meaning), for
    feature j; k and i run over the batch (feature j's reduction set, of size M = N)."""
    k, i = N.k, N.i
    y = sp.IndexedBase("y")
    dw, dx = sp.IndexedBase("dW"), sp.IndexedBase("dX")
    return [
        ("forward", H[k, j], sp.Sum(X[k, p] * W[p, j], (p, 1, D_IN)) + B[j], "the affine map"),
        ("forward", A[k, j], sp.Max(0, y[k, j]), "ReLU of y = BatchNorm(h), per feature j"),
        ("backward", N.g[k], DOUT[k, j] * Positive(y[k, j]), "∂L/∂y: ReLU passes dout where y > 0"),
        ("backward", dw[p, j], sp.Sum(X[k, p] * DH[k, j], (k, 1, N.M)), "h is linear in W"),
        ("backward", dx[i, p], sp.Sum(DH[i, j] * W[p, j], (j, 1, D_OUT)), "... and in X"),
        (
            "backward",
            sp.IndexedBase("db")[j],
            sp.Sum(DH[k, j], (k, 1, N.M)),
            "b_j shifts all of feature j",
        ),
    ]


def _positive(value: Any) -> bool:
    """Is an exact (or float) number > 0?  SymPy decides the sign of algebraic numbers."""
    if isinstance(value, sp.Basic):
        decided = value.is_positive
        if decided is None:  # an algebraic number SymPy cannot sign symbolically
            decided = bool(sp.N(value, 60) > 0)
        return bool(decided)
    return bool(value > 0)


def affine_bn_relu_truth(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    dout: np.ndarray,
    eps: Any,
    backend: str = "symbolic",
) -> dict[str, np.ndarray]:
    """The forward output and every gradient of Linear → BatchNorm (training) → ReLU at
    explicit inputs, as CS231n's ``affine_bn_relu_forward/backward`` return them: ``out``
    (N, D) and ``dx`` (x's shape; x is flattened to (N, D_in) as ``affine_forward`` does),
    ``dw`` (D_in, D), ``db``, ``dgamma``, ``dbeta`` (D,).  Also ``h`` and ``y``, the affine and
    the BatchNorm outputs, and ``dh``, the gradient BatchNorm passes down.

    Exact for exact inputs ("symbolic": rationals in, algebraic numbers out; "rational" when
    every √(σ²+ε) is rational), float64 with "float".  ``db`` comes out exactly 0 in training
    mode: computed, not assumed."""
    x = np.asarray(x, dtype=object)
    n = x.shape[0]
    flat = x.reshape(n, -1)
    w, b = np.asarray(w, dtype=object), np.asarray(b, dtype=object)
    gamma, beta = np.asarray(gamma, dtype=object), np.asarray(beta, dtype=object)
    dout = np.asarray(dout, dtype=object)
    if w.ndim != 2 or w.shape[0] != flat.shape[1]:
        raise EvaluationError(
            f"w has shape {w.shape}; with x flattened to {flat.shape} it must be "
            f"({flat.shape[1]}, D)."
        )
    d = w.shape[1]
    for name, value, shape in (
        ("b", b, (d,)),
        ("gamma", gamma, (d,)),
        ("beta", beta, (d,)),
        ("dout", dout, (n, d)),
    ):
        if value.shape != shape:
            raise EvaluationError(f"{name} has shape {value.shape}; it must be {shape}.")
    h = flat.dot(w) + b  # the affine map, in the inputs' own exact numbers
    spec = Spec(Mode.PER_ACTIVATION, n=n, c=d)
    # The forward first (g does not matter for out), to know where ReLU lets the gradient pass.
    zeros = np.zeros((n, d), dtype=object)
    y = layer_truth(spec, h, zeros, gamma, beta, eps, backend)["out"]
    mask = np.vectorize(_positive, otypes=[bool])(y)
    g = np.where(mask, dout, 0 * dout)
    bn = layer_truth(spec, h, g, gamma, beta, eps, backend)
    dh = bn["dx"]
    out = np.where(mask, y, 0 * y)
    return {
        "out": out,
        "h": h,
        "y": y,
        "dh": dh,
        "dx": dh.dot(w.T).reshape(x.shape),
        "dw": flat.T.dot(dh),
        "db": dh.sum(axis=0),
        "dgamma": bn["dgamma"],
        "dbeta": bn["dbeta"],
    }


__all__ = ["affine_bn_relu_truth"]


def example_instance(n: int, d: int, d_in: int = 2) -> dict[str, np.ndarray]:
    """The gradients of Linear → BatchNorm → ReLU at exact inputs: N = ``n`` samples of
    ``d_in`` inputs, D = ``d`` features (seeded rationals, ``core.layer.exact_point``).  The
    bias is not zero and β = ½, so that some outputs of BatchNorm are below 0 and some above:
    ReLU matters, and ∂L/∂b = 0 is not a bias of 0 showing through."""
    from fractions import Fraction

    from bnderive.core.layer import exact_point

    point = exact_point(Spec(Mode.PER_ACTIVATION, n=n, c=d), seed=7)
    x = point["x"][:, :1].repeat(d_in, axis=1) + [[Fraction(k + 1) for k in range(d_in)]] * n
    w = [[Fraction((3 * p + 2 * q) % 5 - 2) for q in range(d)] for p in range(d_in)]
    bias = [Fraction(3 - 2 * q) for q in range(d)]
    beta = [Fraction(1, 2)] * d
    return affine_bn_relu_truth(x, w, bias, point["gamma"], beta, point["g"], point["eps"])


def bias_sum() -> sp.Expr:
    """Σₖ ∂L/∂hₖⱼ: the sum BatchNorm's backward makes zero in training mode (∂L/∂b = 0)."""
    return sp.Sum(DH[N.k, j], (N.k, 1, N.M))
