"""Derivation documents: a Markdown, LaTeX or Jupyter file with display math, read as a ``Form``.

A document is what a post or a lecture note is: prose, and display math holding the derivation
as chains of equalities.  bnderive reads the ``align``, ``align*``, ``aligned``, ``eqnarray``,
``equation``, ``gather``, ``split`` and ``multline`` blocks, ``$$ … $$`` and ``\\[ … \\]``,
``\\( … \\)``, inline ``$ … $`` holding an equation (Markdown), the maths of ``<script
type="math/tex">`` (Markdown), the Markdown cells of a notebook (``.ipynb``), and bare equations
in a ``.tex`` file that has no display block.  Each ``\\\\``-separated line is read on its own: a
line bnderive cannot read is "not read" (with its line, column, token and what would be needed)
and the others are checked.  A line whose right side continues on the next row (``… =\\\\`` then
``&= …``, or a row that starts with ``&+``/``&-``) is joined with it first.

What a line is decides what it is checked against (``latex_results.LineRead``):

* ``∂L/∂x̂_i = …`` (σ², μ, x, γ, β, and ∂L/∂y_i): an ``Equation`` of the form, checked against the
  truth; every further ``= …`` and each ``&= …`` continuation is the same quantity again, checked
  against the truth too, and as a step against the member before (``DocumentForm.steps``);
* ``μ = …``, ``σ² = …``, ``x̂_i = …``, ``y_i = …``: checked against the forward graph; a later line
  uses μ, σ², x̂, y of the graph, so a wrong definition is refuted and never used;
* a local derivative (``∂x̂_i/∂σ² = …``, ``∂y_k/∂x_i = …``, ``\\frac{\\partial}{\\partial x_i}[…]``):
  checked against its true value (``derive.partial_value``); on a right side (a chain rule) it is
  replaced by that value, and the line says so;
* a name of the post's own (``t = 1/\\sqrt{\\sigma^2+\\epsilon}``, ``R = X - \\mu``): defined, used by
  later lines; any further member is checked against it;
* any other expression on the left (``\\sum_i (x_i - \\mu) = 0``, ``∂L/∂x̂_i · ∂x̂_i/∂x_i = …``):
  each right side is checked against it;
* a gradient that no earlier line defines (δβ, ∂L/∂σ²) stands for its true value (a note says
  "uses ∂L/∂β as its true value"); a prose line is skipped; what is understood but cannot be
  checked says why.

Front matter (``---`` YAML-like block at the top of a ``.md`` file; ``% bnderive: key: value``
comment lines in a ``.tex`` file) says what the post assumes::

    name: staged-cs231n          # default: the file name
    title: The staged backward pass
    sources:
      - CS231n, assignment 2, https://…
    mode: per-activation         # per-activation | spatial | both (default both)
    variance: biased             # or unbiased: Bessel's 1/(M-1) in the forward
    epsilon: inside              # or outside: √σ² + ε; or none: ε = 0
    training: true               # false: eval mode
    sigma: std                   # what a bare σ means: std (√σ²) or var (the variance)
    norm: batch                  # the normalization: batch or layer
    summation: einstein          # repeated indices are summed (or explicit)

Without ``epsilon``, a post whose maths never writes ε (and writes σ) is read with ε = 0; without
``sigma``, a post that writes both σ² and a bare σ means the standard deviation by σ (both with a
note); without ``summation``, a post that writes no Σ and contracts with ones tensors (1_h x_{bh})
sums repeated indices as Einstein does (a note says so); without ``variance``, a post whose
forward lines compute σ² with Bessel's 1/(M − 1) (σ² = Σ(x_k − μ)²/(M − 1), or x̂ with it written
out) and never with 1/M is read with the unbiased variance (a note names the lines; a post that
writes both is read with the biased one, its 1/(M − 1) lines refuted, and a note says so).  A document about another normalization
(Instance, Group, RMS Normalization) is refused with a message naming it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import sympy as sp

from bnderive.core import notation as N
from bnderive.core.derive import at_index, derive, forward_definition, inline, partial_value
from bnderive.core.limits import FILE_BYTES, NOTEBOOK_BYTES
from bnderive.core.printing import unicode
from bnderive.core.spec import Mode, Norm, Spec
from bnderive.errors import FormError, InputFileError, SpecError
from bnderive.read.ascii_maths import read_row
from bnderive.read.code_lines import CodeReader, code_rows
from bnderive.read.expr_nodes import expression_adjoint, expression_partial, forward_lines
from bnderive.read.files import read_text
from bnderive.read.forms import Equation, Form, ReadingGroup, bounded_equation
from bnderive.read.latex_derivatives import DSTD, OWN_ADJOINT
from bnderive.read.latex_reader import parse_equation_line
from bnderive.read.latex_results import LatexError, LineRead, Readings
from bnderive.read.latex_vocabulary import _LOSS_TARGETS, Family, name_bound
from bnderive.read.letters import headings, letter_roles
from bnderive.read.macros import (
    Macro,
    MacroError,
    Preamble,
    expand,
    find_definitions,
    with_preamble,
)
from bnderive.read.own_graph import LAYER_NODES, GraphUnknown, OwnGraph, hidden_path, label_of

SUFFIXES = (".md", ".markdown", ".tex", ".ipynb")


@dataclass(frozen=True)
class DocLine:
    """One line of a document's display math, and what became of it.

    ``status``: ``checked`` (its members are equations of the form), ``definition`` (a name for
    later lines), ``not checked`` (understood; ``reason`` says why nothing is compared),
    ``not read`` (``reason`` is the reader's message: column, token, what would be needed), or
    ``prose``."""

    line: int  # where the line starts in the file (1-based)
    column: int
    latex: str
    read: LineRead | None  # None for prose and lines not read
    equations: tuple[int, ...]  # the form's equation numbers this line became (one per member)
    reason: str = ""  # why it is not checked (or not read)
    status: str = "checked"
    notes: tuple[str, ...] = ()  # what was assumed: true values used, local derivatives replaced
    where: str = ""  # for a notebook: "cell 4, line 2"
    members: tuple[int | None, ...] = ()  # per right side: its equation, or None (not checked)
    #: how its ∂x̂_i/∂x_i (∂y_i/∂x_i) was read: "total" (μ, σ² follow x_i), "held", or ""
    derivative: str = ""

    @property
    def checked(self) -> bool:
        return self.status == "checked" and bool(self.equations)

    @property
    def states_value(self) -> bool:
        """Does the line state a value (a line that is not prose, not an annotation)?"""
        return self.status in ("checked", "definition", "not checked", "not read")

    @property
    def defines(self) -> str:
        if self.read is None or self.read.defines is None:
            return "identity" if self.read is not None and self.read.kind == "identity" else ""
        return f"{self.read.defines}[i]" if self.read.index is not None else self.read.defines

    @property
    def place(self) -> str:
        """ "line 12", or "line 12 (cell 4, line 2)" in a notebook."""
        return f"line {self.line}" + (f" ({self.where})" if self.where else "")


@dataclass(frozen=True)
class DocumentForm(Form):
    """A form read from a document: the equations, and every line with where it came from."""

    lines: tuple[DocLine, ...] = ()
    # (equation before, equation): each `&=` continuation (and each further `= …` on one line)
    # is also checked against the expression before it, to say where a mistake came in.
    steps: tuple[tuple[int, int], ...] = ()
    # (reference, equation): lines checked against a reference (μ of the forward graph, a true
    # local derivative, an identity's left side, a name's definition) instead of a truth by name.
    references: tuple[tuple[int, int], ...] = ()
    #: members read more than one way: the equations of their readings (``verify.readings``)
    readings: tuple[ReadingGroup, ...] = ()

    def line_of(self, equation: int) -> DocLine | None:
        for line in self.lines:
            if equation in line.equations:
                return line
        return None

    def counts(self) -> dict[str, int]:
        """How many lines were checked, defined a name, were not checked, not read (and prose)."""
        out = {"checked": 0, "definition": 0, "not checked": 0, "not read": 0, "prose": 0}
        for line in self.lines:
            out[line.status if line.status in out else "not checked"] += 1
        return out


# -- front matter -------------------------------------------------------------------------------------
_KEYS = {
    "name",
    "title",
    "description",
    "source",
    "sources",
    "citation",
    "mode",
    "variance",
    "epsilon",
    "training",
    "sigma",
    "norm",
    "summation",
    "conventions",
}


def _scalar(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def _front_matter(entries: list[tuple[int, str]], where: str) -> dict[str, Any]:
    """A YAML subset: ``key: value``, ``key:`` then ``- item`` lines (a list) or indented
    ``sub: value`` lines (a table).  ``entries`` are (line number, text) pairs."""
    data: dict[str, Any] = {}
    at: dict[str, int] = {}  # the line of each key, for messages
    current: str | None = None
    for number, raw in entries:
        text = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not text.strip():
            continue
        indented = text[0] in " \t"
        stripped = text.strip()
        if indented and current is not None:
            if stripped.startswith("- "):
                if not isinstance(data[current], list):
                    if data[current]:
                        raise FormError(f"{where}, line {number}: a list item under a table")
                    data[current] = []
                data[current].append(_scalar(stripped[2:]))
                continue
            key, colon, value = stripped.partition(":")
            if not colon:
                raise FormError(f"{where}, line {number}: expected 'key: value', got {stripped!r}")
            if not isinstance(data[current], dict):
                data[current] = {} if data[current] in ("", []) else data[current]
            if not isinstance(data[current], dict):
                raise FormError(f"{where}, line {number}: a table entry under a list")
            if key.strip() in data[current]:
                raise FormError(_twice(where, number, f"{current}.{key.strip()}", at[key.strip()]))
            data[current][key.strip()] = _scalar(value)
            at[key.strip()] = number
            continue
        key, colon, value = stripped.partition(":")
        key = key.strip()
        if not colon or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", key):
            raise FormError(f"{where}, line {number}: expected 'key: value', got {stripped!r}")
        if key not in _KEYS:
            raise FormError(
                f"{where}, line {number}: unknown front-matter key {key!r}; known keys: "
                f"{', '.join(sorted(_KEYS))}"
            )
        same = [k for k in _SAME.get(key, (key,)) if k in data]
        if same:
            raise FormError(_twice(where, number, key, at[same[0]], same[0]))
        data[key] = _scalar(value)
        at[key] = number
        current = key if not value.strip() else None
    conventions = data.pop("conventions", {})
    if conventions:
        if not isinstance(conventions, dict):
            raise FormError(
                f"{where}, line {at['conventions']}: 'conventions' must be a table of "
                "variance, epsilon, training"
            )
        for key, value in conventions.items():
            if key not in ("variance", "epsilon", "training"):
                raise FormError(
                    f"{where}, line {at.get(key, at['conventions'])}: unknown convention "
                    f"{key!r}; use variance, epsilon, training"
                )
            if key in data:
                raise FormError(_twice(where, at.get(key, at["conventions"]), key, 0))
            data[key] = value
    data["_lines"] = at
    return data


#: Keys that say the same thing: giving two of them is giving one twice.
_SAME = {k: ("source", "sources", "citation") for k in ("source", "sources", "citation")}


def _twice(where: str, line: int, key: str, first: int, as_key: str | None = None) -> str:
    """A key given twice is an error, not "the last one wins": the reader cannot know which
    one the author meant."""
    before = f"line {first}" if first else "at the top level and under conventions"
    also = f" as {as_key!r}, which means the same" if as_key and as_key != key else ""
    return (
        f"{where}, line {line}: the front-matter key {key!r} is given twice (first on "
        f"{before}{also}); keep one"
    ).replace("first on at the", "first at the")


def _md_front_matter(text: str) -> tuple[list[tuple[int, str]], int]:
    """The lines of a leading ``---`` block and the offset where the body starts."""
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        return [], 0
    for k in range(1, len(lines)):
        if lines[k].strip() in ("---", "..."):
            body = sum(len(x) + 1 for x in lines[: k + 1])
            return [(n + 1, lines[n]) for n in range(1, k)], body
    raise FormError("the front matter opened by '---' on line 1 is never closed by '---'")


_TEX_HEADER = re.compile(r"^\s*%\s*bnderive:(.*)$")


def _tex_front_matter(text: str) -> list[tuple[int, str]]:
    """``% bnderive: key: value`` lines, or a ``% bnderive:`` line followed by ``% key: value``
    lines (indented as YAML is, relative to the first); an empty ``%`` line ends the block."""
    out: list[tuple[int, str]] = []
    indent: int | None = None
    in_block = False
    for number, line in enumerate(text.split("\n"), start=1):
        match = _TEX_HEADER.match(line)
        if match:
            rest = match.group(1)
            if rest.strip():
                out.append((number, rest.strip()))
            in_block, indent = not rest.strip(), None
            continue
        if not in_block:
            continue
        stripped = line.strip()
        content = stripped[1:] if stripped.startswith("%") else ""
        if not content.strip():
            in_block = False
            continue
        if indent is None:
            indent = len(content) - len(content.lstrip())
        out.append((number, content[indent:] if content[:indent].isspace() else content.strip()))
    return out


# -- finding the display math --------------------------------------------------------------------------
_ENVS = r"align\*?|aligned|eqnarray\*?|equation\*?|gather\*?|gathered|split|multline\*?"
_BEGIN = re.compile(r"\\begin\{(" + _ENVS + r")\}")
_INNER = re.compile(r"\\(begin|end)\{(aligned|split|gathered)\}")
_DROP = re.compile(r"\\(nonumber|notag)(?![a-zA-Z])|\\(label|tag\*?)\{[^{}]*\}")
_TRAILING_TEXT = re.compile(r"(\\q?quad|\\,|\\;|\s|,)*\\(text|textrm|mbox)\{[^{}]*\}[\s.,]*$", re.S)
_PROSE = re.compile(r"^\s*\\(text|textrm|mbox|intertext)\{[^{}]*\}[\s.,]*$", re.S)


def _blank(text: str, start: int, end: int) -> str:
    """``text`` with [start, end) replaced by spaces (newlines kept): positions stay right."""
    return text[:start] + re.sub(r"[^\n]", " ", text[start:end]) + text[end:]


def _strip_tex_comments(text: str) -> str:
    return re.sub(r"(?<!\\)%[^\n]*", lambda m: " " * len(m.group(0)), text)


def _code_rows(text: str) -> list[tuple[int, str]]:
    """The assignments of a Markdown page's code blocks that read as a derivation
    (``code_lines.code_rows``), positions in ``text``; front matter and HTML comments are not
    the page's code."""
    _, body_start = _md_front_matter(text)
    return code_rows(_mask_html_comments(_blank(text, 0, body_start)))


def _mask_code_fences(text: str) -> str:
    """Markdown code blocks hold code, not derivations: blank them out."""
    out = text
    for match in re.finditer(r"^[ \t]*(```|~~~).*?^[ \t]*\1[^\n]*$", text, re.M | re.S):
        out = _blank(out, match.start(), match.end())
    return out


def _mask_inline_code(text: str) -> str:
    """`…` in Markdown is code: a `$$` there is not maths."""
    out = text
    for match in re.finditer(r"(?<!`)`[^`\n]+`(?!`)", text):
        out = _blank(out, match.start(), match.end())
    return out


def _mask_html_comments(text: str) -> str:
    """``<!-- … -->`` is hidden from the reader of the page: its $$ is not maths."""
    out = text
    for match in re.finditer(r"<!--.*?-->", text, re.S):
        out = _blank(out, match.start(), match.end())
    return out


#: Inline maths of a Markdown page or a TeX file, read when it holds an equation.
#: Inline maths: within one paragraph (a line break inside is a space, a blank line ends it).
_INLINE = re.compile(r"(?<![\\$])\$(?!\$)((?:\\.|[^$\\\n]|\n(?![ \t]*\n))+?)\$(?!\$)")
_SCRIPT = re.compile(r"<script\s+type=\"math/tex[^\"]*\"\s*>(.*?)</script>", re.S)


#: MathJax's delimiters written with one backslash in a Markdown file (a page's HTML source):
#: maths only when they hold an equation (Markdown's \[ alone is an escaped bracket).
_SINGLE_DISPLAY = r"(?<!\\)\\\[(.*?)(?<!\\)\\\]"
_SINGLE_INLINE = r"(?<!\\)\\\((.*?)(?<!\\)\\\)"


def _blocks(text: str, markdown: bool) -> list[tuple[int, int, bool]]:
    """(start, end, inline) of the contents of every block of maths, in order."""
    spans: list[tuple[int, int, bool]] = []
    taken: list[tuple[int, int]] = []

    def free(start: int) -> bool:
        return not any(a <= start < b for a, b in taken)

    for match in _BEGIN.finditer(text):
        if not free(match.start()):
            continue
        env = match.group(1)
        end = text.find(f"\\end{{{env}}}", match.end())
        if end < 0:
            line = text.count("\n", 0, match.start()) + 1
            raise FormError(f"line {line}: \\begin{{{env}}} is never closed by \\end{{{env}}}")
        spans.append((match.end(), end, False))
        taken.append((match.start(), end + len(env) + 6))
    displays = [(r"\$\$(.*?)\$\$", False)]
    displays.append((r"\\\\\[(.*?)\\\\\]" if markdown else r"\\\[(.*?)\\\]", False))
    if markdown:  # MathJax's own \[ … \] in a page's source: read when it holds an equation
        displays.append((_SINGLE_DISPLAY, True))
    for pattern, needs_eq in displays:
        for match in re.finditer(pattern, text, re.S):
            if not free(match.start()) or needs_eq and not _has_top_level_eq(match.group(1)):
                continue
            inner = (match.start(1), match.end(1))
            # An align block inside $$ … $$ was already taken: the $$ are only its wrapper.
            if not any(inner[0] <= a < inner[1] for a, _, _ in spans):
                spans.append((*inner, False))
            taken.append((match.start(), match.end()))
    if markdown:
        for match in _SCRIPT.finditer(text):
            if free(match.start()):
                inner = (match.start(1), match.end(1))
                # An align block inside the script was already taken: the tags only wrap it.
                if not any(inner[0] <= a < inner[1] for a, _, _ in spans):
                    spans.append((*inner, False))
                taken.append((match.start(), match.end()))
    opened = re.search(r"\$\$", _blank_spans(text, taken))
    if opened:
        line = text.count("\n", 0, opened.start()) + 1
        raise FormError(f"line {line}: '$$' is never closed")
    inline = [(r"\\\\\((.*?)\\\\\)", False)] if markdown else [(r"\\\((.*?)\\\)", False)]
    if markdown:
        inline.append((_SINGLE_INLINE, True))
    for pattern, needs_eq in inline:
        for match in re.finditer(pattern, text, re.S):
            if needs_eq and not _has_top_level_eq(match.group(1)):
                continue
            inner = (match.start(1), match.end(1))
            if any(inner[0] <= a < inner[1] for a, _, _ in spans):
                taken.append((match.start(), match.end()))  # \( \begin{equation} … \): a wrapper
            elif free(match.start()):
                spans.append((match.start(1), match.end(1), True))
                taken.append((match.start(), match.end()))
    rest = _blank_spans(text, taken)
    for match in _INLINE.finditer(rest):
        if _has_top_level_eq(match.group(1)):  # $k = 1$: an equation; $x$ alone is prose
            spans.append((match.start(1), match.end(1), True))
    return sorted(spans)


def _expanded(piece: str, macros: dict[str, Macro]) -> str:
    """A row with the document's macros expanded, for what the whole maths says (which σ, is
    there an ε); a row whose expansion fails is taken as written (its line says why)."""
    try:
        return expand(piece, macros)
    except MacroError:
        return piece


def _blank_spans(text: str, spans: Sequence[tuple[int, int]]) -> str:
    for a, b in spans:
        text = _blank(text, a, b)
    return text


def _position(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, column


#: What may stand between two equations on one line: a comma or semicolon (or \quad) and spacing.
_SEPARATOR = re.compile(
    r"(?:[,;]|\\q?quad(?![a-zA-Z]))(?:\s|\\q?quad(?![a-zA-Z])|\\[,;:! ]|~|\\text\{\s*(?:and)?\s*\})*"
)
#: A second pair of alignment columns (align's `&&`): another equation, or an annotation.
_COLUMNS = re.compile(r"&\s*&")


def _equations(text: str) -> list[tuple[int, str, bool]]:
    r"""The equations of one line: (offset, text, side).  ``A = B, \qquad C = D`` is two. A
    line is cut at a comma, semicolon or \quad outside every bracket only where both sides have
    an '=' outside brackets, so ``\sum_{i=1}^m`` and a trailing comma stay whole.  align's
    ``&&`` starts another column pair: an equation when it has an '=' outside brackets, else an
    annotation (``&& \text{// mean}``, ``&&&& (\text{Because …})``).  An annotation still says
    things: "Let t = …" defines t, "(Because A = B; C = D)" states A = B and C = D; those are
    *side* equations (``side`` True): read first, and no part of the row's chain."""
    pieces: list[tuple[int, str]] = []
    start = 0
    for match in _COLUMNS.finditer(text):
        if _depth(text, match.start()) == 0:
            pieces.append((start, text[start : match.start()]))
            start = match.end()
    pieces.append((start, text[start:]))
    main: list[tuple[int, str, bool]] = []
    side: list[tuple[int, str, bool]] = []
    for k, (offset, piece) in enumerate(pieces):
        remark = _remark(piece) if k == 0 or not _equation_column(piece) else None
        if remark is not None:
            at, inner = remark
            side += [(offset + at + s, eq, True) for s, eq in _split_equations(inner)]
            continue
        if k > 0 and (not pieces[0][1].strip() or not _equation_column(piece)):
            continue  # an annotation column with nothing to read
        for shift, eq in _split_equations(piece):
            remark = _remark(eq)
            if remark is not None:  # "… \quad \text{Let } σ = √(σ²+ε)"
                at, inner = remark
                side.append((offset + shift + at, inner, True))
            else:
                main.append((offset + shift, eq, False))
    if side:  # a row that only holds a remark ("& &&&& \text{and } … = …") has no main equation
        main = [(o, eq, s) for o, eq, s in main if eq.strip().strip("&").strip()]
    return [(o, eq, s) for o, eq, s in side + main if eq.strip() and _has_top_level_eq(eq) or not s]


#: The words that open a remark: what follows states equations apart from the line's chain.
_WORDS = r"(?:[Bb]ecause|[Ss]ince|[Ll]et|[Aa]nd|[Ww]here|[Ww]ith|[Ff]rom|[Uu]sing)"
#: A remark that states equations: "(\text{Because } …)", "\text{Let } …", "\text{and } …".
_REMARK = re.compile(
    r"[\s&]*(?:\\boldsymbol\s*\{)?\s*(?:\\[bB]igg?[lr]?\s*)?\(?\s*"
    r"\\text(?:bf)?\s*\{\s*" + _WORDS + r"\b[^{}]*\}"
)
#: A remark in the middle of a line, after its equation: "= x̂_i \text{ from } y_i = γx̂_i + β".
_REMARK_WORD = re.compile(r"\\text(?:bf)?\s*\{\s*" + _WORDS + r"\b[^{}]*\}")


def _remark(piece: str) -> tuple[int, str] | None:
    """(offset, the maths) of a remark's equations, without its wrapper and words; None for
    anything else."""
    match = _REMARK.match(piece)
    if match is None:
        return None
    inner = piece[match.end() :]
    # the remark's own closing brackets (\bigg), ')', '}') end it: drop the unbalanced ones
    trimmed = inner.rstrip()
    while trimmed and trimmed[-1] in ")}" and _depth(trimmed, len(trimmed)) < 0:
        trimmed = trimmed[:-1].rstrip()
        trimmed = re.sub(r"\\[bB]igg?[lr]?\s*$", "", trimmed).rstrip()
    if not _has_top_level_eq(trimmed):
        return None
    return match.end(), trimmed


def _equation_column(piece: str) -> bool:
    r"""Does a column after `&&` hold an equation (rather than a remark such as \text{…},
    (\text{Because …}))?"""
    head = piece.strip().lstrip("&").strip()
    return _has_top_level_eq(piece) and not re.match(
        r"(\\[bB]igg?[lr]?\s*)?(\(|\\text|\\boldsymbol|\\textbf|//)", head
    )


def _depth(text: str, stop: int) -> int:
    depth, k = 0, 0
    while k < stop:
        c = text[k]
        if c == "\\" and k + 1 < len(text) and text[k + 1] in "{}":
            depth += 1 if text[k + 1] == "{" else -1
            k += 2
            continue
        depth += c in "{([" and 1 or 0
        depth -= c in "})]" and 1 or 0
        k += 1
    return depth


def _split_equations(text: str) -> list[tuple[int, str]]:
    depth, cuts, k = 0, [], 0
    while k < len(text):
        c = text[k]
        if c == "\\" and k + 1 < len(text) and text[k + 1] in "{}":
            depth += 1 if text[k + 1] == "{" else -1
            k += 2
            continue
        if c == "\\" and k + 1 < len(text) and text[k + 1] in ",;:!":
            k += 2  # \; \, are spacing (A \;=\; B), never a separator between equations
            continue
        if c in "{([":
            depth += 1
        elif c in "})]":
            depth -= 1
        elif depth == 0:
            match = _SEPARATOR.match(text, k)
            if match:
                cuts.append((k, match.end()))
                k = match.end()
                continue
            if k > 0 and _REMARK_WORD.match(text, k):  # "… = x̂_i \text{ from } y_i = …"
                cuts.append((k, k))
        k += 1
    pieces, start = [], 0
    for a, b in cuts:
        if _has_top_level_eq(text[start:a]) and _has_top_level_eq(text[b:]):
            pieces.append((start, text[start:a].rstrip()))
            start = b
    pieces.append((start, text[start:]))
    return pieces


def _continuation(text: str) -> bool:
    """Does a row continue the line above (``&= …``, ``= …``)?"""
    return re.match(r"[\s&]*(=|\\leftarrow\b|\\equiv\b)", text) is not None


def _has_top_level_eq(text: str) -> bool:
    depth = 0
    k = 0
    while k < len(text):
        c = text[k]
        if c == "\\":
            word = re.match(r"\\([a-zA-Z]+)", text[k:])
            if word and word.group(1) in ("leftarrow", "equiv", "coloneqq"):
                if depth == 0:
                    return True
            k += len(word.group(0)) if word else 2
            continue
        depth += c in "{([" and 1 or 0
        depth -= c in "})]" and 1 or 0
        if c == "=" and depth == 0:
            return True
        k += 1
    return False


_ROW_END = re.compile(r"\\\\(\s*\[[^\]]*\])?|\\newline(?![a-zA-Z])")
_BARE_ROW_END = re.compile(r"\\\\(\s*\[[^\]]*\])?|\\newline(?![a-zA-Z])|\n")


def _lines(text: str, start: int, end: int, bare: bool = False) -> list[tuple[int, str]]:
    """The ``\\\\``-separated rows of one block (``bare``: also each line of the text, for
    equations written without a display block), rows that continue the one before joined to
    it: (offset of the line, its text, positions kept: separators and joins are blanked)."""
    body = text[start:end]
    body = _INNER.sub(lambda m: " " * len(m.group(0)), body)
    # the rows of a matrix (pmatrix, cases) belong to the matrix: one line of the derivation
    matrices = [
        (m.start(), body.find(f"\\end{{{m.group(1)}}}", m.end())) for m in _MATRIX.finditer(body)
    ]
    rows: list[tuple[int, int]] = []
    pos = 0
    for match in (_BARE_ROW_END if bare else _ROW_END).finditer(body):
        if any(a <= match.start() < b for a, b in matrices if b >= 0):
            continue
        rows.append((pos, match.start()))
        pos = match.end()
    rows.append((pos, len(body)))
    rows = [(a, b) for a, b in rows if body[a:b].strip()]
    joined: list[list[tuple[int, int]]] = []
    for a, b in rows:
        row = body[a:b].strip().lstrip("&").strip()
        if joined:
            last = body[joined[-1][-1][0] : joined[-1][-1][1]].rstrip().rstrip("&").rstrip()
            first = body[joined[-1][0][0] : joined[-1][-1][1]]
            if (
                (
                    row[:1] in "+-−" and row and not _has_top_level_eq(row)  # &+ …: continues
                )
                or last.endswith("=")
                or (
                    row.startswith("=")
                    and not _has_top_level_eq(first)
                    and not _REMARK.match(first.strip().lstrip("&"))
                )
            ):  # … =\\ … (the right side continues), or a chain that begins with an expression
                joined[-1].append((a, b))
                continue
        joined.append([(a, b)])
    out: list[tuple[int, str]] = []
    for group in joined:
        a, b = group[0][0], group[-1][1]
        piece = body[a:b]
        # blank what lies between the rows (the separators), and a doubled '=' where a row
        # ending in '=' meets one starting with '='
        for (_, end1), (start2, _) in zip(group, group[1:], strict=False):
            piece = (
                piece[: end1 - a]
                + re.sub(r"[^\n]", " ", piece[end1 - a : start2 - a])
                + piece[start2 - a :]
            )
            tail = piece[: end1 - a].rstrip()
            head = piece[start2 - a :].lstrip().lstrip("&").lstrip()
            if tail.rstrip("& ").endswith("=") and head.startswith("="):
                cut = piece.rfind("=", 0, end1 - a)
                piece = piece[:cut] + " " + piece[cut + 1 :]
        out.append((start + a, piece))
    return out


# -- notebooks -----------------------------------------------------------------------------------------
def _notebook_text(raw: str, where: str) -> tuple[str, list[tuple[int, int]]]:
    """The Markdown cells of a notebook (nbformat 4, data only: nothing is executed) as one
    text, and (first line, cell number) of each cell, for messages."""
    try:
        notebook = json.loads(raw)
        cells = notebook["cells"]
    except (ValueError, KeyError, TypeError):
        raise FormError(f"{where}: not a Jupyter notebook (nbformat 4 JSON with 'cells')") from None
    parts: list[str] = []
    starts: list[tuple[int, int]] = []
    line = 1
    for number, cell in enumerate(cells, start=1):
        if not isinstance(cell, dict) or cell.get("cell_type") != "markdown":
            continue
        source = cell.get("source", "")
        text = "".join(source) if isinstance(source, list) else str(source)
        starts.append((line, number))
        parts.append(text)
        line += text.count("\n") + 2
    return "\n\n".join(parts), starts


def _cell_of(line: int, starts: list[tuple[int, int]]) -> str:
    cell = next(((first, number) for first, number in reversed(starts) if first <= line), None)
    if cell is None:
        return ""
    return f"cell {cell[1]}, line {line - cell[0] + 1}"


# -- conventions the maths implies ---------------------------------------------------------------------
_EPSILON = re.compile(
    r"\\(var)?epsilon(?![a-zA-Z])|[εϵ]|\\eps(?![a-zA-Z])|(?<![a-zA-Z])eps(?![a-zA-Z])"
)
_SIGMA = re.compile(r"\\sigma(?![a-zA-Z])|σ")


#: a row that only gives ε a value: ε = 1E-5, \epsilon = 10^{-5}, eps = 0.001, ϵ \approx 1e-8
_EPSILON_VALUE = re.compile(
    r"\s*(?:" + _EPSILON.pattern + r")\s*(?:=|:=|\\approx|\\sim)\s*"
    r"[-+0-9.,eE{}^\s]*(?:(?:\\times|\\cdot)\s*10\s*\^\s*\{?\s*[-−]?\s*\d+\s*\}?)?"
    r"[\s.,;]*$"
)


def _epsilon_zero_note(valued: list[int]) -> str:
    if not valued:
        return "ε = 0: the post never writes ε (declare `epsilon: inside` if it means √(σ²+ε))"
    where = ", ".join(map(str, valued))
    return (
        f"ε = 0: the post's derivation lines never write ε (line {where} only gives ε a value, "
        "as its code does); declare `epsilon: inside` if its lines mean √(σ²+ε)"
    )


def _epsilon_inside_note(valued: list[int]) -> str:
    where = ", ".join(map(str, valued))
    return (
        f"ε inside the root, √(σ²+ε): the post's derivation lines write ε (line {where} only "
        "gives it a value); declare `epsilon: outside` or `epsilon: none` otherwise"
    )


#: σ + ε, \sigma_B + \epsilon: ε added to a bare σ (no exponent but a layer label), not under a
#: root of its own; LABEL stands for the document's layer labels (σ^l + ε is σ + ε)
_SIGMA_PLUS_EPSILON = (
    r"(?<!\\sqrt\{)(?<!\\sqrt \{)(?:\\sigma(?![a-zA-Z])|σ)\s*(?:_\s*(?:\{[^{}^]*\}|[a-zA-Z]))?"
    r"LABEL\s*\+\s*(?:" + _EPSILON.pattern + r")"
)


def _epsilon_beside_sigma(maths: str, labels: frozenset[str] = frozenset()) -> bool:
    """Does the maths write ε only as σ + ε (a bare σ, the standard deviation, plus ε)?"""
    letters = "".join(sorted(labels))
    label = ""
    if letters:
        label = rf"(?:\s*\^\s*(?:\{{\s*\(?\s*[{letters}]\s*\)?\s*\}}|[{letters}](?![a-zA-Z])))?"
    beside = len(re.findall(_SIGMA_PLUS_EPSILON.replace("LABEL", label), maths))
    return beside > 0 and beside == len(_EPSILON.findall(maths))


def _sigma_forms(maths: str) -> tuple[bool, bool]:
    """(σ² written, a bare σ written): σ followed by ^2 (or ², after a subscript) is the
    variance; σ with no exponent, or another one, is σ itself."""
    squared = bare = False
    for match in _SIGMA.finditer(maths):
        rest = maths[match.end() :]
        rest = re.sub(r"^\s*_\s*(\{[^{}]*\}|\\?[a-zA-Z]+|\d)", "", rest)  # σ_B, σ_{\mathcal{B}}
        if re.match(r"\s*(\^\s*(\{\s*2\s*\}|2)|²)", rest):
            squared = True
        else:
            bare = True
    return squared, bare


_OTHER_NORMS = {
    "Layer Normalization": r"layer[\s-]?norm(?:ali[sz]ation)?\b|layernorm",
    "Instance Normalization": r"instance[\s-]?norm(?:ali[sz]ation)?\b|instancenorm",
    "Group Normalization": r"group[\s-]?norm(?:ali[sz]ation)?\b|groupnorm",
    "RMS Normalization": r"rms[\s-]?norm(?:ali[sz]ation)?\b",
    "Weight Normalization": r"weight[\s-]?norm(?:ali[sz]ation)?\b",
}
_BATCH_NORM = r"batch[\s-]?norm(?:ali[sz]ation)?\b|batchnorm|\bBN\b"


def _normalization(meta: dict[str, Any], at: dict[str, int], prose: str, where: str) -> Norm:
    """The normalization a document derives: its front matter says so (``norm: layer``), or a
    heading or the title names it, or the prose names it and never BatchNorm; BatchNorm
    otherwise (``_layer_maths`` looks at the maths too).  BatchNorm and LayerNorm are read;
    another family is refused with a message that names it (checking it as BatchNorm would give
    wrong verdicts)."""
    declared = str(meta.get("norm", "")).strip().lower()
    if declared:
        try:
            found = Norm.parse(declared)
        except Exception:
            raise FormError(
                f"line {at.get('norm', 1)}: norm: {meta['norm']!r}; use batch or layer (the "
                "normalizations the document reader models)"
            ) from None
        name = _FAMILY_NAMES.get(found)
    else:
        found, name = Norm.BATCH, None
        headings = "\n".join(
            [str(meta.get("title", ""))] + re.findall(r"^\s{0,3}#+\s*(.*)$", prose, re.M)
        )
        for text in (headings, prose):
            for title, pattern in _OTHER_NORMS.items():
                if re.search(pattern, text, re.I) and not re.search(_BATCH_NORM, text, re.I):
                    name = title
                    break
            if name is not None:
                break
        if name == "Layer Normalization":
            found = Norm.LAYER
    if found in (Norm.BATCH, Norm.LAYER) and name in (None, "Layer Normalization"):
        return found
    raise FormError(
        f"{where} is a derivation of {name}, which the document reader does not model yet: it "
        "reads Batch Normalization (statistics over the batch, per feature or channel) and "
        "Layer Normalization (over the features of one sample, γ_i per feature); checking this "
        "derivation as either would give wrong verdicts. If it is one of them, say so with "
        "`norm: batch` or `norm: layer` in its front matter."
    )


_FAMILY_NAMES = {
    Norm.INSTANCE: "Instance Normalization",
    Norm.GROUP: "Group Normalization",
    Norm.RMS: "RMS Normalization",
}
#: Letters a LayerNorm post writes for the number of features it normalizes over.
_FEATURE_SIZES = ("D", "H", "C")
_SIZE_USE = r"(?:\\frac\s*\{\s*1\s*\}\s*\{\s*(?P<a>[A-Z])\s*\}|\\sum[^$\n]{0,40}?\^\s*\{?\s*(?P<b>[A-Z])\s*\}?)"


def _feature_sizes(maths: str) -> set[str]:
    """The letters D, H, C the maths uses as the size of a sum or a mean (1/D, Σ^{D})."""
    out = set()
    for match in re.finditer(_SIZE_USE, maths):
        letter = match.group("a") or match.group("b")
        if letter in _FEATURE_SIZES:
            out.add(letter)
    return out


def _layer_maths(maths: str) -> bool:
    """Does the maths itself say LayerNorm (when no words do)?  A mean or sum over D, H or C
    features (1/D, Σ_{i=1}^{D}: BatchNorm's sets are N, m, M elements of a batch)."""
    return bool(_feature_sizes(maths))


#: A sum written anywhere: Σ, \sum, \Sigma (then repeated indices are never summed silently).
_ANY_SUM = re.compile(r"\\(sum|Sigma)(?![a-zA-Z])|[∑Σ]")
#: A ones tensor with an index, 1_h (a size is upper case: \mathbf{1}_N is a vector of ones).
_ONES_TENSOR = re.compile(r"\\mathbf\s*\{\s*1\s*\}\s*_\s*(\{\s*[a-z]\s*\}|[a-z])")
#: x_{bh}, y_{p q}, \mu_{b,h}: two index letters under a symbol (sample, then feature in
#: LayerNorm's notation).
_TWO_INDICES = re.compile(r"(\\[a-zA-Z]+|[a-zA-Z])\s*_\s*\{\s*([a-z])\s*,?\s*([a-z])\s*\}")


#: δ_k^i, \delta^{i}_{j}: Kronecker's δ with one upper and one lower index (tensor notation).
_MIXED_DELTA = re.compile(
    r"\\delta\s*(?:_\s*(?:\{\s*([a-z])\s*\}|([a-z]))\s*\^\s*(?:\{\s*([a-z])\s*\}|([a-z]))"
    r"|\^\s*(?:\{\s*([a-z])\s*\}|([a-z]))\s*_\s*(?:\{\s*([a-z])\s*\}|([a-z])))"
)


def _mixed_delta(maths: str) -> bool:
    """Does the maths write δ_k^i (δ^i_k), one index up and one down, two different letters?"""
    for m in _MIXED_DELTA.finditer(maths):
        letters = [g for g in m.groups() if g]
        if len(letters) == 2 and letters[0] != letters[1]:
            return True
    return False


def _einstein(meta: dict[str, Any], at: dict[str, int], maths: str) -> tuple[bool | str, list[str]]:
    """Does the document sum repeated indices as Einstein does?  Its front matter says so
    (``summation: einstein``, or ``explicit``), or it writes no Σ at all and contracts with
    ones tensors (1_h x_{bh} means Σ_h x_{bh} only under the convention), or it writes
    Kronecker's δ with one index up and one down (δ_k^i: tensor notation, whose repeated
    indices are summed; its Σs elsewhere bind their own indices), and then only an index
    written exactly twice in a term is summed ("pairs"); a note says so."""
    declared = str(meta.get("summation", "")).strip().lower()
    if declared not in ("", "einstein", "explicit"):
        raise FormError(
            f"line {at.get('summation', 1)}: summation: {meta['summation']!r}; use einstein "
            "(an index repeated in a term and not free on the left side is summed) or explicit"
        )
    if declared:
        return declared == "einstein", []
    if _mixed_delta(maths):
        return "pairs", [
            "repeated indices are summed (Einstein's convention): the post writes Kronecker's δ "
            "with one index up and one down (δ_k^i), tensor notation, so an index written "
            "exactly twice in a term and not free on the left side is summed over the set "
            "(declare `summation: explicit` otherwise)"
        ]
    if _ANY_SUM.search(maths) or not _ONES_TENSOR.search(maths):
        return False, []
    return True, [
        "repeated indices are summed (Einstein's convention): the post writes no Σ and "
        "contracts with ones tensors 1_h, so an index written twice in a term and not free on "
        "the left side is summed over the set (declare `summation: explicit` otherwise)"
    ]


def _samples(maths: str) -> frozenset[str]:
    """LayerNorm: the letters the maths writes first of two indices (x_{bh}'s b, the sample)
    and never second (a feature); δ_{bp}'s two indices are no pair of that kind."""
    pairs = [(a, b) for symbol, a, b in _TWO_INDICES.findall(maths) if symbol != "\\delta"]
    return frozenset({a for a, _ in pairs} - {b for _, b in pairs})


#: μ_c, \sigma _c^2, β_{c}: a statistic (or β, γ) subscripted with one letter.
_STAT_SUBSCRIPT = re.compile(r"\\(mu|sigma|beta|gamma)\s*_\s*(?:\{\s*([a-z])\s*\}|([a-z]))")
#: x_i, {y_{k}}, g_j: an array with one index (not the first of two: x_{c,i}).
_ONE_INDEX = re.compile(r"(?<![a-zA-Z\\])[xyghXY]\s*_\s*(?:\{\s*([a-z])\s*\}|([a-z]))")


#: Σ_{k ≠ i}, \mathop \sum \limits_{k \ne {\rm{i}}}: a sum over all k but i.
_SUM_APART = re.compile(
    r"(?:\\sum|\\Sigma|∑|Σ)(?:\s*\\(?:limits|nolimits))?\s*_\s*\{\s*([a-z])\s*"
    r"(?:\\neq?(?![a-zA-Z])|≠)[\s{]*(?:\\rm(?![a-zA-Z])[\s{]*)?([a-z])[\s}]*\}"
)


def _apart(maths: str) -> frozenset[tuple[str, str]]:
    """The (k, i) of every Σ_{k≠i} the document writes over a Jacobian ∂·_k/∂x_i
    (``Family.apart``): its summand, up to the next = or the end of its line, has a ∂ of
    something indexed by k.  A Σ_{k≠i} over anything else (a variance's terms) says nothing of
    the post's ∂y_k/∂x_i lines, which are then compared on the diagonal too."""
    found = set()
    for m in _SUM_APART.finditer(maths):
        summand = re.split(r"=|\\\)|\\\]|\$\$|\n", maths[m.end() :], maxsplit=1)[0]
        if re.search(_JACOBIAN_OF % ((re.escape(m.group(1)),) * 2), summand):
            found.add((m.group(1), m.group(2)))
    return frozenset(found)


#: ∂ of something whose subscript holds the index ``%s`` (\partial {y_{c,k} }, \partial y_k,
#: \partial \hat{x}_k).
_JACOBIAN_OF = (
    r"\\partial\s*\{?\s*(?:\\[A-Za-z]+\s*\{\s*[A-Za-z]+\s*\}|\\?[A-Za-z]+)\s*_\s*"
    r"(?:\{[^{}]*\b%s\b[^{}]*\}|%s\b)"
)


#: x_{s,c,k}: three index letters under an array (sample, channel, position in Xiyun Song's
#: 2020 post).
_THREE_INDICES = re.compile(
    r"(?<![a-zA-Z\\])[xyghXY]\s*_\s*\{\s*([a-z])\s*,\s*([a-z])\s*,\s*([a-z])\s*\}"
)


def _channels(maths: str) -> tuple[frozenset[str], frozenset[str]]:
    """BatchNorm: the channel letters (``Family.channels``: the subscript of a statistic, first
    of two indices and never second, as x_{c,i} writes it, or the one statistic's subscript of
    three, as x_{s,c,k} writes it) and the element letters (``Family.elements``: an array's one
    index, or the other of a pair with a channel)."""
    stats = {a or b for _, a, b in _STAT_SUBSCRIPT.findall(maths)}
    pairs = [(a, b) for symbol, a, b in _TWO_INDICES.findall(maths) if symbol != "\\delta"]
    channels = {a for a, _ in pairs} & stats - {b for _, b in pairs}
    for triple in _THREE_INDICES.findall(maths):
        if len(set(triple)) == 3 and len(set(triple) & stats) == 1:
            channels |= set(triple) & stats
    elements = {a or b for a, b in _ONE_INDEX.findall(maths)} | {
        b for a, b in pairs if a in channels
    }
    return frozenset(channels), frozenset(elements - channels)


#: y_{i}^{\top}, \hat{y}_i^T: an array with one index, transposed (a vector's subscript)
_TRANSPOSED_INDEXED = re.compile(
    r"(?<![A-Za-z\\])(?:\\(?:hat|widehat)\s*\{\s*)?([xyhXY])\s*\}?\s*_\s*\{?\s*([a-z])\s*\}?"
    r"\s*\^\s*\{?\s*(?:\\top|\\intercal|T)(?![A-Za-z])"
)
#: (y_{i})_{t}, \left(y_i\right)_t: an array with one index, indexed again (an element of it)
_REINDEXED = re.compile(
    r"(?:\\left\s*)?\(\s*(?:\\(?:hat|widehat)\s*\{\s*)?([xyhXY])\s*\}?\s*_\s*\{?\s*([a-z])\s*\}?"
    r"\s*(?:\\right\s*)?\)\s*_\s*\{?\s*[a-z]"
)
#: \sum_{i}, \sum_{i=1}^{N}: the letter a Σ runs over
_SUMMED = re.compile(r"\\sum\s*_\s*\{?\s*([a-z])(?![a-zA-Z])")


def _column_letters(maths: str) -> frozenset[str]:
    """The letters that subscript a whole column over the batch (``Family.vectors``): an array
    with that one index is transposed (y_i^⊤: a vector) or indexed again ((y_i)_t: element t of
    it), and no Σ runs over the letter (then it would be an element)."""
    found = {c for _, c in _TRANSPOSED_INDEXED.findall(maths)}
    found |= {c for _, c in _REINDEXED.findall(maths)}
    return frozenset(found - set(_SUMMED.findall(maths)))


def _parts(maths: str, channels: frozenset[str]) -> frozenset[tuple[str, str]]:
    """BatchNorm: the two letters that together make an element of x_{s,c,k} beside its
    channel c (``Family.parts``): the reduction set of a channel is every (s, k), so its size
    is N_s × N_k and Σ_s Σ_k sums over it."""
    found = set()
    for triple in _THREE_INDICES.findall(maths):
        rest = tuple(t for t in triple if t not in channels)
        if len(set(triple)) == 3 and len(rest) == 2:
            found.add(rest)
    return frozenset(found)


#: A letter (or macro) with a superscript letter, its subscript first or not: μ^l, x_r^{l},
#: a^{(l)}.  The base is kept to tell labelled symbols apart.
_LETTER_SUP = re.compile(
    r"(\\[a-zA-Z]+|(?<![a-zA-Z\\])[a-zA-Z])\s*(?:_\s*(?:\{[^{}]*\}|\\[a-zA-Z]+|[a-zA-Z0-9])\s*)?"
    r"\^\s*(?:\{\s*\(?\s*([a-z])\s*\)?\s*\}|([a-z])(?![a-zA-Z]))"
)
#: Bases whose superscript is a limit or an exponent, never a label.
_LIMIT_BASES = {"\\sum", "\\prod", "\\Sigma", "\\int", "\\left", "\\right", "e"}


def _layer_labels(maths: str, sizes: frozenset[str]) -> frozenset[str]:
    """Letters the maths writes as a layer label (Sinai 2022: Z^l, μ^l, x_r^l): a superscript on
    two or more different symbols and nowhere else, neither in a subscript, a limit, a value nor
    a power of a group.  Such a letter is no number and no size, so it cannot be an exponent the
    reader could evaluate: the symbols are read without it (``Family.labels``)."""
    bases: dict[str, set[str]] = {}
    for m in _LETTER_SUP.finditer(maths):
        letter = m.group(2) or m.group(3)
        bases.setdefault(letter, set()).add(m.group(1))
    out = set()
    for letter, on in bases.items():
        if letter in sizes or letter in "nxyghdei" or on & _LIMIT_BASES or len(on) < 2:
            continue
        written = re.findall(rf"(?<![a-zA-Z\\]){letter}(?![a-zA-Z])", maths)
        as_label = sum(
            1 for m in _LETTER_SUP.finditer(maths) if (m.group(2) or m.group(3)) == letter
        )
        if len(written) == as_label:
            out.add(letter)
    return frozenset(out)


#: What ∂ (or a d that opens a fraction's numerator) acts on: a letter, \\ell or \\mathcal{L}.
_DIFFERENTIATED = re.compile(
    r"(?:\\partial|\\part(?![a-zA-Z])|\\frac\s*\{\s*d)\s*\{?\s*"
    r"(\\ell(?![a-zA-Z])|\\mathcal\s*\{\s*L\s*\}|[A-Za-z](?![A-Za-z]))"
)


def _loss_letters(maths: str) -> frozenset[str]:
    """The loss letters (L E J f C l; \\ell as l, \\mathcal{L} as L) the maths writes as what ∂
    or d acts on: the document's loss, which it may also write in another font (Cross Validated
    218601's \\mathcal{l} beside ∂l), ``Family.losses``."""
    out = set()
    for m in _DIFFERENTIATED.finditer(maths):
        written = m.group(1)
        letter = (
            "l" if written.startswith("\\ell") else "L" if written.startswith("\\") else written
        )
        if letter in _LOSS_TARGETS:
            out.add(letter)
    return frozenset(out)


#: The conventional names of the inverse standard deviation 1/√(σ²+ε): Costa 2016 and Koonce's
#: blueprint write istd, llm.c rstd, PyTorch's kernels invstd.  (inv_std, with an underscore,
#: is no word the reader reads.)
INVERSE_STD_NAMES = ("istd", "rstd", "invstd")
_FONT = r"\\(?:text|textrm|mathrm|mathit|operatorname)\s*\{\s*"


#: A row that opens with a lone letter and = or := (s := istd): it defines that letter.
_NAMED_LEFT = re.compile(r"(?:^|\$|\\\(|\\\[|\\\\|&|\n)\s*[A-Za-z]\s*:?$")


def _inverse_std_words(maths: str, text: str) -> list[str]:
    """The conventional names of the inverse standard deviation the maths uses and nothing in
    the document's ``text`` defines: read as 1/√(σ²+ε) (``_Builder.inverse_std``).  A
    definition, ``istd = …`` or ``… = istd`` at the end of a row, in the maths, the prose or
    code the reader does not read, keeps the post's own meaning: then the name is not implicit
    anywhere (a use before a definition line is not read, as for any name)."""
    out = []
    for word in INVERSE_STD_NAMES:
        alone = rf"(?<![A-Za-z\\]){word}(?![A-Za-z])"
        if not re.search(alone, maths):
            continue
        # istd = …, \mathrm{istd} := … (the brace closes the font's, not a fraction's)
        left = rf"(?:{_FONT}{word}\s*\}}|{alone})\s*:?=(?!=)"
        right = (  # … = istd, the row ending there (the reversed definition 1/√(…) = t)
            rf"=\s*(?:{_FONT})?{word}\s*\}}?\s*[.,]?\s*(?:\$|\\\]|\\\)|\\\\|&|\n|$)"
        )
        reversed_definition = any(
            not _NAMED_LEFT.search(text[: m.start()]) for m in re.finditer(right, text)
        )
        if re.search(left, text) or reversed_definition:
            continue
        out.append(word)
    return out


def _family(norm: Norm, maths: str, einstein: bool | str = False) -> Family:
    """How the notation reads under ``norm`` (``latex_vocabulary.Family``): for LayerNorm the
    letters of the number of features, and N the batch size when the post writes another;
    whether repeated indices are summed (``_einstein``)."""
    if norm is not Norm.LAYER:
        channels, elements = _channels(maths)
        return Family(
            einstein=bool(einstein),
            pairs=einstein == "pairs",
            channels=channels,
            elements=elements,
            parts=_parts(maths, channels),
            apart=_apart(maths),
            labels=_layer_labels(maths, Family().sizes),
            losses=_loss_letters(maths),
            vectors=_column_letters(maths),
        )
    written = _feature_sizes(maths)
    samples = _samples(maths)
    sizes = frozenset(written | {"M"}) if written else frozenset({"N", "m", "M", "D", "H", "C"})
    return Family(
        True,
        sizes,
        "N" if written else None,
        bool(einstein),
        samples,
        labels=_layer_labels(maths, sizes),
        pairs=einstein == "pairs",
        losses=_loss_letters(maths),
    )


# -- from lines to equations ---------------------------------------------------------------------------
class _Unresolved(Exception):
    """A member that is understood but cannot be checked: the reason."""


@contextmanager
def _graph_answers() -> Iterator[None]:
    """What the post's own graph cannot say (``GraphUnknown``) leaves the member unresolved."""
    try:
        yield
    except GraphUnknown as exc:
        raise _Unresolved(str(exc)) from None


_ADJOINT_WORDS = {
    "dy": "∂L/∂y",
    "dxhat": "∂L/∂x̂",
    "dvar": "∂L/∂σ²",
    "dmu": "∂L/∂μ",
    "dx": "∂L/∂x",
    "dgamma": "∂L/∂γ",
    "dbeta": "∂L/∂β",
    DSTD.name: "∂L/∂σ (σ = √σ²: 2σ·∂L/∂σ²)",
}
_FORWARD_WORDS = {"mu": "μ", "var": "σ²", "xhat": "x̂_i", "y": "y_i"}


@dataclass
class _Chain:
    """The line an `&= …` row continues: what it is, its reference, its last member, and for
    a local derivative whether it is the total derivative (its members say the same)."""

    continues: tuple
    reference: int | None = None
    last: int | None = None
    per_element: bool = False
    total: bool | None = None


@dataclass
class _Builder:
    """Turns the lines of a document, in order, into the equations of a form."""

    spec: Spec
    equations: list[Equation] = field(default_factory=list)
    steps: list[tuple[int, int]] = field(default_factory=list)
    references: list[tuple[int, int]] = field(default_factory=list)
    names: dict[str, bool] = field(default_factory=dict)  # for the reader: elementwise or not
    #: for the reader: names whose definition is exactly the layer's y or x̂ (that node)
    aliases: dict[str, str] = field(default_factory=dict)
    defined: set[str] = field(default_factory=set)  # gradients earlier lines define
    chain: _Chain | None = None
    #: the forward graph the post writes with its own names (``own_graph``)
    graph: OwnGraph = field(default_factory=OwnGraph)
    #: the post's names whose gradients the member being resolved spells out (∂l/∂m_b ·…)
    held: set[str] = field(default_factory=set)
    #: the members read more than one way, with the equation of each reading
    readings: list[ReadingGroup] = field(default_factory=list)
    #: istd, rstd, invstd read as the inverse standard deviation (``inverse_std``), and the
    #: standard deviation it inverts
    implicit: list[str] = field(default_factory=list)
    scale: sp.Expr = sp.Integer(1)

    def __post_init__(self) -> None:
        self.truth = derive(self.spec)
        self.degrees: dict[object, float] = {}  # of each quantity defined so far (limits)
        self.total: bool | None = None  # the members of a local derivative's line: as it is
        self.last_total: bool | None = None  # the decision taken for the last ∂/∂x_i
        self.diagonal = False  # the last ∂/∂x_i was ∂x̂_i/∂x_i or ∂y_i/∂x_i (either reading)
        self.diagonal_context: bool | None = None  # the reading a post's earlier lines showed
        self.derivative = ""  # the reading of the line's ∂x̂_i/∂x_i: "total", "held" or ""

    def inverse_std(self, words: list[str]) -> list[str]:
        """istd, rstd, invstd used and defined by no line: each the inverse standard deviation
        1/√(σ²+ε) of the document's conventions (1/(√σ² + ε) with ε outside the root, 1/√σ²
        with ε = 0), defined before the first line, so that it is a name of the post's graph
        (∂L/∂istd and ∂istd/∂σ² are worked out there) as if a line defined it.  The notes."""
        var, eps = N.var, N.eps
        if self.spec.eps_zero:
            scale, text = sp.sqrt(var), "1/√σ²"
        elif self.spec.eps_inside:
            scale, text = sp.sqrt(var + eps), "1/√(σ²+ε)"
        else:
            scale, text = sp.sqrt(var) + eps, "1/(√σ²+ε)"
        notes = []
        self.scale = scale
        for word in words:
            said = (
                f"{word} read as {text}, the inverse standard deviation: no line defines it; "
                "define it to mean otherwise"
            )
            number = self.add(word, None, 1 / scale, said, "definition")
            self.names[word] = False
            self.graph.add(word, 1 / scale, False, number, False)
            self.implicit.append(word)
            notes.append(said)
        return notes

    def inverse_std_after_sigma(self, sigma: sp.Expr, place: str) -> list[str]:
        """The post defines its σ (σ = √(σ²+ε)) after the implicit istd: when it is the
        standard deviation the layer divides by, istd is 1/σ from here on, a node after σ in the
        post's graph (so ∂istd/∂σ = −1/σ², not 0); when it is another σ, whether istd is 1/σ
        or 1/√(σ²+ε) is not said, and later lines that use istd are not read.  The notes."""
        notes = []
        same = sp.simplify(sigma - self.scale) == 0
        for word in self.implicit:
            if same:
                text = f"{word} read as 1/σ from {place} on, σ being √(σ²+ε) as {place} defines it"
                value = 1 / sp.Symbol("sigma")
                number = self.add(word, None, value, text, "definition")
                self.graph.add(word, value, False, number, False)
            else:
                text = (
                    f"{word} not read after {place}: the post's σ is not the standard deviation "
                    f"the layer divides by, so whether {word} is 1/σ or the conventional "
                    f"1/√(σ²+ε) is not said; define {word}"
                )
                self.names.pop(word, None)
            notes.append(text)
        if not same:
            self.implicit = []
        return notes

    # -- equations ----------------------------------------------------------------------------
    def add(self, name: str, index: sp.Symbol | None, expr: sp.Expr, text: str, kind: str) -> int:
        number = len(self.equations) + 1
        bounded_equation(number, name, index, expr, text, self.degrees)
        self.equations.append(Equation(number, name, index, expr, text, text, kind))
        return number

    def line(self, read: LineRead, latex: str) -> tuple[str, tuple[int, ...], str, list[str]]:
        """(status, equation numbers, reason, notes) of one read line; ``self.members`` is set
        to each right side's equation number (None where it is not checked)."""
        self.members: list[int | None] = [None] * len(read.rhs)
        if read.lhs is not None:
            self.derivative = ""
        if read.kind == "prose":
            return "prose", (), read.reason, []
        continuation = read.lhs is None
        if read.kind == "node" and read.reason and read.defines and read.rhs[0] is not None:
            # (code) not checked, but later lines use it as the post computed it
            self.add(read.defines, read.index, self.resolve(read.rhs[0], []), latex, "definition")
        if read.kind == "none" or read.reason:
            self.chain = _Chain(("none", None, None))
            self.graph.gap(len(self.equations), latex)
            return "not checked", (), read.reason, list(read.notes)
        notes: list[str] = list(read.notes)
        chain = self.chain if continuation and self.chain is not None else None
        if chain is None or chain.per_element != read.per_element:
            chain = _Chain(read.continues, per_element=read.per_element)
            if continuation and self.chain is not None:
                chain.last = self.chain.last
        self.total = chain.total
        try:
            reference = self.reference(read, chain, latex, notes)
        except _Unresolved as exc:
            self.chain = _Chain(("none", None, None))
            return "not checked", (), str(exc), notes
        chain.reference = reference
        chain.total = self.total
        numbers: list[int] = []
        members = list(read.rhs)
        errors = list(read.member_errors) + [""] * (len(members) - len(read.member_errors))
        for k, (member, error) in enumerate(zip(members, errors, strict=True), start=1):
            where = f"member {k}" if len(members) > 1 else "the right side"
            if member is None:
                notes.append(f"{where} not checked: {error}")
                chain.last = None
                continue
            readings = read.readings[k - 1] if k <= len(read.readings) else None
            if readings is not None:
                # no step to or from it: which reading the next member follows is not said
                chain.last = None
                found = self.every_reading(read, readings, latex, reference, where, notes)
                if found:
                    self.members[k - 1] = found[0]
                    numbers.extend(found)
                continue
            try:
                expr = self.resolve(member, notes)
            except _Unresolved as exc:
                notes.append(f"{where} not checked: {exc}")
                chain.last = None
                continue
            first = k == 1 and not continuation
            if read.kind == "name" and reference is None and not first and not continuation:
                # s := istd(x, ε) = 1/√(σ²+ε): the first member not read, the first one read
                # says what the post defines the name as
                first = True
                notes.append(f"{read.defines} is defined by {where} (member 1 is not read)")
            elif read.kind == "name" and reference is None and not first:
                notes.append(f"{where} not checked: the name's definition (member 1) is not read")
                chain.last = None
                continue
            number = self.member(read, expr, latex, reference, first)
            if read.kind == "name" and reference is None:
                # the members after a name's definition are compared with it, once it is known
                reference = chain.reference = self.name_reference(read)
            self.members[k - 1] = number
            if chain.last is not None:
                self.steps.append((chain.last, number))
            chain.last = number
            numbers.append(number)
        self.chain = chain
        return self.line_status(read, numbers, notes, continuation)

    def line_status(
        self, read: LineRead, numbers: list[int], notes: list[str], continuation: bool
    ) -> tuple[str, tuple[int, ...], str, list[str]]:
        """A line's status once its members are equations: what it defines, for later lines."""
        if not numbers:
            reason = "; ".join(n for n in notes if "not checked" in n) or "no member could be read"
            return "not checked", (), reason, notes
        stored = any(self.equations[n - 1].kind == "quantity" for n in numbers)
        if read.kind == "adjoint" and not read.per_element and read.defines and stored:
            self.defined.add(read.defines)
        if read.kind == "node":
            where = ", ".join(str(n) for n in read.uses)
            lines = "line" if len(read.uses) == 1 else "lines"
            notes.append(
                f"checked against ∂L/∂{read.node} in the post's own graph (through its forward "
                f"{lines} {where} as written, and the true gradients of x̂, σ², μ, y)"
            )
        if not continuation:
            self.in_graph(read)
        if read.kind == "name" and read.defines:
            self.names[read.defines] = read.index is not None
            if not continuation:
                self.alias(read, self.equations[numbers[0] - 1].expr, notes)
            if read.defines == "sigma" and self.implicit and not continuation:
                first = self.equations[numbers[0] - 1]
                notes.extend(self.inverse_std_after_sigma(first.expr, "this line"))
            if len(numbers) == 1 and not continuation:
                return "definition", tuple(numbers), "", notes
        return "checked", tuple(numbers), "", notes

    def in_graph(self, read: LineRead) -> None:
        """A line that defines a node of the post's graph (a name, again a name, a forward
        line of the layer's node) adds it, with its first member as written."""
        if not self.members or self.members[0] is None:
            return
        if read.readings and read.readings[0] is not None:
            return  # its value depends on how it is read: no node of the post's graph
        first = self.equations[self.members[0] - 1]
        lhs = read.lhs
        label = str(lhs.base.label) if isinstance(lhs, sp.Indexed) else getattr(lhs, "name", None)
        if read.kind == "name" and read.defines:
            self.graph.add(read.defines, first.expr, read.index is not None, first.number, False)
        elif read.kind == "forward" and read.defines in LAYER_NODES:
            per = LAYER_NODES[read.defines]
            self.graph.add(read.defines, first.expr, per, first.number, True)
        elif read.kind == "identity" and label is not None and label in self.names:
            # v_b = … again: a new node of the post's graph by the same name
            self.graph.add(label, first.expr, self.names[label], first.number, False)

    def every_reading(
        self,
        read: LineRead,
        readings: Readings,
        latex: str,
        reference: int | None,
        where: str,
        notes: list[str],
    ) -> list[int]:
        """A member that reads more than one way: one equation per reading, each compared with
        the line's reference (the truth of a gradient, a local derivative's true value, a left
        side), grouped so that the line holds only if every reading does (``ReadingGroup``).
        None of them is a value later lines use.  A reading not read, or a name defined by it,
        leaves the member not checked, with the question."""
        said = f"is read {len(readings.labels)} ways ({readings.question}?)"
        missing = [
            f"{label}: not read ({error or 'no value'})"
            for label, value, error in zip(
                readings.labels, readings.values, readings.errors, strict=True
            )
            if value is None
        ]
        if missing:
            notes.append(
                f"{where} not checked: it {said}, and {'; '.join(missing)}. {readings.fix}"
            )
            return []
        if read.kind == "name" and reference is None:
            notes.append(f"{where} not checked: it {said}; a name's definition must read one way")
            return []
        if reference is None:
            reference = self.truth_reference(read)
        if reference is None:
            notes.append(f"{where} not checked: it {said}; no truth to compare it with")
            return []
        said_notes: list[str] = []
        try:
            values = [self.resolve(v, said_notes) for v in readings.values if v is not None]
        except _Unresolved as exc:
            notes.append(f"{where} not checked: {exc}")
            return []
        numbers = []
        for value in values:
            number = self.add(read.defines or "identity", read.index, value, latex, "checked")
            self.references.append((reference, number))
            numbers.append(number)
        self.readings.append(
            ReadingGroup(tuple(numbers), readings.question, readings.labels, readings.fix)
        )
        notes.extend(dict.fromkeys(said_notes))
        notes.append(
            f"{where} {said}, each checked: "
            + "; ".join(f"({k}) {label}" for k, label in enumerate(readings.labels, start=1))
        )
        return numbers

    def truth_reference(self, read: LineRead) -> int | None:
        """The true value of the gradient a line states (per element when it is), as the
        reference its readings are compared with."""
        name = read.defines
        if read.kind != "adjoint" or name is None or name not in self.truth:
            return None
        truth = self.truth.inline(name)
        text = f"the true {_ADJOINT_WORDS.get(name, name)}"
        return self.add(name, read.index, name_bound(truth), text, "reference")

    def member(
        self, read: LineRead, expr: sp.Expr, latex: str, reference: int | None, first: bool
    ) -> int:
        name = read.defines or "identity"
        if read.kind == "adjoint" and not read.per_element:
            return self.add(name, read.index, expr, latex, "quantity")
        if read.kind == "name" and first:
            return self.add(name, read.index, expr, latex, "definition")
        number = self.add(name, read.index, expr, latex, "checked")
        assert reference is not None
        self.references.append((reference, number))
        if read.stores and first:  # code: later lines use the value as the post computed it
            self.add(read.stores, read.index, expr, latex, "definition")
        return number

    def reference(self, read: LineRead, chain: _Chain, latex: str, notes: list[str]) -> int | None:
        """The hidden equation the members of this line are compared with (None: the truth by
        name, or a name's own definition)."""
        if chain.reference is not None and read.lhs is None:
            return chain.reference
        kind, name = read.kind, read.defines
        if kind == "adjoint" and not read.per_element:
            return None
        if kind == "node":  # the gradient of a node of the post's own, in the post's graph
            assert name is not None and read.value is not None
            text = f"the true ∂L/∂{name} in the post's graph"
            return self.add(name, read.index, name_bound(read.value), text, "reference")
        if kind == "adjoint":
            assert name is not None
            truth = self.truth.inline(name)
            text = f"the true {_ADJOINT_WORDS.get(name, name)} (one value for every i)"
            return self.add(name, None, name_bound(truth), text, "reference")
        if kind == "forward":
            assert name is not None
            value = getattr(N, name) if name in ("mu", "var") else sp.IndexedBase(name)[N.i]
            text = f"{_FORWARD_WORDS[name]} of the forward graph"
            return self.add(name, read.index, value, text, "reference")
        if kind == "name":
            if read.lhs is not None:  # t = A = B: A defines t, then B is compared with it
                return None
            return self.name_reference(read)  # a name's chain continues: compare with the name
        if read.lhs is None:  # "&= …" after a row whose chain left nothing to compare with
            raise _Unresolved("continues a line whose value could not be kept for its next rows")
        written = unicode(read.lhs)
        self.total = self.last_total = None
        self.diagonal = False
        lhs = self.resolve(read.lhs, notes)
        if kind == "local" and self.diagonal and self.last_total is False:
            lhs = self.diagonal_reading(read, lhs, written, notes)
        if kind == "local":
            # the members of ∂x̂_i/∂x_i = ∂/∂x_i[…] = …: the same derivative as the left side
            self.total = self.last_total
        text = f"the true {written}" if kind == "local" else f"the left side {written}"
        return self.add(read.defines or "identity", read.index, lhs, text, "reference")

    def diagonal_reading(
        self, read: LineRead, held: sp.Expr, written: str, notes: list[str]
    ) -> sp.Expr:
        """∂x̂_i/∂x_i (∂y_i/∂x_i) is written both for the partial with μ and σ² held and for the
        total derivative (the Jacobian's diagonal): the line is read the way its value (its last
        member) is, exactly; a value that is neither is compared with the reading the post's
        earlier lines showed (else the partial), and says so.  Only the reading is chosen here:
        whether the line holds under it is the verifier's."""
        self.total = True
        total = self.resolve(read.lhs, [])
        last = next((k for k in range(len(read.rhs) - 1, -1, -1) if read.rhs[k] is not None), None)
        # a last member read more than one way (``Readings``): any of its readings may say it
        ways = read.readings[last] if last is not None and last < len(read.readings) else None
        values = [] if last is None else [read.rhs[last]] if ways is None else list(ways.values)
        chosen = None
        for reading, value in ((False, held), (True, total)):
            self.total = reading
            for candidate in values:
                try:
                    member = None if candidate is None else self.resolve(candidate, [])
                except _Unresolved:
                    member = None
                if member is not None and _same_value(member, value, self.spec.unbiased):
                    chosen = reading
                    break
            if chosen is not None:
                break
        found = chosen is not None
        if chosen is None:
            chosen = bool(self.diagonal_context)
        else:
            self.diagonal_context = chosen
        self.total = self.last_total = chosen
        self.derivative = "total" if chosen else "held"
        words = (
            "the total derivative: μ and σ² vary with x_i (the Jacobian's diagonal)"
            if chosen
            else "the partial with μ, σ² held"
        )
        why = (
            "its value is that one"
            if found
            else "its value is neither; compared with "
            + ("the reading of the post's earlier lines" if self.diagonal_context is not None
               else "the partial, the reader's default")
        )  # fmt: skip
        notes.append(f"{written} read as {words}: the notation is used both ways, {why}")
        return total if chosen else held

    def alias(self, read: LineRead, definition: sp.Expr, notes: list[str]) -> None:
        """A name defined per element as exactly the layer's y or x̂ (x^{bn}_i = γx̂_i + β, as
        SymPy shows the difference is 0) is that node in later derivatives; any other
        definition (or a new one) is a name only."""
        name = read.defines
        assert name is not None
        self.aliases.pop(name, None)
        if read.index is None or definition.has(sp.Sum):
            return
        for node, words in (("y", "the output y"), ("xhat", "x̂")):
            value = forward_definition(self.spec, node)
            if value is not None and sp.simplify(definition - value) == 0:
                self.aliases[name] = node
                notes.append(
                    f"{name} is {words} (its definition here is exactly that): ∂L/∂{name} and "
                    f"∂{name}/∂x are those of {words}"
                )
                return

    def name_reference(self, read: LineRead) -> int:
        """A name as the value its definition gave it (added after that definition)."""
        name = read.defines
        assert name is not None
        value = sp.IndexedBase(name)[N.i] if read.index is not None else sp.Symbol(name)
        return self.add(f"{name}", read.index, value, f"its definition ({name})", "reference")

    # -- giving a member its value ------------------------------------------------------------
    def resolve(self, expr: sp.Expr, notes: list[str]) -> sp.Expr:
        """``expr`` with its local derivatives replaced by their values and the gradients no
        earlier line defines by their true values (each said in ``notes``)."""
        if expr.has(N.Partial):
            # ∂l/∂m_b ∂m_b/∂x + ∂l/∂μ_{bh} ∂μ_{bh}/∂x: the path through m is spelled out, so
            # ∂μ/∂x is the local one, m held (``no_hidden_path``)
            self.held = {(label_of(m) or "")[len(OWN_ADJOINT) :] for m in _own_marks(expr)}
            expr = _replace_partials(expr, self, _other_paths(expr))
            notes.append("local derivatives replaced by their true values")
        # A gradient no earlier line defines stands for its true value; one an earlier line
        # defines is what that line computes (a wrong one is carried on, and ``verify.mistakes``
        # tells a line that only inherits it from a mistake of its own).
        assumed = []
        mapping2: dict[sp.Expr, sp.Expr] = {}
        for sym in expr.free_symbols:
            if isinstance(sym, sp.Symbol) and sym.name in ("dvar", "dmu", "dgamma", "dbeta"):
                if sym.name not in self.defined:
                    mapping2[sym] = self.truth.inline(sym.name)
                    assumed.append(sym.name)
            if sym == DSTD:
                # σ = √σ² feeds x̂ only through σ²: ∂L/∂σ = ∂L/∂σ² · dσ²/dσ = 2σ ∂L/∂σ²
                mapping2[sym] = 2 * sp.sqrt(N.var) * self.truth.inline("dvar")
                assumed.append(DSTD.name)
        for node in expr.atoms(sp.Indexed):
            label = str(node.base.label)
            if label in ("dxhat", "dx", "dgamma", "dbeta") and label not in self.defined:
                mapping2[node] = at_index(self.truth.inline(label), node.indices[0])
                assumed.append(label)
        mapping2.update(self.own_adjoints(expr, notes))
        mapping2.update(self.expression_adjoints(expr, notes))
        if mapping2:
            expr = expr.xreplace(mapping2)
        if assumed:
            words = ", ".join(_ADJOINT_WORDS[a] for a in sorted(set(assumed)))
            notes.append(f"uses {words} as its true value (no earlier line defines it)")
        return name_bound(expr)

    def _true_stage_adjoints(self) -> dict[str, sp.Expr]:
        """∂L/∂x̂_i, ∂L/∂σ², ∂L/∂μ at their true values: where the post's own graph (its names,
        its written sub-expressions) meets the layer's."""
        return {
            "dxhat": self.true_adjoint("dxhat", N.i),
            "dvar": self.truth.inline("dvar"),
            "dmu": self.truth.inline("dmu"),
        }

    def own_adjoints(self, expr: sp.Expr, notes: list[str]) -> dict[sp.Expr, sp.Expr]:
        """∂L/∂σ, ∂L/∂v_p, ∂L/∂μ_{pq} of the post's own names: their values in its graph."""
        marks = _own_marks(expr)
        if not marks:
            return {}
        truth = self._true_stage_adjoints()
        found: dict[sp.Expr, sp.Expr] = {}
        for mark in marks:
            name = (label_of(mark) or "")[len(OWN_ADJOINT) :]
            index = mark.indices[0] if isinstance(mark, sp.Indexed) else None
            with _graph_answers():
                found[mark] = self.graph.adjoint(name, index, truth)
            notes.append(
                f"uses ∂L/∂{name} as worked out in the post's own graph (its forward lines as "
                "written, the true gradients of y, x̂, σ², μ)"
            )
        return found

    def expression_adjoints(self, expr: sp.Expr, notes: list[str]) -> dict[sp.Expr, sp.Expr]:
        """∂L/∂(γx̂_i) of a sub-expression of the forward pass: the gradient of that node once
        the forward graph is rewritten with it as one (``expr_nodes``)."""
        marks = expr.atoms(N.ExprAdjoint)
        if not marks:
            return {}
        truth = self._true_stage_adjoints()
        lines = forward_lines(self.spec, self.graph)
        found: dict[sp.Expr, sp.Expr] = {}
        for mark in sorted(marks, key=sp.default_sort_key):  # a set: its notes in one order
            with _graph_answers():
                found[mark], note = expression_adjoint(mark.args[0], lines, truth)
            notes.append(note)
        return found

    def partial(self, p: N.Partial, paths: bool) -> sp.Expr:
        of, wrt = p.of, p.wrt
        if isinstance(wrt, N.ExprNode):  # ∂y_i/∂(γx̂_i): the sub-expression as a node
            with _graph_answers():
                lines = forward_lines(self.spec, self.graph)
                return expression_partial(of, wrt.args[0], lines)
        # ∂σ_b/∂v_p (the other nodes of the post's graph held), or ∂μ_{bh}/∂x_{pq} of a name
        # whose path through another is spelled out
        if self.graph.owns(label_of(wrt) or "") or self.no_hidden_path(of, wrt):
            with _graph_answers():
                return self.graph.partial(of, wrt, len(self.equations) + 1)
        if not self.spec.training and (of in (N.mu, N.var) or wrt in (N.mu, N.var)):
            raise _Unresolved(
                "in eval mode μ and σ² are running statistics, not stages of the graph"
            )
        of = self.expand_names(of)
        total = False
        if isinstance(wrt, sp.Indexed) and str(wrt.base.label) == "x":
            if self.total is not None:  # a member of a local derivative's line: as its left side
                # ∂x̂_i/∂x_i = ∂x̂_i/∂x_i + ∂x̂_i/∂μ ∂μ/∂x_i + …: the x̂ (y) it adds the paths to
                # is the direct one
                node = isinstance(of, sp.Indexed) and str(of.base.label) in ("xhat", "y")
                total = self.total and not (paths and node)
            elif isinstance(of, sp.Indexed) and str(of.base.label) in ("xhat", "y"):
                # ∂x̂_i/∂x_i: the direct path (μ, σ² held); ∂x̂_k/∂x_i: the full Jacobian,
                # unless the line adds the paths through μ and σ² itself
                total = of.indices[0] != wrt.indices[0] and not paths
                self.diagonal = not total and not paths
            elif of not in (N.mu, N.var) and not isinstance(of, sp.Indexed):
                total = not paths  # ∂(x_k/√(σ²+ε))/∂x_i: μ and σ² follow x
            self.last_total = total
        return partial_value(of, wrt, self.spec, total)

    def no_hidden_path(self, of: sp.Expr, wrt: sp.Expr) -> bool:
        """∂μ_{bh}/∂x_{pq} of a name the post defines through another of its names (μ_{bh} =
        x_{bh} − 1_h m_b): with m held fixed (the local derivative of the post's graph) or
        through m (the total one)?  The notation does not say, so it is not checked, unless
        the line spells out the path through m (∂l/∂m_b ∂m_b/∂x_{pq} + …): then it is the local
        one (True)."""
        if not (isinstance(wrt, sp.Indexed) and str(wrt.base.label) == "x"):
            return False
        defs = {eq.name: eq.expr for eq in self.equations if eq.kind == "definition"}
        local = False
        for name in _names_in(of) & set(defs):
            inner = _names_in(defs[name]) & set(defs)
            if inner and inner <= self.held:
                local = True
            elif inner:
                raise _Unresolved(hidden_path(name, sorted(inner), "x"))
        return local

    def true_adjoint(self, name: str, index: sp.Expr) -> sp.Expr:
        """The true ∂L/∂(a node of the layer) at ``index`` (for the gradients of a post's own
        nodes)."""
        return at_index(self.truth.inline(name), index)

    def expand_names(self, expr: sp.Expr) -> sp.Expr:
        """A name's definition where a local derivative needs what the name is."""
        defs = {
            eq.name: (eq.elementwise, eq.expr) for eq in self.equations if eq.kind == "definition"
        }
        return inline(expr, defs) if defs else expr


def _own_marks(expr: sp.Expr) -> list[sp.Expr]:
    """The gradients with respect to a post's own names in ``expr`` (``OWN_ADJOINT``), in
    SymPy's canonical order: a set of them iterates in the order of the string hashes
    (PYTHONHASHSEED), and the notes ``check`` prints follow this order."""
    marks: list[sp.Expr] = [s for s in expr.free_symbols if isinstance(s, sp.Symbol)]
    marks += list(expr.atoms(sp.Indexed))
    own = [m for m in marks if (label_of(m) or "").startswith(OWN_ADJOINT)]
    return sorted(own, key=sp.default_sort_key)


def _names_in(expr: sp.Expr) -> set[str]:
    """The symbols and array bases an expression names (m, μ of μ[h])."""
    out = {s.name for s in expr.free_symbols if isinstance(s, sp.Symbol)}
    return out | {str(a.base.label) for a in expr.atoms(sp.Indexed)}


def _replace_partials(expr: sp.Expr, builder: _Builder, paths: bool) -> sp.Expr:
    """Innermost Partial first (a Partial may hold another in what it differentiates)."""
    if isinstance(expr, N.Partial):
        inner = N.Partial(_replace_partials(expr.of, builder, paths), expr.wrt, expr.args[2])
        return builder.partial(inner, paths)
    if not expr.args or not expr.has(N.Partial):
        return expr
    return expr.func(*[_replace_partials(a, builder, paths) for a in expr.args])


def _same_value(a: sp.Expr, b: sp.Expr, unbiased: bool) -> bool:
    """Do ``a`` and ``b`` agree at a few batches (M = 4, 5, 6 rational elements, μ and σ² their
    statistics, every other symbol a positive rational; 40 digits)?  Only to choose between two
    readings of a notation: whether the line holds is the verifier's, for the reading chosen."""
    diff = a - b
    if diff.has(N.Partial):
        return False
    for point in range(3):
        m = 4 + point
        xs = [sp.Rational(1 + (7 * k + 3 * point) % 11, 2 + point) for k in range(m + 1)]
        mu = sum(xs[1:], sp.Integer(0)) / m
        var = sum(((v - mu) ** 2 for v in xs[1:]), sp.Integer(0)) / (m - 1 if unbiased else m)
        value = diff.xreplace({N.M: sp.Integer(m), N.mu: mu, N.var: var})
        indices = {
            s for e in value.atoms(sp.Indexed) for s in e.indices if isinstance(s, sp.Symbol)
        }
        value = value.xreplace({s: sp.Integer(2) for s in indices & value.free_symbols}).doit()
        value = value.xreplace(
            {e: xs[int(e.indices[0])] for e in value.atoms(sp.Indexed) if e.indices[0].is_Integer}
        )
        symbols = sorted(value.free_symbols, key=str)
        value = value.xreplace(
            {s: sp.Rational(3 + (5 * k + 2 * point) % 13, 2 + point) for k, s in enumerate(symbols)}
        )
        number = sp.N(value, 40)
        if not number.is_number or number.has(sp.nan, sp.zoo) or abs(number) > 1e-25:
            return False
    return True


def _other_paths(expr: sp.Expr) -> bool:
    """Does a chain rule spell out the paths through μ and σ² (∂L/∂μ ∂μ/∂x_i + …)?  Then its
    ∂x̂/∂x is the direct path only."""
    names = {s.name for s in expr.free_symbols if isinstance(s, sp.Symbol)}
    if names & {"dmu", "dvar"}:
        return True
    for p in expr.atoms(N.Partial):
        if p.of in (N.mu, N.var) or p.wrt in (N.mu, N.var):
            return True
    return False


# -- reading ------------------------------------------------------------------------------------------
def load_preamble(path: str | Path) -> Preamble:
    """The macro definitions of a file a post keeps apart from its maths (``--preamble``):
    ``\\newcommand``, ``\\renewcommand``, ``\\providecommand``, ``\\def``,
    ``\\DeclareMathOperator``, read as data.  A file that cannot be read, or defines none of
    them, is an ``InputFileError`` (exit code 2)."""
    where = str(path)
    text = read_text(path, "a file of LaTeX macro definitions (\\newcommand, \\def)", FILE_BYTES)
    macros, _ = find_definitions(text.replace("\r\n", "\n"))
    if not macros:
        raise InputFileError(
            f"{where}: no macro definition in it; a preamble holds LaTeX definitions "
            "(\\newcommand{\\pdiv}[1]{\\partial #1}, \\def, \\DeclareMathOperator), read as "
            "data (a MathJax configuration's macros are not read)."
        )
    return Preamble(where, macros)


def _preamble_note(preamble: Preamble, body: str) -> str:
    """What the document took from its preamble: the macros it uses (or that it uses none)."""
    used = [
        f"\\{name}"
        for name in sorted(preamble.macros)
        if re.search(rf"\\{re.escape(name)}(?![a-zA-Z])", body)
    ]
    count = f"{len(preamble.macros)} macro definition(s) read from the preamble {preamble.where}"
    if not used:
        return f"{count}; the document uses none of them"
    return f"{count}; the document uses {', '.join(used)}"


def load_document(
    path: str | Path, text: str | None = None, preamble: Preamble | None = None
) -> DocumentForm:
    """Read a derivation document (.md, .tex or .ipynb) into a form; see the module docstring.
    ``preamble``: macros the post defines in another file (``load_preamble``)."""
    path = Path(path)
    where = str(path)
    suffix = path.suffix.lower()
    if text is None:
        cap = NOTEBOOK_BYTES if suffix == ".ipynb" else FILE_BYTES
        text = read_text(path, "a derivation: a Markdown, LaTeX or notebook file", cap)
    text = text.replace("\r\n", "\n")
    cells: list[tuple[int, int]] = []
    if suffix == ".ipynb":
        text, cells = _notebook_text(text, where)
    markdown = suffix != ".tex"
    try:
        return _read(text, markdown, where, path.stem, cells, preamble=preamble)
    except LatexError as exc:
        raise LatexError(f"{where}, {exc}") from None
    except FormError as exc:
        message = str(exc)
        raise FormError(message if message.startswith(where) else f"{where}, {message}") from None


def load_expression(
    text: str, *, sigma: str | None = None, mode: str | None = None
) -> DocumentForm:
    """One equation from the command line (``bnderive check --expr``), or a few, one per line
    or separated by ``\\\\``: read as the lines of a document, with ``sigma`` and ``mode`` as
    its front matter would say them."""
    extra = {"name": "expr"}
    if sigma:
        extra["sigma"] = sigma
    if mode:
        extra["mode"] = mode
    try:
        return _read(text.replace("\r\n", "\n"), False, "--expr", "expr", extra=extra)
    except LatexError as exc:
        raise LatexError(f"--expr, {exc}") from None
    except FormError as exc:
        message = str(exc)
        raise FormError(message if message.startswith("--expr") else f"--expr, {message}") from None


def _read(
    text: str,
    markdown: bool,
    where: str,
    stem: str,
    cells: list[tuple[int, int]] | None = None,
    extra: dict[str, str] | None = None,
    preamble: Preamble | None = None,
) -> DocumentForm:
    """The steps of reading a document: its front matter and body, the blocks of maths and
    their rows, the conventions and the normalization the maths implies, each row read and
    turned into equations, and the form."""
    meta, at, body = _front_and_body(text, markdown, where, extra)
    macros, definitions = find_definitions(body)  # the post's own macros: data, expanded
    if preamble is not None:
        macros = with_preamble(macros, preamble.macros)
    body = _blank_spans(body, definitions)
    modes = _modes(meta.get("mode", "both"), at.get("mode", 1))
    spans, bare = _maths_spans(body, markdown)
    rows = [
        (offset, piece)
        for start, end, _inline in spans
        for offset, piece in _lines(body, start, end, bare)
    ]
    maths = "\n".join(_expanded(piece, macros) for _, piece in rows)
    # ε's convention is the derivation's: a row that only gives ε a value (the code adds
    # $\epsilon = 10^{-5}$) says what ε is in the code, not where the lines put it
    valued = [o for o, piece in rows if _EPSILON_VALUE.match(_expanded(piece, macros))]
    eps_maths = "\n".join(_expanded(p, macros) for o, p in rows if o not in valued)
    norm = _normalization(meta, at, _blank_spans(body, [(a, b) for a, b, _ in spans]), where)
    if norm is Norm.BATCH and "norm" not in meta and _layer_maths(maths):
        norm = Norm.LAYER
    # code is read in the (N, D) layout of the per-activation mode (axis 0 the batch)
    code = _code_rows(text) if markdown else []
    if code and "mode" not in meta:
        modes = (Mode.PER_ACTIVATION,)
    elif modes == (Mode.SPATIAL,):
        code = []
    if code:
        maths = "\n".join([maths, *(line for _, line in code)])
        eps_maths = "\n".join([eps_maths, *(line for _, line in code)])
    if not spans and not code:
        raise FormError(
            "line 1: no display math found: expected \\begin{align} … \\end{align} (or align*, "
            "eqnarray, equation" + (", $$ … $$" if markdown else ", \\[ … \\]") + ")"
        )
    if norm is Norm.LAYER:
        modes = (Mode.PER_ACTIVATION,)  # one sample's features: the layout is (N, D)
    valued_lines = [body.count("\n", 0, o) + 1 for o in valued]
    einstein, said = _einstein(meta, at, maths)
    family, lettered = _own_letters(_family(norm, maths, einstein), body, rows, macros)
    eps = (eps_maths, valued_lines)
    spec, sigma, notes = _conventions(meta, at, maths, norm, eps, family.labels)
    notes += said
    if preamble is not None:
        notes.append(_preamble_note(preamble, body))
    notes.extend(_family_notes(family) + lettered)
    builder = _Builder(spec)
    notes.extend(builder.inverse_std(_inverse_std_words(maths, text)))
    reading = _Reading(builder, body, cells or [], sigma, modes == (Mode.SPATIAL,), family)
    reading.macros = macros
    if code:
        reading.code = CodeReader.for_rows(
            [line for _, line in code], builder.true_adjoint, family.layer, family.sizes
        )
    for offset, piece, is_code in sorted(
        [(o, p, False) for o, p in rows] + [(o, p, True) for o, p in code]
    ):
        if is_code:
            reading.code_row(offset, piece)
        else:
            reading.row(offset, piece)
    _something_to_check(builder.equations, reading.lines)
    if "variance" not in meta and spec.training and spec.norm is Norm.BATCH:
        # BatchNorm only: LayerNorm is defined with the biased variance (a post's 1/(D − 1)
        # line is refuted as any wrong line), and its nominal spec has one element per set
        biased, unbiased = _variance_written(builder, reading.lines)
        if unbiased and not biased:
            # the forward lines compute σ² with Bessel's 1/(M−1): the layer the post describes
            # normalizes with it, so every line is read again against that layer's truth
            again = _read(
                text,
                markdown,
                where,
                stem,
                cells,
                {**(extra or {}), "variance": "unbiased"},
                preamble,
            )
            return replace(again, notes=(*again.notes, _unbiased_note(unbiased)))
        if unbiased:
            notes.append(_mixed_variance_note(biased, unbiased))
    sources = meta.get("sources") or meta.get("source") or meta.get("citation") or []
    if isinstance(sources, str):
        sources = [sources]
    return DocumentForm(
        name=str(meta.get("name") or stem),
        title=str(meta.get("title") or meta.get("name") or stem),
        sources=tuple(str(s) for s in sources),
        equations=tuple(builder.equations),
        unbiased=spec.unbiased,
        eps_inside=spec.eps_inside,
        training=spec.training,
        modes=modes,
        description=str(meta.get("description", "")),
        path=where,
        notes=tuple(notes),
        eps_zero=spec.eps_zero,
        norm=norm,
        lines=tuple(reading.lines),
        steps=tuple(builder.steps),
        references=tuple(builder.references),
        readings=tuple(builder.readings),
    )


def _front_and_body(
    text: str, markdown: bool, where: str, extra: dict[str, str] | None
) -> tuple[dict[str, Any], dict[str, int], str]:
    """The front matter (with ``extra`` as if it said it), where each key was, and the body with
    what is not maths blanked out (code, comments), positions kept."""
    if markdown:
        entries, body_start = _md_front_matter(text)
        body = _blank(text, 0, body_start)
        body = _mask_html_comments(_mask_inline_code(_mask_code_fences(body)))
        body = _unquote_math_images(body)
    else:
        entries = _tex_front_matter(text)
        body = _strip_tex_comments(text)
    meta = _front_matter(entries, where)
    at = meta.pop("_lines")
    meta.update(extra or {})
    return meta, at, body


def _maths_spans(body: str, markdown: bool) -> tuple[list[tuple[int, int, bool]], bool]:
    """The blocks of maths; a .tex file without any is its bare equations, one per line (then
    ``bare`` is True)."""
    spans = _blocks(body, markdown)
    if not spans and not markdown and not _BEGIN.search(body):
        stripped = body.strip()
        if stripped:
            start = body.index(stripped)
            return [(start, start + len(stripped), False)], True
    return spans, False


def _conventions(
    meta: dict[str, Any],
    at: dict[str, int],
    maths: str,
    norm: Norm,
    eps: tuple[str, list[int]] | None = None,
    labels: frozenset[str] = frozenset(),
) -> tuple[Spec, str | None, list[str]]:
    """The spec the document is checked against, what a bare σ means, and the notes on what the
    maths implied (σ the standard deviation, where ε is). ``eps``: the maths that decides ε
    (the rows that do more than give ε a value) and the lines of those that only do that;
    ``labels`` the document's layer labels (σ^l + ε is σ + ε)."""
    notes: list[str] = []
    sigma = meta.get("sigma") or None
    if sigma not in (None, "std", "var"):
        raise FormError(
            f"line {at['sigma']}: sigma: {sigma!r}; use std (σ is the standard deviation √σ²) "
            "or var (σ is the variance)"
        )
    squared, bare = _sigma_forms(maths)
    if sigma is None and squared and bare:
        sigma = "std"
        notes.append(
            "σ is the standard deviation √σ² here: the post writes both σ² and σ (declare "
            "`sigma: var` if its σ is the variance)"
        )
    epsilon = str(meta.get("epsilon", "")).strip().lower()
    if epsilon not in ("", "inside", "outside", "none"):
        raise FormError(
            f"line {at.get('epsilon', 1)}: epsilon: {meta['epsilon']!r}; use inside, outside "
            "or none (ε = 0)"
        )
    eps_maths, valued = eps if eps is not None else (maths, [])
    if not epsilon and not _EPSILON.search(eps_maths) and (squared or bare):
        epsilon = "none"
        notes.append(_epsilon_zero_note(valued))
    elif not epsilon and sigma == "std" and _epsilon_beside_sigma(eps_maths, labels):
        # Sinai 2022: Z = a(X − μ)/(σ + ε) + b, σ the standard deviation
        epsilon = "outside"
        notes.append(
            "ε outside the root, σ + ε: the post adds ε only to the standard deviation σ "
            "(declare `epsilon: inside` if it means √(σ²+ε))"
        )
    elif not epsilon and valued:
        notes.append(_epsilon_inside_note(valued))
    training = _choice(meta, at, "training", {"true": True, "false": False}, True)
    if norm is Norm.LAYER and not training:
        raise FormError(
            f"line {at.get('training', 1)}: training: false is BatchNorm's eval mode; "
            "LayerNorm normalizes every sample by its own statistics and has no eval mode"
        )
    spec = Spec(
        training=training,
        unbiased=_choice(meta, at, "variance", {"biased": False, "unbiased": True}, False),
        eps_inside=epsilon != "outside",
        eps_zero=epsilon == "none",
        n=3,
        norm=norm,
    )
    return spec, sigma, notes


def _variance_written(builder: _Builder, lines: Sequence[DocLine]) -> tuple[list[str], list[str]]:
    """The places of the forward lines (σ² = …, x̂_i = …, y_i = …) whose value is the biased
    variance's and not the unbiased one's, and those whose value is the unbiased variance's and
    not the biased one's: σ² = Σ(x_k − μ)²/(M − 1), or x̂_i with that variance written out.  A
    line that writes σ² by its symbol agrees with both and says nothing; a wrong line agrees
    with neither.  Each member is compared at a few batches (``_same_value``), under each
    convention with μ and σ² that convention's statistics."""
    truths: dict[tuple[str, bool], sp.Expr | None] = {}  # built when a forward line needs one

    def truth(name: str, unbiased: bool) -> sp.Expr | None:
        if (name, unbiased) not in truths:
            try:
                spec = replace(builder.spec, unbiased=unbiased)
            except SpecError:  # LayerNorm's spec: a set of one feature, M − 1 = 0
                truths[name, unbiased] = None  # that convention says nothing here
            else:
                truths[name, unbiased] = forward_definition(spec, name)
        return truths[name, unbiased]

    biased: list[str] = []
    unbiased: list[str] = []
    for doc in lines:
        if doc.read is None or doc.read.kind != "forward" or doc.status != "checked":
            continue
        name = doc.read.defines
        if name not in ("var", "xhat", "y"):
            continue
        for number in (n for n in doc.members if n is not None):
            expr = builder.equations[number - 1].expr
            agrees: dict[bool, bool] = {}
            for u in (False, True):
                value = truth(name, u)
                agrees[u] = value is not None and _same_value(expr, value, u)
            if agrees[False] != agrees[True]:
                (unbiased if agrees[True] else biased).append(doc.place)
    return list(dict.fromkeys(biased)), list(dict.fromkeys(unbiased))


def _unbiased_note(places: list[str]) -> str:
    return (
        f"the unbiased variance σ² = Σ(x_k − μ)²/(M − 1): {_and(places)} "
        f"{'writes' if len(places) == 1 else 'write'} it in the forward pass, so every line is "
        "checked against the layer that normalizes with it (declare `variance: biased` if the "
        "layer's x̂ uses 1/M)"
    )


def _mixed_variance_note(biased: list[str], unbiased: list[str]) -> str:
    return (
        f"the post writes the variance both ways: the biased 1/M ({_and(biased)}) and the "
        f"unbiased 1/(M − 1) ({_and(unbiased)}); read with the biased variance, so the "
        "1/(M − 1) lines are refuted (declare `variance: unbiased` if the layer's x̂ uses it)"
    )


def _and(places: list[str]) -> str:
    return places[0] if len(places) == 1 else ", ".join(places[:-1]) + " and " + places[-1]


def _family_notes(family: Family) -> list[str]:
    """What the notation was read as, said with the document: LayerNorm's sizes."""
    return [_layer_note(family)] if family.layer else []


def _own_letters(
    family: Family, body: str, rows: Sequence[tuple[int, str]], macros: dict[str, Macro]
) -> tuple[Family, list[str]]:
    """``family`` with the post's own letters for γ, β, y, x̂, x (``letters.letter_roles``,
    learned from its forward lines), and the notes that say what was read or refused."""
    equations = []
    for offset, piece in rows:
        lead = len(piece) - len(piece.lstrip())
        for shift, equation, _side in _equations(piece.strip()):
            lead2 = len(equation) - len(equation.lstrip())
            at = _position(body, offset + lead + shift + lead2)
            try:  # as ``_Reading.equation`` reads it, so that the line's tree is parsed once
                equations.append((*at, expand(equation.strip(), macros)))
            except MacroError:
                continue
    roles = letter_roles(equations, family, headings(body))
    family = replace(family, letters=roles.letters, outputs=roles.outputs, named=roles.named)
    return family, roles.notes


def _layer_note(family: Family) -> str:
    sizes = ", ".join(sorted(family.sizes - {"M"}))
    batch = f"; {family.batch} is the batch size" if family.batch else ""
    return (
        "read as Layer Normalization: statistics over the features of one sample (the set; "
        f"{sizes} its size{batch}), γ_i and β_i one per feature, ∂L/∂γ_i and ∂L/∂β_i this "
        "sample's part of the sum over the batch (declare `norm: batch` if it is BatchNorm)"
    )


@dataclass
class _Reading:
    """The rows of a document read one by one, into ``lines`` (and the builder's equations)."""

    builder: _Builder
    body: str
    cells: list[tuple[int, int]]
    sigma: str | None
    spatial: bool
    family: Family
    lines: list[DocLine] = field(default_factory=list)
    code: CodeReader | None = None  # the assignments of the post's code blocks, when it has any
    #: the row just read when it is an expression without '=' (its text, place, index in
    #: ``lines``): an `&= …` row right after it makes it the left side of a chain
    pending: tuple[str, tuple[int, int], int] | None = None
    macros: dict[str, Macro] = field(default_factory=dict)  # the document's own (``macros``)

    def row(self, offset: int, piece: str) -> None:
        """One row of a block: each of its equations ("A = B, \\qquad C = D" is two)."""
        lead = len(piece) - len(piece.lstrip())
        line, _ = _position(self.body, offset + lead)
        latex = piece.strip()
        place = _cell_of(line, self.cells) if self.cells else ""
        if _EPSILON_VALUE.match(_expanded(latex, self.macros)):
            # ε = 10^{-5}: the code's constant; the check keeps ε a symbol (every ε > 0)
            at = _position(self.body, offset + lead)
            reason = "gives ε a value: ε is kept a symbol (every ε > 0), so a value is not checked"
            self.lines.append(DocLine(*at, latex, None, (), reason, "not checked", (), place))
            return
        for shift, equation, side in _equations(latex):
            lead2 = len(equation) - len(equation.lstrip())
            at = _position(self.body, offset + lead + shift + lead2)
            self.equation(equation.strip(), at, side, place)

    def equation(self, equation: str, at: tuple[int, int], side: bool, place: str) -> None:
        """One equation: read, then turned into equations of the form; a remark's equation
        (``side``) is no part of the row's chain."""
        builder = self.builder
        pending, self.pending = self.pending, None
        if pending is not None and not side and _continuation(equation):
            # "& A \\ &= B": the row A, an expression alone, is the chain's left side
            text, at, index = pending
            del self.lines[index]
            equation = f"{text}\n{equation}"
            builder.chain = None
        chain = builder.chain
        if side:
            builder.chain = None
        try:
            read = parse_equation_line(
                self.expanded(equation, at),
                sigma=self.sigma,
                spatial=self.spatial,
                line=at[0],
                column=at[1],
                continues=builder.chain.continues if builder.chain is not None else None,
                names=builder.names,
                family=self.family,
                aliases=builder.aliases,
            )
        except LatexError as exc:
            self.builder.graph.gap(len(self.builder.equations), equation)
            reason = _unread(exc, equation) + self.as_expanded(equation, exc)
            self.lines.append(DocLine(*at, equation, None, (), reason, "not read", (), place))
            self.unread(exc, equation, chain, side)
            return
        status, numbers, reason, notes = builder.line(read, equation)
        self.lines.append(
            DocLine(*at, equation, read, numbers, reason, status, tuple(notes), place,
                    tuple(builder.members), builder.derivative)
        )  # fmt: skip
        if read.kind == "prose" and read.reason.startswith("an expression without"):
            self.pending = (equation, at, len(self.lines) - 1)
        if side:
            builder.chain = chain

    def expanded(self, equation: str, at: tuple[int, int]) -> str:
        """The equation with the document's own macros expanded (``macros.expand``); a use
        that cannot be expanded is a line not read, at the macro."""
        try:
            return expand(equation, self.macros)
        except MacroError as exc:
            head = equation[: exc.offset]
            line = at[0] + head.count("\n")
            column = (at[1] if "\n" not in head else 1) + len(head.rsplit("\n", 1)[-1])
            raise LatexError(str(exc), line, column) from None

    def as_expanded(self, equation: str, exc: LatexError) -> str:
        """What a line not read was read as, when the document's macros changed it (the
        column of the message is in that text)."""
        try:
            text = expand(equation, self.macros)
        except MacroError:
            return ""
        if text == equation:
            return ""
        return f" (the line as read, its macros expanded: {' '.join(text.split())})"

    def code_row(self, offset: int, text: str) -> None:
        """One assignment of a code block (``code_lines``): a line of its own, never a chain's."""
        assert self.code is not None
        self.pending = None
        at = _position(self.body, offset)
        place = _cell_of(at[0], self.cells) if self.cells else ""
        self.builder.chain = None
        try:
            read = read_row(self.code, text, *at)
        except LatexError as exc:
            self.lines.append(DocLine(*at, text, None, (), str(exc), "not read", (), place))
            self.builder.chain = _Chain(("none", None, None))
            return
        status, numbers, reason, notes = self.builder.line(read, text)
        self.lines.append(
            DocLine(*at, text, read, numbers, reason, status, tuple(notes), place,
                    tuple(self.builder.members))
        )  # fmt: skip
        self.builder.chain = _Chain(("none", None, None))

    def unread(self, exc: LatexError, equation: str, chain: _Chain | None, side: bool) -> None:
        """What a row not read leaves for the rows that continue it."""
        builder = self.builder
        partial = exc.partial
        if side:
            builder.chain = chain
        elif partial is not None and partial.lhs is not None and not partial.reason:
            builder.line(partial, equation)  # its left side: the next rows' value
            assert builder.chain is not None
            builder.chain.last = None
        elif _continuation(equation) and chain is not None:
            chain.last = None  # "&= …" not read: the chain's next rows still say its value
        else:
            builder.chain = _Chain(("none", None, None))


def _something_to_check(equations: Sequence[Equation], lines: Sequence[DocLine]) -> None:
    """A document where no line states a value bnderive can check is bad input: the first
    line's reason (the reader's message when nothing could be read)."""
    if any(eq.kind in ("quantity", "checked") for eq in equations):
        return
    unread = [d for d in lines if d.status == "not read"]
    if unread and len(unread) == len([d for d in lines if d.status != "prose"]):
        first = unread[0]
        if first.reason.startswith("line "):  # the reader's message says where already
            raise LatexError(first.reason)
        raise LatexError(first.reason, first.line, first.column)
    reasons = "; ".join(f"line {d.line}: {d.reason}" for d in lines if d.reason)
    raise FormError(
        f"line {lines[0].line if lines else 1}: nothing to check: no line states a value "
        "bnderive can check (∂L/∂x̂_i, ∂L/∂σ², ∂L/∂μ, ∂L/∂x_i, ∂L/∂γ, ∂L/∂β, μ, σ², x̂, y, a "
        "local derivative)" + (f" ({reasons})" if reasons else "")
    )


#: GitHub's maths images: <img src="https://render.githubusercontent.com/render/math?math=…">.
_MATH_IMAGE = re.compile(
    r"<img\s[^>]*?src=\"https?://render\.githubusercontent\.com/render/math\?math=([^\"]*)\"[^>]*>"
)


def _unquote_math_images(body: str) -> str:
    """The LaTeX of each GitHub maths image (URL-decoded: %2B is +), as inline maths ``$…$`` in
    its place (padded: positions after it stay right)."""

    def one(match: re.Match) -> str:
        latex = unquote(match.group(1)).replace("$", " ").replace("\n", " ")
        inner = f"${latex}$"
        return inner + " " * max(0, len(match.group(0)) - len(inner))

    return _MATH_IMAGE.sub(one, body)


_MATRIX = re.compile(r"\\begin\{(pmatrix|bmatrix|vmatrix|Bmatrix|matrix|array|cases)\}")


def _unread(exc: LatexError, text: str) -> str:
    """Why a line was not read: the reader's message (column, token, what was expected), or
    what the line is when it is out of reach (a matrix)."""
    matrix = _MATRIX.search(text)
    if matrix:
        return (
            f"a {matrix.group(1)} environment (matrix notation) is not understood; bnderive "
            "reads index notation (x_i, Σ_k)"
        )
    return str(exc)


def _modes(text: str, line: int) -> tuple[Mode, ...]:
    value = str(text).strip().lower()
    if value == "both":
        return (Mode.PER_ACTIVATION, Mode.SPATIAL)
    try:
        return (Mode.parse(value),)
    except Exception:
        raise FormError(
            f"line {line}: mode: {text!r}; use per-activation, spatial or both"
        ) from None


def _choice(
    meta: dict[str, Any], at: dict[str, int], key: str, options: dict[str, bool], default: bool
) -> bool:
    if key not in meta:
        return default
    value = str(meta[key]).strip().lower()
    if value not in options:
        raise FormError(f"line {at.get(key, 1)}: {key}: {meta[key]!r}; use {' or '.join(options)}")
    return options[value]


def is_document(path: str | Path) -> bool:
    return Path(path).suffix.lower() in SUFFIXES


def line_notes(form: Form, verdicts: Sequence[Any] = (), mistakes: Sequence[Any] = ()) -> list[str]:
    """For a document, what the table of ``check`` does not show: the conventions the post
    implies (ε = 0, σ), the lines not read or not checked and why, what a checked line assumed
    (a gradient taken as its true value), the first refuted line, and each independent mistake
    (``verify.mistakes``) with the lines that follow from it or use it.  Empty when there is
    nothing to say."""
    if not isinstance(form, DocumentForm):
        return []
    out = [f"{form.name} ({form.path}):"]
    for note in form.notes:
        out.append(f"  note: {note}")
    for line in form.lines:
        if line.status in ("not read", "not checked"):
            out.append(f"  · {line.place} {line.status}: {line.reason}")
        elif line.status in ("checked", "definition"):
            out += [f"  {line.place} ({line.defines}): {note}" for note in line.notes
                    if not note.startswith("local derivatives")]  # fmt: skip
    out += _every_reading_holds(form, verdicts)
    refuted = sorted(
        {v.equation for v in verdicts if v.form == form.name and v.status.value == "refuted"
         and v.follows is None and v.equation is not None}
    )  # fmt: skip
    if len(out) == 1 and not refuted:
        return []
    if refuted:
        first = form.line_of(refuted[0])
        if first is not None:
            out.append(
                f"  first refuted: line {first.line} of {form.path} ({first.defines}): "
                f"{_one_line(first.latex)}"
            )
    if len(mistakes) > 1:
        places = [_place(form, m.equation) for m in mistakes]
        out.append(f"  {len(mistakes)} independent mistakes, at {', '.join(places)}")
    for m in mistakes:
        parts = []
        follows = _lines_of(form, m.follows)
        uses = _lines_of(form, m.inherits)
        if follows:
            parts.append(
                f"line(s) {follows} follow from the line before (faithful steps from a wrong line)"
            )
        if uses:
            parts.append(f"line(s) {uses} use its value (right given it; wrong because it is)")
        if parts:
            where = form.line_of(m.equation)
            out.append(
                f"  the mistake comes in at line {where.line if where else '?'}; "
                + "; ".join(parts)
            )
    return out


def _every_reading_holds(form: DocumentForm, verdicts: Sequence[Any]) -> list[str]:
    """A member read more than one way that holds (every method's verdict on it holds): it
    holds under each reading, which the output says with the question."""
    out = []
    for group in form.readings:
        found = [v for v in verdicts if v.form == form.name and v.follows is None
                 and v.equation == group.equations[0]]  # fmt: skip
        line = form.line_of(group.equations[0])
        if found and line is not None and all(v.status.value == "holds" for v in found):
            out.append(
                f"  {line.place} ({line.defines}): holds under each of its "
                f"{len(group.labels)} readings ({group.question}?)"
            )
    return out


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _place(form: DocumentForm, equation: int) -> str:
    line = form.line_of(equation)
    return f"line {line.line} ({line.defines})" if line is not None else f"equation {equation}"


def _lines_of(form: DocumentForm, equations: Sequence[int]) -> str:
    lines = sorted({ln.line for n in equations if (ln := form.line_of(n)) is not None})
    return ", ".join(map(str, lines))
