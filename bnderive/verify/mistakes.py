"""Where mistakes come in: a derivation's refuted lines grouped into independent mistakes.

A refuted line is one of three things:

* a faithful step from a wrong line: it follows from the member before it (a step verdict
  holds) and that member is refuted: the mistake came in earlier;
* the right formula applied to a wrong value: it uses a quantity an earlier refuted line
  defined (∂L/∂σ² on line 70 wrong, ∂L/∂μ on line 86 built from it), and with the true value of
  that quantity in its place it holds: it inherits that line's mistake;
* otherwise a mistake of its own, which is named, even when an earlier one exists.

The second test is decided exactly, at one small size, by the same exact method as ``check``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import sympy as sp

from bnderive.core import notation as N
from bnderive.core.derive import at_index
from bnderive.core.spec import Mode, Spec
from bnderive.read.forms import Equation, Form
from bnderive.verify.lines import truth_of
from bnderive.verify.verdict import Status, Verdict


@dataclass
class Mistake:
    """One independent mistake: the equation where it comes in, and what carries it on."""

    equation: int
    follows: list[int] = field(default_factory=list)  # faithful steps from it
    inherits: list[int] = field(default_factory=list)  # lines that use its wrong value


def find_mistakes(form: Form, verdicts: Sequence[Verdict]) -> list[Mistake]:
    """The independent mistakes among the refuted lines of ``form``, in order."""
    mine = [v for v in verdicts if v.form == form.name and v.equation is not None]
    refuted = sorted({v.equation for v in mine if v.status is Status.REFUTED and not v.step})
    if not refuted:
        return []
    steps: dict[int, list[Verdict]] = {}
    for v in mine:
        if v.step:
            steps.setdefault(v.equation, []).append(v)
    by_number = {eq.number: eq for eq in form.equations}
    owner: dict[int, Mistake] = {}  # refuted equation → its mistake
    out: list[Mistake] = []
    for number in refuted:
        eq = by_number[number]
        before = _follows(steps.get(number, []))
        if before is not None and before in owner:
            owner[before].follows.append(number)
            owner[number] = owner[before]
            continue
        source = _inherited(form, eq, [by_number[n] for n in refuted if n < number])
        if source is not None and source.number in owner:
            owner[source.number].inherits.append(number)
            owner[number] = owner[source.number]
            continue
        mistake = Mistake(number)
        owner[number] = mistake
        out.append(mistake)
    return out


def _follows(verdicts: list[Verdict]) -> int | None:
    """The equation a line follows from, if some method says so and none says it does not."""
    if any(v.status is Status.REFUTED for v in verdicts):
        return None
    held = [v for v in verdicts if v.status is Status.HOLDS]
    return held[0].follows if held else None


def _inherited(form: Form, eq: Equation, earlier: list[Equation]) -> Equation | None:
    """The earlier refuted line whose value ``eq`` uses, when ``eq`` holds with the true value
    of every gradient it uses in their place; None if it is a mistake of its own."""
    if eq.kind != "quantity":
        return None
    wrong = {e.name: e for e in earlier if e.kind == "quantity" and e.stored}
    if not any(_uses(eq.expr, name) for name in wrong):
        return None
    spec = form.spec(Spec(Mode.PER_ACTIVATION, n=4))
    truth = truth_of(form.order, spec)
    mapping: dict[sp.Expr, sp.Expr] = {}
    for name in N.QUANTITIES:
        if name == "dy" or name not in truth or not _uses(eq.expr, name):
            continue
        value = truth.inline(name)
        if N.QUANTITIES[name]:
            for node in eq.expr.atoms(sp.Indexed):
                if str(node.base.label) == name:
                    mapping[node] = at_index(value, node.indices[0])
        else:
            mapping[sp.Symbol(name)] = value
    repaired = Equation(1, eq.name, eq.index, eq.expr.xreplace(mapping), eq.text, eq.latex)
    if not _holds(form, repaired, spec):
        return None
    return max((e for name, e in wrong.items() if _uses(eq.expr, name)), key=lambda e: e.number)


def _uses(expr: sp.Expr, name: str) -> bool:
    if any(isinstance(s, sp.Symbol) and s.name == name for s in expr.free_symbols):
        return True
    return any(str(a.base.label) == name for a in expr.atoms(sp.Indexed))


def _holds(form: Form, eq: Equation, spec: Spec) -> bool:
    """Does ``eq`` hold exactly at ``spec`` (alone, with the form's conventions)?"""
    from bnderive.verify.exact import exact_check  # exact imports lines, as this module does

    single = Form(
        form.name,
        form.title,
        (),
        (eq,),
        unbiased=form.unbiased,
        eps_inside=form.eps_inside,
        training=form.training,
        order=form.order,
        eps_zero=form.eps_zero,
    )
    verdicts = exact_check(single, [spec])
    return bool(verdicts) and all(v.status is Status.HOLDS for v in verdicts)


__all__ = ["Mistake", "find_mistakes"]
