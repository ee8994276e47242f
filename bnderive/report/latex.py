"""The report as a LaTeX document that pdflatex compiles with TeX Live's base packages.

The document is printable ASCII only.  Every user string (file names, titles, citations, values,
reasons, the emitted code) goes through ``latex_text``: each character TeX treats specially becomes
a command that typesets that character (``\\textbackslash{}``, ``\\{``, ``{\\ttfamily\\char95}``
for ``_``, ...), a character outside ASCII becomes its LaTeX command (Greek letters, ², √, Σ, …;
accents on Latin letters) or ``[U+XXXX]``, control characters and line breaks become spaces.  So
no user string can open a group, a math mode or a command: ``\\input``, ``\\write18``,
``\\openout`` and ``\\catcode`` arrive as the letters they are.  Mathematics comes only from
``mathtex`` (re-rendered from what the reader parsed, allow-listed).  The packages are those of
texlive-latex-base, -latex-recommended and -pictures (TikZ); every table column has a fixed width
(one pdflatex run suffices); the fonts are Computer Modern's Type 1 (OT1): ``_``, ``"``, ``'``, ``^``, ``~`` are set from the typewriter font, which has them, so that
``pdftotext`` reads back the literal text.

The layout follows the LaTeX of the course handouts bnderive's derivations come from (an article,
numbered sections, display equations, booktabs tables).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence

import sympy as sp

from bnderive.report.mathtex import line_math, safe_math
from bnderive.report.model import (
    CodeSection,
    CounterexampleEntry,
    FormSection,
    GraphSection,
    ImplSection,
    LineEntry,
    MistakeEntry,
    Report,
    StabilitySection,
    StabilityTable,
    Summary,
    TruthSection,
    error_text,
    row_title,
)
from bnderive.report.printers import ReportPrinter

_ASCII = {
    "\\": r"\textbackslash{}",
    "{": r"\{",
    "}": r"\}",
    "$": r"\$",
    "&": r"\&",
    "#": r"\#",
    "%": r"\%",
    "_": r"{\ttfamily\char95}",
    "^": r"{\ttfamily\char94}",
    "~": r"{\ttfamily\char126}",
    '"': r"{\ttfamily\char34}",
    "'": r"{\ttfamily\char13}",
    "`": r"{\ttfamily\char18}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
    "-": "-{}",  # no -- or --- ligatures: a value's minus signs stay as written
}
_MATH = {
    "α": r"\alpha", "β": r"\beta", "γ": r"\gamma", "δ": r"\delta", "ε": r"\epsilon",
    "ζ": r"\zeta", "η": r"\eta", "θ": r"\theta", "ι": r"\iota", "κ": r"\kappa",
    "λ": r"\lambda", "μ": r"\mu", "ν": r"\nu", "ξ": r"\xi", "π": r"\pi", "ρ": r"\rho",
    "σ": r"\sigma", "τ": r"\tau", "φ": r"\phi", "χ": r"\chi", "ψ": r"\psi", "ω": r"\omega",
    "Γ": r"\Gamma", "Δ": r"\Delta", "Θ": r"\Theta", "Λ": r"\Lambda", "Π": r"\Pi",
    "Σ": r"\Sigma", "Φ": r"\Phi", "Ψ": r"\Psi", "Ω": r"\Omega", "∂": r"\partial",
    "√": r"\surd", "·": r"\cdot", "−": "-", "×": r"\times", "≤": r"\leq", "≥": r"\geq",
    "≠": r"\neq", "≈": r"\approx", "→": r"\rightarrow", "←": r"\leftarrow", "∞": r"\infty",
    "∈": r"\in", "∀": r"\forall", "∑": r"\sum", "✓": r"\checkmark", "✗": r"\times",
    "•": r"\bullet", "±": r"\pm", "∝": r"\propto", "⇒": r"\Rightarrow", "≡": r"\equiv",
    "ℓ": r"\ell", "°": r"^{\circ}", "…": r"\ldots", "∘": r"\circ",
}  # fmt: skip
_TEXT = {
    "–": "--", "—": "---", "½": "1/2", "‘": "`", "’": "'", "“": "``", "”": "''", "\u00a0": "~",
    "é": r"\'{e}", "è": r"\`{e}", "ü": r"\"{u}", "ö": r"\"{o}", "ä": r"\"{a}",
}  # fmt: skip
_SUP = dict(zip("⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻ᐟⁿ", "0123456789+-/n", strict=True))
_SUB = dict(zip("₀₁₂₃₄₅₆₇₈₉₊₋ₐₑᵢⱼₖₗₘₙₒₚᵣₛₜᵤᵥₓ", "0123456789+-aeijklmnoprstuvx", strict=True))
_ACCENTS = {
    "\u0301": "'", "\u0300": "`", "\u0302": "^", "\u0308": '"', "\u0303": "~",
    "\u0304": "=", "\u0307": ".", "\u030c": "v", "\u0306": "u", "\u0327": "c",
}  # fmt: skip


def _char(ch: str, code: bool) -> str:
    if ch in _ASCII:
        return _ASCII[ch]
    if ch == " ":
        return "~" if code else " "
    if ch == "/" and not code:
        return "/\\allowbreak{}"  # a long path or address may break after a slash
    if " " < ch < "\x7f":
        return ch
    if ch in "\t\n\r\u2028\u2029":
        return "~" if code and ch == "\t" else " "
    if ch in _MATH:
        return rf"\ensuremath{{{_MATH[ch]}}}"
    if ch in _TEXT:
        return _TEXT[ch] + ("{}" if _TEXT[ch][-1].isalpha() else "")
    if ch in _SUP:
        return rf"\textsuperscript{{{_ASCII.get(_SUP[ch], _SUP[ch])}}}"
    if ch in _SUB:
        return rf"\textsubscript{{{_ASCII.get(_SUB[ch], _SUB[ch])}}}"
    if unicodedata.category(ch).startswith("C"):
        return ""  # a control or format character (bidirectional overrides): nothing to show
    return rf"\texttt{{[U+{ord(ch):04X}]}}"


def latex_text(value: object, code: bool = False) -> str:
    """A user string as LaTeX text that typesets exactly its characters (see the module
    docstring); ``code`` keeps every space (a listing, in the typewriter font)."""
    out: list[str] = []
    text = unicodedata.normalize("NFD", str(value))
    k = 0
    while k < len(text):
        ch = text[k]
        marks = ""
        while k + 1 < len(text) and text[k + 1] in _ACCENTS:
            marks += text[k + 1]
            k += 1
        k += 1
        if marks and ch.isascii() and ch.isalpha():
            piece = ch
            for mark in marks:
                piece = rf"\{_ACCENTS[mark]}{{{piece}}}"
            out.append(piece)
            continue
        composed = unicodedata.normalize("NFC", ch + marks)
        out.append(
            _char(composed, code)
            if len(composed) == 1
            else _char(ch, code) + "".join(_char(m, code) for m in marks)
        )
    return "".join(out)


_STATUS = {
    "holds": r"\textcolor{green!40!black}{\ensuremath{\checkmark}~holds}",
    "refuted": r"\textcolor{red!70!black}{\ensuremath{\times}~refuted}",
    "undecided": r"\textcolor{orange!70!black}{?~undecided}",
    "could not check": r"\textcolor{red!70!black}{could not check}",
    "not checked": r"\textcolor{gray}{not checked}",
    "not read": r"\textcolor{gray}{not read}",
    "definition": r"\textcolor{gray}{definition}",
}
_NODE_TEX = {
    "x": "x", "mu": r"\mu", "var": r"\sigma^{2}", "ms": r"\mathrm{ms}", "xhat": r"\hat{x}",
    "y": "y", "L": "L", "g": "g", "gamma": r"\gamma", "beta": r"\beta", "eps": r"\epsilon",
}  # fmt: skip

PREAMBLE = r"""\documentclass[10pt,a4paper]{article}
\usepackage[margin=2cm]{geometry}
\usepackage{amsmath,amssymb}
\usepackage{array,booktabs,longtable}
\usepackage{xcolor}
\usepackage{tikz}
\usetikzlibrary{arrows.meta}
\ifdefined\pdftrailerid\pdftrailerid{}\fi
\ifdefined\pdfinfoomitdate\pdfinfoomitdate=1\fi
\setlength{\parindent}{0pt}
\setlength{\parskip}{4pt}
\allowdisplaybreaks
"""


#: Only a report with the stability study loads pgfplots (texlive-pictures), for its figures.
PGFPLOTS = "\n\\usepackage{pgfplots}\n\\pgfplotsset{compat=1.18}"


class LatexReport(ReportPrinter):
    """``doprint(report)``: the whole report as a LaTeX document."""

    def text(self, value: object) -> str:
        return latex_text(value)

    def _status(self, status: str) -> str:
        return _STATUS.get(status, self.text(status))

    def _of(self, quantity: str) -> str:
        return f", {self.text(quantity)}" if quantity else ""

    def _display(self, tex: str) -> str:
        return "\\begin{equation*}\n" + tex + "\n\\end{equation*}"

    def _itemize(self, items: Sequence[str]) -> str:
        if not items:
            return ""
        body = "\n".join(f"\\item {item}" for item in items)
        return "\\begin{itemize}\\setlength{\\itemsep}{0pt}\n" + body + "\n\\end{itemize}"

    def _table(self, spec: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
        head = " & ".join(f"\\textbf{{{h}}}" for h in header) + r" \\"
        body = "\n".join(" & ".join(row) + r" \\" for row in rows)
        return (
            f"\\begin{{longtable}}{{{spec}}}\n\\toprule\n{head}\n\\midrule\n\\endhead\n"
            f"{body}\n\\bottomrule\n\\end{{longtable}}"
        )

    # -- the report -----------------------------------------------------------------------------
    def _print_Report(self, report: Report) -> str:
        date = self.text(report.summary.date) if report.summary.date else ""
        version = dict(report.summary.versions).get("bnderive", "")
        parts = [
            PREAMBLE.rstrip() + (PGFPLOTS if report.stability else ""),
            f"\\title{{{self.text(report.title)}}}",
            f"\\author{{bnderive {self.text(version)}}}",
            f"\\date{{{date}}}",
            "\\begin{document}",
            "\\maketitle",
            self._print(report.summary),
        ]
        parts += [self._print(g) for g in report.graphs]
        parts += [self._print(t) for t in report.truth]
        parts += [self._print(f) for f in report.forms]
        parts += [self._print(i) for i in report.implementations]
        if report.code:
            parts.append("\\section{Emitted code}")
            parts.append(self._itemize([self.text(n) for n in report.code_notes]))
            parts += [self._print(c) for c in report.code]
        parts += [self._print(s) for s in report.stability]
        parts.append("\\end{document}")
        return "\n\n".join(p for p in parts if p) + "\n"

    def _print_Summary(self, summary: Summary) -> str:
        items = [f"checked: {self.text(c)}" for c in summary.checked]
        if summary.conventions:
            items.append("conventions: " + "; ".join(self.text(c) for c in summary.conventions))
        items += [f"method: {self.text(m)}" for m in summary.methods]
        if summary.command:
            items.append(f"reproduce: \\texttt{{{latex_text(summary.command, code=True)}}}")
        items.append(
            "versions: " + ", ".join(f"{self.text(n)} {self.text(v)}" for n, v in summary.versions)
        )
        return (
            "\\section{Summary}\n"
            f"\\textbf{{Verdict: {self._status(summary.status)}.}} {self.text(summary.verdict)}\n\n"
            + self._itemize(items)
        )

    def _print_GraphSection(self, graph: GraphSection) -> str:
        step = 2.0
        x_of = {name: k * step for k, name in enumerate(graph.chain)}
        lines = [
            "\\section{The forward graph}",
            f"{self.text(graph.mode)}. Solid arrows are the forward pass; the adjoints "
            "$\\partial L/\\partial\\cdot$ flow back along the dashed ones (one chain-rule "
            "path per edge).",
            "",
            "\\begin{center}",
            "\\begin{tikzpicture}[>={Stealth[length=2mm]}, every node/.style={font=\\small}]",
        ]
        for name in graph.chain:
            lines.append(
                f"\\node[draw, circle, minimum size=8mm] ({name}) at ({x_of[name]:.1f},0) "
                f"{{${_NODE_TEX.get(name, name)}$}};"
            )
        readers: dict[str, int] = {}
        for leaf in graph.leaves:
            target = next(e.target for e in graph.edges if e.source == leaf)
            k = readers.get(target, 0)
            readers[target] = k + 1
            lines.append(
                f"\\node (in-{leaf}) at ({x_of[target] - 0.5 + 0.5 * k:.1f},1.6) "
                f"{{${_NODE_TEX.get(leaf, leaf)}$}};"
            )
        for edge in graph.edges:
            if edge.source in graph.leaves:
                lines.append(f"\\draw[->, gray] (in-{edge.source}) -- ({edge.target});")
                continue
            gap = graph.chain.index(edge.target) - graph.chain.index(edge.source)
            bend = "" if gap == 1 else f", bend left={min(20 + 10 * gap, 60)}"
            lines.append(f"\\draw[->{bend}] ({edge.source}) to ({edge.target});")
        for edge in graph.adjoints:
            gap = graph.chain.index(edge.source) - graph.chain.index(edge.target)
            bend = min(20 + 10 * gap, 60)
            label = ""
            if gap == 1:
                label = (
                    " node[below, font=\\scriptsize] "
                    f"{{$\\frac{{\\partial L}}{{\\partial {_NODE_TEX.get(edge.target, edge.target)}}}$}}"
                )
            lines.append(
                f"\\draw[->, dashed, red!70!black, bend left={bend}] ({edge.source}) to{label} "
                f"({edge.target});"
            )
        lines += ["\\end{tikzpicture}", "\\end{center}"]
        return "\n".join(lines)

    def _print_TruthSection(self, truth: TruthSection) -> str:
        lines = [
            "\\section{Ground truth, stage by stage}",
            f"{self.text(truth.spec)}. Generated by differentiating the forward graph "
            "(\\texttt{bnderive derive}), in index notation for any size $M$ of the reduction "
            "set.",
        ]
        for row in truth.rows:
            tex = safe_math(sp.Eq(row.lhs, row.expr, evaluate=False))
            lines.append(f"\\paragraph{{{self.text(row_title(row))}}} {self.text(row.meaning)}")
            lines.append(self._display(tex) if tex else self.text(row.expr))
        if truth.proven:
            lines.append("\\subsection{The published forms, proven for every M}")
            lines.append(
                "Each form is proven equal to the ground truth above for every $M$, and so to "
                f"each other. Method: {self.text(truth.method)}."
            )
            rows = [
                [
                    self.text(p.name),
                    self.text(p.title),
                    str(p.lines),
                    self._status(p.status) + (" for every $M$" if p.status == "holds" else ""),
                ]
                for p in truth.proven
            ]
            lines.append(
                self._table(
                    "p{2.6cm}p{7.6cm}p{0.9cm}p{3.6cm}", ["form", "title", "lines", "verdict"], rows
                )
            )
            sources = [
                f"{self.text(p.name)}: {self.text(s)}" for p in truth.proven for s in p.sources
            ]
            lines.append("Sources:\n" + self._itemize(sources))
        return "\n".join(lines)

    def _print_FormSection(self, form: FormSection) -> str:
        lines = [
            f"\\section{{{self.text(form.kind.capitalize())}: {self.text(form.name)}}}",
            f"\\textbf{{{self._status(form.status)}.}} {self.text(form.title)}",
        ]
        items = []
        if form.path:
            items.append(f"file: {self.text(form.path)}")
        items.append(f"conventions: {self.text(form.conventions)}")
        items += [f"source: {self.text(s)}" for s in form.sources]
        if form.counts:
            items.append("lines: " + ", ".join(f"{n} {self.text(k)}" for k, n in form.counts if n))
        items += [f"note: {self.text(n)}" for n in form.notes]
        items += [self.text(c) for c in form.comes_in]
        lines.append(self._itemize(items))
        rows = [
            [
                self.text(e.place),
                self.text(e.quantity),
                self._status(e.status),
                self.text(e.how),
                self.text(e.step),
            ]
            for e in form.lines
        ]
        lines.append(
            self._table(
                "p{2.4cm}p{2.0cm}p{2.0cm}p{4.8cm}p{3.4cm}",
                ["line", "quantity", "verdict", "method", "step"],
                rows,
            )
        )
        lines += [self._print(entry) for entry in form.lines]
        return "\n".join(lines)

    def _print_LineEntry(self, entry: LineEntry) -> str:
        lines = [
            f"\\paragraph{{{self.text(entry.place)}{self._of(entry.quantity)}:}} "
            f"{self._status(entry.status)} {self.text(entry.how)}"
        ]
        tex, plain = line_math(entry.sides)
        if tex:
            lines.append(self._display(tex))
        elif plain:
            lines.append(f"as read: {self.text(plain)}")
        elif entry.raw:
            lines.append(f"as written (not read): \\texttt{{{self.text(entry.raw)}}}")
        items = [f"{self.text(m)}: {self.text(w)}" for m, w in entry.methods]
        if entry.step:
            items.append(f"step: {self.text(entry.step)}")
        if entry.reason:
            items.append(f"why: {self.text(entry.reason)}")
        items += [f"note: {self.text(n)}" for n in entry.notes]
        items += [f"open: {self.text(u)}" for u in entry.unexplained]
        lines.append(self._itemize(items))
        lines += [self._print(c) for c in entry.counterexamples]
        if entry.residual is not None:
            tex = safe_math(entry.residual)
            lines.append("What the line is off by (truth $-$ line):")
            lines.append(self._display(tex) if tex else self.text(entry.residual))
        lines += [self._print(m) for m in entry.mistakes]
        return "\n".join(line for line in lines if line)

    def _print_CounterexampleEntry(self, c: CounterexampleEntry) -> str:
        rows = [[self.text(k), self.text(v)] for k, v in c.inputs]
        rows.append(
            [f"{self.text(c.entry)}: {self.text(c.reference)}", self.text(c.reference_value)]
        )
        rows.append([f"{self.text(c.entry)}: {self.text(c.mine)}", self.text(c.value)])
        return f"Counterexample at {self.text(c.where)}:\n" + self._table(
            "p{6cm}p{9cm}", ["", "value"], rows
        )

    def _print_MistakeEntry(self, m: MistakeEntry) -> str:
        items = []
        if m.how:
            items.append(f"found: {self.text(m.how)}")
        items.append(f"what is wrong: {self.text(m.wrong)}")
        items.append(f"what is right: {self.text(m.right)}")
        items += [f"source: {self.text(s)}" for s in m.sources]
        if m.comes_in:
            items.append(f"where: {self.text(m.comes_in)}")
        return (
            f"\\textbf{{Known mistake: {self.text(m.title)}}} ({self.text(m.name)})\n"
            + self._itemize(items)
        )

    def _print_ImplSection(self, impl: ImplSection) -> str:
        lines = [
            f"\\section{{Implementation: {self.text(impl.path)}}}",
            f"\\textbf{{{self._status(impl.status)}.}} {self.text(impl.api)} API",
            self._itemize([f"called: {self.text(c)}" for c in impl.calls]),
        ]
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
        lines.append(
            self._table(
                "p{3.2cm}p{1.9cm}p{3.0cm}p{4.2cm}p{2.2cm}",
                ["function", "quantity", "mode", "method", "verdict"],
                rows,
            )
        )
        for f in impl.findings:
            lines.append(
                f"\\paragraph{{{self.text(f.function)}: {self.text(f.quantity)}}} "
                f"({self.text(f.section)}): {self._status(f.status)}"
            )
            if f.detail and f.counterexample is None:
                lines.append(self.text(f.detail))
            if f.counterexample is not None:
                lines.append(self._print(f.counterexample))
            if f.diagnosis and not f.mistakes:
                lines.append(self._itemize([self.text(d) for d in f.diagnosis]))
            lines += [self._print(m) for m in f.mistakes]
        for function, message in impl.failures:
            lines.append(
                f"\\paragraph{{{self.text(function)}: could not be checked.}} {self.text(message)}"
            )
        if impl.notes:
            lines.append(self._itemize([f"note: {self.text(n)}" for n in impl.notes]))
        return "\n".join(line for line in lines if line)

    def _print_CodeSection(self, code: CodeSection) -> str:
        listing = "\n".join(
            (latex_text(line, code=True) or "\\mbox{}") + r"\\"
            for line in code.source.rstrip().splitlines()
        )
        return "\n".join(
            [
                f"\\subsection{{{self.text(code.form)}, {self.text(code.mode)}, "
                f"{self.text(code.target)}}}",
                "Verified before it was listed, in a separate process:",
                self._itemize([self.text(v) for v in code.verified]),
                "{\\ttfamily\\scriptsize\\raggedright",
                listing,
                "}",
            ]
        )

    def _print_StabilitySection(self, section: StabilitySection) -> str:
        lines = [
            "\\section{Stability: the relative error in floating point}",
            "$\\max|\\mathrm{got} - \\mathrm{exact}| / \\max|\\mathrm{exact}|$ of "
            "$\\partial L/\\partial x$ for each form and emitted kernel (of $\\sigma^2$ for "
            "the one-pass and two-pass variance), against the exact value at the same rounded "
            "inputs; 0 is exact, -- not measured (the inputs do not fit the dtype). The figures "
            "leave out the points a logarithmic axis cannot show (mean 0, error 0, overflow).",
            self._itemize([self.text(n) for n in section.notes]),
        ]
        for table in section.tables:
            lines.append(f"\\subsection{{{self.text(table.dtype)}: {self.text(table.title)}}}")
            lines.append(self._figure(table))
            width = f"{12.5 / max(1, len(table.candidates)):.2f}cm"
            spec = "p{1.6cm}" + f"p{{{width}}}" * len(table.candidates)
            header = [self.text(table.axis)] + [self.text(c) for c in table.candidates]
            rows = [
                [self.text(f"{point:g}")] + [self.text(error_text(e)) for e in errors]
                for point, errors in zip(table.points, table.errors, strict=True)
            ]
            lines.append("{\\small " + self._table(spec, header, rows) + "}")
        return "\n".join(lines)

    def _figure(self, table: StabilityTable) -> str:
        """A log-log plot (pgfplots) of each candidate's error along the sweep."""
        marks = ["*", "square*", "triangle*", "diamond*", "o", "square", "triangle", "diamond"]
        plots = []
        for k, candidate in enumerate(table.candidates):
            points = [
                f"({point:.6g},{errors[k]:.6g})"
                for point, errors in zip(table.points, table.errors, strict=True)
                if point > 0 and math.isfinite(errors[k]) and errors[k] > 0
            ]
            if not points:
                continue
            plots.append(
                f"\\addplot+[mark={marks[k % len(marks)]}] coordinates {{{' '.join(points)}}};"
                f"\n\\addlegendentry{{{self.text(candidate)}}}"
            )
        if not plots:
            return ""
        return "\n".join(
            [
                "\\begin{center}",
                "\\begin{tikzpicture}",
                "\\begin{loglogaxis}[width=12cm, height=6.5cm, "
                f"xlabel={{{self.text(table.axis)}}}, ylabel={{relative error}}, "
                "legend pos=outer north east, legend style={font=\\scriptsize}]",
                *plots,
                "\\end{loglogaxis}",
                "\\end{tikzpicture}",
                "\\end{center}",
            ]
        )


def latex(report: Report) -> str:
    return LatexReport().doprint(report)


_ = re

__all__ = ["LatexReport", "latex", "latex_text"]
