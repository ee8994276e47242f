"""check-impl: users' NumPy implementations run in a guarded child, exactly where possible.

The fixtures in tests/impls are written from the mathematics: correct staged, compact,
functional and spatial implementations, wrong ones that each make one known mistake, and
malformed files that must each end in exit code 2 with a message, never a traceback of bnderive.
"""

from __future__ import annotations

import json
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bnderive.cli import main
from bnderive.core.spec import Mode, Spec
from bnderive.usercode.check_impl import check_impl, common_eps, default_shapes, make_case, truth_at
from bnderive.usercode.exact_number import Exact
from bnderive.verify.verdict import Status

IMPLS = Path(__file__).parent / "impls"
ENV = {"COLUMNS": "200", "FORCE_COLOR": None, "TERM": "dumb", "NO_COLOR": "1"}


def run(*args: str):
    # training mode only unless a test asks for eval: these tests are about one mode each
    mode = [] if "--eval" in args else ["--train"]
    return CliRunner().invoke(main, ["check-impl", *args, *mode], env=ENV)


def verdicts(result) -> dict[tuple[str, str], dict]:
    payload = json.loads(result.output)
    return {(v["form"], v["quantity"]): v for v in payload["verdicts"]}


# -- the exact number type ---------------------------------------------------------------------
def test_exact_numbers_carry_numpy_through_mean_var_sqrt():
    x = np.array([Exact(3), Exact(1), Exact(1)], dtype=object)
    var = np.var(x)
    assert str(var) == "8/9"
    assert str(np.sqrt(var + Exact("28/9"))) == "2"
    assert str(np.mean(x) * 0.5) == "5/6"  # a float literal is exact on contact
    assert str(1.0 / 3 * Exact(3)) == "1"  # 1/3 as a double is read as 1/3
    assert str(Exact(9) ** 0.5) == "3"
    assert str(Exact(2) * 1e-5) == "1/50000"


def test_an_irrational_root_or_nan_is_not_made_exact():
    from bnderive.usercode.exact_number import NotExact

    with pytest.raises(NotExact):
        np.sqrt(Exact(2))
    with pytest.raises(NotExact):
        Exact(1) + float("nan")


# -- the inputs ----------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", list(Mode))
def test_cases_have_rational_roots_and_adversarial_values(mode):
    for k, spec in enumerate(default_shapes(mode)):
        case = make_case(spec, k + 1)
        assert case.eps > 0
        assert all(abs(gamma) > 1 for gamma in case.gamma)
        for channel in range(spec.c):
            xs = [case.x[p] for p in spec.positions(channel)]
            gs = [case.g[p] for p in spec.positions(channel)]
            m = len(xs)
            mean = sum(xs) / m
            var = sum((v - mean) ** 2 for v in xs) / m
            assert case.roots[channel] ** 2 == var + case.eps  # √(σ²+ε) rational
            assert len(set(gs)) > 1 and sum(gs) != 0  # a uniform dout proves nothing
            assert abs(mean) >= 15  # a large mean


def test_common_eps_for_two_channels_with_different_variances():
    from random import Random

    eps, (a, b) = common_eps([Fraction(8, 9), Fraction(26, 3)], Random(1))
    assert eps > 0 and a * a == Fraction(8, 9) + eps and b * b == Fraction(26, 3) + eps


def test_truth_matches_the_readme_counterexample():
    # README: x = [3, 1, 1]; g = [3, 1, 2]; γ = -2; ε = 28/9 → dx[0] = -7/9
    spec = Spec(n=3, c=1)
    case = make_case(spec, 1)
    x = np.array([[Fraction(3)], [Fraction(1)], [Fraction(1)]], dtype=object)
    g = np.array([[Fraction(3)], [Fraction(1)], [Fraction(2)]], dtype=object)
    case = type(case)(spec, x, g, (Fraction(-2),), (Fraction(0),), Fraction(28, 9), (Fraction(2),))
    assert truth_at(case)["dx"][0, 0] == Fraction(-7, 9)


# -- correct implementations ---------------------------------------------------------------------
def test_cs231n_staged_and_alt_hold_exactly():
    # declared: bn_param carries the momentum 9/10 exactly, so the running statistics are exact
    result = run(str(IMPLS / "cs231n_staged.py"), "--running", "cs231n", "--json")
    assert result.exit_code == 0, result.output
    found = verdicts(result)
    assert set(found) == {
        ("batchnorm_forward", "out"),
        ("batchnorm_forward", "running_mean"),
        ("batchnorm_forward", "running_var"),
        *(
            (f, q)
            for f in ("batchnorm_backward", "batchnorm_backward_alt")
            for q in ("dx", "dgamma", "dbeta")
        ),
    }
    for v in found.values():
        assert v["status"] == "holds" and v["method"] == "exact"
        assert v["scope"] == "3×1, 4×1, 5×1, 3×2 exact"
    notes = json.loads(result.output)["notes"]
    assert any("0.3333333333333333" in n and "1/3" in n for n in notes)


def test_cs231n_table_output():
    result = run(str(IMPLS / "cs231n_staged.py"))
    assert result.exit_code == 0
    assert (
        "cs231n API, batchnorm_forward, batchnorm_backward, batchnorm_backward_alt" in result.output
    )
    assert result.output.count("✓ holds") == 10  # nine rows and the summary


def test_functional_holds_and_needs_the_function_name():
    result = run(str(IMPLS / "functional.py"), "--function", "bn_backward", "--json")
    assert result.exit_code == 0, result.output
    assert {v["method"] for v in verdicts(result).values()} == {"exact"}
    # without --function every functional backward is checked, each in its own mode
    both = CliRunner().invoke(main, ["check-impl", str(IMPLS / "functional.py"), "--json"], env=ENV)
    assert both.exit_code == 0, both.output
    rows = {(v["form"], v["section"]) for v in json.loads(both.output)["verdicts"]}
    assert rows == {
        ("bn_backward", "per-activation training"),
        ("bn_backward_eval", "per-activation eval"),
    }


def test_functional_eval_mode_holds():
    result = run(str(IMPLS / "functional.py"), "--function", "bn_backward_eval", "--eval", "--json")
    assert result.exit_code == 0, result.output
    assert all(v["method"] == "exact" for v in verdicts(result).values())
    # the eval-mode call passes the running statistics too: a training-only signature is exit 2
    wrong = run(str(IMPLS / "functional.py"), "--function", "bn_backward", "--eval")
    assert wrong.exit_code == 2 and "raised TypeError" in wrong.output


def test_spatial_holds_exactly():
    result = run(str(IMPLS / "spatial.py"), "--mode", "spatial", "--json")
    assert result.exit_code == 0, result.output
    found = verdicts(result)
    assert ("spatial_batchnorm_forward", "out") in found
    assert all(v["scope"] == "2×2×2×2, 3×1×2×2 exact" for v in found.values())


def test_code_that_cannot_run_exactly_is_checked_numerically_and_says_so():
    report = check_impl(IMPLS / "numeric_only.py", training=True)
    assert {v.status for v in report.verdicts} == {Status.HOLDS}
    assert {v.method for v in report.verdicts} == {"numeric"}
    assert all(
        "derived rounding bound of float64" in v.detail and "not a proof" in v.detail
        for v in report.verdicts
    )
    assert any("no exact run" in n and "no callable log method" in n for n in report.notes)


# -- wrong implementations -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("file", "args", "refuted", "method"),
    [
        ("wrong_nogamma.py", [], {("batchnorm_backward", "dx")}, "exact"),
        ("wrong_sign_dvar.py", [], {("batchnorm_backward", "dx")}, "exact"),
        ("wrong_constant_stats.py", [], {("bn_backward", "dx")}, "exact"),
        # 1/(N−1) in the forward: ε is chosen so that its √(σ²+ε) is rational too (one channel)
        (
            "wrong_bessel.py",
            ["--function", "bn_backward"],
            {("bn_backward", "dx"), ("bn_backward", "dgamma")},
            "exact",
        ),
    ],
)
def test_wrong_implementations_are_refuted_in_the_right_quantity(file, args, refuted, method):
    result = run(str(IMPLS / file), *args, "--json")
    assert result.exit_code == 1, result.output
    found = verdicts(result)
    assert {k for k, v in found.items() if v["status"] == "refuted"} == refuted
    for key in refuted:
        cex = found[key]["counterexample"]
        assert found[key]["method"] == method
        assert cex["truth"].split(" ≈ ")[0] != cex["form"]
        assert set(cex["inputs"]) >= {"x", "dout", "γ", "β", "ε"}


def test_refutation_names_the_entry_inputs_and_both_values():
    result = run(str(IMPLS / "wrong_nogamma.py"))
    assert result.exit_code == 1
    assert "✗ batchnorm_backward: dx differs at per-activation 3×1" in result.output
    assert "dx[0, 0]: truth -32/61, yours -16/61" in result.output
    assert "γ = [2]" in result.output and "√(σ²+ε) = [61/16]" in result.output


def test_a_forward_that_takes_eps_is_called_with_eps():
    result = run(str(IMPLS / "graph_walk_eps.py"))
    assert result.exit_code == 0, result.output
    assert re.search(r"batchnorm_forward +out .* holds", result.output)
    assert "it was called as batchnorm_forward(x, gamma, beta, eps)" in result.output
    result = run(str(IMPLS / "graph_walk_eps.py"), "--eval")
    assert result.exit_code == 2
    assert "takes eps, not bn_param, so it has no eval (test) mode" in result.output


def test_a_backward_named_like_cs231n_with_five_arguments_is_functional():
    result = run(str(IMPLS / "functional_named_backward.py"))
    assert result.exit_code == 0, result.output
    assert "functional API, batchnorm_backward" in result.output


def test_float32_results_get_the_float32_tolerance():
    result = run(str(IMPLS / "float32_out.py"), "--json")
    assert result.exit_code == 0, result.output
    for v in json.loads(result.output)["verdicts"]:
        assert v["status"] == "holds" and v["method"] == "numeric"
        assert "within the derived rounding bound of float32" in v["detail"]


def test_float32_inside_float64_out_is_undecided_not_refuted():
    result = run(str(IMPLS / "float32_inside.py"), "--json")
    assert result.exit_code == 3, result.output
    (dx,) = [v for v in json.loads(result.output)["verdicts"] if v["quantity"] == "dx"]
    assert dx["status"] == "undecided"
    assert "by no more than float32 rounding can" in dx["detail"]


def test_float32_tolerance_does_not_hide_a_mistake():
    result = run(str(IMPLS / "wrong_float32_nogamma.py"), "--json")
    assert result.exit_code == 1, result.output
    (dx,) = [v for v in json.loads(result.output)["verdicts"] if v["quantity"] == "dx"]
    assert dx["status"] == "refuted"


@pytest.mark.parametrize("mode", ["per-activation", "spatial"])
def test_a_cs231n_file_with_only_the_alt_backward_and_reshaping_spatial_layers(mode):
    result = run(str(IMPLS / "cs231n_alt_and_spatial.py"), "--mode", mode, "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    backward = (
        "batchnorm_backward_alt" if mode == "per-activation" else "spatial_batchnorm_backward"
    )
    assert backward in payload["functions"]
    assert {v["quantity"] for v in payload["verdicts"] if v["form"] == backward} == {
        "dx", "dgamma", "dbeta"
    }  # fmt: skip


def test_loops_into_np_zeros_buffers_stay_exact():
    result = run(str(IMPLS / "loops_zeros.py"), "--json")
    assert result.exit_code == 0, result.output
    assert {v["method"] for v in json.loads(result.output)["verdicts"]} == {"exact"}
