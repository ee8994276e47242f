"""Derivation documents: a Markdown or LaTeX file with align blocks, read as a ``Form``.

A document is what a post or a lecture note is: prose, and display math holding the derivation
as a chain of equalities.  bnderive reads the ``align``, ``align*``, ``aligned``, ``eqnarray``,
``equation``, ``gather`` and ``split`` blocks (and ``$$ … $$`` in Markdown, ``\\[ … \\]`` in TeX);
each ``\\\\``-separated line is one line of the derivation:

* ``LHS = RHS`` where the left side is ∂L/∂x̂_i, ∂L/∂σ², ∂L/∂μ, ∂L/∂x_i, ∂L/∂γ or ∂L/∂β (in any
  notation ``latex.py`` understands: δβ, dgamma, \\frac{d\\mathcal{L}}{dh_{ij}}) defines that
  quantity: an ``Equation`` of the form, checked against the truth;
* ``&= RHS`` continues the line before: the same quantity again, checked against the truth too,
  and as a step against the line before (``DocumentForm.steps``);
* a line whose left side is a local derivative (∂σ²/∂x_i, ∂μ/∂x_i, ∂x̂_i/∂σ², ∂x̂_i/∂μ) defines
  ``dvar_dx[i]``, ``dmu_dx[i]``, ``dxhat_dvar[i]``, ``dxhat_dmu[i]``, checked against
  ``derive.local_truth``;
* a line whose left side is something else (∂σ²/∂γ), whose right side holds a local
  derivative, or that uses a gradient no earlier line defines, is "not checked", with the reason;
  a prose line (only ``\\text{…}`` or ``\\intertext{…}``) too;
* anything not understood is an error with the file, line and column (exit code 2).

Front matter (``---`` YAML-like block at the top of a ``.md`` file; ``% bnderive: key: value``
comment lines in a ``.tex`` file) says what the post assumes::

    name: staged-cs231n          # default: the file name
    title: The staged backward pass
    sources:
      - CS231n, assignment 2, https://…
    mode: per-activation         # per-activation | spatial | both (default both)
    variance: biased             # or unbiased: Bessel's 1/(M-1) in the forward
    epsilon: inside              # or outside: √σ² + ε
    training: true               # false: eval mode
    sigma: std                   # what a bare σ means: std (√σ²) or var (the variance)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sympy as sp

from bnderive.core import notation as N
from bnderive.core.spec import Mode
from bnderive.errors import FormError
from bnderive.read.forms import Equation, Form
from bnderive.read.latex_reader import LatexError, LineRead, parse_equation_line

SUFFIXES = (".md", ".markdown", ".tex")


@dataclass(frozen=True)
class DocLine:
    """One line of a document's display math, and what became of it."""

    line: int  # where the line starts in the file (1-based)
    column: int
    latex: str
    read: LineRead | None  # None for a prose line
    equations: tuple[int, ...]  # the form's equation numbers this line became (one per RHS)
    reason: str = ""  # why it is not checked

    @property
    def checked(self) -> bool:
        return bool(self.equations)

    @property
    def defines(self) -> str:
        if self.read is None or self.read.defines is None:
            return ""
        return f"{self.read.defines}[i]" if self.read.index is not None else self.read.defines


@dataclass(frozen=True)
class DocumentForm(Form):
    """A form read from a document: the equations, and every line with where it came from."""

    lines: tuple[DocLine, ...] = ()
    # (equation before, equation): each `&=` continuation (and each further `= …` on one line)
    # is also checked against the expression before it, to say where a mistake came in.
    steps: tuple[tuple[int, int], ...] = ()

    def line_of(self, equation: int) -> DocLine | None:
        for line in self.lines:
            if equation in line.equations:
                return line
        return None


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
            data[key] = value
    data["_lines"] = at
    return data


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


def _mask_code_fences(text: str) -> str:
    """Markdown code blocks hold code, not derivations: blank them out."""
    out = text
    for match in re.finditer(r"^(```|~~~).*?^\1[^\n]*$", text, re.M | re.S):
        out = _blank(out, match.start(), match.end())
    return out


def _blocks(text: str, markdown: bool) -> list[tuple[int, int]]:
    """(start, end) offsets of the contents of every display-math block, in order."""
    spans: list[tuple[int, int]] = []
    taken: list[tuple[int, int]] = []
    for match in _BEGIN.finditer(text):
        if any(a <= match.start() < b for a, b in taken):
            continue
        env = match.group(1)
        end = text.find(f"\\end{{{env}}}", match.end())
        if end < 0:
            line = text.count("\n", 0, match.start()) + 1
            raise FormError(f"line {line}: \\begin{{{env}}} is never closed by \\end{{{env}}}")
        spans.append((match.end(), end))
        taken.append((match.start(), end + len(env) + 6))
    pattern = r"\$\$(.*?)\$\$" if markdown else r"\$\$(.*?)\$\$|\\\[(.*?)\\\]"
    for match in re.finditer(pattern, text, re.S):
        if any(a <= match.start() < b for a, b in taken):
            continue
        group = 1 if match.group(1) is not None else 2
        inner = (match.start(group), match.end(group))
        # An align block inside $$ … $$ was already taken: the $$ are only its wrapper.
        if not any(inner[0] <= a < inner[1] for a, _ in spans):
            spans.append(inner)
        taken.append((match.start(), match.end()))
    opened = re.search(r"\$\$", _blank_spans(text, taken))
    if opened:
        line = text.count("\n", 0, opened.start()) + 1
        raise FormError(f"line {line}: '$$' is never closed")
    return sorted(spans)


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


def _equations(text: str) -> list[tuple[int, str]]:
    r"""The equations of one line with their offsets: ``A = B, \qquad C = D`` is two. A line is
    cut at a comma, semicolon or \quad outside every bracket only where both sides have an
    '=' outside brackets, so ``\sum_{i=1}^m`` and a trailing comma stay whole."""
    depth, cuts, k = 0, [], 0
    while k < len(text):
        c = text[k]
        if c == "\\" and k + 1 < len(text) and text[k + 1] in "{}":
            depth += 1 if text[k + 1] == "{" else -1
            k += 2
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
        k += 1
    pieces, start = [], 0
    for a, b in cuts:
        if _has_top_level_eq(text[start:a]) and _has_top_level_eq(text[b:]):
            pieces.append((start, text[start:a].rstrip()))
            start = b
    pieces.append((start, text[start:]))
    return pieces


def _has_top_level_eq(text: str) -> bool:
    depth = 0
    for c in text:
        depth += c in "{([" and 1 or 0
        depth -= c in "})]" and 1 or 0
        if c == "=" and depth == 0:
            return True
    return False


def _lines(text: str, start: int, end: int) -> list[tuple[int, str]]:
    """The ``\\\\``-separated lines of one block: (offset of the line, its text with layout
    commands blanked out, positions kept)."""
    body = text[start:end]
    body = _INNER.sub(lambda m: " " * len(m.group(0)), body)
    body = _DROP.sub(lambda m: " " * len(m.group(0)), body)
    out: list[tuple[int, str]] = []
    pos = 0
    # \\ (with an optional [2pt] spacing) ends a line.
    for match in re.finditer(r"\\\\(\s*\[[^\]]*\])?", body):
        out.append((start + pos, body[pos : match.start()]))
        pos = match.end()
    out.append((start + pos, body[pos:]))
    return [(offset, piece) for offset, piece in out if piece.strip()]


# -- reading ------------------------------------------------------------------------------------------
def load_document(path: str | Path, text: str | None = None) -> DocumentForm:
    """Read a derivation document (.md or .tex) into a form; see the module docstring."""
    path = Path(path)
    where = str(path)
    if text is None:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise FormError(f"{where}: cannot read the file ({exc.strerror}).") from None
        if b"\0" in raw:
            raise FormError(f"{where}, line 1: a binary file, not a Markdown or LaTeX document.")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise FormError(
                f"{where}, line {line}: not UTF-8 text; a derivation is a Markdown or LaTeX file."
            ) from None
    text = text.replace("\r\n", "\n")
    markdown = path.suffix.lower() != ".tex"
    try:
        return _read(text, markdown, where, path.stem)
    except LatexError as exc:
        raise LatexError(f"{where}, {exc}") from None
    except FormError as exc:
        message = str(exc)
        raise FormError(message if message.startswith(where) else f"{where}, {message}") from None


def _read(text: str, markdown: bool, where: str, stem: str) -> DocumentForm:
    if markdown:
        entries, body_start = _md_front_matter(text)
        body = _blank(text, 0, body_start)
        body = _mask_code_fences(body)
    else:
        entries = _tex_front_matter(text)
        body = _strip_tex_comments(text)
    meta = _front_matter(entries, where)
    at = meta.pop("_lines")
    modes = _modes(meta.get("mode", "both"), at.get("mode", 1))
    sigma = meta.get("sigma") or None
    if sigma not in (None, "std", "var"):
        raise FormError(
            f"line {at['sigma']}: sigma: {sigma!r}; use std (σ is the standard deviation √σ²) "
            "or var (σ is the variance)"
        )
    spatial = modes == (Mode.SPATIAL,)
    spans = _blocks(body, markdown)
    if not spans:
        raise FormError(
            "line 1: no display math found: expected \\begin{align} … \\end{align} (or align*, "
            "eqnarray, equation" + (", $$ … $$" if markdown else ", \\[ … \\]") + ")"
        )
    lines: list[DocLine] = []
    equations: list[Equation] = []
    defined: set[str] = set()
    steps: list[tuple[int, int]] = []
    before: tuple[str, int] | None = None  # the quantity and last equation of the line before
    previous: tuple[str | None, sp.Expr | None] | None = None
    for start, end in spans:
        for offset, piece in _lines(body, start, end):
            lead = len(piece) - len(piece.lstrip())
            line, column = _position(body, offset + lead)
            latex = piece.strip()
            if _PROSE.match(latex):
                lines.append(DocLine(line, column, latex, None, (), "prose, not an equation"))
                continue
            trailing = _TRAILING_TEXT.search(latex)
            if trailing:
                latex = latex[: trailing.start()].rstrip()
            for shift, equation in _equations(latex):  # "A = B, \qquad C = D": two equations
                read = parse_equation_line(
                    equation,
                    sigma=sigma,
                    spatial=spatial,
                    line=line,
                    column=column + shift,
                    continues=previous,
                )
                previous = (read.defines, read.source_index)
                reason = read.reason
                if not reason and read.defines is not None:
                    missing = _undefined(read, defined)
                    if missing:
                        reason = f"uses {', '.join(missing)}, which no earlier line defines"
                if reason or read.defines is None:
                    lines.append(DocLine(line, column + shift, equation, read, (), reason))
                    before = None
                    continue
                numbers = []
                for rhs in read.rhs:
                    assert rhs is not None
                    numbers.append(len(equations) + 1)
                    equations.append(
                        Equation(
                            len(equations) + 1, read.defines, read.index, rhs, equation, equation
                        )
                    )
                if read.lhs is None and before is not None and before[0] == read.defines:
                    steps.append((before[1], numbers[0]))
                steps.extend(zip(numbers, numbers[1:], strict=False))
                before = (read.defines, numbers[-1])
                defined.add(read.defines)
                lines.append(DocLine(line, column + shift, equation, read, tuple(numbers)))
    if not equations:
        reasons = "; ".join(f"line {d.line}: {d.reason}" for d in lines if d.reason)
        raise FormError(
            f"line {lines[0].line if lines else 1}: nothing to check: no line defines ∂L/∂x̂_i, "
            f"∂L/∂σ², ∂L/∂μ, ∂L/∂x_i, ∂L/∂γ or ∂L/∂β" + (f" ({reasons})" if reasons else "")
        )
    sources = meta.get("sources") or meta.get("source") or meta.get("citation") or []
    if isinstance(sources, str):
        sources = [sources]
    return DocumentForm(
        name=str(meta.get("name") or stem),
        title=str(meta.get("title") or meta.get("name") or stem),
        sources=tuple(str(s) for s in sources),
        equations=tuple(equations),
        unbiased=_choice(meta, at, "variance", {"biased": False, "unbiased": True}, False),
        eps_inside=_choice(meta, at, "epsilon", {"inside": True, "outside": False}, True),
        training=_choice(meta, at, "training", {"true": True, "false": False}, True),
        modes=modes,
        description=str(meta.get("description", "")),
        path=where,
        lines=tuple(lines),
        steps=tuple(steps),
    )


def _undefined(read: LineRead, defined: set[str]) -> list[str]:
    """The gradients a line's right side uses that no earlier line defines."""
    used: set[str] = set()
    for side in read.rhs:
        if side is None:
            continue
        used |= {s.name for s in side.free_symbols if isinstance(s, sp.Symbol)}
        used |= {str(x.base.label) for x in side.atoms(sp.Indexed)}
    names = [q for q in N.QUANTITIES if q in used and q != "dy" and q not in defined]
    return [_WORDS.get(q, q) for q in names]


_WORDS = {
    "dxhat": "∂L/∂x̂",
    "dvar": "∂L/∂σ²",
    "dmu": "∂L/∂μ",
    "dx": "∂L/∂x",
    "dgamma": "∂L/∂γ",
    "dbeta": "∂L/∂β",
}


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


def line_notes(form: Form, refuted: Sequence[int] = (), steps: Sequence[Any] = ()) -> list[str]:
    """For a document: where each checked equation is in the file, the lines not checked and
    why, whether each continuation follows from the line before (``steps``: the step verdicts),
    and the first refuted line (``refuted``: the refuted equation numbers) and where the mistake
    came in (the first refuted line that does not follow from the line before)."""
    if not isinstance(form, DocumentForm):
        return []
    by_equation: dict[int, list[Any]] = {}
    for v in steps:
        by_equation.setdefault(v.equation, []).append(v)
    out = [f"{form.name} ({form.path}):"]
    for line in form.lines:
        if not line.checked:
            out.append(f"  · line {line.line} not checked: {line.reason}")
    if len(out) == 1 and not refuted:
        return []
    if refuted:
        first = form.line_of(min(refuted))
        if first is not None:
            out.append(
                f"  first refuted: line {first.line} of {form.path} (equation {min(refuted)}, "
                f"{first.defines}): {first.latex}"
            )
        if steps:
            follows = {
                v.equation
                for v in steps
                if v.status.value == "holds"
                and not any(w.status.value == "refuted" for w in by_equation[v.equation])
            }
            came_in = [n for n in sorted(set(refuted)) if n not in follows]
            later = [n for n in sorted(set(refuted)) if n in follows]
            if came_in and later:
                where = form.line_of(came_in[0])
                after = sorted({ln.line for n in later if (ln := form.line_of(n)) is not None})
                out.append(
                    f"  the mistake comes in at line {where.line if where else '?'}; "
                    f"line(s) {', '.join(map(str, after))} follow from the line before "
                    "(faithful steps from a wrong line)"
                )
    return out
