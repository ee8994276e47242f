"""How fast is the exact check, and how much faster than the naive SymPy approach?

    python benchmarks/bench_check.py            # full run, a few minutes
    python benchmarks/bench_check.py --quick    # N = 4 and the cheap items only (CI smoke run)
    python benchmarks/bench_check.py --cli-only --baseline DIR   # `bnderive check` against DIR

Timed, in this process unless noted:

* the exact check (``bnderive.verify.exact.exact_check``) of the three published forms (staged, kronecker,
  compact) at N = 4, 6, 8 and 64, one feature (``Spec(n=N)``), every cache cleared before each run;
* the same at N = 4, 6, 8 with the permutation-symmetry shortcut switched off (every entry of dx
  decided, as the naive baseline does);
* the NAIVE BASELINE at N = 4, 6, 8: the forward graph in plain SymPy symbols, dx_i = diff(L, x_i),
  each form's closed-form dx written in SymPy, decided by ``simplify(dx_true - dx_form) == 0`` for
  every entry i (DESIGN.md §7: the approach bnderive replaces).  One run per size;
* the randomized exact method at M = 4096 (``random_check`` with ``large_spec``), both modes;
* the default plan in-process: ``check_form`` for every built-in form, both modes, exact + random;
* ``bnderive check`` and ``bnderive --version`` as subprocesses (wall time, imports included),
  and their CPU time, worker processes included (the steadier number on a shared machine);
  with ``--baseline DIR`` (a checkout of another commit) also DIR's ``bnderive check``
  (``python -m bnderive`` run in DIR), interleaved, so a change is measured against its
  baseline in the same run; ``--cli-only`` times only these.

Runs are interleaved round by round and medians reported: the machine is shared and noisy.
Timing never fails the script; it exits 1 only when a verdict is wrong (a published form not
proven, the CLI not exiting 0) or something crashes.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import sympy as sp

from bnderive.core.spec import Mode, Spec
from bnderive.read.catalogue import find_form
from bnderive.read.derivations import builtin_forms
from bnderive.verify import exact as exact_module
from bnderive.verify.exact import exact_check
from bnderive.verify.plan import check_form
from bnderive.verify.randomized import large_spec, random_check
from bnderive.verify.verdict import Status

PUBLISHED = ("staged", "kronecker", "compact")
OK = {Status.HOLDS, Status.UNCHECKED}

# Targets from the issue.
TARGET_RATIO_N8 = 100.0
TARGET_N64_SECONDS = 10.0
TARGET_CLI_SECONDS = 2.0


class BenchError(Exception):
    """A wrong verdict: the benchmark would time a broken checker."""


# -- helpers ----------------------------------------------------------------------------------------
def cold() -> None:
    """Clear every memo in bnderive (lru_cache) and SymPy's global cache: each run starts cold."""
    for name, module in list(sys.modules.items()):
        if not (name == "bnderive" or name.startswith("bnderive.")) or module is None:
            continue
        for value in list(vars(module).values()):
            clear = getattr(value, "cache_clear", None)
            if callable(clear):
                clear()
    sp.core.cache.clear_cache()


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def fmt(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


def expect_holds(what: str, verdicts: list) -> None:
    bad = [v for v in verdicts if v.status not in OK]
    if bad:
        lines = "; ".join(f"{v.form} {v.quantity} {v.scope}: {v.status.value}" for v in bad[:5])
        raise BenchError(f"{what}: expected every line to hold, got {lines}")


@contextmanager
def symmetry_shortcut_off():
    """Decide every entry of dx, not entry 1 plus permutation symmetry (apples to apples)."""
    original = exact_module.equivariant
    exact_module.equivariant = lambda form: False
    try:
        yield
    finally:
        exact_module.equivariant = original


class Timeout(Exception):
    pass


@contextmanager
def time_limit(seconds: float | None):
    if not seconds:
        yield
        return

    def handler(signum, frame):
        raise Timeout

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# -- ours -------------------------------------------------------------------------------------------
def ours_exact(forms: list, n: int, every_entry: bool = False) -> None:
    cold()
    for form in forms:
        if every_entry:
            with symmetry_shortcut_off():
                verdicts = exact_check(form, [Spec(n=n)])
        else:
            verdicts = exact_check(form, [Spec(n=n)])
        expect_holds(f"exact N={n} {form.name}", verdicts)


def ours_random(forms: list, mode: Mode, m: int) -> None:
    cold()
    for form in forms:
        expect_holds(f"random M={m} {form.name}", random_check(form, large_spec(mode, m)))


def ours_plan(methods: tuple[str, ...]) -> None:
    cold()
    for form in builtin_forms():
        expect_holds(f"default plan {form.name}", check_form(form, methods=methods))


# -- the naive baseline -----------------------------------------------------------------------------
def naive(n: int, timeout: float | None) -> dict:
    """Plain SymPy: diff the forward graph, write each closed form, simplify(truth − form) == 0."""
    sp.core.cache.clear_cache()
    out: dict = {"forms": {}, "timed_out": False, "false_alarms": 0}
    t0 = time.perf_counter()
    try:
        with time_limit(timeout):
            x = sp.symbols(f"x_1:{n + 1}")
            g = sp.symbols(f"g_1:{n + 1}")
            gamma, beta = sp.symbols("gamma beta")
            eps = sp.Symbol("eps", positive=True)
            mu = sp.Add(*x) / n
            var = sp.Add(*[(xi - mu) ** 2 for xi in x]) / n
            root = sp.sqrt(var + eps)
            xhat = [(xi - mu) / root for xi in x]
            loss = sp.Add(*[gi * (gamma * xh + beta) for gi, xh in zip(g, xhat, strict=True)])
            truth = [sp.diff(loss, xi) for xi in x]
            out["truth"] = time.perf_counter() - t0

            def staged() -> list:
                dxhat = [gi * gamma for gi in g]
                dvar = (
                    -sp.Rational(1, 2)
                    * sp.Add(*[d * (xi - mu) for d, xi in zip(dxhat, x, strict=True)])
                    * (var + eps) ** sp.Rational(-3, 2)
                )
                dmu = -sp.Add(*dxhat) / root + dvar * sp.Rational(-2, n) * sp.Add(
                    *[xi - mu for xi in x]
                )
                return [
                    d / root + dvar * 2 * (xi - mu) / n + dmu / n
                    for d, xi in zip(dxhat, x, strict=True)
                ]

            def kronecker() -> list:
                sum_g = sp.Add(*g)
                sum_gx = sp.Add(*[gi * (xi - mu) for gi, xi in zip(g, x, strict=True)])
                return [
                    sp.Rational(1, n)
                    * gamma
                    * (var + eps) ** sp.Rational(-1, 2)
                    * (n * gi - sum_g - (xi - mu) * (var + eps) ** -1 * sum_gx)
                    for gi, xi in zip(g, x, strict=True)
                ]

            def compact() -> list:
                dbeta = sp.Add(*g)
                dgamma = sp.Add(*[gi * xh for gi, xh in zip(g, xhat, strict=True)])
                return [
                    gamma / root * (gi - (dbeta + xh * dgamma) / n)
                    for gi, xh in zip(g, xhat, strict=True)
                ]

            for name, build in (("staged", staged), ("kronecker", kronecker), ("compact", compact)):
                t1 = time.perf_counter()
                form = build()
                zero = [sp.simplify(t - f) == 0 for t, f in zip(truth, form, strict=True)]
                out["forms"][name] = time.perf_counter() - t1
                out["false_alarms"] += zero.count(False)
    except Timeout:
        out["timed_out"] = True
    out["seconds"] = time.perf_counter() - t0
    return out


# -- subprocesses -----------------------------------------------------------------------------------
def find_cli() -> str | None:
    """The ``bnderive`` script of this interpreter's environment, else the one on PATH."""
    sibling = Path(sys.executable).parent / "bnderive"
    if sibling.exists():
        return str(sibling)
    return shutil.which("bnderive")


#: CPU seconds (user + sys, its worker processes included) of each ``bnderive ARGS`` run: on a
#: shared machine the wall time mostly measures the load, the CPU time much less so.
CLI_CPU: dict[tuple[str, ...], list[float]] = {}
#: As a user runs it: with Python's bytecode cache (an installed bnderive has it).
CLI_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run_cli(cli: str, *args: str, baseline: str | None = None) -> None:
    """``bnderive ARGS``; with ``baseline``, the bnderive of that checkout (run in it)."""
    command = [sys.executable, "-m", "bnderive", *args] if baseline else [cli, *args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        command, capture_output=True, text=True, timeout=600, cwd=baseline, env=CLI_ENV
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    CLI_CPU.setdefault((baseline or "", *args), []).append(cpu)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
        raise BenchError(
            f"`bnderive {' '.join(args)}` exited {proc.returncode}:\n    " + "\n    ".join(tail)
        )


# -- main -------------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="N = 4 and the cheap items only (CI smoke run)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="rounds for the medians (default 3)")
    parser.add_argument(
        "--baseline", metavar="DIR", help="also time `bnderive check` of this checkout"
    )
    parser.add_argument(
        "--cli-only", action="store_true", help="time only the `bnderive` subprocesses"
    )
    parser.add_argument(
        "--naive-timeout",
        type=float,
        default=900.0,
        help="seconds per size for the naive baseline before it is reported as '> X s' "
        "(default 900; 0 = none)",
    )
    args = parser.parse_args()
    sizes = [4] if args.quick else [4, 6, 8]
    big = [] if args.quick else [64]
    forms = [find_form(name) for name in PUBLISHED]
    cli = find_cli()
    has_general = importlib.util.find_spec("bnderive.verify.every_m") is not None

    print(
        f"bnderive benchmark{' (--quick)' if args.quick else ''}: Python {platform.python_version()}, "
        f"SymPy {sp.__version__}, symengine {_version('symengine')}, "
        f"{os.cpu_count()} CPUs, load average {_load()} at start"
    )
    print(f"forms: {', '.join(PUBLISHED)}; {args.repeats} interleaved rounds, medians\n")

    # Each item: key -> (label, function).  One round runs every item once, in this order.
    items: list[tuple[str, str, Callable[[], object]]] = []
    for n in sizes:
        items.append((f"exact{n}", f"exact N={n}, 3 forms", lambda n=n: ours_exact(forms, n)))
        items.append(
            (
                f"every{n}",
                f"exact N={n}, 3 forms, every entry (no symmetry shortcut)",
                lambda n=n: ours_exact(forms, n, every_entry=True),
            )
        )
    for n in big:
        items.append((f"exact{n}", f"exact N={n}, 3 forms", lambda n=n: ours_exact(forms, n)))
    for mode in Mode:
        items.append(
            (
                f"random-{mode.value}",
                f"random M=4096 {mode.value}, 3 forms, 3 trials",
                lambda mode=mode: ours_random(forms, mode, 4096),
            )
        )
    items.append(
        (
            "plan",
            "default plan in-process (all built-in forms, both modes, exact + random)",
            lambda: ours_plan(("exact", "random")),
        )
    )
    if has_general:
        items.append(
            (
                "plan-general",
                "default plan in-process + general (what `bnderive check` runs)",
                lambda: ours_plan(("general", "exact", "random")),
            )
        )
    if args.cli_only:
        items = []
    if cli:
        items.append(("cli", "`bnderive check` (subprocess, wall)", lambda: run_cli(cli, "check")))
        if args.baseline:
            items.append(
                (
                    "cli-baseline",
                    "  baseline: `bnderive check` of --baseline",
                    lambda: run_cli(cli, "check", baseline=args.baseline),
                )
            )
        items.append(
            (
                "cli-version",
                "`bnderive --version` (subprocess, wall: startup only)",
                lambda: run_cli(cli, "--version"),
            )
        )
        for key in ("cli", "cli-baseline", "cli-version"):  # untimed: the bytecode cache
            for item in items:
                if item[0] == key:
                    item[2]()
        CLI_CPU.clear()

    samples: dict[str, list[float]] = {key: [] for key, _, _ in items}
    naive_results: dict[int, dict] = {}
    for round_ in range(args.repeats):
        for key, _label, fn in items:
            seconds, _ = timed(fn)
            samples[key].append(seconds)
            # The naive baseline runs once per size, interleaved with our runs of that size.
            if round_ == min(1, args.repeats - 1) and key.startswith("every"):
                n = int(key[len("every") :])
                print(f"  naive baseline N={n} ...", flush=True)
                naive_results[n] = naive(n, args.naive_timeout or None)
        print(f"  round {round_ + 1}/{args.repeats} done", flush=True)

    med = {key: statistics.median(values) for key, values in samples.items()}

    # -- the table --------------------------------------------------------------------------------
    rows: list[tuple[str, str, str, str, str]] = []
    for key, label, _ in items:
        values = samples[key]
        spread = f"{fmt(min(values))} – {fmt(max(values))}" if len(values) > 1 else ""
        naive_text, ratio_text = "", ""
        n = None
        if key.startswith("exact") and int(key[5:]) in naive_results:
            n = int(key[5:])
        elif key.startswith("every") and int(key[5:]) in naive_results:
            n = int(key[5:])
        if n is not None:
            nv = naive_results[n]
            bound = ">" if nv["timed_out"] else ""
            naive_text = f"{bound}{fmt(nv['seconds'])}"
            ratio_text = f"{bound}{nv['seconds'] / med[key]:.0f}×"
        rows.append((label, fmt(med[key]), spread, naive_text, ratio_text))
    header = ("what", "ours (median)", "ours min – max", "naive (1 run)", "naive/ours")
    widths = [max(len(r[i]) for r in [*rows, header]) for i in range(5)]
    line = "  ".join("-" * w for w in widths)
    print()
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print(line)
    for r in rows:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    print(line)
    if not cli:
        print("`bnderive` command not found: the CLI rows are skipped (pip install -e . first).")

    print("\nnaive baseline, per form (simplify of every dx entry; truth = build graph + diff):")
    for n, nv in naive_results.items():
        parts = [f"truth {fmt(nv.get('truth'))}"] + [
            f"{name} {fmt(s)}" for name, s in nv["forms"].items()
        ]
        note = ""
        if nv["timed_out"]:
            note = f"; stopped at the {args.naive_timeout:.0f} s limit (a lower bound)"
        elif nv["false_alarms"]:
            note = f"; simplify did NOT reduce {nv['false_alarms']} correct entries to 0"
        else:
            note = "; every entry reduced to 0"
        print(f"  N={n}: " + ", ".join(parts) + note)
    print(
        "Ours checks every line of each form (dx and, where the form defines them, dγ, dβ, dx̂, "
        "dσ², dμ);\nthe naive baseline checks dx only.  'exact' decides entry 1 of dx and the "
        "rest by\npermutation symmetry; the 'every entry' rows decide all N entries as the "
        "baseline does."
    )

    # -- targets ----------------------------------------------------------------------------------
    print("\ntargets:")
    skipped = "--cli-only" if args.cli_only else "--quick"
    if 8 in naive_results:
        nv = naive_results[8]
        ratio = nv["seconds"] / med["exact8"]
        ratio_all = nv["seconds"] / med["every8"]
        met = ratio >= TARGET_RATIO_N8
        print(
            f"  ≥ {TARGET_RATIO_N8:.0f}× faster than naive at N=8: "
            f"{'MET' if met else 'NOT MET'} ({'>' if nv['timed_out'] else ''}{ratio:.0f}×; "
            f"{'>' if nv['timed_out'] else ''}{ratio_all:.0f}× with every entry decided)"
        )
    else:
        print(f"  ≥ {TARGET_RATIO_N8:.0f}× faster than naive at N=8: not measured ({skipped})")
    if "exact64" in med:
        met = med["exact64"] < TARGET_N64_SECONDS
        print(
            f"  exact check at N=64 (3 forms) under {TARGET_N64_SECONDS:.0f} s: "
            f"{'MET' if met else 'NOT MET'} ({fmt(med['exact64'])} median)"
        )
    else:
        print(f"  exact check at N=64 under {TARGET_N64_SECONDS:.0f} s: not measured ({skipped})")
    if "cli" in med:
        met = med["cli"] < TARGET_CLI_SECONDS
        print(
            f"  `bnderive check` under {TARGET_CLI_SECONDS:.0f} s wall: "
            f"{'MET' if met else 'NOT MET'} ({fmt(med['cli'])} median, of which "
            f"{fmt(med['cli-version'])} is startup; CPU, workers included: "
            f"{fmt(statistics.median(CLI_CPU[('', 'check')]))} median)"
        )
        if "cli-baseline" in med:
            base_cpu = statistics.median(CLI_CPU[(args.baseline, "check")])
            cpu = statistics.median(CLI_CPU[("", "check")])
            print(
                f"  against the baseline {args.baseline}: wall {fmt(med['cli'])} vs "
                f"{fmt(med['cli-baseline'])} ({med['cli'] / med['cli-baseline']:.2f}×), CPU "
                f"{fmt(cpu)} vs {fmt(base_cpu)} ({cpu / base_cpu:.2f}×)"
            )
    else:
        print(f"  `bnderive check` under {TARGET_CLI_SECONDS:.0f} s wall: not measured (no CLI)")
    print(f"load average {_load()} at the end")
    return 0


def _version(module: str) -> str:
    try:
        return importlib.import_module(module).__version__
    except Exception:  # pragma: no cover - informational only
        return "missing"


def _load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover
        return "?"


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"\nbenchmark FAILED, a verdict is wrong: {exc}", file=sys.stderr)
        sys.exit(1)
