"""The forward graph of BatchNorm for one reduction set, as named stages.

Every stage is written at one generic element of the reduction set, the way a derivation post
writes it; a *reduction* stage is ``scale · Σ_k summand(k)``, an *elementwise* stage is a value per
element.  The same object drives differentiation (``derive``), the teaching view and evaluation.

    μ    = (1/M) Σ_k x_k                      the batch mean
    σ²   = (1/M) Σ_k (x_k − μ)²               the biased variance (1/(M−1) with Bessel)
    x̂_i  = (x_i − μ) / √(σ² + ε)              normalized (ε outside: (x_i − μ)/(√σ² + ε))
    y_i  = γ x̂_i + β                           scaled and shifted
    L    = Σ_k g_k y_k                         g = ∂L/∂y: free upstream gradient symbols

In eval mode μ and σ² are the running statistics: leaves of the graph, not functions of x.

The relatives (``spec.Norm``) change the graph in two places only.  Where γ and β take one
value per element of the set (LayerNorm, GroupNorm, RMSNorm) the last stage is y_i = γ_i x̂_i + β_i
and γ, β are elementwise leaves like x.  RMSNorm has no mean: its statistic is the mean square

    ms   = (1/M) Σ_k x_k²                      and   x̂_i = x_i / √(ms + ε),   y_i = γ_i x̂_i

(no β, as PyTorch's ``nn.RMSNorm``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import sympy as sp

from bnderive.core import notation as N
from bnderive.core.spec import Spec

#: One element of each elementwise array, as a plain symbol, so that ``diff`` sees a variable.
#: γ and β are elementwise only in the graphs of the families with per-element affine parameters.
ELEMENT: dict[str, sp.Symbol] = {
    name: sp.Symbol(f"{name}__e") for name in ("x", "g", "xhat", "y", "gamma", "beta")
}
#: The per-set scalars, shared with the index notation.
SCALAR: dict[str, sp.Symbol] = {
    "mu": N.mu,
    "var": N.var,
    "ms": N.ms,
    "gamma": N.gamma,
    "beta": N.beta,
    "eps": N.eps,
}


@dataclass(frozen=True)
class Stage:
    """One node of the forward graph."""

    name: str
    elementwise: bool
    definition: sp.Expr  # the value at one element, or the summand of a reduction
    scale: sp.Expr | None  # reductions: the factor in front of Σ_k; None for elementwise stages
    meaning: str

    @property
    def symbol(self) -> sp.Symbol:
        return (
            ELEMENT[self.name] if self.elementwise else SCALAR.get(self.name, sp.Symbol(self.name))
        )

    def parents(self) -> list[str]:
        """The nodes this stage reads (the graph's edges into it), by name: the pictures of the
        graph (``teach.graph_view``) are drawn from these."""
        names = {s.name.removesuffix("__e") for s in self.definition.free_symbols}
        return sorted(names - {"M"})

    def at(self, index: sp.Symbol) -> sp.Expr:
        """The stage's value in index notation: element ``index``, or the whole reduction."""
        return _stage_at(self, index)


@lru_cache(maxsize=512)
def _stage_at(stage: Stage, index: sp.Symbol) -> sp.Expr:
    """``Stage.at``, built once per stage and index: every point's forward pass evaluates the
    same few expressions, and building their index notation (``xreplace`` into ``Indexed``)
    cost more than evaluating them (check-impl's diagnosis evaluates thousands of points)."""
    if stage.elementwise:
        return to_index_notation(stage.definition, index)
    summand = to_index_notation(stage.definition, N.k)
    return stage.scale * N.reduce_sum(summand, N.k)


def to_index_notation(expr: sp.Expr, index: sp.Symbol) -> sp.Expr:
    """Replace the generic element symbols by ``x[index]``, ``g[index]``, ..."""
    return expr.xreplace({sym: sp.IndexedBase(name)[index] for name, sym in ELEMENT.items()})


@dataclass(frozen=True)
class Graph:
    """The forward graph for a spec's conventions (sizes do not matter here: M is symbolic)."""

    spec: Spec
    stages: tuple[Stage, ...]

    @classmethod
    def build(cls, spec: Spec) -> Graph:
        x, xhat, y, g = (ELEMENT[n] for n in ("x", "xhat", "y", "g"))
        mu, var, gamma, beta, eps = N.mu, N.var, N.gamma, N.beta, N.eps
        M = N.M
        stages: list[Stage] = []
        if spec.norm.affine_per_element:
            gamma, beta = ELEMENT["gamma"], ELEMENT["beta"]
        if not spec.norm.centred:
            return cls(spec, tuple(_rms_stages(spec, gamma)))
        if spec.training:
            stages.append(Stage("mu", False, x, 1 / M, "the mean of the reduction set"))
            divisor = M - 1 if spec.unbiased else M
            stages.append(
                Stage(
                    "var",
                    False,
                    (x - mu) ** 2,
                    1 / divisor,
                    "the variance, computed from x and μ"
                    + (" (Bessel: 1/(M−1))" if spec.unbiased else " (biased: 1/M)"),
                )
            )
        if spec.eps_zero:  # ε = 0: normalize by √σ²
            scale = sp.sqrt(var)
        else:
            scale = sp.sqrt(var + eps) if spec.eps_inside else sp.sqrt(var) + eps
        stages.append(Stage("xhat", True, (x - mu) / scale, None, "the normalized input"))
        affine = (
            "scale by γᵢ, shift by βᵢ (one of each per element)"
            if spec.norm.affine_per_element
            else "scale by γ, shift by β"
        )
        stages.append(Stage("y", True, gamma * xhat + beta, None, affine))
        stages.append(Stage("L", False, g * y, sp.Integer(1), "the loss seen through g = ∂L/∂y"))
        return cls(spec, tuple(stages))

    @property
    def radicand(self) -> str:
        """The statistic under the root: 'var' (σ²), or RMSNorm's mean square 'ms'."""
        return "var" if self.spec.norm.centred else "ms"

    @property
    def elementwise_leaves(self) -> frozenset[str]:
        """The inputs that take one value per element: x and g, and γ, β where the family's
        affine parameters vary within a set."""
        if self.spec.norm.affine_per_element:
            return frozenset(
                {"x", "g", "gamma", "beta"} if self.spec.norm.has_beta else {"x", "g", "gamma"}
            )
        return frozenset({"x", "g"})

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.stages]

    @property
    def leaves(self) -> list[str]:
        """Inputs of the graph: x and g per element; γ, β, ε (and the running μ, σ² in eval)."""
        base = ["x", "g", "gamma", "beta", "eps"]
        if not self.spec.norm.has_beta:
            base.remove("beta")
        return base if self.spec.training else base + ["mu", "var"]


def _rms_stages(spec: Spec, gamma: sp.Expr) -> list[Stage]:
    """RMSNorm (Zhang & Sennrich 2019): ms = (1/M) Σ x_k², x̂_i = x_i/√(ms + ε), y_i = γ_i x̂_i."""
    x, xhat, y, g = (ELEMENT[n] for n in ("x", "xhat", "y", "g"))
    ms, eps = N.ms, N.eps
    scale = sp.sqrt(ms + eps) if spec.eps_inside else sp.sqrt(ms) + eps
    return [
        Stage("ms", False, x**2, 1 / N.M, "the mean square of the reduction set (no mean)"),
        Stage("xhat", True, x / scale, None, "the input divided by its root mean square"),
        Stage("y", True, gamma * xhat, None, "scale by γᵢ (one per element; no shift)"),
        Stage("L", False, g * y, sp.Integer(1), "the loss seen through g = ∂L/∂y"),
    ]
