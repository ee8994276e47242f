"""How fast bnderive starts: `bnderive --help` and every `bnderive COMMAND --help`.

Each is run as a fresh process (the installed console script) and compared with `python -c pass`
in the same run, interleaved round by round; medians of --repeats runs of the wall time and of the
CPU time (user + system; on a machine shared with other work, the steadier of the two).  Target:
every --help under 0.2 s (the imports of SymPy, NumPy and lark happen only inside the commands that
use them; `bnderive --help` imports no command's module).

Measured as a user runs it: with Python's bytecode cache (``pip install`` compiles it; an editable
install writes it on the first run).  PYTHONDONTWRITEBYTECODE is removed from the commands'
environment and one untimed round runs first; with the variable set and no cache, every run
compiles bnderive's command-line modules again, which costs more than importing them.
With ``--baseline DIR`` (a checkout of another commit, e.g. ``git worktree add /tmp/base main``)
each --help is also timed from DIR's bnderive (``python -m bnderive`` run in DIR, which puts DIR
first on the path),
interleaved with the installed one, so that a change is measured against its baseline in the same
run.  Timing never fails the script; it exits 1 only if a --help exits non-zero.

    python benchmarks/bench_startup.py [--repeats 5] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time

TARGET = 0.2


#: The commands' environment: with the bytecode cache a user has.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def seconds(command: list[str], cwd: str | None) -> tuple[float, float, int]:
    """Wall and CPU seconds of ``command`` as a fresh process (run in ``cwd``), its exit code."""
    started, cpu_started = time.perf_counter(), cpu()
    code = subprocess.run(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV, cwd=cwd
    ).returncode
    return time.perf_counter() - started, cpu() - cpu_started, code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--baseline", metavar="DIR", help="a checkout to time beside this one")
    args = parser.parse_args()
    script = shutil.which("bnderive") or sys.exit("bnderive is not installed on PATH")
    from bnderive.cli import main as cli  # only to list the commands

    runs: dict[str, tuple[list[str], str | None]] = {
        "python -c pass": ([sys.executable, "-c", "pass"], None)
    }
    for words in [[], *([name] for name in sorted(cli.commands))]:
        label = " ".join(["bnderive", *words, "--help"])
        runs[label] = ([script, *words, "--help"], None)
        if args.baseline:
            baseline = [sys.executable, "-m", "bnderive", *words, "--help"]
            runs[f"  baseline: {label}"] = (baseline, args.baseline)
    for command, cwd in runs.values():  # untimed: the bytecode cache is written
        seconds(command, cwd)
    times: dict[str, list[float]] = {name: [] for name in runs}
    cpus: dict[str, list[float]] = {name: [] for name in runs}
    failed = []
    for _ in range(args.repeats):
        for name, (command, cwd) in runs.items():
            took, used, code = seconds(command, cwd)
            times[name].append(took)
            cpus[name].append(used)
            if code != 0:
                failed.append(name)
    base = statistics.median(times["python -c pass"])
    cpu_base = statistics.median(cpus["python -c pass"])
    print(
        f"{'command':42} {'median s':>9} {'× python':>9} {'cpu s':>7} {'× python':>9}"
        f"  target < {TARGET} s"
    )
    for name, values in times.items():
        median, used = statistics.median(values), statistics.median(cpus[name])
        mark = "" if not name.startswith("bnderive") else ("ok" if median < TARGET else "SLOW")
        print(
            f"{name:42} {median:9.3f} {median / base:9.1f} {used:7.3f} {used / cpu_base:9.1f}"
            f"  {mark}"
        )
    if failed:
        print(f"FAILED: {sorted(set(failed))} exited non-zero")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
