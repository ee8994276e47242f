"""`check` against an independent oracle: operator mutants of the compact, staged and Kronecker
forms' dx lines.  The oracle shares no code with bnderive: the truth is the brute-force layer of
conftest.py (the whole loss differentiated with sympy.diff), the mutant's own value comes from
its text read by tests/oracle.py's interpreter, both in float64 at random inputs.  Every "holds"
of the exact method must agree with the oracle, and every "refuted" disagree."""

from __future__ import annotations

import re

import pytest

from bnderive.core.spec import Spec
from bnderive.read.derivations import builtin_form_data
from bnderive.read.forms import form_from_dict
from bnderive.verify.exact import exact_check
from bnderive.verify.verdict import Status

SWAP = {"+": "-", "-": "+", "*": "/", "/": "*"}
N = 4


def mutants() -> list[tuple[str, int, str]]:
    out = []
    for name in ("compact", "staged", "kronecker"):
        data = builtin_form_data(name)
        (number,) = [k for k, eq in enumerate(data["equations"]) if eq["defines"] == "dx[i]"]
        text = data["equations"][number]["expr"]
        for m in re.finditer(r"(?<![*/])[-+*/](?![*/])", text):
            if text[m.start() - 1] == "(" and m.group() == "-":  # a unary minus: (-1/2)
                continue
            out.append((name, m.start(), text[: m.start()] + SWAP[m.group()] + text[m.end() :]))
    return out


MUTANTS = mutants()


def test_enough_mutants():
    assert len(MUTANTS) >= 20


@pytest.mark.parametrize(("name", "at", "expr"), MUTANTS, ids=[f"{n}:{a}" for n, a, _ in MUTANTS])
def test_exact_verdict_agrees_with_the_brute_force_oracle(independent, name, at, expr):
    data = builtin_form_data(name)
    for eq in data["equations"]:
        if eq["defines"] == "dx[i]":
            eq["expr"] = expr
    form = form_from_dict(data, f"{name} mutant at {at}")
    (verdict,) = [
        v for v in exact_check(form, [Spec(n=N)]) if v.quantity == "dx[i]" and v.follows is None
    ]
    agrees = independent(form, m=N).get(form.equation("dx").number)
    # The exact method decides every one of these at N = 4: undecided would pass silently.
    assert verdict.status in (Status.HOLDS, Status.REFUTED), (expr, verdict.detail)
    assert agrees is not None, f"the oracle cannot evaluate {expr}"
    if verdict.status is Status.HOLDS:
        assert agrees, f"{name} mutant holds but the oracle disagrees: {expr}"
    else:
        assert not agrees, f"{name} mutant refuted but the oracle agrees: {expr}"
