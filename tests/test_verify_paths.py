"""What ``check`` adds to the methods' verdicts, each path reached by an input made for it
(issue 10, item 11; the survivors of ``tools/mutate.py`` on verify/check.py, verify/mistakes.py
and verify/residual.py).

* ``CheckResult.final_status``/``final_exit_code``: ``--strict`` turns "holds" into "undecided"
  when a line of a document was not read or not checked, and nothing else.
* ``find_mistakes``: refuted lines grouped into independent mistakes: a faithful step from a wrong
  line, the right formula applied to a wrong value, or a mistake of its own.  The verdicts are
  written by hand (each status where the grouping turns on it); whether a line is right given
  the true values is decided by the exact method, as in ``check``.
* ``index_residual``: truth − line in index notation.  Each line is the true dx plus a term whose
  value is known by construction (c·(x_i − μ), Σ_k x_k / M = μ, Σ_k (x_k − μ)²/M = σ², …), so the
  residual must be minus that term, written in the centred variables the module promises.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest
import sympy as sp

from bnderive.core import notation as N
from bnderive.core.spec import Mode
from bnderive.read.forms import load_form
from bnderive.verify.check import CheckResult
from bnderive.verify.mistakes import Mistake, find_mistakes
from bnderive.verify.residual import index_residual
from bnderive.verify.verdict import Status, Verdict
from tests.hash_seeds import printed_under_seeds

H, R, U = Status.HOLDS, Status.REFUTED, Status.UNDECIDED


def verdict(status: Status, equation: int | None = 1, form: str = "f", **kw) -> Verdict:
    return Verdict(form, "dx", equation, status, "exact", "M = 2..4 exact", **kw)


def document(*statuses: str) -> SimpleNamespace:
    """A form read from a document: its lines' statuses ("holds", "not read", "not checked")."""
    return SimpleNamespace(name="doc", lines=[SimpleNamespace(status=s) for s in statuses])


# -- check.py: --strict -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("statuses", "lines", "lenient", "strict"),
    [
        ((H,), ("holds", "not checked"), (H, 0), (U, 3)),
        ((H,), ("holds", "not read"), (H, 0), (U, 3)),
        ((H,), ("holds", "holds"), (H, 0), (H, 0)),
        ((R, H), ("holds", "not checked"), (R, 1), (R, 1)),
        ((U, H), ("holds", "not checked"), (U, 3), (U, 3)),
        ((H,), (), (H, 0), (H, 0)),
    ],
)
def test_strict_turns_holds_into_undecided_only_where_a_line_was_left_out(
    statuses, lines, lenient, strict
):
    """Every condition of ``final_status``/``final_exit_code`` (``strict and status is HOLDS
    and any(left_out)``): a refuted or undecided result stays what it is; a holds with every
    line checked stays holds; the default is lenient."""
    result = CheckResult((document(*lines),), [verdict(s) for s in statuses])
    assert (result.final_status(), result.final_exit_code()) == lenient
    assert (result.final_status(strict=False), result.final_exit_code(strict=False)) == lenient
    assert (result.final_status(strict=True), result.final_exit_code(strict=True)) == strict


def test_a_toml_form_has_no_lines_left_out():
    result = CheckResult((SimpleNamespace(name="f"),), [verdict(H)])
    assert result.left_out() == {}
    assert result.final_exit_code(strict=True) == 0
    assert result.to_dict()["status"] == "holds" and result.to_dict()["exit_code"] == 0


# -- mistakes.py: where mistakes come in --------------------------------------------------------------
#: The staged form's dσ², dμ, dx (derivations/staged.toml).
DVAR = "sum(dxhat[k]*(x[k] - mu), k) * (-1/2) * (var + eps)**(-3/2)"
DMU = "sum(dxhat[k] * (-1)/sqrt(var + eps), k) + dvar * sum(-2*(x[k] - mu), k)/M"
DX = "dxhat[i]/sqrt(var + eps) + dvar*2*(x[i] - mu)/M + dmu/M"


def form_of(
    tmp_path: Path, *lines: tuple[str, str], conventions: str = "", name: str = "f", norm: str = ""
):
    text = f"name = '{name}'\n" + (f"norm = '{norm}'\n" if norm else "")
    text += f"[conventions]\n{conventions}\n" if conventions else ""
    text += "".join(
        f"[[equations]]\ndefines = '{defines}'\nexpr = '{expr}'\n" for defines, expr in lines
    )
    path = tmp_path / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return load_form(path)


def staged(tmp_path: Path, dvar: str = DVAR, dmu: str = DMU, dx: str = DX):
    """Lines 1 dx̂, 2 dσ², 3 dμ, 4 dx."""
    return form_of(
        tmp_path, ("dxhat[i]", "g[i]*gamma"), ("dvar", dvar), ("dmu", dmu), ("dx[i]", dx)
    )


HALF_LOST = DVAR.replace("(-1/2)", "(-1)")  # the factor ½ of dσ² lost


def test_a_line_right_given_a_wrong_value_inherits_its_mistake(tmp_path):
    """dσ² wrong; dμ and dx the right formulas, so wrong only through dσ² (dx through dμ too):
    one mistake, at line 2, inherited by lines 3 and 4 (the last wrong line a line uses)."""
    form = staged(tmp_path, dvar=HALF_LOST)
    verdicts = [verdict(R, n) for n in (2, 3, 4)] + [verdict(H, 1)]
    assert find_mistakes(form, verdicts) == [Mistake(2, follows=[], inherits=[3, 4])]


def test_a_line_wrong_given_the_true_values_is_a_mistake_of_its_own(tmp_path):
    """dx with γ's factor 2 lost in its first term is wrong even with the true dσ² and dμ in
    place: a second mistake, named although an earlier one exists."""
    form = staged(tmp_path, dvar=HALF_LOST, dx=DX.replace("dxhat[i]/", "2*dxhat[i]/"))
    verdicts = [verdict(R, n) for n in (2, 3, 4)]
    assert find_mistakes(form, verdicts) == [Mistake(2, inherits=[3]), Mistake(4)]


def test_a_faithful_step_from_a_wrong_line_follows_it(tmp_path):
    """A step verdict that holds (line 3 follows from line 2) makes line 3 a faithful step of
    line 2's mistake, whatever the values; a step refuted by one method does not."""
    form = staged(tmp_path, dvar=HALF_LOST, dmu=DMU + " + 1")  # dμ wrong of its own too
    step = verdict(H, 3, follows=2)
    verdicts = [verdict(R, 2), verdict(R, 3), step]
    assert find_mistakes(form, verdicts) == [Mistake(2, follows=[3])]
    refuted_step = verdict(R, 3, follows=2)
    assert find_mistakes(form, [*verdicts, refuted_step]) == [Mistake(2), Mistake(3)]
    undecided_step = verdict(U, 3, follows=2)  # neither holds nor refutes: not shown to follow
    assert find_mistakes(form, [verdict(R, 2), verdict(R, 3), undecided_step]) == [
        Mistake(2),
        Mistake(3),
    ]


def test_a_line_inherits_from_the_wrong_line_it_uses_not_the_last_wrong_line(tmp_path):
    """dσ² wrong (line 2), dβ wrong of its own (line 3), dx right given the true values (line
    5): dx inherits dσ²'s mistake, the last wrong line it uses, not dβ's, the last wrong line
    before it (``_uses`` made always true by a mutant: ``if any(…)`` forced, ``and`` → ``or``,
    ``==`` → ``!=``, attributed dx to dβ)."""
    form = form_of(
        tmp_path,
        ("dxhat[i]", "g[i]*gamma"),
        ("dvar", HALF_LOST),
        ("dbeta", "sum(g[k], k) + 1"),
        ("dmu", DMU),
        ("dx[i]", DX),
    )
    verdicts = [verdict(R, n) for n in (2, 3, 5)] + [verdict(H, n) for n in (1, 4)]
    assert find_mistakes(form, verdicts) == [Mistake(2, inherits=[5]), Mistake(3)]


def test_a_step_from_a_line_that_holds_is_no_faithful_step(tmp_path):
    """Line 3 follows from line 1 (a step that holds), but line 1 is right: line 3's mistake is
    its own (``before is not None and before in owner`` with ``or`` looked line 1 up among the
    mistakes and crashed)."""
    form = staged(tmp_path, dmu=DMU + " + 1")
    verdicts = [verdict(H, 1), verdict(R, 3), verdict(H, 3, follows=1)]
    assert find_mistakes(form, verdicts) == [Mistake(3)]


def test_only_the_forms_own_refuted_lines_count(tmp_path):
    form = staged(tmp_path, dvar=HALF_LOST)
    assert find_mistakes(form, [verdict(H, n) for n in (1, 2, 3, 4)]) == []
    assert find_mistakes(form, [verdict(R, 2, form="other"), verdict(R, None)]) == []
    assert find_mistakes(form, [verdict(U, 2), verdict(R, 4)]) == [Mistake(4)]


def test_a_line_that_uses_no_wrong_value_is_its_own_mistake(tmp_path):
    """dx̂ wrong (γ lost) and dσ² wrong of its own: dσ² uses dx̂, but with the true dx̂ it is
    still wrong: two mistakes.  And dβ, which uses no earlier line, never inherits."""
    form = form_of(
        tmp_path,
        ("dxhat[i]", "g[i]"),
        ("dvar", HALF_LOST),
        ("dbeta", "sum(g[k], k) + 1"),
    )
    verdicts = [verdict(R, n) for n in (1, 2, 3)]
    assert find_mistakes(form, verdicts) == [Mistake(1), Mistake(2), Mistake(3)]
    right_dvar = form_of(tmp_path, ("dxhat[i]", "g[i]"), ("dvar", DVAR), name="g")
    assert find_mistakes(right_dvar, [verdict(R, 1, form="g"), verdict(R, 2, form="g")]) == [
        Mistake(1, inherits=[2])
    ]


# -- residual.py: truth − line in index notation ------------------------------------------------------
CAFFE = "gamma/sqrt(var+eps)*(g[i] - sum(g[k],k)/M - xhat[i]*sum(g[k]*xhat[k],k)/M)"
_NAMES = {"x": N.x, "k": sp.Symbol("k", integer=True), "mu": N.mu, "var": N.var, "eps": N.eps}
I = sp.Symbol("i", integer=True)  # the free index of an elementwise line
_NAMES |= {"M": N.M, "ms": N.ms, "i": I, "g": N.g, "gamma": N.gamma}


def residual_of(tmp_path: Path, line: str, conventions: str = "") -> sp.Expr:
    """The residual of dx = ``line``; ``conventions`` "eps_zero": ε = 0 (a post that never
    writes ε; documents only, so set on the form here)."""
    if conventions == "eps_zero":
        form = dataclasses.replace(form_of(tmp_path, ("dx[i]", line)), eps_zero=True)
    else:
        form = form_of(tmp_path, ("dx[i]", line), conventions=conventions)
    result = index_residual(form, form.equations[0])
    assert result is not None
    return result


@pytest.mark.parametrize(
    ("extra", "value", "conventions"),
    [
        ("3*(x[i] - mu)", "3*x[i] - 3*mu", ""),  # x_i = u_i + μ and back
        ("sum(x[k], k)/M", "mu", ""),  # Σ u = 0: Σ x = Mμ
        ("sum((x[k] - mu)**2, k)/M", "var", ""),  # Σ u² = Mσ²
        ("sum(x[k]**2, k)", "M*(mu**2 + var)", ""),  # Σ (u + μ)² = Mσ² + Mμ²
        ("sum((x[k] - mu)**3, k)", "Sum((x[k] - mu)**3, (k, 1, M))", ""),  # kept as a sum
        ("1/sqrt(var + eps)", "1/sqrt(var + eps)", ""),  # the root named back
        ("sum((x[k] - mu)**2, k)", "(M - 1)*var", 'variance = "unbiased"'),  # Bessel
        ("sum(x[k], k)/M", "mu", 'variance = "unbiased"'),
        ("1/sqrt(var)", "1/sqrt(var)", 'epsilon = "outside"'),  # σ² = r²
        ("sum((x[k] - mu)**2, k)/M", "var", 'epsilon = "outside"'),
        ("sum((x[k] - mu)**2, k)/M", "var", "eps_zero"),
        # eval mode: μ and σ² are the running statistics, Σ(x − μ) is no longer 0
        ("sum(x[k], k)/M", "Sum(x[k] - mu, (k, 1, M))/M + mu", "training = false"),
        ("sum((x[k] - mu)**2, k)", "Sum((x[k] - mu)**2, (k, 1, M))", "training = false"),
        ("1/sqrt(var)", "1/sqrt(var)", "eps_zero"),
    ],
)
def test_a_term_added_to_a_line_is_subtracted_from_its_residual(
    tmp_path, extra, value, conventions
):
    """truth − (line + t) = (truth − line) − t: the residual of the line with ``extra`` added
    minus that of the line alone is minus the term's value, which is known by construction (the
    reductions Σu = 0, Σu² = Mσ² or (M − 1)σ², the root eliminated and named back)."""
    base = residual_of(tmp_path, CAFFE, conventions)
    more = residual_of(tmp_path, f"{CAFFE} + {extra}", conventions)
    want = sp.sympify(value, locals=_NAMES)
    assert sp.simplify(more - base + want) == 0, (more, base)


def test_the_residual_of_a_right_line_is_zero_and_of_a_wrong_one_in_centred_form(tmp_path):
    assert residual_of(tmp_path, CAFFE) == 0
    assert residual_of(tmp_path, f"{CAFFE} + 3*(x[i] - mu)") == 3 * N.mu - 3 * N.x[I]
    assert residual_of(tmp_path, f"{CAFFE} + sum(x[k], k)/M") == -N.mu
    assert residual_of(tmp_path, f"{CAFFE} - 1/sqrt(var + eps)") == 1 / sp.sqrt(N.var + N.eps)
    half = residual_of(tmp_path, f"{CAFFE} + gamma*g[i]/sqrt(var + eps)")
    assert half == -N.gamma * N.g[I] / sp.sqrt(N.var + N.eps)


#: Off by γ·u_i·(Σ_k u_k g_k − u_i Σ_k g_k)/(M r³), r = √(σ²+ε): two sums in one factor,
#: so the factor is written with either one first (bn_part2_2023.md, line 166, is off by this).
TWO_SUMS = f"{CAFFE} + gamma*(x[i]-mu)*(sum(g[k]*(x[k]-mu),k) - (x[i]-mu)*sum(g[k],k))" + (
    "/(M*(var+eps)**(3/2))"
)
_PRINT_RESIDUAL = (
    "import sys, sympy\n"
    "from bnderive.read.forms import load_form\n"
    "from bnderive.verify.residual import index_residual\n"
    "form = load_form(sys.argv[1])\n"
    "print(sympy.srepr(index_residual(form, form.equations[0])))\n"
)


def test_the_residual_is_written_the_same_way_whatever_the_hash_seed(tmp_path):
    """``check`` printed −γ·u_i·(Σ u g − u_i Σ g)/… in one run and γ·u_i·(u_i Σ g − Σ u g)/…
    in the next: the sums' stand-ins for ``factor`` were made in the order of a set of the sums,
    which follows the string hashes, and ``factor`` chooses the sign by the stand-ins' order.
    A fresh process per seed (the hashes are fixed for a process's life); with the stand-ins
    made in set order, seeds 0 and 1 gave the two writings (SymPy 1.14), and six seeds make
    a coincidence unlikely on another SymPy."""
    form_of(tmp_path, ("dx[i]", TWO_SUMS))
    printed = printed_under_seeds(_PRINT_RESIDUAL, [str(tmp_path / "f.toml")], 6)
    assert len(printed) == 1, printed
    assert "Sum" in printed.pop()  # a residual with the sums, not None or 0


def test_a_line_without_a_truth_has_no_residual(tmp_path):
    """A name of the form's own has no truth: no residual.  A line that uses such names has
    every line before it inlined (``if line is eq: break`` forced true, or flipped, stopped
    after line 1 and left t in the residual)."""
    form = form_of(tmp_path, ("s", "var + eps"), ("t", "1/sqrt(s)"), ("dx[i]", f"{CAFFE} + t"))
    assert index_residual(form, form.equations[0]) is None
    assert index_residual(form, form.equations[1]) is None
    assert sp.simplify(index_residual(form, form.equations[2]) + 1 / sp.sqrt(N.var + N.eps)) == 0


#: RMSNorm's dx through r = 1/√(ms + ε) (derivations/rmsnorm_rstd.toml, rinv inlined).
RMS_DX = "(ms + eps)**(-1/2)*g[i]*gamma[i] - (ms + eps)**(-3/2)/M*x[i]*sum(g[k]*gamma[k]*x[k], k)"


@pytest.mark.parametrize(
    ("extra", "value", "conventions"),
    [
        ("sum(x[k]**2, k)", "M*ms", ""),  # RMSNorm's statistic: Σ x² = M·ms
        ("sum(x[k]**2, k)", "M*ms", 'epsilon = "outside"'),
        ("sum(x[k]**3, k)", "Sum(x[k]**3, (k, 1, M))", ""),  # kept as a sum
        ("3*x[i]", "3*x[i]", ""),  # x is not centred: RMSNorm has no μ
    ],
)
def test_rmsnorm_residuals_are_in_its_own_terms(tmp_path, extra, value, conventions):
    base = form_of(tmp_path, ("dx[i]", RMS_DX), conventions=conventions, norm="rms")
    more = form_of(
        tmp_path, ("dx[i]", f"{RMS_DX} + {extra}"), conventions=conventions, norm="rms", name="g"
    )
    difference = index_residual(more, more.equations[0]) - index_residual(base, base.equations[0])
    assert sp.simplify(difference + sp.sympify(value, locals=_NAMES)) == 0, difference
    assert N.mu not in difference.free_symbols


# -- check.py: check_forms adds diagnoses and residuals ----------------------------------------------
def test_check_forms_diagnoses_the_refuted_lines_and_writes_their_residuals(tmp_path):
    """dσ² with its ½ lost (a known mistake), dμ off by 1 (no known mistake), dx wrong through
    both: the three are refuted, dσ² alone is diagnosed, and each wrong line has its residual
    (dμ's is exactly −1: its dσ² term multiplies Σ(x − μ) = 0).  A right form gets neither."""
    from bnderive.verify.check import check_forms

    form = staged(tmp_path, dvar=HALF_LOST, dmu=DMU + " + 1")
    result = check_forms([form], (Mode.PER_ACTIVATION,), ("exact",), n_values=(2, 3))
    assert [(v.equation, v.status) for v in result.verdicts] == [(1, H), (2, R), (3, R), (4, R)]
    assert result.status is R and result.exit_code == 1
    assert list(result.diagnoses) == [("f", 2, "dvar")]
    assert [m.by for m in result.diagnoses[("f", 2, "dvar")]] == [("staged/half-doubled",)]
    assert list(result.residuals) == [("f", 2), ("f", 3), ("f", 4)]
    assert result.residuals[("f", 3)] == -1
    lost = "gamma*Sum((x[k] - mu)*g[k], (k, 1, M))/(2*(eps + var)**(3/2))"
    assert sp.simplify(result.residuals[("f", 2)] - sp.sympify(lost, locals=_NAMES)) == 0
    for number in (2, 4):
        want = index_residual(form, form.equations[number - 1])
        assert sp.simplify(result.residuals[("f", number)] - want) == 0
    data = result.to_dict()
    assert data["status"] == "refuted" and data["exit_code"] == 1
    assert [(d["equation"], d["quantity"]) for d in data["diagnoses"]] == [(2, "dvar")]
    assert [r["equation"] for r in data["residuals"]] == [2, 3, 4]
    assert data["residuals"][1]["truth_minus_line"] == "-1"

    right = check_forms([staged(tmp_path)], (Mode.PER_ACTIVATION,), ("exact",), n_values=(2, 3))
    assert right.status is H and right.diagnoses == {} and right.residuals == {}


def test_a_form_whose_every_line_is_refuted_is_diagnosed_too(tmp_path):
    """One line, refuted: the early returns of ``_diagnoses`` and ``_residuals`` (nothing
    refuted, nothing to explain) must not fire (``is`` → ``is not``, or REFUTED → HOLDS in their
    test, returned nothing when no line held)."""
    from bnderive.verify.check import check_forms

    dvar = HALF_LOST.replace("dxhat[k]", "g[k]*gamma")
    form = form_of(tmp_path, ("dvar", dvar))
    result = check_forms([form], (Mode.PER_ACTIVATION,), ("exact",), n_values=(2, 3))
    assert [v.status for v in result.verdicts] == [R]
    assert [m.by for m in result.diagnoses[("f", 1, "dvar")]] == [("staged/half-doubled",)]
    lost = "gamma*Sum((x[k] - mu)*g[k], (k, 1, M))/(2*(eps + var)**(3/2))"
    assert sp.simplify(result.residuals[("f", 1)] - sp.sympify(lost, locals=_NAMES)) == 0


# -- check.py: which lines get a residual, and in which mode a line is diagnosed ---------------------
def test_residuals_are_written_for_refuted_and_undecided_lines_only(tmp_path):
    """The statuses are written by hand: a wrong line only undecided (every-M not proved, no
    size refutes it) still gets its residual; a line that holds at the sizes checked gets none,
    even where its index form differs; an undecided line whose residual is 0 (a right line) or
    cannot be written (a name of the form's own) gets none either."""
    from bnderive.verify.check import _residuals
    from bnderive.verify.summary import line_results

    wrong = form_of(tmp_path, ("dx[i]", f"{CAFFE} + 3*(x[i] - mu)"), name="wrong")
    right = form_of(tmp_path, ("dx[i]", CAFFE), name="right")
    own = form_of(tmp_path, ("s", "var + eps + 1"), name="own")
    forms = [wrong, right, own]
    assert index_residual(right, right.equations[0]) == 0
    assert index_residual(own, own.equations[0]) is None

    def residuals(*verdicts: Verdict) -> dict:
        return _residuals(forms, line_results(list(verdicts)))

    only_undecided = residuals(verdict(U, 1, form="wrong"))
    assert only_undecided == {("wrong", 1): 3 * N.mu - 3 * N.x[I]}
    assert residuals(verdict(R, 1, form="wrong")) == only_undecided
    assert residuals(verdict(H, 1, form="wrong"), verdict(U, 1, form="right")) == {}
    assert residuals(verdict(U, 1, form="own"), verdict(H, 1, form="right")) == {}
    assert residuals(verdict(H, 1, form="right")) == {}


def test_a_wrong_line_every_m_cannot_decide_has_its_residual(tmp_path):
    """check with the every-M method alone: the wrong dx is not proved and not refuted (the
    method never refutes), so the form is undecided, and its residual is written."""
    from bnderive.verify.check import check_forms

    form = form_of(tmp_path, ("dx[i]", f"{CAFFE} + 3*(x[i] - mu)"))
    result = check_forms([form], (Mode.PER_ACTIVATION,), ("general",))
    assert [line.status for line in result.lines] == [U]
    assert result.status is U and result.exit_code == 3
    assert result.residuals == {("f", 1): 3 * N.mu - 3 * N.x[I]}
    assert result.diagnoses == {}


def _dvar(status: Status, mode: Mode | None, equation: int | None = 1, form: str = "f") -> Verdict:
    return Verdict(form, "dvar", equation, status, "exact", "M = 2..4 exact", mode=mode)


def test_a_refuted_line_is_diagnosed_in_the_mode_it_was_refuted_in(tmp_path):
    """dσ² with its ½ lost, plus a term that vanishes at exactly the per-activation diagnosis
    sizes: it equals the known mistake there and not at the spatial sizes.  Diagnosed in the
    verdict's mode (the form's first mode when the verdict names none), never in another."""
    from bnderive.verify.check import _diagnoses
    from bnderive.verify.diagnose import diagnosis_specs

    plain = form_of(tmp_path, ("dvar", "1"), name="plain")
    per = [s.m for s in diagnosis_specs(Mode.PER_ACTIVATION, plain)]
    spatial = [s.m for s in diagnosis_specs(Mode.SPATIAL, plain)]
    assert not set(per) & set(spatial)  # the term below is nonzero at every spatial size
    vanishing = "*".join(f"(M - {m})" for m in per)
    dvar = HALF_LOST.replace("dxhat[k]", "g[k]*gamma") + f" + {vanishing}*gamma"
    form = form_of(tmp_path, ("dvar", dvar))
    assert form.modes == (Mode.PER_ACTIVATION, Mode.SPATIAL)

    named = _diagnoses([form], [_dvar(R, Mode.PER_ACTIVATION)])
    assert [m.by for m in named[("f", 1, "dvar")]] == [("staged/half-doubled",)]
    assert _diagnoses([form], [_dvar(R, None)]) == named  # the form's first mode
    assert _diagnoses([form], [_dvar(R, Mode.SPATIAL)]) == {}


def test_a_refuted_verdict_without_a_line_of_a_given_form_is_not_diagnosed(tmp_path):
    """A refuted verdict that names no equation (as check-impl's do), or a form that was not
    given, has nothing to diagnose: no diagnosis, and no error."""
    from bnderive.verify.check import _diagnoses

    form = form_of(tmp_path, ("dvar", HALF_LOST.replace("dxhat[k]", "g[k]*gamma")))
    assert _diagnoses([form], [_dvar(R, Mode.PER_ACTIVATION, equation=None)]) == {}
    assert _diagnoses([form], [_dvar(R, Mode.PER_ACTIVATION, form="other")]) == {}
    assert list(_diagnoses([form], [_dvar(R, Mode.PER_ACTIVATION)])) == [("f", 1, "dvar")]


# -- residual.py: a document's checked lines, and ε = 0 ------------------------------------------------
def document_of(tmp_path: Path, front: str, *lines: str):
    from bnderive.read.documents import load_document

    body = " \\\\\n".join(lines)
    text = f"---\nname: doc\nmode: per-activation\n{front}---\n$$\n\\begin{{aligned}}\n{body}\n"
    path = tmp_path / "doc.md"
    path.write_text(text + "\\end{aligned}\n$$\n", encoding="utf-8")
    return load_document(path)


DVAR_DX = r"\frac{\partial \sigma^2}{\partial x_i} &= \frac{2(x_i-\mu)}{N%s}"


def test_a_local_derivative_s_residual_is_taken_against_its_reference(tmp_path):
    """A document's ∂σ²/∂x_i is checked against the graph's (its reference line): the residual
    of Bessel's 1/(N − 1) in a biased file is 2u/M − 2u/(M − 1) = −2u/(M(M − 1)); the right
    one's is 0, and a line with no reference and no truth has none."""
    form = document_of(tmp_path, "", DVAR_DX % "", DVAR_DX % "-1")
    checked = [eq for eq in form.equations if eq.kind == "checked"]
    assert len(checked) == 2
    assert index_residual(form, checked[0]) == 0
    want = -2 * (N.x[I] - N.mu) / (N.M * (N.M - 1))
    assert sp.simplify(index_residual(form, checked[1]) - want) == 0
    (reference, *_) = [eq for eq in form.equations if eq.kind == "reference"]
    assert index_residual(form, reference) is None


@pytest.mark.parametrize(("extra", "residual"), [(r"+ 3\epsilon", 0), (r"+ \epsilon - 1", 1)])
def test_a_document_with_eps_zero_reads_its_eps_as_zero(tmp_path, extra, residual):
    """``epsilon: none`` (ε = 0) with a line that still writes ε: ε is 0 in the residual."""
    line = r"\frac{\partial L}{\partial \beta} &= \sum_i \frac{\partial L}{\partial y_i} " + extra
    form = document_of(tmp_path, "epsilon: none\n", line)
    (dbeta,) = [eq for eq in form.equations if eq.name == "dbeta"]
    assert index_residual(form, dbeta) == residual
