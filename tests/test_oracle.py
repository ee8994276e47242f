"""The independent oracle (tests/oracle.py) against itself and against what the tests claim.

The soundness tests feed bnderive forms they call right or wrong; those labels are checked here
by code that shares nothing with bnderive (the form's text read by its own interpreter, the
truth differentiated by brute force), so that a test that expects "refuted" expects it of a
form that is wrong, and one that expects "holds" of a form that is right.  The oracle must be
able to say "wrong": the first tests show it does.
"""

from __future__ import annotations

from pathlib import Path

import oracle
import sympy as sp

from bnderive import builtin_forms, load_form

CAFFE = "gamma/sqrt(var+eps)*(g[i] - sum(g[k],k)/M - xhat[i]*sum(g[k]*xhat[k],k)/M)"
NO_GAMMA = CAFFE.replace("gamma/", "1/")


def form_of(tmp_path: Path, *lines: tuple[str, str], conventions: str = ""):
    text = "name = 't'\n" + (f"[conventions]\n{conventions}\n" if conventions else "")
    text += "".join(f"[[equations]]\ndefines = '{d}'\nexpr = '{e}'\n" for d, e in lines)
    path = tmp_path / "t.toml"
    path.write_text(text, encoding="utf-8")
    return load_form(path)


def test_the_oracle_says_wrong_of_wrong_lines(tmp_path, independent):
    form = form_of(
        tmp_path,
        ("dx[i]", NO_GAMMA),  # γ lost
        ("dgamma", "sum(g[k]*x[k], k)"),  # x for x̂
        ("dbeta", "sum(g[k], k) + 1e-3"),  # off by a little
        ("dvar", "sum(g[k]*gamma*(x[k]-mu), k)*(-1/2)*(var+eps)**(-1/2)"),  # σ for σ³
    )
    assert independent(form) == {1: False, 2: False, 3: False, 4: False}


def test_the_oracle_says_right_of_right_lines(tmp_path, independent):
    form = form_of(
        tmp_path,
        ("dx[i]", CAFFE),
        ("dgamma", "sum(g[k]*(x[k]-mu), k)/sqrt(var+eps)"),
        ("dbeta", "sum(dy[k], k)"),
        ("dmu", "-gamma*sum(g[k], k)/sqrt(var+eps)"),
        ("dxhat[i]", "g[i]*gamma"),
    )
    assert independent(form) == dict.fromkeys(range(1, 6), True)


def test_the_oracle_reads_conventions_from_the_form(tmp_path, independent):
    # The compact dx is right with ε inside and wrong with ε outside, Bessel's or eval mode.
    assert independent(form_of(tmp_path, ("dx[i]", CAFFE))) == {1: True}
    for conventions in ('epsilon = "outside"', 'variance = "unbiased"', "training = false"):
        form = form_of(tmp_path, ("dx[i]", CAFFE), conventions=conventions)
        assert independent(form) == {1: False}, conventions
    eval_dx = "gamma*g[i]/sqrt(var+eps)"
    assert independent(form_of(tmp_path, ("dx[i]", eval_dx), conventions="training = false")) == {
        1: True
    }


def test_exact_arithmetic_gives_exact_values():
    point = {"x": [3, 1, 1], "g": [3, 1, 2], "gamma": -2, "beta": 0, "eps": sp.Rational(28, 9)}
    c = oracle.Conventions()
    (value,) = oracle.form_lines([("dx", True, CAFFE)], point, 3, c, oracle.EXACT)
    # σ² = 8/9, √(σ²+ε) = 2: every value rational.
    assert all(v.is_Rational for v in value)
    assert value[0] == sp.Rational(-7, 9)


def test_every_builtin_form_is_right(independent):
    # BatchNorm's and InstanceNorm's by conftest.Layer, LayerNorm's, GroupNorm's and RMSNorm's
    # by oracle.family_truth (its own brute force, γ_k per element).
    families = set()
    for form in builtin_forms():
        verdicts = independent(form)
        assert verdicts and set(verdicts.values()) == {True}, (form.name, verdicts)
        families.add(form.norm.value)
    assert families == {"batch", "layer", "instance", "group", "rms"}


def test_the_family_oracle_says_wrong_of_a_gamma_outside_the_sum(tmp_path, independent):
    # γ_i·Σ_k g_k(…) instead of Σ_k g_k·γ_k(…): wrong for LayerNorm (γ per element), and the
    # oracle sees it only because its γ_k differ from element to element.
    right = "g[i]*gamma[i]/sqrt(var + eps) - sum(g[k]*gamma[k]/M*(1/sqrt(var + eps) + (x[k] - mu)*(x[i] - mu)/(var + eps)**(3/2)), k)"
    wrong = right.replace("sum(g[k]*gamma[k]/M*", "gamma[i]*sum(g[k]/M*")
    for text, expected in ((right, True), (wrong, False)):
        path = tmp_path / "ln.toml"
        path.write_text(
            f'name = "ln"\nnorm = "layer"\n[[equations]]\ndefines = "dx[i]"\nexpr = "{text}"\n'
        )
        assert independent(load_form(path)) == {1: expected}


def test_the_forms_the_soundness_tests_call_right_or_wrong_are(tmp_path, independent):
    # tests/test_soundness.py, test_soundness_paths.py, test_random_soundness.py
    assert independent(form_of(tmp_path, ("dx[i]", CAFFE))) == {1: True}
    for wrong in (
        NO_GAMMA,
        "gamma/sqrt(var+eps)*(g[i] - sum(g[k],k)/M)",  # right only for a uniform g
        f"{CAFFE} + delta(i, 2)*g[i]",  # wrong at element 2 only
        f"{CAFFE} + g[2]*delta(i, 2)",
        CAFFE.replace("sqrt(var+eps)", "(sqrt(4*(var+eps))/3)"),
    ):
        assert independent(form_of(tmp_path, ("dx[i]", wrong))) == {1: False}, wrong
    right = CAFFE.replace("sqrt(var+eps)", "(sqrt(4*(var+eps))/2)")
    assert independent(form_of(tmp_path, ("dx[i]", right))) == {1: True}
    for offset in ("+ 1", "- 1", "* 2147483648"):
        form = form_of(tmp_path, ("dbeta", f"sum(g[k], k) {offset}"))
        assert independent(form) == {1: False}, offset


def test_a_line_that_cannot_be_evaluated_is_not_judged(tmp_path, independent):
    # √(−σ² − 1) is not real at any point: the oracle does not decide, rather than guess.
    assert independent(form_of(tmp_path, ("dx[i]", "g[i]*sqrt(-var-1)"))) == {1: None}
