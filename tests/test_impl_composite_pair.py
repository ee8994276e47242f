"""check-impl on CS231n's affine_bn_relu_forward/backward (issue 16 item 2): the pair is checked
against the exact gradient of Linear → BatchNorm → ReLU (``core.composite``), ∂L/∂b ≡ 0 included,
beside the file's BatchNorm functions.  tests/impls_composite/ holds files written by the project
in the style their headers name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from click.testing import CliRunner

from bnderive.cli import main
from bnderive.core.composite import affine_bn_relu_truth
from bnderive.usercode.composite_impl import composite_case, composite_pair
from bnderive.usercode.layout import read_source
from bnderive.usercode.norm_impl import check_any

COMPOSITE = Path(__file__).parent / "impls_composite"


def statuses(report, function: str) -> dict[str, str]:
    return {v.quantity: v.status.value for v in report.verdicts if v.form == function}


def test_the_inputs_are_exact_and_relu_matters():
    case = composite_case(4, 2, seed=1)
    x, w, b = case["x"], case["w"], case["b"]
    h = x.dot(w) + b
    assert all(v.denominator == 1 for v in x.flat)  # x integer: W's block is unimodular
    truth = affine_bn_relu_truth(x, w, b, case["gamma"], case["beta"], case["dout"], case["eps"],
                                 backend="rational")  # fmt: skip
    assert np.array_equal(truth["h"], h)
    y = truth["y"]
    assert any(v > 0 for v in y.flat) and any(v < 0 for v in y.flat)
    assert all(v == 0 for v in truth["db"])  # b is cancelled by the batch mean


def test_a_right_pair_holds_exactly_beside_the_batchnorm_functions():
    report = check_any(COMPOSITE / "cs231n_layer_utils.py")
    assert statuses(report, "affine_bn_relu_backward") == dict.fromkeys(
        ("dx", "dw", "db", "dgamma", "dbeta"), "holds"
    )
    assert statuses(report, "affine_bn_relu_forward") == {"out": "holds"}
    assert statuses(report, "batchnorm_backward")["dx"] == "holds"
    assert {v.method for v in report.verdicts if v.form.startswith("affine")} == {"exact"}
    assert report.exit_code == 0, [(v.form, v.quantity, v.status.value) for v in report.verdicts]


def test_relu_applied_after_batchnorms_backward_is_refuted_db_included():
    report = check_any(COMPOSITE / "cs231n_layer_utils_relu_order.py", training=True)
    found = statuses(report, "affine_bn_relu_backward")
    assert found == dict.fromkeys(("dx", "dw", "db", "dgamma", "dbeta"), "refuted")
    db = next(v for v in report.verdicts if v.quantity == "db")
    assert "∂L/∂b is exactly 0 in training mode" in db.detail
    assert db.counterexample is not None and db.counterexample.truth == "0"
    assert statuses(report, "batchnorm_backward")["dx"] == "holds"  # its own BN is right


def test_the_pair_alone_and_not_as_a_batchnorm_pair(tmp_path):
    text = (COMPOSITE / "cs231n_layer_utils.py").read_text(encoding="utf-8")
    alone = text.replace("def batchnorm_forward(", "def _bn_forward(").replace(
        "def batchnorm_backward(", "def _bn_backward("
    )
    alone = alone.replace("= batchnorm_forward(", "= _bn_forward(").replace(
        "= batchnorm_backward(", "= _bn_backward("
    )
    path = tmp_path / "layer_utils.py"
    path.write_text(alone, encoding="utf-8")
    assert composite_pair(read_source(path)) == (
        "affine_bn_relu_forward",
        "affine_bn_relu_backward",
    )
    result = CliRunner().invoke(main, ["check-impl", str(path)])
    assert result.exit_code == 0, result.output
    assert "composite API, affine_bn_relu_forward, affine_bn_relu_backward" in result.output
    assert "db is exactly 0 there (b is cancelled by the batch mean)" in result.output
    eval_only = CliRunner().invoke(main, ["check-impl", str(path), "--eval"])
    assert eval_only.exit_code == 2 and "training mode on (N, D) input only" in eval_only.output
