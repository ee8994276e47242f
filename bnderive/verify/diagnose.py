"""Name the mistake: compare a wrong result with every mutant of the corpus.

A refuted line is evaluated at a few adversarial points (integer x with σ² far from 1, uneven
upstream gradients, γ ∉ {0, ±1}) and so is every *candidate*: each mutant of the corpus with the
line's conventions, and the truth under each other convention (eval for training, unbiased for
biased variance, ε outside for inside).  A candidate whose value equals the line's value at
every point names the mistake.  The values are exact rationals where they can be (√(σ²+ε) and
its square root are made rational by the choice of ε); where a candidate has no rational value
(√σ² with ε outside, an unbiased σ²) both sides are compared in float64 to a relative 1e-9, and
the diagnosis says so.  A diagnosis is a label on a verdict that was decided before; it never
decides one.

``localise`` is the other half: when no mutant matches, the difference between a dx and the
truth is split along the three terms of the staged chain, dx̂_i/√(σ²+ε) (∝ dy_i), the path
through σ² (∝ x_i − μ) and the path through μ (the same for every i), to say which stage is off.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

import numpy as np

from bnderive.core.derive import derive
from bnderive.core.double_backward import second_order_truth
from bnderive.core.evaluate import FLOAT, RATIONAL, Backend, Env
from bnderive.core.layer import set_point
from bnderive.core.points import affine_arrays, point_env, random_point
from bnderive.core.spec import Mode, Norm, Spec
from bnderive.read.corpus import Mistake, corpus
from bnderive.read.forms import Equation, Form
from bnderive.verify.lines import Outcome, form_definitions, run_lines

#: Relative tolerance of a float64 comparison (a label, not a verdict).
FLOAT_TOL = 1e-9


@dataclass(frozen=True)
class Match:
    """A known mistake whose result equals the user's at every point tried."""

    mistake: Mistake
    exact: bool  # compared in exact rationals at every point (else float64 somewhere)
    by: tuple[str, ...]  # the candidates that matched (mutant ids, or "truth: …")
    exact_at: int = 0  # at how many of the ``points`` the comparison was exact
    points: int = 0

    def lines(self, quantity: str) -> list[str]:
        """What to tell the user: the mistake, how the match was found, what is wrong and right."""
        how = "exactly" if self.exact else "in floating point"
        if not self.exact and self.exact_at:
            how = (
                f"exactly at {self.exact_at} of {self.points} points, in floating point (within "
                "rounding) at the others"
            )
        mutant = corpus().find(self.by[0])  # None for the truth under another convention
        wrong = getattr(mutant, "explanation", None) or self.mistake.explanation
        return [
            f"known mistake: {self.mistake.title} ({self.mistake.name}); your {quantity} "
            f"equals the result with it, {how} (as {self.by[0]})",
            f"  what is wrong: {wrong}",
            f"  what is right: {self.mistake.fix}",
        ]

    def sources(self) -> list[str]:
        """Where the mistake was seen: the matching mutants' sources, else the mistake's."""
        found = [s for label in self.by for s in getattr(corpus().find(label), "sources", ())]
        return list(dict.fromkeys(found or self.mistake.sources))

    def to_dict(self) -> dict[str, Any]:
        return {
            "mistake": self.mistake.name,
            "title": self.mistake.title,
            "exact": self.exact,
            "matched": list(self.by),
            "fix": self.mistake.fix,
        }


# -- the points --------------------------------------------------------------------------------------
def diagnosis_specs(mode: Mode, form: Form) -> list[Spec]:
    """Two reduction sets of different size; the form's conventions and family.  A BatchNorm
    set runs over the batch (n), one of LayerNorm's, RMSNorm's, InstanceNorm's or GroupNorm's
    over one sample's features or positions (n = 1)."""
    if form.norm is Norm.BATCH:
        if mode is Mode.PER_ACTIVATION:
            bases = [Spec(mode, n=5), Spec(mode, n=4)]
        else:
            bases = [Spec(mode, n=2, c=1, h=1, w=3), Spec(mode, n=3, c=1, h=1, w=2)]
    elif mode is Mode.PER_ACTIVATION:
        bases = [Spec(mode, n=1, c=5, norm=form.norm), Spec(mode, n=1, c=4, norm=form.norm)]
    else:
        bases = [
            Spec(mode, n=1, c=1, h=2, w=3, norm=form.norm),
            Spec(mode, n=1, c=1, h=2, w=2, norm=form.norm),
        ]
    return [form.spec(b) for b in bases]


def diagnosis_point(spec: Spec, seed: int) -> dict[str, Any]:
    """``random_point`` with ε given explicitly and √(σ²+ε) a perfect square, so that both
    √(σ²+ε) and its square root (a σ written for σ²) are rational."""
    point = random_point(spec, seed, spread=9)
    if "r" in point:
        s = math.isqrt(int(point.pop("r")) - 1) + 1  # s² ≥ r > √σ²
        point["eps"] = Fraction(s**4) - _with_statistics(point, spec)["var"]
    return point


def _with_statistics(point: dict[str, Any], spec: Spec) -> dict[str, Any]:
    """The point's statistics: its running ones (eval mode), else the batch's (RMSNorm's mean
    square stands for σ², as in the forward graph)."""
    if "mu" in point:
        return point
    x, m = point["x"], len(point["x"])
    if not spec.norm.centred:
        return {**point, "var": sum(Fraction(v) ** 2 for v in x) / m}
    divisor = m - 1 if spec.unbiased else m
    mean = Fraction(sum(x), m)
    return {**point, "mu": mean, "var": sum((Fraction(v) - mean) ** 2 for v in x) / divisor}


# -- evaluation --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Value:
    """One quantity at one point: exact rationals when ``exact``, else float64."""

    data: Any  # a scalar, or an array over the reduction set
    exact: bool
    tol: float = 0.0  # a relative tolerance of its own (code that rounds in float32), if larger

    def floats(self) -> np.ndarray:
        return np.asarray(self.data, dtype=float).reshape(-1)


def same(a: Value, b: Value) -> tuple[bool, bool]:
    """(equal, exactly): exact equality when both are exact, else float64 to ``FLOAT_TOL`` (or
    the larger tolerance a value carries)."""
    if a.exact and b.exact:
        left = np.asarray(a.data, dtype=object).reshape(-1)
        right = np.asarray(b.data, dtype=object).reshape(-1)
        return (left.shape == right.shape and bool(np.all(left == right))), True
    fa, fb = a.floats(), b.floats()
    if fa.shape != fb.shape or not (np.all(np.isfinite(fa)) and np.all(np.isfinite(fb))):
        return False, False
    scale = max(1.0, float(np.max(np.abs(fb))))
    tol = max(FLOAT_TOL, a.tol, b.tol)
    return bool(np.max(np.abs(fa - fb)) <= tol * scale), False


def _frozen(value: Any) -> Any:
    """A point's value as a hashable key (lists and arrays become tuples)."""
    if isinstance(value, list | tuple | np.ndarray):
        return tuple(_frozen(v) for v in value)
    return value


#: The forward pass at a point (the Env after μ, σ², x̂, y) and each definition list's outcome
#: there.  Every candidate mistake of a diagnosis is evaluated at the same few points, and
#: check-impl's cases are the same for every file, so most evaluations are repeats.  Cleared
#: when full; a key holds the definitions themselves (SymPy expressions compare by value), the
#: spec, the backend and every input of the point, so a hit is the same computation.
_FORWARDS: dict[Any, Env] = {}
_OUTCOMES: dict[Any, Outcome] = {}
CACHE_LIMIT = 20_000


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> Any:
    if len(cache) >= CACHE_LIMIT:
        cache.clear()
    cache[key] = value
    return value


def _forward_env(spec: Spec, point: dict[str, Any], backend: Backend, key: Any) -> Env:
    """A fresh environment holding the forward pass at ``point``: its own dicts and a copy of
    the forward's memo, so that nothing one run of definitions stores reaches another."""
    base = _FORWARDS.get(key)
    if base is None:
        base = _remember(_FORWARDS, key, point_env(spec, 0, point, backend).env)
    return Env(base.m, base.backend, dict(base.arrays), dict(base.scalars), dict(base.memo))


def _outcome(definitions: list, spec: Spec, point: dict[str, Any], backend: Backend) -> Outcome:
    point = _with_statistics(point, spec) if not spec.training else point
    where = (spec, backend.name, tuple(sorted((k, _frozen(v)) for k, v in point.items())))
    key = (tuple(definitions), where)
    found = _OUTCOMES.get(key)
    if found is None:
        found = _remember(
            _OUTCOMES, key, run_lines(definitions, _forward_env(spec, point, backend, where))
        )
    return found


def value_of(
    definitions: list, spec: Spec, point: dict[str, Any], pick: Callable[[Outcome], Any]
) -> Value | None:
    """``pick(outcome)`` exactly, else in float64; None when it is undefined at the point."""
    for backend, exact in ((RATIONAL, True), (FLOAT, False)):
        try:
            value = pick(_outcome(definitions, spec, point, backend))
        except (ZeroDivisionError, ArithmeticError):
            value = None
        if value is not None:
            return Value(value, exact)
    return None


def _latest(name: str) -> Callable[[Outcome], Any]:
    return lambda outcome: outcome.values.get(name) if name not in outcome.errors else None


def _line(number: int) -> Callable[[Outcome], Any]:
    return lambda outcome: outcome.lines[number - 1]


# -- candidates --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    label: str
    mistake: Mistake
    definitions: list
    spec_of: Callable[[Spec], Spec]  # the candidate's conventions at a user's spec
    pick: Callable[[Outcome], Any]


_SWAPS: tuple[tuple[str, str, str], ...] = (
    # (convention, the mistake when the user's layer has it true, … when false)
    ("training", "eval-in-training", "training-in-eval"),
    ("unbiased", "biased-for-unbiased", "unbiased-for-biased"),
    ("eps_inside", "eps-outside", "eps-inside-for-outside"),
)


def candidates(quantity: str, order: int, layer: Spec) -> list[Candidate]:
    """Every known mistake that yields a value for ``quantity`` for a layer with ``layer``'s
    conventions (training or eval, biased or unbiased variance, ε inside or outside)."""
    book = corpus()
    conventions = (order, layer.unbiased, layer.eps_inside, layer.training, layer.norm.per_set)
    found: list[Candidate] = []
    for mutant in book.mutants:
        m = mutant.form
        if (
            m.order,
            m.unbiased,
            m.eps_inside,
            m.training,
            m.norm.per_set,
        ) != conventions or quantity not in {eq.name for eq in m.equations}:
            continue
        if m.norm.value != m.norm.per_set and m.norm is not layer.norm:
            continue  # a GroupNorm or InstanceNorm form's mutant names its own family's lines
        line = mutant.edited_line(quantity)
        found.append(
            Candidate(
                mutant.id,
                mutant.mistake,
                form_definitions(m),
                lambda s: s,
                _line(line) if line is not None else _latest(quantity),
            )
        )
    if order == 1 and quantity in ("dx", "dgamma", "dbeta", "dxhat", "dvar", "dmu"):
        for field_name, when_true, when_false in _SWAPS:
            if layer.norm is not Norm.BATCH and field_name != "eps_inside":
                continue  # the other families have no eval mode; RMSNorm no variance
            held = getattr(layer, field_name)
            mistake = book.mistake(when_true if held else when_false)

            def other(s: Spec, name: str = field_name, held: bool = held) -> Spec:
                return replace(s, **{name: not held})

            one_set = {"groups": 1} if layer.norm is Norm.GROUP else {}  # one channel: G = 1
            probe = other(replace(layer, n=2, c=1, h=1, w=1, **one_set))
            found.append(
                Candidate(
                    f"the truth for {probe.describe().split('(')[-1].split(';', 1)[1].strip(' )')}",
                    mistake,
                    derive(probe).definitions(),
                    other,
                    _latest(quantity),
                )
            )
    return found


def code_candidates(quantity: str, layer: Spec) -> list[Candidate]:
    """The mistakes only code makes, for check-impl: a BatchNorm training layer with the biased
    variance whose x̂ and √(σ²+ε) come from the unbiased variance (a forward that divides by
    M − 1, np.var(x, ddof=1)) while the backward formula keeps the layer's 1/M, that is
    BatchNorm's own backward evaluated at the unbiased statistics.  dx only: dγ = Σ dy·x̂ has no
    1/M, so a dγ from that x̂ is also the unbiased layer's own (``unbiased-for-biased``)."""
    if quantity != "dx" or layer.norm is not Norm.BATCH or not layer.training or layer.unbiased:
        return []
    probe = replace(layer, n=2, c=1, h=1, w=1)
    return [
        Candidate(
            "BatchNorm's backward at the unbiased statistics",
            corpus().mistake("unbiased-statistics"),
            derive(probe).definitions(),
            lambda s: replace(s, unbiased=True),
            _latest(quantity),
        )
    ]


# -- diagnosis -------------------------------------------------------------------------------------
def diagnose_line(
    form: Form, eq: Equation, mode: Mode, seeds: Sequence[int] = (11, 12)
) -> list[Match]:
    """The known mistakes whose value of ``eq``'s quantity equals the line's at every point.
    A form of another family is compared with the mutants of its per-set mathematics (a
    GroupNorm form with LayerNorm's, an InstanceNorm form with BatchNorm's)."""
    truth_defs = derive if form.order == 1 else second_order_truth
    specs = diagnosis_specs(mode, form)
    points = [(s, diagnosis_point(s, seed)) for s in specs for seed in seeds[:1]] + [
        (specs[0], diagnosis_point(specs[0], seeds[-1]))
    ]
    mine: list[Value] = []
    differs = False
    for spec, point in points:
        value = value_of(form_definitions(form), spec, point, _line(eq.number))
        truth = value_of(truth_defs(spec).definitions(), spec, point, _latest(eq.name))
        if value is None or truth is None:
            return []
        differs = differs or not same(value, truth)[0]
        mine.append(value)
    if not differs:
        return []  # right at these points: nothing to name

    def value_at(cand: Candidate, k: int) -> Value | None:
        spec, point = points[k]
        return value_of(cand.definitions, cand.spec_of(spec), point, cand.pick)

    # the layer of the form's own family: an InstanceNorm form (BatchNorm's per-set mathematics)
    # has no eval mode, so BatchNorm's training/eval and Bessel swaps are not its candidates
    found = candidates(eq.name, form.order, specs[0])
    return _matches(found, len(points), mine, value_at)


def diagnose_layer(quantity: str, cases: Sequence[Any], mine: Sequence[Value]) -> list[Match]:
    """For code (check-impl): the known mistakes whose ``quantity`` equals the code's at every
    case.  A case has ``spec`` (the layer's shape and conventions) and ``point(channel,
    positions)``; ``mine`` holds the code's array per case (dx in the input's shape, dγ and dβ
    one per channel).  SPATIAL layers are also compared with per-activation statistics."""
    layer = cases[0].spec

    def value_at(cand: Candidate, k: int) -> Value | None:
        case = cases[k]
        spec = cand.spec_of(case.spec)
        parts = [
            (channel, case.spec.positions(channel), cand.definitions, spec)
            for channel in range(case.spec.c)
        ]
        return _assemble(quantity, case, parts, cand.pick)

    found = candidates(quantity, 1, layer) + code_candidates(quantity, layer)
    matches = _matches(found, len(cases), mine, value_at)
    if layer.mode is Mode.SPATIAL and quantity in ("dx", "dgamma", "dbeta"):
        matches += _matches(
            [_columns_candidate(quantity)], len(cases), mine, _column_value(cases, quantity)
        )
    return matches


def diagnose_sets(quantity: str, cases: Sequence[Any], mine: Sequence[Value]) -> list[Match]:
    """For code of the normalization family (check-impl --norm layer|instance|group|rms): the
    known mistakes whose ``quantity`` equals the code's at every case.  A case holds ``spec``
    and the whole layer's inputs ``x``, ``g``, ``gamma``, ``beta`` (None without one) and
    ``eps``; each candidate of the family's per-set mathematics is evaluated set by set and put
    back together as ``core.layer.layer_truth`` puts the truth (dx per element; dγ, dβ shaped
    like γ), so that ``mine`` (the code's arrays in those shapes) compares entry by entry."""

    def value_at(cand: Candidate, k: int) -> Value | None:
        case = cases[k]
        return _layer_value(quantity, case, cand.definitions, cand.spec_of(case.spec), cand.pick)

    return _matches(candidates(quantity, 1, cases[0].spec), len(cases), mine, value_at)


def _layer_value(
    quantity: str, case: Any, definitions: list, spec: Spec, pick: Callable
) -> Value | None:
    """One candidate's ``quantity`` over a whole layer of the family (``diagnose_sets``)."""
    beta = case.beta if spec.norm.has_beta else None
    per_element = "gamma" in affine_arrays(spec)
    out = np.zeros(spec.shape if quantity == "dx" else spec.affine_shape, dtype=object)
    exact = True
    for index in range(spec.sets):
        positions = spec.positions(index)
        point = set_point(spec, index, case.x, case.g, case.gamma, beta, case.eps)
        value = value_of(definitions, spec, point, pick)
        if value is None:
            return None
        exact = exact and value.exact
        data = value.data
        if quantity == "dx":
            for k, p in enumerate(positions):
                out[p] = data[k]
        elif per_element:
            for k, p in enumerate(positions):
                a = spec.affine_index(p)
                out[a] = out[a] + data[k]
        else:
            a = spec.affine_index(positions[0])
            out[a] = out[a] + data
    return Value(out if exact else out.astype(float), exact)


def candidate_values(quantity: str, case: Any) -> list[tuple[str, np.ndarray]]:
    """Every known mistake's value of ``quantity`` at one case of code (float64): the label
    "title (name)" and the array (dx in the input's shape, dγ and dβ one per channel).  For
    check-impl's question whether a result's rounding can tell the truth from a mistake."""
    layer = case.spec
    found = []
    for cand in candidates(quantity, 1, layer) + code_candidates(quantity, layer):
        spec = cand.spec_of(layer)
        parts = [(c, layer.positions(c), cand.definitions, spec) for c in range(layer.c)]
        value = _assemble(quantity, case, parts, cand.pick)
        if value is not None:
            found.append((f"{cand.mistake.title} ({cand.mistake.name})", value.floats()))
    if layer.mode is Mode.SPATIAL and quantity in ("dx", "dgamma", "dbeta"):
        cand = _columns_candidate(quantity)
        value = _column_value([case], quantity)(cand, 0)
        if value is not None:
            found.append((f"{cand.mistake.title} ({cand.mistake.name})", value.floats()))
    return found


def _columns_candidate(quantity: str) -> Candidate:
    return Candidate(
        "statistics over N for each (c, h, w)",
        corpus().mistake("per-activation-axes"),
        [],
        lambda s: s,
        _latest(quantity),
    )


def _column_value(cases: Sequence[Any], quantity: str) -> Callable[[Candidate, int], Value | None]:
    """Per-activation statistics on a SPATIAL layer: every (c, h, w) normalized over N alone."""

    def value_at(cand: Candidate, k: int) -> Value | None:
        case = cases[k]
        s = case.spec
        column = Spec(Mode.PER_ACTIVATION, n=s.n, training=s.training, unbiased=s.unbiased,
                      eps_inside=s.eps_inside)  # fmt: skip
        definitions = derive(column).definitions()
        parts = [
            (channel, [(n, channel, h, w) for n in range(s.n)], definitions, column)
            for channel in range(s.c)
            for h in range(s.h)
            for w in range(s.w)
        ]
        return _assemble(quantity, case, parts, cand.pick)

    return value_at


def _assemble(
    quantity: str, case: Any, parts: list[tuple[int, list, list, Spec]], pick: Callable
) -> Value | None:
    """A layer's array from its parts: each part's values go to its positions (dx) or are
    added into its channel (dγ, dβ)."""
    spec = case.spec
    per_element = quantity == "dx"
    out = np.zeros(spec.shape if per_element else spec.c, dtype=object)
    exact = True
    for channel, positions, definitions, part_spec in parts:
        value = value_of(definitions, part_spec, case.point(channel, positions), pick)
        if value is None:
            return None
        exact = exact and value.exact
        if per_element:
            for k, p in enumerate(positions):
                out[p] = value.data[k]
        else:
            out[channel] = out[channel] + value.data
    return Value(out if exact else out.astype(float), exact)


def _matches(
    found: list[Candidate],
    count: int,
    mine: Sequence[Value],
    value_at: Callable[[Candidate, int], Value | None],
) -> list[Match]:
    """The mistakes with a candidate equal to ``mine`` at all ``count`` points, in corpus order."""
    by_mistake: dict[str, tuple[Mistake, int, list[str]]] = {}
    for cand in found:
        exact = 0
        for k in range(count):
            theirs = value_at(cand, k)
            if theirs is None:
                break
            equal, how = same(mine[k], theirs)
            if not equal:
                break
            exact += how
        else:
            name = cand.mistake.name
            _, was_exact, labels = by_mistake.get(name, (cand.mistake, count, []))
            by_mistake[name] = (cand.mistake, min(was_exact, exact), [*labels, cand.label])
    return [
        Match(m, exact == count, tuple(labels), exact, count)
        for m, exact, labels in by_mistake.values()
    ]


# -- localisation ----------------------------------------------------------------------------------
def localise(
    residual: Sequence[Fraction], g: Sequence[Fraction], centred: Sequence[Fraction]
) -> str | None:
    """Which term of dx_i = dx̂_i/√(σ²+ε) + dσ²·2(x_i−μ)/M + dμ/M a wrong dx has wrong.

    ``residual`` = yours − truth over one reduction set (exact), ``g`` the upstream gradient,
    ``centred`` x − μ.  The residual is written exactly as a·dy_i + b·(x_i−μ) + c when it can be
    (M ≥ 4, so that the fit is a test and not an interpolation); the nonzero coefficients name
    the terms.  None when the residual is not of that shape.
    """
    m = len(residual)
    if m < 4:
        return None
    basis = [list(g), list(centred), [Fraction(1)] * m]
    coeffs = _exact_fit(basis, list(residual))
    if coeffs is None:
        return None
    a, b, c = coeffs
    terms = []
    if a != 0:
        terms.append("the direct term dx̂_i/√(σ²+ε) (the error is proportional to dy_i)")
    if b != 0:
        terms.append("the path through σ², dσ²·2(x_i−μ)/M (proportional to x_i − μ)")
    if c != 0:
        terms.append("the path through μ, dμ/M (the same for every element)")
    if not terms:
        return None
    return "the error lies in " + "; and in ".join(terms)


def _exact_fit(basis: list[list[Fraction]], target: list[Fraction]) -> list[Fraction] | None:
    """Coefficients with Σ c_j·basis_j = target exactly, or None (least squares, then checked)."""
    k = len(basis)
    gram = [[sum(u * v for u, v in zip(bi, bj, strict=True)) for bj in basis] for bi in basis]
    rhs = [sum(u * t for u, t in zip(bi, target, strict=True)) for bi in basis]
    # Gauss–Jordan in exact rationals; a singular system (dependent columns) is no test.
    rows = [[Fraction(v) for v in row] + [Fraction(r)] for row, r in zip(gram, rhs, strict=True)]
    for col in range(k):
        pivot = next((r for r in range(col, k) if rows[r][col] != 0), None)
        if pivot is None:
            return None
        rows[col], rows[pivot] = rows[pivot], rows[col]
        head = rows[col][col]
        rows[col] = [v / head for v in rows[col]]
        for r in range(k):
            if r != col and rows[r][col] != 0:
                factor = rows[r][col]
                rows[r] = [v - factor * w for v, w in zip(rows[r], rows[col], strict=True)]
    coeffs = [rows[j][k] for j in range(k)]
    fitted = [sum(c * b[i] for c, b in zip(coeffs, basis, strict=True)) for i in range(len(target))]
    return coeffs if fitted == list(target) else None


__all__ = [
    "Match",
    "candidates",
    "diagnose_layer",
    "diagnose_line",
    "diagnose_sets",
    "localise",
    "same",
]
