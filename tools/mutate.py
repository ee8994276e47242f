"""Mutation testing of the modules that decide verdicts: does some test fail for every small bug?

    python tools/mutate.py                          # the deciding modules, their test subset
    python tools/mutate.py bnderive/usercode/check_impl.py --tests tests/test_impl.py
    python tools/mutate.py --list                   # the mutants, without running anything
    python tools/mutate.py --only zero_test.py:131  # the mutants on one line

Not run in CI (it takes an hour or more): run it after changing a deciding module, and kill every
new survivor with a test, or explain it in ``ALLOWED`` below (an equivalent mutant: one that no
input can tell from the original).

How it works.  Each module is parsed with ``ast``; every site where one of the operators below
applies gives one mutant per alternative.  The operators are the bugs a tired hand makes:

* a comparison flipped (``==``/``!=``, ``<``/``>=``, ``>``/``<=``, ``is``/``is not``, ``in``/``not in``);
* ``True``/``False`` swapped; ``and``/``or`` swapped; a ``not`` dropped;
* an enum value of ``Status`` or ``Zero`` replaced by each other member (``return
  ZeroTest(Zero.NONZERO)`` → ``Zero.ZERO``: the one that turns "wrong" into "holds");
* an arithmetic operator swapped (``+``/``-``, ``*``/``/``, ``//`` → ``/``, ``%`` → ``//``,
  ``**`` → ``*``);
* a number constant changed by +1, −1 and ×100 (not the ``maxsize`` of a cache);
* an ``if`` branch deleted (its body, or its ``else``), or its condition forced ``True``.

A mutant runs in a forked child of this script (the heavy libraries are imported once, before
the fork): an import hook serves the mutated code for the module, and ``pytest -x`` runs the
tests that reach the mutated line (found by one traced run of the subset), fastest first, with a
timeout; a mutant that survives them (or that no test reaches) runs the whole subset.  A failing (or timed-out) run kills the mutant; a passing one is a
survivor.  Processes the tests start by fork (``check --jobs``) inherit the mutant; a subprocess
that starts a fresh interpreter does not, so a mutant only such a test could kill is reported as
a survivor (never the reverse).

The last kill rates, and what is left, are in docs/soundness.md; a run prints its own at the end.
"""

from __future__ import annotations

import argparse
import ast
import copy
import importlib.abc
import importlib.util
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: The modules whose code decides a verdict (check_impl.py is the usercode engineer's: pass it).
DECIDING = [
    "bnderive/verify/zero_test.py",
    "bnderive/core/finite_field.py",
    "bnderive/verify/every_m.py",
    "bnderive/verify/exact.py",
    "bnderive/verify/randomized.py",
    "bnderive/verify/lines.py",
    "bnderive/verify/witness.py",
    "bnderive/verify/verdict.py",
]

#: The fast tests that exercise them (about a minute when nothing fails), soundness tests first:
#: with -x a mutant is usually killed in seconds.
TESTS = [
    "tests/test_soundness_paths.py",
    "tests/test_soundness.py",
    "tests/test_form_soundness.py",
    "tests/test_verify.py",
    "tests/test_general.py",
    "tests/test_second_order.py",
    "tests/test_malformed.py",
    "tests/test_forms.py",
    "tests/test_document.py",
    "tests/test_corpus.py",
]

#: Equivalent mutants: (module, the source line stripped, the mutation) → why no input can tell
#: it from the original.  Every survivor must be killed by a test or explained here.
_ZT = "bnderive/verify/zero_test.py"
_FASTER = "only speed: the exact normal form below decides the same"
_SCREEN = (
    "the one-point screen can only answer NONZERO, which still needs a witness or the exact "
    "normal form (quick=False) before any verdict: a wrong screen changes speed, not verdicts"
)
ALLOWED: dict[tuple[str, str, str], str] = {
    # symengine is an optional accelerator: without it SymPy expands to the same polynomial.
    (_ZT, "if _se is not None:", "if-branch deleted"): "SymPy's expand instead of symengine's",
    (_ZT, "if _se is not None:", "if-condition → True"): "symengine is installed in the tests",
    (_ZT, "if _se is not None:", "is not → is"): "SymPy's expand instead of symengine's",
    (_ZT, "if _se is not None and not isinstance(expr, sp.Basic):", "if-branch deleted"): (
        "the symengine fast path skipped: the SymPy path below decides the same"
    ),
    (_ZT, "if _se is not None and not isinstance(expr, sp.Basic):", "if-condition → True"): (
        "symengine is installed and the exact method passes symengine expressions"
    ),
    (_ZT, "if expr == 0:", "if-branch deleted"): "0 is decided ZERO by the expansion below",
    # Radical normalisation: skipping a shortcut leaves a relation s^q = radicand that the
    # reduction of the numerator applies anyway.
    (_ZT, "if not (isinstance(exponent, sp.Rational) and exponent.q != 1):", "if-branch deleted"): (
        "an integer power becomes s with s = base: the reduction substitutes it back"
    ),
    (_ZT, "if not (isinstance(exponent, sp.Rational) and exponent.q != 1):", "if-condition → True"): (
        "no radical is normalised: the numerator of `together` decides (a radical-free "
        "difference; radicals other than r are rare and reach the witness search)"
    ),
    (_ZT, "if node.base.is_number:", "if-branch deleted"): "√2 gets a relation s² = 2: same answer",
    (_ZT, "if ratio.is_Rational and ratio > 0 and (2 * exponent).is_integer:", "if-branch deleted"): (
        "√(k·r²) gets a relation instead of √k·r: the reduction gives the same answer"
    ),
    (_ZT, "if not relations and not _has_nonmonomial_denominator(expanded):", "if-branch deleted"): (
        _FASTER
    ),
    (_ZT, "if node.exp.is_negative and not (node.base.is_Symbol or node.base.is_number):", "if-condition → True"): _FASTER,
    (_ZT, "if node.exp.is_negative and not (node.base.is_Symbol or node.base.is_number):", "and → or"): _FASTER,
    (_ZT, "if node.exp.is_negative and not (node.base.is_Symbol or node.base.is_number):", "or → and"): _FASTER,
    (_ZT, "return False", "False → True"): _FASTER,
    (_ZT, "def _nonzero_somewhere(expr: sp.Expr, digits: int = 60) -> bool:", "60 → 61 (+1)"): _SCREEN,
    (_ZT, "def _nonzero_somewhere(expr: sp.Expr, digits: int = 60) -> bool:", "60 → 59 (-1)"): _SCREEN,
    (_ZT, "def _nonzero_somewhere(expr: sp.Expr, digits: int = 60) -> bool:", "60 → 6000 (×100)"): _SCREEN,
    (_ZT, "if not value.is_number or value.has(sp.zoo, sp.nan, sp.oo, -sp.oo) or not value.is_real:", "if-branch deleted"): _SCREEN,
    (_ZT, "if not value.is_number or value.has(sp.zoo, sp.nan, sp.oo, -sp.oo) or not value.is_real:", "or → and"): _SCREEN,
    (_ZT, "@dataclass(frozen=True)", "True → False"): "nothing assigns to a ZeroTest",
    (_ZT, "if quick and _nonzero_somewhere(expr):", "if-branch deleted"): _FASTER,
    (_ZT, "if expanded == 0:", "if-branch deleted"): "the SymPy path below decides the same",
    (_ZT, "if _se is not None and not isinstance(expr, sp.Basic):", "and → or"): (
        "the exact method passes symengine expressions: the same path is taken"
    ),
    (_ZT, "if _se is not None and not isinstance(expr, sp.Basic):", "is not → is"): (
        "the SymPy path decides the same"
    ),
    (_ZT, "if _se is not None and not isinstance(expr, sp.Basic):", "not dropped"): (
        "the SymPy path decides the same"
    ),
    (_ZT, "if expr == 0:", "0 → 1 (+1)"): "a difference of 1 falls through to the expansion",
    (_ZT, "if expr == 0:", "0 → -1 (-1)"): "a difference of −1 falls through to the expansion",
}  # fmt: skip
# Every mutant of the one-point screen: it can only answer NONZERO, which needs a witness (or
# the exact normal form, quick=False) before any verdict, so it changes speed, never a verdict.
for _line, _changes in (
    (
        "point = {s: sp.Rational(2 * k + 3, k + 2) for k, s in enumerate(symbols)}",
        ("+ → -", "* → /", "3 → 4 (+1)", "3 → 2 (-1)", "3 → 300 (×100)", "2 → 3 (+1)",
         "2 → 1 (-1)", "2 → 200 (×100)"),
    ),
    (
        "if not value.is_number or value.has(sp.zoo, sp.nan, sp.oo, -sp.oo) or not value.is_real:",
        ("if-condition → True", "not dropped"),
    ),
    (
        "return abs(value) > sp.Float(10) ** (-(digits // 3))",
        ("> → <=", "** → *", "// → /", "10 → 11 (+1)", "10 → 9 (-1)", "10 → 1000 (×100)",
         "3 → 4 (+1)", "3 → 2 (-1)", "3 → 300 (×100)"),
    ),
):  # fmt: skip
    for _change in _changes:
        ALLOWED[(_ZT, _line, _change)] = _SCREEN

_EM = "bnderive/verify/every_m.py"
_SUBSTITUTION = (
    "the radical's elimination is a change of variables: with ε inside the root the reduction "
    "keeps σ² (or RMSNorm's mean square) a free symbol, so any substitution ε = f(r, σ²) whose "
    "image has an interior (r^k, 2r, r² + σ²) keeps an identity an identity and a non-identity "
    "a non-identity (a rational function zero on an open set is zero)"
)
for _change in ("2 → 3 (+1)", "2 → 1 (-1)", "2 → 200 (×100)", "** → *", "- → +"):
    ALLOWED[(_EM, "diff = diff.xreplace({N.eps: _R**2 - stat})", _change)] = _SUBSTITUTION
for _change in ("if-branch deleted", "else-branch deleted", "not dropped"):
    ALLOWED[(_EM, "if spec.eps_inside and not spec.eps_zero:", _change)] = (
        "not equivalent, but sound: the first elimination skipped (or the other one taken), σ² "
        "or ε stays a free symbol beside r (the reduction's Σ(x − μ)² = Mσ² is then in a "
        "symbol independent of the root), and an identity in independent symbols holds on "
        "their relation too: a proof can be lost, never made (completeness, not soundness; "
        "the eliminations that make proofs are pinned by tests/test_soundness_paths.py)"
    )
for _line in ("seconds = time.perf_counter() - t0", "seconds=time.perf_counter() - t0,"):
    ALLOWED[(_EM, _line, "- → +")] = "a time shown to the user, not a verdict"
ALLOWED[(_EM, "@dataclass(frozen=True)", "True → False")] = "nothing assigns to a GeneralResult"
ALLOWED[(_EM, "if summand not in self.opaque:", "if-condition → True")] = (
    "a new opaque reduction of the same name: SymPy symbols and functions of one name are equal"
)

_EX = "bnderive/verify/exact.py"
_TIME = "a time shown to the user, not a verdict"
_SYMMETRY = (
    "more entries decided than entry 1 of a form in index notation: its entries are entry 1 "
    "with elements permuted (``equivariant``), so each is zero exactly when entry 1 is: the "
    "same verdicts, slower"
)
ALLOWED.update({
    (_EX, "if equivariant(form):", "if-branch deleted"): _SYMMETRY,
    (_EX, "both = both[:1]", "1 → 2 (+1)"): _SYMMETRY,
    (_EX, "both = both[:1]", "1 → 100 (×100)"): _SYMMETRY,
    (_EX, "if test.outcome is Zero.ZERO:", "if-branch deleted"): (
        "a zero entry then goes through the witness search (it finds no point where a zero "
        "difference differs) and the exact normal form (quick=False), which says ZERO: the same "
        "`continue`, slower"
    ),
    (_EX, "seconds = {p.eq.number: 0.0 for p in pairs}", "0.0 → 1.0 (+1)"): _TIME,
    (_EX, "seconds = {p.eq.number: 0.0 for p in pairs}", "0.0 → -1.0 (-1)"): _TIME,
    (_EX, "truth = truth_of(form.order, specs[0])", "0 → -1 (-1)"): (
        "the truth of the last size instead of the first: only its names are used here (which "
        "lines are checkable), and every size of one form has the same names"
    ),
    (_EX, "return specs[0].mode if len({s.mode for s in specs}) == 1 else None", "0 → -1 (-1)"): (
        "the last size's mode where every size has the same one"
    ),
})  # fmt: skip
for _change in ("/ → *", "- → +", "1 → 2 (+1)", "1 → 100 (×100)"):
    ALLOWED[(_EX, "shared = (time.perf_counter() - t0) / max(1, len(pairs))", _change)] = _TIME
for _change in ("+ → -", "- → +"):
    ALLOWED[(_EX, "seconds[number] += time.perf_counter() - t1 + shared", _change)] = _TIME

_LN = "bnderive/verify/lines.py"
_BROADCAST = (
    "unreached, not equivalent: one value against M is broadcast, but every pair the readers "
    "make has equal lengths (a reference and its checked line are both elementwise or both "
    "not, a step continues its own line; ∂σ²/∂μ, ∂μ/∂x_i, μ, σ², x̂ as references tried by "
    "hand); deleting the broadcast makes a mismatch a crash (strict zip), never a verdict"
)
for _line in ("if len(a) == 1 and len(b) > 1:", "elif len(b) == 1 and len(a) > 1:"):
    for _change in (
        "if-branch deleted", "else-branch deleted", "> → <=", "1 → 2 (+1)", "1 → 0 (-1)",
        "1 → 100 (×100)", "== → !=",
    ):  # fmt: skip
        if _line.startswith("if") or _change != "else-branch deleted":  # an elif has no else
            ALLOWED[(_LN, _line, _change)] = _BROADCAST
ALLOWED[(_LN, "return list(zip(a, b, strict=True))", "True → False")] = (
    "after the broadcast the lengths are equal (each side has one entry or M), so `strict` "
    "never raises"
)

_PR = "bnderive/usercode/precision.py"
for _line, _changes in (
    ("running_mean: float = 0.0,", ("0.0 → 1.0 (+1)", "0.0 → -1.0 (-1)")),
    ("running_var: float = 1.0,", ("1.0 → 2.0 (+1)", "1.0 → 0.0 (-1)", "1.0 → 100.0 (×100)")),
):
    for _change in _changes:
        ALLOWED[(_PR, _line, _change)] = (
            "a default no caller uses: both callers (check_impl, explain) pass the running "
            "statistics, and training mode does not read them"
        )
ALLOWED[(_PR, "@dataclass(frozen=True)", "True → False")] = "nothing assigns to a Bounds"

_SM = "bnderive/verify/summary.py"
_HEAD = (
    "a line's step verdicts carry the line's own label and line in the file (``step_verdict`` "
    "calls ``line_verdict`` with the same equation), so any of them names the row the same"
)
for _change in ("if-branch deleted", "if-condition → True", "not dropped"):
    ALLOWED[(_SM, "if not v.step:", _change)] = _HEAD
ALLOWED[(_SM, "head = first.get(key) or next(iter(by_method.values()))[0]", "0 → -1 (-1)")] = _HEAD
ALLOWED[(_SM, "@dataclass(frozen=True)", "True → False")] = "nothing assigns to a row"

_WT = "bnderive/verify/witness.py"
_SEED = (
    "the witness points' seeds and spreads are arbitrary (small random points, any draw as good "
    "as another): a witness is only ever shown after the exact normal form said nonzero, and "
    "every counterexample the tests see is recomputed by the oracle, whichever point it is at"
)
for _change in (
    "7 → 8 (+1)", "7 → 6 (-1)", "7 → 700 (×100)", "+ → -", "1000 → 1001 (+1)", "1000 → 999 (-1)",
    "1000 → 100000 (×100)", "3 → 4 (+1)", "3 → 2 (-1)", "3 → 300 (×100)", "* → /",
):  # fmt: skip
    ALLOWED[
        (_WT, "point = random_point(spec, 1000 * attempt + 7, spread=3 + attempt)", _change)
    ] = _SEED
_UNREACHED = (
    "unreached, not equivalent: {why}; deleting the check turns such a case into a crash "
    "(exit 4), never into a verdict"
)
ALLOWED[(_WT, "if eq.name not in true.values:", "if-branch deleted")] = _UNREACHED.format(
    why="the truth is evaluated at every size the exact method decides without an error "
    "(symbolic inputs: a division by zero is zoo, decided UNDEFINED, not an error)"
)
for _change in ("if-branch deleted", "or → and"):
    ALLOWED[(_WT, "if isinstance(reference, str) or mine.line_error(eq):", _change)] = (
        _UNREACHED.format(
            why="the search runs at the size where the exact decision has already evaluated the "
            "line and its reference without an error (else it returned undecided), and an error "
            "there is one of sizes (an element outside 1..M), the same at every point"
        )
    )
ALLOWED[(_EX, "if eq.name in true.errors:", "if-branch deleted")] = _UNREACHED.format(
    why="the truth is evaluated on symbolic inputs, where a division by zero is zoo (decided "
    "UNDEFINED), not an error"
)
ALLOWED[(_LN, "if isinstance(before, Equation):", "if-condition → True")] = (
    "unreached: every reference the readers make is an Equation (the true local derivative is a "
    "line of its own, kind 'reference'), so the expression branch below runs in no input; "
    "forced, it would crash (an expression has no line number), never give a verdict"
)

_RD = "bnderive/verify/randomized.py"
ALLOWED[(_RD, "seconds = field.seconds + rational.seconds", "+ → -")] = _TIME
for _change in ("0.0 → -1.0 (-1)",):
    ALLOWED[(_RD, "bound = max(field.bound or 0.0, rational.bound or 0.0)", _change)] = (
        "a verdict that holds always carries its bound (``_ladder``), and a side without one "
        "loses the max to the other's positive bound whether it counts as 0 or −1"
    )
_WITNESS_DIGITS = (
    "the precision of the numeric look at a difference that is not zero symbolically: 49 to "
    "5000 digits all decide |difference| < 10⁻⁴⁰ the same for the small exact points used"
)
for _change in ("50 → 51 (+1)", "50 → 49 (-1)", "50 → 5000 (×100)"):
    ALLOWED[(_WT, 'if diff == 0 or abs(sp.N(diff, 50)) < sp.Float("1e-40", 50):', _change)] = (
        _WITNESS_DIGITS
    )
_MORE_POINTS = (
    "more F_p points compared than T (all the draws, or one more): a wrong line is refuted as "
    "before or sooner, and the bound stated for T points still holds"
)
for _line, _changes in (
    ("usable = 0", ("0 → -1 (-1)",)),
    ("if usable == trials:", ("if-branch deleted",)),
    ("usable += 1", ("+ → -", "1 → 0 (-1)", "1 → 100 (×100)")),
):
    for _change in _changes:
        ALLOWED[(_RD, _line, _change)] = _MORE_POINTS
_DRAWS = (
    "the draws' numbering (the seeds are seed·7919 + draw): another draw of the same "
    "distribution, as random as the first; the number of draws allowed still exceeds T"
)
for _line, _changes in (
    ("for draw in range(1, trials + 4):", ("1 → 2 (+1)", "1 → 0 (-1)", "4 → 5 (+1)", "4 → 3 (-1)",
                                           "4 → 400 (×100)")),
    ("draws = 0", ("0 → 1 (+1)", "0 → -1 (-1)")),
    ("draws += 1", ("1 → 2 (+1)",)),
):  # fmt: skip
    for _change in _changes:
        ALLOWED[(_RD, _line, _change)] = _DRAWS
for _line, _changes in (
    ("share = (time.perf_counter() - started) / max(1, len(form.equations))",
     ("/ → *", "- → +", "1 → 2 (+1)", "1 → 0 (-1)", "1 → 100 (×100)")),
    ("share = (time.perf_counter() - t0) / max(1, len(form.equations))",
     ("/ → *", "- → +", "1 → 2 (+1)", "1 → 0 (-1)", "1 → 100 (×100)")),
    ("seconds: dict[int, float] = {eq.number: 0.0 for eq in form.equations}",
     ("0.0 → 1.0 (+1)", "0.0 → -1.0 (-1)")),
    ("seconds[eq.number] += share", ("+ → -",)),
):  # fmt: skip
    for _change in _changes:
        ALLOWED[(_RD, _line, _change)] = _TIME

_FP_DRAWS = (
    "the F_p points' seeds (seed·7919 + draw): another draw of the same distribution, from "
    "the same hash of the forms; as random as the first"
)
for _change in ("+ → -", "7919 → 7920 (+1)", "7919 → 7918 (-1)", "7919 → 791900 (×100)"):
    ALLOWED[(_RD, "inst, true = _modular_truth(spec, seed * 7919 + draw, form.order)", _change)] = (
        _FP_DRAWS
    )
for _change in ("+ → -", "* → /", "7919 → 7920 (+1)", "7919 → 7918 (-1)", "7919 → 791900 (×100)"):
    ALLOWED[(_RD, "differs[eq.number] = seed * 7919 + draw", _change)] = (
        "the draw number a refutation in F_p names (text; the rational point's counterexample, "
        "which is shown first, carries its own seed, tested)"
    )
for _change in ("4 → 5 (+1)", "4 → 3 (-1)", "4 → 400 (×100)"):
    ALLOWED[(_RD, "while trial < trials and draws < trials + 4:", _change)] = (
        "how many spare draws the rational points may use when the truth cannot be evaluated "
        "at one (probability ≤ d/2⁶²): at least T + 2 either way, the same T points compared"
    )
ALLOWED[
    (_RD, "refuted=refuted, agreed=agreed.get(eq.number, 0), trials=trials,", "0 → -1 (-1)")
] = "a line never compared counts −1 agreements instead of 0: below T either way, undecided"
ALLOWED[(_RD, "for position, (t, f) in enumerate(zip(t_entries, f_entries, strict=True)):",
         "True → False")] = (
    "the truth's and the line's entries are both ``entries(…, eq.elementwise)`` at one point: "
    "the same length, so `strict` never raises"
)  # fmt: skip

_CI = "bnderive/usercode/check_impl.py"
ALLOWED[(_CI, 'if dtype == "float64":', "if-condition → True")] = (
    "the float32 rounding escape taken for float32 and float16 results too: their error is then "
    "beyond their own bound, which is at least float32's (the bound grows with the unit "
    "roundoff), so the escape's test `error <= inside` fails and they are refuted as before"
)
ALLOWED[(_CI, 'if run["exact"] is None and run["why_not_exact"]:', "and → or")] = (
    "`_run_case` makes the exact values None exactly when it has a reason (the exact run "
    "failed, or a function or quantity failed in it), so the two halves agree; and the line "
    "only chooses the text of a note, never a verdict"
)
for _change in ("+ → -", "1 → 2 (+1)", "1 → 100 (×100)"):
    ALLOWED[(_CI, "tally.exact += 1", _change)] = (
        "the count of exact cases is only compared with 0 (the scope's 'exact/numeric'): "
        "−1, 2 or 100 per case is as nonzero as 1"
    )
ALLOWED[(_CI, "for case, run in zip(cases, runs, strict=True):", "True → False")] = (
    "the runs are made one per case (`_check_section`), so `strict` never raises"
)
ALLOWED[
    (
        _CI,
        "share = np.divide(error, bound, out=np.where(error > 0, np.inf, 0.0), where=bound > 0)",
        "0.0 → -1.0 (-1)",
    )
] = (
    "an entry with neither error nor bound counted as −1 bounds: every other share is ≥ 0, so "
    "the largest share (the worst stated, the counterexample's entry) is the same"
)
for _change in ("0 → 1 (+1)", "0 → -1 (-1)"):
    ALLOWED[(_CI, "mode = specs[0].mode", _change)] = (
        "every case of one comparison is of one section, so of one mode: any spec's mode is "
        "the first's"
    )

_SECTION = (
    "every case of one check of the running statistics is of one section: one mode, training "
    "or not, so any case's flag or mode is the first's"
)
for _line, _changes in (
    ("if not cases[0].spec.training:", ("0 → 1 (+1)", "0 → -1 (-1)")),
    ("self._scope(numeric), detail, mode=self.cases[0].spec.mode,", ("0 → 1 (+1)", "0 → -1 (-1)")),
    ("mode=self.cases[0].spec.mode,", ("0 → 1 (+1)", "0 → -1 (-1)")),
):
    for _change in _changes:
        ALLOWED[(_CI, _line, _change)] = _SECTION
for _line in (
    "for a, b in zip(other.values, expected.values, strict=True)",
    "for v, root in zip(variances, case.roots, strict=True)",
    "(1 - w) * o + w * b for o, b in zip(old, batch, strict=True)",
):
    ALLOWED[(_CI, _line, "True → False")] = (
        "both sides are made per case (per channel) from the same cases: equal lengths, so "
        "`strict` never raises"
    )
_SLIP = (
    "which common slip a refuted running statistic is said to match (``slip``): it explains a "
    "refutation already decided, in its text; the verdict, its counterexample and its exit code "
    "are the same"
)
for _line, _changes in (
    ('if name == "running_var":', ("if-condition → True",)),
    ("if self.default is not None and self.auto_momentum not in (None, self.default):",
     ("and → or",)),
    ("variants.insert(0, (", ("0 → 1 (+1)", "0 → -1 (-1)")),
    ('if text.startswith("the momentum it is given is ignored"):', ("if-condition → True",)),
    ("factor = Fraction(m, m - 1) if convention.unbiased else Fraction(1)",
     ("- → +", "1 → 2 (+1)", "1 → 0 (-1)")),
    ("stat(v * factor, case.eps, root)", ("* → /",)),
    ("elif (slip := self.slip(name)) is not None:", ("if-branch deleted", "is not → is")),
    ("elif instead is not None:", ("else-branch deleted",)),
    ("if self.matches(self.unchanged, name):", ("if-branch deleted",)),
):  # fmt: skip
    for _change in _changes:
        ALLOWED[(_CI, _line, _change)] = _SLIP
ALLOWED[(_CI, "if case.spec.training:", "if-condition → True")] = (
    "an eval-mode counterexample also lists the batch's μ and σ² among its inputs: more text, "
    "the same inputs, verdict and entry"
)

_CK = "bnderive/verify/check.py"
for _change in ("3 → 4 (+1)", "3 → 2 (-1)", "3 → 300 (×100)"):
    ALLOWED[(_CK, '"seconds": round(self.seconds, 3),', _change)] = _TIME
ALLOWED[(_CK, "result = CheckResult(tuple(forms), verdicts, time.perf_counter() - started)",
         "- → +")] = _TIME  # fmt: skip
for _change in ("if-branch deleted",):
    ALLOWED[(_CK, "if not any(v.status is Status.REFUTED for v in verdicts):", _change)] = (
        "only speed (and the corpus loaded): with nothing refuted the loop below diagnoses nothing"
    )
    ALLOWED[
        (_CK, "if not any(line.status in (Status.REFUTED, Status.UNDECIDED) for line in lines):",
         _change)
    ] = "only speed: with nothing refuted or undecided the loop below writes no residual"  # fmt: skip
for _change in ("if-branch deleted", "or → and"):
    ALLOWED[(_CK, "if v.status is not Status.REFUTED or v.step or key in found:", _change)] = (
        "a line that holds, a step or a line diagnosed already, diagnosed (again): a line that "
        "holds equals the truth and so no known mistake (which differ from it), the same line "
        "gives the same matches, and the empty ones are dropped below; only speed"
    )
for _change in ("0 → 1 (+1)", "0 → -1 (-1)"):
    ALLOWED[(_CK, "key = (v.form, v.equation or 0, v.quantity)", _change)] = (
        "a verdict without an equation number is skipped two lines below, whatever its key"
    )

ALLOWED[(_CK, 'if eq.kind != "quantity":  # a forward line, a local derivative: no corpus of those',
         "if-branch deleted")] = (
    "a refuted local derivative (a document's ∂σ²/∂x_i, the only non-quantity line a method "
    "refutes) diagnosed too: the corpus has no mistake of dvar_dx, dmu_dx, dxhat_dvar, dxhat_dmu "
    "(``candidates`` is empty), so ``diagnose_line`` names none and the empty list is dropped "
    "below; only speed"
)  # fmt: skip

_RS = "bnderive/verify/residual.py"
ALLOWED[(_RS, "if reference is None:", "if-branch deleted")] = (
    "without a reference `reference - …` raises TypeError, which the `except (ValueError, "
    "TypeError)` below turns into the same None"
)
_MS = "bnderive/verify/mistakes.py"
ALLOWED[(_MS, "if not refuted:", "if-branch deleted")] = (
    "only speed: with no refuted line the loop below finds no mistake"
)
ALLOWED[(_MS, "return held[0].follows if held else None", "0 → -1 (-1)")] = (
    "every method's step verdict for one line is against the same member before it"
)
ALLOWED[(_MS, "mapping[node] = at_index(value, node.indices[0])", "0 → -1 (-1)")] = (
    "a quantity of a form has one index: the first is the last"
)
_SCRATCH = (
    "the one-line form ``_holds`` decides is a scratch copy: its number names nothing the "
    'grouping reads, and any size of three or more decides "right given the true values" '
    "alike for the lines of a form (the exact method at M = 3, 4, 5 agrees on every form the "
    "tests group); a description of refuted lines, never a verdict"
)
ALLOWED[(_MS, "repaired = Equation(1, eq.name, eq.index, eq.expr.xreplace(mapping), eq.text, eq.latex)",
         "1 → 0 (-1)")] = _SCRATCH  # fmt: skip
for _change in ("4 → 5 (+1)", "4 → 3 (-1)", "4 → 400 (×100)"):
    ALLOWED[(_MS, "spec = form.spec(Spec(Mode.PER_ACTIVATION, n=4))", _change)] = _SCRATCH
ALLOWED[(_RS, "if line is eq:", "if-branch deleted")] = (
    "the lines after ``eq`` inlined too: a line uses only names defined before it, so they add "
    "definitions ``eq`` does not use"
)
ALLOWED[(_RS, "if spec.eps_zero:", "if-branch deleted")] = (
    "ε = 0 eliminated as ε = r² − σ² instead of σ² = r², ε = 0: the root is written back as "
    "√σ² either way (r → √σ² gives ε = σ² − σ² = 0), so the same residual, in SymPy's "
    "arrangement; a description, never a verdict"
)

ALLOWED[(_RS, "N.var if self.spec.eps_inside and not self.spec.eps_zero else _R**2", "and → or")] = (
    "σ² instead of r² where ε is outside the root or 0: the reduced expression goes through "
    "``_radical_out`` again, which writes σ² = r² in exactly those cases: the same residual"
)  # fmt: skip
ALLOWED[(_MS, 'if eq.kind != "quantity":', "if-branch deleted")] = (
    "a refuted local derivative (the only other kind a method refutes) searched for an "
    "inherited mistake too: ∂σ²/∂x_i, ∂μ/∂x_i, ∂x̂/∂σ², ∂x̂/∂μ are written in x, μ, σ², ε and "
    "N, never in a gradient, so ``_uses`` finds no wrong value and the same None comes back"
)
ALLOWED[(_MS, 'wrong = {e.name: e for e in earlier if e.kind == "quantity" and e.stored}',
         "and → or")] = (
    "``stored`` is kind in (quantity, definition), so the mutant adds only definitions, and "
    "``earlier`` holds refuted lines only: a definition is auxiliary (not compared, never "
    "refuted), so the same lines"
)  # fmt: skip

ALLOWED[(_CI, 'rows.append(self.holds(name, f"equal to {labels}", matching[0]))', "0 → -1 (-1)")] = (
    "the last of the matching conventions instead of the first: one match is the same one; two "
    "with equal values (the running mean at the default momenta) give the same row (``rival`` "
    "skips an equal hypothesis); two with different values both within rounding make the row "
    "undecided either way, naming the other one as the rival: text, never a status"
)  # fmt: skip

_CANDIDATE = (
    "the ε read back from a refuted forward is only a candidate: the section is checked again at "
    "it (exactly, at three shapes) and that check decides, so how the candidate is found (the "
    "spread test, its noise and tolerance, the digits searched) changes work, never a verdict"
)
for _line, _changes in (
    ("if high - low > 1e-6 * max(abs(low), abs(high)) + noise:",
     ("if-branch deleted", "1e-06 → 1.000001 (+1)", "1e-06 → 9.999999999999999e-05 (×100)")),
    ("noise = 1e-13 * max(1.0, max(abs(e) for e in estimates) + float(case.eps))",
     ("1e-13 → 1.0000000000000001e-11 (×100)", "1.0 → 2.0 (+1)", "1.0 → 0.0 (-1)",
      "1.0 → 100.0 (×100)", "+ → -")),
    ("for digits in range(1, 16):",
     ("1 → 2 (+1)", "1 → 0 (-1)", "16 → 17 (+1)", "16 → 15 (-1)", "16 → 1600 (×100)")),
    ("if abs(float(candidate) - middle) <= spread:", ("if-condition → True",)),
):  # fmt: skip
    for _change in _changes:
        ALLOWED[(_CI, _line, _change)] = _CANDIDATE
ALLOWED[(_CI, "if out_row is not None and out_row.status is Status.REFUTED:",
         "if-condition → True")] = (
    "a forward that holds reads back the ε it was given (detect_eps: None), a section without "
    "a forward reads none: the own-ε checks then do nothing"
)  # fmt: skip
ALLOWED[(_CI, "if not estimates:", "if-branch deleted")] = _UNREACHED.format(
    why="every case has an entry with x ≠ μ in every channel"
)
ALLOWED[(_CI, 'if "param" not in calls.forward_args:', "if-branch deleted")] = (
    "the syntax search then runs on a forward without bn_param, which reads no eps key (unless "
    "it subscripts another dict with the key 'eps'): the same False"
)
for _change in ("0 → 1 (+1)", "0 → -1 (-1)"):
    ALLOWED[(_CI, "if n.args and isinstance(n.args[0], ast.Constant) and n.args[0].value in keys:",
             _change)] = (
        "the constant default of .get('eps', 1e-5) tested instead of its key: the same answer "
        "for the calls the readers meet (the other index crashes, and is killed)"
    )  # fmt: skip
    ALLOWED[(_CI, 'return "0" if eps == 0 else f"{float(eps):g}"', _change)] = (
        "f'{0.0:g}' is '0' too; only an ε of exactly 1 (or −1, which detect_eps refuses) differs"
    )
    ALLOWED[
        (_CI, "section.notes.insert(0, _fixed_note(calls_, source, at_eps, inherited))", _change)
    ] = "the place of the fixed-ε note among its section's notes (text order)"
ALLOWED[(_CI, "for p, xv in zip(positions, xs, strict=True):", "True → False")] = (
    "xs is made from positions: equal lengths, so `strict` never raises"
)
ALLOWED[(_CI, 'if calls_.layout == "flat" and mode is Mode.SPATIAL:', "is → is not")] = (
    "a flattening layer has both modes, and the report lists a note once: the same notes"
)

_CL = "bnderive/cli/check_impl.py"
_LOOK = "layout or style of the printed text (no word changes)"
for _line, _changes in (
    ("if TYPE_CHECKING:", ("if-branch deleted", "if-condition → True")),
    ('table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)',
     ("True → False", "False → True")),
    ("table.add_column(column, no_wrap=True)", ("True → False",)),
    ('out.print(f"  [bold]{escape(text)}[/]" if j == 0 else f"  {escape(text)}")',
     ("== → !=", "0 → 1 (+1)", "0 → -1 (-1)")),
    ("show_default=True,", ("True → False",)),
):  # fmt: skip
    for _change in _changes:
        ALLOWED[(_CL, _line, _change)] = _LOOK
for _change in ("2 → 3 (+1)", "2 → 1 (-1)", "True → False"):
    ALLOWED[
        (
            _CL,
            '"--jobs", default=2, show_default=True, type=int, help="Files checked at once '
            '(folder mode)."',
            _change,
        )
    ] = "how many files run at once (time) and --help's text"
ALLOWED[(_CL, "report = check_any(files[0], **options)", "0 → -1 (-1)")] = (
    "one file outside folder mode: the last is the first"
)
ALLOWED[
    (
        _CL,
        "folder = len(files) > 1 or Path(files[0]).is_dir() or csv_path is not None",
        "0 → -1 (-1)",
    )
] = "one file, or several (a folder already): the last is the first"
ALLOWED[(_CL, "if v.status is Status.REFUTED and v.counterexample is not None:", "and → or")] = (
    "every refuted row carries a counterexample and no other row does"
)
ALLOWED[(_CL, "if r.report is None and r.error:", "and → or")] = (
    "a folder result has a report or an error, never both"
)
for _change in ("0 → -1 (-1)", "120 → 121 (+1)", "120 → 119 (-1)"):
    ALLOWED[(_CL, "mistakes = r.error.splitlines()[0][:120]", _change)] = (
        "an error is one line, cut at about 120 characters (its last line, one more or less)"
    )

ENUMS = {
    "Status": ("HOLDS", "REFUTED", "UNDECIDED", "UNCHECKED"),
    "Zero": ("ZERO", "NONZERO", "UNDEFINED"),
}
FLIP = {
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Lt: ast.GtE,
    ast.GtE: ast.Lt,
    ast.Gt: ast.LtE,
    ast.LtE: ast.Gt,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}
ARITHMETIC = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div,
    ast.Mod: ast.FloorDiv,
    ast.Pow: ast.Mult,
}
SYMBOL = {
    ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.GtE: ">=", ast.Gt: ">", ast.LtE: "<=",
    ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in", ast.Add: "+",
    ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%", ast.Pow: "**",
}  # fmt: skip


# -- the mutants ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Mutant:
    path: str  # relative to the repository
    site: int  # the index of the node in ast.walk order
    change: str  # what is done to it, e.g. "== → !="
    line: int
    text: str  # the source line, stripped
    end: int = 0  # the last line of the mutated node

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.path, self.text, self.change)

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.change}    | {self.text}"


def _changes(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> Iterator[tuple[str, Callable]]:
    """(description, apply(node) -> replacement node or None to delete) for every mutation."""
    if isinstance(node, ast.Compare):
        for j, op in enumerate(node.ops):
            if type(op) in FLIP:
                new = FLIP[type(op)]

                def flip(n: ast.Compare, j: int = j, new: type = new) -> ast.AST:
                    n.ops[j] = new()
                    return n

                yield f"{SYMBOL[type(op)]} → {SYMBOL[new]}", flip
    elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
        yield f"{node.value} → {not node.value}", lambda n: ast.Constant(not n.value)
    elif isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        parent = parents.get(node)
        if isinstance(parent, ast.keyword) and parent.arg == "maxsize":
            return
        for what, f in (
            ("+1", lambda v: v + 1),
            ("-1", lambda v: v - 1),
            ("×100", lambda v: v * 100),
        ):
            if f(node.value) != node.value:  # 0 × 100 is no mutant
                yield (
                    f"{node.value!r} → {f(node.value)!r} ({what})",
                    lambda n, f=f: ast.Constant(f(n.value)),
                )
    elif (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in ENUMS
        and node.attr in ENUMS[node.value.id]
        and isinstance(node.ctx, ast.Load)
    ):
        for other in ENUMS[node.value.id]:
            if other != node.attr:

                def swap(n: ast.Attribute, other: str = other) -> ast.AST:
                    n.attr = other
                    return n

                yield f"{node.value.id}.{node.attr} → {node.value.id}.{other}", swap
    elif isinstance(node, ast.BinOp | ast.AugAssign) and type(node.op) in ARITHMETIC:
        new = ARITHMETIC[type(node.op)]

        def arith(n: ast.BinOp, new: type = new) -> ast.AST:
            n.op = new()
            return n

        yield f"{SYMBOL[type(node.op)]} → {SYMBOL[new]}", arith
    elif isinstance(node, ast.BoolOp):
        other = ast.Or if isinstance(node.op, ast.And) else ast.And
        names = {ast.And: "and", ast.Or: "or"}

        def boolop(n: ast.BoolOp, other: type = other) -> ast.AST:
            n.op = other()
            return n

        yield f"{names[type(node.op)]} → {names[other]}", boolop
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        yield "not dropped", lambda n: n.operand
    elif isinstance(node, ast.If):

        def no_body(n: ast.If) -> ast.AST:
            n.body = [ast.Pass()]
            return n

        yield "if-branch deleted", no_body

        def forced(n: ast.If) -> ast.AST:
            n.test = ast.Constant(True)
            return n

        yield "if-condition → True", forced
        if node.orelse:

            def no_else(n: ast.If) -> ast.AST:
                n.orelse = []
                return n

            yield "else-branch deleted", no_else


def _docstrings(tree: ast.Module) -> set[ast.AST]:
    """Docstring constants: not code."""
    out: set[ast.AST] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            out.add(body[0].value)
    return out


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def mutants(path: str) -> list[Mutant]:
    source = (ROOT / path).read_text(encoding="utf-8")
    lines = source.splitlines()
    tree = ast.parse(source)
    skip, parents = _docstrings(tree), _parents(tree)
    out = []
    for site, node in enumerate(ast.walk(tree)):
        if node in skip or _in_type_hint(node, parents):
            continue
        for change, _ in _changes(node, parents):
            line = getattr(node, "lineno", 0)
            end = getattr(node, "end_lineno", line) or line
            if isinstance(node, ast.If):  # the condition, not the branches
                end = node.test.end_lineno or line
            text = lines[line - 1].strip() if line else ""
            out.append(Mutant(path, site, change, line, text, end))
    return out


def _in_type_hint(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        parent = parents[node]
        if isinstance(parent, ast.arg) and node is parent.annotation:
            return True
        if isinstance(parent, ast.FunctionDef) and node is parent.returns:
            return True
        if isinstance(parent, ast.AnnAssign) and node is parent.annotation:
            return True
        node = parent
    return False


def mutated_code(mutant: Mutant) -> object:
    """The module's code object with ``mutant`` applied."""
    path = ROOT / mutant.path
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = _parents(tree)
    for site, node in enumerate(ast.walk(tree)):
        if site != mutant.site:
            continue
        for change, apply in _changes(node, parents):
            if change == mutant.change:
                replacement = apply(node)
                if replacement is not node:
                    _replace(parents[node], node, replacement)
                break
        break
    ast.fix_missing_locations(tree)
    return compile(tree, str(path), "exec")


def _replace(parent: ast.AST, old: ast.AST, new: ast.AST) -> None:
    for field, value in ast.iter_fields(parent):
        if value is old:
            setattr(parent, field, copy.copy(new))
        elif isinstance(value, list):
            for k, item in enumerate(value):
                if item is old:
                    value[k] = new


# -- running one mutant -----------------------------------------------------------------------------
class _Serve(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """An import hook that gives the module its mutated code."""

    def __init__(self, name: str, path: str, code: object) -> None:
        self.name, self.path, self.code = name, path, code

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001, ANN201
        if fullname != self.name:
            return None
        return importlib.util.spec_from_loader(fullname, self, origin=self.path)

    def create_module(self, spec):  # noqa: ANN001, ANN201
        return None

    def exec_module(self, module) -> None:  # noqa: ANN001
        module.__file__ = self.path
        exec(self.code, module.__dict__)  # noqa: S102


# -- the fast engine: collect once, fork per mutant, patch the live functions --------------------
def _patch(module: object, code: object) -> list[str]:
    """Give the live ``module`` the mutated code: every function (and method) keeps its identity
    and its globals and gets the mutated ``__code__`` and defaults; changed module-level values
    are rebound in every module that imported them.  What cannot be patched this way (a value
    built at import from a mutated expression, a lambda stored at module level) is listed."""
    import functools
    import types

    fresh: dict = {"__name__": module.__name__, "__file__": module.__file__}
    fresh["__builtins__"] = module.__dict__["__builtins__"]
    try:
        exec(code, fresh)  # noqa: S102 - the mutant's own module body, in a scratch namespace
    except Exception as exc:  # the mutant breaks the import: every test that imports it fails
        return [f"import fails: {exc!r}"]
    missed = []

    def same_function(old: object, new: object) -> None:
        old = getattr(old, "__wrapped__", old)  # lru_cache and friends
        new = getattr(new, "__wrapped__", new)
        if isinstance(old, types.FunctionType) and isinstance(new, types.FunctionType):
            if old.__code__ != new.__code__:
                old.__code__ = new.__code__
            old.__defaults__, old.__kwdefaults__ = new.__defaults__, new.__kwdefaults__

    for name, new in fresh.items():
        if name.startswith("__"):
            continue
        old = module.__dict__.get(name)
        if isinstance(getattr(old, "__wrapped__", old), types.FunctionType):
            same_function(old, new)
        elif isinstance(old, type) and isinstance(new, type):
            for attr, value in vars(new).items():
                mine = vars(old).get(attr)
                for a, b in (
                    (mine, value),
                    (getattr(mine, "__func__", None), getattr(value, "__func__", None)),
                    (getattr(mine, "fget", None), getattr(value, "fget", None)),
                ):
                    if isinstance(a, types.FunctionType) and isinstance(b, types.FunctionType):
                        same_function(a, b)
        elif isinstance(old, int | float | str | bool | tuple | frozenset) or old is None:
            if old != new or type(old) is not type(new):
                for other in list(sys.modules.values()):
                    if not getattr(other, "__name__", "").startswith(("bnderive", "test")):
                        continue
                    if getattr(other, name, _NOTHING) is old:
                        setattr(other, name, new)
        elif isinstance(new, types.FunctionType) or callable(new):
            continue  # a module-level object holding functions (a Backend): not patched
    for other in list(sys.modules.values()):  # stale results computed before the mutation
        if not getattr(other, "__name__", "").startswith("bnderive"):
            continue
        for value in list(vars(other).values()):
            if isinstance(value, functools._lru_cache_wrapper):
                value.cache_clear()
    return missed


_NOTHING = object()


class _Session:
    """A pytest plugin that collects the tests once and then, instead of running them, forks
    once per job: the child patches the mutant in and runs the job's tests, with -x."""

    def __init__(self, jobs: list, workers: int, timeout: float, report: Callable) -> None:
        self.jobs, self.workers, self.timeout, self.report = jobs, workers, timeout, report

    def pytest_runtestloop(self, session):  # noqa: ANN001, ANN201
        from _pytest.runner import runtestprotocol

        items = {item.nodeid: item for item in session.items}

        def child(job: tuple) -> int:
            mutant, tests = job
            if mutant is not None:
                name = mutant.path.removesuffix(".py").replace("/", ".")
                # a module the tests import only when needed (check.py, residual.py) is
                # imported here, so that the test that later imports it gets the mutant
                module = sys.modules.get(name) or importlib.import_module(name)
                _patch(module, mutated_code(mutant))
            chosen = [items[t] for t in tests if t in items] or list(items.values())
            for k, item in enumerate(chosen):
                after = chosen[k + 1] if k + 1 < len(chosen) else None
                reports = runtestprotocol(item, nextitem=after, log=False)
                if any(r.failed for r in reports):
                    return 1
            return 0

        pending = list(enumerate(self.jobs))[::-1]
        running: dict[int, tuple[int, float]] = {}
        while pending or running:
            while pending and len(running) < self.workers:
                index, job = pending.pop()
                pid = os.fork()
                if pid == 0:
                    try:
                        os.setsid()
                        os._exit(child(job))
                    except BaseException:
                        if os.environ.get("MUTATE_DEBUG"):
                            import traceback

                            with open(os.environ["MUTATE_DEBUG"], "a") as log:
                                traceback.print_exc(file=log)
                        os._exit(99)
                running[pid] = (index, time.monotonic() + self.timeout)
            time.sleep(0.02)
            for pid, (index, deadline) in list(running.items()):
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    del running[pid]
                    code = os.waitstatus_to_exitcode(status)
                    self.report(index, {0: "survived", 99: "error"}.get(code, "killed"))
                elif time.monotonic() > deadline:
                    os.killpg(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    del running[pid]
                    self.report(index, "timeout")
        return True


def run_in_session(
    jobs: list, tests: list[str], workers: int, timeout: float
) -> Iterator[tuple[int, str]]:
    """Like ``run_all``, with one collection for all jobs (in a fork, so that this process stays
    clean): the outcomes come back through a pipe."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        out = os.fdopen(write, "w", buffering=1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        saved = os.dup(1)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        del saved
        import pytest

        def report(index: int, outcome: str) -> None:
            out.write(f"{index} {outcome}\n")

        plugin = _Session(jobs, workers, timeout, report)
        pytest.main(["-q", "-p", "no:cacheprovider", *tests], plugins=[plugin])
        out.close()
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as lines:
        for line in lines:
            index, outcome = line.split()
            yield int(index), outcome
    os.waitpid(pid, 0)


# -- which tests run which lines: a mutant runs only the tests that reach it ------------------------
def coverage(modules: list[str], tests: list[str]) -> tuple[dict, dict]:
    """({(path, line): test ids}, {test id: seconds}) from one traced run of ``tests``, in a
    fork.  Lines reached only at import, or only in a subprocess, have no test: the mutants
    there run the whole subset."""
    import json
    import tempfile

    out = tempfile.NamedTemporaryFile(suffix=".json", delete=False)
    out.close()
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            _traced_run(modules, tests, out.name)
            os._exit(0)
        except BaseException:
            os._exit(99)
    os.waitpid(pid, 0)
    try:
        data = json.loads(Path(out.name).read_text())
    finally:
        os.unlink(out.name)
    hits = {(p, int(line)): set(ids) for p, line, ids in data["hits"]}
    return hits, data["seconds"]


def _traced_run(modules: list[str], tests: list[str], result: str) -> None:
    import json
    from collections import defaultdict

    import pytest

    files = {str(ROOT / m): m for m in modules}
    hits: dict[tuple[str, int], set[str]] = defaultdict(set)
    seconds: dict[str, float] = {}
    current: list[str | None] = [None]

    def local(frame, event, arg):  # noqa: ANN001, ANN202
        if event == "line" and current[0]:
            hits[(files[frame.f_code.co_filename], frame.f_lineno)].add(current[0])
        return local

    def anywhere(frame, event, arg):  # noqa: ANN001, ANN202
        if frame.f_code.co_filename in files:
            return local
        return None

    class Recorder:
        @pytest.hookimpl(hookwrapper=True)
        def pytest_runtest_protocol(self, item, nextitem):  # noqa: ANN001, ANN201
            current[0] = item.nodeid
            started = time.perf_counter()
            yield
            seconds[item.nodeid] = time.perf_counter() - started
            current[0] = None

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    sys.settrace(anywhere)
    pytest.main(["-q", "-p", "no:cacheprovider", *tests], plugins=[Recorder()])
    sys.settrace(None)
    rows = [[p, line, sorted(ids)] for (p, line), ids in hits.items()]
    Path(result).write_text(json.dumps({"hits": rows, "seconds": seconds}))


def selected(mutant: Mutant, hits: dict, seconds: dict) -> list[str]:
    """The tests that reach the mutated lines, fastest first (empty: none is known)."""
    ids: set[str] = set()
    for line in range(mutant.line, max(mutant.line, mutant.end) + 1):
        ids |= hits.get((mutant.path, line), set())
    return sorted(ids, key=lambda t: (seconds.get(t, 0.0), t))


class _First:
    """A pytest plugin that puts the mutant's import hook in front of pytest's own assertion
    rewriter, which would otherwise load ``zero_test.py`` (a name it takes for a test file)
    from disk.  It runs before any conftest is imported."""

    def __init__(self, hook: _Serve) -> None:
        self.hook = hook
        sys.meta_path.insert(0, hook)

    def pytest_load_initial_conftests(self, early_config, parser, args) -> None:  # noqa: ANN001
        if sys.meta_path[0] is not self.hook:
            sys.meta_path.remove(self.hook)
            sys.meta_path.insert(0, self.hook)


def start(mutant: Mutant | None, tests: list[str]) -> int:
    """Fork a child that runs pytest -x on ``tests`` with ``mutant`` in place; its pid."""
    code = mutated_code(mutant) if mutant else None
    pid = os.fork()
    if pid == 0:  # the child: mutate, test, report through the exit code
        try:
            os.setsid()
            plugins = []
            if mutant is not None:
                name = mutant.path.removesuffix(".py").replace("/", ".")
                plugins.append(_First(_Serve(name, str(ROOT / mutant.path), code)))
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            import pytest

            status = pytest.main(["-x", "-q", "-p", "no:cacheprovider", *tests], plugins=plugins)
            os._exit(int(status))
        except BaseException:
            os._exit(99)
    return pid


def run_all(
    jobs: list[tuple[Mutant | None, list[str]]], workers: int, timeout: float
) -> Iterator[tuple[int, str]]:
    """(index into ``jobs``, 'killed' | 'survived' | 'timeout') as the runs finish."""
    pending = list(enumerate(jobs))[::-1]
    running: dict[int, tuple[int, float]] = {}  # pid -> (job index, deadline)
    while pending or running:
        while pending and len(running) < workers:
            index, (mutant, tests) = pending.pop()
            running[start(mutant, tests)] = (index, time.monotonic() + timeout)
        time.sleep(0.05)
        for pid, (index, deadline) in list(running.items()):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                del running[pid]
                code = os.waitstatus_to_exitcode(status)
                yield index, {0: "survived", 99: "error"}.get(code, "killed")
            elif time.monotonic() > deadline:
                os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                del running[pid]
                yield index, "timeout"


def _previous_survivors(log: str) -> set[tuple[str, str, str]]:
    """(path, source line, change) of the mutants a previous run's output lists as SURVIVED
    (by the line's text, so that they are found again after lines above them moved)."""
    out = set()
    for line in Path(log).read_text(encoding="utf-8").splitlines():
        if line.startswith("SURVIVED "):
            where, _, rest = line[len("SURVIVED ") :].partition(": ")
            change, _, text = rest.partition("    | ")
            out.add((where.rpartition(":")[0], text, change))
    return out


def _at(mutant: Mutant, where: str) -> bool:
    """Is ``mutant`` at FILE.py, FILE.py:LINE or FILE.py:FIRST-LAST?"""
    path, _, lines = where.partition(":")
    if not mutant.path.endswith(path):
        return False
    first, _, last = lines.partition("-")
    return not lines or int(first) <= mutant.line <= int(last or first)


def _coverage(args: argparse.Namespace) -> tuple[dict, dict]:
    """``coverage`` of the modules and tests, or what a previous run saved (``--coverage-file``)."""
    import json

    saved = Path(args.coverage_file) if args.coverage_file else None
    if saved is not None and saved.exists():
        data = json.loads(saved.read_text(encoding="utf-8"))
        hits = {(p, int(line)): set(ids) for p, line, ids in data["hits"]}
        return hits, data["seconds"]
    hits, seconds = coverage(args.modules, args.tests)
    if saved is not None:
        rows = [[p, line, sorted(ids)] for (p, line), ids in hits.items()]
        saved.write_text(json.dumps({"hits": rows, "seconds": seconds}), encoding="utf-8")
    return hits, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", default=DECIDING, help="module paths to mutate")
    parser.add_argument("--tests", nargs="+", default=TESTS, help="the test files to run")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per mutant")
    parser.add_argument("--jobs", type=int, default=1, help="mutants run at once (default 1)")
    parser.add_argument("--list", action="store_true", help="list the mutants and stop")
    parser.add_argument(
        "--no-select",
        dest="select",
        action="store_false",
        help="run the whole subset for every mutant (default: only the tests that reach its "
        "lines; a mutant no test reaches runs the whole subset)",
    )
    parser.add_argument(
        "--confirm",
        action="store_true",
        help="run each survivor again with fresh imports on the whole subset",
    )
    parser.add_argument(
        "--reimport",
        action="store_true",
        help="import everything afresh for every mutant (slow; default: collect the tests "
        "once and patch the mutated functions into a fork)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        default=[],
        help="only mutants at FILE.py:LINE, FILE.py:FIRST-LAST (a function's lines) or FILE.py",
    )
    parser.add_argument(
        "--skip-unreached",
        action="store_true",
        help="do not run a mutant on a line no test of the subset reaches (a line run only at "
        "import, a dataclass default): it is reported as unreached, never as killed",
    )
    parser.add_argument(
        "--coverage-file",
        metavar="JSON",
        help="the traced coverage: read from JSON if it exists (the same modules and tests), "
        "else traced and written there",
    )
    parser.add_argument(
        "--no-baseline",
        dest="baseline",
        action="store_false",
        help="skip the run of the whole subset without a mutant (it passed a moment ago)",
    )
    parser.add_argument(
        "--max-tests",
        type=int,
        default=40,
        help="run at most the N fastest tests that reach a mutant (default 40; 0: all of them); "
        "a survivor may then be killed by a slower test: --confirm runs the whole subset",
    )
    parser.add_argument(
        "--survivors-of", metavar="LOG", help="only the mutants a previous run's LOG lists"
    )
    args = parser.parse_args()
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))  # this tree's bnderive, whatever is installed
    everything = [m for path in args.modules for m in mutants(path)]
    if args.only:
        everything = [m for m in everything if any(_at(m, where) for where in args.only)]
    if args.survivors_of:
        wanted = _previous_survivors(args.survivors_of)
        everything = [m for m in everything if m.key in wanted]
    if args.list:
        for m in everything:
            print(m)
        print(f"{len(everything)} mutants")
        return 0
    # One thread per BLAS pool, then the heavy imports, once, before any fork.
    os.environ.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    import numpy  # noqa: F401
    import pytest  # noqa: F401
    import sympy  # noqa: F401

    started = time.monotonic()
    runner = run_all if args.reimport else (lambda j, w, t: run_in_session(j, args.tests, w, t))
    if args.baseline:  # the whole subset: it takes minutes, not one mutant's timeout
        baseline = next(runner([(None, args.tests)], 1, max(args.timeout, 3600.0)))[1]
        if baseline != "survived":
            print(f"the test subset fails without any mutant ({baseline}): fix that first",
                  file=sys.stderr)  # fmt: skip
            return 2
    hits, seconds = _coverage(args) if args.select else ({}, {})
    print(f"{len(everything)} mutants; tests chosen per mutant: {bool(hits)}", flush=True)
    jobs, indices, unreached = [], [], []
    for k, m in enumerate(everything):
        # only the tests of the files asked for (a saved coverage may know more of them), the
        # files' order first (soundness tests first), then the fastest
        chosen = sorted(
            (t for t in selected(m, hits, seconds) if t.split("::")[0] in args.tests),
            key=lambda t: args.tests.index(t.split("::")[0]),
        )
        if not chosen and hits and args.skip_unreached:
            unreached.append(m)
            continue
        indices.append(k)
        jobs.append((m, (chosen[: args.max_tests] if args.max_tests else chosen) or args.tests))
    outcomes: dict[int, str] = {}
    for done, (job, outcome) in enumerate(runner(jobs, args.jobs, args.timeout), 1):
        index = indices[job]
        outcomes[index] = outcome
        mark = {"killed": ".", "timeout": "t", "survived": "S", "error": "E"}[outcome]
        print(f"[{done}/{len(jobs)}] {mark} {everything[index]}", flush=True)
    if args.confirm:  # fresh imports, the whole subset: what patching cannot reach
        again = [i for i, o in outcomes.items() if o in ("survived", "error")]
        confirm = [(everything[i], args.tests) for i in again]
        for k, outcome in run_all(confirm, args.jobs, args.timeout):
            outcomes[again[k]] = outcome
            print(f"confirmed {outcome}: {everything[again[k]]}", flush=True)
    # An engine error (the harness, not a test, failed) counts as a survivor: never a kill.
    survivors = [everything[i] for i, o in sorted(outcomes.items()) if o in ("survived", "error")]
    allowed = [m for m in survivors if m.key in ALLOWED]
    survivors = [m for m in survivors if m.key not in ALLOWED]
    total = len(everything) - len(unreached)
    killed = total - len(survivors) - len(allowed)
    if unreached:
        print(f"\n{len(unreached)} mutants on lines no test of the subset reaches, not run:")
        for mutant in unreached:
            print(f"UNREACHED {mutant}")
    print(f"\n{total} mutants run in {time.monotonic() - started:.0f} s: {killed} killed, "
          f"{len(allowed)} equivalent (allowed), {len(survivors)} survived")  # fmt: skip
    if total:
        rate = (killed + len(allowed)) / total
        print(f"kill rate: {killed}/{total} = {killed / total:.1%}; "
              f"with the equivalent ones: {rate:.1%}")  # fmt: skip
    for mutant in survivors:
        print(f"SURVIVED {mutant}")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
