"""Tests written for the survivors of the mutation run over the deciding modules (issue 10, 11).

``tools/mutate.py`` changed the exact method one small bug at a time; each test here fails for
at least one mutant that every other test let through, and its comment names the line and the
change.  Most feed a wrong or undefined form to a path that no earlier screen stops: a form that
names an element by number (entry 1 is not every entry), a line that cannot be evaluated at one
of the sizes, a value undefined at one size.  The rest fix what a verdict says it did.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import bnderive.verify.exact as exact_module
from bnderive.core.spec import Mode, Spec
from bnderive.read.documents import load_document
from bnderive.read.forms import load_form
from bnderive.verify.exact import equivariant, exact_check, exact_step_check
from bnderive.verify.verdict import Status, Verdict
from tests.test_soundness_paths import DOCUMENT

# The Caffe form of dx (BVLC/caffe, batch_norm_layer.cpp, as tests/test_soundness_paths.py
# writes it), right in every mode this file checks.
CAFFE = "gamma/sqrt(var+eps)*(g[i] - sum(g[k],k)/M - xhat[i]*sum(g[k]*xhat[k],k)/M)"
H, R, U, N = Status.HOLDS, Status.REFUTED, Status.UNDECIDED, Status.UNCHECKED
SIZES = [Spec(Mode.PER_ACTIVATION, n=3, c=1), Spec(Mode.PER_ACTIVATION, n=4, c=1)]


def form_of(tmp_path: Path, *lines: tuple[str, str], name: str = "f"):
    text = f"name='{name}'\n" + "".join(
        f"[[equations]]\ndefines='{defines}'\nexpr='{expr}'\n" for defines, expr in lines
    )
    path = tmp_path / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return load_form(path)


def verdicts_of(form, sizes=SIZES):
    return {v.quantity: v for v in exact_check(form, sizes)}


# -- a form that names an element by number is decided entry by entry ---------------------------------
def test_a_line_wrong_only_at_element_two_is_refuted(tmp_path):
    """exact.py ``if equivariant(form): both = both[:1]`` forced true, and ``equivariant``'s test
    for a numbered index deleted: only entry 1 was decided, and a dx wrong at entry 2 alone
    (δ(i,2)·g₁ is zero at i = 1) held."""
    form = form_of(tmp_path, ("dx[i]", f"{CAFFE} + delta(i, 2)*g[1]"))
    assert not equivariant(form)
    verdict = verdicts_of(form)["dx[i]"]
    assert verdict.status is Status.REFUTED
    assert verdict.counterexample is not None and verdict.counterexample.entry.startswith("dx[2]")


def test_what_holding_says_it_decided(tmp_path):
    """The detail of a line that holds names how its entries were decided: entry 1 and
    permutation symmetry for index notation, every entry for a form that names an element
    (exact.py's ``if pair.kind == "truth"`` and its ``equivariant`` branch, the words index)."""
    symmetric = verdicts_of(form_of(tmp_path, ("dx[i]", CAFFE)))["dx[i]"]
    assert symmetric.status is Status.HOLDS
    assert symmetric.detail == (
        "identically equal to the truth (radical eliminated, expanded; entry 1 decided, the "
        "rest by permutation symmetry)"
    )
    # + Σ g_k δ(k,1) − g₁ = 0: right, but it names element 1
    numbered = form_of(tmp_path, ("dx[i]", f"{CAFFE} + sum(g[k]*delta(k, 1), k) - g[1]"), name="n")
    assert not equivariant(numbered)
    (verdict,) = exact_check(numbered, SIZES)
    assert verdict.status is Status.HOLDS
    assert verdict.detail == (
        "identically equal to the truth (radical eliminated, expanded, every entry)"
    )


# -- a line that cannot be evaluated at one size is undecided there, never holds ----------------------
def test_a_line_outside_the_elements_at_one_size_is_undecided(tmp_path):
    """x[4] does not exist at M = 3: line 2 cannot be evaluated there (it is right at M = 4).
    exact.py's ``if mine.line_error(eq)`` and ``if isinstance(found, str)`` deleted crashed;
    lines.py's ``line_errors[eq.number - 1]`` read as ``- 2`` took line 1's (no) error."""
    form = form_of(tmp_path, ("dbeta", "sum(g[k], k)"), ("dx[i]", f"{CAFFE} + x[4]*(M - 4)"))
    verdicts = verdicts_of(form)
    assert verdicts["dbeta"].status is Status.HOLDS
    dx = verdicts["dx[i]"]
    assert dx.status is Status.UNDECIDED
    assert "M=3" in dx.detail and "element 4 is outside 1..M = 1..3" in dx.detail


def test_a_line_undefined_at_one_size_is_undecided(tmp_path):
    """(M−3)(M+3)/(M²−9) is 1 for every M but 3, where it is 0/0: exact.py's ``if test.outcome
    is Zero.ZERO: continue`` with ZERO read as UNDEFINED skipped the undefined entries, and the
    line held."""
    form = form_of(tmp_path, ("dx[i]", f"(M - 3)*(M + 3)/(M*M - 9)*{CAFFE}"))
    dx = verdicts_of(form)["dx[i]"]
    assert dx.status is Status.UNDECIDED
    assert "M=3" in dx.detail and "division by zero" in dx.detail


# -- what a verdict says: the size, the residual, the mode, the scope -----------------------------------
def test_a_refuted_line_is_shown_at_the_first_size_of_three_or_more(tmp_path):
    """At M ≤ 2, x̂ = ±1 and counterexamples are degenerate: the sizes are decided M ≥ 3 first
    (exact.py ``_ordered``: ``s.m < 3`` flipped or its 3 changed), and a line refuted at one
    size is not decided again at the next (``if number in refuted: continue`` deleted showed
    the last size's counterexample).  The detail, the residual (truth − form, not truth + form),
    the mode and the scope say what was decided."""
    form = form_of(tmp_path, ("dbeta", "sum(g[k], k) + 1"))
    sizes = [Spec(Mode.PER_ACTIVATION, n=n, c=1) for n in (2, 3, 4)]
    (verdict,) = exact_check(form, sizes)
    assert verdict.status is Status.REFUTED
    assert verdict.counterexample is not None and verdict.counterexample.spec.m == 3
    assert verdict.detail == f"differs at {sizes[1].describe()}"
    assert verdict.residual == "-1"
    assert verdict.mode is Mode.PER_ACTIVATION
    assert verdict.scope == ", ".join(s.describe() for s in (sizes[1], sizes[2], sizes[0]))


def test_an_undecided_line_names_its_normal_form(tmp_path, monkeypatch):

    monkeypatch.setattr(exact_module, "find_witness", lambda *args, **kwargs: None)
    form = form_of(tmp_path, ("dbeta", "sum(g[k], k) + 1"))
    (verdict,) = exact_check(form, SIZES)
    assert verdict.status is Status.UNDECIDED
    assert verdict.detail.startswith("normal form of truth − form is not zero at ")
    assert verdict.detail.endswith("but no point was found where they differ; residual -1")
    # the reason of the first size left open (M = 3), not of the last one the loop saw (M = 4)
    assert SIZES[0].describe() in verdict.detail and SIZES[1].describe() not in verdict.detail


def test_a_step_that_holds_says_it_follows(tmp_path):
    """exact.py: the truth's sentence (radical eliminated …) is for lines against the truth only
    (``if pair.kind == "truth"`` forced true), and ``exact_check`` gives verdicts to the lines
    compared with a truth only (``if eq.kind != "quantity": continue`` deleted gave the local
    derivatives a second, "not checked" one)."""

    right = DOCUMENT.replace(
        r"\frac{1}{\sqrt{\sigma^2+\epsilon}}\left(",
        r"\frac{\gamma}{\sqrt{\sigma^2+\epsilon}}\left(",
        1,
    )
    path = tmp_path / "right-step.md"
    path.write_text(right, encoding="utf-8")
    form = load_document(path)
    (step,) = exact_step_check(form, SIZES[:1])
    assert step.status is Status.HOLDS
    assert step.detail == "follows from the line before (identically equal to it)"
    quantities = [e.number for e in form.equations if e.kind == "quantity"]
    assert [v.equation for v in exact_check(form, SIZES[:1])] == quantities


def test_a_step_from_a_line_that_cannot_be_evaluated_is_undecided(tmp_path):
    """The line before names x₄, which does not exist at M = 3: the step cannot be decided
    there (exact.py's ``if error:`` deleted compared the error message with the line)."""

    text = DOCUMENT.replace(
        r"\left(\frac{\partial L}{\partial y_i}",
        r"\left((N-4)x_4 + \frac{\partial L}{\partial y_i}",
        1,
    )
    assert text != DOCUMENT
    path = tmp_path / "x4.md"
    path.write_text(text, encoding="utf-8")
    (step,) = exact_step_check(load_document(path), SIZES[:1])
    assert step.status is Status.UNDECIDED
    assert "element 4 is outside 1..M = 1..3" in step.detail


# -- the randomized method: its two paths combined, and the ladder from agreement to a bound ----------
# A wrong line is refuted by both the F_p points and the rational point, so a bug in how one of
# them decides, or in how the two are combined, is masked by the other: these call the
# combination and the ladder directly.
def _random_form(tmp_path):
    return form_of(tmp_path, ("t", "sum(g[k], k)"), ("dbeta", "t"), name="r")


def test_the_two_paths_combine_worst_first_and_hold_only_together(tmp_path):
    """randomized.py ``_both``: refuted if either refutes (the rational verdict first: it has the
    counterexample), undecided if either is, holds only when both hold, with the larger bound.
    Each of the order's statuses swapped, the ``is`` test dropped, or a missing side taken as
    the whole answer, made a line refuted or undecided on one side hold."""
    from bnderive.verify.randomized import _both

    form = _random_form(tmp_path)
    eq = form.equations[1]

    def verdict(status, bound=None, detail=""):
        return Verdict(form.name, eq.label, eq.number, status, "random", "s", detail, bound=bound)

    holds, other = verdict(H, 1e-30, "field"), verdict(H, 1e-18, "rational")
    for bad in (R, U, N):
        assert _both(verdict(bad, detail="field"), other, 3, 5).status is bad
        assert _both(holds, verdict(bad, detail="rational"), 3, 5).status is bad
    both = _both(verdict(R, detail="field"), verdict(R, detail="rational"), 3, 5)
    assert both.detail == "rational"
    assert _both(verdict(U, detail="field"), verdict(R, detail="rational"), 3, 5).status is R
    assert _both(verdict(R, detail="field"), verdict(U, detail="rational"), 3, 5).status is R
    assert _both(verdict(N, detail="field"), verdict(U, detail="rational"), 3, 5).status is U
    combined = _both(holds, other, 3, 5)
    assert combined.status is H and combined.bound == 1e-18
    assert _both(verdict(H, None), other, 3, 5).bound == 1e-18
    assert _both(holds, verdict(H, None), 3, 5).bound == 1e-30
    assert _both(None, other, 3, 5) is other and _both(holds, None, 3, 5) is holds


def test_the_ladder_from_agreement_to_a_bound(tmp_path):
    """randomized.py ``_ladder``: a refuted line stays refuted, too few points or no degree or
    a degree not small against the sample is undecided, an auxiliary line is not checked, and a
    line holds with (d/(S − d))^T exactly."""
    from fractions import Fraction

    from bnderive.verify.lines import truth_of
    from bnderive.verify.randomized import _ladder

    form = _random_form(tmp_path)
    aux, dbeta = form.equations
    truth = truth_of(1, SIZES[0])
    common = dict(sample=1000, points="points", sample_text="1000", too_few="too few", seconds=0.0)

    def ladder(eq=dbeta, refuted=None, agreed=3, trials=3, degree=4):
        return _ladder(
            form, eq, truth, "s", Mode.PER_ACTIVATION, refuted=refuted, agreed=agreed,
            trials=trials, degree=degree, **common,
        )  # fmt: skip

    refutation = Verdict(form.name, dbeta.label, dbeta.number, R, "random", "s", "differs")
    assert ladder(refuted=refutation).status is R
    assert ladder(aux).status is N
    # a line compared with a reference, not a truth (a local derivative): not this method's
    assert ladder(dataclasses.replace(dbeta, kind="checked")) is None
    assert ladder(agreed=2).status is U and ladder(agreed=2).detail == "too few"
    assert ladder(degree=None).status is U
    assert ladder(degree=500).status is U  # 2·500 ≥ 1000: agreement proves nothing
    assert ladder(degree=499).status is H
    held = ladder(degree=4)
    assert held.status is H and held.trials == 3
    assert held.bound == float(Fraction(4, 996) ** 3)


def test_the_randomized_method_on_a_document_gives_verdicts_to_its_quantities_only(tmp_path):
    """randomized.py: the lines compared with a reference (the local derivative ∂σ²/∂xᵢ) are the
    exact and every-M methods' (``_ladder`` returns None for them and ``random_check`` leaves
    them out: ``if verdict is not None`` forced true put a None among the verdicts), and a
    verdict's scope says the size when none is given (``scope or …`` read as ``and``)."""
    from bnderive.verify.randomized import large_spec, random_check, random_rational_check

    path = tmp_path / "doc.md"
    path.write_text(DOCUMENT, encoding="utf-8")
    form = load_document(path)
    quantities = [e.number for e in form.equations if e.kind == "quantity"]
    spec = large_spec(Mode.PER_ACTIVATION, 64)
    for check in (random_check, random_rational_check):
        verdicts = check(form, spec, trials=2)
        assert [v.equation for v in verdicts] == quantities
        assert {v.scope for v in verdicts} == {"M = 64 randomized"}


def test_the_rational_points_count_what_they_compared(tmp_path):
    """randomized.py ``random_rational_check``: a wrong line is refuted at the first point and
    the verdict says which (``if eq.number in results: continue`` deleted, or ``trial += 1``
    changed, named a later or no trial); a line that cannot be evaluated at any point agreed
    at none and is undecided (``agreed`` starting at 1 made it hold)."""
    from bnderive.verify.randomized import large_spec, random_rational_check

    spec = large_spec(Mode.PER_ACTIVATION, 64)
    wrong = form_of(tmp_path, ("dbeta", "sum(g[k], k) + 1"), name="w")
    (verdict,) = random_rational_check(wrong, spec, trials=3)
    assert verdict.status is R and verdict.detail == "differs at a random point (trial 1)"
    assert verdict.trials == 1
    outside = form_of(tmp_path, ("dbeta", "sum(g[k], k) + (M - 64)*x[100]"), name="o")
    (verdict,) = random_rational_check(outside, spec, trials=1)
    assert verdict.status is U and verdict.trials == 0
    assert "element 100 is outside" in verdict.detail


def test_the_degree_counts_the_normalized_input_written_out(tmp_path):
    """randomized.py ``_degrees``: x̂ in a line is inlined as (x − μ)/√(σ²+ε) before its degree
    is bounded (``if stage.elementwise`` deleted bounded x̂ as a plain variable of degree 1: for
    dx = γ/√(σ²+ε)·x̂, a wrong line, the bound on truth − line fell from 11 to 10)."""
    from bnderive.verify.lines import truth_of
    from bnderive.verify.randomized import _degrees, large_spec

    spec = large_spec(Mode.PER_ACTIVATION, 64)
    for k, line in enumerate([CAFFE, "gamma/sqrt(var+eps)*xhat[i]"]):
        written = line.replace("xhat[i]", "(x[i]-mu)/sqrt(var+eps)").replace(
            "xhat[k]", "(x[k]-mu)/sqrt(var+eps)"
        )
        staged = form_of(tmp_path, ("dx[i]", line), name=f"s{k}")
        explicit = form_of(tmp_path, ("dx[i]", written), name=f"e{k}")
        truth = truth_of(1, staged.spec(spec))
        assert _degrees(staged, truth) == _degrees(explicit, truth)
    assert _degrees(staged, truth) == {1: 11}


def test_a_refutation_at_a_rational_point_can_be_replayed(tmp_path):
    """The counterexample names the seed of its point and the entry (randomized.py: the seed
    shown or the point drawn from another expression than ``seed·7919 + draws``, the entry of
    another set): drawing the point again from the shown seed gives the inputs shown."""
    from bnderive.verify.randomized import _random_truth, large_spec, random_rational_check
    from bnderive.verify.witness import describe_point, entry_label

    spec = large_spec(Mode.PER_ACTIVATION, 64)
    wrong = form_of(tmp_path, ("dbeta", "sum(g[k], k) + 1"), name="w")
    (verdict,) = random_rational_check(wrong, spec, trials=3)
    cex = verdict.counterexample
    assert cex is not None and cex.entry == entry_label(wrong.equations[0], spec, 0, 0)
    assert cex.channel == 0
    inputs = dict(cex.inputs)
    inst, _ = _random_truth(wrong.spec(spec), int(inputs.pop("seed")))
    assert describe_point(inst) == inputs


def test_the_rational_points_are_distinct_draws(tmp_path, monkeypatch):
    """T points are T draws (``draws += 1`` as ``+= 0`` drew the same point T times, and the
    bound (d/S)^T was claimed for one point)."""
    import bnderive.verify.randomized as randomized

    drawn = []
    original = randomized._random_truth

    def spy(spec, draw, order=1):
        drawn.append(draw)
        return original(spec, draw, order)

    monkeypatch.setattr(randomized, "_random_truth", spy)
    form = form_of(tmp_path, ("dbeta", "sum(g[k], k)"), name="d")
    (verdict,) = randomized.random_rational_check(
        form, randomized.large_spec(Mode.PER_ACTIVATION, 64), trials=3
    )
    assert verdict.status is H and verdict.trials == 3
    assert len(drawn) == 3 and len(set(drawn)) == 3


def _flaky(monkeypatch, broken):
    """The form's line cannot be evaluated where ``broken(path, count)`` says (path "field" or
    "rational", count the evaluations of the form so far on that path): the points it misses
    must not count as agreement."""
    import bnderive.verify.randomized as randomized

    where = {"path": "", "field": 0, "rational": 0}
    for name, path in (("_modular_truth", "field"), ("_random_truth", "rational")):
        original = getattr(randomized, name)

        def tagged(*args, original=original, path=path, **kwargs):
            where["path"] = path
            return original(*args, **kwargs)

        monkeypatch.setattr(randomized, name, tagged)
    run_lines = randomized.run_lines

    def run(definitions, env):
        definitions = list(definitions)
        out = run_lines(definitions, env)
        if len(definitions) == 1:  # the form's one line, not the truth's stages
            where[where["path"]] += 1
            if broken(where["path"], where[where["path"]]):
                out.line_errors[-1] = "no value at this point"
        return out

    monkeypatch.setattr(randomized, "run_lines", run)


@pytest.mark.parametrize(
    "path, trials, broken",
    [
        ("field", 2, lambda path, n: path == "field" and n == 2),  # one F_p point of two
        ("field", 1, lambda path, n: path == "field"),  # every F_p point
        ("rational", 2, lambda path, n: path == "rational" and n == 2),  # one rational of two
    ],
    ids=["one field point missed", "every field point missed", "one rational point missed"],
)
def test_a_point_where_the_line_has_no_value_is_no_agreement(
    tmp_path, monkeypatch, path, trials, broken
):
    """randomized.py: agreement counted twice (``+ 1`` as ``+ 2``), or a line never compared
    counted as one agreement (``agreed.get(eq.number, 0)`` as ``1``), made a line hold on
    fewer points than the bound is stated for: it is undecided, "too few points"."""
    from bnderive.verify.randomized import large_spec, random_check, random_rational_check

    form = form_of(tmp_path, ("dbeta", "sum(g[k], k)"), name="flaky")
    _flaky(monkeypatch, broken)
    spec = large_spec(Mode.PER_ACTIVATION, 64)
    check = random_check if path == "field" else random_rational_check
    (verdict,) = check(form, spec, trials=trials)
    assert verdict.status is U and verdict.trials < trials  # the points it agreed at


def test_the_bound_of_a_line_that_holds(tmp_path):
    """With two points of F_p the field's bound (d/(p − 1 − d))² is the larger one, and it is
    the one stated (randomized.py: the sample p − 1 changed); the degree is that of the
    numerator of truth − line over a common denominator, max(t_num + l_den, l_num + t_den)
    (the indices or the sum in ``_degrees`` changed)."""
    from fractions import Fraction

    from bnderive.core.derive import inline
    from bnderive.core.finite_field import P
    from bnderive.verify.degree_bound import degree_bound
    from bnderive.verify.lines import truth_of
    from bnderive.verify.randomized import _degrees, large_spec, random_check

    spec = large_spec(Mode.PER_ACTIVATION, 64)
    written = CAFFE.replace("xhat[i]", "(x[i]-mu)/sqrt(var+eps)").replace(
        "xhat[k]", "(x[k]-mu)/sqrt(var+eps)"
    )
    for k, (defines, line) in enumerate(
        [
            ("dx[i]", written),
            (
                "dbeta",
                "sum(g[k], k)/(1 + gamma*gamma) + sum(g[k], k)*gamma*gamma/(1 + gamma*gamma)",
            ),
        ]
    ):
        form = form_of(tmp_path, (defines, line), name=f"b{k}")
        truth = truth_of(1, form.spec(spec))
        eq = form.equations[0]
        t, m = degree_bound(truth.inline(eq.name)), degree_bound(inline(eq.expr, {}))
        d = max(t[0] + m[1], m[0] + t[1])
        assert _degrees(form, truth) == {1: d}
        for trials in (2, 3):  # F_p's bound the larger, then the rational point's
            (verdict,) = random_check(form, spec, trials=trials)
            assert verdict.status is H
            assert verdict.bound == max(
                float(Fraction(d, P - 1 - d) ** trials), float(Fraction(d, 2**62 - d))
            )
    # a line whose numerator is of lower degree than its denominator: 1/γ against Σg
    wrong = form_of(tmp_path, ("dbeta", "1/gamma"), name="inverse")
    assert _degrees(wrong, truth_of(1, wrong.spec(spec))) == {1: 2}
    # ... and one of higher degree: γ⁵ against Σ g x̂ = Σ g (x − μ)/r, degrees (2, 1)
    wrong = form_of(tmp_path, ("dgamma", "gamma**5"), name="power")
    assert _degrees(wrong, truth_of(1, wrong.spec(spec))) == {1: 6}
