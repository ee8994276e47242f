"""Which forward each CS231n backward is called after (issue 13, items 2 and 3): a backward whose
name has a forward of its own (batchnorm_backward_alt and batchnorm_forward_alt) is paired with
it, and the called lines say on which forward's cache each backward ran wherever a mode has more
than one backward; the self-consistency lines name that forward."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from bnderive.cli import main
from bnderive.usercode.check_impl import check_impl

REAL = Path(__file__).parent / "impls_real"
EXAMPLES = Path(__file__).parent.parent / "examples"
ALT = REAL / "cs231n_forward_alt.py"
ENV = {"COLUMNS": "200", "FORCE_COLOR": None, "TERM": "dumb", "NO_COLOR": "1"}


def cli(path: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["check-impl", str(path)], env=ENV)
    return result.exit_code, result.output


def rows(report) -> dict[tuple[str, str, str], str]:
    return {
        (v.form, v.quantity, section): v.status.value
        for v, section in zip(report.verdicts, report.sections, strict=True)
    }


def test_the_alt_backward_runs_on_the_alt_forwards_cache():
    code, output = cli(ALT)
    assert code == 1  # both test modes put ε outside the root
    assert "could not check" not in output
    assert (
        "called: batchnorm_backward_alt(dout, cache) -> (dx, dgamma, dbeta) on "
        "batchnorm_forward_alt's cache [per-activation, training]"
    ) in output
    assert (
        "batchnorm_backward(dout, cache) -> (dx, dgamma, dbeta) on batchnorm_forward's cache"
        in output
    )
    found = rows(check_impl(ALT))
    for q in ("dx", "dgamma", "dbeta"):
        assert found[("batchnorm_backward_alt", q, "per-activation training")] == "holds"
        assert found[("batchnorm_backward", q, "per-activation training")] == "holds"
    assert found[("batchnorm_forward_alt", "out", "per-activation training")] == "holds"
    assert found[("batchnorm_forward_alt", "out", "per-activation eval")] == "refuted"


def test_a_wrong_alt_backward_is_refuted_and_named_on_its_own_forwards_cache(tmp_path):
    text = ALT.read_text(encoding="utf-8")
    right = "(N * dout * gamma - np.sum(dout * gamma, axis=0) - x_norm * np.sum(dout * gamma * x_norm, axis=0))"
    assert right in text
    wrong = tmp_path / "alt_nogamma.py"
    wrong.write_text(text.replace(right, right.replace(" * gamma", "")), encoding="utf-8")
    report = check_impl(wrong, training=True)
    found = rows(report)
    assert found[("batchnorm_backward_alt", "dx", "per-activation training")] == "refuted"
    assert found[("batchnorm_backward", "dx", "per-activation training")] == "holds"
    assert "(gamma-missing)" in "\n".join(report.diagnoses[("batchnorm_backward_alt", "dx")])


def test_backwards_sharing_one_forward_say_so():
    code, output = cli(EXAMPLES / "layers.py")
    assert code == 0, output
    for b in ("batchnorm_backward", "batchnorm_backward_alt"):
        assert f"{b}(dout, cache) -> (dx, dgamma, dbeta) on batchnorm_forward's cache" in output


def test_one_backward_needs_no_pairing_note():
    code, output = cli(REAL / "cs231n_spatial_direct.py")  # one backward per mode
    assert code == 0, output
    assert "'s cache" not in output


def test_a_forward_alt_without_its_backward_is_checked_alone(tmp_path):
    text = ALT.read_text(encoding="utf-8")
    cut = text.index("def batchnorm_backward_alt(")
    alone = tmp_path / "forward_alt_alone.py"
    alone.write_text(text[:cut], encoding="utf-8")
    found = rows(check_impl(alone))
    assert found[("batchnorm_forward_alt", "out", "per-activation training")] == "holds"
    assert found[("batchnorm_forward_alt", "out", "per-activation eval")] == "refuted"
    assert not any(form == "batchnorm_backward_alt" for form, _q, _s in found)


def test_the_self_consistency_lines_name_the_forward():
    report = check_impl(REAL / "cs231n_hardcoded_eps.py", training=True)
    lines = report.diagnoses[("batchnorm_backward", "dx")]
    assert any(
        line.startswith("your dx is the gradient of your own forward")
        and "(the forward: batchnorm_forward, whose cache it was called on)" in line
        for line in lines
    ), lines
