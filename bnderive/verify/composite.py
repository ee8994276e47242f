"""Proofs about Linear → BatchNorm → ReLU (``core.composite``), for every batch size.

Feature j of h = XW + b is one reduction set of BatchNorm: h_k = a_k + b for the batch's
k = 1..M, where a = XW is what the bias is added to.  Two facts, each a statement in index
notation proved by the every-M engine (``every_m.prove``: sums rewritten term by term, the
radical eliminated, then ``cancel``):

* **b is cancelled by μ.**  μ(h) = μ(a) + b, so h_i − μ(h) = a_i − μ(a), and σ²(h) = σ²(a):
  BatchNorm sees the same x − μ and σ² whatever b is, so y, the ReLU's output and L do not
  depend on b.
* **∂L/∂b_j = Σ_k ∂L/∂h_kj = 0** in training mode: the sum over the set of BatchNorm's true
  ∂L/∂x (``derive``) is identically zero, for every upstream gradient.  In eval mode it is
  γ·Σ_k g_k/√(running σ² + ε), which is not.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from bnderive.core import notation as N
from bnderive.core.derive import at_index, derive
from bnderive.core.spec import Spec
from bnderive.verify.every_m import prove

_A = sp.IndexedBase("a")  # the affine output before the bias
_B = sp.Symbol("b")


@dataclass(frozen=True)
class Fact:
    """One statement and what the every-M proof found."""

    name: str
    statement: str  # in words, for people
    holds: bool
    leftover: sp.Expr  # zero when it holds


def _mean(values: sp.Expr, index: sp.Symbol) -> sp.Expr:
    return N.reduce_sum(values, index) / N.M


def bias_cancels() -> list[Fact]:
    """h − μ(h) and σ²(h) do not depend on b (h_k = a_k + b): proved for every M."""
    spec = Spec()
    k, q, i = N.k, N.q, N.i
    centred_h = (_A[i] + _B) - _mean(_A[k] + _B, k)
    centred_a = _A[i] - _mean(_A[k], k)
    var_h = _mean(((_A[k] + _B) - _mean(_A[q] + _B, q)) ** 2, k)
    var_a = _mean((_A[k] - _mean(_A[q], q)) ** 2, k)
    out = []
    for name, words, left, right in (
        ("centred", "h_i − μ(h) = a_i − μ(a): the bias cancels in x − μ", centred_h, centred_a),
        ("variance", "σ²(h) = σ²(a): the bias does not change the variance", var_h, var_a),
    ):
        result = prove(left, right, spec)
        out.append(Fact(name, words, result.zero, result.leftover))
    return out


def bias_gradient(training: bool = True) -> Fact:
    """∂L/∂b = Σ_k ∂L/∂h_k, BatchNorm's true ∂L/∂x summed over the set: zero for every M in
    training mode (proved); in eval mode the leftover γ·Σ g/√(σ²+ε) is returned."""
    truth = derive(Spec(training=training))
    index = sp.Symbol("j_", integer=True)
    total = N.reduce_sum(at_index(truth.inline("dx"), index), index)
    result = prove(total, sp.Integer(0), Spec(training=training))
    r = sp.Symbol("r", positive=True)  # the every-M engine's √(σ² + ε)
    leftover = result.readable().xreplace({r: sp.sqrt(N.var + N.eps)})
    words = (
        "Σ_k ∂L/∂h_k = 0: the gradient of the bias is exactly zero"
        if training
        else "Σ_k ∂L/∂h_k in eval mode (μ, σ² are running statistics)"
    )
    return Fact("bias-gradient", words, result.zero, leftover)


__all__ = ["Fact", "bias_cancels", "bias_gradient"]
