"""A line that reads more than one way: one verdict from the verdicts of its readings.

Where a document's notation leaves a scope open (the Σ's body when its index is the line's
own, braces around a sum next to a factor, what \\frac{\\partial}{\\partial x_i} applies to),
the reader reads the member every way and the document checks each reading as an equation of
its own (``read.forms.ReadingGroup``).  Each method's verdicts on those equations become one
verdict on the first of them, per method and mode:

* holds only if every reading holds (the detail names the question and says each holds);
* refuted only if every reading is refuted (the first reading's counterexample);
* otherwise undecided, the detail saying under which reading the line holds and under which it
  is refuted, and how to write it so that it reads one way.

The other readings' verdicts are dropped: the line is one line.  Every method (every M, exact,
randomized) returns its verdicts through ``combined``, so no caller sees a reading alone.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from bnderive.read.forms import Form, ReadingGroup
from bnderive.verify.verdict import Status, Verdict

_WORDS = {
    Status.HOLDS: "holds",
    Status.REFUTED: "is refuted",
    Status.UNDECIDED: "is not decided",
    Status.UNCHECKED: "is not checked",
}


def combine_readings(form: Form, verdicts: Sequence[Verdict]) -> list[Verdict]:
    """``verdicts`` with the verdicts of each member's readings made one (see the module)."""
    groups: Sequence[ReadingGroup] = getattr(form, "readings", ())
    if not groups:
        return list(verdicts)
    head = {g.equations[0]: g for g in groups}
    others = {n for g in groups for n in g.equations[1:]}
    found: dict[tuple[int, str, Any], dict[int, Verdict]] = {}
    for v in verdicts:
        if v.follows is not None or v.equation is None:
            continue
        for g in groups:
            if v.equation in g.equations:
                found.setdefault((g.equations[0], v.method, v.mode), {})[v.equation] = v
    out = []
    for v in verdicts:
        if v.equation in others or (v.follows is not None and v.follows in others):
            continue
        group = head.get(v.equation) if v.equation is not None else None
        if group is not None and v.follows is None:
            seen = found[(group.equations[0], v.method, v.mode)]
            v = _one(group, [seen.get(n) for n in group.equations])
        out.append(v)
    return out


def _one(group: ReadingGroup, verdicts: list[Verdict | None]) -> Verdict:
    """One verdict from one method's verdicts on each reading (in the group's order)."""
    first = next(v for v in verdicts if v is not None)
    statuses = [v.status if v is not None else Status.UNCHECKED for v in verdicts]
    ways = " / ".join(f"({k}) {label}" for k, label in enumerate(group.labels, start=1))
    if all(s is Status.HOLDS for s in statuses):
        said = f"{group.question}: read {len(statuses)} ways, and every reading holds: {ways}"
        return replace(first, detail=_joined(said, first.detail))
    if all(s is Status.REFUTED for s in statuses):
        said = f"refuted under every reading ({group.question}: {ways}); the first shown"
        return replace(first, detail=_joined(said, first.detail))
    if all(s is Status.UNCHECKED for s in statuses):
        return first
    each = "; ".join(
        f"{_WORDS[s]} if {label}" for s, label in zip(statuses, group.labels, strict=True)
    )
    detail = f"{group.question}? The line {each}. {group.fix}"
    return replace(
        first,
        status=Status.UNDECIDED,
        detail=detail,
        counterexample=None,
        residual=None,
        bound=None,
    )


def _joined(said: str, detail: str) -> str:
    return f"{said}. {detail}" if detail else said


F = TypeVar("F", bound=Callable[..., list[Verdict]])


def combined(method: F) -> F:
    """A method ``(form, …) → verdicts`` whose verdicts on a member's readings come out as one
    (``combine_readings``)."""

    @functools.wraps(method)
    def run(form: Form, *args: Any, **kwargs: Any) -> list[Verdict]:
        return combine_readings(form, method(form, *args, **kwargs))

    return run  # type: ignore[return-value]


__all__ = ["combine_readings", "combined"]
