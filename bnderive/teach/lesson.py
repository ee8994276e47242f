"""The lesson: BatchNorm's forward and backward pass on a tiny exact batch, every number computed.

Nothing here is typed in.  The stages come from the forward graph (``core.graph``), the adjoints
and their chain-rule paths from the ground truth (``core.derive``), the published closed forms
from ``derivations/``, the mistakes from the corpus, and every number from evaluating those
expressions at the batch in exact rational arithmetic (``core.evaluate``).  Where the lesson
claims something (the three forms agree, a term is 0, a mutant passes a weak test), the claim
is a comparison of computed values, and a ``holds`` flag says whether it came out true: the
command line treats a false one as bnderive's own failure.

The stages a student computes (Ioffe & Szegedy's Algorithm 1, one reduction set):

    μ = (1/M) Σₖ xₖ,   xᵢ − μ,   σ² = (1/M) Σₖ (xₖ − μ)²,   √(σ² + ε),
    x̂ᵢ = (xᵢ − μ)/√(σ² + ε),   yᵢ = γ x̂ᵢ + β,   L = Σₖ gₖ yₖ

(x − μ and √(σ²+ε) are the numerator and denominator of the graph's x̂ stage), and backwards,
each adjoint as the sum over the stages that read the node: ∂L/∂v = Σ_u ∂L/∂u · ∂u/∂v.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

import numpy as np
import sympy as sp

from bnderive.core import notation as N
from bnderive.core.derive import Adjoint, Term, derive
from bnderive.core.evaluate import RATIONAL, Env, evaluate
from bnderive.core.graph import Graph, to_index_notation
from bnderive.core.points import exact_env, point_env
from bnderive.core.spec import Mode, Norm, Spec
from bnderive.read.catalogue import find_form
from bnderive.read.corpus import Mutant, corpus
from bnderive.read.forms import Equation, Form
from bnderive.teach.batch import (
    Batch,
    choose_batch,
    choose_family_batch,
    square_mean_square,
)
from bnderive.teach.printers import Chain, ChainProduct, Value
from bnderive.verify.lines import Outcome, form_definitions, run_lines
from bnderive.verify.zero_test import Zero, decide_zero

#: The published closed forms the lesson evaluates (``derivations/``).
CLOSED_FORMS = ("staged", "kronecker", "compact")
#: The rewrite of the corpus that drops the zero term of dμ.
ZERO_TERM_DROPPED = "staged-dmu-zero-term-dropped"
#: The mutants that a test with γ = 1 and σ² + ε = 1 cannot catch.
GAMMA_MISSING = "compact/gamma-missing"
SIGMA_FOR_VARIANCE = "compact/variance-for-sigma"

_I, _K = N.i, N.k


# -- the steps ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ForwardStep:
    """One stage of the forward pass: what it defines, its formula, its value at the batch."""

    name: str  # "mu", "xmu", "var", "root", "xhat", "y", "L"
    lhs: sp.Expr
    formula: sp.Expr  # index notation, any M
    value: Value
    meaning: str

    @property
    def elementwise(self) -> bool:
        return isinstance(self.value, tuple)


@dataclass(frozen=True)
class Path:
    """One path of the chain rule into an adjoint: through the stage ``via`` that reads the node."""

    via: str
    product: ChainProduct  # ∂L/∂u · ∂u/∂v, as written
    expr: sp.Expr  # the same path with ∂u/∂v taken (SymPy's diff of the graph's stage)
    value: Value


@dataclass(frozen=True)
class BackwardStep:
    """One adjoint ∂L/∂(node): its chain rule, its formula in index notation, its value."""

    name: str  # "dy", "dxhat", "dvar", "dmu", "dx", "dgamma", "dbeta"
    node: str
    lhs: sp.Expr
    chain: Chain
    formula: sp.Expr
    paths: tuple[Path, ...]
    value: Value
    meaning: str
    paths_add_up: bool  # the paths' values sum to the adjoint's value (computed)

    @property
    def elementwise(self) -> bool:
        return isinstance(self.value, tuple)


@dataclass(frozen=True)
class FormLine:
    equation: Equation
    value: Value
    truth: Value | None  # the chain rule's value of the quantity; None for a helper line

    @property
    def agrees(self) -> bool:
        return self.truth is None or self.value == self.truth


@dataclass(frozen=True)
class FormRun:
    """A published closed form evaluated line by line at the batch, beside the chain rule."""

    form: Form
    lines: tuple[FormLine, ...]

    @property
    def agrees(self) -> bool:
        return all(line.agrees for line in self.lines)


@dataclass(frozen=True)
class TrapRow:
    """One computed fact of a trap: a label, a formula (optional), a value or a verdict."""

    label: str
    value: Value | None = None
    formula: sp.Expr | None = None
    note: str = ""


@dataclass(frozen=True)
class Trap:
    key: str  # "zero-term", "uniform-gradient", "gamma-sigma", "degenerate"
    title: str
    setup: str  # what is computed, in words
    rows: tuple[TrapRow, ...]
    moral: str  # what it teaches
    holds: bool  # the trap's claim came out true in the computation
    sources: tuple[str, ...] = ()
    batches: tuple[Batch, ...] = ()  # the batches it was computed at, beside the lesson's
    at: Batch | None = None  # the batch it used instead of the lesson's (M < 3), if any


@dataclass(frozen=True)
class Lesson:
    batch: Batch
    graph: Graph
    forward: tuple[ForwardStep, ...]
    backward: tuple[BackwardStep, ...]
    forms: tuple[FormRun, ...]
    traps: tuple[Trap, ...]

    @property
    def holds(self) -> bool:
        """Every computed claim of the lesson came out true (false: a bug in bnderive)."""
        return (
            all(s.paths_add_up for s in self.backward)
            and all(f.agrees for f in self.forms)
            and all(t.holds for t in self.traps)
        )

    def value(self, name: str) -> Value:
        for step in (*self.forward, *self.backward):
            if step.name == name:
                return step.value
        raise KeyError(name)

    def failures(self) -> list[str]:
        """What came out false, in words (empty when the lesson holds)."""
        out = [f"the paths of {s.name} do not add up" for s in self.backward if not s.paths_add_up]
        out += [f"the {f.form.name} form disagrees" for f in self.forms if not f.agrees]
        out += [f"the trap {t.key} did not come out as claimed" for t in self.traps if not t.holds]
        return out


def build_lesson(
    n: int = 3,
    mode: Mode | str = Mode.PER_ACTIVATION,
    seed: int = 0,
    norm: Norm | str = Norm.BATCH,
) -> Lesson:
    """The whole lesson for a seeded batch of size ``n`` (a family's: ``family_lesson``)."""
    if Norm.parse(norm) is not Norm.BATCH:
        return family_lesson(n, norm, seed)
    batch = choose_batch(n, mode, seed)
    graph = Graph.build(batch.spec)
    forward, env = forward_pass(batch, graph)
    backward = backward_pass(graph, env)
    truth = {s.name: s.value for s in backward}
    forms = tuple(run_form(find_form(name), env, truth) for name in CLOSED_FORMS)
    # The weak-test traps need M ≥ 3: below that the true dx itself is degenerate (trap 4).
    big = batch if batch.m >= 3 else choose_batch(3, batch.spec.mode, seed)
    big_forward = forward if big is batch else forward_pass(big, Graph.build(big.spec))[0]
    traps = (
        zero_term_trap(batch, backward),
        _at(uniform_gradient_trap(big), big, batch),
        _at(gamma_sigma_trap(big, big_forward), big, batch),
        degenerate_trap(seed),
    )
    return Lesson(batch, graph, tuple(forward), tuple(backward), forms, traps)


def family_lesson(n: int, norm: Norm | str, seed: int = 0) -> Lesson:
    """The lesson of one of BatchNorm's relatives: the same staged forward and backward pass on
    set 0 of ``family_spec(n, norm)``, the family's published forms, and its traps.

    InstanceNorm's set is BatchNorm's mathematics (one γ, the mean subtracted): its traps are
    BatchNorm's, computed at its set.  LayerNorm's, GroupNorm's and RMSNorm's traps are the
    family's known mistakes of the corpus (``family_traps``)."""
    batch = choose_family_batch(n, norm, seed)
    graph = Graph.build(batch.spec)
    forward, env = forward_pass(batch, graph)
    backward = backward_pass(graph, env)
    truth = {s.name: s.value for s in backward}
    forms = tuple(run_form(form, env, truth) for form in family_forms(batch.spec.norm))
    if batch.spec.norm.per_set == "batch":
        big = batch if batch.m >= 3 else choose_family_batch(3, norm, seed)
        big_forward = forward if big is batch else forward_pass(big, Graph.build(big.spec))[0]
        traps: tuple[Trap, ...] = (
            zero_term_trap(batch, backward),
            _at(uniform_gradient_trap(big), big, batch),
            _at(gamma_sigma_trap(big, big_forward), big, batch),
            degenerate_trap(seed),
        )
    else:  # M < 3 hides them (one element: γ outside a sum is γ inside it): a set of three
        big = batch if batch.m >= 3 else choose_family_batch(3, norm, seed)
        traps = tuple(_at(t, big, batch) for t in family_traps(big, seed))
    return Lesson(batch, graph, tuple(forward), tuple(backward), forms, traps)


def family_forms(norm: Norm) -> list[Form]:
    """The family's published first-order forms of ``derivations/``, by name."""
    from bnderive.read.derivations import builtin_forms

    return sorted(
        (f for f in builtin_forms() if f.order == 1 and f.norm is norm), key=lambda f: f.name
    )


def _at(trap: Trap, used: Batch, lesson: Batch) -> Trap:
    """A trap computed at a batch of three because the lesson's is degenerate: say so."""
    if used is lesson:
        return trap

    def listed(values: tuple[Fraction, ...]) -> str:
        return "[" + ", ".join(map(exact_text, values)) + "]"

    gamma = listed(used.gamma) if isinstance(used.gamma, tuple) else exact_text(used.gamma)
    later = (
        "is degenerate, see the last trap"
        if lesson.spec.norm.per_set == "batch"
        else "is too small for the mistake to show"
    )
    where = (
        f" (At a {'batch' if lesson.spec.norm is Norm.BATCH else 'set'} of M={used.m}: "
        f"x = {listed(used.x)}, g = {listed(used.g)}, γ = {gamma}, ε = {exact_text(used.eps)}; "
        f"the lesson's M={lesson.m} {later}.)"
    )
    return replace(trap, setup=trap.setup + where, at=used)


# -- values -------------------------------------------------------------------------------------------
def exact_value(raw: Any) -> Value:
    """A value of the rational backend (gmpy2 numbers, arrays of them) as Fractions."""
    if isinstance(raw, np.ndarray):
        return tuple(_fraction(v) for v in raw.reshape(-1))
    return _fraction(raw)


def _fraction(v: Any) -> Fraction:
    return Fraction(int(v.numerator), int(v.denominator))


def batch_env(batch: Batch) -> Env:
    """The batch's inputs and forward stages (μ, σ², x̂, y) in exact rational arithmetic."""
    return point_env(batch.spec, 0, batch.point(), RATIONAL).env


def run_at(definitions: Iterable[tuple[str, bool, sp.Expr]], batch: Batch) -> Outcome:
    """Named definitions (a form's lines, the truth's adjoints) evaluated in order at ``batch``."""
    return run_lines(list(definitions), batch_env(batch))


def latest(outcome: Outcome, name: str) -> Value | None:
    """The value a run computed last for ``name`` (a chain may define dx[i] on several lines)."""
    raw = outcome.values.get(name)
    return None if raw is None else exact_value(raw)


def exact_text(value: Fraction) -> str:
    return (
        str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"
    )


def is_zero(value: Value) -> bool:
    values = value if isinstance(value, tuple) else (value,)
    return all(v == 0 for v in values)


# -- the forward pass ---------------------------------------------------------------------------------
_LHS = {
    "mu": sp.Symbol("mu"),
    "xmu": sp.IndexedBase("x")[_I] - sp.Symbol("mu"),
    "var": sp.Symbol("var"),
    "ms": sp.Symbol("ms"),
    "xhat": sp.IndexedBase("xhat")[_I],
    "y": sp.IndexedBase("y")[_I],
    "L": sp.Symbol("L"),
}


def forward_pass(batch: Batch, graph: Graph) -> tuple[list[ForwardStep], Env]:
    """Each stage of the graph at the batch, with x − μ and √(σ²+ε) (the numerator and the
    denominator of the x̂ stage) as steps of their own, as a student computes them (RMSNorm's
    numerator is x itself: only its root √(ms+ε) is a step)."""
    env = batch_env(batch)
    centred, root = sp.fraction(graph.stage("xhat").definition)
    pieces = {"root": (to_index_notation(root, _I), False, _ROOT_MEANING[graph.radicand])}
    if graph.spec.norm.centred:
        pieces["xmu"] = (
            to_index_notation(centred, _I),
            True,
            "centre: the deviation from the mean",
        )
    steps: list[ForwardStep] = []
    for stage in graph.stages:
        if stage.name == "xhat":
            for name, (formula, elementwise, meaning) in pieces.items():
                steps.append(_forward_step(name, formula, elementwise, meaning, env))
        steps.append(_forward_step(stage.name, stage.at(_I), stage.elementwise, stage.meaning, env))
    # x − μ is computed before σ², which is built from it; the root after σ² (or ms): in order.
    order = ["mu", "xmu", "var", "ms", "root", "xhat", "y", "L"]
    steps.sort(key=lambda s: order.index(s.name))
    return steps, env


_ROOT_MEANING = {
    "var": "the standard deviation, ε inside the root",
    "ms": "the root mean square, ε inside the root",
}


def _forward_step(
    name: str, formula: sp.Expr, elementwise: bool, meaning: str, env: Env
) -> ForwardStep:
    value = exact_value(evaluate(formula, env, _I if elementwise else None))
    lhs = formula if name == "root" else _LHS[name]  # √(σ² + ε), √(ms + ε): named by itself
    return ForwardStep(name, lhs, formula, value, meaning)


# -- the backward pass --------------------------------------------------------------------------------
_MEANING = {
    "dy": "the upstream gradient g, given",
    "dxhat": "y reads x̂",
    "dvar": "x̂ reads σ² (x and μ held fixed)",
    "dms": "x̂ reads ms (x held fixed)",
    "dmu": "x̂ and σ² read μ",
    "dx": "μ, σ² and x̂ read x",
    "dgamma": "every y reads γ",
    "dbeta": "every y reads β",
}
#: Where γ and β are one per element (LayerNorm, GroupNorm, RMSNorm): this set's part.
_MEANING_PER_ELEMENT = {
    "dx": "x̂ and the statistics read x",
    "dgamma": "yᵢ reads γᵢ: this set's part of ∂L/∂γᵢ",
    "dbeta": "yᵢ reads βᵢ: this set's part of ∂L/∂βᵢ",
}


def backward_pass(graph: Graph, env: Env) -> list[BackwardStep]:
    """Each adjoint of the ground truth, in the order a backward pass computes them, with the
    value of each chain-rule path; later adjoints read the earlier ones by name."""
    truth = derive(graph)
    env = env.child()
    steps: list[BackwardStep] = []
    for adj in truth.adjoints:
        index = _I if adj.elementwise else None
        # The path through the nearest reader first, as derivations write it (dx̂ before dμ).
        terms = list(reversed(adj.terms))
        paths = tuple(
            Path(
                t.via,
                chain_product(graph, adj, t),
                t.expr,
                exact_value(evaluate(t.expr, env, index)),
            )
            for t in terms
        )
        raw = evaluate(adj.expr, env, index)
        value = exact_value(raw)
        env.store(adj.name, raw, adj.elementwise)
        steps.append(
            BackwardStep(
                adj.name,
                adj.node,
                adj.reference(_I),
                Chain(*(p.product for p in paths)),
                adj.expr,
                paths,
                value,
                _meaning(graph, adj.name),
                _total([p.value for p in paths]) == value,
            )
        )
    return steps


def _meaning(graph: Graph, name: str) -> str:
    if graph.spec.norm.affine_per_element and name in _MEANING_PER_ELEMENT:
        return _MEANING_PER_ELEMENT[name]
    if not graph.spec.norm.centred and name == "dx":
        return "ms and x̂ read x"
    return _MEANING.get(name, "")


def _total(values: Sequence[Value]) -> Value:
    if isinstance(values[0], tuple):
        return tuple(sum(column, Fraction(0)) for column in zip(*values, strict=True))
    return sum(values, Fraction(0))  # type: ignore[arg-type]


def _node(graph: Graph, name: str, index: sp.Symbol) -> sp.Expr:
    """A node of the graph as a derivation writes it: x̂ₖ for an elementwise node, σ² otherwise."""
    elementwise = name in graph.elementwise_leaves or (
        name in graph.names and graph.stage(name).elementwise
    )
    return sp.IndexedBase(name)[index] if elementwise else sp.Symbol(name)


def chain_product(graph: Graph, adj: Adjoint, term: Term) -> ChainProduct:
    """The path ``term`` of ``adj`` as the product ∂L/∂u · ∂u/∂v, u = term.via, v = adj.node.

    Four shapes, as ``core.derive`` takes them: an elementwise v read elementwise (∂L/∂uᵢ·∂uᵢ/∂vᵢ)
    or by a reduction (∂L/∂u·∂u/∂vᵢ); a per-set v read by every element of u
    (Σₖ ∂L/∂uₖ·∂uₖ/∂v) or by a reduction (∂L/∂u·∂u/∂v)."""
    u = term.via
    u_elementwise = graph.stage(u).elementwise
    index = _I if adj.elementwise else _K
    sums = not adj.elementwise and u_elementwise
    outer = sp.Integer(1) if u == "L" else N.reference("d" + u, index if u_elementwise else None)
    local = sp.Derivative(_node(graph, u, index), _node(graph, adj.node, index), evaluate=False)
    return ChainProduct(outer, local, index if sums else sp.Integer(0))


# -- the closed forms ---------------------------------------------------------------------------------
def run_form(form: Form, env: Env, truth: dict[str, Value]) -> FormRun:
    """The form's lines evaluated in order at the batch (each with its own earlier lines), and
    the chain rule's value of the quantity each line defines."""
    outcome = run_lines(form_definitions(form), env)
    lines = []
    for eq in form.equations:
        error = outcome.line_error(eq)
        if error is not None:
            raise ArithmeticError(f"{form.name}, line {eq.number}: {error}")
        lines.append(FormLine(eq, exact_value(outcome.line(eq)), truth.get(eq.name)))
    return FormRun(form, tuple(lines))


# -- the traps ----------------------------------------------------------------------------------------
def zero_term_trap(batch: Batch, backward: Sequence[BackwardStep]) -> Trap:
    """dμ's path through σ² is dσ²·(−2/M)·Σ(xₖ − μ), and Σ(xₖ − μ) = 0: the term is exactly 0,
    so a derivation that drops it is still right (the corpus's rewrite that drops it)."""
    centred_sum = N.reduce_sum(sp.IndexedBase("x")[_K] - sp.Symbol("mu"), _K)
    total = exact_value(evaluate(centred_sum, batch_env(batch)))
    dmu = next(s for s in backward if s.name == "dmu")
    through_var = next(p for p in dmu.paths if p.via == "var")
    rewrite = corpus().find(ZERO_TERM_DROPPED)
    dropped = run_at(form_definitions(rewrite.form), batch)  # type: ignore[union-attr]
    truth = {s.name: s.value for s in backward}
    same = all(latest(dropped, q) == truth[q] for q in ("dmu", "dx"))
    rows = (
        TrapRow("Σₖ (xₖ − μ)", total, centred_sum),
        TrapRow("the term dσ²·(−2/M)·Σ(xₖ − μ) of dμ", through_var.value, through_var.expr),
        TrapRow(
            "dμ with the term dropped", latest(dropped, "dmu"), rewrite.form.equation("dmu").expr
        ),  # type: ignore[union-attr]
        TrapRow("dx from that dμ", latest(dropped, "dx")),
        TrapRow("dμ, dx of the chain rule", None, note="the same numbers" if same else "DIFFERENT"),
    )
    return Trap(
        "zero-term",
        "The dσ² term of dμ is exactly 0",
        "The staged dμ keeps dσ²·(−2/M)·Σₖ(xₖ − μ); at this batch that sum is computed, and "
        "the corpus's rewrite without the term is run beside the chain rule.",
        rows,
        "Σₖ(xₖ − μ) = Mμ − Mμ = 0 for every batch: a derivation may drop the term (the "
        "compact form does), and a checker must not call that a mistake.",
        total == 0 and through_var.value == 0 and same,
        rewrite.sources,  # type: ignore[union-attr]
    )


def uniform_gradient_trap(batch: Batch) -> Trap:
    """A uniform upstream gradient (the loss Σy gives g = 1, mean(y) gives g = 1/M) makes the
    true dx exactly 0; most known mistakes give 0 too, so such a test cannot fail them."""
    truth = derive(batch.spec).definitions()
    gamma_missing = corpus().find(GAMMA_MISSING)
    assert isinstance(gamma_missing, Mutant)
    rows: list[TrapRow] = []
    holds = True
    batches = []
    for loss, c in (("sum", Fraction(1)), ("mean", Fraction(1, batch.m))):
        uniform = batch.with_inputs(g=(c,) * batch.m)
        batches.append(uniform)
        dx = latest(run_at(truth, uniform), "dx")
        wrong = latest(run_at(form_definitions(gamma_missing.form), uniform), "dx")
        holds = holds and dx is not None and is_zero(dx) and wrong == dx
        rows.append(TrapRow(f"L = {loss}(y), g = {exact_text(c)}: true dx", dx))
        rows.append(TrapRow(f"L = {loss}(y), g = {exact_text(c)}: {GAMMA_MISSING} dx", wrong))
    uniform = batches[0]
    zero, tried, names = 0, 0, []
    for mutant in dx_mutants(batch.spec):
        try:
            dx = latest(run_at(form_definitions(mutant.form), uniform), "dx")
        except ArithmeticError:
            continue
        if dx is None:  # no exact value (a root of a non-square): not counted
            continue
        tried += 1
        if is_zero(dx):
            zero += 1
            if mutant.mistake.title not in names:
                names.append(mutant.mistake.title)
    shown = "; ".join(names[:4]) + ("; …" if len(names) > 4 else "")
    rows.append(
        TrapRow(
            "known mistakes whose dx is 0 here too",
            None,
            note=f"{zero} of {tried} mutants of the corpus: {shown}",
        )
    )
    return Trap(
        "uniform-gradient",
        "A uniform upstream gradient makes the true dx exactly 0",
        "The batch's x with g replaced by a constant, as y.sum() and y.mean() give it; the "
        "truth and every mutant of the corpus are run there.",
        tuple(rows),
        "dx = γ/√(σ²+ε)·(g − mean(g) − x̂·mean(g·x̂)) vanishes for constant g because Σx̂ = 0: "
        "a gradient test through a sum or mean loss compares 0 with (often) 0 and proves "
        "nothing. Test with a non-uniform g.",
        holds and zero > 0,
        batches=tuple(batches),
    )


def dx_mutants(spec: Spec) -> list[Mutant]:
    """The corpus's first-order mutants with this layer's conventions and per-set mathematics
    (BatchNorm's one γ per set, LayerNorm's γ per element, RMSNorm's) that compute dx.  A
    mutant of a GroupNorm or InstanceNorm form is a quiz's only (its lines are written per
    channel, not per set): the lessons' traps run the forms of the per-set mathematics."""
    return [
        m
        for m in corpus().mutants
        if m.form.order == 1
        and m.form.norm.value == m.form.norm.per_set
        and (m.form.training, m.form.unbiased, m.form.eps_inside, m.form.norm.per_set)
        == (spec.training, spec.unbiased, spec.eps_inside, spec.norm.per_set)
        and any(eq.name == "dx" for eq in m.form.equations)
    ]


def _mutants_at(
    label: str, truth: Any, mutants: Sequence[Mutant | None], b: Batch, rows: list[TrapRow]
) -> list[tuple[Any, bool]]:
    """The true dx at one test and each mutant's dx there, as rows (a mutant "passes" the test
    when its dx equals the true dx); returns each mutant's (dx, passes)."""
    true_dx = latest(run_at(truth, b), "dx")
    rows.append(TrapRow(f"{label}: true dx", true_dx))
    outcomes = []
    for mutant in mutants:
        assert isinstance(mutant, Mutant)
        dx = latest(run_at(form_definitions(mutant.form), b), "dx")
        passes = dx == true_dx
        note = "= the true dx: passes" if passes else "≠ the true dx: fails"
        rows.append(TrapRow(f"{label}: {mutant.id} dx", dx, note=note))
        outcomes.append((dx, passes))
    return outcomes


def gamma_sigma_trap(batch: Batch, forward: Sequence[ForwardStep]) -> Trap:
    """γ = 1 and σ² + ε = 1 hide the γ-missing and σ-for-σ² mutants: at a weak test (γ = 1, the
    input already normalized: x̂ with ε/(σ²+ε), so that σ² + ε = 1) they give the true dx
    exactly; at the lesson's batch they do not."""
    xhat = next(s for s in forward if s.name == "xhat").value
    weak = batch.with_inputs(
        x=xhat, gamma=Fraction(1), eps=batch.eps / batch.root**2, root=Fraction(1)
    )
    truth = derive(batch.spec).definitions()
    weak_root = exact_value(evaluate(sp.sqrt(sp.Symbol("var") + sp.Symbol("eps")), batch_env(weak)))
    tests = (("weak test", weak), ("strong test", batch))
    mutants = [corpus().find(ident) for ident in (GAMMA_MISSING, SIGMA_FOR_VARIANCE)]
    rows = []
    holds = weak_root == 1
    for label, b in tests:
        setting = "γ = 1, x = x̂ of the batch" if b is weak else "the lesson's batch"
        root = weak_root if b is weak else batch.root
        rows.append(TrapRow(f"{label} ({setting}), √(σ² + ε)", root))
        for _dx, passes in _mutants_at(label, truth, mutants, b, rows):
            holds = holds and passes == (b is weak)
    return Trap(
        "gamma-sigma",
        "γ = 1 and σ² + ε = 1 hide a missing γ and σ written for σ²",
        "Two mutants of the corpus run at a weak test (γ = 1 and an input already normalized, "
        "so σ² + ε = 1) and at the lesson's batch (the strong test).",
        tuple(rows),
        "With γ = 1 a forgotten γ multiplies by 1; with σ² + ε = 1 the powers "
        "(σ²+ε)^(−1/2), (σ²+ε)^(−1) and (σ²+ε)^(−3/2) are all 1. Test with γ ∉ {0, ±1} and σ² "
        "far from 1.",
        holds,
        tuple(corpus().mistake("gamma-missing").sources),
        batches=(weak,),
    )


def degenerate_trap(seed: int) -> Trap:
    """M = 1: x̂ = 0 and dx = 0 for every input (decided exactly, symbolically).  M = 2:
    x̂ = ±σ/√(σ²+ε) and the true dx is ε/(σ²+ε) of γ(g₁ − g₂)/(2√(σ²+ε)): set by ε, not by
    the formula (computed at a seeded batch of two)."""
    one = Spec(Mode.PER_ACTIVATION, n=1)
    inst = exact_env(one)
    dx_one = run_lines(derive(one).definitions(), inst.env).values["dx"][0]
    identically_zero = decide_zero(dx_one, quick=False).outcome is Zero.ZERO
    two = choose_batch(2, Mode.PER_ACTIVATION, seed, max_q=24)  # a small ε
    outcome = run_at(derive(two.spec).definitions(), two)
    dx = latest(outcome, "dx")
    assert isinstance(dx, tuple)
    env = batch_env(two)
    xhat = exact_value(env.arrays["xhat"])
    scale = two.gamma * (two.g[0] - two.g[1]) / (2 * two.root)
    ratio = dx[0] / scale
    share = two.eps / two.root**2
    rows = (
        TrapRow(
            "M = 1: true dx, for every x, g, γ, ε", Fraction(0), note=_zero_note(identically_zero)
        ),
        TrapRow("M = 2: x", two.x),
        TrapRow("M = 2: g", two.g),
        TrapRow("M = 2: x̂ (= ±σ/√(σ²+ε))", xhat),
        TrapRow("M = 2: true dx", dx),
        TrapRow("dx₁ / (γ(g₁ − g₂)/(2√(σ²+ε)))", ratio),
        TrapRow("ε/(σ² + ε)", share, note="the same number" if ratio == share else "DIFFERENT"),
    )
    return Trap(
        "degenerate",
        "Batches of one and two are degenerate",
        "A batch of one (in symbols, decided exactly) and a seeded batch of two; the same "
        "happens in SPATIAL mode when N·H·W ≤ 2.",
        rows,
        "With M = 1, x − μ = 0: the gradient is 0 whatever the formula (PyTorch refuses such "
        "a batch). With M = 2 the true dx is proportional to ε: a test compares numbers set by "
        "ε and rounding, not by the backward. Test with M ≥ 3.",
        identically_zero and ratio == share and dx[0] == -dx[1],
        batches=(two,),
    )


# -- the family's traps: its known mistakes, computed ---------------------------------------------
#: The family's mistakes about the weight γᵢ: invisible when every γᵢ is 1 (the initial weight of
#: PyTorch's nn.LayerNorm, nn.GroupNorm and nn.RMSNorm).
WEIGHT_MISTAKES = ("gamma-outside-sum", "gamma-missing")
#: ε added to the root instead of under it.
EPS_OUTSIDE = "eps-outside"


def family_traps(batch: Batch, seed: int) -> tuple[Trap, ...]:
    """The known mistakes of the corpus put into forms of this set's mathematics (LayerNorm's
    for LayerNorm and GroupNorm, RMSNorm's), each computed: the weight mistakes at the lesson's
    set and at a test whose γᵢ are all 1; ε outside the root at two ε (``eps_outside_trap``)."""
    mutants = [m for m in dx_mutants(batch.spec) if m.edited and m.form.norm is not Norm.BATCH]
    out = []
    for name in WEIGHT_MISTAKES:
        chosen = [m for m in mutants if m.mistake.name == name]
        if chosen:
            out.append(weight_trap(batch, chosen))
    chosen = [m for m in mutants if m.mistake.name == EPS_OUTSIDE]
    if chosen:
        out.append(eps_outside_trap(batch, chosen, seed))
    return tuple(out)


def _ones(batch: Batch) -> Batch:
    """The same set with every γᵢ = 1: the layer as PyTorch initializes it."""
    gamma = batch.gamma
    ones = tuple(Fraction(1) for _ in gamma) if isinstance(gamma, tuple) else Fraction(1)
    return batch.with_inputs(gamma=ones)


def weight_trap(batch: Batch, mutants: Sequence[Mutant]) -> Trap:
    """A mistake about γᵢ (taken out of a sum, or forgotten) gives the true dx when every γᵢ is
    1, and not at the lesson's set, whose γᵢ differ: computed for each mutant."""
    weak = _ones(batch)
    truth = derive(batch.spec).definitions()
    rows: list[TrapRow] = []
    holds = True
    for label, b in (("γᵢ = 1 for every i (the initial weight)", weak), ("the lesson's γ", batch)):
        for dx, passes in _mutants_at(label, truth, mutants, b, rows):
            holds = holds and dx is not None and passes == (b is weak)
    mistake = mutants[0].mistake
    notes = "; ".join(f"{m.id}: {m.explanation}" for m in mutants)
    return Trap(
        mistake.name,
        f"{_capital(mistake.title)}: invisible while every γᵢ is 1",
        f"The corpus's mutants ({notes}) run at a test whose γᵢ are all 1, as PyTorch "
        "initializes the layer, and at the lesson's set, whose γᵢ differ.",
        tuple(rows),
        f"{mistake.fix}. With every γᵢ = 1, γ outside a sum or γ forgotten multiplies by 1; a "
        "gradient test of a freshly initialized layer cannot fail it. Test with γᵢ that differ "
        "from each other and from 1.",
        holds,
        tuple(dict.fromkeys((*mistake.sources, *(s for m in mutants for s in m.sources)))),
        batches=(weak,),
    )


def _capital(text: str) -> str:
    """The first letter capitalized where it is a Latin one (γ stays γ, not Γ)."""
    return text[:1].upper() + text[1:] if text[:1].isascii() else text


#: The ε of PyTorch's layers, and the relative tolerance of a typical float gradient test.
TORCH_EPS = Fraction(1, 10**5)
FLOAT_TOLERANCE = Fraction(1, 10**4)


def eps_outside_trap(batch: Batch, mutants: Sequence[Mutant], seed: int) -> Trap:
    """x/(√ms + ε) for x/√(ms + ε): computed exactly at a set whose √ms is rational
    (``square_mean_square``), at a large ε and at one near PyTorch's 10⁻⁵ (√(ms + ε) = √ms + 1/q
    keeps both roots rational): the difference of dx shrinks with ε, and near 10⁻⁵ it is below
    a float test's relative tolerance of 10⁻⁴."""
    x = square_mean_square(batch.m, seed)
    base = batch.with_inputs(x=x)
    ms = base.statistic
    root_ms = Fraction(math.isqrt(ms.numerator), math.isqrt(ms.denominator))
    truth = derive(batch.spec).definitions()
    rows: list[TrapRow] = [TrapRow("x (its mean square is a square)", x), TrapRow("√ms", root_ms)]
    small_q = math.ceil(2 * root_ms / TORCH_EPS)  # ε = 2√ms/q + 1/q² ≈ 10⁻⁵
    relative: list[Fraction] = []
    used = []
    for q in (2, small_q):
        root = root_ms + Fraction(1, q)
        at = base.with_inputs(eps=root * root - ms, root=root)
        used.append(at)
        true_dx = latest(run_at(truth, at), "dx")
        large = q == 2
        eps_text = f"ε = {exact_text(at.eps)}" if large else f"ε ≈ {float(at.eps):.4g}"
        if large:
            rows.append(TrapRow(f"{eps_text}: true dx", true_dx))
        for mutant in mutants:
            dx = latest(run_at(form_definitions(mutant.form), at), "dx")
            assert isinstance(dx, tuple) and isinstance(true_dx, tuple)
            gap = max(abs(a - b) for a, b in zip(dx, true_dx, strict=True))
            rel = gap / max(abs(v) for v in true_dx)
            relative.append(rel)
            if large:
                rows.append(TrapRow(f"{eps_text}: {mutant.id} dx", dx))
            passes = rel < FLOAT_TOLERANCE
            rows.append(
                TrapRow(
                    f"{eps_text}: max |difference| / max |true dx|",
                    None,
                    note=f"≈ {float(rel):.3g}: "
                    + (
                        "below 10⁻⁴, a float test passes it"
                        if passes
                        else "above 10⁻⁴: a float test catches it"
                    ),
                )
            )
    n = len(mutants)
    first, second = relative[:n], relative[n:]
    mistake = mutants[0].mistake
    return Trap(
        mistake.name,
        "ε outside the root: a difference that shrinks with ε",
        "The corpus's mutant with ε added to the root mean square, run beside the chain rule at "
        "a set whose √ms is rational (so that √ms + ε is exact), at a large ε and at ε near "
        "PyTorch's 10⁻⁵.",
        tuple(rows),
        f"{mistake.fix}. The two layers differ by O(ε): near PyTorch's ε = 10⁻⁵ a float test "
        "with a relative tolerance of 10⁻⁴ passes the wrong one. Compare exactly, or with a "
        "large ε.",
        all(a >= FLOAT_TOLERANCE > b > 0 for a, b in zip(first, second, strict=True)),
        tuple(dict.fromkeys((*mistake.sources, *(s for m in mutants for s in m.sources)))),
        batches=tuple(used),
    )


def _zero_note(zero: bool) -> str:
    return "decided exactly, in symbols" if zero else "NOT identically 0"


__all__ = [
    "BackwardStep",
    "FormLine",
    "FormRun",
    "ForwardStep",
    "Lesson",
    "Path",
    "Trap",
    "TrapRow",
    "build_lesson",
    "chain_product",
    "dx_mutants",
    "family_forms",
    "family_lesson",
    "family_traps",
    "exact_value",
]
