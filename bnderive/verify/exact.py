"""The exact method: every entry of (truth − form) decided at explicit sizes (DESIGN.md §4).

For explicit sizes, every entry of (truth − form) after the radical elimination is decided by
``zero_test.decide_zero``.  "holds" is a proof for those sizes.  A nonzero normal form is
reported "refuted" only with a witness (``witness``); without one the line is "undecided".
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import sympy as sp

from bnderive.core.points import Instance, exact_env
from bnderive.core.spec import Mode, Norm, Spec
from bnderive.errors import SpecError
from bnderive.read.forms import Equation, Form
from bnderive.verify.lines import (
    Outcome,
    checkable,
    entries,
    form_definitions,
    form_references,
    form_steps,
    paired,
    reference_entries,
    run_lines,
    truth_of,
)
from bnderive.verify.readings import combined
from bnderive.verify.verdict import (
    AUXILIARY,
    Counterexample,
    Status,
    Verdict,
    line_verdict,
    pair_verdict,
    with_steps,
    with_time,
)
from bnderive.verify.witness import find_witness, in_x, short
from bnderive.verify.zero_test import Zero, decide_zero


# -- exact ------------------------------------------------------------------------------------------
@lru_cache(maxsize=64)
def _exact_instance(spec: Spec, channel: int, order: int = 1) -> tuple[Instance, Outcome]:
    inst = exact_env(spec, channel)
    return inst, run_lines(truth_of(order, spec).definitions(), inst.env)


def exact_check(form: Form, specs: Sequence[Spec], scope: str = "") -> list[Verdict]:
    """Decide every checkable equation of ``form`` exactly at each of ``specs``: each entry of
    (truth − line) is identically zero (holds), or nonzero with a witness (refuted), or neither
    (undecided, with the reason).  Auxiliary lines are "not checked"; a document's lines that
    are checked against a reference are ``exact_reference_check``'s."""
    specs = _ordered(form, specs)
    truth = truth_of(form.order, specs[0])
    checked = [_Pair(eq, None) for eq in checkable(form, truth)]
    decided = {v.equation: v for v in _decide(form, checked, specs, scope)}
    out = []
    for eq in form.equations:
        if eq.kind != "quantity":  # references, definitions, lines checked against a reference
            continue
        if eq.number in decided:
            out.append(decided[eq.number])
        else:
            out.append(
                line_verdict(
                    form, eq, Status.UNCHECKED, "exact", _scope(specs, scope),
                    detail=AUXILIARY, mode=_mode(specs),
                )
            )  # fmt: skip
    return out


@lru_cache(maxsize=256)
def equivariant(form: Form) -> bool:
    """True if no line of the form names an element by number (x[1]).  (Memoized: asked for
    every line at every size and channel.)

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


# -- steps: a continuation against the line before ---------------------------------------------------
def exact_step_check(form: Form, specs: Sequence[Spec], scope: str = "") -> list[Verdict]:
    """Each step of a document decided exactly at each of ``specs``: is the continuation equal,
    as a function of the inputs, to the expression before it?  A faithful step from a wrong line
    holds here while both lines are refuted against the truth: that is where the mistake is not."""
    steps = [_Pair(eq, before) for before, eq in form_steps(form)]
    return _decide(form, steps, _ordered(form, specs), scope) if steps and specs else []


def exact_reference_check(form: Form, specs: Sequence[Spec], scope: str = "") -> list[Verdict]:
    """Each line of a document that is compared with a reference rather than a truth by name
    (μ of the forward graph, the true local derivative, the left side of an identity, a name's
    definition) decided exactly at each of ``specs``."""
    pairs = [_Pair(eq, ref, step=False) for ref, eq in form_references(form)]
    return _decide(form, pairs, _ordered(form, specs), scope) if pairs and specs else []


# -- the decision, shared by lines, steps and local derivatives ---------------------------------------
@dataclass(frozen=True)
class _Pair:
    """One comparison: ``eq`` against its reference, which is the truth of the quantity it defines
    (``before`` None), the line before it (a step), or a local derivative's truth at element i."""

    eq: Equation
    before: Equation | sp.Expr | None
    step: bool = True  # an Equation before: the line before (a step), or the line's reference

    @property
    def kind(self) -> str:
        if self.before is None:
            return "truth"
        if isinstance(self.before, Equation):
            return "step" if self.step else "reference"
        return "local"

    @property
    def prior(self) -> Equation | sp.Expr | None:
        """What ``pair_verdict`` is told the line is compared with: only a step's verdict says
        which line it follows (a reference's verdict is the line's own)."""
        return self.before if self.kind == "step" else None

    def words(self) -> tuple[str, str, str]:
        """(what the reference is called in a residual, the refutation's detail, what holding means)."""
        if self.kind == "reference":
            text = self.before.text if isinstance(self.before, Equation) else ""
            return (f"({text} − line)", f"differs from {text} at", f"identically equal to {text}")
        return {
            "truth": ("truth − form", "differs at", "identically equal to the truth"),
            "step": (
                "(line before − line)",
                "does not follow from the line before: differs at",
                "follows from the line before (identically equal to it)",
            ),
            "local": (
                "(local derivative − line)",
                "differs from the local derivative at",
                "identically equal to the local derivative of the graph stage",
            ),
        }[self.kind]


def _ordered(form: Form, specs: Sequence[Spec]) -> list[Spec]:
    """The form's specs, M ≥ 3 first: at M ≤ 2 x̂ = ±1 and counterexamples are degenerate
    (DESIGN.md §1)."""
    return sorted((form.spec(s) for s in specs), key=lambda s: (s.m < 3, s.m))


def _scope(specs: Sequence[Spec], scope: str) -> str:
    return scope or ", ".join(s.describe() for s in specs)


def _mode(specs: Sequence[Spec]) -> Mode | None:
    return specs[0].mode if len({s.mode for s in specs}) == 1 else None


def _decide(form: Form, pairs: Sequence[_Pair], specs: Sequence[Spec], scope: str) -> list[Verdict]:
    """Every pair decided at every spec and channel; one verdict per pair.

    A pair is refuted at the first entry with a witness (and not looked at again); it is
    undecided when any spec leaves it open (a value that cannot be evaluated, a division by
    zero, a nonzero normal form without a witness); it holds only when every entry at every spec
    is identically zero."""
    scope, mode = _scope(specs, scope), _mode(specs)
    refuted: dict[int, Verdict] = {}
    undecided: dict[int, str] = {}
    seconds = {p.eq.number: 0.0 for p in pairs}
    for spec in specs:
        for channel in range(spec.sets):
            t0 = time.perf_counter()
            inst, true = _exact_instance(spec, channel, form.order)
            mine = run_lines(form_definitions(form), inst.env)
            shared = (time.perf_counter() - t0) / max(1, len(pairs))
            for pair in pairs:
                number = pair.eq.number
                if number in refuted:  # already refuted at a smaller size
                    continue
                t1 = time.perf_counter()
                found = _decide_pair(form, pair, spec, channel, inst, true, mine)
                seconds[number] += time.perf_counter() - t1 + shared
                if isinstance(found, str):
                    # the reason at the first size left open (the smallest M ≥ 3), not the last
                    undecided.setdefault(number, found)
                elif found is not None:
                    cex, residual = found
                    refuted[number] = pair_verdict(
                        form, pair.prior, pair.eq, Status.REFUTED, "exact", scope,
                        detail=f"{pair.words()[1]} {spec.describe()}",
                        counterexample=cex, residual=residual, mode=mode,
                    )  # fmt: skip
    out = []
    for pair in pairs:
        number = pair.eq.number
        if number in refuted:
            out.append(with_time(refuted[number], seconds[number]))
            continue
        if number in undecided:
            status, detail = Status.UNDECIDED, undecided[number]
        else:
            status, detail = Status.HOLDS, pair.words()[2]
            if pair.kind == "truth":
                detail += " (radical eliminated, expanded" + (
                    "; entry 1 decided, the rest by permutation symmetry)"
                    if equivariant(form)
                    else ", every entry)"
                )
        out.append(
            pair_verdict(
                form, pair.prior, pair.eq, status, "exact", scope,
                detail=detail, seconds=seconds[number], mode=mode,
            )
        )  # fmt: skip
    return out


def _decide_pair(
    form: Form,
    pair: _Pair,
    spec: Spec,
    channel: int,
    inst: Instance,
    true: Outcome,
    mine: Outcome,
) -> tuple[Counterexample, str | None] | str | None:
    """None if every entry of (reference − line) is identically zero at this spec and channel;
    (counterexample, residual) if one is not and a witness shows it; else why it is undecided."""
    eq = pair.eq
    if pair.before is None:
        if mine.line_error(eq):
            return f"{spec.describe()}: {mine.line_error(eq)}"
        if eq.name in true.errors:
            return f"the truth is undefined at {spec.describe()}: {true.errors[eq.name]}"
        reference = entries(true.values[eq.name], eq.elementwise)
    else:
        found = reference_entries(pair.before, mine, inst.env)
        error = found if isinstance(found, str) else mine.line_error(eq)
        if error:
            return f"{spec.describe()}: {error}"
        reference = found
    values = entries(mine.line(eq), eq.elementwise)
    both = paired(reference, values)
    if equivariant(form):
        both = both[:1]
    for a, b in both:
        test = decide_zero(a - b)
        if test.outcome is Zero.ZERO:
            continue
        if test.outcome is Zero.UNDEFINED:
            return f"undefined at {spec.describe()} (division by zero)"
        cex = find_witness(form, eq, spec, channel, pair.before)
        if cex is None and test.screened and decide_zero(a - b, quick=False).outcome is Zero.ZERO:
            continue  # the one-point screen saw a value outside the inputs' domain
        residual = short(in_x(test.residual, inst.inputs))
        if cex is None:
            return (
                f"normal form of {pair.words()[0]} is not zero at {spec.describe()}, "
                f"but no point was found where they differ; residual {residual}"
            )
        return cex, residual
    return None


# -- the default plan -------------------------------------------------------------------------------
def default_exact_specs(
    mode: Mode, n_values: Sequence[int] = range(1, 7), norm: Norm = Norm.BATCH, groups: int = 1
) -> list[Spec]:
    """BatchNorm: N = 1..6 with one feature and (3, 2); (2,1,2,2) and (2,2,2,3).  The relatives,
    whose sets are samples: one sample with M = 1..6 and two samples (two reduction sets at
    once); see ``family_specs``."""
    if norm is not Norm.BATCH:
        return family_specs(mode, norm, groups, n_values)
    if mode is Mode.PER_ACTIVATION:
        return [Spec(Mode.PER_ACTIVATION, n=n, c=1) for n in n_values] + [
            Spec(Mode.PER_ACTIVATION, n=3, c=2)
        ]
    return [Spec(Mode.SPATIAL, n=2, c=1, h=2, w=2), Spec(Mode.SPATIAL, n=2, c=2, h=2, w=3)]


def family_specs(
    mode: Mode, norm: Norm, groups: int = 1, sizes: Sequence[int] | None = None
) -> list[Spec]:
    """The exact method's sizes for LayerNorm, InstanceNorm, GroupNorm and RMSNorm.

    ``sizes`` are sizes M of one reduction set (default 1..6 for (N, D) input); each is checked
    on one sample, and one more shape has several sets (with γ per element, every set reads
    its own γ_k, so the sets differ).  For (N, C, H, W) input: LayerNorm and RMSNorm
    (1, 1, 2, 2) and (2, 2, 1, 3) over (C, H, W); InstanceNorm (1, 1, 2, 2) and (2, 2, 1, 3);
    GroupNorm (1, G, 2, 2)·… with M = C/G·H·W = 4 and (2, 2G, 1, 3)."""
    layer = norm in (Norm.LAYER, Norm.RMS)
    if mode is Mode.PER_ACTIVATION:
        if not layer:
            raise SpecError(f"{norm.title} takes (N, C, H, W) input: use --mode spatial.")
        ms = list(sizes) if sizes is not None else list(range(1, 7))
        out = [Spec(Mode.PER_ACTIVATION, n=1, c=m, norm=norm) for m in ms]
        return out + ([Spec(Mode.PER_ACTIVATION, n=2, c=3, norm=norm)] if sizes is None else [])
    g = groups if norm is Norm.GROUP else 1
    extra = {"groups": g} if norm is Norm.GROUP else {}
    if sizes is not None:  # one sample, M = 1·1·m (per group: C/G = 1)
        return [Spec(Mode.SPATIAL, n=1, c=g, h=1, w=m, norm=norm, **extra) for m in sizes]
    return [
        Spec(Mode.SPATIAL, n=1, c=g, h=2, w=2, norm=norm, **extra),
        Spec(Mode.SPATIAL, n=2, c=2 * g, h=1, w=3, norm=norm, **extra),
    ]


def valid_specs(form: Form, specs: Sequence[Spec]) -> list[Spec]:
    """The specs that make sense for the form's conventions: Bessel's 1/(M−1) needs M ≥ 2, and
    with ε outside the root the truth is undefined at M = 1 (√σ² is not differentiable at
    σ² = 0), so that size is left out rather than reported undecided."""
    out = []
    for s in specs:
        if form.training and s.m < 2 and (form.unbiased or not form.eps_inside or form.eps_zero):
            continue
        out.append(s)
    return out


def exact_plan(
    mode: Mode,
    n_values: Sequence[int] | None = None,
    shapes: Sequence[Spec] = (),
    norm: Norm = Norm.BATCH,
    groups: int = 1,
) -> list[Spec]:
    """The explicit sizes the exact method checks in ``mode``: the given shapes of that mode if
    any; else for given N, (N, 1) or (N, 1, 2, 2); else the defaults: N = 1..6 with one feature
    and (3, 2) for PER_ACTIVATION, (2,1,2,2) and (2,2,2,3) for SPATIAL.  For the relatives
    ``n_values`` are sizes M of one reduction set (``family_specs``)."""
    own = [s for s in shapes if s.mode is mode]
    if own:
        return own
    if shapes:
        return []
    if norm is not Norm.BATCH:
        return family_specs(mode, norm, groups, n_values)
    if n_values is None:
        return default_exact_specs(mode)
    if mode is Mode.PER_ACTIVATION:
        return [Spec(Mode.PER_ACTIVATION, n=n, c=1) for n in n_values]
    return [Spec(Mode.SPATIAL, n=n, c=1, h=2, w=2) for n in n_values]


@combined
def check_exact_mode(
    form: Form,
    mode: Mode,
    n_values: Sequence[int] | None = None,
    shapes: Sequence[Spec] = (),
    groups: int = 1,
) -> list[Verdict]:
    planned = exact_plan(mode, n_values, shapes, form.norm, groups)
    specs = valid_specs(form, planned)
    if not specs:
        if not planned:
            return []
        # every size asked for is M = 1, where these conventions are undefined: say so on
        # every line, rather than leave the lines out of the verdict
        why = (
            "Bessel's variance divides by M − 1 = 0"
            if form.unbiased
            else "with ε outside the root the truth is undefined (√σ² at σ² = 0)"
            if not form.eps_inside
            else "with ε = 0 the truth is undefined (σ² = 0)"
        )
        detail = (
            f"not checked: every size asked for has M = 1, where {why}; give sizes with "
            "M ≥ 2 (e.g. --n 2-6)"
        )
        return [
            Verdict(form.name, eq.label, eq.number, Status.UNDECIDED, "exact", "M = 1 exact",
                    detail, mode=mode)
            for eq in form.equations
        ]  # fmt: skip
    specs = [form.spec(s) for s in specs]  # the form's family and sizes (M as it checks them)
    ms = sorted({s.m for s in specs})
    scope = f"M ≤ {ms[-1]} exact" if len(ms) > 1 else f"M = {ms[0]} exact"
    return with_steps(
        exact_check(form, specs, scope) + exact_reference_check(form, specs, scope),
        exact_step_check(form, specs, scope),
    )
