"""check-impl: the running statistics of the CS231n forward, and the CS231n API in eval mode.

The expected updates are written out here by hand from the two conventions (CS231n: momentum p
on the old value, biased σ²; PyTorch: momentum m on the new value, unbiased M/(M−1)·σ²) and
PyTorch's own BatchNorm is the oracle for its convention.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bnderive.cli import main
from bnderive.core.spec import Mode, Spec
from bnderive.usercode.check_impl import RUNNING_CONVENTIONS, check_impl, default_shapes, make_case
from bnderive.verify.verdict import Status

IMPLS = Path(__file__).parent / "impls"
ENV = {"COLUMNS": "200", "FORCE_COLOR": None, "TERM": "dumb", "NO_COLOR": "1"}
ROWS = ("running_mean", "running_var")


def run(*args: str):
    # training mode only unless a test asks for eval: these tests are about one mode each
    mode = [] if "--eval" in args else ["--train"]
    return CliRunner().invoke(main, ["check-impl", *args, *mode], env=ENV)


def payload(result) -> dict:
    return json.loads(result.output)


def rows(result) -> dict[str, dict]:
    return {v["quantity"]: v for v in payload(result)["verdicts"] if v["quantity"] in ROWS}


def variant(tmp_path: Path, fixture: str, *edits: tuple[str, str]) -> str:
    """A copy of a fixture with one mistake (or one change) written in."""
    text = (IMPLS / fixture).read_text(encoding="utf-8")
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / fixture
    path.write_text(text, encoding="utf-8")
    return str(path)


# -- the expected updates --------------------------------------------------------------------------
def test_both_conventions_by_hand():
    spec = Spec(n=3, c=1)
    case = make_case(spec, 1)
    xs = [case.x[p] for p in spec.positions(0)]
    mu = sum(xs) / 3
    var = sum((v - mu) ** 2 for v in xs) / 3
    old_mu, old_var = case.running_mean[0], case.running_var[0]
    assert old_mu != 0 and old_var > 0  # started from known non-zero running statistics
    cs = RUNNING_CONVENTIONS["cs231n"].update(case, Fraction(9, 10))
    assert cs["running_mean"][0] == Fraction(9, 10) * old_mu + Fraction(1, 10) * mu
    assert cs["running_var"][0] == Fraction(9, 10) * old_var + Fraction(1, 10) * var
    pt = RUNNING_CONVENTIONS["pytorch"].update(case, Fraction(1, 10))
    assert pt["running_mean"][0] == cs["running_mean"][0]  # the defaults weigh alike
    assert pt["running_var"][0] == Fraction(9, 10) * old_var + Fraction(1, 10) * var * 3 / 2
    assert pt["running_var"][0] != cs["running_var"][0]


@pytest.mark.parametrize("mode", list(Mode))
def test_running_statistics_differ_from_every_wrong_answer(mode):
    # unchanged, replaced by the batch values, or either convention: all different, so each
    # mistake is seen
    for k, spec in enumerate(default_shapes(mode)):
        case = make_case(spec, k + 1)
        cs = RUNNING_CONVENTIONS["cs231n"].update(case, Fraction(9, 10))
        pt = RUNNING_CONVENTIONS["pytorch"].update(case, Fraction(1, 10))
        for c in range(spec.c):
            assert cs["running_mean"][c] != case.running_mean[c]
            values = {case.running_var[c], cs["running_var"][c], pt["running_var"][c]}
            assert len(values) == 3


@pytest.mark.torch
@pytest.mark.parametrize("mode", list(Mode))
def test_pytorch_convention_is_torchs_own_update(mode):
    torch = pytest.importorskip("torch")
    for k, spec in enumerate(default_shapes(mode)):
        case = make_case(spec, k + 1)
        x = torch.tensor(case.x.astype(float), dtype=torch.float64)
        mean = torch.tensor([float(v) for v in case.running_mean], dtype=torch.float64)
        var = torch.tensor([float(v) for v in case.running_var], dtype=torch.float64)
        torch.nn.functional.batch_norm(x, mean, var, training=True, momentum=0.1, eps=1.0)
        want = RUNNING_CONVENTIONS["pytorch"].update(case, Fraction(1, 10))
        assert np.allclose(mean.numpy(), want["running_mean"].astype(float), rtol=1e-13)
        assert np.allclose(var.numpy(), want["running_var"].astype(float), rtol=1e-13)


# -- auto: the convention the code follows ---------------------------------------------------------
def test_auto_names_pytorchs_convention_exactly():
    result = run(str(IMPLS / "running_pytorch.py"), "--json")
    assert result.exit_code == 0, result.output
    assert payload(result)["running_convention"] == "pytorch"
    for v in rows(result).values():
        assert v["status"] == "holds" and v["method"] == "exact"
        assert "momentum 1/10 on the new value" in v["detail"]


def test_auto_names_cs231ns_convention_and_says_why_it_is_numeric():
    # the code's default momentum 0.9 gives 1 − 0.9 = 0.09999999999999998 in floats: not 1/10
    # exactly, so float64 decides and says so
    result = run(str(IMPLS / "cs231n_staged.py"), "--json")
    assert result.exit_code == 0, result.output
    assert payload(result)["running_convention"] == "cs231n"
    for v in rows(result).values():
        assert v["status"] == "holds" and v["method"] == "numeric"
        assert "momentum 9/10 on the old value" in v["detail"] and "not a proof" in v["detail"]
    assert any("0.09999999999999998" in n for n in payload(result)["notes"])


def test_auto_refutes_an_update_that_matches_neither_convention(tmp_path):
    # the momentum on the wrong side: 1/10 of the old value and 9/10 of the batch
    path = variant(
        tmp_path,
        "running_pytorch.py",
        ('get("momentum", 0.1)', 'get("momentum", 0.9)'),
    )
    result = run(path, "--json")
    assert result.exit_code == 1, result.output
    found = rows(result)
    assert {v["status"] for v in found.values()} == {"refuted"}
    cex = found["running_mean"]["counterexample"]
    inputs = cex["inputs"]
    old, batch = Fraction(inputs["running μ before"][1:-1]), Fraction(inputs["batch μ"][1:-1])
    want = Fraction(9, 10) * old + Fraction(1, 10) * batch
    assert cex["truth"] == f"{want} (CS231n and PyTorch alike)"
    # the code's 1 − 0.9 is the double 0.09999999999999998, taken at its exact binary value
    assert float(Fraction(cex["form"])) == pytest.approx(float(old / 10 + 9 * batch / 10), 1e-15)
    assert "(CS231n) or" in found["running_var"]["counterexample"]["truth"]
    assert found["running_mean"]["detail"].startswith("matches neither convention at")
    assert payload(result)["running_convention"] is None


def test_auto_does_not_check_a_forward_that_keeps_no_running_statistics():
    result = run(str(IMPLS / "spatial.py"), "--mode", "spatial", "--json")
    assert result.exit_code == 0, result.output
    assert {v["status"] for v in rows(result).values()} == {"not checked"}
    declared = run(str(IMPLS / "spatial.py"), "--mode", "spatial", "--running", "cs231n", "--json")
    assert declared.exit_code == 1
    for v in rows(declared).values():
        assert v["status"] == "refuted" and v["detail"].endswith("the forward leaves it unchanged")


# -- declared conventions --------------------------------------------------------------------------
def test_declared_convention_holds_exactly():
    for fixture, running in (("cs231n_staged.py", "cs231n"), ("running_pytorch.py", "pytorch")):
        result = run(str(IMPLS / fixture), "--running", running, "--json")
        assert result.exit_code == 0, result.output
        assert payload(result)["running_convention"] == running
        assert {v["method"] for v in rows(result).values()} == {"exact"}


def test_declared_convention_refutes_the_other_with_a_counterexample():
    result = run(str(IMPLS / "running_pytorch.py"), "--running", "cs231n")
    assert result.exit_code == 1
    out = result.output
    assert "batchnorm_forward   running_mean" in out and "✗ refuted" in out
    # the README's first case: running μ −8, batch μ −29; bn_param['momentum'] = 9/10
    assert "running μ before = [-8]; running σ² before = [13]; batch μ = [-29]" in out
    assert "bn_param['momentum'] = 9/10" in out
    # CS231n: 9/10·(−8) + 1/10·(−29); the code read 9/10 as PyTorch's weight of the new value
    assert "running_mean[0]: truth -101/10, yours -269/10" in out
    assert "it matches PyTorch's update running ← 1/10·running + 9/10·batch" in out
    # CS231n: 9/10·13 + 1/10·6; yours 1/10·13 + 9/10·(3/2·6)
    assert "running_var[0]: truth 123/10, yours 47/5" in out


def test_functional_api_has_no_running_statistics():
    plain = run(str(IMPLS / "functional.py"), "--function", "bn_backward", "--json")
    assert plain.exit_code == 0 and rows(plain) == {}
    declared = run(str(IMPLS / "functional.py"), "--function", "bn_backward", "--running", "cs231n")
    assert declared.exit_code == 2
    assert "the functional API has no forward" in declared.output
    assert "Traceback" not in declared.output


def test_a_required_momentum_is_a_hint_to_declare_the_convention(tmp_path):
    path = variant(
        tmp_path, "cs231n_staged.py", ('bn_param.get("momentum", 0.9)', 'bn_param["momentum"]')
    )
    result = run(path)
    assert result.exit_code == 2
    assert "KeyError: 'momentum'" in result.output and "--running cs231n" in result.output
    assert run(path, "--running", "cs231n").exit_code == 0


# -- SPATIAL: M = N·H·W ----------------------------------------------------------------------------
PYTORCH_SPATIAL = (
    (
        'momentum * bn_param["running_mean"] + (1 - momentum) * mu',
        '(1 - momentum) * bn_param["running_mean"] + momentum * mu',
    ),
    (
        'momentum * bn_param["running_var"] + (1 - momentum) * var',
        '(1 - momentum) * bn_param["running_var"] + momentum * var * M / (M - 1)',
    ),
    ('get("momentum", 0.9)', 'get("momentum", 0.1)'),
)


def test_spatial_running_statistics_over_n_h_w(tmp_path):
    result = run(str(IMPLS / "spatial_running.py"), "--mode", "spatial", "--json")
    assert result.exit_code == 0, result.output
    assert payload(result)["running_convention"] == "cs231n"
    # PyTorch's Bessel factor M/(M−1) with M = N·H·W, the rows handed to batchnorm_forward
    rows_m = variant(
        tmp_path,
        "spatial_running.py",
        *PYTORCH_SPATIAL,
        ("    if bn_param", "    M = x.shape[0]\n    if bn_param"),
    )
    good = run(rows_m, "--mode", "spatial", "--running", "pytorch", "--json")
    assert good.exit_code == 0, good.output
    assert {v["method"] for v in rows(good).values()} == {"exact"}


def test_spatial_bessel_factor_from_the_batch_size_alone_is_refuted(tmp_path):
    batch_n = variant(
        tmp_path,
        "spatial_running.py",
        *PYTORCH_SPATIAL,
        ("    if bn_param", "    M = BATCH[0]\n    if bn_param"),
        (
            "def spatial_batchnorm_forward(x, gamma, beta, bn_param):\n",
            "def spatial_batchnorm_forward(x, gamma, beta, bn_param):\n    BATCH[0] = x.shape[0]\n",
        ),
        ("import numpy as np\n", "import numpy as np\n\nBATCH = [0]\n"),
    )
    result = run(batch_n, "--mode", "spatial", "--running", "pytorch", "--json")
    assert result.exit_code == 1, result.output
    found = rows(result)
    assert found["running_mean"]["status"] == "holds"
    assert found["running_var"]["status"] == "refuted"
    assert found["running_var"]["method"] == "exact"


# -- eval mode -------------------------------------------------------------------------------------
def test_cs231n_eval_checks_out_and_running_statistics_not_the_training_backward():
    result = run(str(IMPLS / "cs231n_staged.py"), "--eval", "--json")
    assert result.exit_code == 0, result.output
    found = {v["quantity"]: v for v in payload(result)["verdicts"]}
    assert set(found) == {"out", "running_mean", "running_var"}
    assert {v["method"] for v in found.values()} == {"exact"}
    assert payload(result)["functions"][0] == "batchnorm_forward"  # the backwards: a note
    assert any("returned cache None" in n and "not called" in n for n in payload(result)["notes"])


def test_cs231n_eval_checks_a_backward_given_a_test_mode_cache():
    result = run(str(IMPLS / "eval_backward.py"), "--eval", "--json")
    assert result.exit_code == 0, result.output
    found = {v["quantity"]: v for v in payload(result)["verdicts"]}
    assert set(found) == {"out", "running_mean", "running_var", "dx", "dgamma", "dbeta"}
    assert {v["method"] for v in found.values()} == {"exact"}
    # the same file in training mode: the training backward from the same cache layout
    assert run(str(IMPLS / "eval_backward.py")).exit_code == 0


def test_cs231n_eval_refutes_the_training_gradient_on_a_test_mode_cache():
    # running_pytorch.py returns a cache in test mode, but its backward is the training one
    report = check_impl(IMPLS / "running_pytorch.py", training=False)
    status = {(v.form, v.quantity): v.status for v in report.verdicts}
    assert status[("batchnorm_backward", "dx")] is Status.REFUTED
    assert status[("batchnorm_forward", "out")] is Status.HOLDS
    assert status[("batchnorm_backward", "dbeta")] is Status.HOLDS


def test_cs231n_eval_refutes_a_forward_that_moves_the_running_statistics(tmp_path):
    path = variant(
        tmp_path,
        "eval_backward.py",
        (
            '        mu, var = bn_param["running_mean"], bn_param["running_var"]\n',
            '        mu, var = bn_param["running_mean"], bn_param["running_var"]\n'
            '        bn_param["running_var"] = 0.9 * var + 0.1 * x.var(axis=0)\n',
        ),
    )
    result = run(path, "--eval", "--json")
    assert result.exit_code == 1
    found = rows(result)
    assert found["running_mean"]["status"] == "holds"
    assert found["running_var"]["status"] == "refuted"
    assert found["running_var"]["detail"].startswith("changed in eval (test) mode")
    cex = found["running_var"]["counterexample"]
    assert cex["truth"] == cex["inputs"]["running σ²"][1:-1].split(",")[0]


def test_auto_states_a_row_that_matches_one_convention_against_that_one(tmp_path):
    """The running mean replaced by the batch mean (neither convention), the running variance
    PyTorch's: the variance row matches PyTorch's alone and holds, stated against it (the first
    and only matching convention); the mean row is refuted."""
    path = variant(
        tmp_path,
        "running_pytorch.py",
        (
            'bn_param["running_mean"] = (1 - momentum) * bn_param["running_mean"] + momentum * mu',
            'bn_param["running_mean"] = mu',
        ),
    )
    result = run(path, "--json")
    assert result.exit_code == 1, result.output
    found = rows(result)
    assert found["running_mean"]["status"] == "refuted"
    assert found["running_var"]["status"] == "holds"
    assert "PyTorch" in found["running_var"]["detail"]
    assert "CS231n" not in found["running_var"]["detail"].split(";")[0]


def test_auto_shows_an_entry_that_differs_from_both_conventions(tmp_path):
    """A running variance that follows PyTorch's update in channel 0 and is replaced by the
    batch variance elsewhere: the row matches neither convention, and the entry shown is one
    that differs from both (not channel 0, which equals PyTorch's)."""
    path = variant(
        tmp_path,
        "running_pytorch.py",
        (
            'bn_param["running_var"] = (1 - momentum) * bn_param["running_var"] + momentum * unbiased',
            "new = (1 - momentum) * bn_param['running_var'] + momentum * unbiased\n"
            "        new[1:] = var[1:]\n"
            "        bn_param['running_var'] = new",
        ),
    )
    result = run(path, "--json")
    assert result.exit_code == 1, result.output
    found = rows(result)
    assert found["running_mean"]["status"] == "holds"
    refuted = found["running_var"]
    assert refuted["status"] == "refuted", refuted
    cex = refuted["counterexample"]
    ours, theirs = cex["truth"].removesuffix(" (PyTorch)").split(" (CS231n) or ")
    code = Fraction(cex["form"])
    assert code not in (Fraction(ours), Fraction(theirs)), cex
