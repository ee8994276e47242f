"""Regressions for ways a verifier could wrongly say "holds"."""

from __future__ import annotations

from pathlib import Path

import pytest

from bnderive.core.spec import Mode, Spec
from bnderive.read.forms import load_form
from bnderive.verify.exact import equivariant, exact_check
from bnderive.verify.randomized import large_spec, random_check
from bnderive.verify.verdict import Status

CAFFE = "gamma/sqrt(var+eps)*(g[i] - sum(g[k],k)/M - xhat[i]*sum(g[k]*xhat[k],k)/M)"


def form_with_dx(tmp_path: Path, expr: str):
    path = tmp_path / "f.toml"
    path.write_text(f"name='f'\n[[equations]]\ndefines='dx[i]'\nexpr='{expr}'\n", encoding="utf-8")
    return load_form(path)


@pytest.mark.parametrize(
    "wrong",
    [
        f"{CAFFE} + delta(i, 2)*g[i]",  # wrong only at element 2: entry 1 is right
        f"{CAFFE} + delta(i, 3)*(x[i]-mu)",
        f"{CAFFE} + g[2]*delta(i, 2)",
    ],
)
def test_a_form_wrong_at_one_numbered_element_is_refuted_there(tmp_path, wrong):
    form = form_with_dx(tmp_path, wrong)
    assert not equivariant(form)
    (verdict,) = exact_check(form, [Spec(n=3)])
    assert verdict.status is Status.REFUTED
    assert verdict.counterexample.entry.startswith(("dx[2]", "dx[3]"))
    assert verdict.counterexample.truth != verdict.counterexample.form


def test_symmetric_form_uses_one_entry_and_says_so(tmp_path):
    form = form_with_dx(tmp_path, CAFFE)
    assert equivariant(form)
    (verdict,) = exact_check(form, [Spec(n=4), Spec(Mode.SPATIAL, n=2, c=2, h=1, w=2)])
    assert verdict.status is Status.HOLDS
    assert "permutation symmetry" in verdict.detail


def test_uniform_gradient_blind_spot_is_still_refuted(tmp_path):
    # Right whenever g is uniform (then the true dx is 0 and so is this): a test with a mean
    # loss would pass it. Both methods must refute it.
    form = form_with_dx(tmp_path, "gamma/sqrt(var+eps)*(g[i] - sum(g[k],k)/M)")
    (exact,) = exact_check(form, [Spec(n=4)])
    assert exact.status is Status.REFUTED
    (rand,) = random_check(form, large_spec(Mode.PER_ACTIVATION, 256), trials=2)
    assert rand.status is Status.REFUTED


def test_gamma_one_blind_spot_is_refuted(tmp_path):
    # Missing γ is invisible at γ = 1; the witness points never use γ = 1.
    form = form_with_dx(tmp_path, CAFFE.replace("gamma/", "1/"))
    (verdict,) = exact_check(form, [Spec(n=3)])
    assert verdict.status is Status.REFUTED
    assert verdict.counterexample.inputs["γ"] not in ("1", "0")


def test_undefined_line_is_undecided_not_holds(tmp_path):
    form = form_with_dx(tmp_path, f"{CAFFE}*(x[i]-mu)/(x[i]-sum(x[k],k)/M)")
    (verdict,) = exact_check(form, [Spec(n=1)])
    assert verdict.status is Status.UNDECIDED


def test_a_radical_the_field_cannot_decide_falls_back_to_rationals(tmp_path):
    # √(4(σ²+ε))/2 is √(σ²+ε), but in F_p only the radicand r² is recognised: the randomized
    # method must fall back to rational arithmetic (where √(4r²) = 2r exactly) and still hold.
    form = form_with_dx(tmp_path, CAFFE.replace("sqrt(var+eps)", "(sqrt(4*(var+eps))/2)"))
    (verdict,) = random_check(form, large_spec(Mode.PER_ACTIVATION, 128), trials=2)
    assert verdict.status is Status.HOLDS
    assert "F_p" not in verdict.detail  # decided by the rational path
    wrong = form_with_dx(tmp_path, CAFFE.replace("sqrt(var+eps)", "(sqrt(4*(var+eps))/3)"))
    (verdict,) = random_check(wrong, large_spec(Mode.PER_ACTIVATION, 128), trials=2)
    assert verdict.status is Status.REFUTED


def test_a_right_form_holds_with_the_rational_bound(tmp_path):
    # The F_p screen only refutes (agreement mod p proves nothing of a difference whose
    # coefficients are multiples of p): "holds" is made in rational arithmetic, and its bound
    # is still small.
    (verdict,) = random_check(form_with_dx(tmp_path, CAFFE), large_spec(Mode.SPATIAL, 256), 2)
    assert verdict.status is Status.HOLDS
    assert "rational arithmetic" in verdict.detail and verdict.bound < 1e-15


def test_a_wrong_line_with_radicals_is_refuted_without_the_exact_normal_form():
    # The compact form (ε inside) declared for a layer with ε outside: truth − form has √σ² and
    # non-monomial denominators, whose exact normal form took minutes at M = 8. One point where
    # it is clearly nonzero suffices, and the refutation still carries a real counterexample.
    from bnderive.read.corpus import corpus

    form = corpus().find("compact/eps-inside-for-outside").form
    (dx,) = [
        v
        for v in exact_check(form, [Spec(Mode.SPATIAL, n=2, c=1, h=2, w=2)])
        if v.quantity == "dx[i]"
    ]
    assert dx.status is Status.REFUTED
    assert dx.counterexample.truth != dx.counterexample.form


def test_the_one_point_screen_never_decides_holds_alone(tmp_path, monkeypatch):
    # Were the screen wrong (a point outside the inputs' domain), no witness exists among valid
    # inputs and the exact normal form decides: a right form still holds.
    import bnderive.verify.zero_test as zero
    from bnderive.read.corpus import corpus

    calls = []

    def always(expr, digits=60):
        calls.append(expr)
        return True

    monkeypatch.setattr(zero, "_nonzero_somewhere", always)
    form = corpus().find("eps-outside-compact").form  # right; √σ² in denominators
    verdicts = exact_check(form, [Spec(n=3)])
    assert calls  # the screen was consulted (and lied)
    assert {v.status for v in verdicts} == {Status.HOLDS}
