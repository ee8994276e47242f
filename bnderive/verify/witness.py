"""Counterexamples: small exact inputs where two expressions differ, and how they are shown.

A nonzero normal form is reported "refuted" only with a witness: a point with small exact inputs
(SymPy numbers, so that left-over radicals stay exact) where the two values differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import sympy as sp

from bnderive.core.evaluate import SYMBOLIC
from bnderive.core.points import Instance, point_env, random_point
from bnderive.core.spec import Spec
from bnderive.read.forms import Equation, Form
from bnderive.verify.lines import (
    entries,
    form_definitions,
    paired,
    reference_entries,
    run_lines,
    truth_of,
)
from bnderive.verify.verdict import Counterexample


def entry_label(eq: Equation, spec: Spec, channel: int, position: int) -> str:
    if not eq.elementwise:
        return f"{eq.name} ({spec.set_label(channel)})"
    where = spec.positions(channel)[position]
    at = ", ".join(map(str, where))
    if eq.kind == "quantity" and eq.name in ("dgamma", "dbeta"):  # per-element γ, β
        param = "γ" if eq.name == "dgamma" else "β"
        index = ", ".join(map(str, spec.affine_index(where)))
        return f"{eq.name}[{position + 1}] = the part of ∂L/∂{param}[{index}] from x[{at}]"
    if eq.kind == "quantity" and eq.name == "out":
        return f"out[{position + 1}] = y[{at}]"
    if eq.kind != "quantity" or eq.name not in _ADJOINT_OF:
        return f"{eq.name}[{position + 1}] at x[{at}]"
    return f"{eq.name}[{position + 1}] = ∂L/∂{_ADJOINT_OF[eq.name]}[{at}]"


#: The node an elementwise adjoint is the gradient with respect to (dxhat is ∂L/∂x̂, not ∂L/∂x).
_ADJOINT_OF = {"dx": "x", "dxhat": "x̂", "dy": "y"}


def in_x(expr: Any, inputs: dict[str, Any]) -> Any:
    """A residual in the centred coordinates of ``exact_env``, written back in x and μ."""
    if expr is None or "centred" not in inputs:
        return expr
    xs, mean, u = inputs["centred"]
    to_x = {
        sp.Symbol(str(v)): sp.Symbol(str(x)) - sp.Symbol(str(mean))
        for v, x in zip(u, xs[:-1], strict=True)
    }
    return sp.sympify(expr).xreplace(to_x)


def short(expr: Any, limit: int = 160) -> str | None:
    if expr is None:
        return None
    text = str(expr)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fmt(value: Any) -> str:
    if isinstance(value, Fraction):
        return (
            str(value.numerator)
            if value.denominator == 1
            else f"{value.numerator}/{value.denominator}"
        )
    return str(value)


def fmt_list(values: Sequence[Any], limit: int = 12) -> str:
    shown = ", ".join(fmt(v) for v in values[:limit])
    more = f", … ({len(values)} values)" if len(values) > limit else ""
    return f"[{shown}{more}]"


def describe_point(inst: Instance, order: int = 1) -> dict[str, str]:
    env, spec = inst.env, inst.spec
    out = {
        "x": fmt_list(list(env.arrays["x"])),
        "g": fmt_list(list(env.arrays["g"])),
    }
    for name, symbol in (("gamma", "γ"), ("beta", "β")):
        if name in env.arrays:
            out[symbol] = fmt_list(list(env.arrays[name]))
        elif name in env.scalars and (name != "beta" or spec.norm.has_beta):
            out[symbol] = fmt(env.scalars[name])
    if order == 2:
        out["ggI"] = fmt_list(list(env.arrays["ggI"]))
        out["ggG"] = fmt(env.scalars["ggG"])
        out["ggB"] = fmt(env.scalars["ggB"])
    if not spec.training:
        out["running μ"] = fmt(env.scalars["mu"])
        out["running σ²"] = fmt(env.scalars["var"])
    out["ε"] = fmt(env.scalars["eps"])
    if "r" in inst.inputs:
        out["√(σ²+ε)" if spec.norm.centred else "√(ms+ε)"] = fmt(inst.inputs["r"])
    return out


def find_witness(
    form: Form,
    eq: Equation,
    spec: Spec,
    channel: int,
    before: Equation | sp.Expr | None = None,
    attempts: int = 8,
) -> Counterexample | None:
    """Small exact inputs where the form's ``eq`` and its reference differ: the truth of the
    quantity it defines (``before`` None), the line before it (a step) or a local derivative's
    truth at element i.  SymPy numbers, so that left-over radicals stay exact; a difference is
    compared at 50 digits only when it is not zero exactly.  The counterexample's ``truth`` is
    the reference's value, its ``form`` the line's."""
    truth = truth_of(form.order, spec) if before is None else None
    for attempt in range(attempts):
        point = random_point(spec, 1000 * attempt + 7, spread=3 + attempt)
        inst = point_env(spec, channel, point, SYMBOLIC)
        mine = run_lines(form_definitions(form), inst.env)
        if truth is not None:
            true = run_lines(truth.definitions(), inst.env)
            if eq.name not in true.values:
                continue
            reference: list[Any] | str = entries(true.values[eq.name], eq.elementwise)
        else:
            reference = reference_entries(before, mine, inst.env)
        if isinstance(reference, str) or mine.line_error(eq):
            continue
        values = entries(mine.line(eq), eq.elementwise)
        for position, (a, b) in enumerate(paired(reference, values)):
            diff = sp.expand(a - b)
            if diff == 0 or abs(sp.N(diff, 50)) < sp.Float("1e-40", 50):
                continue
            return Counterexample(
                spec,
                channel,
                entry_label(eq, spec, channel, position),
                describe_point(inst, form.order),
                fmt(sp.radsimp(a)),
                fmt(sp.radsimp(b)),
            )
    return None
