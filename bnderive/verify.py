"""Verdicts: does a form agree with the ground truth, line by line?

Two methods (DESIGN.md §4), each sound for what it claims:

* ``exact``: for explicit sizes, every entry of (truth − form) after the radical elimination is
  decided by ``zero.decide_zero``.  "holds" is a proof for those sizes.  A nonzero normal form is
  reported "refuted" only with a witness: a point with small exact inputs where the two values
  differ; without one the line is "undecided".
* ``random``: for a large reduction set (M = 4096 by default), truth and form are evaluated at
  random integer points in exact rational arithmetic.  A difference refutes with that point;
  agreement in every trial is a probabilistic proof: a nonzero difference of degree ≤ d vanishes
  at a random point with probability ≤ d/S (Schwartz–Zippel), S the size of the sample range.

Every equation of a form is evaluated with the form's own earlier lines (what the form computes)
and compared with the truth of the quantity it defines.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from typing import Any

import numpy as np
import sympy as sp

from . import notation as N
from .degree import degree_bound
from .derive import LOCAL_DERIVATIVES, Truth, derive, inline, local_truth
from .errors import BnderiveError, SpecError
from .evaluate import RATIONAL, SYMBOLIC, Env, NotRational, evaluate
from .forms import Equation, Form
from .instances import Instance, exact_env, modular_point_env, point_env, random_point
from .modular import P
from .second import SecondOrderTruth, second_order_truth
from .spec import Mode, Spec
from .zero import Zero, decide_zero


class Status(enum.Enum):
    HOLDS = "holds"
    REFUTED = "refuted"
    UNDECIDED = "undecided"
    UNCHECKED = "not checked"


@dataclass(frozen=True)
class Counterexample:
    """A point where the form and the truth differ, with both exact values."""

    spec: Spec
    channel: int
    entry: str  # e.g. "dx[2] at x[1, 0]"
    inputs: dict[str, str]
    truth: str
    form: str

    def describe(self) -> str:
        given = "; ".join(f"{k} = {v}" for k, v in self.inputs.items())
        return (
            f"{self.spec.describe()}, channel {self.channel}: {given}. "
            f"{self.entry}: truth {self.truth}, form {self.form}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "shape": list(self.spec.shape),
            "mode": self.spec.mode.value,
            "channel": self.channel,
            "entry": self.entry,
            "inputs": dict(self.inputs),
            "truth": self.truth,
            "form": self.form,
        }


@dataclass(frozen=True)
class Verdict:
    """What one method found for one equation of one form."""

    form: str
    quantity: str
    equation: int | None
    status: Status
    method: str  # "exact" | "random"
    scope: str  # e.g. "per-activation, M = 1..6"
    detail: str = ""
    counterexample: Counterexample | None = None
    residual: str | None = None
    seconds: float = 0.0
    trials: int = 0
    bound: float | None = None
    mode: Mode | None = None
    source_line: int | None = None  # a document's line in the file (None for a TOML form)
    follows: int | None = None  # a step verdict: the equation this one is checked against
    follows_line: int | None = None  # ... and that equation's line in the file

    @property
    def step(self) -> bool:
        return self.follows is not None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "form": self.form,
            "quantity": self.quantity,
            "equation": self.equation,
            "status": self.status.value,
            "method": self.method,
            "mode": self.mode.value if self.mode else "both",
            "scope": self.scope,
            "detail": self.detail,
            "counterexample": self.counterexample.to_dict() if self.counterexample else None,
            "residual": self.residual,
            "seconds": round(self.seconds, 4),
            "trials": self.trials,
            "bound": self.bound,
        }
        if self.source_line is not None:
            out["source_line"] = self.source_line
        if self.follows is not None:
            out["follows"] = self.follows
            out["follows_line"] = self.follows_line
        return out


AUXILIARY = "auxiliary definition: used by later lines, not compared"


def line_verdict(
    form: Form, eq: Equation, status: Status, method: str, scope: str, **details: Any
) -> Verdict:
    """The verdict of one method on one line of a form (with its line in the file for a
    document)."""
    if "source_line" not in details:
        details["source_line"] = _source_line(form, eq)
    return Verdict(form.name, eq.label, eq.number, status, method, scope, **details)


def _source_line(form: Form, eq: Equation) -> int | None:
    """A document's line in the file where ``eq`` was written (None for a TOML form)."""
    line_of = getattr(form, "line_of", None)
    where = line_of(eq.number) if line_of is not None else None
    return where.line if where is not None else None


def step_verdict(
    form: Form,
    before: Equation,
    eq: Equation,
    status: Status,
    method: str,
    scope: str,
    **details: Any,
) -> Verdict:
    """The verdict on a step: ``eq`` compared with the expression ``before`` it, not the truth."""
    line_of = getattr(form, "line_of", None)
    where = line_of(before.number) if line_of is not None else None
    return line_verdict(
        form,
        eq,
        status,
        method,
        scope,
        follows=before.number,
        follows_line=where.line if where is not None else None,
        **details,
    )


def form_steps(form: Form) -> list[tuple[Equation, Equation]]:
    """The steps of a document: (the equation before, the equation) pairs."""
    by_number = {eq.number: eq for eq in form.equations}
    return [(by_number[a], by_number[b]) for a, b in getattr(form, "steps", ())]


# -- running a sequence of definitions --------------------------------------------------------------
@dataclass
class Outcome:
    values: dict[str, Any] = field(default_factory=dict)  # the latest value of each name
    errors: dict[str, str] = field(default_factory=dict)
    lines: list[Any] = field(default_factory=list)  # the value of each definition, in order
    line_errors: list[str | None] = field(default_factory=list)

    def line(self, eq: Equation) -> Any:
        """The value a form's equation computed (a chain may define dx[i] on several lines)."""
        return self.lines[eq.number - 1]

    def line_error(self, eq: Equation) -> str | None:
        return self.line_errors[eq.number - 1]


def _run(definitions: Iterable[tuple[str, bool, sp.Expr]], base: Env) -> Outcome:
    """Evaluate named definitions in order in a copy of ``base``; failures are recorded."""
    env = base.child()
    out = Outcome()
    for name, elementwise, expr in definitions:
        try:
            value = evaluate(expr, env, N.i if elementwise else None)
        except (BnderiveError, NotRational, ZeroDivisionError) as exc:
            out.errors[name] = str(exc)
            out.lines.append(None)
            out.line_errors.append(str(exc))
            continue
        env.store(name, value, elementwise)
        out.values[name] = value
        out.lines.append(value)
        out.line_errors.append(None)
    return out


def truth_of(order: int, spec: Spec) -> Truth | SecondOrderTruth:
    """The ground truth a form of ``order`` is compared with."""
    return derive(spec) if order == 1 else second_order_truth(spec)


def form_definitions(form: Form) -> list[tuple[str, bool, sp.Expr]]:
    return [(eq.name, eq.elementwise, eq.expr) for eq in form.equations]


def checkable(form: Form, truth: Truth | SecondOrderTruth) -> list[Equation]:
    return [eq for eq in form.equations if eq.name in truth]


# -- exact ------------------------------------------------------------------------------------------
@lru_cache(maxsize=64)
def _exact_instance(spec: Spec, channel: int, order: int = 1) -> tuple[Instance, Outcome]:
    inst = exact_env(spec, channel)
    return inst, _run(truth_of(order, spec).definitions(), inst.env)


def _entries(value: Any, elementwise: bool) -> list[Any]:
    return list(value) if elementwise else [value]


def _entry_label(eq: Equation, spec: Spec, channel: int, position: int) -> str:
    if not eq.elementwise:
        return f"{eq.name} (channel {channel})"
    where = spec.positions(channel)[position]
    if eq.name in LOCAL_DERIVATIVES:
        return f"{eq.name}[{position + 1}] at x[{', '.join(map(str, where))}]"
    return f"{eq.name}[{position + 1}] = ∂L/∂x[{', '.join(map(str, where))}]"


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
            mine = _run(form_definitions(form), inst.env)
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
            out.append(_with_time(v, started[eq.number]))
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


def _with_time(v: Verdict, seconds: float) -> Verdict:
    return Verdict(**{**v.__dict__, "seconds": seconds})


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
    t_entries = _entries(true.values[eq.name], eq.elementwise)
    f_entries = _entries(mine.line(eq), eq.elementwise)
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
        residual = _short(_in_x(test.residual, inst_inputs(spec, channel, form.order)))
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


def _in_x(expr: Any, inputs: dict[str, Any]) -> Any:
    """A residual in the centred coordinates of ``exact_env``, written back in x and μ."""
    if expr is None or "centred" not in inputs:
        return expr
    xs, mean, u = inputs["centred"]
    to_x = {
        sp.Symbol(str(v)): sp.Symbol(str(x)) - sp.Symbol(str(mean))
        for v, x in zip(u, xs[:-1], strict=True)
    }
    return sp.sympify(expr).xreplace(to_x)


def _short(expr: Any, limit: int = 160) -> str | None:
    if expr is None:
        return None
    text = str(expr)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _fmt(value: Any) -> str:
    if isinstance(value, Fraction):
        return (
            str(value.numerator)
            if value.denominator == 1
            else f"{value.numerator}/{value.denominator}"
        )
    return str(value)


def _fmt_list(values: Sequence[Any], limit: int = 12) -> str:
    shown = ", ".join(_fmt(v) for v in values[:limit])
    more = f", … ({len(values)} values)" if len(values) > limit else ""
    return f"[{shown}{more}]"


def describe_point(inst: Instance, order: int = 1) -> dict[str, str]:
    env, spec = inst.env, inst.spec
    out = {
        "x": _fmt_list(list(env.arrays["x"])),
        "g": _fmt_list(list(env.arrays["g"])),
        "γ": _fmt(env.scalars["gamma"]),
        "β": _fmt(env.scalars["beta"]),
    }
    if order == 2:
        out["ggI"] = _fmt_list(list(env.arrays["ggI"]))
        out["ggG"] = _fmt(env.scalars["ggG"])
        out["ggB"] = _fmt(env.scalars["ggB"])
    if not spec.training:
        out["running μ"] = _fmt(env.scalars["mu"])
        out["running σ²"] = _fmt(env.scalars["var"])
    out["ε"] = _fmt(env.scalars["eps"])
    if "r" in inst.inputs:
        out["√(σ²+ε)"] = _fmt(inst.inputs["r"])
    return out


def find_witness(
    form: Form, eq: Equation, spec: Spec, channel: int, attempts: int = 8
) -> Counterexample | None:
    """Small exact inputs where the form's ``eq`` and the truth differ (SymPy numbers, so that
    left-over radicals stay exact; compared at 50 digits only when not equal exactly)."""
    truth = truth_of(form.order, spec)
    for attempt in range(attempts):
        point = random_point(spec, 1000 * attempt + 7, spread=3 + attempt)
        inst = point_env(spec, channel, point, SYMBOLIC)
        true = _run(truth.definitions(), inst.env)
        mine = _run(form_definitions(form), inst.env)
        if eq.name not in true.values or mine.line_error(eq):
            continue
        t_entries = _entries(true.values[eq.name], eq.elementwise)
        f_entries = _entries(mine.line(eq), eq.elementwise)
        for position, (t, f) in enumerate(zip(t_entries, f_entries, strict=True)):
            diff = sp.expand(t - f)
            if diff == 0:
                continue
            if abs(sp.N(diff, 50)) < sp.Float("1e-40", 50):
                continue
            return Counterexample(
                spec,
                channel,
                _entry_label(eq, spec, channel, position),
                describe_point(inst, form.order),
                _fmt(sp.radsimp(t)),
                _fmt(sp.radsimp(f)),
            )
    return None


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
            out.append(_no_local(form, eq, "exact", scope))
        else:
            pairs.append((truth, eq))
    return out + _reference_check(form, pairs, specs, scope)


def local_equations(form: Form) -> list[Equation]:
    return [eq for eq in form.equations if eq.name in LOCAL_DERIVATIVES]


def _no_local(form: Form, eq: Equation, method: str, scope: str) -> Verdict:
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
            mine = _run(form_definitions(form), inst.env)
            for before, eq in steps:
                if eq.number in refuted:
                    continue
                t0 = time.perf_counter()
                reference = _reference(before, mine, inst.env)
                error = reference if isinstance(reference, str) else mine.line_error(eq)
                if error:
                    undecided[eq.number] = f"{spec.describe()}: {error}"
                    continue
                a_entries = reference
                b_entries = _entries(mine.line(eq), eq.elementwise)
                if equivariant(form):
                    a_entries, b_entries = a_entries[:1], b_entries[:1]
                for a, b in zip(a_entries, b_entries, strict=True):
                    test = decide_zero(a - b)
                    if test.outcome is Zero.ZERO:
                        continue
                    if test.outcome is Zero.UNDEFINED:
                        undecided[eq.number] = f"undefined at {spec.describe()} (division by zero)"
                        break
                    cex = _step_witness(form, before, eq, spec, channel)
                    if cex is None and decide_zero(a - b, quick=False).outcome is Zero.ZERO:
                        continue  # the one-point screen saw a value outside the domain
                    residual = _short(_in_x(test.residual, inst.inputs))
                    if cex is None:
                        undecided[eq.number] = (
                            f"normal form of (line before − line) is not zero at "
                            f"{spec.describe()}, but no point was found where they differ"
                        )
                        break
                    refuted[eq.number] = _pair_verdict(
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
            out.append(_with_time(refuted[eq.number], seconds[eq.number]))
        elif eq.number in undecided:
            out.append(
                _pair_verdict(
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
                _pair_verdict(
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


def _reference(before: Any, mine: Outcome, env: Env) -> list[Any] | str:
    """The entries of a reference: the equation before (a step) or an expression at element i
    (a local derivative's truth); an error message if it cannot be evaluated."""
    if isinstance(before, Equation):
        error = mine.line_error(before)
        return error if error else _entries(mine.line(before), before.elementwise)
    outcome = _run([("reference", True, before)], env)
    error = outcome.line_errors[0]
    return error if error else list(outcome.lines[0])


def _pair_verdict(
    form: Form, before: Any, eq: Equation, status: Status, method: str, scope: str, **details: Any
) -> Verdict:
    if isinstance(before, Equation):
        return step_verdict(form, before, eq, status, method, scope, **details)
    return line_verdict(form, eq, status, method, scope, **details)


def _step_witness(
    form: Form, before: Any, eq: Equation, spec: Spec, channel: int, attempts: int = 8
) -> Counterexample | None:
    """Small exact inputs where a step's two sides differ; the counterexample's ``truth`` is the
    value of the line before (or of the local derivative), its ``form`` the value of the line."""
    for attempt in range(attempts):
        point = random_point(spec, 1000 * attempt + 7, spread=3 + attempt)
        inst = point_env(spec, channel, point, SYMBOLIC)
        mine = _run(form_definitions(form), inst.env)
        a_entries = _reference(before, mine, inst.env)
        if isinstance(a_entries, str) or mine.line_error(eq):
            continue
        b_entries = _entries(mine.line(eq), eq.elementwise)
        for position, (a, b) in enumerate(zip(a_entries, b_entries, strict=True)):
            diff = sp.expand(a - b)
            if diff == 0 or abs(sp.N(diff, 50)) < sp.Float("1e-40", 50):
                continue
            return Counterexample(
                spec,
                channel,
                _entry_label(eq, spec, channel, position),
                describe_point(inst, form.order),
                _fmt(sp.radsimp(a)),
                _fmt(sp.radsimp(b)),
            )
    return None


def with_steps(verdicts: list[Verdict], steps: list[Verdict]) -> list[Verdict]:
    """``verdicts`` with each step verdict placed right after its equation's verdict."""
    if not steps:
        return verdicts
    # A stable sort: each line's own verdict first, then its step verdict.
    return sorted([*verdicts, *steps], key=lambda v: (v.equation or 0, v.follows is not None))


# -- randomized exact -------------------------------------------------------------------------------
#: Integer inputs are drawn from [−SPREAD, SPREAD]: the sample set has 2·SPREAD + 1 ≥ 2^21 values.
SPREAD = 2**20


def large_spec(mode: Mode, m: int = 4096) -> Spec:
    """A one-channel spec with M = m: (m, 1) or (n, 1, h, w) with n·h·w = m."""
    if mode is Mode.PER_ACTIVATION:
        return Spec(Mode.PER_ACTIVATION, n=m, c=1)
    side = 1
    while (side * 2) ** 2 * 4 <= m and m % ((side * 2) ** 2) == 0:
        side *= 2
    return Spec(Mode.SPATIAL, n=m // (side * side), c=1, h=side, w=side)


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
        if eq.name in LOCAL_DERIVATIVES:  # local derivatives: the exact and every-M methods
            continue
        common = dict(
            form=form.name,
            quantity=eq.label,
            equation=eq.number,
            method="random",
            scope=scope,
            mode=spec.mode,
            seconds=share,
            source_line=_source_line(form, eq),
        )
        if eq.name not in truth:
            out.append(
                Verdict(
                    status=Status.UNCHECKED,
                    detail=AUXILIARY,
                    **common,
                )
            )
        elif eq.number in differs:
            found = rational.get(eq.number)
            if found is not None and found.status is Status.REFUTED:
                out.append(_with_time(found, share))
            else:
                out.append(
                    Verdict(
                        status=Status.REFUTED,
                        trials=trials,
                        detail=f"differs from the truth modulo p = 2³¹−1 at a random "
                        f"point (draw {differs[eq.number]}); a nonzero value mod p "
                        "proves the difference is not identically zero",
                        **common,
                    )
                )
        elif agreed.get(eq.number, 0) < trials:
            out.append(
                Verdict(
                    status=Status.UNDECIDED,
                    trials=agreed.get(eq.number, 0),
                    detail="too few random points could be evaluated",
                    **common,
                )
            )
        elif degrees.get(eq.number) is None:
            out.append(
                Verdict(
                    status=Status.UNDECIDED,
                    trials=trials,
                    detail="equal at every random point, but no degree bound is known "
                    "for this expression, so agreement proves nothing; use the exact method",
                    **common,
                )
            )
        else:
            d = degrees[eq.number]
            bound = float(Fraction(d, P) ** trials) if d < P else 1.0
            out.append(
                Verdict(
                    status=Status.HOLDS,
                    trials=trials,
                    bound=bound,
                    detail=(
                        f"equal at {trials} random points of F_p, p = 2³¹−1; a nonzero difference "
                        f"of degree ≤ {d} vanishes at one with probability ≤ {d}/p "
                        f"(Schwartz–Zippel), so a false 'holds' has probability ≤ {bound:.1e}"
                    ),
                    **common,
                )
            )
    return out


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
        mine = _run(form_definitions(form), inst.env)
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
    return inst, _run(truth_of(order, spec).definitions(), inst.env)


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
        mine = _run(form_definitions(form), inst.env)
        share = (time.perf_counter() - t0) / max(1, len(form.equations))
        trial += 1
        for eq in checkable(form, truth):
            seconds[eq.number] += share
            if eq.number in results:
                continue
            if mine.line_error(eq) or eq.name in true.errors:
                notes[eq.number] = mine.line_error(eq) or true.errors.get(eq.name, "")
                continue
            t_entries = _entries(true.values[eq.name], eq.elementwise)
            f_entries = _entries(mine.line(eq), eq.elementwise)
            for position, (t, f) in enumerate(zip(t_entries, f_entries, strict=True)):
                if t != f:
                    inputs = describe_point(inst, form.order)
                    inputs["seed"] = str(seed * 7919 + draws)
                    cex = Counterexample(
                        spec, 0, _entry_label(eq, spec, 0, position), inputs, _fmt(t), _fmt(f)
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
        if eq.name not in truth:
            out.append(
                line_verdict(
                    form,
                    eq,
                    Status.UNCHECKED,
                    "random",
                    scope,
                    detail=AUXILIARY,
                    mode=spec.mode,
                )
            )
        elif eq.number in results:
            out.append(_with_time(results[eq.number], seconds[eq.number]))
        elif agreed[eq.number] < trials:
            out.append(
                line_verdict(
                    form,
                    eq,
                    Status.UNDECIDED,
                    "random",
                    scope,
                    detail=notes.get(eq.number, "too few points could be evaluated"),
                    seconds=seconds[eq.number],
                    trials=agreed[eq.number],
                    mode=spec.mode,
                )
            )
        elif degrees.get(eq.number) is None:
            out.append(
                line_verdict(
                    form,
                    eq,
                    Status.UNDECIDED,
                    "random",
                    scope,
                    detail="equal at every random point, but no degree bound is known "
                    "for this expression, so agreement proves nothing; use the exact method",
                    seconds=seconds[eq.number],
                    trials=trials,
                    mode=spec.mode,
                )
            )
        else:
            d = degrees[eq.number]
            bound = float(Fraction(d, sample) ** trials) if d < sample else 1.0
            out.append(
                line_verdict(
                    form,
                    eq,
                    Status.HOLDS,
                    "random",
                    scope,
                    detail=(
                        f"equal at {trials} random points; a nonzero difference of degree ≤ {d} "
                        f"vanishes at one with probability ≤ {d}/{sample} (Schwartz–Zippel), "
                        f"so a false 'holds' has probability ≤ {bound:.1e}"
                    ),
                    seconds=seconds[eq.number],
                    trials=trials,
                    bound=bound,
                    mode=spec.mode,
                )
            )
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
    return inst, _run(truth_of(order, spec).definitions(), inst.env)


def _degrees(form: Form, truth: Truth | SecondOrderTruth) -> dict[int, int | None]:
    """Degree bound of the numerator of (truth − form) for every checkable equation."""
    definitions: dict[str, tuple[bool, sp.Expr]] = {}
    for stage in truth.graph.stages:
        if stage.elementwise:
            definitions[stage.name] = (True, stage.at(N.i))
    out: dict[int, int | None] = {}
    form_defs = dict(definitions)
    for eq in form.equations:
        form_defs[eq.name] = (eq.elementwise, eq.expr)
        if eq.name in truth:
            try:
                mine = degree_bound(inline(eq.expr, form_defs))
                true = degree_bound(truth.inline(eq.name))
            except ValueError:
                out[eq.number] = None
                continue
            out[eq.number] = max(true[0] + mine[1], mine[0] + true[1])
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


def parse_sizes(text: str) -> list[int]:
    """'1-6' → [1..6]; '4,8,16' → [4, 8, 16]; '64' → [64]."""
    out: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(v) for v in part.split("-", 1))
                out.extend(range(lo, hi + 1))
            elif part:
                out.append(int(part))
        except ValueError:
            raise SpecError(
                f"Cannot read the sizes {text!r}: write a range like 1-6 or a list like 4,8,16."
            ) from None
    if not out:
        raise SpecError(f"No sizes in {text!r}: write a range like 1-6 or a list like 4,8,16.")
    return out


def parse_shape(text: str) -> Spec:
    """'8,3' → PER_ACTIVATION (N, D); '2,2,2,3' → SPATIAL (N, C, H, W)."""
    try:
        dims = [int(v) for v in str(text).replace("x", ",").replace("×", ",").split(",")]
    except ValueError:
        raise SpecError(
            f"Cannot read the shape {text!r}: write N,D or N,C,H,W, e.g. 2,2,2,3."
        ) from None
    if len(dims) == 2:
        return Spec(Mode.PER_ACTIVATION, n=dims[0], c=dims[1])
    if len(dims) == 4:
        return Spec(Mode.SPATIAL, n=dims[0], c=dims[1], h=dims[2], w=dims[3])
    raise SpecError(
        f"The shape {text!r} has {len(dims)} dimensions: give N,D (PER_ACTIVATION) or N,C,H,W (SPATIAL)."
    )


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


def check_form(
    form: Form,
    modes: Sequence[Mode] = (Mode.PER_ACTIVATION, Mode.SPATIAL),
    methods: Sequence[str] = ("general", "exact", "random"),
    n_values: Sequence[int] | None = None,
    m_random: int = 4096,
    trials: int = 3,
    shapes: Sequence[Spec] = (),
    jobs: int = 1,
) -> list[Verdict]:
    """Every verdict for one form: the every-M proof, then each mode × method."""
    from .plan import Plan

    plan = Plan(
        (form,),
        tuple(modes),
        tuple(m for m in ("general", "exact", "random") if m in methods),
        tuple(n_values) if n_values is not None else None,
        tuple(shapes),
        m_random,
        trials,
    )
    return plan.run(jobs)


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


def overall(verdicts: Iterable[Verdict]) -> Status:
    statuses = {v.status for v in verdicts}
    if Status.REFUTED in statuses:
        return Status.REFUTED
    if Status.UNDECIDED in statuses or Status.HOLDS not in statuses:
        # Nothing checked (no verdicts, or only auxiliary lines: a misspelt 'dX[i]' is one)
        # is not "everything checked holds".
        return Status.UNDECIDED
    return Status.HOLDS


def exit_code(verdicts: Iterable[Verdict]) -> int:
    """DESIGN.md §6: 0 holds, 1 refuted, 3 undecided."""
    return {Status.HOLDS: 0, Status.REFUTED: 1, Status.UNDECIDED: 3}[overall(verdicts)]


__all__ = [
    "Counterexample",
    "Status",
    "Verdict",
    "check_form",
    "exact_check",
    "exit_code",
    "find_witness",
    "large_spec",
    "overall",
    "random_check",
]

_ = np  # numpy arrays flow through the evaluator
