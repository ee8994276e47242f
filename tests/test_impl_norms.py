"""check-impl --norm layer|instance|group|rms (issue 16 item 1): an implementation of another
member of the family is checked against that family's exact truth (``core.layer``), found by
its CS231n names (layernorm_forward/backward, spatial_groupnorm_forward/backward) or as a
functional backward.  The files in tests/impls_family/ are written by the project in the styles
their headers name; each says what is expected of it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bnderive.cli import main
from bnderive.usercode.layout import ImplementationError
from bnderive.usercode.norm_impl import check_any, check_norm_impl

FAMILY = Path(__file__).parent / "impls_family"


def rows(report) -> dict[tuple[str, str], tuple[str, str]]:
    return {(v.form, v.quantity): (v.status.value, v.method) for v in report.verdicts}


def test_a_cs231n_layernorm_holds_exactly():
    report = check_norm_impl(FAMILY / "cs231n_layernorm.py", "layer")
    assert report.exit_code == 0
    assert rows(report) == {
        ("layernorm_forward", "out"): ("holds", "exact"),
        ("layernorm_backward", "dx"): ("holds", "exact"),
        ("layernorm_backward", "dgamma"): ("holds", "exact"),
        ("layernorm_backward", "dbeta"): ("holds", "exact"),
    }


def test_a_layernorm_backward_that_divides_by_the_batch_size_is_refuted_with_a_witness():
    report = check_norm_impl(FAMILY / "cs231n_layernorm_count_n.py", "layer")
    found = rows(report)
    assert found[("layernorm_backward", "dx")] == ("refuted", "exact")
    assert found[("layernorm_backward", "dgamma")] == ("holds", "exact")
    dx = next(v for v in report.verdicts if v.quantity == "dx")
    c = dx.counterexample
    assert c is not None and c.truth != c.form
    assert report.exit_code == 1


def test_the_same_layernorm_is_not_batchnorm():
    # checked as BatchNorm (the default; the pair is found by its names), a LayerNorm is wrong
    report = check_any(FAMILY / "cs231n_layernorm.py")
    assert rows(report)[("layernorm_forward", "out")][0] == "refuted"


def test_a_cs231n_groupnorm_with_gamma_of_shape_1c11_holds():
    report = check_norm_impl(FAMILY / "cs231n_groupnorm.py", "group", groups=2)
    assert report.exit_code == 0, rows(report)
    assert set(rows(report).values()) == {("holds", "exact")}
    assert any(
        "spatial_groupnorm_forward(x, gamma, beta, groups, param)" in c for c in report.calls
    )


def test_groupnorm_checked_with_the_wrong_groups_is_refuted():
    report = check_norm_impl(FAMILY / "cs231n_groupnorm.py", "group", groups=1)
    # G is passed to the code too, so the code is right for G = 1 as well
    assert report.exit_code == 0
    # ... but as InstanceNorm (one channel per set), its G must be C: not what it gets
    with pytest.raises(ImplementationError, match="no InstanceNorm functions found"):
        check_norm_impl(FAMILY / "cs231n_groupnorm.py", "instance")


def test_rmsnorm_functional_and_the_weight_forgotten():
    assert check_norm_impl(FAMILY / "rmsnorm_functional.py", "rms").exit_code == 0
    report = check_norm_impl(FAMILY / "rmsnorm_weight_forgotten.py", "rms")
    assert rows(report) == {
        ("rmsnorm_backward", "dx"): ("refuted", "exact"),
        ("rmsnorm_backward", "dgamma"): ("holds", "exact"),
    }


def test_the_cli_and_its_options():
    runner = CliRunner()
    result = runner.invoke(
        main,
        ["check-impl", str(FAMILY / "cs231n_groupnorm.py"), "--norm", "group", "--groups", "2"],
    )
    assert result.exit_code == 0, result.output
    assert "checked as GroupNorm with G = 2" in result.output
    result = runner.invoke(
        main, ["check-impl", str(FAMILY / "cs231n_layernorm_count_n.py"), "--norm", "layer"]
    )
    assert result.exit_code == 1 and "dx differs from LayerNorm's truth" in result.output
    bad = [
        (["--norm", "group"], "needs the number of groups"),
        (["--norm", "layer", "--groups", "2"], "--groups belongs to --norm group"),
        (["--norm", "layer", "--eval"], "belong to BatchNorm's check"),
        (["--groups", "2"], "--groups belongs to --norm group"),
    ]
    for options, message in bad:
        result = runner.invoke(main, ["check-impl", str(FAMILY / "cs231n_layernorm.py"), *options])
        assert result.exit_code == 2 and message in result.output, (options, result.output)


def test_a_folder_of_layernorm_submissions():
    result = CliRunner().invoke(
        main,
        ["check-impl", str(FAMILY / "cs231n_layernorm.py"),
         str(FAMILY / "cs231n_layernorm_count_n.py"), "--norm", "layer", "--json"],
    )  # fmt: skip
    payload = json.loads(result.output)
    assert [f["status"] for f in payload["files"]] == ["holds", "refuted"]
    assert result.exit_code == 1


# -- naming the family's known mistakes (issue 16 item 1 with issue 13 item 4) ----------------------
def named(report, form: str, quantity: str) -> list[str]:
    return report.diagnoses.get((form, quantity), [])


def test_the_weight_forgotten_in_rmsnorms_reduction_is_named_with_its_source():
    report = check_norm_impl(FAMILY / "rmsnorm_weight_forgotten.py", "rms")
    lines = named(report, "rmsnorm_backward", "dx")
    assert lines[0].startswith(
        "known mistake: γ missing (gamma-missing); your dx equals the result"
    )
    assert "exactly (as rmsnorm-rstd/gamma-missing#correction-sum)" in lines[0]
    assert any(
        line.startswith("  what is wrong: the weight is applied in the direct") for line in lines
    )
    assert any(line.startswith("  what is right: multiply by γ") for line in lines)
    assert any("seen in: karpathy/llm.c pull request #763" in line for line in lines)
    assert set(report.diagnoses) == {("rmsnorm_backward", "dx")}  # dγ holds: nothing to name


def test_the_weight_forgotten_everywhere_is_the_other_rmsnorm_mutant(tmp_path):
    text = (FAMILY / "rmsnorm_weight_forgotten.py").read_text(encoding="utf-8")
    assert "dxhat = dout * gamma" in text
    path = tmp_path / "rms_no_weight.py"
    path.write_text(text.replace("dxhat = dout * gamma", "dxhat = dout"), encoding="utf-8")
    lines = named(check_norm_impl(path, "rms"), "rmsnorm_backward", "dx")
    assert "(as rmsnorm-rstd/gamma-missing)" in lines[0]


def test_batchnorms_compact_form_carried_over_to_layernorm_is_gamma_outside_sum():
    report = check_norm_impl(FAMILY / "layernorm_compact_gamma_outside.py", "layer")
    assert rows(report) == {
        ("layernorm_forward", "out"): ("holds", "exact"),
        ("layernorm_backward", "dx"): ("refuted", "exact"),
        ("layernorm_backward", "dgamma"): ("holds", "exact"),
        ("layernorm_backward", "dbeta"): ("holds", "exact"),
    }
    lines = named(report, "layernorm_backward", "dx")
    assert lines[0].startswith(
        "known mistake: γ taken out of the sums over the set (gamma-outside-sum); your dx equals "
        "the result with it, exactly"
    )
    assert "  what is right: keep γ inside every sum over the set" in "\n".join(lines)
    assert any(line.startswith("  seen in: ") for line in lines)


def test_gamma_outside_the_sums_of_a_groupnorm_is_named_with_layernorms_mutants(tmp_path):
    # GroupNorm's per-set mathematics is LayerNorm's (γ per element of a set): the same mutants
    text = (FAMILY / "cs231n_groupnorm.py").read_text(encoding="utf-8")
    assert "dxhat = (dout * gamma).reshape" in text
    wrong = text.replace("dxhat = (dout * gamma).reshape", "dxhat = dout.reshape").replace(
        "return dx.reshape(N, C, H, W), dgamma", "return gamma * dx.reshape(N, C, H, W), dgamma"
    )
    path = tmp_path / "groupnorm_gamma_outside.py"
    path.write_text(wrong, encoding="utf-8")
    report = check_norm_impl(path, "group", groups=2)
    assert rows(report)[("spatial_groupnorm_backward", "dx")] == ("refuted", "exact")
    lines = named(report, "spatial_groupnorm_backward", "dx")
    assert "(gamma-outside-sum)" in lines[0]


def test_a_mistake_that_matches_no_mutant_stays_refuted_without_a_name():
    # the mean of dx̂ divided by the batch size N: no mutant of LayerNorm's mathematics has it
    report = check_norm_impl(FAMILY / "cs231n_layernorm_count_n.py", "layer")
    assert rows(report)[("layernorm_backward", "dx")] == ("refuted", "exact")
    assert report.diagnoses == {}
    result = CliRunner().invoke(
        main, ["check-impl", str(FAMILY / "cs231n_layernorm_count_n.py"), "--norm", "layer"]
    )
    assert result.exit_code == 1 and "known mistake" not in result.output


def test_the_cli_prints_the_name_and_json_carries_it():
    path = str(FAMILY / "layernorm_compact_gamma_outside.py")
    result = CliRunner().invoke(main, ["check-impl", path, "--norm", "layer"])
    assert result.exit_code == 1
    assert (
        "known mistake: γ taken out of the sums over the set (gamma-outside-sum)" in result.output
    )
    payload = json.loads(
        CliRunner().invoke(main, ["check-impl", path, "--norm", "layer", "--json"]).output
    )
    text = json.dumps(payload, ensure_ascii=False)
    assert "gamma-outside-sum" in text


def test_rmsnorm_with_eps_outside_the_root_runs_exactly_and_is_named():
    # OLMo #281's x / (rms_x + eps): the inputs make √mean(x²) rational too, so the code runs on
    # exact numbers (before, every row was left undecided) and is refuted and named exactly
    report = check_norm_impl(FAMILY / "rmsnorm_eps_outside_root.py", "rms")
    assert rows(report) == {
        ("rmsnorm_forward", "out"): ("refuted", "exact"),
        ("rmsnorm_backward", "dx"): ("refuted", "exact"),
        ("rmsnorm_backward", "dgamma"): ("refuted", "exact"),
    }
    for quantity in ("dx", "dgamma"):
        lines = named(report, "rmsnorm_backward", quantity)
        assert lines[0].startswith(
            f"known mistake: ε outside the root (eps-outside); your {quantity}"
        )
        assert any("seen in: allenai/OLMo issue #281" in line for line in lines)
    assert named(report, "rmsnorm_forward", "out") == [
        "known mistake: ε outside the root (σ + ε) (eps-outside); your out equals the forward "
        "with it, exactly, at every shape where the code ran exactly (3 of 3)"
    ]


@pytest.mark.parametrize(
    ("old", "new", "slip"),
    [
        ("out = gamma * xhat + beta", "out = xhat + beta", "affine-no_gamma"),
        ("std = np.sqrt(var + eps)", "std = np.sqrt(var)", "eps-none"),
    ],
)
def test_a_layernorm_forward_slip_is_named(tmp_path, old, new, slip):
    text = (FAMILY / "cs231n_layernorm.py").read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "layernorm_slip.py"
    path.write_text(text.replace(old, new), encoding="utf-8")
    report = check_norm_impl(path, "layer")
    assert rows(report)[("layernorm_forward", "out")] == ("refuted", "exact")
    lines = named(report, "layernorm_forward", "out")
    assert len(lines) == 1 and f"({slip}); your out equals the forward with it, exactly" in lines[0]


def test_exact_points_with_the_sets_own_root_rational_too():
    from fractions import Fraction

    from bnderive.core.layer import _set_variance, _square, exact_point
    from bnderive.core.spec import Mode, Norm, Spec

    for spec in (
        Spec(Mode.PER_ACTIVATION, n=3, c=4, norm=Norm.RMS),
        Spec(Mode.PER_ACTIVATION, n=2, c=5, norm=Norm.LAYER),
        Spec(Mode.SPATIAL, n=2, c=4, h=1, w=2, norm=Norm.GROUP, groups=2),
    ):
        p = exact_point(spec, 5, root_too=True)
        for s in range(spec.sets):
            values = [int(p["x"][q]) for q in spec.positions(s)]
            var = _set_variance(spec, values)
            assert _square(var) and _square(var + p["eps"]), (spec, s, var)
    # three centred integers never have a rational √σ² (a² + ab + b² = 6u² has no solution):
    # the point is still exact for √(σ²+ε)
    spec = Spec(Mode.PER_ACTIVATION, n=4, c=3, norm=Norm.LAYER)
    p = exact_point(spec, 5, root_too=True)
    assert p["r"] ** 2 == p["eps"] + _set_variance(
        spec, [int(p["x"][q]) for q in spec.positions(0)]
    )
    assert isinstance(p["r"], Fraction)


def test_a_folder_of_family_submissions_names_the_mistake_per_file(tmp_path):
    files = [FAMILY / "layernorm_compact_gamma_outside.py", FAMILY / "cs231n_layernorm_count_n.py"]
    out = tmp_path / "grades.csv"
    result = CliRunner().invoke(
        main, ["check-impl", *map(str, files), "--norm", "layer", "--csv", str(out)]
    )
    assert result.exit_code == 1, result.output
    text = out.read_text(encoding="utf-8")
    first, second = (line for line in text.splitlines()[1:] if line)
    assert "γ taken out of the sums over the set (gamma-outside-sum)" in first
    assert "gamma-outside-sum" not in second and "known" not in second


def test_an_instancenorm_is_named_with_batchnorms_mutants():
    report = check_norm_impl(FAMILY / "instancenorm_gamma_missing.py", "instance")
    assert rows(report) == {
        ("instancenorm_forward", "out"): ("holds", "exact"),
        ("instancenorm_backward", "dx"): ("refuted", "exact"),
        ("instancenorm_backward", "dgamma"): ("holds", "exact"),
        ("instancenorm_backward", "dbeta"): ("holds", "exact"),
    }
    lines = named(report, "instancenorm_backward", "dx")
    assert lines[0].startswith("known mistake: γ missing (gamma-missing); your dx equals")


def test_a_row_without_a_result_at_some_shape_is_never_holds():
    """Exact equality at 2 of 3 shapes and nothing at the third (a result that went missing) is
    undecided, not "holds": a verdict covers only what was compared."""
    from bnderive.core.spec import Mode, Norm
    from bnderive.usercode.norm_impl import _Row, _verdict, family_specs
    from bnderive.verify.verdict import Status

    specs = family_specs(Norm.LAYER, Mode.PER_ACTIVATION, 1)
    assert len(specs) == 3
    seen_everywhere = _Row("layernorm_backward", "dx", exact=3)
    assert _verdict(seen_everywhere, specs).status is Status.HOLDS
    seen_twice = _Row("layernorm_backward", "dx", exact=2)
    verdict = _verdict(seen_twice, specs)
    assert verdict.status is Status.UNDECIDED
    assert "no result to compare at 1 of 3 shapes" in verdict.detail
