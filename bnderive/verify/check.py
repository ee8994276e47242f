"""``check`` as a library call: forms × modes × methods run, refuted lines diagnosed, summarized.

    result = check_forms([find_form("staged")])
    result.status, result.exit_code, result.lines[0].methods["exact"].status

The command line prints a ``CheckResult``; reports and notebooks render the same object.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sympy as sp

from bnderive.core.spec import Mode, Spec
from bnderive.read.forms import Form
from bnderive.verify.plan import METHODS, Plan, Unit
from bnderive.verify.summary import LineResult, line_results
from bnderive.verify.verdict import Status, Verdict, exit_code, overall


@dataclass
class CheckResult:
    """Every verdict of one ``check``, with what explains them."""

    forms: tuple[Form, ...]
    verdicts: list[Verdict]
    seconds: float = 0.0
    #: (form, equation, quantity) → the corpus mistakes a refuted line's value equals.
    diagnoses: dict[tuple[str, int, str], list[Any]] = field(default_factory=dict)
    #: (form, equation) → truth − line in index notation, for refuted and undecided lines.
    residuals: dict[tuple[str, int], sp.Expr] = field(default_factory=dict)

    @property
    def status(self) -> Status:
        return overall(self.verdicts)

    @property
    def exit_code(self) -> int:
        return exit_code(self.verdicts)

    @property
    def lines(self) -> list[LineResult]:
        return line_results(self.verdicts)

    def left_out(self) -> dict[str, list[Any]]:
        """Per document (a form read from LaTeX), its lines that were not read or not checked."""
        return {
            f.name: [line for line in f.lines if line.status in ("not read", "not checked")]
            for f in self.forms
            if hasattr(f, "lines")
        }

    def partly_checked(self) -> dict[str, list[Any]]:
        """Per document, its checked lines with a member not checked (a chain ``A = B = C`` whose
        ``C`` could not be compared): the line's verdict covers only the members compared."""
        return {
            f.name: [
                line
                for line in f.lines
                if line.status == "checked" and len(line.members) > 1 and None in line.members
            ]
            for f in self.forms
            if hasattr(f, "lines")
        }

    def incomplete(self) -> bool:
        """Was a line of a document not read, not checked, or checked only in part?"""
        return any(self.left_out().values()) or any(self.partly_checked().values())

    def final_status(self, strict: bool = False) -> Status:
        """The overall status; with ``strict`` (--strict), a line of a document that was not
        read or not checked, or a member of a line that was not checked, turns "holds" into
        "undecided": it was not shown to hold."""
        status = self.status
        if strict and status is Status.HOLDS and self.incomplete():
            return Status.UNDECIDED
        return status

    def final_exit_code(self, strict: bool = False) -> int:
        """``exit_code``; with ``strict``, 3 where everything checked holds but a line of a
        document was not read or not checked, or a member of one was not checked."""
        code = self.exit_code
        if strict and code == 0 and self.incomplete():
            return 3
        return code

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "exit_code": self.exit_code,
            "seconds": round(self.seconds, 3),
            "verdicts": [v.to_dict() for v in self.verdicts],
            "diagnoses": [
                {"form": form, "equation": number, "quantity": quantity,
                 "matches": [m.to_dict() for m in matches]}
                for (form, number, quantity), matches in self.diagnoses.items()
            ],
            "residuals": [
                {"form": form, "equation": number, "truth_minus_line": str(expr)}
                for (form, number), expr in self.residuals.items()
            ],
        }  # fmt: skip


def check_forms(
    forms: Sequence[Form],
    modes: Sequence[Mode] = (Mode.PER_ACTIVATION, Mode.SPATIAL),
    methods: Sequence[str] = METHODS,
    n_values: Sequence[int] | None = None,
    shapes: Sequence[Spec] = (),
    m_random: int = 4096,
    trials: int = 3,
    jobs: int = 1,
    done: Callable[[Unit], None] | None = None,
    groups: int = 1,
) -> CheckResult:
    """Run every method on every form (``Plan``), then name the known mistake of each refuted
    line (``diagnose``) and write what each wrong or open line is off by (``residual``).
    ``groups`` is GroupNorm's G for the forms of that family."""
    import time

    plan = Plan(
        tuple(forms),
        tuple(modes),
        tuple(m for m in METHODS if m in methods),
        tuple(n_values) if n_values else None,
        tuple(shapes),
        m_random,
        trials,
        groups,
    )
    started = time.perf_counter()
    verdicts = plan.run(jobs, done)
    result = CheckResult(tuple(forms), verdicts, time.perf_counter() - started)
    result.diagnoses = _diagnoses(forms, verdicts)
    result.residuals = _residuals(forms, result.lines)
    return result


def _diagnoses(
    forms: Sequence[Form], verdicts: Sequence[Verdict]
) -> dict[tuple[str, int, str], list[Any]]:
    """For each refuted line (not a step), the corpus mistakes its value equals."""
    if not any(v.status is Status.REFUTED for v in verdicts):
        return {}  # and the corpus, its mutants and their module are not loaded
    from bnderive.verify.diagnose import diagnose_line  # builds the corpus: only when needed

    found: dict[tuple[str, int, str], list[Any]] = {}
    by_name = {f.name: f for f in forms}
    for v in verdicts:
        key = (v.form, v.equation or 0, v.quantity)
        if v.status is not Status.REFUTED or v.step or key in found:
            continue
        form = by_name.get(v.form)
        if form is None or v.equation is None:
            continue
        eq = form.equations[v.equation - 1]
        if eq.kind != "quantity":  # a forward line, a local derivative: no corpus of those
            continue
        found[key] = diagnose_line(form, eq, v.mode or form.modes[0])
    return {key: matches for key, matches in found.items() if matches}


def _residuals(
    forms: Sequence[Form], lines: Sequence[LineResult]
) -> dict[tuple[str, int], sp.Expr]:
    if not any(line.status in (Status.REFUTED, Status.UNDECIDED) for line in lines):
        return {}
    from bnderive.verify.residual import index_residual

    by_name = {f.name: f for f in forms}
    out: dict[tuple[str, int], sp.Expr] = {}
    for line in lines:
        form = by_name.get(line.form)
        if form is None or line.status not in (Status.REFUTED, Status.UNDECIDED):
            continue
        residual = index_residual(form, form.equations[line.equation - 1])
        if residual is not None and residual != 0:
            out[(line.form, line.equation)] = residual
    return out


__all__ = ["CheckResult", "check_forms"]
