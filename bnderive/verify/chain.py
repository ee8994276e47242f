"""Thorey's Kronecker chain (``derivations/kronecker-chain.toml``), proved for every M.

The chain writes ∂L/∂xᵢ = Σₖ (∂L/∂yₖ)(∂yₖ/∂xᵢ) with ∂x̂ₖ/∂xᵢ = (δᵢₖ − 1/M)/√(σ²+ε) − x̂ₖ(xᵢ−μ)/
(M(σ²+ε)) and simplifies it in four lines to the compact form.  It is written for BatchNorm in
training mode with the biased variance and ε inside the root: ``derive --general`` and
``derive --composite`` show it, line by line, with what ``every_m.general_check`` found.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from bnderive.core.notation import reference
from bnderive.core.spec import Norm, Spec
from bnderive.read.forms import Form
from bnderive.verify.every_m import general_check
from bnderive.verify.verdict import Verdict

#: The built-in form that holds the chain.
CHAIN = "kronecker-chain"


def chain_applies(spec: Spec) -> bool:
    """The chain's conventions: BatchNorm, training mode, biased variance, ε inside √."""
    return spec.norm is Norm.BATCH and spec.training and not spec.unbiased and spec.eps_inside


@dataclass(frozen=True)
class ChainProof:
    """The chain's form and, per line (equation number), its every-M verdict."""

    form: Form
    verdicts: dict[int, Verdict]

    def rows(self) -> list[tuple[str, sp.Expr, sp.Expr]]:
        """(what was found, ∂L/∂xᵢ, the line's right side), in order."""
        return [
            (
                f"line {eq.number}: {self.verdicts[eq.number].status.value} for every M",
                reference(eq.name, eq.index),
                eq.expr,
            )
            for eq in self.form.equations
        ]


def prove_chain() -> ChainProof:
    """Every line of the chain checked for every M (``general_check``)."""
    from bnderive.read.catalogue import find_form

    form = find_form(CHAIN)
    return ChainProof(form, {v.equation: v for v in general_check(form)})


def chain_for(spec: Spec) -> ChainProof | None:
    """The proved chain where ``spec`` has its conventions, else None."""
    return prove_chain() if chain_applies(spec) else None


__all__ = ["CHAIN", "ChainProof", "chain_applies", "chain_for", "prove_chain"]
