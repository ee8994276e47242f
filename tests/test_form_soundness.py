"""`check` against an independent oracle: operator mutants of the compact, staged and Kronecker
forms' dx lines.  The oracle is the brute-force layer of conftest.py (the whole loss
differentiated with sympy.diff, nothing of bnderive's graph or derive), evaluated in float64 at
random inputs; the mutant's own value comes from the form as written.  Every "holds" of the
exact method must agree with the oracle, and every "refuted" disagree."""

from __future__ import annotations

import re

import numpy as np
import pytest
import sympy as sp

from bnderive.core.evaluate import FLOAT
from bnderive.core.points import point_env
from bnderive.core.spec import Spec
from bnderive.read.derivations import builtin_form_data
from bnderive.read.forms import form_from_dict
from bnderive.verify.exact import exact_check
from bnderive.verify.lines import form_definitions, run_lines
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


@pytest.fixture(scope="module")
def oracle(layer_cls):
    layer = layer_cls((N, 1))
    dx = layer.dx()
    inputs = [*layer.x[:, 0], *layer.g[:, 0], layer.gamma[0], layer.beta[0], layer.eps]
    return [sp.lambdify(inputs, dx[n, 0], "math") for n in range(N)]


def test_enough_mutants():
    assert len(MUTANTS) >= 20


@pytest.mark.parametrize(("name", "at", "expr"), MUTANTS, ids=[f"{n}:{a}" for n, a, _ in MUTANTS])
def test_exact_verdict_agrees_with_the_brute_force_oracle(oracle, name, at, expr):
    data = builtin_form_data(name)
    for eq in data["equations"]:
        if eq["defines"] == "dx[i]":
            eq["expr"] = expr
    form = form_from_dict(data, f"{name} mutant at {at}")
    (verdict,) = [
        v for v in exact_check(form, [Spec(n=N)]) if v.quantity == "dx[i]" and v.follows is None
    ]
    rng = np.random.default_rng(at)
    agrees = True
    for _ in range(3):
        x, g = rng.normal(3, 2.5, N), rng.normal(0, 1, N)
        gamma, beta, eps = float(rng.normal(2, 1)), 0.5, 0.3
        truth = [f(*x, *g, gamma, beta, eps) for f in oracle]
        point = {"x": x, "g": g, "ggI": [0.0] * N, "gamma": gamma, "beta": beta,
                 "ggG": 0.0, "ggB": 0.0, "eps": eps}  # fmt: skip
        with np.errstate(all="ignore"):
            mine = run_lines(form_definitions(form), point_env(Spec(n=N), 0, point, FLOAT).env)
        value = mine.values.get("dx")
        if value is None or not np.allclose(np.asarray(value, float), truth, rtol=1e-9, atol=1e-12):
            agrees = False
    # The exact method decides every one of these at N = 4: undecided would pass silently.
    assert verdict.status in (Status.HOLDS, Status.REFUTED), (expr, verdict.detail)
    if verdict.status is Status.HOLDS:
        assert agrees, f"{name} mutant holds but the oracle disagrees: {expr}"
    else:
        assert not agrees, f"{name} mutant refuted but the oracle agrees: {expr}"
