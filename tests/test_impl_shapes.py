"""Shapes as people return them (issue 13 §1): one value per feature in another shape, such as
(1, D) from keepdims=True, is accepted with a note; a (D, D) dγ is its own failure row that says
what it is and what was expected."""

from __future__ import annotations

from pathlib import Path

from bnderive.usercode.check_impl import check_impl

REAL = Path(__file__).parent / "impls_real"


def test_keepdims_shapes_are_accepted_and_noted():
    report = check_impl(REAL / "cmu_mytorch.py", training=True)
    assert report.exit_code == 0
    for what in ("dgamma", "dbeta", "self.running_M", "self.running_V"):
        assert any(
            f"returned {what} with shape (1, 2), one value per feature/channel" in n
            for n in report.notes
        ), what


def test_a_d_by_d_dgamma_is_named_with_what_was_expected():
    report = check_impl(REAL / "cs231n_composite.py", training=True)
    failure = next(f for f in report.failures if f.function == "batchnorm_backward")
    assert failure.quantities == ("dgamma",)
    assert "returned dgamma with shape (2, 2); expected (2,)" in failure.message
    assert "as an outer product such as dout.T @ x_hat gives; the gradient is its diagonal" in (
        failure.message
    )
    # dx and dβ of the same backward are still checked
    rows = {(v.form, v.quantity) for v in report.verdicts}
    assert ("batchnorm_backward", "dx") in rows and ("batchnorm_backward", "dbeta") in rows
