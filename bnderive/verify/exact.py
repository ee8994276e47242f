"""The exact method: every entry of (truth − form) decided at explicit sizes (DESIGN.md §4).

For explicit sizes, every entry of (truth − form) after the radical elimination is decided by
``zero_test.decide_zero``.  "holds" is a proof for those sizes.  A nonzero normal form is
reported "refuted" only with a witness (``witness``); without one the line is "undecided".
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import sympy as sp

from bnderive.core.derive import LOCAL_DERIVATIVES, local_truth
from bnderive.core.points import Instance, exact_env
from bnderive.core.spec import Mode, Spec
from bnderive.read.forms import Equation, Form
from bnderive.verify.lines import (
    Outcome,
    checkable,
    entries,
    form_definitions,
    form_steps,
    local_equations,
    reference_entries,
    run_lines,
    truth_of,
)
from bnderive.verify.verdict import (
    AUXILIARY,
    Status,
    Verdict,
    line_verdict,
    pair_verdict,
    with_steps,
    with_time,
)
from bnderive.verify.witness import find_witness, in_x, short, step_witness
from bnderive.verify.zero_test import Zero, decide_zero


# -- exact ------------------------------------------------------------------------------------------
@lru_cache(maxsize=64)
def _exact_instance(spec: Spec, channel: int, order: int = 1) -> tuple[Instance, Outcome]:
    inst = exact_env(spec, channel)
    return inst, run_lines(truth_of(order, spec).definitions(), inst.env)


def exact_check(form: Form, specs: Sequence[Spec], scope: str = "") -> list[Verdict]:
    """Decide every checkable equation of ``form`` exactly at each of ``specs``."""
    # M ≥ 3 first: at M ≤ 2 x̂ = ±1 and counterexamples are degenerate (DESIGN.md §1).
    specs = sorted((form.spec(s) for s in specs), key=lambda s: (s.m < 3, s.m))
    truth = truth_of(form.order, specs[0])
    results: dict[int, Verdict] = {}
    started = {eq.number: 0.0 for eq in form.equations}
    undecided: dict[int, str] = {}
    scope = scope or ", ".join(s.describe() for s in specs)
    mode = specs[0].mode if len({s.mode for s in specs}) == 1 else None
    for spec in specs:
        for channel in range(spec.c):
            t0 = time.perf_counter()
            inst, true = _exact_instance(spec, channel, form.order)
            mine = run_lines(form_definitions(form), inst.env)
            per_channel = time.perf_counter() - t0
            for eq in checkable(form, truth):
                if eq.number in results:  # already refuted at a smaller size
                    continue
                t1 = time.perf_counter()
                if mine.line_error(eq):
                    undecided[eq.number] = f"{spec.describe()}: {mine.line_error(eq)}"
                    continue
                if eq.name in true.errors:
                    undecided[eq.number] = (
                        f"the truth is undefined at {spec.describe()}: {true.errors[eq.name]}"
                    )
                    continue
                verdict = _decide_entries(form, eq, spec, channel, true, mine)
                started[eq.number] += (
                    time.perf_counter() - t1 + per_channel / max(1, len(form.equations))
                )
                if verdict is not None:
                    if verdict[0] is Status.REFUTED:
                        cex, residual = verdict[1], verdict[2]
                        results[eq.number] = line_verdict(
                            form,
                            eq,
                            Status.REFUTED,
                            "exact",
                            scope,
                            detail=f"differs at {spec.describe()}",
                            counterexample=cex,
                            residual=residual,
                            mode=mode,
                        )
                    else:
                        undecided[eq.number] = verdict[1]
    out = []
    for eq in form.equations:
        if eq.name in LOCAL_DERIVATIVES:  # exact_local_check decides these
            continue
        if eq.name not in truth:
            out.append(
                line_verdict(
                    form,
                    eq,
                    Status.UNCHECKED,
                    "exact",
                    scope,
                    detail=AUXILIARY,
                    mode=mode,
                )
            )
            continue
        if eq.number in results:
            v = results[eq.number]
            out.append(with_time(v, started[eq.number]))
        elif eq.number in undecided:
            out.append(
                line_verdict(
                    form,
                    eq,
                    Status.UNDECIDED,
                    "exact",
                    scope,
                    detail=undecided[eq.number],
                    seconds=started[eq.number],
                    mode=mode,
                )
            )
        else:
            out.append(
                line_verdict(
                    form,
                    eq,
                    Status.HOLDS,
                    "exact",
                    scope,
                    detail="identically equal to the truth (radical eliminated, expanded"
                    + (
                        "; entry 1 decided, the rest by permutation symmetry)"
                        if equivariant(form)
                        else ", every entry)"
                    ),
                    seconds=started[eq.number],
                    mode=mode,
                )
            )
    return out


def equivariant(form: Form) -> bool:
    """True if no line of the form names an element by number (x[1]).

    Index notation with sums over the whole reduction set commutes with any permutation of the
    elements, and so does the truth: entry i of (truth − form) is entry 1 with elements 1 and i
    swapped, and deciding entry 1 decides them all.
    """
    for eq in form.equations:
        for node in eq.expr.atoms(sp.Indexed, sp.KroneckerDelta):
            positions = node.indices if isinstance(node, sp.Indexed) else node.args
            if any(not isinstance(idx, sp.Symbol) for idx in positions):
                return False
    return True


def _decide_entries(
    form: Form, eq: Equation, spec: Spec, channel: int, true: Outcome, mine: Outcome
) -> tuple[Status, Any, Any] | None:
    """None if every entry is identically equal; else (REFUTED, cex, residual) or (UNDECIDED, why)."""
    t_entries = entries(true.values[eq.name], eq.elementwise)
    f_entries = entries(mine.line(eq), eq.elementwise)
    if equivariant(form):
        t_entries, f_entries = t_entries[:1], f_entries[:1]
    for t, f in zip(t_entries, f_entries, strict=True):
        test = decide_zero(t - f)
        if test.outcome is Zero.ZERO:
            continue
        if test.outcome is Zero.UNDEFINED:
            return (Status.UNDECIDED, f"undefined at {spec.describe()} (division by zero)", None)
        cex = find_witness(form, eq, spec, channel)
        if cex is None and decide_zero(t - f, quick=False).outcome is Zero.ZERO:
            continue  # the one-point screen saw a value outside the inputs' domain
        residual = short(in_x(test.residual, inst_inputs(spec, channel, form.order)))
        if cex is None:
            return (
                Status.UNDECIDED,
                f"normal form of truth − form is not zero at {spec.describe()}, "
                f"but no point was found where they differ; residual {residual}",
                None,
            )
        return (Status.REFUTED, cex, residual)
    return None


def inst_inputs(spec: Spec, channel: int, order: int) -> dict[str, Any]:
    return _exact_instance(spec, channel, order)[0].inputs


# -- steps: a continuation against the line before ---------------------------------------------------
def exact_step_check(form: Form, specs: Sequence[Spec], scope: str = "") -> list[Verdict]:
    """Each step of a document decided exactly at each of ``specs``: is the continuation equal,
    as a function of the inputs, to the expression before it?  A faithful step from a wrong line
    holds here while both lines are refuted against the truth: that is where the mistake is not."""
    return _reference_check(form, form_steps(form), specs, scope)


def exact_local_check(form: Form, specs: Sequence[Spec], scope: str = "") -> list[Verdict]:
    """Each line defining a local derivative (∂σ²/∂x_i, ∂μ/∂x_i, ∂x̂_i/∂σ², ∂x̂_i/∂μ) decided
    exactly against ``derive.local_truth``, at each of ``specs``."""
    pairs: list[tuple[Any, Equation]] = []
    out: list[Verdict] = []
    for eq in local_equations(form):
        truth = local_truth(form.spec(specs[0]), eq.name)
        if truth is None:
            out.append(no_local_verdict(form, eq, "exact", scope))
        else:
            pairs.append((truth, eq))
    return out + _reference_check(form, pairs, specs, scope)


def no_local_verdict(form: Form, eq: Equation, method: str, scope: str) -> Verdict:
    return line_verdict(
        form,
        eq,
        Status.UNCHECKED,
        method,
        scope,
        detail="in eval mode μ and σ² are running statistics, not stages of the graph",
    )


def _reference_check(
    form: Form, pairs: Sequence[tuple[Any, Equation]], specs: Sequence[Spec], scope: str = ""
) -> list[Verdict]:
    """Each (reference, equation): a step when the reference is the equation before, a local
    derivative when it is the truth's expression at element i; decided exactly at ``specs``."""
    steps = list(pairs)
    if not steps or not specs:
        return []
    specs = sorted((form.spec(s) for s in specs), key=lambda s: (s.m < 3, s.m))
    scope = scope or ", ".join(s.describe() for s in specs)
    mode = specs[0].mode if len({s.mode for s in specs}) == 1 else None
    refuted: dict[int, Verdict] = {}
    undecided: dict[int, str] = {}
    seconds = {eq.number: 0.0 for _, eq in steps}
    for spec in specs:
        for channel in range(spec.c):
            inst, _ = _exact_instance(spec, channel, form.order)
            mine = run_lines(form_definitions(form), inst.env)
            for before, eq in steps:
                if eq.number in refuted:
                    continue
                t0 = time.perf_counter()
                reference = reference_entries(before, mine, inst.env)
                error = reference if isinstance(reference, str) else mine.line_error(eq)
                if error:
                    undecided[eq.number] = f"{spec.describe()}: {error}"
                    continue
                a_entries = reference
                b_entries = entries(mine.line(eq), eq.elementwise)
                if equivariant(form):
                    a_entries, b_entries = a_entries[:1], b_entries[:1]
                for a, b in zip(a_entries, b_entries, strict=True):
                    test = decide_zero(a - b)
                    if test.outcome is Zero.ZERO:
                        continue
                    if test.outcome is Zero.UNDEFINED:
                        undecided[eq.number] = f"undefined at {spec.describe()} (division by zero)"
                        break
                    cex = step_witness(form, before, eq, spec, channel)
                    if cex is None and decide_zero(a - b, quick=False).outcome is Zero.ZERO:
                        continue  # the one-point screen saw a value outside the domain
                    residual = short(in_x(test.residual, inst.inputs))
                    if cex is None:
                        undecided[eq.number] = (
                            f"normal form of (line before − line) is not zero at "
                            f"{spec.describe()}, but no point was found where they differ"
                        )
                        break
                    refuted[eq.number] = pair_verdict(
                        form,
                        before,
                        eq,
                        Status.REFUTED,
                        "exact",
                        scope,
                        detail=(
                            f"does not follow from the line before: differs at {spec.describe()}"
                            if isinstance(before, Equation)
                            else f"differs from the local derivative at {spec.describe()}"
                        ),
                        counterexample=cex,
                        residual=residual,
                        mode=mode,
                    )
                    break
                seconds[eq.number] += time.perf_counter() - t0
    out = []
    for before, eq in steps:
        if eq.number in refuted:
            out.append(with_time(refuted[eq.number], seconds[eq.number]))
        elif eq.number in undecided:
            out.append(
                pair_verdict(
                    form,
                    before,
                    eq,
                    Status.UNDECIDED,
                    "exact",
                    scope,
                    detail=undecided[eq.number],
                    seconds=seconds[eq.number],
                    mode=mode,
                )
            )
        else:
            out.append(
                pair_verdict(
                    form,
                    before,
                    eq,
                    Status.HOLDS,
                    "exact",
                    scope,
                    detail="follows from the line before (identically equal to it)"
                    if isinstance(before, Equation)
                    else "identically equal to the local derivative of the graph stage",
                    seconds=seconds[eq.number],
                    mode=mode,
                )
            )
    return out


# -- the default plan -------------------------------------------------------------------------------
def default_exact_specs(mode: Mode, n_values: Sequence[int] = range(1, 7)) -> list[Spec]:
    if mode is Mode.PER_ACTIVATION:
        return [Spec(Mode.PER_ACTIVATION, n=n, c=1) for n in n_values] + [
            Spec(Mode.PER_ACTIVATION, n=3, c=2)
        ]
    return [Spec(Mode.SPATIAL, n=2, c=1, h=2, w=2), Spec(Mode.SPATIAL, n=2, c=2, h=2, w=3)]


def valid_specs(form: Form, specs: Sequence[Spec]) -> list[Spec]:
    """The specs that make sense for the form's conventions: Bessel's 1/(M−1) needs M ≥ 2, and
    with ε outside the root the truth is undefined at M = 1 (√σ² is not differentiable at
    σ² = 0), so that size is left out rather than reported undecided."""
    out = []
    for s in specs:
        if form.training and s.m < 2 and (form.unbiased or not form.eps_inside):
            continue
        out.append(s)
    return out


def exact_plan(
    mode: Mode, n_values: Sequence[int] | None = None, shapes: Sequence[Spec] = ()
) -> list[Spec]:
    """The explicit sizes the exact method checks in ``mode``: the given shapes of that mode if
    any; else for given N, (N, 1) or (N, 1, 2, 2); else the defaults: N = 1..6 with one feature
    and (3, 2) for PER_ACTIVATION, (2,1,2,2) and (2,2,2,3) for SPATIAL."""
    own = [s for s in shapes if s.mode is mode]
    if own:
        return own
    if shapes:
        return []
    if n_values is None:
        return default_exact_specs(mode)
    if mode is Mode.PER_ACTIVATION:
        return [Spec(Mode.PER_ACTIVATION, n=n, c=1) for n in n_values]
    return [Spec(Mode.SPATIAL, n=n, c=1, h=2, w=2) for n in n_values]


def check_exact_mode(
    form: Form, mode: Mode, n_values: Sequence[int] | None = None, shapes: Sequence[Spec] = ()
) -> list[Verdict]:
    specs = valid_specs(form, exact_plan(mode, n_values, shapes))
    if not specs:
        return []
    ms = sorted({s.m for s in specs})
    scope = f"M ≤ {ms[-1]} exact" if len(ms) > 1 else f"M = {ms[0]} exact"
    return with_steps(
        exact_check(form, specs, scope),
        exact_step_check(form, specs, scope) + exact_local_check(form, specs, scope),
    )
