"""Every path that can return "holds" is reached by a wrong input that must not hold there.

Each decision in the verifier sits behind earlier screens (the one-point screen before the exact
normal form, a witness search before "refuted", the F_p screen before rational arithmetic).  A
wrong form is usually stopped by the first screen, so the later decisions are never exercised
by a wrong input, and a bug there (found by mutating the code, issue 10 item 11) passes every
other test.  Here the earlier screens are switched off, one at a time, so that the later decision
is the one that must refute, or say "undecided": never "holds".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sympy as sp

import bnderive.verify.exact as exact_module
import bnderive.verify.randomized as randomized
import bnderive.verify.zero_test as zero_test
from bnderive.core.finite_field import P, modular_backend
from bnderive.core.spec import Mode, Spec
from bnderive.read.corpus import corpus
from bnderive.read.documents import load_document
from bnderive.read.forms import load_form
from bnderive.verify import every_m
from bnderive.verify.every_m import general_check
from bnderive.verify.exact import exact_check, exact_reference_check, exact_step_check
from bnderive.verify.randomized import large_spec, random_check, random_rational_check
from bnderive.verify.verdict import Status
from bnderive.verify.zero_test import Zero, decide_zero
from tests.hash_seeds import printed_under_seeds

CAFFE = "gamma/sqrt(var+eps)*(g[i] - sum(g[k],k)/M - xhat[i]*sum(g[k]*xhat[k],k)/M)"
NO_GAMMA = CAFFE.replace("gamma/", "1/")

#: A derivation whose last step is wrong (γ lost on line 11, found again on line 12) and whose
#: local derivative ∂σ²/∂x_i uses Bessel's 1/(N−1) in a biased file.
DOCUMENT = r"""---
name: wrong-step-and-local
mode: per-activation
---
$$
\begin{aligned}
\frac{\partial L}{\partial \beta} &= \sum_i \frac{\partial L}{\partial y_i} \\
\frac{\partial L}{\partial \gamma} &= \sum_i \frac{\partial L}{\partial y_i}\hat{x}_i \\
\frac{\partial \sigma^2}{\partial x_i} &= \frac{2(x_i-\mu)}{N-1} \\
\frac{\partial L}{\partial x_i} &= \frac{1}{\sqrt{\sigma^2+\epsilon}}\left(\frac{\partial L}{\partial y_i} - \frac{1}{N}\frac{\partial L}{\partial \beta} - \frac{\hat{x}_i}{N}\frac{\partial L}{\partial \gamma}\right) \\
&= \frac{\gamma}{\sqrt{\sigma^2+\epsilon}}\left(\frac{\partial L}{\partial y_i} - \frac{1}{N}\frac{\partial L}{\partial \beta} - \frac{\hat{x}_i}{N}\frac{\partial L}{\partial \gamma}\right)
\end{aligned}
$$
"""
SMALL = [Spec(Mode.PER_ACTIVATION, n=3, c=1)]


def form_with_dx(tmp_path: Path, expr: str, name: str = "f"):
    path = tmp_path / f"{name}.toml"
    path.write_text(f"name='{name}'\n[[equations]]\ndefines='dx[i]'\nexpr='{expr}'\n", "utf-8")
    return load_form(path)


@pytest.fixture
def document(tmp_path):
    path = tmp_path / "doc.md"
    path.write_text(DOCUMENT, encoding="utf-8")
    form = load_document(path)
    assert len(form.steps) == 1 and any(e.name == "dvar_dx" for e in form.equations)
    return form


def _numbers(form) -> dict[str, int]:
    """The equation numbers of the document's lines (the reader may number them its own way)."""
    ((before, step),) = form.steps
    dx = [e.number for e in form.equations if e.name == "dx"]
    return {"step": step, "before": before, "no_gamma": dx[0], "with_gamma": dx[-1]}


@pytest.fixture
def no_witness(monkeypatch):
    """The witness search finds nothing (as it may not, for a difference that vanishes on most
    small points): the exact normal form alone is left to decide."""
    monkeypatch.setattr(exact_module, "find_witness", lambda *args, **kwargs: None)


@pytest.fixture
def screen_blind(monkeypatch):
    """The one-point screen cannot separate anything (a point where the difference is tiny)."""
    monkeypatch.setattr(zero_test, "_nonzero_somewhere", lambda expr, digits=60: False)


# -- the zero decision ---------------------------------------------------------------------------
x, y = sp.symbols("x y", positive=True)


@pytest.mark.parametrize("quick", [True, False])
def test_a_nonzero_expression_with_radicals_is_nonzero_by_the_normal_form(quick):
    # Radicals give relations (s² = x + 1): the answer comes from the numerator reduced modulo
    # them, the last line of decide_zero.
    for expr in (sp.sqrt(x + 1) - 1, 1 / (sp.sqrt(x) + 1) - 1 / (sp.sqrt(x) + 2)):
        assert decide_zero(expr, quick=quick).outcome is Zero.NONZERO


def test_an_identity_with_radicals_is_zero_by_the_normal_form(screen_blind):
    # 1/(√x + 1) = (√x − 1)/(x − 1): zero only after the numerator is reduced with s² = x.
    identity = 1 / (sp.sqrt(x) + 1) - (sp.sqrt(x) - 1) / (x - 1)
    assert decide_zero(identity, quick=False).outcome is Zero.ZERO
    assert decide_zero(identity).outcome is Zero.ZERO


def test_one_radical_written_twice_is_one_symbol(screen_blind):
    # 1/√(x+1) + √(x+1) = (x+2)/√(x+1): zero only if both powers of x+1 share one symbol s with
    # s² = x + 1 (two independent symbols would leave s₀s₁ − x − 1).
    identity = 1 / sp.sqrt(x + 1) + sp.sqrt(x + 1) - (x + 2) / sp.sqrt(x + 1)
    assert decide_zero(identity, quick=False).outcome is Zero.ZERO


def test_a_radical_of_a_multiple_of_another_radicand_shares_its_symbol(screen_blind):
    # √(3·b) beside √b (Sinai's σ = √(Σ(x−μ)²/n) beside the truth's √(Σ(x−μ)²)): one symbol,
    # √(3b) = √3·s, so an identity through both is zero, and a wrong factor is not.
    b = x**2 + x * y + y**2
    identity = 1 / (sp.sqrt(3 * b) + 1) - 1 / (sp.sqrt(3) * sp.sqrt(b) + 1)
    assert decide_zero(identity, quick=False).outcome is Zero.ZERO
    wrong = 1 / (sp.sqrt(3 * b) + 1) - 1 / (sp.sqrt(b) + 1)
    assert decide_zero(wrong, quick=False).outcome is Zero.NONZERO


def test_a_rational_identity_is_not_taken_for_a_laurent_polynomial(screen_blind):
    # 1/(x+1) + x/(x+1) − 1 expands to three terms but is zero: the shortcut "distinct
    # monomials are independent" holds only for monomial denominators.
    identity = 1 / (x + 1) + x / (x + 1) - 1
    assert decide_zero(identity, quick=False).outcome is Zero.ZERO
    assert decide_zero(1 / (x + 1) + x / (x + 1) - 2, quick=False).outcome is Zero.NONZERO


def test_a_radical_of_k_r_squared_is_normalised_exactly(screen_blind):
    # (k·r²)^(p/2) left unevaluated by a rewrite is √k^p · r^p: (2r²)^(−3/2) = 2^(−3/2)·r⁻³.
    from bnderive.core.points import R

    radical = sp.Pow(sp.Mul(2, R**2, evaluate=False), sp.Rational(-3, 2), evaluate=False)
    assert decide_zero(radical - sp.Integer(2) ** sp.Rational(-3, 2) / R**3).outcome is Zero.ZERO
    assert decide_zero(radical - 1 / R**3, quick=False).outcome is Zero.NONZERO


def test_laurent_polynomials_and_undefined_values():
    assert decide_zero((x + y) / y - x / y - 1).outcome is Zero.ZERO
    assert decide_zero(x / y - y / x).outcome is Zero.NONZERO
    assert decide_zero(sp.Integer(0)).outcome is Zero.ZERO
    assert decide_zero(x + sp.zoo).outcome is Zero.UNDEFINED


def test_a_wrong_eps_outside_line_is_refuted_by_the_normal_form(screen_blind):
    """Issue 10: with the one-point screen unable to separate, replacing the normal form's
    ``numerator == 0`` by True made a wrong ε-outside form hold."""
    form = corpus().find("compact/eps-inside-for-outside").form
    verdicts = {v.quantity: v for v in exact_check(form, [Spec(Mode.PER_ACTIVATION, n=2)])}
    assert verdicts["dx[i]"].status is Status.REFUTED


# -- the exact method: a nonzero normal form without a witness is undecided --------------------------
def test_a_wrong_line_without_a_witness_is_undecided_not_holds(tmp_path, no_witness):
    """Issue 10: counting "no witness found" as holds made a form missing γ hold."""
    (verdict,) = exact_check(form_with_dx(tmp_path, NO_GAMMA), SMALL)
    assert verdict.status is Status.UNDECIDED
    assert "no point was found" in verdict.detail


def test_a_wrong_line_without_a_witness_and_a_blind_screen_is_undecided(
    tmp_path, no_witness, screen_blind
):
    (verdict,) = exact_check(form_with_dx(tmp_path, NO_GAMMA), SMALL)
    assert verdict.status is Status.UNDECIDED


def test_a_right_line_the_screen_lies_about_still_holds(tmp_path, monkeypatch, no_witness):
    # The other side of the same branch: no witness, and the normal form (quick=False) is zero.
    monkeypatch.setattr(zero_test, "_nonzero_somewhere", lambda expr, digits=60: True)
    form = corpus().find("eps-outside-compact").form
    assert {v.status for v in exact_check(form, SMALL)} == {Status.HOLDS}


def test_a_wrong_step_without_a_witness_is_undecided(document, no_witness):
    (step,) = exact_step_check(document, SMALL)
    assert step.status is Status.UNDECIDED and step.follows == _numbers(document)["before"]


def test_a_wrong_step_is_refuted_with_a_witness(document):
    (step,) = exact_step_check(document, SMALL)
    assert step.status is Status.REFUTED and step.counterexample is not None


def test_a_wrong_local_derivative_without_a_witness_is_undecided(document, no_witness):
    local = [v for v in exact_reference_check(document, SMALL) if v.quantity.startswith("dvar")]
    assert local and all(v.status is Status.UNDECIDED for v in local)


def test_a_wrong_local_derivative_is_refuted_with_a_witness(document):
    local = [v for v in exact_reference_check(document, SMALL) if v.quantity.startswith("dvar")]
    assert local and all(v.status is Status.REFUTED for v in local)


def test_a_step_whose_line_before_cannot_be_evaluated_is_undecided(tmp_path):
    text = DOCUMENT.replace(
        r"\frac{1}{\sqrt{\sigma^2+\epsilon}}\left(",
        r"\frac{1}{\sqrt{\sigma^2+\epsilon}}\frac{x_i-\mu}{\mu-x_i}\left(",
        1,
    )
    path = tmp_path / "undefined.md"
    path.write_text(text, encoding="utf-8")
    form = load_document(path)
    # At N = 1, x_i − μ = 0: the line before is 0/0 there.
    (step,) = exact_step_check(form, [Spec(Mode.PER_ACTIVATION, n=1, c=1)])
    assert step.status is Status.UNDECIDED


# -- every M: not proved is undecided, never holds ------------------------------------------------------
def test_every_m_never_holds_a_wrong_line_step_or_local_derivative(document):
    verdicts = general_check(document)
    n = _numbers(document)
    status = {(v.equation, v.step): v.status for v in verdicts}
    # Bessel's ∂σ²/∂x_i, the line that lost γ, the step that finds it again: not proved, and
    # so undecided, never "holds".
    local = [v.status for v in verdicts if v.quantity.startswith("dvar")]
    assert local and set(local) == {Status.UNDECIDED}
    assert status[(n["no_gamma"], False)] is Status.UNDECIDED
    assert status[(n["step"], True)] is Status.UNDECIDED
    # ... while the right lines are proved.
    assert status[(n["with_gamma"], False)] is Status.HOLDS
    assert status[(1, False)] is Status.HOLDS and status[(2, False)] is Status.HOLDS


def test_every_m_when_the_rewrite_does_not_apply_is_undecided(document, monkeypatch):
    def fails(*args, **kwargs):
        raise ValueError("no rewrite")

    monkeypatch.setattr(every_m, "prove", fails)
    verdicts = general_check(document)
    assert verdicts and all(v.status is Status.UNDECIDED for v in verdicts)
    assert all("does not apply" in v.detail for v in verdicts)


# -- the randomized method: the rational path, the F_p guards, the degree bound ----------------------
def test_the_rational_path_refutes_without_the_field_screen(tmp_path, monkeypatch):
    monkeypatch.setattr(randomized, "_modular_screen", lambda *args: None)
    spec = large_spec(Mode.PER_ACTIVATION, 64)
    (wrong,) = random_check(form_with_dx(tmp_path, NO_GAMMA), spec, trials=2)
    assert wrong.status is Status.REFUTED and wrong.counterexample is not None
    (right,) = random_check(form_with_dx(tmp_path, CAFFE, "right"), spec, trials=2)
    assert right.status is Status.HOLDS


def test_a_field_difference_refutes_even_when_the_rational_path_finds_nothing(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(randomized, "random_rational_check", lambda *args, **kwargs: [])
    (verdict,) = random_check(form_with_dx(tmp_path, NO_GAMMA), large_spec(Mode.SPATIAL, 64), 2)
    assert verdict.status is Status.REFUTED and "modulo p" in verdict.detail


def test_without_a_degree_bound_agreement_proves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(randomized, "_degrees", lambda form, truth: {1: None})
    spec = large_spec(Mode.PER_ACTIVATION, 64)
    for check in (random_check, random_rational_check):
        (verdict,) = check(form_with_dx(tmp_path, CAFFE), spec, 2)
        assert verdict.status is Status.UNDECIDED and "no degree bound" in verdict.detail


def test_too_few_points_is_undecided(tmp_path, monkeypatch):
    def unusable(*args, **kwargs):
        raise ZeroDivisionError("every point divides by p")

    monkeypatch.setattr(randomized, "_modular_truth", unusable)
    monkeypatch.setattr(randomized, "_random_truth", unusable)
    (verdict,) = random_check(form_with_dx(tmp_path, CAFFE), large_spec(Mode.SPATIAL, 64), 2)
    assert verdict.status is Status.UNDECIDED


def test_field_division_by_a_multiple_of_p_is_an_error_not_zero():
    """Issue 10: with the guards forced off, 1/0 was read as 0 mod p."""
    backend = modular_backend(5)
    for zero in (np.array([3, 0, 4], dtype=np.int64), np.array([P], dtype=np.int64), 0, P):
        with pytest.raises(ZeroDivisionError):
            backend.power(zero, -1)
        with pytest.raises(ZeroDivisionError):
            backend.power(zero, -3)
    with pytest.raises(ZeroDivisionError):
        backend.number(sp.Rational(1, P))
    with pytest.raises(ZeroDivisionError):
        backend.number(sp.Rational(7, 3 * P))
    assert backend.number(sp.Rational(1, 3)) * 3 % P == 1
    assert int(backend.power(np.int64(3), -1)) * 3 % P == 1


def test_a_line_that_is_zero_over_zero_never_holds_in_the_field(tmp_path):
    # Σ(x − μ) is zero at every point: the added term is 0/0, undefined, not 0.
    form = form_with_dx(tmp_path, f"{CAFFE} + sum(x[k]-mu,k)/sum(mu-x[k],k)")
    (verdict,) = random_check(form, large_spec(Mode.PER_ACTIVATION, 64), trials=2)
    assert verdict.status is Status.UNDECIDED


def test_a_constant_with_p_in_its_denominator_never_holds_in_the_field(tmp_path):
    # 1/p is not 0 mod p: γ·(1 + 1/p)… is wrong, and must not agree with the truth.
    # Not decided in the field (1/p has no residue): checked in rational arithmetic, refuted.
    form = form_with_dx(tmp_path, f"({CAFFE})*(1 + 1/{P})")
    (verdict,) = random_check(form, large_spec(Mode.PER_ACTIVATION, 64), trials=2)
    assert verdict.status is Status.REFUTED and verdict.counterexample is not None
    (exact,) = exact_check(form, SMALL)
    assert exact.status is Status.REFUTED


def test_every_m_leaves_auxiliary_lines_unchecked(tmp_path):
    # A helper line is used, not compared: "not checked", never "holds".
    path = tmp_path / "aux.toml"
    path.write_text(
        "name='aux'\n[[equations]]\ndefines='s'\nexpr='sum(g[k], k)'\n"
        f"[[equations]]\ndefines='dx[i]'\nexpr='{CAFFE.replace('sum(g[k],k)', 's')}'\n",
        encoding="utf-8",
    )
    aux, dx = general_check(load_form(path))
    assert aux.status is Status.UNCHECKED and dx.status is Status.HOLDS


def test_every_m_proves_a_right_eps_outside_form():
    # ε outside the root: σ² = s² is eliminated, and Σx² = M(σ² + μ²) must use the same s².
    form = corpus().find("eps-outside-compact").form
    assert {v.status for v in general_check(form)} == {Status.HOLDS}


@pytest.mark.parametrize("offset", ["+ 1", "- 1"])
def test_a_line_off_by_a_constant_is_refuted(tmp_path, offset):
    # truth − form = ∓1 exactly: a constant difference is still a difference.
    path = tmp_path / "off.toml"
    path.write_text(
        f"name='off'\n[[equations]]\ndefines='dbeta'\nexpr='sum(g[k], k) {offset}'\n", "utf-8"
    )
    (verdict,) = exact_check(load_form(path), SMALL)
    assert verdict.status is Status.REFUTED


#: Wrong dβ lines, each zero under one wrong elimination of the root in the every-M proof (the
#: elimination must be the same change of variables everywhere: σ² in the line and the Σ(x − μ)²
#: = Mσ² of the reduction alike).  ε outside the root: σ² = r²; ε inside: ε = r² − σ².
WRONG_ELIMINATIONS = [
    ('epsilon = "outside"', "sum((x[k] - mu)**2, k) - M*var**2/4"),  # σ² = 2r, Σu² = Mr²
    ('epsilon = "outside"', "sum((x[k] - mu)**2, k) - M*var**2"),  # σ² = r
    ('epsilon = "outside"', "sum((x[k] - mu)**2, k) - M*var**(2/3)"),  # σ² = r³
    # σ² = r²⁰⁰: σ^(1/8) = r^(25/2) = (Σu²/M)^(25/4) within the reader's caps on powers
    (
        'epsilon = "outside"',
        "sqrt(sqrt(sqrt(sqrt(var)))) - ((sum((x[k] - mu)**2, k)/M)**(5/2))**(5/2)",
    ),
    ('epsilon = "outside"', "sum((x[k] - mu)**2, k) - M*(var + eps)"),  # ε = r² − σ² there
    ("", "gamma*(1/sqrt(var + eps) - 1/sqrt(var))"),  # ε = 0 where ε is not 0
]


@pytest.mark.parametrize(("conventions", "term"), WRONG_ELIMINATIONS)
def test_every_m_never_holds_a_line_wrong_only_under_another_elimination(
    tmp_path, conventions, term
):
    path = tmp_path / "f.toml"
    path.write_text(
        f"name='f'\n[conventions]\n{conventions}\n"
        f"[[equations]]\ndefines='dbeta'\nexpr='sum(g[k], k) + {term}'\n",
        encoding="utf-8",
    )
    form = load_form(path)
    (exact,) = exact_check(form, SMALL)
    assert exact.status is Status.REFUTED  # the line is wrong
    (general,) = general_check(form)
    assert general.status is Status.UNDECIDED, general.detail


def eps_none_document(tmp_path: Path, extra: str):
    """A document declaring ε = 0 (``epsilon: none``) whose dβ line still writes ε."""
    text = (
        "---\nname: eps-none\nmode: per-activation\nepsilon: none\n---\n$$\n"
        r"\frac{\partial L}{\partial \beta} = \sum_i \frac{\partial L}{\partial y_i} "
        f"{extra}\n$$\n"
    )
    path = tmp_path / "eps_none.md"
    path.write_text(text, encoding="utf-8")
    return load_document(path)


@pytest.mark.parametrize("extra", [r"+ \epsilon - 1", r"+ \epsilon + 1", r"- 1"])
def test_every_m_reads_eps_as_zero_where_the_document_says_so(tmp_path, extra):
    """ε = 0 is substituted in the line, not ε = ±1: a line right at ε = ±1 only is wrong."""
    form = eps_none_document(tmp_path, extra)
    (exact,) = [v for v in exact_check(form, SMALL) if v.quantity == "dbeta"]
    assert exact.status is Status.REFUTED
    (general,) = [v for v in general_check(form) if v.quantity == "dbeta"]
    assert general.status is Status.UNDECIDED, general.detail


def test_every_m_proves_a_line_that_writes_eps_where_eps_is_zero(tmp_path):
    form = eps_none_document(tmp_path, r"+ 3\epsilon")
    assert {v.status for v in exact_check(form, SMALL)} == {Status.HOLDS}
    assert {v.status for v in general_check(form)} == {Status.HOLDS}


def test_a_cube_root_identity_is_zero_after_reducing_its_powers(screen_blind):
    # 1/(∛x − 1) = (∛x² + ∛x + 1)/(x − 1): the numerator is x − s³, zero only once s³ is
    # replaced by x (the reduction modulo s³ = x); a wrong factor is not zero.
    t = sp.cbrt(x)
    identity = 1 / (t - 1) - (t**2 + t + 1) / (x - 1)
    assert decide_zero(identity, quick=False).outcome is Zero.ZERO
    wrong = 1 / (t - 1) - (t**2 + 1) / (x - 1)
    assert decide_zero(wrong, quick=False).outcome is Zero.NONZERO


def test_only_a_screened_nonzero_answer_can_change_with_the_exact_normal_form():
    # exact.py asks again with quick=False only when the one-point screen answered: a NONZERO
    # from the normal form itself would be computed twice for the same answer.
    assert decide_zero(sp.sqrt(x + 1) - 1).screened
    test = decide_zero(sp.sqrt(x + 1) - 1, quick=False)
    assert test.outcome is Zero.NONZERO and not test.screened
    assert not decide_zero(x / y - y / x).screened  # a Laurent polynomial: no screen needed


_PRINT_RADICALS = (
    "import sympy as sp\n"
    "from bnderive.verify.zero_test import _normalize_radicals\n"
    "a, b, c = sp.symbols('a b c', positive=True)\n"
    "expr = sp.sqrt(a + 1) + 2 * sp.sqrt(b + 1) + 3 * sp.sqrt(c + 1)\n"
    "print([(str(s), q, str(base)) for s, q, base in _normalize_radicals(expr)[1]])\n"
)


def test_the_radicals_are_named_in_one_order_whatever_the_hash_seed():
    """Three radicals of equal count_ops: their names s0, s1, s2 (and so a residual the exact
    method prints) followed a set's order, the string hashes', until ties were broken by
    SymPy's canonical order.  A fresh process per seed; the old order gave four different
    namings for seeds 0-3 (SymPy 1.14)."""
    printed = printed_under_seeds(_PRINT_RADICALS, [], 4)
    assert printed == {"[('_s0', 2, 'a + 1'), ('_s1', 2, 'b + 1'), ('_s2', 2, 'c + 1')]\n"}
