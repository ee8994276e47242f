"""A layer that flattens a 4-D input to (N, C·H·W) and normalizes per activation (the textbook
layer's ``x.reshape(x.shape[0], -1)``) is checked in SPATIAL mode too: a 4-D input to a
BatchNorm layer asks for statistics per channel, and per-position statistics are refuted."""

from __future__ import annotations

from pathlib import Path

from bnderive.usercode.check_impl import check_impl
from bnderive.usercode.layer import layer_plans
from bnderive.usercode.layout import read_source

REAL = Path(__file__).parent / "impls_real"


def test_the_flattening_is_read_from_the_code():
    plans = {p.cls: p for p in layer_plans(read_source(REAL / "cupy_style_eps_mismatch.py"))}
    assert plans["BatchNorm2d"].layout == "flat"
    assert plans["BatchNorm2d"].modes == ("per-activation", "spatial")
    assert plans["BaseBatchNormalization"].modes == ("per-activation",)
    nhwc = layer_plans(read_source(REAL / "dlfs_class_nhwc.py"))[0]
    assert nhwc.layout == "nchw"  # a transpose to channel-last before the reshape: per channel


def test_a_flattening_layer_is_refuted_in_spatial_mode_and_right_per_activation():
    report = check_impl(REAL / "cupy_style_eps_mismatch.py", layer_class="BatchNorm2d")
    rows = {
        (v.form, s, v.quantity): v.status.value
        for v, s in zip(report.verdicts, report.sections, strict=True)
    }
    assert rows[("BatchNorm2d.forward", "per-activation training", "out")] == "holds"
    assert rows[("BatchNorm2d.forward", "spatial training", "out")] == "refuted"
    assert rows[("BatchNorm2d.backward", "spatial training", "dx")] == "refuted"
    # dγ comes back per activation and is summed per channel: it is compared, and wrong
    assert rows[("BatchNorm2d.backward", "spatial training", "dgamma")] == "refuted"
    assert rows[("BatchNorm2d.backward", "spatial training", "dbeta")] == "holds"
    assert not any(
        q in ("running_mean", "running_var") and s.startswith("spatial") for _f, s, q in rows
    )
    assert any("keeps its running statistics per activation" in n for n in report.notes)
    assert any("which the layer flattens to (N, C·H·W)" in c for c in report.calls)
    assert report.exit_code == 1
