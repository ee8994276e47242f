"""The report as Markdown for a post or a README: GitHub renders its ``$$`` blocks and Mermaid.

Every user string (file names, titles, citations, values, reasons) goes through ``text``, which
backslash-escapes every ASCII punctuation character that can start markup (CommonMark allows the
escape for all of them: no emphasis, code, link, HTML tag or entity, table cell or ``$`` math can
start from a user string) and drops control characters and line breaks; mathematics only through ``mathtex`` (re-rendered from what was parsed, allow-listed);
code listings in a fence longer than any run of backticks in them.  The style of the sections
follows the Markdown of the posts bnderive reads (a heading, a few bullet lines, the formula in a
``$$`` block on lines of its own, a small table).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import quote

import sympy as sp

from bnderive.report.mathtex import line_math, safe_math
from bnderive.report.model import (
    MARKS,
    CodeSection,
    CounterexampleEntry,
    FormSection,
    GraphSection,
    ImplSection,
    LineEntry,
    MistakeEntry,
    Report,
    StabilitySection,
    Summary,
    TruthSection,
    error_text,
    node_name,
    row_title,
)
from bnderive.report.printers import ReportPrinter

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
#: What could start markup in a line of Markdown text: emphasis, code, links, HTML, entities,
#: table cells, strikethrough, a heading, maths (GitHub's $).
_PUNCTUATION = re.compile(r"([\\`*_{}\[\]<>#|$&~])")
#: The stability figure's alternative text (the PNG beside the report).
FIGURE_ALT = (
    "The stability study: relative error of dL/dx against the input mean and against M, and "
    "of the one-pass and two-pass variance"
)
_STATUS_WORDS = {
    "holds": "✓ holds",
    "refuted": "✗ refuted",
    "undecided": "? undecided",
    "could not check": "✗ could not check",
    "not checked": "· not checked",
}


def markdown_text(value: object) -> str:
    """A user string as Markdown text: one line, every character that can start markup escaped."""
    one_line = " ".join(_CONTROL.sub(" ", str(value)).split())
    return _PUNCTUATION.sub(r"\\\1", one_line)


class MarkdownReport(ReportPrinter):
    """``doprint(report)``: the whole report as GitHub-flavoured Markdown."""

    def text(self, value: object) -> str:
        return markdown_text(value)

    # -- helpers ------------------------------------------------------------------------------------
    def _math_block(self, tex: str) -> str:
        return f"$$\n{tex}\n$$"

    def _table(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(out)

    def _code(self, source: str, language: str) -> str:
        longest = max((len(run) for run in re.findall(r"`+", source)), default=0)
        fence = "`" * max(3, longest + 1)
        return f"{fence}{language}\n{source.rstrip()}\n{fence}"

    def _status(self, status: str) -> str:
        return _STATUS_WORDS.get(status, status)

    # -- the report ---------------------------------------------------------------------------------
    def _print_Report(self, report: Report) -> str:
        parts = [f"# {self.text(report.title)}", self._print(report.summary)]
        parts += [self._print(g) for g in report.graphs]
        parts += [self._print(t) for t in report.truth]
        parts += [self._print(f) for f in report.forms]
        parts += [self._print(i) for i in report.implementations]
        if report.code:
            parts.append("## Emitted code")
            parts += ["\n".join(f"- {self.text(n)}" for n in report.code_notes)]
            parts += [self._print(c) for c in report.code]
        parts += [self._print(s) for s in report.stability]
        return "\n\n".join(p for p in parts if p) + "\n"

    def _print_Summary(self, summary: Summary) -> str:
        lines = ["## Summary", ""]
        lines.append(f"**Verdict: {self._status(summary.status)}.** {self.text(summary.verdict)}")
        lines.append("")
        lines += [f"- checked: {self.text(c)}" for c in summary.checked]
        if summary.conventions:
            lines.append("- conventions: " + "; ".join(self.text(c) for c in summary.conventions))
        lines += [f"- method: {self.text(m)}" for m in summary.methods]
        if summary.command:
            lines.append(f"- reproduce: {self._code_span(summary.command)}")
        lines.append(
            "- versions: "
            + ", ".join(f"{self.text(n)} {self.text(v)}" for n, v in summary.versions)
        )
        if summary.date:
            lines.append(f"- date: {self.text(summary.date)}")
        return "\n".join(lines)

    def _code_span(self, value: str) -> str:
        one_line = " ".join(_CONTROL.sub(" ", value).split())
        longest = max((len(run) for run in re.findall(r"`+", one_line)), default=0)
        ticks = "`" * (longest + 1)
        pad = " " if one_line.startswith("`") or one_line.endswith("`") else ""
        return f"{ticks}{pad}{one_line}{pad}{ticks}"

    def _print_GraphSection(self, graph: GraphSection) -> str:
        # ids with a prefix: a node named x or o right after a link would make a cross or
        # circle edge (Mermaid's flowchart syntax), and `end` would close a subgraph
        ids = {name: "n_" + re.sub(r"[^A-Za-z0-9]", "_", name) for name in graph.chain}
        ids |= {name: "in_" + re.sub(r"[^A-Za-z0-9]", "_", name) for name in graph.leaves}
        lines = [
            f"## The forward graph: {self.text(graph.mode)}",
            "",
            "Forward edges are solid; the adjoints ∂L/∂· flow back along the dotted ones.",
            "",
            "```mermaid",
            "flowchart LR",
        ]
        for name in graph.chain:
            lines.append(f'  {ids[name]}(["{node_name(name)}"])')
        for name in graph.leaves:
            lines.append(f'  {ids[name]}["{node_name(name)}"]')
        for edge in graph.edges:
            lines.append(f"  {ids[edge.source]} --> {ids[edge.target]}")
        for edge in graph.adjoints:
            lines.append(
                f'  {ids[edge.source]} -. "∂L/∂{node_name(edge.target)}" .-> {ids[edge.target]}'
            )
        lines.append("```")
        return "\n".join(lines)

    def _print_TruthSection(self, truth: TruthSection) -> str:
        lines = [f"## Ground truth, stage by stage: {self.text(truth.spec)}", ""]
        lines.append(
            "Generated by differentiating the forward graph (`bnderive derive`), in index "
            "notation for any size M of the reduction set."
        )
        for row in truth.rows:
            tex = safe_math(sp.Eq(row.lhs, row.expr, evaluate=False))
            lines += ["", f"**{self.text(row_title(row))}**: {self.text(row.meaning)}"]
            lines += ["", self._math_block(tex) if tex else self.text(row.expr)]
        if truth.proven:
            lines += ["", "### The published forms, proven for every M", ""]
            lines.append(
                "Each form is proven equal to the ground truth above for every M, and so to "
                f"each other. Method: {self.text(truth.method)}."
            )
            lines.append("")
            rows = [
                [
                    self.text(p.name),
                    self.text(p.title),
                    str(p.lines),
                    self._status(p.status) + (" for every M" if p.status == "holds" else ""),
                ]
                for p in truth.proven
            ]
            lines.append(self._table(["form", "title", "lines", "verdict"], rows))
            for p in truth.proven:
                for source in p.sources:
                    lines.append(f"\n- {self.text(p.name)}: {self.text(source)}")
        return "\n".join(lines)

    def _print_FormSection(self, form: FormSection) -> str:
        lines = [f"## {self.text(form.kind.capitalize())}: {self.text(form.name)}", ""]
        lines.append(f"**{self._status(form.status)}.** {self.text(form.title)}")
        lines.append("")
        if form.path:
            lines.append(f"- file: {self.text(form.path)}")
        lines.append(f"- conventions: {self.text(form.conventions)}")
        lines += [f"- source: {self.text(s)}" for s in form.sources]
        if form.counts:
            lines.append(
                "- lines: " + ", ".join(f"{n} {self.text(k)}" for k, n in form.counts if n)
            )
        lines += [f"- note: {self.text(n)}" for n in form.notes]
        lines += [f"- {self.text(c)}" for c in form.comes_in]
        lines.append("")
        rows = [
            [
                self.text(e.place),
                self.text(e.quantity),
                f"{MARKS.get(e.status, '')} {self.text(e.verdict)}",
                self.text(e.step),
            ]
            for e in form.lines
        ]
        lines.append(self._table(["line", "quantity", "verdict", "step"], rows))
        for entry in form.lines:
            lines += ["", self._print(entry)]
        return "\n".join(lines)

    def _print_LineEntry(self, entry: LineEntry) -> str:
        head = (
            f"**{self.text(entry.place)}**{' ' + self.text(entry.quantity) if entry.quantity else ''}: "
            f"{MARKS.get(entry.status, '')} {self.text(entry.verdict)}"
        )
        lines = [head, ""]
        tex, plain = line_math(entry.sides)
        if tex:
            lines += [self._math_block(tex), ""]
        elif plain:
            lines += [f"as read: {self.text(plain)}", ""]
        elif entry.raw:
            lines += [f"as written (not read): {self.text(entry.raw)}", ""]
        items = [f"- {self.text(m)}: {self.text(w)}" for m, w in entry.methods]
        if entry.step:
            items.append(f"- step: {self.text(entry.step)}")
        if entry.reason:
            items.append(f"- why: {self.text(entry.reason)}")
        items += [f"- note: {self.text(n)}" for n in entry.notes]
        items += [f"- open: {self.text(u)}" for u in entry.unexplained]
        lines += items
        for c in entry.counterexamples:
            lines += ["", self._print(c)]
        if entry.residual is not None:
            tex = safe_math(entry.residual)
            lines += ["", "What the line is off by (truth − line):", ""]
            lines.append(self._math_block(tex) if tex else self.text(entry.residual))
        for m in entry.mistakes:
            lines += ["", self._print(m)]
        return "\n".join(lines).rstrip()

    def _print_CounterexampleEntry(self, c: CounterexampleEntry) -> str:
        rows = [[self.text(k), self.text(v)] for k, v in c.inputs]
        rows.append(
            [f"{self.text(c.entry)}: {self.text(c.reference)}", self.text(c.reference_value)]
        )
        rows.append([f"{self.text(c.entry)}: {self.text(c.mine)}", self.text(c.value)])
        return f"Counterexample at {self.text(c.where)}:\n\n" + self._table(["", "value"], rows)

    def _print_MistakeEntry(self, m: MistakeEntry) -> str:
        lines = [f"**Known mistake: {self.text(m.title)}** ({self.text(m.name)})"]
        if m.how:
            lines.append(f"- found: {self.text(m.how)}")
        lines.append(f"- what is wrong: {self.text(m.wrong)}")
        lines.append(f"- what is right: {self.text(m.right)}")
        lines += [f"- source: {self.text(s)}" for s in m.sources]
        if m.comes_in:
            lines.append(f"- where: {self.text(m.comes_in)}")
        return "\n".join(lines)

    def _print_ImplSection(self, impl: ImplSection) -> str:
        lines = [f"## Implementation: {self.text(impl.path)}", ""]
        lines.append(f"**{self._status(impl.status)}.** {self.text(impl.api)} API")
        lines.append("")
        lines += [f"- called: {self.text(c)}" for c in impl.calls]
        lines.append("")
        rows = [
            [
                self.text(r.function),
                self.text(r.quantity),
                self.text(r.section),
                self.text(r.method),
                self._status(r.status),
            ]
            for r in impl.rows
        ]
        lines.append(self._table(["function", "quantity", "mode", "method", "verdict"], rows))
        for f in impl.findings:
            lines += [
                "",
                f"**{self.text(f.function)}: {self.text(f.quantity)}** ({self.text(f.section)}): "
                f"{self._status(f.status)}",
            ]
            if f.detail and f.counterexample is None:
                lines += ["", self.text(f.detail)]
            if f.counterexample is not None:
                lines += ["", self._print(f.counterexample)]
            if f.diagnosis and not f.mistakes:
                lines += [""] + [f"- {self.text(d)}" for d in f.diagnosis]
            for m in f.mistakes:
                lines += ["", self._print(m)]
        for function, message in impl.failures:
            lines += ["", f"**{self.text(function)}: could not be checked.** {self.text(message)}"]
        if impl.notes:
            lines.append("")
            lines += [f"- note: {self.text(n)}" for n in impl.notes]
        return "\n".join(lines)

    def _print_CodeSection(self, code: CodeSection) -> str:
        lines = [
            f"### {self.text(code.form)}, {self.text(code.mode)}, {self.text(code.target)}",
            "",
            "Verified before it was listed, in a separate process:",
            "",
        ]
        lines += [f"- {self.text(v)}" for v in code.verified]
        lines += ["", self._code(code.source, "python")]
        return "\n".join(lines)

    def _print_StabilitySection(self, section: StabilitySection) -> str:
        lines = ["## Stability: the relative error in floating point", ""]
        lines.append(
            "max|got − exact| / max|exact| of ∂L/∂x for each form and emitted kernel (of σ² for "
            "the one-pass and two-pass variance), against the exact value at the same rounded "
            "inputs; 0 is exact, – not measured (the inputs do not fit the dtype)."
        )
        lines.append("")
        lines += [f"- {self.text(n)}" for n in section.notes]
        if section.figure:
            lines += ["", f"![{FIGURE_ALT}]({quote(section.figure)})"]
        elif section.figure_note:
            lines += ["", f"No figure: {self.text(section.figure_note)}"]
        for table in section.tables:
            lines += ["", f"### {self.text(table.dtype)}: {self.text(table.title)}", ""]
            header = [self.text(table.axis)] + [self.text(c) for c in table.candidates]
            rows = [
                [self.text(f"{point:g}")] + [self.text(error_text(e)) for e in errors]
                for point, errors in zip(table.points, table.errors, strict=True)
            ]
            lines.append(self._table(header, rows))
        return "\n".join(lines)


def markdown(report: Report) -> str:
    return MarkdownReport().doprint(report)


__all__ = ["MarkdownReport", "markdown", "markdown_text"]
