"""A refuted forward is named when its output equals BatchNorm's with one, two or three known
slips (``check_impl.SLIPS``: ε outside the root or missing, Bessel's variance, the root dropped, γ
or β left out or β inside the scaling, misplaced parentheses, x̂ normalized twice, batch
statistics or none in eval mode, and in SPATIAL mode per-position statistics or a reshape
without the transpose) at every shape."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bnderive.core.spec import Mode, Spec
from bnderive.usercode.check_impl import check_impl, make_case, slipped_out, truth_at

REAL = Path(__file__).parent / "impls_real"


def named(path: Path, function: str, **options) -> list[str]:
    report = check_impl(path, **options)
    return report.diagnoses.get((function, "out"), [])


def test_no_slip_is_batchnorm_itself():
    for spec in (Spec(Mode.PER_ACTIVATION, n=3, c=2), Spec(Mode.SPATIAL, n=2, c=2, h=2, w=2)):
        for training in (True, False):
            case = make_case(Spec(spec.mode, n=spec.n, c=spec.c, h=spec.h, w=spec.w,
                                  training=training), seed=3)  # fmt: skip
            truth = truth_at(case)["out"].astype(float)
            assert np.allclose(slipped_out(case, {}), truth, rtol=1e-12, atol=1e-12)


def test_beta_inside_and_no_eps_are_named_together():
    lines = named(REAL / "cs231n_beta_inside.py", "batchnorm_forward", training=True)
    assert lines and lines[0].startswith(
        "known mistakes, two at once: no ε (√σ², or np.std) AND β inside the scaling"
    )


def test_a_reshape_without_transpose_is_named():
    lines = named(REAL / "cs231n_spatial_no_transpose.py", "spatial_batchnorm_forward",
                  training=True)  # fmt: skip
    assert lines and lines[0].startswith(
        "known mistake: x reshaped to (N·H·W, C) without the transpose to channel-last"
    )


def test_eval_slips_are_named():
    lines = named(REAL / "cs231n_forward_alt.py", "batchnorm_forward", training=False)
    assert lines and lines[0].startswith("known mistake: ε outside the root (σ + ε)")
    lines = named(REAL / "cs231n_running_eps.py", "batchnorm_forward", training=False)
    # the own-ε reading comes first (ε = 0 exactly), the slip's name after it
    assert any(line.startswith("known mistake: no ε") for line in lines)


def test_a_wrong_forward_that_is_no_known_slip_gets_no_name(tmp_path):
    text = (REAL / "cs231n_staged.py").read_text(encoding="utf-8")
    wrong = text.replace("out = scaled + beta", "out = scaled * scaled + beta", 1)
    assert wrong != text
    path = tmp_path / "squared.py"
    path.write_text(wrong, encoding="utf-8")
    report = check_impl(path, training=True, mode="per-activation")
    row = next(v for v in report.verdicts if v.quantity == "out")
    assert row.status.value == "refuted"
    assert not report.diagnoses.get(("batchnorm_forward", "out"))


def test_a_reshape_without_transpose_is_named_in_the_backward_too():
    report = check_impl(REAL / "cs231n_spatial_no_transpose.py", training=True, mode="spatial")
    for quantity in ("dx", "dgamma", "dbeta"):
        lines = report.diagnoses[("spatial_batchnorm_backward", quantity)]
        assert lines[0].startswith(
            "known mistake: x reshaped to (N·H·W, C) without the transpose to channel-last"
        ), quantity


def test_a_right_spatial_backward_is_not_an_axes_slip():
    from bnderive.usercode.check_impl import slipped_grads

    case = make_case(Spec(Mode.SPATIAL, n=2, c=2, h=2, w=2), seed=5)
    truth = {k: v.astype(float) for k, v in truth_at(case).items()}
    for axes in ("position", "no_transpose"):
        wrong = slipped_grads(case, axes)
        assert not np.allclose(wrong["dx"], truth["dx"]), axes
