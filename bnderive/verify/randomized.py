"""The randomized exact method: truth and form at random points of a large reduction set.

For a large reduction set (M = 4096 by default), truth and form are evaluated at random integer
points exactly: first in the prime field F_p (vectorized), then in rational arithmetic for a
counterexample.  A difference refutes with that point; agreement in every trial is a
probabilistic proof: a nonzero difference of degree ≤ d vanishes at a random point with
probability ≤ d/S (Schwartz–Zippel), S the size of the sample range.
"""

from __future__ import annotations

import time
from fractions import Fraction
from functools import lru_cache

import numpy as np
import sympy as sp

from bnderive.core import notation as N
from bnderive.core.derive import Truth, inline
from bnderive.core.double_backward import SecondOrderTruth
from bnderive.core.evaluate import RATIONAL, NotRational
from bnderive.core.finite_field import P
from bnderive.core.points import Instance, modular_point_env, point_env, random_point
from bnderive.core.spec import Mode, Norm, Spec
from bnderive.errors import BnderiveError
from bnderive.read.forms import Equation, Form
from bnderive.verify.degree_bound import degree_bound
from bnderive.verify.lines import Outcome, checkable, entries, form_definitions, run_lines, truth_of
from bnderive.verify.verdict import (
    AUXILIARY,
    Counterexample,
    Status,
    Verdict,
    line_verdict,
    with_time,
)
from bnderive.verify.witness import describe_point, entry_label, fmt

# -- randomized exact -------------------------------------------------------------------------------
#: Integer inputs are drawn from [−SPREAD, SPREAD]: the sample set has 2·SPREAD + 1 ≥ 2^21 values.
SPREAD = 2**20


def large_spec(mode: Mode, m: int = 4096, norm: Norm = Norm.BATCH, groups: int = 1) -> Spec:
    """A one-set spec with M = m: BatchNorm (m, 1) or (n, 1, h, w) with n·h·w = m; for the
    relatives one sample: LayerNorm, RMSNorm (1, m) or (1, c, h, w) with c·h·w = m,
    InstanceNorm (1, 1, h, w) with h·w = m, GroupNorm (1, G·c, h, w) with c·h·w = m."""
    if mode is Mode.PER_ACTIVATION:
        if norm is Norm.BATCH:
            return Spec(Mode.PER_ACTIVATION, n=m, c=1)
        return Spec(Mode.PER_ACTIVATION, n=1, c=m, norm=norm)
    side = 1
    while (side * 2) ** 2 * 4 <= m and m % ((side * 2) ** 2) == 0:
        side *= 2
    if norm is Norm.BATCH:
        return Spec(Mode.SPATIAL, n=m // (side * side), c=1, h=side, w=side)
    rest = m // (side * side)
    if norm is Norm.INSTANCE:
        return Spec(Mode.SPATIAL, n=1, c=1, h=rest * side, w=side, norm=norm)
    if norm is Norm.GROUP:
        return Spec(Mode.SPATIAL, n=1, c=groups * rest, h=side, w=side, norm=norm, groups=groups)
    return Spec(Mode.SPATIAL, n=1, c=rest, h=side, w=side, norm=norm)


def random_check(
    form: Form, spec: Spec, trials: int = 3, seed: int = 0, scope: str = ""
) -> list[Verdict]:
    """Truth and form at ``trials`` random points, exactly.

    First in the prime field F_p, vectorized (``modular``); a line that agrees at every point
    holds with probability of error ≤ (d/p)^trials.  A line that differs is refuted, with a
    counterexample in rational numbers from ``random_rational_check``; a form that cannot be
    evaluated in F_p (a radical other than √(σ²+ε)) is checked in rational numbers only.
    """
    spec = form.spec(spec)
    truth = truth_of(form.order, spec)
    scope = scope or f"M = {spec.m} randomized"
    started = time.perf_counter()
    screen = _modular_screen(form, spec, truth, trials, seed)
    if screen is None:
        return random_rational_check(form, spec, trials, seed, scope)
    agreed, differs = screen
    rational: dict[int, Verdict] = {}
    if differs:
        rational = {v.equation: v for v in random_rational_check(form, spec, trials, seed, scope)}
    share = (time.perf_counter() - started) / max(1, len(form.equations))
    degrees = _degrees(form, truth)
    out = []
    for eq in form.equations:
        found = rational.get(eq.number)
        if eq.number in differs and (found is None or found.status is not Status.REFUTED):
            found = line_verdict(
                form, eq, Status.REFUTED, "random", scope, mode=spec.mode, trials=trials,
                detail=f"differs from the truth modulo p = 2³¹−1 at a random point (draw "
                f"{differs[eq.number]}); a nonzero value mod p proves the difference is not "
                "identically zero",
            )  # fmt: skip
        verdict = _ladder(
            form, eq, truth, scope, spec.mode,
            refuted=found if eq.number in differs else None,
            agreed=agreed.get(eq.number, 0), trials=trials, degree=degrees.get(eq.number),
            sample=P, points="random points of F_p, p = 2³¹−1", sample_text="p",
            too_few="too few random points could be evaluated", seconds=share,
        )  # fmt: skip
        if verdict is not None:
            out.append(verdict)
    return out


def _ladder(
    form: Form,
    eq: Equation,
    truth: Truth | SecondOrderTruth,
    scope: str,
    mode: Mode,
    *,
    refuted: Verdict | None,
    agreed: int,
    trials: int,
    degree: int | None,
    sample: int,
    points: str,
    sample_text: str,
    too_few: str,
    seconds: float,
) -> Verdict | None:
    """What the randomized method says of one line: refuted (a point where it differs), not
    checked (an auxiliary line), undecided (too few points, or no degree bound: agreement then
    proves nothing), or holds with the Schwartz–Zippel bound (d/S)^trials.  Local derivatives
    are left to the exact and every-M methods (None), as are a document's lines that are
    checked against a reference (the forward graph, a local derivative, an identity)."""
    if eq.kind != "quantity":
        return None
    common = dict(mode=mode, seconds=seconds)
    if eq.name not in truth:
        return line_verdict(form, eq, Status.UNCHECKED, "random", scope, detail=AUXILIARY, **common)
    if refuted is not None:
        return with_time(refuted, seconds)
    if agreed < trials:
        return line_verdict(
            form, eq, Status.UNDECIDED, "random", scope, detail=too_few, trials=agreed, **common
        )
    if degree is None:
        return line_verdict(
            form, eq, Status.UNDECIDED, "random", scope, trials=trials, **common,
            detail="equal at every random point, but no degree bound is known for this "
            "expression, so agreement proves nothing; use the exact method",
        )  # fmt: skip
    bound = float(Fraction(degree, sample) ** trials) if degree < sample else 1.0
    return line_verdict(
        form, eq, Status.HOLDS, "random", scope, trials=trials, bound=bound, **common,
        detail=f"equal at {trials} {points}; a nonzero difference of degree ≤ {degree} "
        f"vanishes at one with probability ≤ {degree}/{sample_text} (Schwartz–Zippel), so a "
        f"false 'holds' has probability ≤ {bound:.1e}",
    )  # fmt: skip


def _modular_screen(
    form: Form, spec: Spec, truth: Truth | SecondOrderTruth, trials: int, seed: int
) -> tuple[dict[int, int], dict[int, int]] | None:
    """(points of agreement per equation, first differing draw per equation), or None when
    the form cannot be evaluated in F_p."""
    agreed: dict[int, int] = {}
    differs: dict[int, int] = {}
    usable = 0
    for draw in range(1, trials + 4):
        if usable == trials:
            break
        try:
            inst, true = _modular_truth(spec, seed * 7919 + draw, form.order)
        except (NotRational, ZeroDivisionError, BnderiveError):
            continue
        mine = run_lines(form_definitions(form), inst.env)
        for eq in checkable(form, truth):
            if mine.line_error(eq) and "F_p" in mine.line_error(eq):
                return None  # a radical the field cannot decide: rational arithmetic instead
        usable += 1
        for eq in checkable(form, truth):
            if eq.number in differs or mine.line_error(eq) or eq.name in true.errors:
                continue
            t = np.asarray(true.values[eq.name]) % P
            f = np.asarray(mine.line(eq)) % P
            if np.array_equal(t, f):
                agreed[eq.number] = agreed.get(eq.number, 0) + 1
            else:
                differs[eq.number] = seed * 7919 + draw
    return agreed, differs


@lru_cache(maxsize=32)
def _modular_truth(spec: Spec, draw: int, order: int = 1) -> tuple[Instance, Outcome]:
    inst = modular_point_env(spec, draw)
    return inst, run_lines(truth_of(order, spec).definitions(), inst.env)


def random_rational_check(
    form: Form, spec: Spec, trials: int = 3, seed: int = 0, scope: str = ""
) -> list[Verdict]:
    """Evaluate truth and form at ``trials`` random integer points in rational arithmetic."""
    spec = form.spec(spec)
    truth = truth_of(form.order, spec)
    scope = scope or f"M = {spec.m} randomized"
    degrees = _degrees(form, truth)
    results: dict[int, Verdict] = {}
    agreed: dict[int, int] = {eq.number: 0 for eq in form.equations}
    notes: dict[int, str] = {}
    seconds: dict[int, float] = {eq.number: 0.0 for eq in form.equations}
    draws = 0
    trial = 0
    while trial < trials and draws < trials + 4:
        draws += 1
        t0 = time.perf_counter()
        try:
            inst, true = _random_truth(spec, seed * 7919 + draws, form.order)
        except (NotRational, ZeroDivisionError, BnderiveError) as exc:
            for eq in form.equations:
                notes[eq.number] = f"the truth cannot be evaluated exactly here: {exc}"
            continue
        mine = run_lines(form_definitions(form), inst.env)
        share = (time.perf_counter() - t0) / max(1, len(form.equations))
        trial += 1
        for eq in checkable(form, truth):
            seconds[eq.number] += share
            if eq.number in results:
                continue
            if mine.line_error(eq) or eq.name in true.errors:
                notes[eq.number] = mine.line_error(eq) or true.errors.get(eq.name, "")
                continue
            t_entries = entries(true.values[eq.name], eq.elementwise)
            f_entries = entries(mine.line(eq), eq.elementwise)
            for position, (t, f) in enumerate(zip(t_entries, f_entries, strict=True)):
                if t != f:
                    inputs = describe_point(inst, form.order)
                    inputs["seed"] = str(seed * 7919 + draws)
                    cex = Counterexample(
                        spec, 0, entry_label(eq, spec, 0, position), inputs, fmt(t), fmt(f)
                    )
                    results[eq.number] = line_verdict(
                        form,
                        eq,
                        Status.REFUTED,
                        "random",
                        scope,
                        detail=f"differs at a random point (trial {trial})",
                        counterexample=cex,
                        trials=trial,
                        mode=spec.mode,
                    )
                    break
            else:
                agreed[eq.number] += 1
    out = []
    sample = 2 * SPREAD + 1
    for eq in form.equations:
        verdict = _ladder(
            form, eq, truth, scope, spec.mode,
            refuted=results.get(eq.number), agreed=agreed[eq.number], trials=trials,
            degree=degrees.get(eq.number), sample=sample, points="random points",
            sample_text=str(sample),
            too_few=notes.get(eq.number, "too few points could be evaluated"),
            seconds=seconds[eq.number],
        )  # fmt: skip
        if verdict is not None:
            out.append(verdict)
    return out


def warm_random_truth(form: Form, spec: Spec, trials: int, seed: int = 0) -> None:
    """Compute the truth at the random points ``random_check`` will draw (for the caches)."""
    spec = form.spec(spec)
    for draw in range(1, trials + 1):
        try:
            _modular_truth(spec, seed * 7919 + draw, form.order)
        except (NotRational, ZeroDivisionError, BnderiveError):
            return


@lru_cache(maxsize=32)
def _random_truth(spec: Spec, draw: int, order: int = 1) -> tuple[Instance, Outcome]:
    """The random point ``draw`` and the truth there (shared by every form checked)."""
    point = random_point(spec, draw, SPREAD)
    inst = point_env(spec, 0, point, RATIONAL)
    return inst, run_lines(truth_of(order, spec).definitions(), inst.env)


def _degrees(form: Form, truth: Truth | SecondOrderTruth) -> dict[int, int | None]:
    """Degree bound of the numerator of (truth − form) for every checkable equation."""
    definitions: dict[str, tuple[bool, sp.Expr]] = {}
    for stage in truth.graph.stages:
        if stage.elementwise:
            definitions[stage.name] = (True, stage.at(N.i))
    out: dict[int, int | None] = {}
    form_defs = dict(definitions)
    for eq in form.equations:
        form_defs[eq.store_name] = (eq.elementwise, eq.expr)
        if eq.kind == "quantity" and eq.name in truth:
            try:
                mine = degree_bound(inline(eq.expr, form_defs))
                true = degree_bound(truth.inline(eq.name))
            except ValueError:
                out[eq.number] = None
                continue
            out[eq.number] = max(true[0] + mine[1], mine[0] + true[1])
    return out
