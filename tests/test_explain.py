"""bnderive explain: what makes a gradient test of BatchNorm lie, measured exactly.

Every expected number here is computed independently of bnderive's evaluator: from closed forms
of the effect (at M = 2 the bracket g − ḡ − x̂·mean(g·x̂) is (g − ḡ)·ε/(σ²+ε); an eval-mode dx is
γ·g/√(running σ²+ε)), from a float64 NumPy backward, or from SymPy's own exact numbers.
"""

from __future__ import annotations

import decimal
import json
import math
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
from click.testing import CliRunner

from bnderive import Spec, derive
from bnderive.cli import main
from bnderive.core.evaluate import SYMBOLIC
from bnderive.core.points import point_env
from bnderive.usercode.explain import (
    MISTAKES,
    ExplainError,
    Setup,
    Surd,
    compare,
    evaluate_at,
    explain,
    make_point,
)
from bnderive.verify.lines import run_lines

IMPLS = Path(__file__).parent / "impls"
ENV = {"COLUMNS": "200", "FORCE_COLOR": None, "TERM": "dumb", "NO_COLOR": "1"}


def run(*args: str):
    return CliRunner().invoke(main, ["explain", *args], env=ENV)


def findings(setup: Setup) -> dict:
    return {f.name: f for f in explain(setup).findings}


def compact_dx(x: np.ndarray, g: np.ndarray, gamma: float, eps: float) -> np.ndarray:
    """The training-mode dx of one feature in float64, written from DESIGN.md §1."""
    xhat = (x - x.mean()) / np.sqrt(x.var() + eps)
    return gamma / np.sqrt(x.var() + eps) * (g - g.mean() - xhat * np.mean(g * xhat))


# -- exact arithmetic in Q(√a) ---------------------------------------------------------------------
def test_surd_arithmetic_is_exact():
    from gmpy2 import mpq

    a = mpq(2)
    one_plus, one_minus = Surd(mpq(1), mpq(1), a), Surd(mpq(1), mpq(-1), a)
    assert one_plus * one_minus == -1  # (1 + √2)(1 − √2) = −1
    assert one_plus * one_plus.inverse() == 1
    assert (one_plus - one_plus) == 0
    assert float(one_plus) == pytest.approx(1 + math.sqrt(2), rel=1e-15)
    with pytest.raises(ValueError):
        one_plus + Surd(mpq(1), mpq(1), mpq(3))  # √2 and √3: different fields


@pytest.mark.parametrize("training", [True, False])
def test_exact_values_agree_with_sympy(training):
    """The Q(√a) evaluation against SymPy's own exact numbers at the same rational point."""
    spec = Spec(n=5, training=training)
    x = [Fraction(v) for v in ("0.31", "-1.2", "2.5", "0.07", "-0.9")]
    g = [Fraction(v) for v in ("1.5", "-0.25", "0.75", "2", "-1")]
    gamma, beta, eps = Fraction(3, 2), Fraction(1, 3), Fraction(1, 100000)
    running = None if training else (Fraction(1, 4), Fraction(7, 3))
    truth = derive(spec).definitions()
    mine = evaluate_at(spec, truth, x, g, gamma, beta, eps, running)
    point = {"x": x, "g": g, "ggI": [0] * 5, "gamma": gamma, "beta": beta, "ggG": 0, "ggB": 0}
    point["eps"] = eps
    if running is not None:
        point["mu"], point["var"] = running
    inst = point_env(spec, 0, point, SYMBOLIC)
    theirs = run_lines(truth, inst.env).values
    for name in ("dx", "dgamma", "dbeta"):
        a = np.atleast_1d(np.array(mine[name], dtype=object))
        b = np.atleast_1d(np.array(theirs[name], dtype=object))
        for p, q in zip(a, b, strict=True):
            assert float(p) == pytest.approx(float(sp.N(q, 30)), rel=1e-14, abs=1e-300)


# -- the findings, one cause at a time -----------------------------------------------------------
@pytest.mark.parametrize("loss", ["sum", "mean"])
def test_sum_or_mean_loss_makes_the_true_dx_exactly_zero(loss):
    f = findings(Setup(n=4, features=2, loss=loss, gamma=("1.5",)))["uniform-gradient"]
    assert f.flagged and f.effect == 0.0
    assert f.evidence["true dx"] == "exactly 0"
    # every known mistake but the eval formula (dx = γ·g/√(σ²+ε) ≠ 0) also vanishes for uniform g
    passing = f.evidence["mistakes that pass"]
    assert passing.startswith(f"{len(MISTAKES) - 1} of {len(MISTAKES)}: ")
    assert "μ and σ² treated as constants" not in passing
    assert "γ missing" in passing


@pytest.mark.parametrize("loss", ["random", "weights"])
def test_a_non_uniform_gradient_is_not_flagged(loss):
    f = findings(Setup(n=4, loss=loss, gamma=("1.5",)))["uniform-gradient"]
    assert not f.flagged and f.effect > 0.05
    assert f.evidence["mistakes that pass"] == "0 of 8"


def test_batch_of_two_makes_the_true_dx_order_eps():
    setup = Setup(n=2, features=3, loss="random", gamma=("2",))
    f = findings(setup)["small-batch"]
    point = make_point(setup)
    # At M = 2: x̂ = ±√(σ²/(σ²+ε)), so g − ḡ − x̂·mean(g·x̂) = (g − ḡ)·ε/(σ²+ε), and
    # max|dx| / (max|γ g|/√(σ²+ε)) = max|g − ḡ|·ε/(σ²+ε) / max|g|: a rational number.
    ratios = []
    for x, g in zip(point.x, point.probe, strict=True):
        var = ((x[0] - x[1]) / 2) ** 2
        spread = abs(g[0] - g[1]) / 2
        ratios.append(spread * setup.eps / (var + setup.eps) / max(abs(v) for v in g))
    assert f.flagged
    assert f.effect == pytest.approx(float(min(ratios)), rel=1e-12)
    assert f.effect < 1e-3
    assert "x̂ = ±0.99" in f.sentence and "M = 2" in f.sentence


def test_small_batch_probes_with_a_non_uniform_gradient_when_the_loss_is_uniform():
    f = findings(Setup(n=2, loss="mean", gamma=("2",)))["small-batch"]
    assert f.flagged and 0 < f.effect < 1e-3  # not the exact 0 of the uniform gradient
    assert "non-uniform probe g" in f.evidence["true dx"]


def test_three_or_more_values_per_feature_are_not_degenerate():
    f = findings(Setup(n=3, loss="random", gamma=("2",)))["small-batch"]
    assert not f.flagged and f.effect > 0.01


@pytest.mark.parametrize(
    ("gammas", "effect", "flagged"),
    [(("1",), 0.0, True), (("1.5",), 1 / 3, False), (("-1",), 2.0, False)],
)
def test_gamma_one_hides_a_missing_gamma(gammas, effect, flagged):
    # dx without γ is dx/γ: relative difference |1 − 1/γ| against the larger of the two
    f = findings(Setup(n=5, loss="random", gamma=gammas))["gamma-one"]
    assert f.flagged is flagged
    assert f.effect == pytest.approx(effect, abs=1e-15)


def test_gamma_per_feature_reports_the_weakest_feature():
    f = findings(Setup(n=5, features=2, loss="random", gamma=("3", "1")))["gamma-one"]
    assert f.flagged and f.effect == 0.0
    assert f.sentence.startswith("γ = 1, so a backward that forgets γ in dx gives exactly")


def test_variance_near_one_hides_sigma_for_variance():
    setup = Setup(n=8, loss="random", gamma=("1.5",), x_var="1", eps="1e-5")
    f = findings(setup)["variance-near-one"]
    assert f.flagged and f.effect <= 1e-5
    # σ² for σ in front multiplies dx by (σ²+ε)^(−1/2): relative difference 1 − (1+ε)^(−1/2)
    front = 1 - (1 + 1e-5) ** -0.5
    assert f.evidence["dx with σ² for σ in front"] == f"relative difference {front:.3g}"
    assert f.evidence["σ² + ε"] == "1.00001"


def test_variance_far_from_one_is_seen():
    f = findings(Setup(n=8, loss="random", gamma=("1.5",), x_std="3"))["variance-near-one"]
    assert not f.flagged and f.effect > 0.01


def test_eval_reference_differs_from_training_dx_by_all_of_it_for_a_mean_loss():
    f = findings(Setup(n=4, loss="mean", gamma=("2",), reference="eval"))["eval-reference"]
    # training dx ≡ 0 for uniform g; eval dx = γ·g/√(1+ε) ≠ 0: relative difference exactly 1
    assert f.flagged and f.effect == 1.0
    assert f.evidence["training dx"] == "exactly 0 at entry 0"
    assert (
        f.evidence["eval dx = γ·g/√(running σ²+ε)"]
        == f"{2 / 4 / math.sqrt(1 + 1e-5):.6g} at entry 0"
    )


def test_eval_reference_difference_matches_a_float_backward():
    setup = Setup(n=6, loss="random", gamma=("1.5",), reference="eval", running_var="2")
    f = findings(setup)["eval-reference"]
    point = make_point(setup)
    x = np.array([float(v) for v in point.x[0]])
    g = np.array([float(v) for v in point.g[0]])
    train = compact_dx(x, g, 1.5, 1e-5)
    ev = 1.5 * g / math.sqrt(2 + 1e-5)
    expected = np.max(np.abs(train - ev)) / max(np.max(np.abs(train)), np.max(np.abs(ev)))
    assert f.flagged and f.effect == pytest.approx(expected, rel=1e-9)


def test_training_reference_is_no_mismatch():
    f = findings(Setup(n=4, loss="random", gamma=("2",)))["eval-reference"]
    assert not f.flagged and f.effect == 0.0


@pytest.mark.parametrize(
    ("ref_eps", "flagged"), [("1e-3", True), ("1.0000001e-5", False), (None, False)]
)
def test_eps_mismatch_in_eval_mode(ref_eps, flagged):
    setup = Setup(
        n=4, loss="random", gamma=("2",), reference="eval", eps="1e-5", reference_eps=ref_eps
    )
    f = findings(setup)["eps-mismatch"]
    assert f.flagged is flagged
    # eval dx ∝ 1/√(1+ε): relative difference 1 − √((1+ε_small)/(1+ε_large)), in 50 digits
    with decimal.localcontext() as ctx:
        ctx.prec = 50
        eps_ref = Decimal(ref_eps) if ref_eps else Decimal("1e-5")
        small, large = sorted((Decimal("1e-5"), eps_ref))
        expected = float(1 - ((1 + small) / (1 + large)).sqrt())
    assert f.effect == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_eps_mismatch_is_amplified_at_m_two():
    # at M = 2 the training dx is proportional to ε/(σ²+ε): a 10× larger ε, ~10× the dx
    setup = Setup(n=2, loss="random", gamma=("2",), eps="1e-5", reference_eps="1e-4")
    f = findings(setup)["eps-mismatch"]
    assert f.flagged and f.effect > 0.8


def test_a_good_setup_has_no_weakness():
    result = explain(Setup(n=16, features=2, loss="random", gamma=("1.7",), x_std="3"))
    assert result.flagged == [] and result.exit_code == 0


def test_every_sentence_is_one_sentence():
    result = explain(Setup(n=2, loss="mean", reference="eval", eps="1e-3", reference_eps="1e-5"))
    for f in result.findings:
        assert f.sentence.endswith(".") and ". " not in f.sentence, f.sentence


# -- bad setups --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 1}, "M = 1 value per feature"),
        ({"eps": "0"}, "must be positive"),
        ({"eps": "nan"}, "not a finite number"),
        ({"gamma": ("inf",)}, "not a finite number"),
        ({"loss": "l2"}, "Unknown loss"),
        ({"reference": "test"}, "Unknown reference mode"),
        ({"features": 3, "gamma": ("1", "2")}, "2 values of γ for 3 feature(s)"),
        ({"running_var": "-1"}, "is a variance"),
    ],
)
def test_bad_setups_are_errors(kwargs, message):
    with pytest.raises(ExplainError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Setup(**kwargs)


@pytest.mark.parametrize(
    "args",
    [
        ["--n", "1"],
        ["--eps", "0"],
        ["--eps", "nan"],
        ["--ref-eps", "-1e-5"],
        ["--gamma", "1,nan"],
        ["--mode", "spatial", "--n", "1", "--h", "1", "--w", "1"],
        ["--h", "3"],
        ["--against", "torch"],
        ["no_such_file.py"],
    ],
)
def test_bad_input_is_exit_2_without_traceback(args):
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Error: ")
    assert "Traceback" not in result.output


# -- the seed-003 case: staged NumPy backward vs an eval-mode layer, mean loss, N = 2 -----------
SEED_003 = ["--n", "2", "--c", "3", "--loss", "mean", "--reference", "eval", "--gamma", "2"]

SEED_003_OUTPUT = """\
setup: per-activation 2×3 (M = 2), mean loss, γ = 2, ε = 1e-05, x ~ 0 + 1·N(0,1), reference in eval mode (running μ = 0, σ² = 1), rtol 1e-05
check              kind        effect   flagged when  verdict
uniform-gradient   blind spot  0        ≤ 0           ✗ can lie
small-batch        blind spot  6.8e-06  ≤ 0.001       ✗ can lie
gamma-one          blind spot  50%      ≤ 1e-05       ✓ fine
variance-near-one  blind spot  55%      ≤ 1e-05       ✓ fine
eval-reference     mismatch    100%     > 1e-05       ✗ can lie
eps-mismatch       mismatch    0        > 1e-05       ✓ fine

✗ uniform-gradient: The mean loss makes the upstream gradient uniform (g = 1/6 everywhere), and for a uniform g the true training dx is exactly 0, so any backward whose dx also vanishes passes: 7 of the 8 known mistakes do.
    g: uniform (g[0] = 1/6)
    true dx: exactly 0
    mistakes that pass: 7 of 8: γ missing, σ² written where σ belongs (the root dropped), σ written where σ² belongs, a sign flipped in dvar, the ½ of dσ² lost: −1 for −½, 1/(M−1) for 1/M in one place in dx, the path through σ² dropped

✗ small-batch: With N = 2 there are only M = 2 values per feature, so x̂ = ±0.9999752 and the true dx is O(ε): 6.8e-06 of its scale even for a non-uniform g, a residue that ε and rounding decide rather than the formula.
    M: 2
    x̂: -0.9999752, 0.9999752
    true dx: max |dx| = 6.79e-06 of max |γ·g|/√(σ²+ε), with a non-uniform probe g (the setup's g is uniform)
    ε/(σ²+ε): 4.96e-05

✗ eval-reference: The reference runs in eval mode, so its dx = γ·g/√(running σ² + ε) treats μ and σ² as constants, while a training-mode backward differentiates through the batch statistics: the two differ by 100% of the larger gradient even when both are right.
    eval dx = γ·g/√(running σ²+ε): 0.333332 at entry 0
    training dx: exactly 0 at entry 0
    running μ, σ²: 0, 1

cs231n_staged.py vs the truth (eval mode): max |dx difference| = 0.333332; the setup predicts 0.333332 (eval-reference 0.333332).
Nothing is left over: the whole difference comes from the setup, not from a mistake in either backward.

✗ 3 weaknesses, the test can lie: uniform-gradient, small-batch, eval-reference.
"""


def _lines(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"


def test_seed_003_exact_output(monkeypatch):
    monkeypatch.chdir(IMPLS)
    result = run("cs231n_staged.py", *SEED_003)
    assert result.exit_code == 1, result.output
    assert _lines(result.output) == SEED_003_OUTPUT


def test_seed_003_names_each_cause_in_one_sentence():
    result = explain(Setup(n=2, features=3, loss="mean", reference="eval", gamma=("2",)))
    flagged = {f.name: f.sentence for f in result.flagged}
    assert set(flagged) == {"uniform-gradient", "small-batch", "eval-reference"}
    assert "mean loss" in flagged["uniform-gradient"]
    assert "N = 2" in flagged["small-batch"]
    assert "eval mode" in flagged["eval-reference"]
    assert result.exit_code == 1


def test_seed_003_against_pytorch_is_explained_by_the_setup():
    pytest.importorskip("torch")
    setup = Setup(n=2, features=3, loss="mean", reference="eval", gamma=("2",))
    result = compare(setup, str(IMPLS / "cs231n_staged.py"), "torch")
    c = result.comparison
    # the staged training backward gives 0 (uniform g); PyTorch's eval layer γ·g/√(1+ε)
    assert c.observed == pytest.approx(2 / 6 / math.sqrt(1 + 1e-5), rel=1e-12)
    assert c.parts["eval-reference"] == pytest.approx(c.observed, rel=1e-12)
    assert c.explained and c.unexplained <= 1e-12
    assert "PyTorch (eval mode)" in c.against


# -- comparisons -------------------------------------------------------------------------------------
def test_a_wrong_backward_leaves_an_unexplained_difference():
    setup = Setup(n=4, loss="random", gamma=("1.5",))
    result = compare(setup, str(IMPLS / "wrong_nogamma.py"))
    c = result.comparison
    assert c.predicted == 0.0  # same mode, same ε: the setup predicts no difference
    assert not c.explained and c.unexplained > 0.1
    assert result.exit_code == 1


def test_eps_difference_between_two_files_is_explained():
    # the user's staged file with ε = 1e-3, a functional reference file with ε = 1e-5
    setup = Setup(n=4, loss="random", gamma=("1.5",), eps="1e-3", reference_eps="1e-5")
    result = compare(
        setup, str(IMPLS / "cs231n_staged.py"), str(IMPLS / "functional.py"), None, "bn_backward"
    )
    c = result.comparison
    assert c.observed > 1e-4 and c.explained
    assert set(c.parts) == {"eps-mismatch"}


def test_eval_reference_file_through_its_eval_function():
    setup = Setup(n=2, loss="mean", reference="eval", gamma=("2",))
    result = compare(
        setup,
        str(IMPLS / "cs231n_staged.py"),
        str(IMPLS / "functional.py"),
        None,
        "bn_backward_eval",
    )
    assert result.comparison.explained


def test_clean_setup_and_correct_file_exit_0():
    result = run(
        str(IMPLS / "cs231n_staged.py"),
        *["--n", "16", "--c", "2", "--loss", "random", "--gamma", "1.7", "--x-std", "3"],
    )
    assert result.exit_code == 0, result.output
    assert "✓ no weakness found in this setup." in result.output
    assert "Nothing is left over" in result.output or "is rounding" in result.output


def test_json_output():
    result = run(*SEED_003, "--json")
    assert result.exit_code == 1
    payload = json.loads(result.output)
    assert payload["exit_code"] == 1
    flagged = [f["name"] for f in payload["findings"] if f["flagged"]]
    assert flagged == ["uniform-gradient", "small-batch", "eval-reference"]
    uniform = payload["findings"][0]
    assert uniform["effect"] == 0.0 and uniform["evidence"]["true dx"] == "exactly 0"


def test_help_has_an_example():
    result = CliRunner().invoke(main, ["explain", "--help"], env=ENV)
    assert result.exit_code == 0
    assert "bnderive explain --n 2 --loss mean --reference eval" in result.output
    assert "Exit codes" in result.output


def test_readme_good_setup_exits_0():
    assert run("--n", "16", "--loss", "random", "--gamma", "1.7", "--x-std", "3").exit_code == 0


def test_spatial_batch_of_two_is_not_small_when_h_w_add_values():
    # SPATIAL statistics run over N·H·W: N = 2 with H = W = 2 gives M = 8 values per channel
    result = findings(Setup(mode="spatial", n=2, features=2, h=2, w=2, loss="mean", gamma=("2",)))
    assert result["uniform-gradient"].flagged
    assert not result["small-batch"].flagged and result["small-batch"].effect > 0.01


def test_spatial_file_against_pytorch_batchnorm2d():
    pytest.importorskip("torch")
    setup = Setup(mode="spatial", n=2, features=2, h=2, w=3, loss="weights", gamma=("1.5", "-2"))
    result = compare(setup, str(IMPLS / "spatial.py"), "torch")
    assert result.comparison.predicted == 0.0 and result.comparison.explained


def test_x_std_and_x_var_together_are_an_error():
    with pytest.raises(ExplainError, match="not both"):
        Setup(x_std="2", x_var="1")


def test_a_float32_backward_is_said_to_differ_by_rounding(monkeypatch):
    monkeypatch.chdir(IMPLS)
    result = run("float32_inside.py", "--n", "8", "--loss", "random", "--gamma", "1.7")
    assert result.exit_code == 1  # not the setup's alone: the test still fails
    assert "no larger than float32 rounding" in result.output
    wrong = run("wrong_nogamma.py", "--n", "8", "--loss", "random", "--gamma", "1.7")
    assert "no larger than float32 rounding" not in wrong.output
    assert "is not explained by the setup: a mistake" in wrong.output
