"""One result per line: what every method found for it, across modes, in words a student reads.

``check`` runs up to three methods (every M, exact, randomized) in up to two modes on every line
of a form, and each run is a ``Verdict``.  A reader wants one row per line of the derivation:
per method, the verdicts of its modes combined (refuted if any mode refutes, undecided if any
leaves it open, holds only if every mode holds), the step against the line before, and the
line's own verdict over all methods.  The combination here is the same rule as ``overall``: a
line holds only when nothing refuted it and nothing left it open.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from bnderive.core.spec import Mode
from bnderive.verify.verdict import Status, Verdict, overall

METHODS = ("general", "exact", "random")


@dataclass(frozen=True)
class MethodResult:
    """One method's verdicts on one line (one per mode it ran in), combined."""

    method: str
    verdicts: tuple[Verdict, ...]

    @property
    def status(self) -> Status:
        statuses = {v.status for v in self.verdicts}
        for status in (Status.REFUTED, Status.UNDECIDED, Status.HOLDS):
            if status in statuses:
                return status
        return Status.UNCHECKED

    @property
    def refuted_in(self) -> list[Mode]:
        """The modes whose verdict refutes (empty when none, or when the method ran once for
        both modes, as the every-M proof does)."""
        return [v.mode for v in self.verdicts if v.status is Status.REFUTED and v.mode]

    @property
    def mixed(self) -> bool:
        """Refuted in one mode while it holds in the other (a mode-specific line)."""
        statuses = {v.status for v in self.verdicts}
        return Status.REFUTED in statuses and Status.HOLDS in statuses

    def words(self, step: bool = False) -> str:
        """The table cell: what the method found, in words."""
        status = self.status
        if step:
            return {
                Status.HOLDS: "✓ follows",
                Status.REFUTED: "✗ does not follow",
                Status.UNDECIDED: "? not shown",
                Status.UNCHECKED: "·",
            }[status]
        if status is Status.UNCHECKED:
            return "· not checked"
        if self.method == "general":
            return {
                Status.HOLDS: "✓ proved",
                Status.UNDECIDED: "not proven",
                Status.REFUTED: "✗ refuted",
            }[status]
        text = {
            Status.HOLDS: "✓ holds",
            Status.UNDECIDED: "? undecided",
            Status.REFUTED: "✗ refuted",
        }[status]
        if self.mixed:
            text += " (" + ", ".join(m.value for m in self.refuted_in) + ")"
        return text


@dataclass(frozen=True)
class LineResult:
    """Every method's verdict on one line of a form, and on its step from the line before."""

    form: str
    equation: int
    quantity: str
    source_line: int | None
    methods: dict[str, MethodResult]
    steps: dict[str, MethodResult] = field(default_factory=dict)
    follows_line: int | None = None

    @property
    def line(self) -> int:
        """The line in the file (a document) or the equation's number (a TOML form)."""
        return self.source_line if self.source_line is not None else self.equation

    @property
    def status(self) -> Status:
        """The line's own verdict over every method (steps not included); a helper line that no
        method compares with a truth (t = 1/√(σ²+ε)) is "not checked", not undecided."""
        verdicts = [v for m in self.methods.values() for v in m.verdicts]
        if verdicts and all(v.status is Status.UNCHECKED for v in verdicts):
            return Status.UNCHECKED
        return overall(verdicts)

    @property
    def step_status(self) -> Status | None:
        """Whether the line follows from the line before, over every method; None without a
        step.  Refuted if any method shows it does not follow; holds if one proves it does."""
        verdicts = [v for m in self.steps.values() for v in m.verdicts]
        if not verdicts:
            return None
        statuses = {v.status for v in verdicts}
        for status in (Status.REFUTED, Status.HOLDS, Status.UNDECIDED):
            if status in statuses:
                return status
        return Status.UNCHECKED

    def verdicts(self) -> list[Verdict]:
        return [v for m in (*self.methods.values(), *self.steps.values()) for v in m.verdicts]

    def first(self, status: Status) -> Verdict | None:
        """The verdict to explain a status with: exact first (small numbers), then every M,
        then randomized (4096 values)."""
        for method in ("exact", "general", "random"):
            result = self.methods.get(method)
            for v in result.verdicts if result else ():
                if v.status is status:
                    return v
        return None

    def first_step(self, status: Status) -> Verdict | None:
        for method in ("exact", "general", "random"):
            result = self.steps.get(method)
            for v in result.verdicts if result else ():
                if v.status is status:
                    return v
        return None


def line_results(verdicts: Iterable[Verdict]) -> list[LineResult]:
    """The verdicts grouped into one result per (form, line): the forms in the order their
    first verdict came, each form's lines in the document's order (the methods and their
    parallel units finish in any order; a reader follows the document)."""
    groups: dict[tuple[str, int], dict[tuple[bool, str], list[Verdict]]] = {}
    first: dict[tuple[str, int], Verdict] = {}
    forms: dict[str, int] = {}
    for v in verdicts:
        key = (v.form, v.equation or 0)
        forms.setdefault(v.form, len(forms))
        groups.setdefault(key, {}).setdefault((v.step, v.method), []).append(v)
        if not v.step:
            first.setdefault(key, v)
    out = []
    for key in sorted(groups, key=lambda k: (forms[k[0]], k[1])):
        by_method = groups[key]
        head = first.get(key) or next(iter(by_method.values()))[0]
        methods = {
            m: MethodResult(m, tuple(by_method[(False, m)]))
            for m in METHODS
            if (False, m) in by_method
        }
        steps = {
            m: MethodResult(m, tuple(by_method[(True, m)]))
            for m in METHODS
            if (True, m) in by_method
        }
        follows = next((v for s in steps.values() for v in s.verdicts), None)
        out.append(
            LineResult(
                form=key[0],
                equation=key[1],
                quantity=head.quantity,
                source_line=head.source_line,
                methods=methods,
                steps=steps,
                follows_line=(follows.follows_line or follows.follows) if follows else None,
            )
        )
    return out


def methods_run(lines: Sequence[LineResult]) -> list[str]:
    """The methods that produced a verdict on any line, in the order of ``METHODS``."""
    present = {m for line in lines for m in line.methods} | {
        m for line in lines for m in line.steps
    }
    return [m for m in METHODS if m in present]


def scopes(verdicts: Iterable[Verdict]) -> dict[str, list[str]]:
    """What each method covered, e.g. {"exact": ["per-activation M ≤ 6", "spatial M ≤ 12"]}."""
    out: dict[str, list[str]] = {}
    for v in verdicts:
        if v.step:
            continue
        where = v.scope if v.mode is None else f"{v.mode.value} {v.scope}"
        for word in (" exact", " randomized"):
            where = where.removesuffix(word)
        if where not in out.setdefault(v.method, []):
            out[v.method].append(where)
    return out


__all__ = ["LineResult", "MethodResult", "line_results", "methods_run", "scopes"]
