"""Tests written for the survivors of the mutation run over the deciding modules (issue 10, 11).

``tools/mutate.py`` changed the exact method one small bug at a time; each test here fails for
at least one mutant that every other test let through, and its comment names the line and the
change.  Most feed a wrong or undefined form to a path that no earlier screen stops: a form that
names an element by number (entry 1 is not every entry), a line that cannot be evaluated at one
of the sizes, a value undefined at one size.  The rest fix what a verdict says it did.
"""

from __future__ import annotations

from pathlib import Path

from bnderive.core.spec import Mode, Spec
from bnderive.read.forms import load_form
from bnderive.verify.exact import equivariant, exact_check
from bnderive.verify.verdict import Status

# The Caffe form of dx (BVLC/caffe, batch_norm_layer.cpp, as tests/test_soundness_paths.py
# writes it), right in every mode this file checks.
CAFFE = "gamma/sqrt(var+eps)*(g[i] - sum(g[k],k)/M - xhat[i]*sum(g[k]*xhat[k],k)/M)"
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
    import bnderive.verify.exact as exact_module

    monkeypatch.setattr(exact_module, "find_witness", lambda *args, **kwargs: None)
    form = form_of(tmp_path, ("dbeta", "sum(g[k], k) + 1"))
    (verdict,) = exact_check(form, SIZES)
    assert verdict.status is Status.UNDECIDED
    assert verdict.detail.startswith("normal form of truth − form is not zero at ")
    assert verdict.detail.endswith("but no point was found where they differ; residual -1")


def test_a_step_that_holds_says_it_follows(tmp_path):
    """exact.py: the truth's sentence (radical eliminated …) is for lines against the truth only
    (``if pair.kind == "truth"`` forced true), and ``exact_check`` gives verdicts to the lines
    compared with a truth only (``if eq.kind != "quantity": continue`` deleted gave the local
    derivatives a second, "not checked" one)."""
    from bnderive.read.documents import load_document
    from bnderive.verify.exact import exact_step_check
    from tests.test_soundness_paths import DOCUMENT

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
