"""Matching the corpus's expected verdicts to what bnderive says, line by line (tests and
``benchmarks/bench_read.py``).

Each ``NAME.expected.toml`` lists the value lines of ``NAME.md|.tex|.ipynb`` in order: the LaTeX
of the line (or of one member of a chain ``A = B = C``), the quantity it states, a NumPy
rendering of its right side as the post means it, and (``member = k``) which member it is.  The
expected verdict is *established here*, numerically: the NumPy expression against
``reference.values`` (our own float64 truth, independent of bnderive) at four adversarial points,
relative error below 1e-9 at all of them or refuted (a ``truth`` expression may compute the true value
itself, e.g. ``jac(lambda x: ...)``: the finite-difference Jacobian of the forward definition of
what the line differentiates, see ``jacobian``).  bnderive's verdict for the same member is
then compared with it; where bnderive reads the line as another quantity than the transcriber
(``xhat`` for a toy model's ``xmu``), the expected verdict is established for bnderive's reading,
and the entry must say so (``read_as``): any other difference is a misreading (``misread``).
"""

from __future__ import annotations

import math
import re
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import reference

HERE = Path(__file__).parent
TOLERANCE = 1e-9
#: Step of ``jacobian`` relative to the spread (std) of x: the five-point stencil's truncation
#: error is O(h⁴) and its rounding error O(ε_mach/h), both ~1e-12 relative at this step, so a
#: finite-difference truth is held to the same TOLERANCE as every other (measured by
#: ``test_the_finite_difference_jacobian_is_accurate``: below 1e-10 at every point).
FD_STEP = 1e-3
#: bnderive's readings of a line as the derivative of the expression the line itself writes
#: (``∂(x_j − μ)/∂x_i``, ``∂(s^{-1})/∂σ²``, ``∂σ/∂x_j``, ``∂x_k/∂x_i``): no name of the reference,
#: so the line's ``truth`` (that derivative, computed from the expression's forward definition) is
#: the quantity.
LOCAL_READINGS = frozenset({"d(expr)_dx", "d(expr)_dvar", "d(expr)_dmu", "dsigma_dx", "dx_dx"})
#: What the corpus's NumPy expressions may call besides NumPy (NumPy's methods import lazily).
_BUILTINS = {"__import__": __import__, "abs": abs, "len": len, "sum": sum, "range": range}


@dataclass
class Expected:
    """One value line of a corpus file."""

    index: int
    latex: str
    quantity: str  # canonical name without the index suffix ("aux:" removed)
    numpy: str | None
    truth: str | None
    member: int | None
    mask: str | None
    note: str = ""
    #: what bnderive reads the line as, where the transcriber knows it differs from what the
    #: post means (a toy model's xmu read as x̂): any other difference is a misreading
    read_as: str | None = None

    @property
    def states_value(self) -> bool:
        return self.quantity != "none"


@dataclass
class Judged:
    """One expected line and what bnderive made of it."""

    expected: Expected
    status: str  # checked | definition | not checked | not read | not found | refused
    bnderive: str | None = None  # holds | refuted | undecided (checked lines)
    quantity: str | None = None  # what bnderive checked it as
    oracle: str | None = None  # holds | refuted: established here for bnderive's reading
    line: int | None = None
    #: bnderive refutes the line only because it uses an earlier wrong line's value, and says
    #: it holds with the true value (``verify.mistakes``): judged on its own, it holds
    inherits: bool = False
    reason: str = ""  # bnderive's reason for a line not read or not checked
    #: a member bnderive read more than one way (an open scope): its verdict under each reading
    #: (the exact method's), whose agreement or not made the line's verdict
    readings: tuple[str, ...] = ()

    @property
    def own(self) -> str | None:
        """bnderive's verdict on the line on its own (the corpus judges each line with the true
        values of what it uses)."""
        return "holds" if self.inherits and self.bnderive == "refuted" else self.bnderive

    @property
    def wrong(self) -> bool:
        return self.own in ("holds", "refuted") and self.oracle not in (None, self.own)


@dataclass
class FileResult:
    stem: str
    source: Path
    read: bool  # bnderive produced verdicts (not exit code 2)
    refused: str = ""  # the message when it was refused (a LayerNorm post)
    judged: list[Judged] = field(default_factory=list)
    seconds: float = 0.0
    norm: str = "batch"

    def count(self, status: str) -> int:
        return sum(1 for j in self.judged if j.expected.states_value and j.status == status)

    @property
    def value_lines(self) -> int:
        return sum(1 for j in self.judged if j.expected.states_value)

    @property
    def wrong(self) -> list[Judged]:
        return [j for j in self.judged if j.wrong]


def catalogue() -> list[tuple[str, Path, Path]]:
    """(stem, source, expected) for every transcribed derivation: a new file adds its test."""
    out = []
    for expected in sorted(HERE.glob("*.expected.toml")):
        stem = expected.name.removesuffix(".expected.toml")
        sources = [HERE / f"{stem}{ext}" for ext in (".md", ".tex", ".ipynb")]
        source = next((s for s in sources if s.exists()), None)
        if source is not None:
            out.append((stem, source, expected))
    return out


def load_expected(path: Path) -> tuple[dict[str, str], list[Expected]]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    lines = []
    for k, entry in enumerate(data.get("line", []), start=1):
        quantity = str(entry["quantity"]).strip()
        quantity = quantity.removeprefix("aux:").split("[")[0]
        lines.append(
            Expected(
                k,
                entry.get("latex", ""),
                quantity,
                entry.get("numpy"),
                entry.get("truth"),
                entry.get("member"),
                entry.get("mask"),
                entry.get("note", ""),
                entry.get("read_as"),
            )
        )
    return dict(data.get("conventions", {})), lines


# -- the verdict established here ---------------------------------------------------------------
def oracle(line: Expected, quantity: str, conventions: dict[str, str]) -> str | None:
    """holds / refuted for ``line``'s NumPy expression read as ``quantity``; None when the
    reference does not know the quantity (then nothing can be established)."""
    if line.numpy is None:
        return None
    epsilon = conventions.get("epsilon", "inside")
    variance = conventions.get("variance", "biased")
    worst = 0.0
    for x, g, gamma, beta, eps in reference.points(layer=conventions.get("norm") == "layer"):
        env = reference.values(x, g, gamma, beta, eps, epsilon, variance)
        names = dict(env)
        names.update(np=np, x=x, g=g, gamma=gamma, beta=beta, eps=eps, M=len(x))
        names.update(eye=np.eye(len(x)), ones=np.ones(len(x)), sqrt=np.sqrt)
        names.update(jac=lambda f, at=x: jacobian(f, at))
        if line.truth is not None and (quantity == line.quantity or quantity in LOCAL_READINGS):
            true = _evaluate(line.truth, names)
        elif quantity in env:
            true = env[quantity]
        else:
            return None
        try:
            claim = _evaluate(line.numpy, names)
        except Exception:  # noqa: BLE001 - a claim that cannot be evaluated (√ of a negative)
            return "refuted"
        worst = max(worst, _error(claim, true, line.mask))
    return "holds" if worst < TOLERANCE else "refuted"


def _evaluate(text: str, names: dict[str, Any]) -> Any:
    # the names are globals so that a lambda in the text (``jac(lambda x: ...)``) sees them
    with np.errstate(all="ignore"):
        return eval(text, {**names, "__builtins__": _BUILTINS})  # noqa: S307 - the corpus own data


def jacobian(f: Any, x: np.ndarray) -> np.ndarray:
    """∂f/∂x at ``x`` by five-point central differences in float64: shape f(x).shape + (M,), so
    [k, i] = ∂f_k/∂x_i for a vector f and the gradient for a scalar one.  Independent of the
    reference's hand-written chain rule: it differentiates the forward definition it is given."""
    x = np.asarray(x, dtype=float)
    h = FD_STEP * float(np.std(x))
    columns = []
    for i in range(len(x)):
        step = np.zeros_like(x)
        step[i] = h
        at = [np.asarray(f(x + k * step), dtype=float) for k in (-2, -1, 1, 2)]
        columns.append((at[0] - 8 * at[1] + 8 * at[2] - at[3]) / (12 * h))
    return np.stack(columns, axis=-1)


def _error(claim: Any, true: Any, mask: str | None) -> float:
    a = np.asarray(claim, dtype=float)
    b = np.asarray(true, dtype=float)
    try:
        shape = np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        return math.inf
    a, b = np.broadcast_to(a, shape), np.broadcast_to(b, shape)
    if mask is not None and a.ndim == 2:
        select = np.eye(shape[-1], dtype=bool)
        select = select if mask == "diag" else ~select
        a, b = a[select], b[select]
    if not np.all(np.isfinite(a)):
        return math.inf
    return float(np.max(np.abs(a - b))) / max(float(np.max(np.abs(b))), 1e-4)


# -- bnderive's reading ---------------------------------------------------------------------------
def _norm(text: str) -> str:
    """A line or member as compared: spacing collapsed, alignment and row ends, numbering and
    annotation columns (after `&&`) left out."""
    text = re.sub(r"\s+", " ", text).strip()
    text = re.split(r"&\s*&", text, maxsplit=1)[0]
    text = re.sub(r"\\(tag\*?|label)\{[^{}]*\}|\\(nonumber|notag)", "", text)
    text = re.sub(r"^(&\s*)?(=\s*)?(&\s*)?", "", text.strip())
    text = re.sub(r"(\\\\|\$\$|\\q?quad|[,.?;])\s*$", "", text).strip()
    # rows the reader joins (`… \\ &+ …`, `… =\\ &= …`) lose their separators and alignment
    text = re.sub(r"\\\\(\s*\[[^\]]*\])?|&", " ", text)
    return re.sub(r"\s+", "", text)


def _sides(text: str) -> list[str]:
    """A line's sides, cut at '=' (or \\leftarrow, \\equiv) outside every bracket."""
    out, depth, start, k = [], 0, 0, 0
    while k < len(text):
        c = text[k]
        if c == "\\":
            word = re.match(r"\\([a-zA-Z]+|.)", text[k:], re.S)
            if word is None:  # a backslash that ends the text
                break
            if word.group(1) in ("leftarrow", "equiv") and depth == 0:
                out.append(text[start:k])
                start = k + len(word.group(0))
            elif word.group(1) in ("{", "}"):
                depth += 1 if word.group(1) == "{" else -1
            k += len(word.group(0))
            continue
        if c in "{([":
            depth += 1
        elif c in "})]":
            depth -= 1
        elif c == "=" and depth == 0 and text[k + 1 : k + 2] != "=":
            out.append(text[start:k])
            start = k + 1
        k += 1
    out.append(text[start:])
    return out


def _quantity_of(line: Any, form: Any, number: int) -> str:
    """bnderive's reading of a member as a name of the reference (dxhat_dx: the direct partial
    unless the line is a Jacobian's; ∂x̂_i/∂x_i and ∂y_i/∂x_i as the line says it read them)."""
    read = line.read
    name = read.defines if read is not None else None
    if read is None or name is None:
        return "identity"
    if read.kind == "name":
        return "definition"
    if read.kind == "node":  # the gradient of the post's own node: the transcriber names it
        return "identity"
    if name in ("dxhat_dx", "dy_dx") and not read.contracted and line.derivative:
        # ∂x̂_i/∂x_i, ∂y_i/∂x_i: the reading bnderive states for the line (total or held)
        return f"{name}_total" if line.derivative == "total" else f"{name}_direct"
    if name == "dxhat_dx":
        return "dxhat_dx" if read.contracted else "dxhat_dx_direct"
    return name


def _same_quantity(meant: str, read: str) -> bool:
    """Does bnderive's reading name the quantity the transcriber says the line states?  Beside
    equal names: the line's own derivative read from its expression (``d(expr)_dx``, ``dx_dx``,
    ``dsigma_dx``, judged by the entry's ``truth``), and ∂x̂_i/∂x_i or ∂y_i/∂x_i read as the
    total or the held partial (the output says which)."""
    if read == meant or read in LOCAL_READINGS:
        return True
    return read.removesuffix("_total").removesuffix("_direct") == meant


def misread(j: Judged) -> bool:
    """A checked line bnderive reads as another quantity than the post means, not declared
    (``read_as``) by the transcriber: its verdict, right or wrong, is about another claim, and
    the oracle (established for bnderive's reading) cannot see that."""
    if j.status != "checked" or j.quantity in (None, "identity", "definition"):
        return False
    return not _same_quantity(j.expected.quantity, j.quantity) and j.quantity != j.expected.read_as


def judge_file(
    stem: str, source: Path, expected_path: Path, methods=("exact", "general")
) -> FileResult:
    """bnderive's verdict on every expected line of one corpus file."""
    from bnderive.core.spec import Mode
    from bnderive.errors import BnderiveError
    from bnderive.read.documents import load_document
    from bnderive.verify.every_m import general_check
    from bnderive.verify.exact import check_exact_mode
    from bnderive.verify.mistakes import find_mistakes
    from bnderive.verify.verdict import Status

    conventions, expected = load_expected(expected_path)
    result = FileResult(stem, source, read=False, norm=conventions.get("norm", "batch"))
    started = time.perf_counter()
    try:
        form = load_document(source)
    except BnderiveError as exc:
        result.refused = str(exc)
        result.judged = [Judged(e, "refused", reason=str(exc)) for e in expected]
        result.seconds = time.perf_counter() - started
        return result
    verdicts = []
    if "exact" in methods:
        verdicts += check_exact_mode(form, Mode.PER_ACTIVATION, [3, 4, 5])
    if "general" in methods:
        verdicts += general_check(form)
    result.seconds = time.perf_counter() - started
    result.read = True
    inherited = {n for m in find_mistakes(form, verdicts) for n in m.inherits}
    each = _each_reading(form, methods)
    by_equation: dict[int, set[Status]] = {}
    for v in verdicts:
        if v.follows is None and v.equation is not None:
            by_equation.setdefault(v.equation, set()).add(v.status)
    used: set[tuple[int, int]] = set()
    for e in expected:
        found = _find(form, e, used)
        if found is None:
            result.judged.append(Judged(e, "not found"))
            continue
        line, member = found
        used.add((id(line), member))
        if member == -1:
            reason = "the left side of its line: the members after it are checked against it"
            result.judged.append(Judged(e, "not checked", line=line.line, reason=reason))
            continue
        status = line.status
        if status in ("not read", "not checked", "prose"):
            result.judged.append(Judged(e, status, line=line.line, reason=line.reason))
            continue
        number = line.members[member] if member < len(line.members) else None
        if number is None:
            reason = "; ".join(n for n in line.notes if "not checked" in n) or line.reason
            result.judged.append(Judged(e, "not checked", line=line.line, reason=reason))
            continue
        eq = form.equations[number - 1]
        if eq.kind == "definition":
            result.judged.append(Judged(e, "definition", quantity=eq.name, line=line.line))
            continue
        statuses = by_equation.get(number, set())
        verdict = (
            "refuted"
            if Status.REFUTED in statuses
            else "holds"
            if Status.HOLDS in statuses
            else "undecided"
        )
        quantity = _quantity_of(line, form, number)
        if quantity == "definition" and member > 0:
            # t = A = B: B is checked against the name's definition A, so it states what the
            # transcriber says the name is (its verdict is established for that quantity)
            quantity = "identity"
        reading = e.quantity if quantity in ("identity",) else quantity
        result.judged.append(
            Judged(
                e, "checked", verdict, quantity, oracle(e, reading, conventions), line.line,
                inherits=number in inherited, readings=each.get(number, ()),
            )
        )  # fmt: skip
    return result


def _each_reading(form: Any, methods) -> dict[int, tuple[str, ...]]:
    """For each member read more than one way (its first reading's equation), the exact
    method's verdict under each reading, before ``verify.readings`` makes them one."""
    from bnderive.core.spec import Mode
    from bnderive.verify.exact import check_exact_mode
    from bnderive.verify.verdict import Status

    groups = getattr(form, "readings", ())
    if not groups or "exact" not in methods:
        return {}
    raw = check_exact_mode.__wrapped__(form, Mode.PER_ACTIVATION, [3, 4, 5])
    found: dict[int, set] = {}
    for v in raw:
        if v.follows is None and v.equation is not None:
            found.setdefault(v.equation, set()).add(v.status)
    words = {Status.REFUTED: "refuted", Status.HOLDS: "holds"}
    out = {}
    for group in groups:
        out[group.equations[0]] = tuple(
            next(
                (words[s] for s in (Status.REFUTED, Status.HOLDS) if s in found.get(n, ())),
                "undecided",
            )
            for n in group.equations
        )
    return out


def _find(form: Any, e: Expected, used: set[tuple[int, int]]) -> tuple[Any, int] | None:
    """The line (and its member) the expected entry is: the first one, not yet used, whose
    text is the entry's (a member of it, or the whole line), else whose text holds it."""
    for exact in (True, False):
        found = _search(form, e, used, exact)
        if found is not None:
            return found
    return None


def _statement(text: str) -> str:
    """A line's text without what bnderive appends to a code row after its statement (the C it
    was read from, a stage's mark: comments, whose '=' are no sides of the line)."""
    from bnderive.read.code_lines import CODE_MARKS

    for mark in CODE_MARKS:
        text = text.split(mark)[0]
    return text


def _search(
    form: Any, e: Expected, used: set[tuple[int, int]], exact: bool
) -> tuple[Any, int] | None:
    want = _norm(e.latex)
    if not want:
        return None
    for line in form.lines:
        sides = [_norm(s) for s in _sides(_statement(line.latex))]
        text = _norm(line.latex)
        if exact and want != text and want not in sides:
            continue
        if not exact and want not in text:
            continue
        continuation = line.read is not None and line.read.lhs is None
        rhs = sides[1:]  # a continuation "&= X" has an empty left side
        candidates = [k for k, s in enumerate(rhs) if s and s == want]
        candidates = candidates or [k for k, s in enumerate(rhs) if s and want in s]
        if e.member == 0 and sides and sides[0] == want and not candidates:
            return line, -1  # the left side of its line (A in "A &= B"): no member of its own
        if e.member is None or e.member == 0:
            member = 0 if e.member is None else None
            if e.member == 0 or not candidates:
                member = len(rhs) - 1 if rhs else 0
            member = 0 if member is None else member
        else:
            member = candidates[0] if candidates else (e.member - 1 if not continuation else 0)
        if (id(line), member) in used:
            continue
        return line, max(member, 0)
    return None
