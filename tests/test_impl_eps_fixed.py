"""Code that takes no ε is BatchNorm at the ε it fixes (issue 13 §3): the ε is found exactly from
its output, every row of the section is checked again at it, and its eval mode must use the
same one.  Code that is given an ε and ignores it stays refuted (tests/test_impl_layouts.py)."""

from __future__ import annotations

from pathlib import Path

from bnderive.usercode.check_impl import check_impl

REAL = Path(__file__).parent / "impls_real"

# A layer in the style of the textbook class of https://github.com/oilneck/prml_python
# (Batch_norm_Layer: the literal 1e-8 inside, no eps parameter), written for these tests.
LAYER = """\
import numpy as np


class Norm:
    def __init__(self, gamma=1.0, beta=0.0, momentum=0.9):
        self.gamma, self.beta, self.momentum = gamma, beta, momentum
        self.avg_mean, self.avg_var = None, None

    def forward(self, x, training):
        if training:
            mu = x.mean(axis=0)
            var = x.var(axis=0)
            self.xc = x - mu
            self.std = np.sqrt(var + FORWARD_EPS)
            self.xn = self.xc / self.std
            self.avg_mean = self.momentum * self.avg_mean + (1 - self.momentum) * mu
            self.avg_var = self.momentum * self.avg_var + (1 - self.momentum) * var
        else:
            self.xn = (x - self.avg_mean) / np.sqrt(self.avg_var + EVAL_EPS)
        return self.gamma * self.xn + self.beta

    def backward(self, dout):
        n = dout.shape[0]
        self.dbeta = dout.sum(axis=0)
        self.dgamma = (dout * self.xn).sum(axis=0)
        std = np.sqrt(self.std ** 2 - FORWARD_EPS + BACKWARD_EPS)
        dxn = self.gamma * dout
        dstd = -np.sum(dxn * self.xc / std ** 2, axis=0)
        dvar = 0.5 * dstd / std
        dxc = dxn / std + 2.0 / n * self.xc * dvar
        return dxc - dxc.mean(axis=0)
"""


def layer(tmp_path: Path, forward: str, backward: str, evaluation: str) -> Path:
    path = tmp_path / "norm_layer.py"
    text = (
        LAYER.replace("FORWARD_EPS", forward)
        .replace("BACKWARD_EPS", backward)
        .replace("EVAL_EPS", evaluation)
    )
    path.write_text(text, encoding="utf-8")
    return path


def statuses(report) -> dict[tuple[str, str, str], str]:
    return {
        (v.form, s, v.quantity): v.status.value
        for v, s in zip(report.verdicts, report.sections, strict=True)
    }


def test_a_layer_without_eps_is_checked_at_its_own_and_holds(tmp_path):
    report = check_impl(layer(tmp_path, "1e-5", "1e-5", "1e-5"))
    assert report.exit_code == 0, statuses(report)
    assert {v.method for v in report.verdicts if v.quantity in ("out", "dx")} == {"exact"}
    assert any(
        n.startswith(
            "Norm takes no ε (its constructor has no eps parameter): it normalizes with "
            "ε = 1e-05, found exactly from its output"
        )
        for n in report.notes
    )
    assert all("4×1, 6×1, 4×2" in v.scope for v in report.verdicts)


def test_a_backward_with_another_eps_than_its_forward_is_refuted_at_the_fixed_eps(tmp_path):
    report = check_impl(layer(tmp_path, "1e-5", "1e-3", "1e-5"), training=True)
    found = statuses(report)
    assert found[("Norm.forward", "per-activation training", "out")] == "holds"
    assert found[("Norm.backward", "per-activation training", "dx")] == "refuted"
    assert found[("Norm.backward", "per-activation training", "dgamma")] == "holds"


def test_an_eval_mode_with_another_eps_is_refuted_and_says_which(tmp_path):
    report = check_impl(layer(tmp_path, "1e-5", "1e-5", "1e-6"))
    found = statuses(report)
    assert found[("Norm.forward", "per-activation training", "out")] == "holds"
    assert found[("Norm.forward", "per-activation eval", "out")] == "refuted"
    line = report.diagnoses[("Norm.forward", "out")][0]
    assert line.startswith(
        "here it normalizes with ε = 1e-06, its training forward with ε = 1e-05 (the code takes "
        "no ε; every mode must use the same one)"
    )


def test_a_layer_without_eps_that_is_not_batchnorm_at_any_eps_stays_refuted(tmp_path):
    path = layer(tmp_path, "1e-5", "1e-5", "1e-5")
    # Bessel's variance: what it normalizes with is σ²·M/(M−1) + ε, no one ε at every batch
    text = path.read_text(encoding="utf-8").replace(
        "var = x.var(axis=0)", "var = x.var(axis=0, ddof=1)"
    )
    path.write_text(text, encoding="utf-8")
    report = check_impl(path, training=True)
    found = statuses(report)
    assert found[("Norm.forward", "per-activation training", "out")] == "refuted"
    assert not any("takes no ε" in n for n in report.notes)


def test_code_given_an_eps_it_ignores_is_not_excused():
    # bn_param['eps'] is read and never used: refuted at bnderive's ε, the own ε only diagnosed
    report = check_impl(REAL / "cs231n_hardcoded_eps.py", training=True)
    assert report.exit_code == 1
    assert not any("takes no ε" in n for n in report.notes)
