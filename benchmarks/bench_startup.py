"""How fast bnderive starts: `bnderive --help` and every `bnderive COMMAND --help`.

Each is run as a fresh process (the installed console script) and compared with `python -c pass`
in the same run, interleaved round by round; medians of --repeats runs.  Target: every --help
under 0.2 s (the imports of SymPy, NumPy and lark happen only inside the commands that use them).
Timing never fails the script; it exits 1 only if a --help exits non-zero.

    python benchmarks/bench_startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

TARGET = 0.2


def seconds(command: list[str]) -> tuple[float, int]:
    started = time.perf_counter()
    code = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    return time.perf_counter() - started, code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    script = shutil.which("bnderive") or sys.exit("bnderive is not installed on PATH")
    from bnderive.cli import main as cli  # only to list the commands

    runs = {"python -c pass": [sys.executable, "-c", "pass"], "bnderive --help": [script, "--help"]}
    runs |= {f"bnderive {name} --help": [script, name, "--help"] for name in sorted(cli.commands)}
    times: dict[str, list[float]] = {name: [] for name in runs}
    failed = []
    for _ in range(args.repeats):
        for name, command in runs.items():
            took, code = seconds(command)
            times[name].append(took)
            if code != 0:
                failed.append(name)
    base = statistics.median(times["python -c pass"])
    print(f"{'command':32} {'median s':>9} {'× python':>9}  target < {TARGET} s")
    for name, values in times.items():
        median = statistics.median(values)
        mark = "" if name.startswith("python") else ("ok" if median < TARGET else "SLOW")
        print(f"{name:32} {median:9.3f} {median / base:9.1f}  {mark}")
    if failed:
        print(f"FAILED: {sorted(set(failed))} exited non-zero")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
