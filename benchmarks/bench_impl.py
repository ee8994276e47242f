"""Time check-impl over the real-world-style corpus (tests/impls_real): the median seconds per file
(one ``bnderive check-impl FILE`` each, as a user runs it: a fresh process, child included), and
files per minute in folder mode (``bnderive check-impl DIR --jobs J``), in the same run.

Targets (issue 13): median ≤ 1 s per file on this 2-core machine; a class of 200 files in
minutes.  The machine is shared and noisy, so every number comes twice: the wall clock, and the
CPU time of the run's whole process tree (bnderive and its children, from ``getrusage``), which
other people's load changes much less.  Each file is timed ``--repeats`` times and the median
kept; the folder run copies the corpus ``--copies`` times (210 files by default).

``--baseline DIR`` times another checkout of bnderive (``git worktree add /tmp/base REF``) in the
same run, interleaved file by file with this one, and prints the ratios: compare those, not
numbers from different runs.  ``--phases`` prints where one run's time goes, per phase, summed
over the corpus (each file in a fresh process; the phases are timed by wrapping bnderive's own
functions, so only for this checkout).

    python benchmarks/bench_impl.py [--repeats 3] [--copies 5] [--jobs 2] [--baseline DIR]
    python benchmarks/bench_impl.py --phases
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
CORPUS = HERE / "tests" / "impls_real"


def files() -> list[Path]:
    return sorted(p for p in CORPUS.glob("*.py") if p.name != "oracle.py")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(args: list[str], tree: Path = HERE, module: str = "bnderive") -> tuple[float, float]:
    """(wall seconds, CPU seconds of the whole process tree) of one command, with ``tree`` first
    on the path (bnderive's children are reaped by it, so their CPU time is counted)."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    cpu = _children_cpu()
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", module, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=tempfile.gettempdir(),
        check=False,
    )
    return time.perf_counter() - started, _children_cpu() - cpu


def per_file(trees: dict[str, Path], repeats: int) -> dict[str, dict[str, list[float]]]:
    """Per tree: the median wall and CPU time of each file, the trees interleaved."""
    out: dict[str, dict[str, list[float]]] = {name: {"wall": [], "cpu": []} for name in trees}
    for path in files():
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
        for _ in range(repeats):
            for name, tree in trees.items():
                times[name].append(run(["check-impl", str(path)], tree))
        for name in trees:
            out[name]["wall"].append(statistics.median(t[0] for t in times[name]))
            out[name]["cpu"].append(statistics.median(t[1] for t in times[name]))
    return out


def folder(trees: dict[str, Path], copies: int, jobs: int) -> dict[str, tuple[int, float, float]]:
    """Per tree: (files, wall, CPU) of one folder run over ``copies`` copies of the corpus."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(copies):
            for path in files():
                shutil.copy(path, Path(tmp) / f"{k}_{path.name}")
        count = copies * len(files())
        for name, tree in trees.items():
            csv = str(Path(tmp) / f"{name}.csv")
            wall, cpu = run(["check-impl", tmp, "--jobs", str(jobs), "--csv", csv], tree)
            out[name] = (count, wall, cpu)
    return out


PHASES = """
import functools, json, sys, time
t0 = time.perf_counter()
import bnderive.usercode.check_impl as ci
import bnderive.usercode.run as run
import bnderive.usercode.sandbox as sb
import bnderive.verify.diagnose as dg
imported = time.perf_counter() - t0
phases, stack = {}, []
def timed(name, fn):
    @functools.wraps(fn)
    def wrapper(*a, **k):
        started = time.perf_counter()
        stack.append(name)
        try:
            return fn(*a, **k)
        finally:
            stack.pop()
            spent = time.perf_counter() - started
            phases[name] = phases.get(name, 0) + spent
            if stack:  # exclusive times: the caller's share without this one
                phases[stack[-1]] = phases.get(stack[-1], 0) - spent
    return wrapper
sb.Sandbox.start = timed("child: start", sb.Sandbox.start)
sb.Sandbox.close = timed("child: end", sb.Sandbox.close)
ci.load = timed("child: import the file", ci.load)
plain = run.Caller.run
run.Caller.run = lambda self, case, kind, m: timed(f"user code: {kind} run", plain)(self, case, kind, m)
ci.truth_at = timed("truth at the cases", ci.truth_at)
ci.case_bounds = timed("rounding bounds", ci.case_bounds)
ci._compare = timed("comparisons", ci._compare)
ci.check_running = timed("running statistics", ci.check_running)
ci.mistake_values = timed("known mistakes' values (rounding)", ci.mistake_values)
ci.diagnoses = timed("diagnosis", ci.diagnoses)
ci._own_eps = timed("the file's own eps", ci._own_eps)
ci._cache_order = timed("cache order", ci._cache_order)
dg.corpus = timed("the corpus, read", dg.corpus)
started = time.perf_counter()
try:
    ci.check_impl(sys.argv[1])
except Exception:
    pass
phases["imports"] = imported
phases["total"] = imported + time.perf_counter() - started
print(json.dumps(phases))
"""


def phases() -> None:
    """Where the time of one check goes, summed over the corpus (fresh process per file)."""
    totals: dict[str, list[float]] = {}
    for path in files():
        done = subprocess.run(
            [sys.executable, "-c", PHASES, str(path)],
            capture_output=True,
            text=True,
            env=dict(os.environ, PYTHONPATH=str(HERE)),
            check=False,
        )
        lines = done.stdout.strip().splitlines()
        found = json.loads(lines[-1]) if lines else {}
        for name, seconds in found.items():
            totals.setdefault(name, []).append(seconds)
    count = len(files())
    print(f"phases over {count} files (in-process check_impl, a fresh process per file):")
    print(f"  {'phase':36} {'sum s':>7} {'median s':>9} {'max s':>7}")
    for name, values in sorted(totals.items(), key=lambda kv: -sum(kv[1])):
        values = values + [0.0] * (count - len(values))
        print(f"  {name:36} {sum(values):7.2f} {statistics.median(values):9.3f} {max(values):7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--copies", type=int, default=5, help="corpus copies in the folder run")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--baseline", type=Path, default=None, help="another bnderive checkout")
    parser.add_argument("--phases", action="store_true", help="the per-phase profile only")
    options = parser.parse_args()
    if options.phases:
        phases()
        return
    trees = {"this": HERE}
    if options.baseline is not None:
        trees["baseline"] = options.baseline.resolve()
    corpus = files()
    results = per_file(trees, options.repeats)
    print(f"{len(corpus)} files, median of {options.repeats} runs each (a fresh process per run)")
    for name, found in results.items():
        wall, cpu = statistics.median(found["wall"]), statistics.median(found["cpu"])
        print(f"  {name:8} median per file: {wall:.2f} s wall, {cpu:.2f} s CPU (target ≤ 1 s); "
              f"slowest {max(found['wall']):.2f} s")  # fmt: skip
    if "baseline" in results:
        for what in ("wall", "cpu"):
            ratios = [
                b / t for t, b in zip(results["this"][what], results["baseline"][what], strict=True)
            ]
            print(f"  baseline / this, {what}: median {statistics.median(ratios):.1f}×, "
                  f"range {min(ratios):.1f}× to {max(ratios):.1f}×")  # fmt: skip
    runs = folder(trees, options.copies, options.jobs)
    for name, (count, wall, cpu) in runs.items():
        print(f"  {name:8} folder mode: {count} files with --jobs {options.jobs} in {wall:.1f} s "
              f"({60 * count / wall:.0f} files per minute; {cpu / count:.2f} s CPU per file)")  # fmt: skip
    if "baseline" in runs:
        print(f"  folder mode, baseline / this: {runs['baseline'][1] / runs['this'][1]:.1f}× wall, "
              f"{runs['baseline'][2] / runs['this'][2]:.1f}× CPU")  # fmt: skip


if __name__ == "__main__":
    main()
