"""Verdicts: every known mistake is refuted with a genuine counterexample, at the right line;
every equivalent rewrite holds; exit codes follow DESIGN.md §6.

The cases are the files in tests/forms/ (``conftest.wrong_case`` / ``conftest.equivalent_case``):
each ``wrong_*.toml`` is a copy of a correct form with one deliberate mistake and says in its
``[expect]`` table which equation numbers must be refuted.
"""

from __future__ import annotations

import re
from pathlib import Path

import oracle
import pytest
import sympy as sp

from bnderive import Counterexample, FormError, Mode, Spec, Status, Verdict, find_form, load_form
from bnderive.core.spec import parse_shape
from bnderive.verify.exact import default_exact_specs, exact_check, valid_specs
from bnderive.verify.lines import truth_of
from bnderive.verify.randomized import large_spec, random_check
from bnderive.verify.verdict import exit_code, overall

FORMS = Path(__file__).parent / "forms"
MODES = pytest.mark.parametrize("mode", list(Mode), ids=[m.value for m in Mode])


# -- helpers ----------------------------------------------------------------------------------------
def exact_specs(case, mode: Mode) -> list[Spec]:
    """The default exact plan of the CLI, or the shapes the case file asks for."""
    shapes = case.expect.get("exact_shapes")
    specs = (
        [s for s in map(parse_shape, shapes) if s.mode is mode]
        if shapes
        else default_exact_specs(mode)
    )
    return valid_specs(case.form, specs)


def by_number(verdicts: list[Verdict]) -> dict[int, Status]:
    return {v.equation: v.status for v in verdicts}


def refuted(verdicts: list[Verdict]) -> set[int]:
    return {v.equation for v in verdicts if v.status is Status.REFUTED}


def checkable_numbers(form, spec: Spec) -> set[int]:
    truth = truth_of(form.order, form.spec(spec))
    return {eq.number for eq in form.equations if eq.name in truth}


def same_number(a: sp.Expr, b: sp.Expr) -> bool:
    if a.is_Rational and b.is_Rational:
        return a == b
    return abs(sp.N(a - b, 60)) < sp.Float("1e-45", 60)


def values_of(text: str) -> list[sp.Rational]:
    """'[3, -1, 2/5]' → the numbers; a truncated list yields the values shown."""
    inner = text.strip()[1:-1].split("…")[0]
    return [sp.Rational(v.strip()) for v in inner.split(",") if v.strip()]


def entry_of(cex: Counterexample) -> tuple[str, int | None]:
    """'dx[2] = ∂L/∂x[1, 0]' → ('dx', 2); 'dvar (channel 0)' → ('dvar', None)."""
    match = re.match(r"(\w+)\[(\d+)\]", cex.entry)
    if match:
        return match.group(1), int(match.group(2))
    match = re.match(r"(\w+) \(channel \d+\)", cex.entry)
    assert match, cex.entry
    return match.group(1), None


def brute_value(layer_cls, cex: Counterexample) -> sp.Expr:
    """The truth at the counterexample's point, by brute-force differentiation (conftest.Layer),
    independent of the engine."""
    spec, inputs = cex.spec, cex.inputs
    xs, gs = values_of(inputs["x"]), values_of(inputs["g"])
    assert len(xs) == len(gs) == spec.m, "an exact counterexample shows every input"
    layer = layer_cls(
        (spec.m, 1), unbiased=spec.unbiased, eps_inside=spec.eps_inside, training=spec.training
    )
    point = {layer.x[k, 0]: v for k, v in enumerate(xs)}
    point |= {layer.g[k, 0]: v for k, v in enumerate(gs)}
    point |= {
        layer.gamma[0]: sp.Rational(inputs["γ"]),
        layer.beta[0]: sp.Rational(inputs["β"]),
        layer.eps: sp.Rational(inputs["ε"]),
    }
    if not spec.training:
        point |= {
            layer.running_mean[0]: sp.Rational(inputs["running μ"]),
            layer.running_var[0]: sp.Rational(inputs["running σ²"]),
        }
    name, position = entry_of(cex)
    quantities = {
        "dx": lambda: layer.dx()[position - 1, 0],
        "dgamma": lambda: layer.dgamma()[0],
        "dbeta": lambda: layer.dbeta()[0],
        "dvar": lambda: layer.dvar(0),
        "dmu": lambda: layer.dmu(0),
        "dxhat": lambda: layer.g[position - 1, 0] * layer.gamma[0],
    }
    return quantities[name]().xreplace(point)


def form_value_at(form, cex: Counterexample, number: int) -> sp.Expr:
    """The form's line ``number`` recomputed at the counterexample's point from its text, by
    the independent interpreter of tests/oracle.py (exact SymPy numbers), not bnderive's."""
    spec, inputs = cex.spec, cex.inputs
    point = {
        "x": values_of(inputs["x"]),
        "g": values_of(inputs["g"]),
        "gamma": sp.Rational(inputs["γ"]),
        "beta": sp.Rational(inputs["β"]),
        "eps": sp.Rational(inputs["ε"]),
    }
    if not spec.training:
        point.update(mu=sp.Rational(inputs["running μ"]), var=sp.Rational(inputs["running σ²"]))
    lines = oracle.form_lines(
        oracle.text_equations(form), point, spec.m, oracle.Conventions.of(form), oracle.EXACT
    )
    value = lines[number - 1]
    _, position = entry_of(cex)
    return sp.sympify(value[position - 1] if position is not None else value)


def assert_genuine_exact_counterexample(layer_cls, form, verdict: Verdict) -> None:
    cex = verdict.counterexample
    assert cex is not None, verdict.detail
    truth, mine = sp.sympify(cex.truth), sp.sympify(cex.form)
    assert truth.is_number and mine.is_number
    assert not same_number(truth, mine), (cex.truth, cex.form)
    # the truth it reports is the brute-force truth, and the form really computes its value
    assert same_number(brute_value(layer_cls, cex), truth), cex.describe()
    assert same_number(form_value_at(form, cex, verdict.equation), mine), cex.describe()
    # the point is adversarial: γ ≠ ±1, non-uniform g and x
    assert sp.Rational(cex.inputs["γ"]) not in (0, 1, -1)
    assert len(set(values_of(cex.inputs["g"]))) > 1
    assert len(set(values_of(cex.inputs["x"]))) > 1


def assert_genuine_random_counterexample(verdict: Verdict) -> None:
    cex = verdict.counterexample
    assert cex is not None, verdict.detail
    truth, mine = sp.Rational(cex.truth), sp.Rational(cex.form)
    assert truth != mine
    assert len(set(values_of(cex.inputs["g"]))) > 1


# -- the mutation corpus ----------------------------------------------------------------------------
def test_the_corpus_covers_the_known_mistakes(wrong_form_files, equivalent_form_files):
    stems = {p.stem for p in wrong_form_files}
    for mistake in (
        "wrong_missing_gamma",
        "wrong_dvar_sign",
        "wrong_bessel_one_place",
        "wrong_sigma_for_var",
        "wrong_dvar_lost_half",
        "wrong_stats_constant",
        "wrong_eps_outside",
        "wrong_eval_in_training",
        "wrong_uniform_g_only",
    ):
        assert mistake in stems
    stems = {p.stem for p in equivalent_form_files}
    for rewrite in (
        "equivalent_staged_dmu_dropped",
        "equivalent_var_moment",
        "equivalent_rsqrt",
        "equivalent_caffe",
        "equivalent_aux_invstd",
    ):
        assert rewrite in stems


def _base(name: str):
    path = FORMS / f"{name}.toml"
    if path.exists():
        text = path.read_text(encoding="utf-8").split("\n[expect]", 1)[0]
        return load_form(path, text)
    return find_form(name)


def test_wrong_form_is_one_mistake_away_from_its_base(wrong_case_with_base):
    """The corpus is honest: outside the lines it says it changed, a wrong form is its base."""
    wrong_case = wrong_case_with_base
    form, base = wrong_case.form, _base(wrong_case.expect["base"])
    changed = set(wrong_case.expect["changed"])
    assert len(form.equations) == len(base.equations)
    for eq, ref in zip(form.equations, base.equations, strict=True):
        assert (eq.name, eq.index) == (ref.name, ref.index)
        assert (eq.expr == ref.expr) == (eq.number not in changed), eq.label
    conventions = ("training", "unbiased", "eps_inside")
    moved = [c for c in conventions if getattr(form, c) != getattr(base, c)]
    assert len(changed) + len(moved) == 1, "exactly one deliberate mistake"


def test_equivalent_form_differs_from_its_base_where_it_says(equivalent_case_with_base):
    equivalent_case = equivalent_case_with_base
    form, base = equivalent_case.form, _base(equivalent_case.expect["base"])
    changed = set(equivalent_case.expect["changed"])
    assert changed
    for eq, ref in zip(form.equations, base.equations, strict=True):
        # a rewrite may be the same SymPy expression ((σ²+ε)^(−1/2) is 1/√(σ²+ε)): compare text
        if eq.number in changed:
            assert eq.text.replace(" ", "") != ref.text.replace(" ", ""), eq.label
        else:
            assert eq.expr == ref.expr, eq.label


@MODES
def test_wrong_form_is_refuted_exactly_at_the_right_lines(layer_cls, independent, wrong_case, mode):
    form = wrong_case.form
    specs = exact_specs(wrong_case, mode)
    verdicts = exact_check(form, specs)
    want = set(wrong_case.expect["refuted"])
    assert want, "a wrong form must name the lines it expects refuted"
    # the lines the case calls wrong are wrong, the others right, by the independent oracle
    assert independent(form) == {n: n not in want for n in checkable_numbers(form, specs[0])}
    assert refuted(verdicts) == want, {v.equation: v.status.value for v in verdicts}
    statuses = by_number(verdicts)
    for number in checkable_numbers(form, specs[0]) - want:
        assert statuses[number] is Status.HOLDS, number
    assert exit_code(verdicts) == 1 and overall(verdicts) is Status.REFUTED
    for verdict in verdicts:
        if verdict.status is Status.REFUTED:
            assert verdict.method == "exact"
            assert_genuine_exact_counterexample(layer_cls, form, verdict)


@MODES
def test_wrong_form_is_refuted_at_random_points(wrong_case, mode):
    form = wrong_case.form
    spec = large_spec(mode, 512)
    verdicts = random_check(form, spec, trials=2)
    want = set(wrong_case.expect["refuted"])
    statuses = by_number(verdicts)
    if wrong_case.expect.get("random", "refuted") == "undecided":
        # the form needs √σ², irrational at integer points: it cannot be evaluated exactly, and
        # the method must say so rather than hold it (the exact method refutes it, above)
        for number in want:
            assert statuses[number] is Status.UNDECIDED, number
        assert not refuted(verdicts) - want
        assert exit_code(verdicts) == 3
        return
    assert refuted(verdicts) == want, {v.equation: v.status.value for v in verdicts}
    for number in checkable_numbers(form, spec) - want:
        assert statuses[number] is Status.HOLDS, number
    assert exit_code(verdicts) == 1
    for verdict in verdicts:
        if verdict.status is Status.REFUTED:
            assert verdict.method == "random"
            assert_genuine_random_counterexample(verdict)


@MODES
def test_equivalent_form_holds(independent, equivalent_case, mode):
    form = equivalent_case.form
    specs = exact_specs(equivalent_case, mode)
    verdicts = exact_check(form, specs)
    checkable = checkable_numbers(form, specs[0])
    assert checkable, "an equivalent form must define something the truth knows"
    assert independent(form) == dict.fromkeys(checkable, True)  # right, by the oracle
    for verdict in verdicts:
        want = Status.HOLDS if verdict.equation in checkable else Status.UNCHECKED
        assert verdict.status is want, (verdict.quantity, verdict.detail)
    assert exit_code(verdicts) == 0

    verdicts = random_check(form, large_spec(mode, 512), trials=2)
    assert not refuted(verdicts)
    if equivalent_case.expect.get("random", "holds") == "undecided":
        assert {v.status for v in verdicts} <= {Status.UNDECIDED, Status.UNCHECKED}
        return
    for verdict in verdicts:
        want = Status.HOLDS if verdict.equation in checkable else Status.UNCHECKED
        assert verdict.status is want, (verdict.quantity, verdict.detail)


# -- named cases ------------------------------------------------------------------------------------
def load(name: str):
    path = FORMS / f"{name}.toml"
    return load_form(path, path.read_text(encoding="utf-8").split("\n[expect]", 1)[0])


def test_wrong_dvar_is_localised_to_its_line():
    """Staged form, dσ² with the wrong sign, everything else as published: line 2 (dσ²) is
    refuted; line 3 (dμ) still holds, because dσ² enters it through Σ(x−μ) ≡ 0; line 4 (dx)
    inherits the error; dx̂, dγ, dβ hold."""
    form = load("wrong_dvar_sign")
    assert [eq.label for eq in form.equations] == [
        "dxhat[i]",
        "dvar",
        "dmu",
        "dx[i]",
        "dgamma",
        "dbeta",
    ]
    verdicts = exact_check(form, default_exact_specs(Mode.PER_ACTIVATION))
    assert refuted(verdicts) == {2, 4}
    assert {v.equation for v in verdicts if v.status is Status.HOLDS} == {1, 3, 5, 6}


def test_staged_without_the_zero_term_holds():
    form = load("equivalent_staged_dmu_dropped")
    assert "dvar" not in str(form.equation("dmu").expr)
    verdicts = exact_check(form, default_exact_specs(Mode.SPATIAL))
    assert {v.status for v in verdicts} == {Status.HOLDS}


def test_auxiliary_line_is_not_checked_and_the_rest_holds():
    form = load("equivalent_aux_invstd")
    verdicts = exact_check(form, default_exact_specs(Mode.PER_ACTIVATION))
    assert [v.status for v in verdicts] == [Status.UNCHECKED] + [Status.HOLDS] * 3
    assert verdicts[0].quantity == "invstd"
    assert exit_code(verdicts) == 0


def test_uniform_upstream_gradient_trap(layer_cls):
    """The form is right whenever g is uniform (then the true dx is 0, and so is the form's),
    which is all a mean-loss test would see; both methods must still refute it."""
    form = load("wrong_uniform_g_only")
    spec = Spec(n=4)
    # The trap, shown by the independent oracle: at a uniform g the true dx (brute force) is 0,
    # and so is the form's (its text, read by tests/oracle.py).
    layer = layer_cls((4, 1))
    point = {"x": [3, -1, 2, 7], "g": [3] * 4, "gamma": 5, "beta": 1, "eps": sp.Rational(1, 3)}
    at = {layer.x[k, 0]: point["x"][k] for k in range(4)}
    at |= {layer.g[k, 0]: 3 for k in range(4)}
    at |= {layer.gamma[0]: 5, layer.beta[0]: 1, layer.eps: sp.Rational(1, 3)}
    true_dx = [d.xreplace(at) for d in layer.dx()[:, 0]]
    lines = oracle.form_lines(
        oracle.text_equations(form), point, 4, oracle.Conventions(), oracle.EXACT
    )
    form_dx = lines[form.equation("dx").number - 1]
    assert all(same_number(sp.sympify(v), sp.Integer(0)) for v in [*true_dx, *form_dx])

    (_, _, exact) = exact_check(form, [spec])
    assert exact.status is Status.REFUTED
    assert_genuine_exact_counterexample(layer_cls, form, exact)
    (_, _, rand) = random_check(form, large_spec(Mode.PER_ACTIVATION, 256), trials=2)
    assert rand.status is Status.REFUTED
    assert_genuine_random_counterexample(rand)


def test_missing_gamma_and_sigma_mistakes_use_revealing_points():
    """γ = 1 hides a missing γ, σ² + ε = 1 hides σ for σ²: the witnesses avoid both."""
    (_, _, gamma) = exact_check(load("wrong_missing_gamma"), [Spec(n=3)])
    assert gamma.status is Status.REFUTED
    assert sp.Rational(gamma.counterexample.inputs["γ"]) not in (1, -1)
    (sigma, _, _) = exact_check(load("wrong_sigma_for_var"), [Spec(n=3)])
    assert sigma.status is Status.REFUTED
    assert sp.Rational(sigma.counterexample.inputs["√(σ²+ε)"]) != 1


def test_eps_outside_at_one_element_is_undecided():
    """With ε outside the root the truth is undefined at M = 1 (√σ² at σ² = 0): neither holds
    nor refuted."""
    form = load("equivalent_eps_outside")
    verdicts = exact_check(form, [Spec(n=1)])
    assert by_number(verdicts)[1] is Status.UNDECIDED
    assert not refuted(verdicts)
    assert exit_code(verdicts) == 3


def write_form(tmp_path: Path, *lines: tuple[str, str]) -> Path:
    text = 'name = "t"\n' + "".join(
        f'[[equations]]\ndefines = "{d}"\nexpr = "{e}"\n' for d, e in lines
    )
    path = tmp_path / "t.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_quantity_used_but_not_defined_is_never_taken_from_the_truth(tmp_path):
    """The staged dx uses dσ² and dμ; without their lines the form cannot be evaluated, and it
    must not silently read the truth's values."""
    form = load_form(
        write_form(
            tmp_path,
            ("dxhat[i]", "g[i]*gamma"),
            ("dx[i]", "dxhat[i]/sqrt(var + eps) + dvar*2*(x[i] - mu)/M + dmu/M"),
        )
    )
    verdicts = exact_check(form, [Spec(n=3)])
    assert by_number(verdicts) == {1: Status.HOLDS, 2: Status.UNDECIDED}
    verdicts = random_check(form, large_spec(Mode.PER_ACTIVATION, 64), trials=2)
    assert by_number(verdicts)[2] is Status.UNDECIDED


def test_an_auxiliary_redefined_later_is_read_with_its_latest_value(tmp_path):
    lines = [
        ("t", "1"),
        ("s", "sum(g[k]*t, k)"),
        ("t", "2"),
    ]
    right = load_form(write_form(tmp_path, *lines, ("dbeta", "sum(g[k]*t, k)/2")))
    assert exact_check(right, [Spec(n=3)])[-1].status is Status.HOLDS
    assert random_check(right, large_spec(Mode.PER_ACTIVATION, 64), 2)[-1].status is Status.HOLDS
    wrong = load_form(write_form(tmp_path, *lines, ("dbeta", "sum(g[k]*t, k)")))
    assert exact_check(wrong, [Spec(n=3)])[-1].status is Status.REFUTED
    assert random_check(wrong, large_spec(Mode.PER_ACTIVATION, 64), 2)[-1].status is (
        Status.REFUTED
    )


@pytest.mark.parametrize("name", ["ggB", "ggG", "ggI[i]", "x[i]", "mu", "eps"])
def test_inputs_cannot_be_redefined(tmp_path, name):
    """Regression: a form that redefined ggB made the evaluator's memoized sums stale, and
    dbeta = Σ 2g was reported to hold."""
    with pytest.raises(FormError, match="cannot be redefined"):
        load_form(write_form(tmp_path, (name, "1"), ("dbeta", "sum(g[k], k)")))


def test_a_misnamed_quantity_is_not_a_pass(tmp_path):
    """'dX[i]' is not dx: the line is auxiliary, nothing is checked, and that is not exit 0."""
    form = load_form(write_form(tmp_path, ("dX[i]", "g[i]")))
    verdicts = exact_check(form, [Spec(n=3)])
    assert [v.status for v in verdicts] == [Status.UNCHECKED]
    assert exit_code(verdicts) == 3


# -- exit codes -------------------------------------------------------------------------------------
def verdicts_of(*statuses: Status) -> list[Verdict]:
    return [
        Verdict("f", f"q{n}", n, status, "exact", "test") for n, status in enumerate(statuses, 1)
    ]


H, R, U, C = Status.HOLDS, Status.REFUTED, Status.UNDECIDED, Status.UNCHECKED


@pytest.mark.parametrize(
    ("statuses", "status", "code"),
    [
        ((H,), H, 0),
        ((H, H, C), H, 0),
        ((H, R), R, 1),
        ((R, U, H), R, 1),
        ((U, R), R, 1),
        ((R,), R, 1),
        ((H, U), U, 3),
        ((U, C), U, 3),
        ((C,), U, 3),  # nothing was checked
        ((), U, 3),
    ],
)
def test_overall_and_exit_code(statuses, status, code):
    verdicts = verdicts_of(*statuses)
    assert overall(verdicts) is status
    assert exit_code(verdicts) == code
    assert exit_code(iter(verdicts)) == code  # any iterable
