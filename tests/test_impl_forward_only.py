"""A forward f(x, gamma, beta, eps) -> out that keeps no cache, beside one functional backward
f(x, gamma, beta, dout, eps): both are checked (issue 13 §1-2), the forward for its out."""

from __future__ import annotations

from pathlib import Path

from bnderive.usercode.check_impl import check_impl

REAL = Path(__file__).parent / "impls_real"


def test_a_forward_without_a_cache_and_a_functional_backward_are_both_checked():
    report = check_impl(REAL / "functional_api.py")
    rows = {(v.form, v.quantity): (v.status.value, v.method) for v in report.verdicts}
    assert rows == {
        ("bn_apply", "out"): ("holds", "exact"),
        ("bn_backward", "dx"): ("holds", "exact"),
        ("bn_backward", "dgamma"): ("holds", "exact"),
        ("bn_backward", "dbeta"): ("holds", "exact"),
    }
    assert "bn_apply(x, gamma, beta, eps) -> out [per-activation, training]" in report.calls


def test_a_wrong_forward_beside_the_backward_is_refuted(tmp_path):
    text = (REAL / "functional_api.py").read_text(encoding="utf-8")
    wrong = text.replace("np.sqrt(x.var(0) + eps) + beta", "(np.sqrt(x.var(0)) + eps) + beta", 1)
    assert wrong != text
    path = tmp_path / "functional_eps_outside.py"
    path.write_text(wrong, encoding="utf-8")
    report = check_impl(path)
    rows = {(v.form, v.quantity): v.status.value for v in report.verdicts}
    assert rows[("bn_apply", "out")] == "refuted"
    assert rows[("bn_backward", "dx")] == "holds"
    assert report.diagnoses[("bn_apply", "out")][0].startswith("known mistake: ε outside the root")
