"""The double backward: gradients of Φ = Σ_n ggI_n·dx_n + ggG·dγ + ggB·dβ.

dx, dγ, dβ are the first-order truth in index notation (``derive``), fully inlined.  Φ is a
scalar; its gradients are total derivatives, with μ and σ² functions of x in training mode:

    ∂/∂x_i = (∂/∂x_i at fixed μ, σ²) + (∂/∂μ)·∂μ/∂x_i + (∂/∂σ²)·∂σ²/∂x_i
    ∂μ/∂x_i = 1/M,   ∂σ²/∂x_i = 2(x_i − μ)/M   (2(x_i − μ)/(M−1) with Bessel's correction)

SymPy differentiates the index notation, Σ_k f(x_k) ↦ Σ_k δ_ki f'(x_k); the evaluators and the
every-M rewrite reduce the deltas.  The names follow PyTorch's ``batchnorm_double_backward``:
gI = ∂Φ/∂x, gG = ∂Φ/∂γ, ggO = ∂Φ/∂g.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import sympy as sp

from bnderive.core import notation as N
from bnderive.core.derive import at_index, derive
from bnderive.core.graph import Graph
from bnderive.core.spec import Spec

_N = sp.Symbol("n_", integer=True)  # the summation index of Φ


@dataclass(frozen=True)
class SecondOrderTruth:
    graph: Graph
    quantities: tuple[tuple[str, bool, sp.Expr], ...]

    @property
    def order(self) -> int:
        return 2

    @property
    def names(self) -> list[str]:
        return [name for name, _, _ in self.quantities]

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def inline(self, name: str) -> sp.Expr:
        for n, _, expr in self.quantities:
            if n == name:
                return expr
        raise KeyError(name)

    def definitions(self) -> list[tuple[str, bool, sp.Expr]]:
        return list(self.quantities)


def phi(spec: Spec) -> sp.Expr:
    """Φ in index notation, every first-order quantity inlined."""
    truth = derive(spec)
    dx = at_index(truth.inline("dx"), _N)
    return (
        N.reduce_sum(N.ggI[_N] * dx, _N)
        + N.ggG * truth.inline("dgamma")
        + N.ggB * truth.inline("dbeta")
    )


def total_derivative_x(expr: sp.Expr, spec: Spec) -> sp.Expr:
    """d expr/d x_i with μ(x) and σ²(x) followed in training mode."""
    partial = sp.diff(expr, N.x[N.i])
    if not spec.training:
        return partial
    divisor = N.M - 1 if spec.unbiased else N.M
    return (
        partial + sp.diff(expr, N.mu) / N.M + sp.diff(expr, N.var) * 2 * (N.x[N.i] - N.mu) / divisor
    )


def second_order_truth(spec: Spec) -> SecondOrderTruth:
    return SecondOrderTruth(
        Graph.build(spec), _quantities(spec.training, spec.unbiased, spec.eps_inside)
    )


@lru_cache(maxsize=8)
def _quantities(
    training: bool, unbiased: bool, eps_inside: bool
) -> tuple[tuple[str, bool, sp.Expr], ...]:
    spec = Spec(n=2, training=training, unbiased=unbiased, eps_inside=eps_inside)
    f = phi(spec)
    return (
        ("gI", True, total_derivative_x(f, spec)),
        ("gG", False, sp.diff(f, N.gamma)),
        ("ggO", True, sp.diff(f, N.g[N.i])),
    )
