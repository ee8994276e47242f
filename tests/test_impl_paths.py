"""Every path of check-impl's comparison that turns numbers into a verdict, reached by a result
made for it (issue 10, item 11).

``_compare`` decides from two runs of the user's code per case: the exact run (rational inputs,
rational arithmetic) and the float run.  A right file reaches only a few of its paths, and a
wrong one is usually stopped by the first (the exact run differs and the float run is outside its
bound).  So the runs are written here by hand, as the child would send them, each one wrong (or
right) in exactly the way that leads to one decision: exact and equal; exact and different with
the float result outside or inside its bound (a float constant the exact run could not read as
written); no exact run and the float64 result within its bound, between float64's and float32's
bounds, or outside both; a narrower dtype outside its own bound; a float16 result too imprecise
to tell from a known mistake.  The comments name the mutants of ``tools/mutate.py`` each test
kills.  One test runs a real file through the child: right code whose float constant the exact
run takes at its binary value must hold, numerically (``if not float_ok`` forced true refuted it).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from bnderive.core.spec import Mode
from bnderive.usercode.check_impl import (
    INSIDE,
    RUNNING_CONVENTIONS,
    Case,
    _compare,
    _running_bounds,
    case_bounds,
    check_impl,
    check_running,
    default_shapes,
    make_case,
    nearest_mistake,
    truth_at,
)
from bnderive.verify.verdict import Status, Verdict

CALLS = {"forward": None, "backward": ["bn_backward"]}
QUANTITIES = ("dx", "dgamma", "dbeta")
#: What a run's value of one quantity is made from: the exact truth (Fractions), its float64
#: value and the float64 bound of every entry at the case.
Make = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def cases() -> list[Case]:
    """The default per-activation cases check-impl uses: 3×1, 4×1, 5×1, 3×2."""
    return [make_case(spec, k + 1) for k, spec in enumerate(default_shapes(Mode.PER_ACTIVATION))]


def run_at(
    case: Case,
    *,
    exact: dict[str, Make] | None = None,
    floats: dict[str, Make] | None = None,
    no_exact: str | None = None,
    dtype: str = "float64",
) -> dict[str, Any]:
    """A run of a backward at ``case`` as the child sends it: each quantity the truth unless
    ``exact``/``floats`` say how to make it; ``no_exact`` is why the exact run failed (then it
    has no values); ``dtype`` the dtype of dx's float result."""
    truth = truth_at(case)
    bounds = case_bounds(case, dtype)
    made_exact, made_float = {}, {}
    for q in QUANTITIES:
        t, tf, b = truth[q], truth[q].astype(float), bounds[q].reshape(truth[q].shape)
        made_exact[q] = np.asarray((exact or {}).get(q, lambda t, tf, b: t)(t, tf, b)).tolist()
        made_float[q] = np.asarray((floats or {}).get(q, lambda t, tf, b: tf)(t, tf, b)).tolist()
    return {
        "float": {"bn_backward": made_float},
        "exact": None if no_exact else {"bn_backward": made_exact},
        "why_not_exact": no_exact,
        "conversions": {},
        "precision": {} if dtype == "float64" else {"bn_backward/dx": dtype},
    }


def decide(runs: list[dict[str, Any]], at: list[Case] | None = None) -> dict[str, Verdict]:
    verdicts, _ = _compare("f.py", CALLS, at or cases(), runs)
    return {v.quantity: v for v in verdicts}


def at(entry: tuple[int, ...], by: Callable[[Any, float], Any], *, exact: bool = False) -> Make:
    """The truth, exact or in float64, changed at one entry: ``by(value, bound there)``."""

    def make(t: np.ndarray, tf: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = (t if exact else tf).copy()
        out[entry] = by(out[entry], b[entry])
        return out

    return make


# -- the exact run decides ----------------------------------------------------------------------------
def test_exact_equality_at_every_case_holds_exactly():
    """``tally.numeric == 0`` negated or its branch deleted: a result equal to the truth in
    rational arithmetic would be called numeric evidence."""
    verdicts = decide([run_at(c) for c in cases()])
    for q in QUANTITIES:
        assert verdicts[q].status is Status.HOLDS
        assert verdicts[q].method == "exact"
        assert verdicts[q].scope == "3×1, 4×1, 5×1, 3×2 exact"
        assert "equal to the truth in exact rational arithmetic" in verdicts[q].detail


def test_an_exact_difference_with_the_float_result_outside_its_bound_is_refuted_exactly():
    """A dx wrong by 1/1000 at two entries of the second case (and its float result at the
    first): refuted in exact arithmetic at the first, with both exact values (``differs[0]`` →
    ``differs[-1]`` named the second).  Kills ``len(differs) ==
    0`` flipped, the exact branch deleted, and ``if not float_ok`` deleted (which let the wrong
    result fall through to the numeric comparison)."""
    all_cases = cases()
    runs = [run_at(c) for c in all_cases]
    wrong_at_2_and_3 = [
        at(e, lambda v, b: v + Fraction(1, 1000), exact=True) for e in ((2, 0), (3, 0))
    ]
    runs[1] = run_at(
        all_cases[1],
        exact={"dx": lambda t, tf, b: wrong_at_2_and_3[1](wrong_at_2_and_3[0](t, tf, b), tf, b)},
        floats={"dx": at((2, 0), lambda v, b: v + 1e-3)},
    )
    v = decide(runs)["dx"]
    assert v.status is Status.REFUTED and v.method == "exact"
    assert v.counterexample is not None and v.counterexample.entry == "dx[2, 0]"
    assert v.counterexample.spec == all_cases[1].spec
    truth = truth_at(all_cases[1])["dx"][2, 0]
    assert v.counterexample.form == str(truth + Fraction(1, 1000))
    assert v.counterexample.truth == str(truth)
    assert "in exact rational arithmetic" in v.detail
    assert decide(runs)["dgamma"].status is Status.HOLDS


def test_the_first_refutation_is_kept():
    """A dx wrong in the first case and (differently) in the third: the counterexample is the
    first one; ``if tally.refuted is not None: continue`` deleted compared on and replaced it."""
    all_cases = cases()
    runs = [run_at(c) for c in all_cases]
    for k, entry in ((0, (1, 0)), (2, (3, 0))):
        runs[k] = run_at(
            all_cases[k],
            exact={"dx": at(entry, lambda v, b: v * 2 + 1, exact=True)},
            floats={"dx": at(entry, lambda v, b: v * 2 + 1)},
        )
    v = decide(runs)["dx"]
    assert v.status is Status.REFUTED
    assert v.counterexample is not None and v.counterexample.spec == all_cases[0].spec
    assert v.counterexample.entry == "dx[1, 0]"


def test_an_exact_difference_within_float_rounding_holds_numerically_with_the_reason():
    """The exact run off by one part in 10¹⁷ (what a float constant taken at its binary value
    does) while the float result equals the truth: the float result decides, and the verdict says
    why it is evidence, not a proof.  ``if not float_ok`` forced true refuted right code."""
    tiny = at((0, 0), lambda v, b: v * (1 + Fraction(1, 10**17)), exact=True)
    runs = [run_at(c, exact={"dx": tiny}) for c in cases()]
    v = decide(runs)["dx"]
    assert v.status is Status.HOLDS and v.method == "numeric"
    assert "a float constant of the code was not read exactly" in v.detail
    assert "at 4 of 4 shapes" in v.detail
    assert v.scope == "3×1, 4×1, 5×1, 3×2 numeric"
    assert decide(runs)["dgamma"].method == "exact"


# -- no exact run: float64 decides --------------------------------------------------------------------
def test_float64_within_its_bound_holds_as_evidence():
    """No exact run at any case, float64 equal to the rounded truth: holds, numerically, with the
    reason; with exact runs at some cases the scope says both."""
    runs = [run_at(c, no_exact="an irrational root") for c in cases()]
    v = decide(runs)["dx"]
    assert v.status is Status.HOLDS and v.method == "numeric"
    assert v.scope == "3×1, 4×1, 5×1, 3×2 numeric"
    assert "exact evaluation was impossible" in v.detail and "float64 agrees" in v.detail
    assert "the largest error is 0 of the bound" in v.detail
    # half the bound off at one entry: the largest error is stated as that share of the bound
    # (``error / bound`` → ``error * bound`` stated 10⁻³⁰)
    half = {"dx": at((1, 0), lambda v, b: v + b / 2)}
    v = decide([run_at(c, no_exact="an irrational root", floats=half) for c in cases()])["dx"]
    worst = float(re.search(r"the largest error is (\S+) of the bound", v.detail).group(1))
    assert v.status is Status.HOLDS and 0.4 < worst < 0.6, v.detail
    mixed = [
        run_at(c, no_exact="an irrational root") if k else run_at(c) for k, c in enumerate(cases())
    ]
    v = decide(mixed)["dx"]
    assert v.status is Status.HOLDS and v.scope == "3×1, 4×1, 5×1, 3×2 exact/numeric"
    assert "at 3 of 4 shapes" in v.detail


def test_float64_just_outside_its_bound_but_within_float32s_is_undecided():
    """Three float64 bounds off at one entry (well inside float32's bound): code computing in
    float32 inside looks like this, so undecided, never holds and never refuted.  Kills the
    rounding branch deleted (it held or was refuted), ``dtype == "float64"`` flipped and
    ``np.all(error <= inside)`` flipped."""
    all_cases = cases()
    runs = [run_at(c, no_exact="an irrational root") for c in all_cases]
    runs[2] = run_at(
        all_cases[2],
        no_exact="an irrational root",
        floats={"dx": (at((1, 0), lambda v, b: v + 3 * b))},
    )
    inside = case_bounds(all_cases[2], INSIDE)["dx"][1, 0]
    assert 3 * case_bounds(all_cases[2], "float64")["dx"][1, 0] < inside
    v = decide(runs)["dx"]
    assert v.status is Status.UNDECIDED and v.method == "numeric"
    assert "by no more than float32 rounding can" in v.detail
    assert all_cases[2].spec.describe() in v.detail
    # two such cases: the first is named (``tally.rounding[0]`` → ``[-1]`` named the last)
    runs[3] = run_at(
        all_cases[3],
        no_exact="an irrational root",
        floats={"dx": at((0, 1), lambda v, b: v + 3 * b)},
    )
    v = decide(runs)["dx"]
    assert v.status is Status.UNDECIDED
    assert all_cases[2].spec.describe() in v.detail
    assert all_cases[3].spec.describe() not in v.detail


def test_float64_outside_float32s_bound_is_refuted_at_the_worst_entry():
    """Off by twice float32's bound at one entry and by half float64's at another: refuted
    numerically at the first (the largest error as a share of the bound), with the bound."""
    all_cases = cases()
    case = all_cases[3]  # 3×2: two channels

    def wrong(t: np.ndarray, tf: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = tf.copy()
        out[2, 1] += 2 * case_bounds(case, INSIDE)["dx"][2, 1]
        out[0, 0] += b[0, 0] / 2
        return out

    runs = [run_at(c, no_exact="an irrational root") for c in all_cases]
    runs[3] = run_at(case, no_exact="an irrational root", floats={"dx": wrong})
    v = decide(runs)["dx"]
    assert v.status is Status.REFUTED and v.method == "numeric"
    assert v.counterexample is not None and v.counterexample.entry == "dx[2, 1]"
    assert v.counterexample.channel == 1
    assert "in float64 beyond" in v.detail and v.scope == "3×2 numeric"


def test_a_float32_result_outside_float32s_bound_is_refuted_not_undecided():
    """A dx returned as float32 (so float32's bound applies) off by three of those bounds: the
    float64-only "within float32 rounding" escape does not apply (``dtype == "float64"`` forced
    true made it undecided)."""
    all_cases = cases()
    runs = [
        run_at(
            c,
            no_exact="an irrational root",
            dtype="float32",
            floats={"dx": (at((0, 0), lambda v, b: v + 3 * b))},
        )
        for c in all_cases
    ]
    v = decide(runs)["dx"]
    assert v.status is Status.REFUTED and v.method == "numeric"
    assert v.counterexample is not None and v.counterexample.spec == all_cases[0].spec


def test_an_error_where_the_bound_is_zero_is_the_counterexample():
    """In eval mode dx = γ·g/√(σ²+ε) is exactly 0 where g = 0, and so is its rounding bound.  A
    dx off only there is refuted at that entry: its error is infinitely many bounds (it was
    counted as 0 of them, and the counterexample named entry [0, 0, 0, 0], where the result is
    right); ``np.where(bound > 0, …)`` with 0 → −1 divided 0 by 0 and named the first zero."""
    specs = default_shapes(Mode.SPATIAL, training=False)
    eval_cases = [make_case(spec, k + 1) for k, spec in enumerate(specs)]
    case = eval_cases[1]
    zero = tuple(int(i) for i in np.argwhere(case_bounds(case, "float64")["dx"] == 0)[0])
    assert truth_at(case)["dx"][zero] == 0 and zero != (0, 0, 0, 0)
    runs = [run_at(c, no_exact="an irrational root") for c in eval_cases]
    runs[1] = run_at(
        case, no_exact="an irrational root", floats={"dx": at(zero, lambda v, b: 1e-3)}
    )
    v = decide(runs, eval_cases)["dx"]
    assert v.status is Status.REFUTED and v.counterexample is not None
    assert v.counterexample.entry == f"dx[{', '.join(map(str, zero))}]"
    assert v.counterexample.form == "0.001"
    # right results everywhere: no error at all, 0 of the bound, also where the bound is 0
    # (an entry with neither error nor bound counted as 1 bound, 0.0 → 1.0, stated 1)
    runs[1] = run_at(case, no_exact="an irrational root")
    v = decide(runs, eval_cases)["dx"]
    assert v.status is Status.HOLDS and "the largest error is 0 of the bound" in v.detail
    # and right results there (0) with an error elsewhere: the counterexample is that entry
    runs[1] = run_at(case, no_exact="no", floats={"dx": at((2, 0, 1, 1), lambda v, b: v + 1)})
    v = decide(runs, eval_cases)["dx"]
    assert v.counterexample is not None and v.counterexample.entry == "dx[2, 0, 1, 1]"


def test_a_float32_result_within_its_bound_holds_with_its_dtype_named():
    runs = [run_at(c, no_exact="an irrational root", dtype="float32") for c in cases()]
    v = decide(runs)["dx"]
    assert v.status is Status.HOLDS and "float32 agrees" in v.detail
    assert decide(runs)["dgamma"].detail.startswith("float64 agrees")


def test_a_float16_result_a_known_mistake_could_also_give_is_undecided():
    """float16's bound is wide enough that a known mistake lies within twice of it: agreeing
    within rounding does not rule the mistake out, so undecided with the mistake named (the
    ``if tally.inseparable`` branch deleted, or ``if near is not None`` flipped, held)."""
    all_cases = cases()
    near = [nearest_mistake(c, "dx", case_bounds(c, "float16")["dx"]) for c in all_cases]
    assert any(n is not None for n in near)
    runs = [run_at(c, no_exact="float16", dtype="float16") for c in all_cases]
    v = decide(runs)["dx"]
    assert v.status is Status.UNDECIDED
    assert "too little precision to decide" in v.detail and "float16" in v.detail
    first = next(n for n in near if n is not None)
    assert first[0] in v.detail


def test_float64_within_rounding_is_not_taken_for_a_known_mistake():
    """In float64 every known mistake lies beyond twice the bound at these cases (else the
    right file could not hold): ``nearest_mistake`` finds none, the verdict holds."""
    for c in cases():
        assert nearest_mistake(c, "dx", case_bounds(c, "float64")["dx"]) is None


def test_a_rounding_case_outranks_agreement_elsewhere_and_a_refutation_outranks_both():
    all_cases = cases()
    between = {"dx": (at((0, 0), lambda v, b: v + 3 * b))}
    runs = [run_at(c, no_exact="no") for c in all_cases]
    runs[0] = run_at(all_cases[0], no_exact="no", floats=between)
    assert decide(runs)["dx"].status is Status.UNDECIDED
    runs[3] = run_at(all_cases[3], no_exact="no", floats={"dx": lambda t, tf, b: tf + 1})
    assert decide(runs)["dx"].status is Status.REFUTED


# -- which rows are compared, and the notes -----------------------------------------------------------
def test_a_backward_that_returns_dx_alone_has_the_row_dx_only():
    runs = [run_at(c) for c in cases()]
    for run in runs:
        for q in ("dgamma", "dbeta"):
            del run["float"]["bn_backward"][q]
    assert list(decide(runs)) == ["dx"]
    del runs[2]["float"]["bn_backward"]["dx"]  # missing at one case: no row
    assert list(decide(runs)) == []


def test_a_forward_is_compared_too():
    """The forward's row ``out``: a forward wrong at one entry is refuted there (the
    ``if calls["forward"]`` branch deleted dropped the row: the forward was never compared, and
    the file held on its backward alone)."""
    all_cases = cases()
    runs = [run_at(c) for c in all_cases]
    for case, run in zip(all_cases, runs, strict=True):
        out = truth_at(case)["out"]
        run["float"]["bn_forward"] = {"out": out.astype(float).tolist()}
        run["exact"]["bn_forward"] = {"out": out.tolist()}
    calls = {"forward": "bn_forward", "backward": ["bn_backward"]}
    verdicts, _ = _compare("f.py", calls, all_cases, runs)
    assert [(v.form, v.quantity, v.status) for v in verdicts] == [
        ("bn_forward", "out", Status.HOLDS),
        *(("bn_backward", q, Status.HOLDS) for q in QUANTITIES),
    ]
    runs[2]["exact"]["bn_forward"]["out"][1][0] += 1
    runs[2]["float"]["bn_forward"]["out"][1][0] += 1
    verdicts, _ = _compare("f.py", calls, all_cases, runs)
    assert verdicts[0].status is Status.REFUTED and verdicts[0].counterexample is not None
    assert verdicts[0].counterexample.entry == "out[1, 0]"


def test_the_notes_name_the_shapes_without_an_exact_run_and_every_float_constant():
    all_cases = cases()
    runs = [run_at(c) for c in all_cases]
    runs[1] = run_at(all_cases[1], no_exact="an irrational root")
    runs[3] = run_at(all_cases[3], no_exact="a float16 result")
    runs[0]["conversions"] = {"0.9999999999999998": ("9007199254740991/9007199254740992", "binary")}
    runs[2]["conversions"] = {"0.3333333333333333": ("1/3", "fraction")}
    verdicts, notes = _compare("f.py", CALLS, all_cases, runs)
    assert notes == [
        "no exact run at 2 of 4 shapes, float64 used there; first: 4×1: an irrational root",
        "the float constant 0.3333333333333333 was read as the fraction 1/3",
        "the float constant 0.9999999999999998 is no short decimal or simple fraction; its exact "
        "binary value was used",
    ]


# -- a real file through the child --------------------------------------------------------------------
CONSTANT = """import numpy as np


def bn_backward(x, gamma, beta, dout, eps):
    N = x.shape[0]
    mu = np.mean(x, axis=0)
    xc = x - mu
    inv = 1 / np.sqrt(np.mean(xc * xc, axis=0) + eps)
    xhat = xc * inv
    dgamma = np.sum(dout * xhat, axis=0)
    dbeta = np.sum(dout, axis=0)
    unit = (1 - 0.9) / 0.1  # the compiler folds this to the double 0.9999999999999998
    dx = unit * gamma * inv / N * (N * dout - dbeta - xhat * dgamma)
    return dx, dgamma, dbeta
"""


def test_right_code_whose_float_constant_is_not_read_exactly_holds_numerically(tmp_path):
    """The constant ``(1 − 0.9)/0.1`` is 1 in exact arithmetic but the double 1 − 2⁻⁵² in
    Python: the exact run takes that double at its binary value and differs from the truth by a
    part in 10¹⁶, while the float run agrees within rounding.  Right code (as right as float code
    gets): it must hold, numerically, with the constant in the notes, never be refuted."""
    path: Path = tmp_path / "constant.py"
    path.write_text(CONSTANT, encoding="utf-8")
    assert Fraction((1 - 0.9) / 0.1) == 1 - Fraction(1, 2**52)
    report = check_impl(path, mode="per-activation")
    verdicts = {v.quantity: v for v in report.verdicts}
    assert verdicts["dx"].status is Status.HOLDS and verdicts["dx"].method == "numeric"
    assert "a float constant of the code was not read exactly" in verdicts["dx"].detail
    assert verdicts["dgamma"].status is Status.HOLDS and verdicts["dgamma"].method == "exact"
    assert (
        "the float constant 0.9999999999999998 is no short decimal or simple fraction; its exact "
        "binary value was used"
    ) in report.notes
    assert report.exit_code == 0


# -- the running statistics: a rival hypothesis within rounding ---------------------------------------
def running_run(case: Case, stored: dict[str, np.ndarray], dtypes: dict[str, str]) -> dict:
    """A run whose forward stored ``stored`` (float values, no exact run) in ``dtypes``."""
    return {
        "running": {
            "float": {name: [float(v) for v in values] for name, values in stored.items()},
            "exact": None,
            "bound": _running_bounds(case, dtypes),
            "dtypes": dtypes,
        }
    }


def test_running_statistics_within_rounding_of_two_hypotheses_are_undecided():
    """Each case's running μ set 1/1000 from its batch μ: CS231n's update moves it by a tenth
    of that, less than float16 can resolve.  A running_mean stored in float16 agrees with the
    update and with "unchanged" alike: undecided, never holds (the rival branch deleted, or
    its UNDECIDED made HOLDS, held; no other test reached it).  running_var, in float64, is
    far from every rival: it holds, as evidence."""
    cs231n = RUNNING_CONVENTIONS["cs231n"]
    all_cases = []
    for k, spec in enumerate(default_shapes(Mode.PER_ACTIVATION)):
        case = make_case(spec, k + 1)
        means = [
            sum((case.x[p] for p in spec.positions(c)), Fraction(0)) / spec.m for c in range(spec.c)
        ]
        all_cases.append(
            dataclasses.replace(case, running_mean=tuple(m + Fraction(1, 1000) for m in means))
        )
    dtypes = {"running_mean": "float16", "running_var": "float64"}
    runs = []
    for case in all_cases:
        want = cs231n.update(case, cs231n.momentum)
        stored = {
            "running_mean": np.array([np.float16(float(v)) for v in want["running_mean"]]),
            "running_var": np.array([float(v) for v in want["running_var"]]),
        }
        unchanged = np.array([float(v) for v in case.running_mean])
        assert np.all(
            np.abs(stored["running_mean"] - unchanged)
            <= _running_bounds(case, dtypes)["running_mean"]
        )
        runs.append(running_run(case, stored, dtypes))
    verdicts, _, found = check_running("bn_forward", all_cases, runs, running="cs231n")
    mean, var = verdicts
    assert mean.quantity == "running_mean" and mean.status is Status.UNDECIDED
    assert "too little precision to tell them apart" in mean.detail
    assert "the running statistics left unchanged" in mean.detail
    assert var.status is Status.HOLDS and var.method == "numeric"
    assert "evidence, not a proof" in var.detail
    assert found is None


def cs231n_cases() -> list[Case]:
    return [make_case(spec, k + 1) for k, spec in enumerate(default_shapes(Mode.PER_ACTIVATION))]


def exact_running_run(case: Case, stored: dict[str, list[Fraction]]) -> dict:
    """A run whose forward stored ``stored`` exactly (the exact run and float64 agree)."""
    dtypes = {"running_mean": "float64", "running_var": "float64"}
    run = running_run(
        case, {k: np.array([float(v) for v in vs]) for k, vs in stored.items()}, dtypes
    )
    run["running"]["exact"] = {k: [str(v) for v in vs] for k, vs in stored.items()}
    return run


def test_exact_running_statistics_hold_exactly_and_a_wrong_one_is_refuted_where_it_differs():
    """CS231n's update stored exactly: holds, exactly, scope "… exact" (the scope's ``{0:
    "exact"}`` with 0 → ±1 said "exact/numeric").  running_var wrong at the third case's only
    channel: refuted in exact arithmetic there, the counterexample's truth the expected value at
    that case and channel (``expected.values[where[0]][name][where[1]]`` with an index changed
    named another case's); in float64 alone the same mistake is refuted "in floating point"
    (``how == "exact"`` flipped said exact)."""
    cs231n = RUNNING_CONVENTIONS["cs231n"]
    all_cases = cs231n_cases()
    wants = [cs231n.update(c, cs231n.momentum) for c in all_cases]
    runs = [
        exact_running_run(c, {k: list(v) for k, v in w.items()})
        for c, w in zip(all_cases, wants, strict=True)
    ]
    verdicts, _, found = check_running("bn_forward", all_cases, runs, running="cs231n")
    assert [(v.quantity, v.status, v.method) for v in verdicts] == [
        ("running_mean", Status.HOLDS, "exact"),
        ("running_var", Status.HOLDS, "exact"),
    ]
    assert [v.scope for v in verdicts] == ["3×1, 4×1, 5×1, 3×2 exact"] * 2
    assert found == "cs231n"

    wrong = list(wants[2]["running_var"])
    wrong[0] += 1
    runs[2] = exact_running_run(
        all_cases[2], {"running_mean": list(wants[2]["running_mean"]), "running_var": wrong}
    )
    _, var = check_running("bn_forward", all_cases, runs, running="cs231n")[0]
    assert var.status is Status.REFUTED and var.method == "exact"
    assert "in exact rational arithmetic" in var.detail
    assert var.counterexample is not None and var.counterexample.spec == all_cases[2].spec
    assert var.counterexample.entry == "running_var[0]"
    truth = wants[2]["running_var"][0]
    assert var.counterexample.truth == str(truth) and var.counterexample.form == str(truth + 1)
    runs[2]["running"]["exact"] = None
    _, var = check_running("bn_forward", all_cases, runs, running="cs231n")[0]
    assert var.status is Status.REFUTED and var.method == "numeric"
    assert "in floating point beyond the derived rounding bound" in var.detail


def test_exact_agreement_holds_even_when_a_rival_is_within_float_rounding():
    """The rival test above with an exact run that equals CS231n's update: the exact values
    decide, holds (``if numeric`` forced true looked for a rival anyway and said undecided:
    right code rejected)."""
    cs231n = RUNNING_CONVENTIONS["cs231n"]
    all_cases = []
    for k, spec in enumerate(default_shapes(Mode.PER_ACTIVATION)):
        case = make_case(spec, k + 1)
        means = [
            sum((case.x[p] for p in spec.positions(c)), Fraction(0)) / spec.m for c in range(spec.c)
        ]
        all_cases.append(
            dataclasses.replace(case, running_mean=tuple(m + Fraction(1, 1000) for m in means))
        )
    dtypes = {"running_mean": "float16", "running_var": "float64"}
    runs = []
    for case in all_cases:
        want = cs231n.update(case, cs231n.momentum)
        stored = {
            "running_mean": np.array([np.float16(float(v)) for v in want["running_mean"]]),
            "running_var": np.array([float(v) for v in want["running_var"]]),
        }
        run = running_run(case, stored, dtypes)
        run["running"]["exact"] = {k: [str(v) for v in vs] for k, vs in want.items()}
        runs.append(run)
    mean, var = check_running("bn_forward", all_cases, runs, running="cs231n")[0]
    assert (mean.status, mean.method) == (Status.HOLDS, "exact")
    assert (var.status, var.method) == (Status.HOLDS, "exact")


def test_a_forward_without_running_statistics_has_no_running_rows():
    """A run without running statistics (a functional forward, a layer that keeps none): no
    rows, no notes, no convention (the guard deleted or its ``or`` made ``and`` went on and
    crashed)."""
    all_cases = cs231n_cases()
    runs = [exact_running_run(c, {"running_mean": [], "running_var": []}) for c in all_cases]
    runs[1]["running"] = None
    assert check_running("bn_forward", all_cases, runs) == ([], [], None)
    assert check_running("bn_forward", all_cases, []) == ([], [], None)
