"""Time check-impl over the real-world-style corpus (tests/impls_real): the median seconds per file
(one ``bnderive check-impl FILE`` each, as a user runs it: a fresh process, child included), and
files per minute in folder mode (``bnderive check-impl DIR --jobs J``), in the same run.

Targets (issue 13): median ≤ 1 s per file on this 2-core machine; a class of 200 files in
minutes.  The machine is shared and noisy: each file is timed ``--repeats`` times and the median
kept; the folder run copies the corpus ``--copies`` times (200 files by default).

    python benchmarks/bench_impl.py [--repeats 3] [--copies 5] [--jobs 2]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "impls_real"


def files() -> list[Path]:
    return sorted(p for p in CORPUS.glob("*.py") if p.name != "oracle.py")


def run(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "bnderive", "check-impl", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--copies", type=int, default=5, help="corpus copies in the folder run")
    parser.add_argument("--jobs", type=int, default=2)
    options = parser.parse_args()
    corpus = files()
    per_file = []
    for path in corpus:
        times = [run([str(path)]) for _ in range(options.repeats)]
        per_file.append((statistics.median(times), path.name))
    per_file.sort()
    median = statistics.median(t for t, _ in per_file)
    print(f"{len(corpus)} files, median of {options.repeats} runs each (a fresh process per run)")
    print(f"  median per file: {median:.2f} s (target ≤ 1 s)")
    print(f"  fastest {per_file[0][0]:.2f} s ({per_file[0][1]}), "
          f"slowest {per_file[-1][0]:.2f} s ({per_file[-1][1]})")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(options.copies):
            for path in corpus:
                shutil.copy(path, Path(tmp) / f"{k}_{path.name}")
        count = options.copies * len(corpus)
        seconds = run([tmp, "--jobs", str(options.jobs), "--csv", str(Path(tmp) / "out.csv")])
    print(f"folder mode: {count} files with --jobs {options.jobs} in {seconds:.1f} s: "
          f"{60 * count / seconds:.0f} files per minute")  # fmt: skip


if __name__ == "__main__":
    main()
