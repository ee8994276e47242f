"""check-impl names the known mistake a wrong backward equals (issue 5, diagnosis), or the stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bnderive import Mode
from bnderive.cli import main
from bnderive.usercode.check_impl import check_impl

IMPLS = Path(__file__).parent / "impls"


def named(report, who: str, quantity: str) -> str:
    return "\n".join(report.diagnoses.get((who, quantity), []))


@pytest.mark.parametrize(
    ("file", "function", "mode", "quantity", "mistake", "how"),
    [
        ("wrong_nogamma.py", "batchnorm_backward", Mode.PER_ACTIVATION, "dx", "gamma-missing", "exactly"),
        ("wrong_constant_stats.py", "bn_backward", Mode.PER_ACTIVATION, "dx", "stats-constant", "exactly"),
        ("wrong_sign_dvar.py", "batchnorm_backward", Mode.PER_ACTIVATION, "dx", "sign-flip", "exactly"),
        ("wrong_bessel.py", "bn_backward", Mode.PER_ACTIVATION, "dgamma", "unbiased-for-biased", ""),
        ("wrong_spatial_axes.py", "spatial_batchnorm_backward", Mode.SPATIAL, "dx", "per-activation-axes", ""),
        ("wrong_spatial_axes.py", "spatial_batchnorm_backward", Mode.SPATIAL, "dgamma", "per-activation-axes", ""),
    ],
)  # fmt: skip
def test_a_wrong_backward_is_named(file, function, mode, quantity, mistake, how):
    kwargs = {"function": function} if file == "wrong_bessel.py" else {}
    report = check_impl(IMPLS / file, mode=mode, training=True, **kwargs)
    text = named(report, function, quantity)
    assert f"({mistake})" in text, text
    assert how in text


def test_a_right_backward_gets_no_diagnosis():
    report = check_impl(IMPLS / "cs231n_staged.py", training=True)
    assert report.diagnoses == {}
    assert all(v.status.value == "holds" for v in report.verdicts)


def test_an_unknown_mistake_is_localised_to_its_stage():
    report = check_impl(IMPLS / "wrong_dmu_tripled.py", training=True)
    text = named(report, "bn_backward", "dx")
    assert text.startswith(
        "no known mistake matches; at every shape with M ≥ 4, the error lies in the path through μ"
    )
    assert "σ²" not in text and "direct term" not in text


def test_cli_prints_and_serialises_the_diagnosis():
    runner = CliRunner()
    result = runner.invoke(main, ["check-impl", str(IMPLS / "wrong_nogamma.py")])
    assert result.exit_code == 1
    assert (
        "known mistake: γ missing (gamma-missing); your dx equals the result with it, exactly"
        in result.output
    )
    assert "what is right: multiply by γ" in result.output
    result = runner.invoke(main, ["check-impl", str(IMPLS / "wrong_nogamma.py"), "--json"])
    payload = json.loads(result.output)
    (entry,) = payload["diagnoses"]
    assert entry["function"] == "batchnorm_backward" and entry["quantity"] == "dx"
    assert "(gamma-missing)" in entry["lines"][0]


# -- the four real mistakes of tests/impls_real that had no name (issue 13, item 4) ---------------
REAL = Path(__file__).parent / "impls_real"


def _cli(path: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["check-impl", str(path)])
    return result.exit_code, result.output


def _finding(output: str, head: str) -> str:
    """The block printed under the refuted row that starts with ``head``, up to the next row."""
    start = output.index(head)
    ends = [output.find(mark, start + 1) for mark in ("\n✗ ", "\n~ ", "\n? ", "\nnote:")]
    return output[start : min((i for i in ends if i > 0), default=len(output))]


def test_a_cache_in_the_wrong_order_is_named_under_dgamma_too(tmp_path):
    code, output = _cli(REAL / "cache_order.py")
    assert code == 1
    for quantity in ("dx", "dgamma"):
        block = _finding(output, f"✗ bn_backward: {quantity} differs")
        assert (
            "the cache unpacked in the wrong order: with the forward's cache entries x_hat "
            "and x_mu (positions 0 and 1) swapped" in block
        ), block
        assert "right at every shape (exactly)" in block
    # the near miss: the same file with the cache unpacked in the order it is packed holds
    right = tmp_path / "cache_order_fixed.py"
    right.write_text(
        (REAL / "cache_order.py")
        .read_text(encoding="utf-8")
        .replace("x_mu, x_hat, inv_var, gamma = cache", "x_hat, x_mu, inv_var, gamma = cache"),
        encoding="utf-8",
    )
    code, output = _cli(right)
    assert code == 0, output
    assert "wrong order" not in output


MOMENTUM = REAL / "cs231n_momentum_inverted.py"
TEST_MODE = "out = gamma * (x_hat - running_mean) / np.sqrt(running_var + eps) + beta"


def test_a_test_mode_that_normalizes_twice_is_named_exactly(tmp_path):
    code, output = _cli(MOMENTUM)
    assert code == 1
    block = _finding(output, "✗ batchnorm_forward: out (per-activation eval) differs")
    assert (
        "known mistakes, two at once: misplaced parentheses, x − μ/σ for (x − μ)/σ AND x̂ "
        "normalized a second time, (x̂ − μ)/σ (paren-misplaced+twice-again); your out equals "
        "the forward with it exactly, at every shape" in block
    ), block
    assert "what is right: subtract the mean before dividing" in block
    # near misses: the misplaced parenthesis alone is that one slip, and a right test mode holds
    once = tmp_path / "paren_only.py"
    once.write_text(
        MOMENTUM.read_text(encoding="utf-8").replace(TEST_MODE, "out = gamma * x_hat + beta"),
        encoding="utf-8",
    )
    code, output = _cli(once)
    block = _finding(output, "✗ batchnorm_forward: out (per-activation eval) differs")
    assert "known mistake: misplaced parentheses, x − μ/σ for (x − μ)/σ (paren-misplaced)" in block
    assert "twice" not in block and "second time" not in output
    right = tmp_path / "test_mode_right.py"
    right.write_text(
        MOMENTUM.read_text(encoding="utf-8")
        .replace("x_hat = (x - running_mean / np.sqrt(running_var + eps))", "x_hat = x")
        .replace(
            TEST_MODE, "out = gamma * (x_hat - running_mean) / np.sqrt(running_var + eps) + beta"
        ),  # fmt: skip
        encoding="utf-8",
    )
    code, output = _cli(right)
    assert code == 1  # the inverted momentum is still there
    assert "out (per-activation eval) differs" not in output
    assert "misplaced" not in output and "second time" not in output


def test_each_section_keeps_its_own_diagnosis():
    report = check_impl(REAL / "cs231n_spatial_no_transpose.py", mode=Mode.SPATIAL)
    rows = [k for k, v in enumerate(report.verdicts) if v.form == "spatial_batchnorm_forward"
            and v.quantity == "out"]  # fmt: skip
    assert [report.sections[k] for k in rows] == ["spatial training", "spatial eval"]
    for k in rows:
        assert report.diagnosis(k)[0].startswith("known mistake: x reshaped to (N·H·W, C)")
    # eval mode runs exactly at every shape: its own line says so
    assert "exactly, at every shape" in report.diagnosis(rows[1])[0]
    entries = report.to_dict()["diagnoses"]
    assert {"spatial training", "spatial eval"} <= {e["section"] for e in entries}


UNBIASED = REAL / "unbiased_normalize.py"


def test_unbiased_statistics_with_the_biased_backward_are_named(tmp_path):
    code, output = _cli(UNBIASED)
    assert code == 1
    block = _finding(output, "✗ batchnorm_backward: dx differs")
    assert (
        "known mistake: x̂ from the unbiased variance (÷(M−1)), with BatchNorm's 1/M backward "
        "(unbiased-statistics); your dx equals the result with it, exactly at 3 of 4 points"
    ) in block, block
    assert "what is right: compute the batch variance with ÷M" in block
    # dγ = Σ dy·x̂ has no 1/M: its x̂ from the unbiased variance is the unbiased layer's dγ
    dgamma = _finding(output, "✗ batchnorm_backward: dgamma differs")
    assert "(unbiased-for-biased)" in dgamma and "unbiased-statistics" not in dgamma
    # near miss: the same forward with the backward of its own (unbiased) variance, 1/(N−1) in
    # the path through σ², is the unbiased layer's truth: named so, not unbiased-statistics
    text = UNBIASED.read_text(encoding="utf-8")
    own = tmp_path / "unbiased_self_consistent.py"
    own.write_text(
        text.replace("dsq = 1. / N * np.ones", "dsq = 1. / (N - 1) * np.ones"), encoding="utf-8"
    )
    code, output = _cli(own)
    block = _finding(output, "✗ batchnorm_backward: dx differs")
    assert "(unbiased-for-biased)" in block and "unbiased-statistics" not in output, block
    # and with the biased variance the file is BatchNorm: nothing to name
    right = tmp_path / "biased.py"
    right.write_text(text.replace("ddof = 1 if N > 1 else 0", "ddof = 0"), encoding="utf-8")
    code, output = _cli(right)
    assert code == 0, output
    assert "known mistake" not in output


def test_a_functional_backward_with_ddof_1_is_named_in_dx():
    report = check_impl(IMPLS / "wrong_bessel.py", function="bn_backward", training=True)
    text = named(report, "bn_backward", "dx")
    assert "(unbiased-statistics)" in text and "exactly at 3 of 4 points" in text


NO_TRANSPOSE = REAL / "cs231n_spatial_no_transpose.py"
WITHOUT = "batchnorm_forward(np.reshape(x, (N * H * W, C)), gamma, beta, bn_param)"
WITH = "batchnorm_forward(x.transpose(0, 2, 3, 1).reshape(-1, C), gamma, beta, bn_param)"


def test_running_statistics_of_a_reshape_without_transpose_are_named(tmp_path):
    code, output = _cli(NO_TRANSPOSE)
    assert code == 1
    for name in ("running_mean", "running_var"):
        block = _finding(output, f"✗ spatial_batchnorm_forward: {name} (spatial training)")
        assert (
            "x reshaped to (N·H·W, C) without the transpose to channel-last: the running "
            "statistics average the mean and variance of those sets, not of each channel over "
            "N, H and W: it matches CS231n's update with that slip (float64 within the derived "
            "rounding bound at 2 of 2 shapes"
        ) in block, block
    # near miss: the forward with the transpose keeps the right running statistics (its out is
    # still wrong: the result is not transposed back), and nothing is said of the sets
    fixed = tmp_path / "transposed.py"
    text = NO_TRANSPOSE.read_text(encoding="utf-8")
    assert WITHOUT in text
    fixed.write_text(text.replace(WITHOUT, WITH), encoding="utf-8")
    report = check_impl(fixed, mode=Mode.SPATIAL, training=True)
    rows = {v.quantity: v for v in report.verdicts if v.form == "spatial_batchnorm_forward"}
    assert rows["running_mean"].status.value == "holds"
    assert rows["running_var"].status.value == "holds"
    assert all("without the transpose" not in v.detail for v in report.verdicts)


SECTIONS = """import numpy as np


def batchnorm_forward(x, gamma, beta, bn_param):
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)
    rm, rv = bn_param["running_mean"], bn_param["running_var"]
    if bn_param["mode"] == "train":
        mu, var = x.mean(axis=0), x.var(axis=0)
        out = gamma * (x - mu) / (np.sqrt(var) + eps) + beta
        bn_param["running_mean"] = momentum * rm + (1 - momentum) * mu
        bn_param["running_var"] = momentum * rv + (1 - momentum) * var
        return out, (x, gamma, eps)
    return 3 * gamma * (x - rm) / np.sqrt(rv + eps) / 2 + beta, None


def batchnorm_backward(dout, cache):
    x, gamma, eps = cache
    xhat = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + eps)
    dx = gamma / np.sqrt(x.var(axis=0) + eps) * (
        dout - dout.mean(axis=0) - xhat * (dout * xhat).mean(axis=0))
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)
"""


def test_an_eval_row_never_shows_the_training_rows_cause(tmp_path):
    path = tmp_path / "two_causes.py"
    path.write_text(SECTIONS, encoding="utf-8")
    report = check_impl(path, mode=Mode.PER_ACTIVATION)
    out = {report.sections[k]: k for k, v in enumerate(report.verdicts) if v.quantity == "out"}
    for k in out.values():
        assert report.verdicts[k].status.value == "refuted"
    assert "(eps-outside)" in report.diagnosis(out["per-activation training"])[0]
    assert report.diagnosis(out["per-activation eval"]) == []  # 3/2·γ·x̂ + β: no known slip
    code, output = _cli(path)
    block = _finding(output, "✗ batchnorm_forward: out (per-activation eval) differs")
    assert "known mistake" not in block, block


def test_test_modes_that_never_read_the_running_statistics_are_named(tmp_path):
    # bn_std_no_eps.py keeps a running *std* under a key the caller does not pass: test mode
    # divides by its default of ones
    code, output = _cli(REAL / "bn_std_no_eps.py")
    assert code == 1
    block = _finding(output, "✗ batchnorm_forward: out (per-activation eval) differs")
    assert "known mistake: the running variance never reaches test mode: it divides by 1" in block
    assert "(stats-unit); your out equals the forward with it exactly, at every shape" in block
    # spatial_wrong_axes_loop.py calls the vanilla forward without the running statistics
    code, output = _cli(REAL / "spatial_wrong_axes_loop.py")
    spatial = _finding(output, "✗ spatial_batchnorm_forward: out (spatial eval) differs")
    assert "(affine-none+stats-zero)" in spatial, spatial
    # near miss: the vanilla test mode of the same file reads its running statistics and only
    # leaves γ and β out
    vanilla = _finding(output, "✗ batchnorm_forward: out (per-activation eval) differs")
    assert "(affine-none);" in vanilla and "never reach" not in vanilla, vanilla


BETA_INSIDE = REAL / "cs231n_beta_inside.py"
TEST_OUT = "        tmp = x - running_mean + beta\n        out = tmp / running_var * gamma\n"


def test_three_slips_at_once_are_named_and_a_right_test_mode_is_not(tmp_path):
    code, output = _cli(BETA_INSIDE)
    assert code == 1
    block = _finding(output, "✗ batchnorm_forward: out (per-activation eval) differs")
    assert (
        "known mistakes, three at once: no ε (√σ², or np.std) AND σ² written for σ (the root "
        "dropped) AND β inside the scaling, γ(x − μ + β)/σ (eps-none+root-none+affine-beta_inside)"
        "; your out equals the forward with it exactly, at every shape"
    ) in block, block
    text = BETA_INSIDE.read_text(encoding="utf-8")
    assert TEST_OUT in text
    right = tmp_path / "test_mode_right.py"
    right.write_text(
        text.replace(
            TEST_OUT,
            "        out = (x - running_mean) / np.sqrt(running_var + eps) * gamma + beta\n",
        ),
        encoding="utf-8",
    )
    code, output = _cli(right)
    assert "out (per-activation eval) differs" not in output, output
    assert "three at once" not in output
