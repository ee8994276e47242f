"""How much of the real-world corpus bnderive reads and checks as pasted, and how fast.

    python benchmarks/bench_read.py            # every file of tests/derivations_real/
    python benchmarks/bench_read.py --quick    # the reading only, no verdicts (CI smoke run)

Over ``tests/derivations_real/`` (derivations transcribed from public posts, papers, notes and
notebooks, each with the expected verdict of its value lines), per file and in total:

* read: the file gave verdicts (not exit code 2); LayerNorm posts (``norm = "layer"`` in
  their expected file) are read as LayerNorm and counted apart, then with the rest;
* value lines (lines that state a value: a gradient, a forward quantity, a local derivative, a
  named sub-expression), of them: checked (a verdict, or not decided: a method left them open,
  or a scope read two ways holds under one only; the share against the target counts only the
  decided ones), definitions (a name of the post's own: true by definition, then used), not checked (understood; the reason is printed by ``check``),
  not read, not found (the line is not in any maths bnderive reads: code, ASCII maths);
* wrong: a verdict that differs from the one established in float64 by the test's own
  reference (``tests/derivations_real/reference.py``);
* the time of ``bnderive check FILE`` with its default plan (all methods, one process), median
  of --repeats, against the target: a typical post (the median file) under 2 s.

Targets (issue 12): ≥ 80% of the files read as pasted, ≥ 90% of their value lines
checked, no wrong verdict, a typical post under 2 s.  Timing never fails the script; it exits 1
if a verdict is wrong.
"""

from __future__ import annotations

import argparse
import collections
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.derivations_real.harness import catalogue, judge_file  # noqa: E402

TARGET_READ = 0.80
TARGET_CHECKED = 0.90
TARGET_SECONDS = 2.0


def check_time(source: Path, repeats: int) -> tuple[float, float, float] | None:
    """Medians of the default plan of ``bnderive check FILE`` (in this process, one worker):
    wall time, CPU time (what an idle machine would take: other people's load on a shared
    machine changes it much less), and the CPU time of the reading alone."""
    from bnderive.errors import BnderiveError
    from bnderive.read.documents import load_document
    from bnderive.verify.plan import Plan

    walls, cpus, reads = [], [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            form = load_document(source)
        except BnderiveError:
            return None
        c1 = time.process_time()
        Plan((form,)).run(1)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        reads.append(c1 - c0)
    return statistics.median(walls), statistics.median(cpus), statistics.median(reads)


#: Out of scope by issue 12's own definition: matrix forms (a pmatrix, bmatrix, … environment).
OUT_OF_SCOPE = re.compile(r"an? (pmatrix|bmatrix|vmatrix|Bmatrix|matrix|array) environment")


def reason_key(reason: str) -> str:
    """A reason without its place and the post's own words: lines grouped by why."""
    reason = re.sub(r"^.*?line \d+(, column \d+)?: ", "", reason.split("; ")[0])
    reason = re.sub(r"^member \d+ not checked: |^the right side not checked: ", "", reason)
    reason = re.sub(r"'[^']*'|`[^`]*`", "'…'", reason)
    return reason[:90]


def _zero() -> dict[str, int]:
    keys = ("files", "read", "values", "checked", "definition", "unchecked", "unread", "missing")
    keys += ("undecided",)
    return dict.fromkeys((*keys, "wrong", "no_oracle"), 0)


def _summary(title: str, t: dict[str, int]) -> None:
    """One family's totals.  The share against the target counts a line only when it got a
    verdict (holds or refuted) or is a definition: a line checked but not decided (a method
    left it open, or its readings disagree) is shown apart and not counted."""
    read_share = t["read"] / t["files"] if t["files"] else 0.0
    decided = t["checked"] - t["undecided"]
    share = (decided + t["definition"]) / t["values"] if t["values"] else 0.0
    strict_share = decided / t["values"] if t["values"] else 0.0
    print(
        f"{title} files: {t['files']}; read as pasted: {t['read']} ({read_share:.0%}; target "
        f"{TARGET_READ:.0%}); value lines: {t['values']}; decided {decided} + definitions "
        f"{t['definition']} = {share:.0%} (target {TARGET_CHECKED:.0%}; decided alone "
        f"{strict_share:.0%}); checked but not decided {t['undecided']}; not checked "
        f"{t['unchecked']}, not read {t['unread']}, not found {t['missing']}; wrong verdicts: "
        f"{t['wrong']} (target 0); checked lines with no oracle to judge them: "
        f"{t['no_oracle']} (target 0)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="reading only: no verdicts, no timing")
    parser.add_argument("--repeats", type=int, default=1, help="timing repeats per file")
    args = parser.parse_args()
    methods = () if args.quick else ("exact", "general")
    header = f"{'file':32} {'read':>5} {'value':>5} {'chk':>4} {'def':>4} {'n.chk':>5} {'n.read':>6} {'n.fnd':>5} {'wrong':>5} {'check s':>8} {'cpu s':>6} {'read s':>6}"
    print(header)
    totals = {family: _zero() for family in ("batch", "layer")}
    reasons: collections.Counter[str] = collections.Counter()
    out_of_scope = collections.Counter()
    seconds: list[tuple[float, float, float]] = []
    for stem, source, expected in catalogue():
        result = judge_file(stem, source, expected, methods=methods)
        family = "layer" if result.norm == "layer" else "batch"
        took = None if args.quick or not result.read else check_time(source, args.repeats)
        if took is not None:
            seconds.append(took)
        row = dict(
            values=result.value_lines,
            checked=result.count("checked"),
            definition=result.count("definition"),
            unchecked=result.count("not checked") + result.count("prose"),
            unread=result.count("not read") + result.count("refused"),
            missing=result.count("not found"),
            # checked, and not decided (a method left it open, or its readings disagree);
            # --quick runs no method, so nothing is decided and nothing is counted here
            undecided=0
            if args.quick
            else sum(
                1
                for j in result.judged
                if j.expected.states_value and j.status == "checked" and j.bnderive == "undecided"
            ),
            wrong=len(result.wrong),
            # a checked line the harness cannot judge: a wrong verdict there would go unseen
            no_oracle=sum(1 for j in result.judged if j.status == "checked" and j.oracle is None),
        )
        for j in result.judged:
            if j.expected.states_value and j.status not in ("checked", "definition"):
                if family == "batch":
                    reasons[
                        f"{j.status}: {reason_key(j.reason) or '(no maths bnderive reads)'}"
                    ] += 1
                if OUT_OF_SCOPE.search(j.reason):
                    out_of_scope[family] += 1
        t = totals[family]
        t["files"] += 1
        t["read"] += result.read
        for key, value in row.items():
            t[key] += value
        took_text = "-" if took is None else f"{took[0]:.2f} {took[1]:6.2f} {took[2]:6.2f}"
        name = stem[:26] + (" (LN)" if family == "layer" else "")
        print(
            f"{name:32} {'yes' if result.read else 'no':>5} {row['values']:5d} "
            f"{row['checked']:4d} {row['definition']:4d} {row['unchecked']:5d} {row['unread']:6d} "
            f"{row['missing']:5d} {row['wrong']:5d} {took_text:>8}"
        )
        for j in result.wrong:
            print(
                f"    WRONG line {j.line}: bnderive {j.own}, expected {j.oracle}: {j.expected.latex[:70]}"
            )
    print()
    every = _zero()
    for family, title in (("batch", "BatchNorm"), ("layer", "LayerNorm")):
        for key, value in totals[family].items():
            every[key] += value
        _summary(title, totals[family])
    _summary("All", every)
    for family, title in (("batch", "BatchNorm"), ("layer", "LayerNorm")):
        values = totals[family]["values"]
        share = out_of_scope[family] / values if values else 0.0
        print(
            f"{title} value lines out of scope by issue 12 (matrix environments such as pmatrix): "
            f"{out_of_scope[family]} ({share:.0%}); not counted as checked"
        )
    if reasons:
        print("\nBatchNorm value lines not checked, by reason (count):")
        for reason, count in reasons.most_common():
            print(f"  {count:3d}  {reason}")
    if seconds:
        walls, cpus, reads = zip(*seconds, strict=True)
        typical, cpu = statistics.median(walls), statistics.median(cpus)
        print(
            f"bnderive check, default plan: median {typical:.2f} s wall per file read (max "
            f"{max(walls):.2f} s), {cpu:.2f} s CPU (max {max(cpus):.2f} s; reading "
            f"{statistics.median(reads):.2f} s of it) (target: a typical post under "
            f"{TARGET_SECONDS:.0f} s: {'met' if cpu < TARGET_SECONDS else 'NOT met'} in CPU time, "
            f"{'met' if typical < TARGET_SECONDS else 'NOT met'} in wall time on this machine now)"
        )
    t = every
    return 1 if t["wrong"] else 0


if __name__ == "__main__":
    sys.exit(main())
