"""The lesson in the terminal: rich text, one step at a time, readable at 80 columns.

``steps(lesson, parts)`` yields the walkthrough as a sequence of rich renderables, one per step
of the lesson (a stage of the forward pass, an adjoint, a closed form, a trap), so that the
command line can wait for Enter between them.  Mathematics is written by the teaching printers
(``teach.printers``), numbers as exact fractions with short decimals beside them; everything is
``rich.text.Text`` built piece by piece (no markup is parsed, so a ``[`` in a value is a ``[``),
indented with ``Padding`` so that a wrapped line keeps its indentation.  Colour is decoration
only: with NO_COLOR (rich honours it) every word is still there.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from bnderive.core.notation import reference
from bnderive.core.spec import Norm
from bnderive.teach.graph_view import LEAVES, pad, picture
from bnderive.teach.lesson import BackwardStep, FormRun, ForwardStep, Lesson, Trap
from bnderive.teach.printers import Value, decimal, exact, is_exact_decimal, unicode

PARTS = ("forward", "backward", "forms", "traps")

#: Styles: formulas, values, comments, verdicts.
FORMULA = "bold cyan"
VALUE = "bold"
DIM = "dim"
GOOD = "green"
BAD = "bold red"
WARN = "yellow"

_NODE_WORDS = {"xhat": "x̂", "var": "σ²", "ms": "ms", "mu": "μ", "y": "y", "L": "L"}
_COUNT = {1: "One closed form", 2: "Two closed forms", 3: "Three closed forms"}


def steps(lesson: Lesson, parts: Sequence[str] = PARTS) -> Iterator[RenderableType]:
    """The walkthrough of the chosen parts, one renderable per step (the header first)."""
    yield header(lesson)
    sections = {"forward": forward, "backward": backward, "forms": forms, "traps": traps}
    for number, name in enumerate(PARTS, start=1):
        if name in parts:
            yield from sections[name](lesson, number)


# -- pieces ---------------------------------------------------------------------------------------
def _indent(renderable: RenderableType, columns: int) -> Padding:
    """Indented by ``columns``; a wrapped line keeps the indentation."""
    return Padding(renderable, (0, 0, 0, columns))


def _numbered(label: str, heading: Text, body: Sequence[RenderableType]) -> Table:
    """'2.5 heading' with the body below the heading: a two-column grid, so that every wrapped
    line stays indented past the label."""
    grid = Table.grid(padding=(0, 1, 0, 0))
    grid.add_column(no_wrap=True)
    grid.add_column()
    grid.add_row(Text(label), Group(heading, *body))
    return grid


def _heading(lhs: str, meaning: str) -> Text:
    text = Text(lhs, style=FORMULA)
    if meaning:
        text.append(f"   {meaning}", style=DIM)
    return text


def _has_fraction(value: Value) -> bool:
    values = value if isinstance(value, tuple) else (value,)
    return any(v.denominator != 1 for v in values)


def _values(value: Value) -> Text:
    """'= -12/13' and, below it, '≈ -0.9231' (or '= 1.2' when the decimal is the value)."""
    text = Text("= ")
    text.append(exact(value), VALUE)
    if _has_fraction(value):
        sign = "=" if is_exact_decimal(value) else "≈"
        text.append(f"\n{sign} {decimal(value)}", DIM)
    return text


def inline(value: Value) -> str:
    """'-12/13 ≈ -0.9231' on one line."""
    text = exact(value)
    if _has_fraction(value):
        sign = "=" if is_exact_decimal(value) else "≈"
        text += f" {sign} {decimal(value)}"
    return text


def _section(number: int, title: str) -> Rule:
    return Rule(Text(f"{number}. {title}", style="bold"), align="left", style=DIM)


def _intro(text: str) -> Text:
    return Text(text, style=DIM)


# -- header ---------------------------------------------------------------------------------------
def header(lesson: Lesson) -> RenderableType:
    b = lesson.batch
    norm = b.spec.norm
    if norm is Norm.BATCH:
        title = Text("BatchNorm's backward pass on a tiny batch, every number exact", style="bold")
    else:
        title = Text(
            f"{norm.title}'s backward pass on a tiny set, every number exact", style="bold"
        )
    layout = Text(f"{b.spec.describe()}, seed {b.seed}", style=DIM)
    shown = b.positions()[: min(3, b.m)]
    where = ", ".join("x[" + ",".join(map(str, p)) + "]" for p in shown)
    where += ", …" if b.m > 3 else ""
    rows = [
        _input_row("x", exact(b.x), f"the reduction set: {where}"),
        _input_row("g", exact(b.g), "∂L/∂y, the upstream gradient"),
    ]
    radicand = "σ²" if norm.centred else "ms"
    if isinstance(b.gamma, tuple):  # one γᵢ (and βᵢ) per element of the set
        rows.append(_input_row("γ", exact(b.gamma), _AFFINE[norm]))
        if b.beta is not None:
            rows.append(_input_row("β", exact(b.beta), _AFFINE[norm].replace("scale", "shift")))
        scalars = Text("ε = ")
    else:
        scalars = Text("γ = ")
        scalars.append(exact(b.gamma), VALUE)
        scalars.append(",  β = ")
        scalars.append(exact(b.beta), VALUE)  # type: ignore[arg-type]
        scalars.append(",  ε = ")
    scalars.append(exact(b.eps), VALUE)
    scalars.append(f"   chosen so that √({radicand} + ε) = {exact(b.root)} is rational", DIM)
    rows.append(scalars)
    return Group(title, layout, Text(""), _indent(Group(*rows), 2))


_AFFINE = {
    Norm.LAYER: "the scale, one per feature",
    Norm.RMS: "the weight, one per feature (no shift)",
    Norm.GROUP: "the scale of each element's channel",
}


def _input_row(name: str, value: str, comment: str) -> Text:
    text = Text(f"{name} = ")
    text.append(value, VALUE)
    text.append(f"   {comment}", DIM)
    return text


# -- 1. forward -----------------------------------------------------------------------------------
def forward(lesson: Lesson, number: int = 1) -> Iterator[RenderableType]:
    yield Group(Text(""), _section(number, "The forward pass"), graph_picture(lesson))
    for k, step in enumerate(lesson.forward, start=1):
        yield forward_step(f"{number}.{k}", step)


def graph_picture(lesson: Lesson) -> RenderableType:
    """The forward graph of ``core.graph``, each node with the formula that defines it."""
    formulas = {s.name: s for s in lesson.forward}
    intro = _intro(
        "The forward graph (bnderive's own, the one it differentiates): each node reads the "
        "nodes whose lanes run into it."
    )
    text = Text()
    for row in picture(lesson.graph):
        text.append(row.lanes + "  ")
        step = formulas.get(row.node)
        if step is not None:
            text.append(unicode(step.lhs), FORMULA)
            text.append(f" = {unicode(step.formula)}")
        else:
            text.append(pad(row.name, 3), FORMULA)
            text.append(LEAVES.get(row.node, "input"), DIM)
        text.append("\n")
    text.rstrip()
    return Group(intro, Text(""), _indent(text, 2))


def forward_step(label: str, step: ForwardStep) -> RenderableType:
    body: list[RenderableType] = []
    formula = unicode(step.formula)
    if formula != unicode(step.lhs):
        body.append(Text(f"= {formula}"))
    body.append(_values(step.value))
    return Group(Text(""), _numbered(label, _heading(unicode(step.lhs), step.meaning), body))


# -- 2. backward ----------------------------------------------------------------------------------
def backward(lesson: Lesson, number: int = 2) -> Iterator[RenderableType]:
    intro = _intro(
        "Each adjoint ∂L/∂v sums, over the stages u that read v, ∂L/∂u·∂u/∂v (the chain "
        "rule; ∂u/∂v is SymPy's diff of the graph's stage), in the order a backward pass "
        "computes them. Later lines use the earlier adjoints by name."
    )
    yield Group(Text(""), _section(number, "The backward pass"), intro)
    for k, step in enumerate(lesson.backward, start=1):
        yield backward_step(f"{number}.{k}", step)


def backward_step(label: str, step: BackwardStep) -> RenderableType:
    lhs = unicode(step.lhs)
    chain = unicode(step.chain)
    body: list[RenderableType] = []
    if chain != lhs:
        body.append(Text(f"= {chain}"))
    if len(step.paths) == 1:
        formula = unicode(step.formula)
        if formula != chain:
            body.append(Text(f"= {formula}"))
    else:
        for path in step.paths:
            via = Text(f"via {_NODE_WORDS.get(path.via, path.via)}: ", style=DIM)
            via.append(f"{unicode(path.expr)} = {inline(path.value)}", style="")
            body.append(via)
    body.append(_values(step.value))
    if not step.paths_add_up:
        body.append(Text("✗ the paths do not add up to the adjoint (a bug)", style=BAD))
    return Group(Text(""), _numbered(label, _heading(lhs, step.meaning), body))


# -- 3. closed forms ------------------------------------------------------------------------------
def forms(lesson: Lesson, number: int = 3) -> Iterator[RenderableType]:
    where = "batch" if lesson.batch.spec.norm is Norm.BATCH else "set"
    intro = _intro(
        "The published closed forms (derivations/), each evaluated line by line at the same "
        f"{where}, every line with the form's own earlier lines; ✓: equal to the chain rule's "
        "value, exactly."
    )
    count = _COUNT.get(len(lesson.forms), f"{len(lesson.forms)} closed forms")
    yield Group(Text(""), _section(number, f"{count}, the same numbers"), intro)
    for k, run in enumerate(lesson.forms, start=1):
        yield form_run(f"{number}.{k}", run)


def form_run(label: str, run: FormRun) -> RenderableType:
    form = run.form
    title = Text(form.name, style="bold")
    title.append(f": {form.title}", style="")
    body: list[RenderableType] = []
    if form.sources:
        body.append(Text(form.sources[0], style=DIM))
    for line in run.lines:
        eq = line.equation
        text = Text(unicode(reference(eq.name, eq.index)), style=FORMULA)
        text.append(f" = {unicode(eq.expr)}", style="")
        value = Text(f"= {inline(line.value)}")
        if line.truth is None:
            value.append("  (a helper: not compared)", DIM)
        elif line.agrees:
            value.append("  ✓", GOOD)
        else:
            value.append(f"  ✗ the chain rule gives {inline(line.truth)}", BAD)
        body.append(_numbered(f"{eq.number}.", text, [value]))
    return Group(Text(""), _numbered(label, title, body))


# -- 4. traps -------------------------------------------------------------------------------------
def traps(lesson: Lesson, number: int = 4) -> Iterator[RenderableType]:
    intro = _intro(
        "Each trap computed, exactly: what a weak derivation or a weak test gets away with."
    )
    yield Group(Text(""), _section(number, "Traps"), intro)
    for k, trap in enumerate(lesson.traps, start=1):
        yield trap_view(f"{number}.{k}", trap)


def trap_view(label: str, trap: Trap) -> RenderableType:
    title = Text(trap.title, style="bold")
    body: list[RenderableType] = [Text(trap.setup, style=DIM)]
    for row in trap.rows:
        text = Text(row.label)
        if row.value is not None:
            text.append(": ")
            text.append(inline(row.value), VALUE)
        if row.note:
            note = f"  ({row.note})" if row.value is not None else f": {row.note}"
            text.append(note, _note_style(row.note))
        body.append(text)
    moral = Text("→ ", style="bold")
    moral.append(trap.moral)
    body.append(moral)
    if trap.sources:
        body.append(Text(f"source: {trap.sources[0]}", style=DIM))
    if not trap.holds:
        body.append(Text("✗ the computation did not show this (a bug)", style=BAD))
    return Group(Text(""), _numbered(label, title, body))


def _note_style(note: str) -> str:
    if "DIFFERENT" in note or "NOT" in note:
        return BAD
    return WARN if "passes" in note or "fails" in note else GOOD


__all__ = ["PARTS", "inline", "steps"]
