"""How fast are the proofs for every M, and what does SymPy's own route do with them?

    python benchmarks/bench_general.py             # a minute or two
    python benchmarks/bench_general.py --quick     # no baseline (CI smoke run)

Timed in this process, caches cleared before each repeat (median of --repeats):

* ``general_check`` of every built-in first-order form (target: all of them under 1 s);
* ``general_check`` of the double-backward forms (target: under 2 s);
* BASELINE, same run: SymPy's own route on the same difference truth − form, in index
  notation with M symbolic: ``simplify((truth − form).doit())``, each with a time limit.
  DESIGN.md §7 reports that ``doit`` wraps Piecewise, leaves sums and crashes; the table says
  what it did (zero, a leftover, an exception, or the time limit) and its time.

Timing never fails the script; it exits 1 if a built-in form is not proved.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import statistics
import sys
import time
from contextlib import contextmanager

import sympy as sp

from bnderive.core import double_backward as second
from bnderive.core.derive import inline
from bnderive.core.spec import Spec
from bnderive.read.derivations import builtin_forms
from bnderive.verify.every_m import definitions_of, general_check
from bnderive.verify.exact import _exact_instance
from bnderive.verify.lines import truth_of
from bnderive.verify.verdict import Status

derive_module = importlib.import_module("bnderive.core.derive")  # the package re-exports derive()

TARGET_FIRST = 1.0
TARGET_SECOND = 2.0


def cold() -> None:
    sp.core.cache.clear_cache()
    for fn in (derive_module._adjoints, second._quantities, _exact_instance):
        fn.cache_clear()


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        cold()
        t0 = time.perf_counter()
        verdicts = fn()
        times.append(time.perf_counter() - t0)
        bad = [v for v in verdicts if v.status not in (Status.HOLDS, Status.UNCHECKED)]
        if bad:
            raise SystemExit(f"not proved: {bad[0].form} line {bad[0].equation}: {bad[0].residual}")
    return statistics.median(times)


@contextmanager
def time_limit(seconds: float):
    def stop(signum, frame):  # noqa: ARG001
        raise TimeoutError

    old = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def sympy_route(form, limit: float) -> tuple[str, float]:
    """simplify((truth − form).doit()) for every checked line; the first failure is reported."""
    truth = truth_of(form.order, form.spec(Spec()))
    defs = definitions_of(form, truth)
    t0 = time.perf_counter()
    try:
        with time_limit(limit):
            for eq in form.equations:
                defs[eq.name] = (eq.elementwise, eq.expr)
                if eq.name not in truth:
                    continue
                diff = truth.inline(eq.name) - inline(eq.expr, defs)
                result = sp.simplify(diff.doit())
                if result != 0:
                    return f"leftover on line {eq.number}", time.perf_counter() - t0
    except TimeoutError:
        return f"no answer in {limit:.0f} s", time.perf_counter() - t0
    except Exception as exc:  # the point is to see what SymPy does
        return f"{type(exc).__name__}", time.perf_counter() - t0
    return "zero", time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the SymPy baseline")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--limit", type=float, default=20.0, help="seconds per baseline form")
    args = parser.parse_args()

    first = [f for f in builtin_forms() if f.order == 1]
    double = [f for f in builtin_forms() if f.order == 2]
    t_first = median_time(lambda: [v for f in first for v in general_check(f)], args.repeats)
    t_second = median_time(lambda: [v for f in double for v in general_check(f)], args.repeats)
    print(f"{'what':58s} {'ours':>9s}  {'SymPy doit+simplify':>28s}  ratio")
    rows = [
        ("every-M proofs, all first-order forms", first, t_first),
        ("every-M proofs, double-backward forms", double, t_second),
    ]
    for label, forms, ours in rows:
        print(f"{label + f' ({len(forms)})':58s} {ours * 1000:7.0f} ms")
    if not args.quick:
        for form in first + double:
            cold()
            ours = median_time(lambda f=form: general_check(f), 3)
            outcome, seconds = sympy_route(form, args.limit)
            ratio = f"{seconds / ours:6.1f}×" if outcome == "zero" else "   n/a"
            print(
                f"  {form.name:56s} {ours * 1000:7.0f} ms  {outcome:>18s} {seconds:7.2f} s  {ratio}"
            )
    print("targets:")
    print(
        f"  all first-order forms for every M under {TARGET_FIRST:.0f} s: "
        f"{'MET' if t_first < TARGET_FIRST else 'NOT MET'} ({t_first:.2f} s)"
    )
    print(
        f"  double backward for every M under {TARGET_SECOND:.0f} s: "
        f"{'MET' if t_second < TARGET_SECOND else 'NOT MET'} ({t_second:.2f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
