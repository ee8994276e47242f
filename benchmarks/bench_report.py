"""How long a report takes: `bnderive report -o report.pdf` for the built-in forms, TeX included.

The baseline is `bnderive check` of the same forms in the same run (the report runs that check,
the every-M proofs of the published forms, the ground truth, the printers and pdflatex), each a
fresh process, interleaved round by round; medians of --repeats runs, of the wall time and of the
CPU time of the process tree (which the load of a shared machine changes much less), and the
load average.  Target: the PDF report under 10 s (wall) on this machine.  Also timed: the Markdown and LaTeX reports (no TeX), and pdflatex alone on
the report's LaTeX, so that the ratio says where the time goes.  Timing never fails the script; it
exits 1 only if a report or the check exits non-zero or a PDF is not a PDF.

    python benchmarks/bench_report.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = 10.0


def cpu() -> float:
    """User + system CPU seconds of this process and every child it has waited for (their
    workers and pdflatex included): what the shared machine's load changes much less."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def seconds(command: list[str], cwd: Path) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (the process tree) and the exit code of ``command``."""
    started, used = time.perf_counter(), cpu()
    done = subprocess.run(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started, cpu() - used, done.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    script = shutil.which("bnderive") or sys.exit("bnderive is not installed on PATH")
    if shutil.which("pdflatex") is None:
        from bnderive.report.pdf import INSTALL

        print(f"no pdflatex: the PDF report cannot be timed ({INSTALL})")
        return 0
    from bnderive.report.pdf import compile_pdf

    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        work = Path(tmp)
        runs = {
            "bnderive check": [script, "check", "--no-timing"],
            "bnderive report --format md": [script, "report", "-o", "report.md"],
            "bnderive report --format tex": [script, "report", "-o", "report.tex"],
            "bnderive report --format pdf": [script, "report", "-o", "report.pdf"],
        }
        times: dict[str, list[float]] = {name: [] for name in runs}
        times["pdflatex on the .tex (in-process)"] = []
        cpus: dict[str, list[float]] = {name: [] for name in times}
        for _ in range(args.repeats):
            for name, command in runs.items():
                took, used, code = seconds(command, work)
                times[name].append(took)
                cpus[name].append(used)
                if code != 0:
                    failed.append(f"{name} exited {code}")
            tex = (work / "report.tex").read_text(encoding="ascii")
            started, used = time.perf_counter(), cpu()
            pdf = compile_pdf(tex)
            times["pdflatex on the .tex (in-process)"].append(time.perf_counter() - started)
            cpus["pdflatex on the .tex (in-process)"].append(cpu() - used)
            if not pdf.startswith(b"%PDF-") or not (work / "report.pdf").read_bytes().startswith(
                b"%PDF-"
            ):
                failed.append("a PDF that is not a PDF")
    base = statistics.median(times["bnderive check"])
    print(
        f"{'command (built-in forms)':38} {'median s':>9} {'× check':>8} {'CPU s':>7}  "
        f"target pdf < {TARGET} s (wall)"
    )
    for name, values in times.items():
        median = statistics.median(values)
        mark = ("ok" if median < TARGET else "SLOW") if name.endswith("pdf") else ""
        used = statistics.median(cpus[name])
        print(f"{name:38} {median:9.2f} {median / base:8.2f} {used:7.2f}  {mark}")
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f}")
    if failed:
        print("FAILED: " + "; ".join(sorted(set(failed))))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
