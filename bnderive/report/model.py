"""The report as data: what was checked and what was found, section by section.

A ``Report`` is built from the library's own results (``verify.check.check_forms`` and its
``CheckResult``, the document reader's ``DocumentForm``, ``usercode.check_impl``'s ``Report``,
``emit``'s ``Emitted``, ``core.graph``/``core.derive`` for the picture and the truth) and holds
nothing but what those found: the printers (``report.latex``, ``report.markdown``) render the
same model, and decide nothing.  Mathematics is kept as SymPy expressions parsed from the input
(``sides``); a line's LaTeX as written never enters the model except as plain text for a line
that could not be read, which the printers escape.

Sections, each present when its data exists (issue 14): the summary, the forward graph, the
ground truth stage by stage with the published forms proven for every M, each derivation line by
line, each implementation, the emitted code, the stability study.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sympy as sp

from bnderive.core.graph import Graph
from bnderive.core.spec import Mode, Norm, Spec
from bnderive.read.forms import Equation, Form
from bnderive.verify.summary import LineResult
from bnderive.verify.verdict import Status, Verdict

#: The published closed forms of BatchNorm's backward the ground-truth section proves (DESIGN §1).
PUBLISHED = ("staged", "kronecker", "compact")
#: What the every-M method is, in one sentence (the ground truth section says it).
EVERY_M_METHOD = (
    "truth minus form in index notation, the radical eliminated, Kronecker deltas reduced, sums "
    "kept as opaque reductions, then cancelled to zero: a proof for every size M of the "
    "reduction set"
)
#: Status words, one per status a line of the report can have.
MARKS = {
    "holds": "✓",
    "refuted": "✗",
    "undecided": "?",
    "not checked": "·",
    "not read": "–",
    "definition": "·",
}


# -- the sections ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Summary:
    """What was checked, under which conventions, the verdict in one sentence, how to redo it."""

    checked: tuple[str, ...]
    conventions: tuple[str, ...]
    status: str  # holds | refuted | undecided | could not check
    verdict: str
    command: str
    versions: tuple[tuple[str, str], ...]
    methods: tuple[str, ...] = ()  # each method run and what it covered, in words
    date: str | None = None  # from SOURCE_DATE_EPOCH only: a report carries no clock time


@dataclass(frozen=True)
class GraphEdge:
    source: str
    target: str


@dataclass(frozen=True)
class GraphSection:
    """The forward graph of one reduction set (``Stage.parents()``) and its adjoints."""

    mode: str  # "PER_ACTIVATION: (N, D), statistics per feature over the batch"
    norm: str
    chain: tuple[str, ...]  # x, μ, σ², x̂, y, L: the nodes of the forward pass, in order
    leaves: tuple[str, ...]  # γ, β, ε, g (and the running μ, σ² in eval mode)
    edges: tuple[GraphEdge, ...]  # every edge parent → stage
    adjoints: tuple[GraphEdge, ...]  # ∂L/∂… flowing back: stage → parent, labelled by its node


@dataclass(frozen=True)
class TruthRow:
    kind: str  # forward | backward
    name: str  # mu, var, xhat, y, L, dxhat, ...
    lhs: sp.Basic
    expr: sp.Basic
    meaning: str


@dataclass(frozen=True)
class ProvenForm:
    name: str
    title: str
    status: str  # holds | refuted | undecided: the every-M verdict over the form's lines
    lines: int
    sources: tuple[str, ...]


@dataclass(frozen=True)
class TruthSection:
    """The ground truth stage by stage (``derive``), and the published forms proven for every M."""

    spec: str
    rows: tuple[TruthRow, ...]
    proven: tuple[ProvenForm, ...]
    method: str = EVERY_M_METHOD


@dataclass(frozen=True)
class CounterexampleEntry:
    """A point where two values differ: the inputs and both exact values."""

    where: str  # "per-activation 3×1 (M=3; …), channel 0"
    inputs: tuple[tuple[str, str], ...]
    entry: str
    reference: str  # "truth", or "line 9" for a step
    reference_value: str
    mine: str  # "form", "line 10", "yours"
    value: str


@dataclass(frozen=True)
class MistakeEntry:
    """A known mistake of the corpus that a refuted line (or function) equals."""

    title: str
    name: str
    how: str  # "your dvar equals the result with it, exactly (as staged/half-lost)"
    wrong: str
    right: str
    sources: tuple[str, ...]
    comes_in: str = ""  # "the mistake comes in at line 10; line 12 uses its value"


@dataclass(frozen=True)
class LineEntry:
    """One line of a derivation as written, what was parsed from it, and its verdict."""

    place: str  # "line 10" (a document) or "equation 2" (a form file)
    quantity: str
    sides: tuple[sp.Basic | None, ...]  # parsed: left side, then each right side (None: unread)
    raw: str  # the line as written: shown as plain text only when it was not read
    status: str  # holds | refuted | undecided | not checked | not read | definition
    verdict: str  # "holds for every M", "refuted (exact, per-activation M ≤ 6)", ...
    methods: tuple[tuple[str, str], ...] = ()  # (method, what it found)
    step: str = ""  # "follows from line 9" / "does not follow from line 9"
    reason: str = ""
    notes: tuple[str, ...] = ()
    counterexamples: tuple[CounterexampleEntry, ...] = ()
    residual: sp.Basic | None = None  # truth − line, in index notation
    mistakes: tuple[MistakeEntry, ...] = ()
    unexplained: tuple[str, ...] = ()  # why an open line is open
    unchecked: tuple[int, ...] = ()  # the members (right sides) of a checked line not checked

    @property
    def how(self) -> str:
        """The verdict's words after its status: 'for every M', 'exact, per-activation M ≤ 6'."""
        rest = self.verdict.removeprefix(self.status).strip()
        return rest[1:-1] if rest.startswith("(") and rest.endswith(")") else rest.lstrip(": ")


@dataclass(frozen=True)
class FormSection:
    """A derivation (a built-in form, a form file or a document), line by line."""

    name: str
    title: str
    path: str
    kind: str  # built-in form | form file | derivation document
    sources: tuple[str, ...]
    conventions: str
    status: str
    lines: tuple[LineEntry, ...]
    comes_in: tuple[str, ...] = ()  # where each independent mistake comes in
    counts: tuple[tuple[str, int], ...] = ()  # a document's lines: checked, not read, ...
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImplRow:
    function: str
    quantity: str
    section: str
    method: str
    status: str


@dataclass(frozen=True)
class ImplFinding:
    """What explains a refuted or open row: the counterexample and the diagnosis."""

    function: str
    quantity: str
    section: str
    status: str
    detail: str
    counterexample: CounterexampleEntry | None
    diagnosis: tuple[str, ...]
    mistakes: tuple[MistakeEntry, ...]


@dataclass(frozen=True)
class ImplSection:
    """An implementation (.py) as ``check-impl`` checked it: one row per function and quantity."""

    path: str
    api: str
    status: str
    calls: tuple[str, ...]
    rows: tuple[ImplRow, ...]
    findings: tuple[ImplFinding, ...]
    failures: tuple[tuple[str, str], ...]  # (function, why it could not be checked)
    notes: tuple[str, ...]


@dataclass(frozen=True)
class CodeSection:
    """An emitted module, verified before it was listed."""

    form: str
    mode: str
    target: str
    source: str
    verified: tuple[str, ...]


@dataclass(frozen=True)
class StabilityTable:
    """One sweep of the stability study in one dtype: each candidate's error at each point."""

    dtype: str
    sweep: str  # "mean" | "M"
    title: str  # "as the input mean grows (M = 256, spread 1)"
    axis: str  # "input mean" | "M"
    candidates: tuple[str, ...]
    points: tuple[float, ...]
    errors: tuple[tuple[float, ...], ...]  # per point, per candidate (inf: overflow, nan: none)


@dataclass(frozen=True)
class StabilitySection:
    """``bnderive.stability``'s study as tables, and a figure: in LaTeX drawn from the tables
    (pgfplots); in Markdown the PNG ``figure`` (a file name beside the report) when one was
    written, else ``figure_note`` says why there is none and how to get it."""

    notes: tuple[str, ...]
    tables: tuple[StabilityTable, ...]
    command: str = ""
    figure: str = ""
    figure_note: str = ""


def stability_section(
    study: Any, figure: str = "", figure_note: str = "", notes: Sequence[str] = ()
) -> StabilitySection:
    """The study's measurements, sweep by sweep, from its own ``series``; ``figure`` the file
    name of its PNG beside a Markdown report, ``notes`` said after the study's own."""
    tables = []
    for dtype in study.dtypes:
        for sweep, title, axis, points in (
            (
                "mean",
                f"as the input mean grows (M = {study.m}, spread {study.spread:g})",
                "input mean",
                study.means,
            ),
            ("M", f"as M grows (input mean {study.size_mean:g})", "M", study.sizes),
        ):
            series = {c: dict(study.series(sweep, dtype, c)) for c in study.candidates}
            errors = tuple(
                tuple(series[c].get(float(p), math.nan) for c in study.candidates) for p in points
            )
            tables.append(
                StabilityTable(
                    dtype, sweep, title, axis, tuple(study.candidates), tuple(points), errors
                )
            )
    return StabilitySection(
        (*study.notes, *notes), tuple(tables), figure=figure, figure_note=figure_note
    )


def error_text(error: float) -> str:
    """An error as a table shows it: 1.2e-07, 0 (exact), overflow/NaN, or – (not measured)."""
    if math.isnan(error):
        return "–"
    if math.isinf(error):
        return "overflow/NaN"
    return "0" if error == 0 else f"{error:.1e}"


@dataclass(frozen=True)
class Report:
    title: str
    summary: Summary
    graphs: tuple[GraphSection, ...] = ()
    truth: tuple[TruthSection, ...] = ()
    forms: tuple[FormSection, ...] = ()
    implementations: tuple[ImplSection, ...] = ()
    code: tuple[CodeSection, ...] = ()
    stability: tuple[Any, ...] = ()
    exit_code: int = 0
    code_notes: tuple[str, ...] = ()  # which modules --code lists, and why those


# -- building -----------------------------------------------------------------------------------------
_NODE = {"x": "x", "mu": "μ", "var": "σ²", "ms": "ms", "xhat": "x̂", "y": "y", "L": "L"}
_LEAF = {"g": "g", "gamma": "γ", "beta": "β", "eps": "ε", "mu": "μ", "var": "σ²"}
_MODE_WORDS = {
    Mode.PER_ACTIVATION: "PER_ACTIVATION: (N, D) input, statistics per feature over the batch",
    Mode.SPATIAL: "SPATIAL: (N, C, H, W) input, statistics per channel over N, H, W",
}


def node_name(name: str) -> str:
    return _NODE.get(name, _LEAF.get(name, name))


def row_title(row: TruthRow) -> str:
    """'forward: μ', 'backward: ∂L/∂σ²'."""
    name = node_name(row.name) if row.kind == "forward" else f"∂L/∂{node_name(row.name[1:])}"
    return f"{row.kind}: {name}"


def graph_section(spec: Spec, modes: Sequence[Mode] = ()) -> GraphSection:
    """The picture's data from the graph itself: every stage's ``parents()``; one reduction
    set, the same in each of ``modes`` (named in the section)."""
    graph = Graph.build(spec)
    stages = [s for s in graph.stages]
    chain = ["x", *(s.name for s in stages)]
    edges: list[GraphEdge] = []
    leaves: list[str] = []
    for stage in stages:
        for parent in stage.parents():
            if parent not in chain:
                if parent not in leaves:
                    leaves.append(parent)
            edges.append(GraphEdge(parent, stage.name))
    adjoints = [GraphEdge(e.target, e.source) for e in reversed(edges) if e.source in chain]
    mode = (
        "; ".join(_MODE_WORDS[m] for m in (modes or (spec.mode,)))
        if spec.norm is Norm.BATCH
        else f"{spec.norm.title}: one reduction set ({spec.mode.value} layout)"
    )
    return GraphSection(
        mode + ("" if spec.training else "; eval mode: μ and σ² are the running statistics"),
        spec.norm.title,
        tuple(chain),
        tuple(leaves),
        tuple(edges),
        tuple(adjoints),
    )


def truth_section(
    spec: Spec, proven: Sequence[ProvenForm], modes: Sequence[Mode] = ()
) -> TruthSection:
    """The staged table of the posts, generated from ``derive`` (index notation, any M), for one
    reduction set: the same in each of ``modes``."""
    from bnderive.core.printing import derivation_view

    rows = tuple(
        TruthRow(step.kind, step.name, step.lhs, step.general, step.meaning)
        for step in derivation_view(spec, instantiate=False)
    )
    return TruthSection(_spec_words(spec, modes), rows, tuple(proven))


def _spec_words(spec: Spec, modes: Sequence[Mode] = ()) -> str:
    from bnderive.core.spec import conventions_text

    where = " and ".join(m.value for m in (modes or (spec.mode,)))
    return (
        f"{spec.norm.title}, {where}: "
        f"{conventions_text(spec.training, spec.unbiased, spec.eps_inside, spec.eps_zero, norm=spec.norm)}"
    )


def proven_forms(forms: Sequence[Form], lines: Sequence[LineResult]) -> list[ProvenForm]:
    """Each form's every-M verdict over its lines that a method compares with a truth."""
    out = []
    for form in forms:
        verdicts = [
            v
            for line in lines
            if line.form == form.name and "general" in line.methods
            for v in line.methods["general"].verdicts
            if v.status is not Status.UNCHECKED
        ]
        statuses = {v.status for v in verdicts}
        status = (
            "refuted"
            if Status.REFUTED in statuses
            else "undecided"
            if Status.UNDECIDED in statuses or not verdicts
            else "holds"
        )
        out.append(ProvenForm(form.name, form.title, status, len(verdicts), form.sources))
    return out


# -- verdicts in words ----------------------------------------------------------------------------------
def _scope(v: Verdict) -> str:
    return v.method_words()


def line_verdict_words(line: LineResult) -> str:
    """The verdict beside a line: holds for every M / exactly at … / randomized / refuted …"""
    status = line.status
    if status is Status.HOLDS:
        general = line.methods.get("general")
        if general is not None and general.status is Status.HOLDS:
            return "holds for every M"
        exact = line.methods.get("exact")
        if exact is not None and exact.status is Status.HOLDS:
            scopes = ", ".join(dict.fromkeys(_exact_scope(v) for v in exact.verdicts))
            return f"holds exactly at {scopes}"
        random = line.methods.get("random")
        if random is not None and random.status is Status.HOLDS:
            v = random.verdicts[0]
            bound = f", error probability ≤ {v.bound:.1e}" if v.bound is not None else ""
            return f"holds, randomized ({_scope(v)}{bound})"
        return "holds"
    if status is Status.REFUTED:
        v = line.first(Status.REFUTED)
        return f"refuted ({_scope(v)})" if v is not None else "refuted"
    if status is Status.UNDECIDED:
        return "undecided"
    return "not checked"


def _exact_scope(v: Verdict) -> str:
    scope = v.scope.removesuffix(" exact").removesuffix(" randomized")
    return f"{v.mode.value} {scope}" if v.mode else scope


def method_rows(line: LineResult) -> tuple[tuple[str, str], ...]:
    words = {"general": "every M", "exact": "exact", "random": "randomized"}
    out = []
    for method, result in line.methods.items():
        scopes = ", ".join(dict.fromkeys(_exact_scope(v) for v in result.verdicts))
        label = words[method] + ("" if method == "general" else f" ({scopes})")
        out.append((label, result.words()))
    return tuple(out)


#: How much of one value a report shows (a randomized counterexample has M = 4096 inputs).
SHOWN = 300


def shorten(value: str, limit: int = SHOWN) -> str:
    """``value`` whole, or its first ``limit`` characters and how long it is."""
    if len(value) <= limit:
        return value
    return f"{value[:limit]}… ({len(value)} characters in all; --json gives them)"


def counterexample_entry(v: Verdict, reference: str, mine: str) -> CounterexampleEntry | None:
    c = v.counterexample
    if c is None:
        return None
    return CounterexampleEntry(
        f"{c.spec.describe()}, {c.spec.set_label(c.channel)}",
        tuple((k, shorten(val)) for k, val in c.inputs.items()),
        c.entry,
        reference,
        shorten(c.truth),
        mine,
        shorten(c.form),
    )


def mistake_entries(matches: Sequence[Any], quantity: str, comes_in: str) -> list[MistakeEntry]:
    """``diagnose.Match`` objects as entries: what is wrong, what is right, the sources."""
    from bnderive.read.corpus import corpus

    out = []
    for match in matches:
        first, wrong, right = match.lines(quantity)
        mutant = corpus().find(match.by[0])
        sources = tuple(dict.fromkeys((*match.mistake.sources, *getattr(mutant, "sources", ()))))
        out.append(
            MistakeEntry(
                match.mistake.title,
                match.mistake.name,
                first.split("; ", 1)[1] if "; " in first else first,
                wrong.split(": ", 1)[1],
                right.split(": ", 1)[1],
                sources,
                comes_in,
            )
        )
    return out


# -- a check's forms as sections ----------------------------------------------------------------------
def _lhs(eq: Equation) -> sp.Basic:
    if eq.index is not None:
        return sp.IndexedBase(eq.name)[eq.index]
    return sp.Symbol(eq.name)


def form_section(form: Form, result: Any, mistakes: Sequence[Any]) -> FormSection:
    """One form of a ``CheckResult`` (``result``) line by line; ``mistakes`` from
    ``verify.mistakes.find_mistakes``."""
    comes_in: dict[int, str] = {}
    said: list[str] = []
    for m in mistakes:
        text = _mistake_words(form, m)
        said.append(text)
        for n in (m.equation, *m.follows, *m.inherits):
            comes_in[n] = text
    entries = _line_entries(form, result, comes_in)
    status = _worst([e.status for e in entries if e.status in ("holds", "refuted", "undecided")])
    counts = tuple(form.counts().items()) if hasattr(form, "counts") else ()
    kind = _form_kind(form)
    return FormSection(
        form.name,
        form.title,
        form.path if kind != "built-in form" else "",
        kind,
        tuple(form.sources),
        form.conventions(),
        status,
        tuple(entries),
        tuple(said),
        counts,
        tuple(form.notes),
    )


def _mistake_words(form: Form, m: Any) -> str:
    """Where an independent mistake comes in, the lines that follow from it and the lines that
    use its value (right given it, wrong because it is)."""
    text = f"the mistake comes in at {_where(form, m.equation)}"
    if m.follows:
        text += (
            "; "
            + ", ".join(_where(form, n) for n in m.follows)
            + (" follows" if len(m.follows) == 1 else " follow")
            + " from it"
        )
    if m.inherits:
        text += (
            "; "
            + ", ".join(_where(form, n) for n in m.inherits)
            + (" uses" if len(m.inherits) == 1 else " use")
            + " its value (right given it, wrong because it is)"
        )
    return text


def _line_entries(form: Form, result: Any, comes_in: dict[int, str]) -> list[LineEntry]:
    """The form's lines as entries: a document's lines that state a value (as written, with
    what was read from them), or a form file's equations, each with its own results."""
    by_equation = {line.equation: line for line in result.lines if line.form == form.name}
    entries: list[LineEntry] = []
    doc_lines = getattr(form, "lines", None)
    if doc_lines is not None:
        for doc in doc_lines:
            if not doc.states_value:
                continue
            own = [by_equation[n] for n in doc.equations if n in by_equation]
            sides = doc.read.sides if doc.read is not None else ()
            entries.append(
                _entry(result, doc.place, doc.defines, sides, doc.latex, own, comes_in, doc)
            )
        return entries
    for eq in form.equations:
        own = [by_equation[eq.number]] if eq.number in by_equation else []
        entries.append(
            _entry(
                result,
                f"equation {eq.number}",
                eq.label,
                (_lhs(eq), eq.expr),
                "",
                own,
                comes_in,
                None,
            )
        )
    return entries


def _form_kind(form: Form) -> str:
    """A derivation document, a form file, or a built-in form (a file among the shipped
    ones)."""
    if getattr(form, "lines", None) is not None:
        return "derivation document"
    return "form file" if form.path and not _builtin(form) else "built-in form"


def _builtin(form: Form) -> bool:
    from bnderive.read.derivations import builtin_forms

    return any(f.name == form.name and f.path == form.path for f in builtin_forms())


def _where(form: Form, equation: int) -> str:
    line_of = getattr(form, "line_of", None)
    doc = line_of(equation) if line_of is not None else None
    return doc.place if doc is not None else f"equation {equation}"


def _worst(statuses: Sequence[str]) -> str:
    for status in ("refuted", "undecided", "holds"):
        if status in statuses:
            return status
    return "undecided"


def _entry(
    result: Any,
    place: str,
    quantity: str,
    sides: Sequence[sp.Basic | None],
    raw: str,
    own: Sequence[LineResult],
    comes_in: dict[int, str],
    doc: Any,
) -> LineEntry:
    """One line of a derivation as an entry: ``own`` are the line's results (several for a
    line with several right sides, none for a line nothing checked), ``doc`` the document's
    line (None for a form file's equation), ``comes_in`` where each known mistake comes in."""
    if not own:
        return _line_without_results(place, quantity, sides, raw, doc)
    if all(line.status is Status.UNCHECKED for line in own):
        return _line_not_compared(place, quantity, sides, own, doc)
    return _checked_line(result, place, quantity, sides, own, comes_in, doc)


def _line_without_results(
    place: str, quantity: str, sides: Sequence[sp.Basic | None], raw: str, doc: Any
) -> LineEntry:
    """A line no method ran on: a definition, a line that could not be read (shown as
    written, as plain text), or one not checked; the document says why."""
    status = doc.status if doc is not None else "not checked"
    if status == "checked":
        status = "not checked"
    reason = doc.reason if doc is not None else ""
    return LineEntry(
        place,
        quantity,
        tuple(sides),
        raw if status == "not read" else "",
        status,
        status if status != "definition" else "a definition: used by later lines",
        reason=reason,
        notes=_notes(doc, reason),
    )


def _line_not_compared(
    place: str,
    quantity: str,
    sides: Sequence[sp.Basic | None],
    own: Sequence[LineResult],
    doc: Any,
) -> LineEntry:
    """A line that was read and run, but that nothing compared with a truth: "not checked",
    with the first method's word on why."""
    details = [v.detail for line in own for v in line.verdicts() if v.detail]
    return LineEntry(
        place,
        quantity or own[0].quantity,
        tuple(sides),
        "",
        "not checked",
        "not checked: " + (details[0] if details else "nothing compares it with a truth"),
        reason=doc.reason if doc is not None else "",
        notes=_notes(doc, doc.reason if doc is not None else ""),
    )


def _checked_line(
    result: Any,
    place: str,
    quantity: str,
    sides: Sequence[sp.Basic | None],
    own: Sequence[LineResult],
    comes_in: dict[int, str],
    doc: Any,
) -> LineEntry:
    """A line a method decided: its verdict (the worst of its members'), the methods' rows
    and what the results found besides (steps, counterexamples, mistakes, the residual)."""
    unchecked = _unchecked_members(doc)
    found = _line_findings(result, place, own, comes_in, in_document=doc is not None)
    return LineEntry(
        place,
        quantity or own[0].quantity,
        tuple(sides),
        "",
        _worst([line.status.value for line in own]),
        _members_verdict(own, unchecked),
        _members_methods(own),
        "; ".join(s for s in found.steps if s),
        doc.reason if doc is not None else "",
        _notes(doc, doc.reason if doc is not None else ""),
        tuple(found.counterexamples),
        found.residual,
        tuple(found.mistakes),
        tuple(found.unexplained),
        unchecked,
    )


def _members_verdict(own: Sequence[LineResult], unchecked: tuple[int, ...]) -> str:
    """The verdict in words: the one result's, or each member's in turn ("member 2: ..."),
    saying which members were not checked (the verdict does not cover them)."""
    if len(own) == 1:
        verdict = line_verdict_words(own[0])
    else:
        verdict = "; ".join(
            f"member {k}: {line_verdict_words(line)}" for k, line in enumerate(own, 1)
        )
    if unchecked:
        which = ", ".join(str(k) for k in unchecked)
        verdict += (
            f"; member{'s' if len(unchecked) > 1 else ''} {which} not checked (not covered "
            "by the verdict)"
        )
    return verdict


def _members_methods(own: Sequence[LineResult]) -> tuple[tuple[str, str], ...]:
    """The (method, what it found) rows of every member, in order."""
    if len(own) == 1:
        return method_rows(own[0])
    return tuple(row for line in own for row in method_rows(line))


@dataclass
class _LineFindings:
    """What a checked line's results found besides the verdict, gathered member by member."""

    steps: list[str] = field(default_factory=list)
    counterexamples: list[CounterexampleEntry] = field(default_factory=list)
    mistakes: list[MistakeEntry] = field(default_factory=list)
    unexplained: list[str] = field(default_factory=list)
    residual: sp.Basic | None = None


def _line_findings(
    result: Any,
    place: str,
    own: Sequence[LineResult],
    comes_in: dict[int, str],
    in_document: bool,
) -> _LineFindings:
    """For each member: whether it follows from the line before (and a counterexample where
    it does not), its counterexample against the truth and the known mistake it makes when
    refuted, why it is open when undecided, and the first residual found."""
    found = _LineFindings()
    for line in own:
        _add_step(found, line, place, in_document)
        if line.status is Status.REFUTED:
            _add_refutation(found, line, result, comes_in)
        if line.status is Status.UNDECIDED:
            found.unexplained += _open_reasons(line)
        found.residual = found.residual or result.residuals.get((line.form, line.equation))
    return found


def _add_step(found: _LineFindings, line: LineResult, place: str, in_document: bool) -> None:
    """Whether ``line`` follows from the line it follows (in words), and the counterexample
    to the step where it does not."""
    step = line.step_status
    if step is None:
        return
    before = f"line {line.follows_line}" if in_document else f"equation {line.follows_line}"
    found.steps.append(
        {
            Status.HOLDS: f"follows from {before}",
            Status.REFUTED: f"does not follow from {before}",
            Status.UNDECIDED: f"not shown to follow from {before}",
            Status.UNCHECKED: "",
        }[step]
    )
    bad = line.first_step(Status.REFUTED)
    if bad is not None:
        entry = counterexample_entry(bad, before, place)
        if entry is not None:
            found.counterexamples.append(entry)


def _add_refutation(
    found: _LineFindings, line: LineResult, result: Any, comes_in: dict[int, str]
) -> None:
    """A refuted member's counterexample against the truth and the known mistakes it matches
    (with where each comes in)."""
    v = line.first(Status.REFUTED)
    entry = counterexample_entry(v, "truth", "form") if v is not None else None
    if entry is not None:
        found.counterexamples.append(entry)
    matches = result.diagnoses.get((line.form, line.equation, line.quantity), [])
    found.mistakes += mistake_entries(matches, line.quantity, comes_in.get(line.equation, ""))


def _open_reasons(line: LineResult) -> list[str]:
    """Why an undecided member is open: each undecided verdict's method and detail."""
    return [
        f"{v.method_words()}: {v.detail}"
        for method in line.methods.values()
        for v in method.verdicts
        if v.status is Status.UNDECIDED
    ]


def _notes(doc: Any, reason: str) -> tuple[str, ...]:
    """A document line's notes, without the one its reason already says."""
    if doc is None:
        return ()
    return tuple(n for n in doc.notes if n != reason)


def _unchecked_members(doc: Any) -> tuple[int, ...]:
    """The right sides (members) of a document line with several that were not checked."""
    members = getattr(doc, "members", ()) if doc is not None else ()
    if len(members) < 2:
        return ()
    return tuple(k for k, number in enumerate(members, 1) if number is None)


# -- an implementation as a section ---------------------------------------------------------------------
def impl_section(report: Any) -> ImplSection:
    """``usercode.check_impl.Report`` as rows, findings and failures."""
    rows = []
    findings = []
    for k, v in enumerate(report.verdicts):
        section = report.sections[k] if k < len(report.sections) else ""
        rows.append(ImplRow(v.form, v.quantity, section, v.scope, v.status.value))
        if v.status in (Status.REFUTED, Status.UNDECIDED):
            diagnosis = tuple(report.diagnosis(k))
            findings.append(
                ImplFinding(
                    v.form,
                    v.quantity,
                    section,
                    v.status.value,
                    v.detail,
                    counterexample_entry(v, "truth", "yours") if v.counterexample else None,
                    diagnosis,
                    tuple(_named_mistakes(diagnosis)),
                )
            )
    return ImplSection(
        report.file,
        report.api,
        report.status,
        tuple(report.calls),
        tuple(rows),
        tuple(findings),
        tuple((f.function, f.message) for f in report.failures),
        tuple(report.notes),
    )


def _named_mistakes(diagnosis: Sequence[str]) -> list[MistakeEntry]:
    """The corpus mistakes a check-impl diagnosis names (``known mistake: title (name)``)."""
    import re

    from bnderive.read.corpus import corpus

    out = []
    known = {m.name: m for m in corpus().mistakes}
    for text in diagnosis:
        if "known mistake" not in text:
            continue
        for name in re.findall(r"\(([a-z0-9-]+)\)", text):
            if name in known and all(e.name != name for e in out):
                m = known[name]
                out.append(MistakeEntry(m.title, m.name, "", m.explanation, m.fix, m.sources))
    return out


# -- the summary ----------------------------------------------------------------------------------------
def versions() -> tuple[tuple[str, str], ...]:
    from bnderive import __version__

    return (("bnderive", __version__), ("SymPy", sp.__version__))


def report_date() -> str | None:
    """The date of SOURCE_DATE_EPOCH (reproducible builds), or none: no clock time otherwise."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not value.isdigit():
        return None
    return time.strftime("%Y-%m-%d", time.gmtime(int(value)))


def verdict_sentence(
    forms: Sequence[FormSection], impls: Sequence[ImplSection], status: str
) -> str:
    parts = []
    for section in forms:
        counted = [e for e in section.lines if e.status in ("holds", "refuted", "undecided")]
        refuted = [e for e in counted if e.status == "refuted"]
        open_ = [e for e in counted if e.status == "undecided"]
        unread = sum(e.status == "not read" for e in section.lines)
        unchecked = sum(e.status == "not checked" for e in section.lines)
        partly = sum(bool(e.unchecked) for e in counted)
        held = len(counted) - len(refuted) - len(open_)
        text = f"{section.name}: {held} of {len(counted)} lines hold"
        if refuted:
            text += f", {len(refuted)} refuted (first at {refuted[0].place})"
        if open_:
            text += f", {len(open_)} undecided"
        if unread:
            text += f", {unread} not read"
        if unchecked:
            text += f", {unchecked} not checked"
        if partly:
            text += f", {partly} with a member not checked"
        if unread or unchecked or partly:
            text += " (not covered by the verdict)"
        parts.append(text)
    for impl in impls:
        bad = [r for r in impl.rows if r.status == "refuted"]
        text = f"{impl.path}: {sum(r.status == 'holds' for r in impl.rows)} of {len(impl.rows)} results hold"
        if bad:
            text += f", {len(bad)} refuted (first {bad[0].function} {bad[0].quantity})"
        if impl.failures:
            text += f", {len(impl.failures)} function(s) could not be checked"
        parts.append(text)
    head = {
        "holds": "Everything checked holds",
        "refuted": "Refuted",
        "undecided": "Undecided",
        "could not check": "Not everything could be checked",
    }[status]
    return f"{head}: {'; '.join(parts)}." if parts else f"{head}: nothing was checked."


def combined_exit(codes: Sequence[int]) -> int:
    """1 refuted, 2 something could not be checked, 3 undecided, 0 all hold (check's order)."""
    for code in (1, 2, 3):
        if code in codes:
            return code
    return 0 if codes else 3


STATUS_OF_EXIT = {0: "holds", 1: "refuted", 2: "could not check", 3: "undecided"}
