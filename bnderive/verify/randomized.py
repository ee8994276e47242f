"""The randomized exact method: truth and form at random points of a large reduction set.

For a large reduction set (M = 4096 by default), truth and form are evaluated at random integer
points exactly: in the prime field F_p (vectorized), and at one point in rational arithmetic.
A difference refutes with that point; agreement everywhere is a probabilistic proof: a nonzero
difference of degree ≤ d vanishes at a random point with probability ≤ d/S (Schwartz–Zippel),
S the size of the smallest set a variable is drawn from.

Three things make that bound true, and each has a test (tests/test_random_soundness.py):

* **F_p alone proves nothing of a difference whose coefficients are all multiples of p.**  Its
  reduction mod p is the zero polynomial: dβ = (p+1)·Σg agrees with Σg at every point of F_p.
  A value that differs mod p does refute (the rational values differ too), and agreement bounds
  the error by (d/(p−1−d))^T when the reduction is not zero; when it is, the point in rational
  arithmetic (integers of up to 62 bits) catches the difference but with probability
  d/(2⁶² − d).  A line holds when both agree, with the larger of the two bounds.
* **the points are random for the form.**  A seed fixed in advance fixes the points, and a wrong
  form can be written to vanish at them.  The seed is drawn from a hash of the forms checked
  (``form_seed``; Fiat–Shamir): changing the form to aim at the points changes the points.  The
  same forms give the same points, so a run is reproducible.
* **the bound uses the sets the points come from.**  r = √(σ²+ε) is drawn from SPREAD + 1
  integers above √σ², ε (outside the root) from SPREAD fractions: S = SPREAD (p − 1 in F_p,
  where r ≠ 0).  A trial whose truth cannot be evaluated (a zero denominator, probability ≤
  d/S) is skipped, which raises the per-trial bound to d/(S − d); a degree not below S/2 proves
  nothing (undecided).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from fractions import Fraction
from functools import lru_cache

import numpy as np
import sympy as sp

from bnderive.core import notation as N
from bnderive.core.derive import Truth, inline
from bnderive.core.double_backward import SecondOrderTruth
from bnderive.core.evaluate import RATIONAL, NotRational, entry_budget
from bnderive.core.finite_field import P
from bnderive.core.points import Instance, modular_point_env, point_env, random_point
from bnderive.core.spec import Mode, Norm, Spec
from bnderive.errors import BnderiveError
from bnderive.read.forms import Equation, Form
from bnderive.verify.degree_bound import degree_bound
from bnderive.verify.lines import Outcome, checkable, entries, form_definitions, run_lines, truth_of
from bnderive.verify.readings import combined
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
#: Integer inputs are drawn from [−SPREAD, SPREAD], r = √(σ²+ε) from SPREAD + 1 integers above
#: √σ² and ε (outside the root) from SPREAD fractions: no variable has fewer than SPREAD values.
#: (Rational arithmetic with 62-bit inputs costs about 10% more than with 20-bit ones.)
SPREAD = 2**62
_SPREAD_TEXT = "2⁶²"  # SPREAD, as the verdicts print it
#: The most entries one reduction may build (``core.evaluate.entry_budget``): in F_p, vectorized
#: machine integers, 2²⁴ = 4096² (a summand over two indices at M = 4096); in exact rationals,
#: about a microsecond an entry, 2¹⁶.  Beyond, ``TooLarge``, and the plan evaluates the form at
#: a smaller M (Σ_k Σ_p f(i, k, p) at M = 4096 ran for minutes and took gigabytes).
FIELD_ENTRIES = 2**24
RATIONAL_ENTRIES = 2**16


def form_seed(forms: Sequence[Form], seed: int = 0) -> int:
    """The seed of the random points for ``forms``: a hash of what they say (each line's name and
    expression, the conventions) and ``seed``.  Points fixed in advance could be aimed at by a
    wrong form; points drawn from the form itself cannot (to aim at them is to change them)."""
    digest = hashlib.sha256(str(seed).encode())
    for form in forms:
        digest.update(repr((form.name, form.order, form.training, form.unbiased)).encode())
        digest.update(repr((form.eps_inside, form.eps_zero, form.norm.value)).encode())
        for eq in form.equations:
            text = repr((eq.store_name, eq.kind, eq.elementwise, sp.srepr(eq.expr)))
            digest.update(text.encode())
    return int.from_bytes(digest.digest()[:6], "big")


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


@combined
def random_check(
    form: Form, spec: Spec, trials: int = 3, seed: int | None = None, scope: str = ""
) -> list[Verdict]:
    """Truth and form at ``trials`` random points of F_p and one in rational arithmetic.

    In the prime field F_p, vectorized (``modular``), a line that differs is refuted (a nonzero
    value mod p proves the difference nonzero) and agreement at every point bounds the chance
    of a wrong "holds" by (d/(p−1−d))^trials, *unless* every coefficient of the difference is a
    multiple of p; the point in rational arithmetic (``random_rational_check``, from 2·2⁶² + 1
    integers) covers that case with d/(2⁶² − d) and gives refutations their counterexample.  A
    line holds when both agree, with the larger bound.  A form that cannot be evaluated in F_p
    (a radical other than √(σ²+ε)) is checked at ``trials`` rational points only.  ``seed``
    None: the points are drawn from the form itself (``form_seed``)."""
    spec = form.spec(spec)
    seed = form_seed([form]) if seed is None else seed
    truth = truth_of(form.order, spec)
    scope = scope or f"M = {spec.m} randomized"
    started = time.perf_counter()
    with entry_budget(FIELD_ENTRIES):
        screen = _modular_screen(form, spec, truth, trials, seed)
    with entry_budget(RATIONAL_ENTRIES):
        if screen is None:
            return random_rational_check(form, spec, trials, seed, scope)
        agreed, differs = screen
        rational = {v.equation: v for v in random_rational_check(form, spec, 1, seed, scope)}
    share = (time.perf_counter() - started) / max(1, len(form.equations))
    degrees = _degrees(form, truth)
    out = []
    for eq in form.equations:
        refuted = None
        if eq.number in differs:
            refuted = line_verdict(
                form, eq, Status.REFUTED, "random", scope, mode=spec.mode, trials=trials,
                detail=f"differs from the truth modulo p = 2³¹−1 at a random point (draw "
                f"{differs[eq.number]}); a nonzero value mod p proves the difference is not "
                "identically zero",
            )  # fmt: skip
        field = _ladder(
            form, eq, truth, scope, spec.mode,
            refuted=refuted, agreed=agreed.get(eq.number, 0), trials=trials,
            degree=degrees.get(eq.number), sample=P - 1, points="random points of F_p",
            sample_text="p − 1", too_few="too few random points of F_p could be evaluated",
            seconds=share,
        )  # fmt: skip
        verdict = _both(field, rational.get(eq.number), trials, degrees.get(eq.number))
        if verdict is not None:
            out.append(verdict)
    return out


def _both(
    field: Verdict | None, rational: Verdict | None, trials: int, degree: int | None
) -> Verdict | None:
    """One line's verdict from the F_p points and the rational point: refuted if either
    refutes (the rational one first: it has a counterexample), undecided if either leaves it
    open, holds only if both hold, with the larger of the two bounds (the difference's
    reduction mod p is either nonzero, and the field's bound applies, or zero, and the rational
    point's does)."""
    if field is None or rational is None:
        return field or rational
    seconds = field.seconds + rational.seconds
    for status in (Status.REFUTED, Status.UNDECIDED, Status.UNCHECKED):
        for verdict in (rational, field):
            if verdict.status is status:
                return with_time(verdict, seconds)
    bound = max(field.bound or 0.0, rational.bound or 0.0)
    detail = (
        f"equal at {trials} random points of F_p and at 1 random point in rational arithmetic; "
        f"a nonzero difference of degree ≤ {degree} vanishes at a point of F_p with probability "
        f"≤ {degree}/(p − 1 − {degree}) (Schwartz–Zippel) unless all its coefficients are "
        f"multiples of p, and then at the rational point with probability ≤ "
        f"{degree}/({_SPREAD_TEXT} − {degree}): a false 'holds' has probability ≤ {bound:.1e}"
    )
    return Verdict(**{**field.__dict__, "bound": bound, "seconds": seconds, "detail": detail})


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
    if 2 * degree >= sample:
        return line_verdict(
            form, eq, Status.UNDECIDED, "random", scope, trials=trials, **common,
            detail=f"equal at every random point, but the degree bound {degree} is not small "
            f"against the {sample_text} values a variable is drawn from, so agreement proves "
            "nothing; use the exact method",
        )  # fmt: skip
    # Schwartz–Zippel: ≤ d/S per point; a point whose truth is undefined (probability ≤ d/S)
    # is skipped, so given that it was kept, ≤ (d/S)/(1 − d/S) = d/(S − d).
    bound = float(Fraction(degree, sample - degree) ** trials)
    return line_verdict(
        form, eq, Status.HOLDS, "random", scope, trials=trials, bound=bound, **common,
        detail=f"equal at {trials} {points}; a nonzero difference of degree ≤ {degree} "
        f"vanishes at one with probability ≤ {degree}/({sample_text} − {degree}) "
        f"(Schwartz–Zippel), so a false 'holds' has probability ≤ {bound:.1e}",
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
    form: Form, spec: Spec, trials: int = 3, seed: int | None = None, scope: str = ""
) -> list[Verdict]:
    """Evaluate truth and form at ``trials`` random integer points in rational arithmetic
    (``seed`` None: points drawn from the form itself, ``form_seed``)."""
    spec = form.spec(spec)
    seed = form_seed([form]) if seed is None else seed
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
            cex = _first_difference(eq, spec, form.order, inst, true, mine, seed * 7919 + draws)
            if cex is None:
                agreed[eq.number] += 1
                continue
            results[eq.number] = line_verdict(
                form, eq, Status.REFUTED, "random", scope,
                detail=f"differs at a random point (trial {trial})",
                counterexample=cex, trials=trial, mode=spec.mode,
            )  # fmt: skip
    out = []
    for eq in form.equations:
        verdict = _ladder(
            form, eq, truth, scope, spec.mode,
            refuted=results.get(eq.number), agreed=agreed[eq.number], trials=trials,
            degree=degrees.get(eq.number), sample=SPREAD,
            points="random points in rational arithmetic", sample_text=_SPREAD_TEXT,
            too_few=notes.get(eq.number, "too few points could be evaluated"),
            seconds=seconds[eq.number],
        )  # fmt: skip
        if verdict is not None:
            out.append(verdict)
    return out


def _first_difference(
    eq: Equation, spec: Spec, order: int, inst: Instance, true: Outcome, mine: Outcome, draw: int
) -> Counterexample | None:
    """The first entry where the line's exact value at the point differs from the truth's, as
    a counterexample (the point's inputs and its draw), or None where every entry agrees."""
    t_entries = entries(true.values[eq.name], eq.elementwise)
    f_entries = entries(mine.line(eq), eq.elementwise)
    for position, (t, f) in enumerate(zip(t_entries, f_entries, strict=True)):
        if t != f:
            inputs = describe_point(inst, order)
            inputs["seed"] = str(draw)
            return Counterexample(
                spec, 0, entry_label(eq, spec, 0, position), inputs, fmt(t), fmt(f)
            )
    return None


def warm_random_truth(form: Form, spec: Spec, trials: int, seed: int | None = None) -> None:
    """Compute what ``random_check`` will ask for, for the caches a forked worker inherits: the
    truth's degree bounds, the truth at the ``trials`` points of F_p and at the first rational
    point (the one ``random_check`` draws; a form F_p cannot evaluate draws more, in its
    worker).  The rational truth at M = 4096 costs as much as the whole F_p screen: warming
    points no form uses was a third of ``bnderive check``'s serial time."""
    spec = form.spec(spec)
    seed = form_seed([form]) if seed is None else seed
    truth = truth_of(form.order, spec)
    for eq in checkable(form, truth):
        _truth_degree(truth, eq.name)
    for truth_at, draws in ((_modular_truth, trials), (_random_truth, 1)):
        for draw in range(1, draws + 1):
            try:
                truth_at(spec, seed * 7919 + draw, form.order)
            except (NotRational, ZeroDivisionError, BnderiveError):
                pass


@lru_cache(maxsize=32)
def _random_truth(spec: Spec, draw: int, order: int = 1) -> tuple[Instance, Outcome]:
    """The random point ``draw`` and the truth there (shared by every form checked)."""
    point = random_point(spec, draw, SPREAD)
    inst = point_env(spec, 0, point, RATIONAL)
    return inst, run_lines(truth_of(order, spec).definitions(), inst.env)


@lru_cache(maxsize=256)
def _degrees(form: Form, truth: Truth | SecondOrderTruth) -> dict[int, int | None]:
    """Degree bound of the numerator of (truth − form) for every checkable equation: with
    deg(t) ≤ p/q and deg(f) ≤ p'/q', t − f = (t·q' − f·q)/(q·q') has a numerator of degree
    ≤ max(p + q', p' + q).  (Memoized: ``random_check`` and its rational point ask for the same
    form twice.)"""
    compared = [eq for eq in form.equations if eq.kind == "quantity" and eq.name in truth]
    own = _form_degrees(form, _stage_definitions(truth), tuple(eq.number for eq in compared))
    out: dict[int, int | None] = {}
    for eq in compared:
        true, mine = _truth_degree(truth, eq.name), own[eq.number]
        if true is None or mine is None:
            out[eq.number] = None
        else:
            out[eq.number] = max(true[0] + mine[1], mine[0] + true[1])
    return out


@lru_cache(maxsize=256)
def _stage_definitions(truth: Truth | SecondOrderTruth) -> tuple[tuple[str, sp.Expr], ...]:
    """The truth's elementwise forward stages, at index i (what a form's line may refer to)."""
    return tuple((s.name, s.at(N.i)) for s in truth.graph.stages if s.elementwise)


@lru_cache(maxsize=256)
def _form_degrees(
    form: Form, stages: tuple[tuple[str, sp.Expr], ...], numbers: tuple[int, ...]
) -> dict[int, tuple[int, int] | None]:
    """(p, q) of the form's lines ``numbers`` inlined (``degree_bound``), None where none is known.
    It depends on the forward stages only, which are the same in both modes: inlining a form's
    lines is computed once per form, not once per mode."""
    form_defs: dict[str, tuple[bool, sp.Expr]] = {name: (True, expr) for name, expr in stages}
    out: dict[int, tuple[int, int] | None] = {}
    for eq in form.equations:
        form_defs[eq.store_name] = (eq.elementwise, eq.expr)
        if eq.number in numbers:
            try:
                out[eq.number] = degree_bound(inline(eq.expr, form_defs))
            except ValueError:
                out[eq.number] = None
    return out


@lru_cache(maxsize=256)
def _truth_degree(truth: Truth | SecondOrderTruth, name: str) -> tuple[int, int] | None:
    """(p, q) of the truth of ``name`` inlined (``degree_bound``), None when none is known.
    Shared by every form compared with this truth: inlining the staged adjoints is the costly
    part of ``_degrees``."""
    return _expression_degree(truth.inline(name))


@lru_cache(maxsize=256)
def _expression_degree(expr: sp.Expr) -> tuple[int, int] | None:
    """``degree_bound`` of an inlined truth, once per expression: the truths of both modes
    inline to the same expression (``Truth.inline`` shares it)."""
    try:
        return degree_bound(expr)
    except ValueError:
        return None
