"""A form's lines run in order at one point, and the truth they are compared with.

Every equation of a form is evaluated with the form's own earlier lines (what the form computes)
and compared with the truth of the quantity it defines; a step (a ``&=`` continuation) is compared
with the line before it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import sympy as sp

from bnderive.core import notation as N
from bnderive.core.derive import Truth, derive
from bnderive.core.double_backward import SecondOrderTruth, second_order_truth
from bnderive.core.evaluate import Env, NotRational, TooLarge, evaluate
from bnderive.core.spec import Spec
from bnderive.errors import BnderiveError
from bnderive.read.forms import Equation, Form


def form_steps(form: Form) -> list[tuple[Equation, Equation]]:
    """The steps of a document: (the equation before, the equation) pairs."""
    by_number = {eq.number: eq for eq in form.equations}
    return [(by_number[a], by_number[b]) for a, b in getattr(form, "steps", ())]


def form_references(form: Form) -> list[tuple[Equation, Equation]]:
    """(reference, checked equation) pairs: a document's lines that are compared with something
    other than a truth by name (μ of the forward graph, a true local derivative, the left side
    of an identity, a name's definition)."""
    by_number = {eq.number: eq for eq in form.equations}
    return [(by_number[a], by_number[b]) for a, b in getattr(form, "references", ())]


# -- running a sequence of definitions --------------------------------------------------------------
#: The M at which a line too large to evaluate (``TooLarge``) is left undecided rather than
#: raised: the smallest M the randomized method tries (``verify.plan``); None, raised.
_UNDECIDED_AT: ContextVar[int | None] = ContextVar("too_large_undecided", default=None)


@contextmanager
def too_large_undecided(m: int | None) -> Iterator[None]:
    """Within: a line whose sum builds more entries than the budget allows even at M = ``m``
    is recorded as a line error (its verdict: not decided), and the other lines go on."""
    token = _UNDECIDED_AT.set(m)
    try:
        yield
    finally:
        _UNDECIDED_AT.reset(token)


@dataclass
class Outcome:
    values: dict[str, Any] = field(default_factory=dict)  # the latest value of each name
    errors: dict[str, str] = field(default_factory=dict)
    lines: list[Any] = field(default_factory=list)  # the value of each definition, in order
    line_errors: list[str | None] = field(default_factory=list)

    def line(self, eq: Equation) -> Any:
        """The value a form's equation computed (a chain may define dx[i] on several lines)."""
        return self.lines[eq.number - 1]

    def line_error(self, eq: Equation) -> str | None:
        return self.line_errors[eq.number - 1]


def run_lines(definitions: Iterable[tuple[str, bool, sp.Expr]], base: Env) -> Outcome:
    """Evaluate named definitions in order in a copy of ``base``; failures are recorded."""
    env = base.child()
    out = Outcome()
    for name, elementwise, expr in definitions:
        try:
            value = evaluate(expr, env, N.i if elementwise else None)
        except (BnderiveError, NotRational, ZeroDivisionError, TooLarge) as exc:
            message = str(exc)
            if isinstance(exc, TooLarge):
                m = _UNDECIDED_AT.get()
                if m is None:
                    raise  # the plan tries a smaller M
                message = (
                    f"not decided: too large at M = {m}, the smallest M the randomized method "
                    f"tries ({exc}); --method exact,general checks it without this method"
                )
            out.errors[name] = message
            out.lines.append(None)
            out.line_errors.append(message)
            continue
        env.store(name, value, elementwise)
        out.values[name] = value
        out.lines.append(value)
        out.line_errors.append(None)
    return out


def truth_of(order: int, spec: Spec) -> Truth | SecondOrderTruth:
    """The ground truth a form of ``order`` is compared with."""
    return derive(spec) if order == 1 else second_order_truth(spec)


def form_definitions(form: Form) -> list[tuple[str, bool, sp.Expr]]:
    """The form's lines in order, each stored under the name later lines know it by."""
    return [(eq.store_name, eq.elementwise, eq.expr) for eq in form.equations]


def checkable(form: Form, truth: Truth | SecondOrderTruth) -> list[Equation]:
    return [eq for eq in form.equations if eq.kind == "quantity" and eq.name in truth]


def entries(value: Any, elementwise: bool) -> list[Any]:
    return list(value) if elementwise else [value]


def paired(a: list[Any], b: list[Any]) -> list[tuple[Any, Any]]:
    """Entries side by side; one value against M (a per-channel reference, a per-element
    line) is compared with each of them."""
    if len(a) == 1 and len(b) > 1:
        a = a * len(b)
    elif len(b) == 1 and len(a) > 1:
        b = b * len(a)
    return list(zip(a, b, strict=True))


def reference_entries(before: Any, mine: Outcome, env: Env) -> list[Any] | str:
    """The entries of a reference: the equation before (a step) or an expression at element i
    (a local derivative's truth); an error message if it cannot be evaluated."""
    if isinstance(before, Equation):
        error = mine.line_error(before)
        return error if error else entries(mine.line(before), before.elementwise)
    outcome = run_lines([("reference", True, before)], env)
    error = outcome.line_errors[0]
    return error if error else list(outcome.lines[0])
