"""The randomized method may say "holds" only with a probability bound that is true.

Its "holds" is a Schwartz–Zippel argument: a nonzero difference of degree ≤ d vanishes at a point
drawn uniformly from S^n with probability ≤ d/|S|.  Three things must then be true, and each
test here feeds a wrong form to the place where one of them failed:

* the polynomial the points are drawn for is the difference itself: in F_p it is the difference
  *reduced mod p*, which is zero when every coefficient is a multiple of p (dβ = (p+1)·Σg agrees
  with Σg at every point of F_p), so agreement in F_p alone proves nothing;
* the points are random *for the form*: drawn from a fixed seed, they are known before the form
  is written, and a wrong form can be made to vanish at them;
* the bound is computed for the sets the points are really drawn from (r = √(σ²+ε) comes from a
  range of SPREAD + 1 values above √σ², not from 2·SPREAD + 1), and a degree that is not small
  against the set proves nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import bnderive.verify.randomized as randomized
from bnderive.cli import main
from bnderive.core.finite_field import P
from bnderive.core.points import modular_point_env, random_point
from bnderive.core.spec import Mode
from bnderive.read.forms import load_form
from bnderive.verify.randomized import SPREAD, large_spec, random_check, random_rational_check
from bnderive.verify.verdict import Status

CAFFE = "gamma/sqrt(var+eps)*(g[i] - sum(g[k],k)/M - xhat[i]*sum(g[k]*xhat[k],k)/M)"


def form_of(tmp_path: Path, defines: str, expr: str, name: str = "f"):
    path = tmp_path / f"{name}.toml"
    path.write_text(f"name='{name}'\n[[equations]]\ndefines='{defines}'\nexpr='{expr}'\n", "utf-8")
    return load_form(path)


# -- a difference that is a multiple of p ---------------------------------------------------------
@pytest.mark.parametrize("mode", [Mode.PER_ACTIVATION, Mode.SPATIAL])
def test_a_line_off_by_a_multiple_of_p_is_refuted(tmp_path, mode):
    # (p + 1)·Σg − Σg = p·Σg: nonzero, but zero mod p at every point of F_p.
    form = form_of(tmp_path, "dbeta", f"{P + 1}*sum(g[k], k)")
    (verdict,) = random_check(form, large_spec(mode, 64), trials=2)
    assert verdict.status is Status.REFUTED
    assert verdict.counterexample is not None
    assert verdict.counterexample.truth != verdict.counterexample.form


def test_a_dx_off_by_a_multiple_of_p_is_refuted(tmp_path):
    form = form_of(tmp_path, "dx[i]", f"{CAFFE} + {P}*gamma*g[i]")
    (verdict,) = random_check(form, large_spec(Mode.PER_ACTIVATION, 64), trials=2)
    assert verdict.status is Status.REFUTED


def test_check_method_random_exits_1_on_a_multiple_of_p(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(f"name='p'\n[[equations]]\ndefines='dbeta'\nexpr='{P + 1}*sum(g[k], k)'\n")
    result = CliRunner().invoke(
        main, ["check", "--form", str(path), "--method", "random", "--m", "64", "--jobs", "1"]
    )
    assert result.exit_code == 1, result.output
    assert "refuted" in result.output


# -- points known in advance ------------------------------------------------------------------------
def _gamma_values(spec, seed: int, trials: int) -> tuple[list[int], list[int]]:
    """γ at the points a fixed ``seed`` used to give: in F_p and in rational arithmetic."""
    field = [modular_point_env(spec, seed * 7919 + d).env.scalars["gamma"] for d in range(1, 8)]
    rational = [random_point(spec, seed * 7919 + d, SPREAD)["gamma"] for d in range(1, 8)]
    return field, rational


@pytest.mark.parametrize("seed", [0, 1])
def test_a_form_made_to_vanish_at_the_seeded_points_is_refuted(tmp_path, seed):
    # dβ = Σg + Π(γ − a): zero at every point whose γ is one of the a, a polynomial of degree 14
    # that is not zero.  With points fixed by a seed alone, this form held with a bound of
    # ~1e-24; the points must depend on the form.
    spec = large_spec(Mode.PER_ACTIVATION, 64)
    field, rational = _gamma_values(spec, seed, 3)
    factors = "*".join(f"(gamma - {a})" for a in (*field, *rational))
    form = form_of(tmp_path, "dbeta", f"sum(g[k], k) + {factors}")
    (verdict,) = random_check(form, spec, trials=3)
    assert verdict.status is Status.REFUTED
    # ... and so must `check`, whose points are drawn from every form it checks.
    args = ["check", "--form", str(tmp_path / "f.toml"), "--method", "random", "--m", "64"]
    result = CliRunner().invoke(main, [*args, "--mode", "per-activation", "--jobs", "1"])
    assert result.exit_code == 1, result.output


def test_the_points_depend_on_the_form_and_are_reproducible(tmp_path):
    a = form_of(tmp_path, "dbeta", "sum(g[k], k)", "a")
    b = form_of(tmp_path, "dbeta", "sum(g[k], k) + 0*gamma", "b")
    assert randomized.form_seed([a]) == randomized.form_seed([a])
    assert randomized.form_seed([a]) != randomized.form_seed([b])
    assert randomized.form_seed([a], 0) != randomized.form_seed([a], 1)


# -- the bound ----------------------------------------------------------------------------------------
def test_the_bound_covers_the_smallest_set_a_variable_is_drawn_from(tmp_path):
    # r = √(σ²+ε) is drawn from SPREAD + 1 integers: a difference of degree d in r alone
    # vanishes there with probability up to d/(SPREAD + 1), which the bound must not undercut.
    form = form_of(tmp_path, "dx[i]", CAFFE)
    for check in (random_check, random_rational_check):
        (verdict,) = check(form, large_spec(Mode.PER_ACTIVATION, 64), trials=2)
        assert verdict.status is Status.HOLDS
        degree = int(verdict.detail.split("degree ≤ ")[1].split()[0])
        assert verdict.bound >= (degree / (SPREAD + 1)) ** 2


def test_a_degree_not_small_against_the_sample_proves_nothing(tmp_path, monkeypatch):
    # Were d ≥ |S|, a nonzero difference could vanish on all of S: "holds" with a bound of 1
    # is no proof.
    monkeypatch.setattr(randomized, "_degrees", lambda form, truth: {1: SPREAD})
    form = form_of(tmp_path, "dx[i]", CAFFE)
    for check in (random_check, random_rational_check):
        (verdict,) = check(form, large_spec(Mode.PER_ACTIVATION, 64), trials=2)
        assert verdict.status is Status.UNDECIDED, verdict.detail
        assert "degree" in verdict.detail


#: Σ_k Σ_p over two summation indices in a per-element line: at M = 4096 a summand over i, k and
#: p would be 4096³ entries (it ran for minutes and took gigabytes); the plan evaluates such a
#: form at a smaller M, and says so in the verdict's scope.
DOUBLE_SUM = r"""
$$\mu = \frac{1}{N}\sum_{i=1}^N x_i, \quad \sigma^2 = \frac{1}{N}\sum_{i=1}^N (x_i-\mu)^2, \quad \hat{x}_i = \frac{x_i-\mu}{\sqrt{\sigma^2+\epsilon}}, \quad y_i = \gamma\hat{x}_i + \beta$$

$$\frac{\partial L}{\partial x_i} = \frac{\gamma}{\sqrt{\sigma^2+\epsilon}} \sum_k \sum_p \frac{\partial L}{\partial y_k} \left(\delta_{kp} - \frac{\hat{x}_k \hat{x}_p}{N}\right)\left(\delta_{ip} - \frac{1}{N}\right)$$
"""


@pytest.mark.parametrize(("wrong", "status"), [(False, Status.HOLDS), (True, Status.REFUTED)])
def test_a_double_sum_is_checked_at_a_smaller_m_and_says_so(tmp_path, wrong, status):
    import bnderive

    text = DOUBLE_SUM.replace(r"\frac{1}{N}\right)", r"\frac{2}{N}\right)") if wrong else DOUBLE_SUM
    path = tmp_path / "post.md"
    path.write_text(text, encoding="utf-8")
    result = bnderive.check(str(path), methods=["random"], modes=["per-activation"])
    (dx,) = [v for v in result.verdicts if v.quantity == "dx[i]"]
    assert dx.status is status, dx
    assert dx.scope == "M = 256 randomized", dx.scope


#: A line whose summand is over five indices that no split separates (Σ_k Σ_p Σ_q Σ_r Σ_s, zero
#: by the symmetry k ↔ p): at M = 16, the smallest M the randomized method tries, one reduction
#: in rational arithmetic is still 16⁵ entries, beyond its budget.
FIVE_SUMS = r"""
$$ \frac{\partial L}{\partial \beta} = \sum_i g_i + \sum_k \sum_p \sum_q \sum_r \sum_s (x_k - x_p)(x_k + x_p + x_q + x_r + x_s)^2 $$

$$ \frac{\partial L}{\partial \gamma} = \sum_i g_i \hat{x}_i $$

$$ \frac{\partial L}{\partial \gamma} = \sum_i g_i x_i $$
"""


def test_a_line_too_large_even_at_the_smallest_m_is_left_undecided(tmp_path):
    """The randomized method leaves that line not decided, with the reason, and decides the
    others: the run goes on (it stopped with an error, every other line of every form unsaid);
    the summary counts it and the exit code is 3."""
    import bnderive

    path = tmp_path / "post.md"
    path.write_text(FIVE_SUMS, encoding="utf-8")
    result = bnderive.check(str(path), methods=["random"], modes=["per-activation"])
    by_line = {v.source_line: v for v in result.verdicts}
    assert by_line[2].status is Status.UNDECIDED, by_line[2]
    assert "not decided: too large at M = 16" in by_line[2].detail, by_line[2].detail
    assert by_line[4].status is Status.HOLDS and by_line[6].status is Status.REFUTED
    out = CliRunner().invoke(
        main, ["check", str(path), "--method", "random", "--mode", "per-activation"]
    )
    assert out.exit_code == 1, out.output  # the wrong line is still refuted
    assert "1 refuted" in out.output and "1 undecided" in out.output, out.output
    path.write_text(FIVE_SUMS.rsplit("$$ \\frac", 1)[0], encoding="utf-8")
    out = CliRunner().invoke(
        main, ["check", str(path), "--method", "random", "--mode", "per-activation"]
    )
    assert out.exit_code == 3 and "too large at M = 16" in out.output, out.output


def test_the_entry_budget_stops_a_reduction_over_too_many_indices():
    from bnderive.core import notation as N
    from bnderive.core.evaluate import TooLarge, entry_budget, evaluate

    expr = N.parse("sum(x[k]/(x[i]**2 + x[k]**2 + 1), k)")  # no split: a summand over i and k
    (i,) = [s for s in expr.free_symbols if s.name == "i"]
    spec = large_spec(Mode.PER_ACTIVATION, 64)
    env = modular_point_env(spec, 1).env
    evaluate(expr, env, i)  # no budget: evaluated
    with entry_budget(64 * 63), pytest.raises(TooLarge):
        evaluate(expr, env, i)
    with entry_budget(64 * 64):
        evaluate(expr, env, i)  # within the budget
