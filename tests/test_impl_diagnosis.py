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
