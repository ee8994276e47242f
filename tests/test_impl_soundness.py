"""check-impl against an independent oracle: operator and constant mutants of a right staged
backward.  Every "holds" must be right and every "refuted" wrong, judged by a plain float64
NumPy backward at random inputs that knows nothing of bnderive."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

from bnderive.usercode.check_impl import ImplementationError, check_impl
from bnderive.verify.verdict import Status

RIGHT = """import numpy as np


def bn_backward(x, gamma, beta, dout, eps):
    N = x.shape[0]
    mu = np.mean(x, axis=0)
    xc = x - mu
    var = np.mean(xc * xc, axis=0)
    inv = 1 / np.sqrt(var + eps)
    xhat = xc * inv
    dxhat = dout * gamma
    dvar = np.sum(dxhat * xc, axis=0) * -0.5 * inv ** 3
    dmu = np.sum(-dxhat * inv, axis=0) + dvar * np.mean(-2 * xc, axis=0)
    dx = dxhat * inv + dvar * 2 * xc / N + dmu / N
    return dx, np.sum(dout * xhat, axis=0), np.sum(dout, axis=0)
"""
_BODY = RIGHT.index("    N = x.shape[0]")
_SWAP = {"+": "-", "-": "+", "*": "/", "/": "*", "2": "3", "0.5": "1", "N": "(N - 1)"}
EDITS = [
    (m.start(), m.group())
    for m in re.finditer(r"(?<![*/\w.])(?:[-+*/]|2|0\.5|N)(?![*/\w.])", RIGHT)
    if m.start() > _BODY
    and RIGHT[m.start() - 1] != "["
    and not RIGHT[m.end() :].lstrip(" ").startswith("= ")  # not the name being assigned
]


def oracle(x: np.ndarray, gamma: np.ndarray, dout: np.ndarray, eps: float) -> tuple:
    inv = 1 / np.sqrt(x.var(0) + eps)
    xhat = (x - x.mean(0)) * inv
    dx = gamma * inv * (dout - dout.mean(0) - xhat * (dout * xhat).mean(0))
    return dx, (dout * xhat).sum(0), dout.sum(0)


def wrong_quantities(path: Path) -> set[str]:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rng = np.random.default_rng(7)
    wrong = set()
    for _ in range(3):
        x, dout = rng.normal(3, 2.5, size=(7, 3)), rng.normal(size=(7, 3))
        gamma = rng.normal(2, 1, size=3)
        with np.errstate(all="ignore"):
            got = module.bn_backward(x, gamma, None, dout, 0.3)
        for name, a, b in zip(
            ("dx", "dgamma", "dbeta"), got, oracle(x, gamma, dout, 0.3), strict=True
        ):
            if not np.allclose(np.asarray(a, dtype=float), b, rtol=1e-7, atol=1e-9):
                wrong.add(name)
    return wrong


def test_there_are_enough_mutants():
    assert len(EDITS) >= 20


@pytest.mark.parametrize(("at", "old"), EDITS, ids=[f"{a}:{o}" for a, o in EDITS])
def test_a_verdict_on_a_mutant_agrees_with_the_oracle(tmp_path, at, old):
    path = tmp_path / "mutant.py"
    path.write_text(RIGHT[:at] + _SWAP[old] + RIGHT[at + len(old) :], encoding="utf-8")
    wrong = wrong_quantities(path)
    try:
        report = check_impl(path)
    except ImplementationError as exc:  # a mutant that returns ∞ (1/0) is no implementation
        assert "non-finite" in str(exc)
        return
    for v in report.verdicts:
        if v.status is Status.HOLDS:
            assert v.quantity not in wrong, f"{v.quantity} holds but the oracle disagrees"
        if v.status is Status.REFUTED:
            assert v.quantity in wrong, f"{v.quantity} refuted but the oracle agrees"
