"""Verdicts: what one method found for one line of a form, and the exit code they add up to.

A verdict is *holds* (with the method's proof or bound), *refuted* (with a counterexample: the
inputs, the entry, both exact values), *undecided* (with the reason) or *not checked* (an
auxiliary line).  Every method in this package returns these, and nothing else decides.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bnderive.core.spec import Mode, Norm, Spec
from bnderive.read.forms import Equation, Form


class Status(enum.Enum):
    HOLDS = "holds"
    REFUTED = "refuted"
    UNDECIDED = "undecided"
    UNCHECKED = "not checked"


@dataclass(frozen=True)
class Counterexample:
    """A point where the form and the truth differ, with both exact values."""

    spec: Spec
    channel: int
    entry: str  # e.g. "dx[2] at x[1, 0]"
    inputs: dict[str, str]
    truth: str
    form: str

    def describe(self) -> str:
        given = "; ".join(f"{k} = {v}" for k, v in self.inputs.items())
        return (
            f"{self.spec.describe()}, {self.spec.set_label(self.channel)}: {given}. "
            f"{self.entry}: truth {self.truth}, form {self.form}"
        )

    def to_dict(self) -> dict[str, Any]:
        out = {
            "shape": list(self.spec.shape),
            "mode": self.spec.mode.value,
            "channel": self.channel,
            "entry": self.entry,
            "inputs": dict(self.inputs),
            "truth": self.truth,
            "form": self.form,
        }
        if self.spec.norm is not Norm.BATCH:  # the reduction set, in words
            out.update(norm=self.spec.norm.value, set=self.spec.set_label(self.channel))
        return out


@dataclass(frozen=True)
class Verdict:
    """What one method found for one equation of one form."""

    form: str
    quantity: str
    equation: int | None
    status: Status
    method: str  # "exact" | "random"
    scope: str  # e.g. "per-activation, M = 1..6"
    detail: str = ""
    counterexample: Counterexample | None = None
    residual: str | None = None
    seconds: float = 0.0
    trials: int = 0
    bound: float | None = None
    mode: Mode | None = None
    source_line: int | None = None  # a document's line in the file (None for a TOML form)
    follows: int | None = None  # a step verdict: the equation this one is checked against
    follows_line: int | None = None  # ... and that equation's line in the file

    def method_words(self) -> str:
        """'exact, per-activation M ≤ 6': the method and what it covered, in words."""
        if self.method == "general":
            return "for every M"
        scope = self.scope.removesuffix(" exact").removesuffix(" randomized")
        mode = f"{self.mode.value} " if self.mode else ""
        return f"{'randomized' if self.method == 'random' else self.method}, {mode}{scope}"

    @property
    def step(self) -> bool:
        return self.follows is not None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "form": self.form,
            "quantity": self.quantity,
            "equation": self.equation,
            "status": self.status.value,
            "method": self.method,
            "mode": self.mode.value if self.mode else "both",
            "scope": self.scope,
            "detail": self.detail,
            "counterexample": self.counterexample.to_dict() if self.counterexample else None,
            "residual": self.residual,
            "seconds": round(self.seconds, 4),
            "trials": self.trials,
            "bound": self.bound,
        }
        if self.source_line is not None:
            out["source_line"] = self.source_line
        if self.follows is not None:
            out["follows"] = self.follows
            out["follows_line"] = self.follows_line
        return out


AUXILIARY = "auxiliary definition: used by later lines, not compared"


def line_verdict(
    form: Form, eq: Equation, status: Status, method: str, scope: str, **details: Any
) -> Verdict:
    """The verdict of one method on one line of a form (with its line in the file for a
    document)."""
    if "source_line" not in details:
        details["source_line"] = line_in_file(form, eq)
    return Verdict(form.name, eq.label, eq.number, status, method, scope, **details)


def line_in_file(form: Form, eq: Equation) -> int | None:
    """A document's line in the file where ``eq`` was written (None for a TOML form)."""
    line_of = getattr(form, "line_of", None)
    where = line_of(eq.number) if line_of is not None else None
    return where.line if where is not None else None


def step_verdict(
    form: Form,
    before: Equation,
    eq: Equation,
    status: Status,
    method: str,
    scope: str,
    **details: Any,
) -> Verdict:
    """The verdict on a step: ``eq`` compared with the expression ``before`` it, not the truth."""
    line_of = getattr(form, "line_of", None)
    where = line_of(before.number) if line_of is not None else None
    return line_verdict(
        form,
        eq,
        status,
        method,
        scope,
        follows=before.number,
        follows_line=where.line if where is not None else None,
        **details,
    )


def with_time(v: Verdict, seconds: float) -> Verdict:
    return Verdict(**{**v.__dict__, "seconds": seconds})


def pair_verdict(
    form: Form, before: Any, eq: Equation, status: Status, method: str, scope: str, **details: Any
) -> Verdict:
    if isinstance(before, Equation):
        return step_verdict(form, before, eq, status, method, scope, **details)
    return line_verdict(form, eq, status, method, scope, **details)


def with_steps(verdicts: list[Verdict], steps: list[Verdict]) -> list[Verdict]:
    """``verdicts`` with each step verdict placed right after its equation's verdict."""
    if not steps:
        return verdicts
    # A stable sort: each line's own verdict first, then its step verdict.
    return sorted([*verdicts, *steps], key=lambda v: (v.equation or 0, v.follows is not None))


def overall(verdicts: Iterable[Verdict]) -> Status:
    statuses = {v.status for v in verdicts}
    if Status.REFUTED in statuses:
        return Status.REFUTED
    if Status.UNDECIDED in statuses or Status.HOLDS not in statuses:
        # Nothing checked (no verdicts, or only auxiliary lines: a misspelt 'dX[i]' is one)
        # is not "everything checked holds".
        return Status.UNDECIDED
    return Status.HOLDS


def exit_code(verdicts: Iterable[Verdict]) -> int:
    """DESIGN.md §6: 0 holds, 1 refuted, 3 undecided."""
    return {Status.HOLDS: 0, Status.REFUTED: 1, Status.UNDECIDED: 3}[overall(verdicts)]
