"""check-impl's plans, the file's own ε, its diagnoses and its CLI: the mutants no test killed.

``tools/mutate.py`` was run on the parts of check-impl that the comparison's run (2026-12-02,
docs/soundness.md) left out; every test here kills a mutant that survived the check-impl tests
of the time, and each says which.  The scores and the equivalent mutants are in
docs/soundness.md ("check-impl's plans, its own ε, its diagnoses and the CLI").
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from bnderive.cli import main

IMPLS = Path(__file__).parent / "impls"
REAL = Path(__file__).parent / "impls_real"
ENV = {"COLUMNS": "200", "FORCE_COLOR": None, "TERM": "dumb", "NO_COLOR": "1"}


def run(*args: str):
    return CliRunner().invoke(main, ["check-impl", *args], env=ENV)


def rows(result) -> dict[tuple[str, str, str], str]:
    payload = json.loads(result.output)
    return {(v["form"], v["section"], v["quantity"]): v["status"] for v in payload["verdicts"]}


# -- takes_eps: code given an ε is never excused as code that fixes its own -----------------------
def test_a_forward_that_takes_eps_and_ignores_it_is_refuted_not_excused():
    """batchnorm_forward(x, gamma, beta, eps) normalizing with a literal 1e-5 is BatchNorm only
    at 1e-5: refuted at the ε passed.  Killed: ``if "eps" in calls.forward_args: return True``
    deleted (and ``in`` → ``not in``), which took it for code that takes no ε, checked it again
    at its own 1e-5 and said it holds (exit 0)."""
    result = run(str(IMPLS / "graph_walk_eps_ignored.py"), "--train", "--json")
    assert result.exit_code == 1, result.output
    found = rows(result)
    assert found[("batchnorm_forward", "per-activation training", "out")] == "refuted"
    assert found[("batchnorm_backward", "per-activation training", "dx")] == "refuted"
    notes = json.loads(result.output)["notes"]
    assert not any("takes no ε" in n for n in notes)
