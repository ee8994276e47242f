"""The notebook's exercise: the student writes ``batchnorm_backward``; bnderive's checker judges it.

The exercise cell saves the student's code to a file (``%%writefile``), because the checker
runs an implementation only in its own isolated child process (DESIGN.md §6b), never in the
kernel that asked.  The check cell calls the library's checker for implementations on that file
and prints ``verdict_text(report)``: one line per quantity, the counterexample of a refuted one
and the known mistake it matches, then the overall verdict.
"""

from __future__ import annotations

from typing import Any

from bnderive.core.spec import Mode
from bnderive.verify.verdict import Status, overall

#: Where the exercise cell writes the student's code (in the notebook's working directory).
EXERCISE_FILE = "batchnorm_exercise.py"
#: The function the student writes: the functional API of ``bnderive check-impl``.
FUNCTION = "batchnorm_backward"

_MARK = {
    Status.HOLDS: "✓ holds",
    Status.REFUTED: "✗ refuted",
    Status.UNDECIDED: "? undecided",
    Status.UNCHECKED: "· not checked",
}


def template(mode: Mode) -> str:
    """The exercise cell as the student first sees it: the signature, the shapes, no body."""
    if mode is Mode.PER_ACTIVATION:
        shapes = (
            "x, dout: (N, D), one feature per column; gamma, beta: (D,).",
            "Statistics per feature, over the batch (axis 0).",
        )
    else:
        shapes = (
            "x, dout: (N, C, H, W); gamma, beta: (C,).",
            "Statistics per channel, over the axes (0, 2, 3).",
        )
    return "\n".join(
        [
            f"%%writefile {EXERCISE_FILE}",
            "import numpy as np",
            "",
            "",
            f"def {FUNCTION}(x, gamma, beta, dout, eps):",
            '    """BatchNorm\'s backward pass in training mode: returns dx, dgamma, dbeta.',
            "",
            f"    {shapes[0]}",
            f"    {shapes[1]}",
            '    """',
            "    # Your code: recompute μ, σ², x̂ from x, then the backward pass.",
            "    raise NotImplementedError",
            "",
        ]
    )


def verdict_text(report: Any) -> str:
    """What the checker found, for a notebook: a ``usercode.check_impl.Report`` as text."""
    lines: list[str] = []
    for v in report.verdicts:
        lines.append(f"{v.form} {v.quantity}: {_MARK[v.status]} ({v.scope})")
    for k, v in enumerate(report.verdicts):
        if v.status is Status.REFUTED and v.counterexample is not None:
            c = v.counterexample
            lines.append("")
            lines.append(f"✗ {v.quantity} {v.detail}")
            lines.append("    " + "; ".join(f"{k} = {val}" for k, val in c.inputs.items()))
            lines.append(f"    {c.entry}: truth {c.truth}, yours {c.form}")
            for text in report.diagnosis(k):
                lines.append(f"  {text}")
        elif v.status is Status.UNDECIDED:
            lines.append("")
            lines.append(f"? {v.quantity}: {v.detail}")
    status = overall(report.verdicts)
    lines.append("")
    if status is Status.HOLDS:
        exact = all(v.method != "numeric" for v in report.verdicts)
        how = "exactly" if exact else "in float64 (the code could not run exactly)"
        lines.append(f"✓ holds: {FUNCTION} equals the exact gradient, {how}.")
    elif status is Status.REFUTED:
        lines.append(f"✗ refuted: {FUNCTION} is wrong; the counterexample above shows where.")
    else:
        lines.append("? undecided: see the notes above.")
    return "\n".join(lines)


__all__ = ["EXERCISE_FILE", "FUNCTION", "template", "verdict_text"]
