"""The double backward: the truth against PyTorch, exactly evaluated; every M; a 3→2 slip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bnderive.core.double_backward import second_order_truth
from bnderive.core.evaluate import RATIONAL
from bnderive.core.points import point_env, random_point
from bnderive.core.spec import Mode, Spec
from bnderive.read.forms import load_form
from bnderive.verify.every_m import general_check
from bnderive.verify.exact import exact_check
from bnderive.verify.lines import run_lines
from bnderive.verify.verdict import Status


def truth_at(spec: Spec, seed: int):
    point = random_point(spec, seed, spread=5)
    inst = point_env(spec, 0, point, RATIONAL)
    out = run_lines(second_order_truth(spec).definitions(), inst.env)
    assert not out.errors
    return inst, out.values


@pytest.mark.parametrize("spec", [Spec(n=5), Spec(Mode.SPATIAL, n=2, c=1, h=2, w=3)], ids=str)
def test_second_order_truth_equals_torch_double_backward(spec):
    torch = pytest.importorskip("torch")
    inst, values = truth_at(spec, seed=11)
    env = inst.env

    def t(values):
        return torch.tensor([float(v) for v in values], dtype=torch.float64)

    # One channel: lay the reduction set out as (M, 1) so batch_norm reduces over it.
    x = t(env.arrays["x"]).reshape(-1, 1).requires_grad_(True)
    g = t(env.arrays["g"]).reshape(-1, 1).requires_grad_(True)
    w = torch.tensor([float(env.scalars["gamma"])], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([float(env.scalars["beta"])], dtype=torch.float64, requires_grad=True)
    eps = float(env.scalars["eps"])
    y = torch.nn.functional.batch_norm(x, None, None, w, b, training=True, eps=eps)
    dx, dw, db = torch.autograd.grad(y, (x, w, b), g, create_graph=True)
    ggi = t(env.arrays["ggI"]).reshape(-1, 1)
    phi = (
        (ggi * dx).sum()
        + float(env.scalars["ggG"]) * dw.sum()
        + float(env.scalars["ggB"]) * db.sum()
    )
    gi, gg, ggo = torch.autograd.grad(phi, (x, w, g))
    np.testing.assert_allclose(
        gi.numpy().ravel(), [float(v) for v in values["gI"]], rtol=1e-10, atol=1e-12
    )
    np.testing.assert_allclose(gg.numpy(), [float(values["gG"])], rtol=1e-10)
    np.testing.assert_allclose(
        ggo.numpy().ravel(), [float(v) for v in values["ggO"]], rtol=1e-10, atol=1e-12
    )


def test_ggb_does_not_reach_gi():
    # dβ = Σg does not depend on x or γ: ggB must not appear in gI or gG.
    truth = second_order_truth(Spec())
    for name in ("gI", "gG"):
        assert "ggB" not in {str(s) for s in truth.inline(name).free_symbols}


def _form(tmp_path: Path, gi: str) -> object:
    # A hand derivation of the double backward, in the compact variables.
    text = f"""
name = "hand-double"
order = 2
[[equations]]
defines = "invstd"
expr = "1/sqrt(var+eps)"
[[equations]]
defines = "gO_sum"
expr = "sum(g[k], k)"
[[equations]]
defines = "dotp"
expr = "sum(g[k]*xhat[k], k)"
[[equations]]
defines = "ggI_sum"
expr = "sum(ggI[k], k)"
[[equations]]
defines = "ggI_dot"
expr = "sum(ggI[k]*xhat[k], k)"
[[equations]]
defines = "gG"
expr = "invstd*sum(ggI[k]*(g[k] - gO_sum/M - xhat[k]*dotp/M), k)"
[[equations]]
defines = "ggO[i]"
expr = "gamma*invstd*(ggI[i] - ggI_sum/M - xhat[i]*ggI_dot/M) + ggG*xhat[i] + ggB"
[[equations]]
defines = "gI[i]"
expr = "{gi}"
"""
    path = tmp_path / "hand.toml"
    path.write_text(text, encoding="utf-8")
    return load_form(path)


# ∂Φ/∂x derived by hand with s = invstd, G = Σg, D = Σg·x̂, A = Σ ggI, B = Σ ggI·x̂, C = Σ ggI·g:
# γs²/M·[−x̂ᵢC + x̂ᵢGA/M − D·ggIᵢ + DA/M − B·gᵢ + BG/M + 3x̂ᵢBD/M] + ggG·s·(gᵢ − G/M − x̂ᵢD/M)
GI = (
    "gamma*invstd**2/M*("
    "  -xhat[i]*sum(ggI[k]*g[k], k) + xhat[i]*gO_sum*ggI_sum/M - ggI[i]*dotp"
    "  + ggI_sum*dotp/M - g[i]*ggI_dot + ggI_dot*gO_sum/M + 3*xhat[i]*ggI_dot*dotp/M"
    ") + ggG*invstd*(g[i] - gO_sum/M - xhat[i]*dotp/M)"
)


def test_a_hand_derived_double_backward_holds_and_a_3_to_2_slip_does_not(tmp_path):
    right = _form(tmp_path, GI)
    verdicts = exact_check(right, [Spec(n=3), Spec(n=4)])
    assert {v.quantity: v.status for v in verdicts if v.status is not Status.UNCHECKED} == {
        "gG": Status.HOLDS,
        "ggO[i]": Status.HOLDS,
        "gI[i]": Status.HOLDS,
    }
    assert all(v.status in (Status.HOLDS, Status.UNCHECKED) for v in general_check(right))
    wrong = _form(tmp_path, GI.replace("3*xhat[i]", "2*xhat[i]"))
    (gi,) = [v for v in exact_check(wrong, [Spec(n=4)]) if v.quantity == "gI[i]"]
    assert gi.status is Status.REFUTED and gi.counterexample.truth != gi.counterexample.form
    (gi_all,) = [v for v in general_check(wrong) if v.quantity == "gI[i]"]
    assert gi_all.status is Status.UNDECIDED


PYTORCH = Path(__file__).parent.parent / "derivations" / "pytorch_double_backward.toml"


@pytest.mark.parametrize(
    ("old", "new", "line"),
    [
        ("*3/M", "*2/M", "gI[i]"),  # the 3 of the mixed term in all_sub becomes 2
        ('expr = "gamma*(gI_0t[i]', 'expr = "(gI_0t[i]', "gI[i]"),  # γ dropped from the ggI part
        ("+ ggG*(t0[i] + t1 + t2[i])", "+ ggG*(t0[i] + t1)", "gI[i]"),  # the t2 path dropped
        ("+ ggG*input_sub_mu[i]*sigma2_eps_neg_1_2 + ggB", "+ ggB", "ggO[i]"),  # ggG·x̂ lost
        ("sigma2_eps_neg_1_2**3", "sigma2_eps_neg_1_2**2", "gI[i]"),  # σ² for σ³
    ],
)
def test_mutated_pytorch_double_backward_is_refuted(tmp_path, old, new, line):
    text = PYTORCH.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "mutant.toml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    form = load_form(path)
    exact = {v.quantity: v for v in exact_check(form, [Spec(n=3), Spec(n=4)])}
    assert exact[line].status is Status.REFUTED
    assert exact[line].counterexample.truth != exact[line].counterexample.form
    general = {v.quantity: v for v in general_check(form)}
    assert general[line].status is Status.UNDECIDED
