"""--norm, --groups and --composite on the command line: output and exit codes (CliRunner)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from bnderive.cli import main

ENV = {"COLUMNS": "120", "FORCE_COLOR": None, "TERM": "dumb", "NO_COLOR": "1"}


def run(*args: str):
    return CliRunner().invoke(main, list(args), env=ENV)


LN_WRONG = """name = "ln-gamma-outside"
[[equations]]
defines = "dx[i]"
expr = "gamma[i]/sqrt(var + eps)*(g[i] - (sum(g[k], k) + xhat[i]*sum(g[k]*xhat[k], k))/M)"
"""


# -- check -------------------------------------------------------------------------------------------
def test_check_norm_layer_proves_the_layernorm_forms():
    result = run("check", "--norm", "layer", "--no-timing")
    assert result.exit_code == 0, result.output
    assert "3 form(s) (layernorm-levykramer, layernorm-llmc, layernorm-pytorch)" in result.output
    assert "refuted" not in result.output


def test_check_norm_group_with_groups():
    result = run("check", "--norm", "group", "--groups", "2", "--method", "exact", "--no-timing")
    assert result.exit_code == 0, result.output
    assert "groupnorm-pytorch" in result.output and "✓ holds" in result.output


def test_check_norm_rms_and_instance():
    for norm, name in (("rms", "rmsnorm-paper"), ("instance", "instancenorm-pytorch")):
        result = run("check", "--norm", norm, "--method", "general", "--no-timing")
        assert result.exit_code == 0, result.output
        assert name in result.output


def test_a_layernorm_form_checked_as_groupnorm():
    result = run(
        "check",
        "layernorm-pytorch",
        "--norm",
        "group",
        "--groups",
        "2",
        "--method",
        "exact",
        "--no-timing",
    )
    assert result.exit_code == 0, result.output
    assert "spatial" in result.output and "per-activation" not in result.output


def test_a_form_of_another_family_is_a_usage_error():
    result = run("check", "layernorm-pytorch", "--norm", "batch")
    assert result.exit_code == 2
    assert "LayerNorm" in result.output and "--norm layer" in result.output


def test_instance_norm_has_no_per_activation_layout():
    result = run("check", "--norm", "instance", "--mode", "per-activation")
    assert result.exit_code == 2
    assert "(N, C, H, W)" in result.output


def test_groups_needs_group_norm():
    result = run("check", "--groups", "2")
    assert result.exit_code == 2
    assert "--norm group" in result.output


def test_a_user_form_is_read_as_the_family_norm_gives(tmp_path: Path):
    path = tmp_path / "mine.toml"
    path.write_text(LN_WRONG, encoding="utf-8")
    result = run(
        "check", "--form", str(path), "--norm", "layer", "--method", "exact", "--no-timing"
    )
    assert result.exit_code == 1, result.output
    assert "counterexample: layer 1×3" in result.output and "sample 0" in result.output
    assert "γ = [" in result.output  # one γ per element
    # γ_i outside the sums: the family corpus names the mistake (bnderive/read/corpus)
    assert "known mistake: γ taken out of the sums over the set (gamma-outside-sum)" in (
        result.output
    )
    # without --norm the same file is a BatchNorm form, where gamma[i] has no meaning
    result = run("check", "--form", str(path), "--no-timing")
    assert result.exit_code == 2
    assert "gamma" in result.output


# -- derive ------------------------------------------------------------------------------------------
def test_derive_layernorm():
    result = run("derive", "--norm", "layer", "--n", "2", "--d", "3")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("LayerNorm, layer 2×3 (M=3; biased var, ε inside √)")
    assert "∂L/∂γᵢ = ∂L/∂yᵢ·x̂ᵢ" in result.output
    assert "yᵢ = βᵢ + γᵢ·x̂ᵢ" in result.output
    assert "→ β₀ + γ₀·(x₀₀ - μ₀)/√(ε + σ²₀)" in result.output


def test_derive_rmsnorm_has_no_mean():
    result = run("derive", "--norm", "rms", "--general")
    assert result.exit_code == 0, result.output
    assert "ms = Σₖ((xₖ)²)/M" in result.output
    assert "μ" not in result.output


def test_derive_groupnorm_and_its_errors():
    result = run("derive", "--norm", "group", "--groups", "2", "--n", "1")
    assert result.exit_code == 0, result.output
    assert "GroupNorm, group 1×4×2×2, G=2 (M=8" in result.output
    bad = run("derive", "--norm", "group", "--groups", "3", "--c", "4")
    assert bad.exit_code == 2 and "divide" in bad.output
    assert run("derive", "--groups", "2").exit_code == 2
    assert run("derive", "--norm", "layer", "--eval").exit_code == 2


def test_derive_composite_linear_bn_relu():
    result = run("derive", "--composite", "linear-bn-relu", "--n", "3", "--d", "2")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "∂L/∂Wₚⱼ = Σₖ(Xₖₚ·∂L/∂hₖⱼ)" in out
    assert "Σ_k ∂L/∂h_k = 0: the gradient of the bias is exactly zero   ✓ holds for every M" in out
    assert out.count("✓ holds for every M") == 4 + 3  # Thorey's four lines, three bias facts
    assert "∂L/∂b = [0, 0]" in out
    assert run("derive", "--composite", "linear-bn-relu", "--eval").exit_code == 2


def test_shapes_are_read_in_the_forms_family():
    # a LayerNorm form's 2,4 is two samples of 4 features (M = 4), not BatchNorm's (M = 2)
    result = run("check", "layernorm-pytorch", "--method", "exact", "--shape", "2,4", "--no-timing")
    assert result.exit_code == 0, result.output
    assert "exact: per-activation M = 4" in result.output


# -- the family's known mistakes (bnderive/read/corpus/mistakes.toml) -------------------------------
def test_groupnorm_is_named_by_the_layernorm_mutant(tmp_path: Path):
    # GroupNorm's per-set mathematics is LayerNorm's (γ per element): its mutants name the mistake
    path = tmp_path / "gn.toml"
    path.write_text(
        LN_WRONG.replace('name = "ln-gamma-outside"', 'name = "gn"\nmodes = ["spatial"]'),
        encoding="utf-8",
    )
    result = run(
        "check", "--form", str(path), "--norm", "group", "--groups", "2", "--method", "exact",
        "--no-timing",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "counterexample: group" in result.output
    assert "(as layernorm-levykramer/gamma-outside-sum)" in result.output


def test_rmsnorm_mistakes_are_named_and_listed():
    result = run("check", "rmsnorm-rstd/gamma-missing", "--method", "exact", "--no-timing")
    assert result.exit_code == 1, result.output
    assert "known mistake: γ missing (gamma-missing); your dxhat[i] equals" in result.output
    paper = run("check", "rmsnorm-paper/gamma-outside-sum", "--method", "exact", "--no-timing")
    # what the line is off by, in RMSNorm's own terms (no μ, σ²: RMSNorm has neither); at the
    # counterexample x = [3, 1, 1], g = [3, 1, 2], γ = [4, -5, 3], ms + ε = 9 it is
    # −(37 − 4·12)·3/(3·27) = 11/27 = truth 71/27 − form 20/9
    # (SymPy orders the two terms as it likes: their parts are checked, not the order)
    (line,) = [t for t in paper.output.splitlines() if "truth − form =" in t]
    assert "μ" not in line and "σ²" not in line
    for part in ("Σₖ(gₖ·γₖ·xₖ)", "γᵢ·Σₖ(gₖ·xₖ)", ")·xᵢ/(M·(ε + ms)³ᐟ²)"):
        assert part in line, line
    assert "dx[1] = ∂L/∂x[0, 0]: truth 71/27, form 20/9" in paper.output
    result = run("check", "rmsnorm-paper/eps-outside", "--method", "exact", "--no-timing")
    assert result.exit_code == 1, result.output
    assert "known mistake: ε outside the root (eps-outside)" in result.output
    listed = run("mutants", "gamma-outside-sum")
    assert listed.exit_code == 0
    for ident in (
        "rmsnorm-paper/gamma-outside-sum",
        "layernorm-levykramer/gamma-outside-sum",
        "layernorm-llmc/gamma-outside-sum",
    ):
        assert ident in listed.output
    assert "chrisjob1021/transformer-examples" in listed.output
    # the right forms of the family name nothing
    right = run("check", "--norm", "rms", "--method", "exact", "--no-timing")
    assert right.exit_code == 0 and "known mistake" not in right.output


def test_derive_composite_exits_3_when_a_chain_line_is_not_proved(monkeypatch):
    # Thorey's chain with the path through σ² dropped (a mutant of the corpus): the every-M
    # engine does not prove its lines, and the command must not exit 0 after printing them
    import bnderive.verify.chain as chain

    monkeypatch.setattr(chain, "CHAIN", "kronecker-chain/variance-path-dropped")
    for extra in ((), ("--latex",)):
        result = run("derive", "--composite", "linear-bn-relu", *extra)
        assert result.exit_code == 3, result.output
        assert "of kronecker-chain/variance-path-dropped not proved for every M" in result.output
    assert "? undecided for every M" in run("derive", "--composite", "linear-bn-relu").output


def test_derive_composite_exits_1_when_a_chain_line_is_refuted(monkeypatch):
    import dataclasses

    import bnderive.verify.chain as chain
    from bnderive.verify.verdict import Status

    real = chain.prove_chain

    def refuted() -> chain.ChainProof:
        proof = real()
        first = min(proof.verdicts)
        verdicts = dict(proof.verdicts)
        verdicts[first] = dataclasses.replace(verdicts[first], status=Status.REFUTED)
        return chain.ChainProof(proof.form, verdicts)

    monkeypatch.setattr(chain, "prove_chain", refuted)
    result = run("derive", "--composite", "linear-bn-relu")
    assert result.exit_code == 1, result.output
    assert "line(s) 1 of kronecker-chain refuted" in result.output


def test_derive_composite_exits_3_when_db_is_not_proved_zero(monkeypatch):
    # the fact dL/db ≡ 0 computed from a sum that is not zero: the eval-mode truth's
    import bnderive.verify.composite as composite

    real = composite.bias_gradient
    monkeypatch.setattr(composite, "bias_gradient", lambda training=True: real(training=False))
    for extra in ((), ("--latex",)):
        result = run("derive", "--composite", "linear-bn-relu", *extra)
        assert result.exit_code == 3, result.output
        assert "the fact(s) bias-gradient about b not proved for every M" in result.output
