"""The mutation corpus (DESIGN.md §5, issue 5): every mutant refuted and named, every rewrite holds.

Driven by the catalogue in ``bnderive/read/corpus/`` (fixtures ``mutant`` and ``rewrite`` in
conftest.py): adding an entry there adds its tests here.
"""

from __future__ import annotations

import copy

import pytest
import sympy as sp
from click.testing import CliRunner

from bnderive import FormError, Mode, Spec, Status
from bnderive.cli import main
from bnderive.read.corpus import _variant, corpus
from bnderive.read.derivations import builtin_form_data
from bnderive.verify.diagnose import Value, diagnose_line, localise, same
from bnderive.verify.every_m import general_check
from bnderive.verify.exact import check_exact_mode
from bnderive.verify.randomized import large_spec, random_check
from bnderive.verify.verdict import overall

# SPATIAL exact checks at one small shape: the index notation is the same in both modes, and an
# ε-outside form's radicals grow fast with M (the PER_ACTIVATION plan goes to N = 6).
SPATIAL_SHAPE = Spec(Mode.SPATIAL, n=2, c=1, h=1, w=2)


def exact(form, mode: Mode):
    return check_exact_mode(form, mode, shapes=[SPATIAL_SHAPE] if mode is Mode.SPATIAL else ())


def lines(verdicts, status: Status) -> set[int]:
    return {v.equation for v in verdicts if v.status is status and v.follows is None}


def test_the_corpus_is_large_enough_and_every_mistake_is_used():
    book = corpus()
    assert len(book.mutants) >= 40
    assert len(book.rewrites) >= 15
    used = {m.mistake.name for m in book.mutants}
    # only code makes these: a layout mistake, and x̂ from the unbiased variance (÷(M−1)) under
    # BatchNorm's 1/M backward (a form's lines read the layer's own statistics)
    impl_only = {"per-activation-axes", "unbiased-statistics"}
    assert {m.name for m in book.mistakes} - used <= impl_only
    forms = {m.base for m in book.mutants}
    assert {"staged", "compact", "kronecker", "eval", "kronecker-chain"} <= forms
    # the family's: LayerNorm and RMSNorm forms, and PyTorch's GroupNorm and InstanceNorm forms
    # (their quizzes draw from these: issue 16)
    assert {"layernorm-levykramer", "layernorm-llmc", "rmsnorm-paper", "rmsnorm-rstd"} <= forms
    assert {"groupnorm-pytorch", "instancenorm-pytorch"} <= forms
    assert len({m.id for m in book.mutants}) == len(book.mutants)


def agrees_with_the_oracle(verdicts, oracle: dict[int, bool | None]) -> None:
    """Every line bnderive holds is right by the independent oracle (tests/oracle.py), every
    line it refutes is wrong there: the verdicts are checked by code that shares none of
    bnderive's."""
    for v in verdicts:
        if v.follows is None and v.status in (Status.HOLDS, Status.REFUTED):
            assert oracle.get(v.equation) is (v.status is Status.HOLDS), (v.quantity, v.detail)


@pytest.mark.parametrize("mode", list(Mode), ids=[m.value for m in Mode])
def test_every_mutant_is_refuted_exactly(mutant, mode, independent):
    if mode not in mutant.form.modes:
        pytest.skip(f"{mutant.base} is not a {mode.value} form")
    verdicts = exact(mutant.form, mode)
    wrong = lines(verdicts, Status.REFUTED)
    assert wrong, [(v.equation, v.status.value, v.detail) for v in verdicts]
    agrees_with_the_oracle(verdicts, independent(mutant.form))
    for v in verdicts:
        if v.status is Status.REFUTED and v.counterexample is not None:
            assert v.counterexample.truth != v.counterexample.form
    if mutant.edited:
        # The mistake shows where it was put in, or in a line that uses it: never before.
        assert min(wrong) >= min(mutant.edited)


def test_every_mutant_is_refuted_at_a_large_random_point(mutant, independent):
    # one reduction set of M = 64 in the form's family (a LayerNorm set is one sample's row)
    spec = large_spec(mutant.form.modes[0], 64, mutant.form.norm)
    verdicts = random_check(mutant.form, spec, trials=2)
    agrees_with_the_oracle(verdicts, independent(mutant.form))
    (verdict, *_) = [
        v for v in verdicts if v.status is not Status.UNCHECKED and v.status is not Status.HOLDS
    ] or [None]
    assert verdict is not None, f"{mutant.id}: every line holds at M = 64"
    if mutant.form.eps_inside and not other_radicals(mutant.form):
        assert verdict.status is Status.REFUTED, verdict.detail
    elif verdict.status is not Status.REFUTED:
        # √σ², ⁴√(σ²+ε) have no rational value at integer points: undecided is honest, holds
        # not, and only with that reason (the exact method refutes these mutants).
        assert verdict.status is Status.UNDECIDED, verdict.detail
        reasons = ("is not a perfect", "too few random points could be evaluated")
        assert any(r in verdict.detail for r in reasons), verdict.detail


def other_radicals(form) -> bool:
    """A root of something other than σ² + ε (the one radical the random points make rational)."""
    var_eps = sp.Symbol("var") + sp.Symbol("eps")
    for eq in form.equations:
        for power in eq.expr.atoms(sp.Pow):
            if power.exp.is_integer:
                continue
            if not (2 * power.exp).is_integer or sp.simplify(power.base - var_eps) != 0:
                return True
    return False


def test_every_mutant_is_diagnosed_by_its_name(mutant):
    mode = mutant.form.modes[0]
    verdicts = exact(mutant.form, mode)
    named = set()
    for number in lines(verdicts, Status.REFUTED):
        eq = mutant.form.equations[number - 1]
        named |= {m.mistake.name for m in diagnose_line(mutant.form, eq, mode)}
    assert mutant.mistake.name in named


@pytest.mark.parametrize("mode", list(Mode), ids=[m.value for m in Mode])
def test_every_rewrite_holds_exactly(rewrite, mode, independent):
    verdicts = exact(rewrite.form, mode)
    assert verdicts
    agrees_with_the_oracle(verdicts, independent(rewrite.form))
    assert overall(verdicts) is Status.HOLDS, [
        (v.equation, v.status.value, v.detail) for v in verdicts if v.status is not Status.HOLDS
    ]


def test_every_rewrite_holds_for_every_m(rewrite, independent):
    verdicts = general_check(rewrite.form)
    assert verdicts
    agrees_with_the_oracle(verdicts, independent(rewrite.form))
    assert overall(verdicts) is Status.HOLDS, [
        (v.equation, v.status.value, v.detail) for v in verdicts
    ]


def test_a_right_line_gets_no_diagnosis(rewrite):
    for eq in rewrite.form.equations:
        assert diagnose_line(rewrite.form, eq, Mode.PER_ACTIVATION) == []


def test_an_edit_must_match_exactly_once():
    base = builtin_form_data("compact")
    with pytest.raises(FormError, match="occurs 0 times"):
        _variant(base, {"edits": [{"line": "dx", "old": "nowhere", "new": ""}]}, "t", "t", "test")
    with pytest.raises(FormError, match="occurs 2 times"):
        _variant(base, {"edits": [{"line": "dx", "old": "gamma", "new": "h"}]}, "t", "t", "test")
    with pytest.raises(FormError, match="line 9 does not exist"):
        _variant(base, {"edits": [{"line": 9, "old": "g", "new": "h"}]}, "t", "t", "test")
    assert base == builtin_form_data("compact")  # the base is not touched
    form, edited = _variant(
        copy.deepcopy(base),
        {"edits": [{"line": "dbeta", "old": "sum(g[k], k)", "new": "2*sum(g[k], k)"}]},
        "t",
        "t",
        "test",
    )
    assert edited == {1} and form.equations[0].text == "2*sum(g[k], k)"


def test_values_compare_exactly_or_in_float64():
    from fractions import Fraction

    assert same(Value(Fraction(1, 3), True), Value(Fraction(1, 3), True)) == (True, True)
    assert same(Value(Fraction(1, 3), True), Value(Fraction(1, 3) + Fraction(1, 10**30), True)) == (
        False,
        True,
    )
    assert same(Value(1 / 3, False), Value(Fraction(1, 3), True)) == (True, False)
    assert same(Value(0.34, False), Value(Fraction(1, 3), True))[0] is False


def test_localise_names_the_wrong_stage():
    from fractions import Fraction as F

    g = [F(v) for v in (3, -1, 2, 5, -4)]
    u = [F(v) for v in (2, -3, 1, 4, -4)]
    assert "path through μ" in localise([F(7)] * 5, g, u)
    only_var = localise([F(2) * v for v in u], g, u)
    assert "path through σ²" in only_var and "μ" not in only_var.split("σ²")[1]
    assert "direct term" in localise([F(-1, 2) * v for v in g], g, u)
    assert localise([F(v * v) for v in (1, 2, 3, 4, 5)], g, u) is None  # not of that shape
    assert localise([F(1)] * 3, g[:3], u[:3]) is None  # M < 4: a fit would prove nothing


def test_check_names_the_mistake_of_a_mutant():
    result = CliRunner().invoke(
        main, ["check", "compact/gamma-missing", "--mode", "per-activation", "--method", "exact",
               "--no-timing"],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert (
        "known mistake: γ missing (gamma-missing); your dx[i] equals the result with it, exactly"
        in result.output
    )


def test_check_json_carries_the_diagnosis():
    import json

    result = CliRunner().invoke(
        main, ["check", "staged/sign-flip#dvar", "--method", "exact", "--mode", "per-activation",
               "--json"],
    )  # fmt: skip
    assert result.exit_code == 1
    payload = json.loads(result.output)
    names = {m["mistake"] for d in payload["diagnoses"] for m in d["matches"]}
    assert names == {"sign-flip"}


def test_mutants_command_lists_and_shows():
    runner = CliRunner()
    listing = runner.invoke(main, ["mutants"])
    assert listing.exit_code == 0
    book = corpus()
    for mistake in book.mistakes:
        assert mistake.name in listing.output
    assert f"{len(book.mistakes)} mistakes, {len(book.mutants)} mutants" in listing.output
    one = runner.invoke(main, ["mutants", "half-lost"])
    assert one.exit_code == 0
    assert "staged/half-lost" in one.output and "line 2: dvar =" in one.output
    rewrites = runner.invoke(main, ["mutants", "--rewrites"])
    assert all(r.name in rewrites.output for r in book.rewrites)
    bad = runner.invoke(main, ["mutants", "no-such-mistake"])
    assert bad.exit_code == 2 and "No mistake named 'no-such-mistake'" in bad.output


def test_a_latex_derivation_with_a_known_mistake_is_named(tmp_path):
    from importlib import resources

    text = (resources.files("bnderive.derivations.latex") / "staged.md").read_text("utf-8")
    assert text.count(r"\frac{-1}{2}") == 1
    path = tmp_path / "post.md"
    path.write_text(text.replace(r"\frac{-1}{2}", r"\frac{1}{2}"), encoding="utf-8")
    result = CliRunner().invoke(
        main, ["check", str(path), "--method", "exact", "--mode", "per-activation", "--no-timing"]
    )
    assert result.exit_code == 1
    assert "known mistake: a sign flipped (sign-flip); your dvar equals the result with it" in (
        result.output
    )


def test_a_mutant_note_says_what_is_wrong_in_that_mutant():
    result = CliRunner().invoke(
        main, ["check", "staged/sign-flip#dmu", "--method", "exact", "--mode", "per-activation"]
    )
    assert "what is wrong: dμ = +Σ dx̂_k/√(σ²+ε)" in result.output
    listing = CliRunner().invoke(main, ["mutants", "sign-flip"])
    assert "dμ/M is subtracted from dx; the path through μ adds it" in listing.output


def test_the_readme_counts_the_corpus():
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    book = corpus()
    assert f"{len(book.mutants)} mutants of" in readme
    assert f"holds {len(book.rewrites)} *equivalent rewrites*" in readme
