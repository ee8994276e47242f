"""A folder of submissions: every Python file checked in its own sandboxed child, in parallel.

A teacher's folder of CS231n submissions is a list of independent jobs: each file gets its own
child process (``sandbox``) and its own report, and nothing one file does reaches another.  The
jobs run on a thread pool (``jobs`` at once): each thread waits on its child, which does the
running, while the parent's share (building the cases, comparing) takes turns.  The summary has
one row per file: its status, the count of functions per verdict, and the mistakes named.

On many machines the same holds: the per-file work is independent, so a list of files can be
split into shards (``bnderive check-impl --json`` on each shard, by any batch system) and the
JSON reports concatenated; nothing is shared between files but the read-only package.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bnderive.errors import BnderiveError
from bnderive.usercode.check_impl import Report
from bnderive.usercode.layout import ImplementationError
from bnderive.usercode.norm_impl import check_any

#: Directories never searched for submissions.
SKIPPED_DIRS = {"__pycache__", ".git", ".venv", "venv", "node_modules", ".ipynb_checkpoints"}
#: The most files one run takes (a class of a few hundred is the use).
MAX_FILES = 5000
MAX_JOBS = 64


@dataclass
class FileResult:
    """One file's outcome: its report, or the reason it could not be checked at all."""

    path: str
    report: Report | None
    error: str | None
    seconds: float

    @property
    def exit_code(self) -> int:
        return 2 if self.report is None else self.report.exit_code

    @property
    def status(self) -> str:
        return "could not check" if self.report is None else self.report.status

    def counts(self) -> dict[str, int]:
        """How many rows hold, are refuted, undecided, and could not be checked."""
        out = {"holds": 0, "refuted": 0, "undecided": 0, "could not check": 0}
        if self.report is None:
            out["could not check"] = 1
            return out
        for v in self.report.verdicts:
            if v.status.value in out:
                out[v.status.value] += 1
        out["could not check"] = sum(len(f.quantities) for f in self.report.failures)
        return out

    def mistakes(self) -> list[str]:
        """The mistakes named in the file's diagnoses, in order, each once."""
        if self.report is None:
            return []
        found: list[str] = []
        for lines in self.report.section_diagnoses.values():
            for line in lines:
                if line.startswith("known mistake: "):
                    name = line.removeprefix("known mistake: ").split(";")[0]
                    if name not in found:
                        found.append(name)
        return found

    def refuted(self) -> list[str]:
        if self.report is None:
            return []
        return [
            f"{v.form}.{v.quantity}" for v in self.report.verdicts if v.status.value == "refuted"
        ]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "file": self.path,
            "status": self.status,
            "exit_code": self.exit_code,
            "seconds": round(self.seconds, 3),
        }
        if self.report is not None:
            out.update(self.report.to_dict())
            out["file"] = self.path
        else:
            out["error"] = self.error
        return out


def collect(paths: Iterable[str | Path]) -> list[Path]:
    """The .py files named, and those under the directories named (sorted, each once)."""
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            for file in sorted(path.rglob("*.py")):
                parts = set(file.relative_to(path).parts[:-1])
                if parts & SKIPPED_DIRS or any(p.startswith(".") for p in parts):
                    continue
                found.append(file)
        else:
            found.append(path)  # a missing or odd file gets its own row with the reason
    unique = list(dict.fromkeys(found))
    if not unique:
        raise ImplementationError(
            "no Python files found in " + ", ".join(str(p) for p in paths) + "; give .py files "
            "or folders that hold them."
        )
    if len(unique) > MAX_FILES:
        raise ImplementationError(
            f"{len(unique)} files: more than the {MAX_FILES} one run takes; split the folder."
        )
    return unique


def check_many(
    files: list[Path],
    jobs: int = 2,
    progress: Callable[[FileResult, int, int], None] | None = None,
    **options: Any,
) -> list[FileResult]:
    """Check every file (``norm_impl.check_any`` with ``options``), ``jobs`` at a time; the results in
    the order of ``files``, whatever order they finished in."""
    if not 1 <= jobs <= MAX_JOBS:
        raise ImplementationError(f"--jobs {jobs}: give a number from 1 to {MAX_JOBS}.")

    def one(file: Path) -> FileResult:
        started = time.perf_counter()
        try:
            report = check_any(file, **options)
            return FileResult(str(file), report, None, time.perf_counter() - started)
        except BnderiveError as exc:
            return FileResult(str(file), None, str(exc), time.perf_counter() - started)
        except Exception as exc:  # a bug of bnderive's: the file's row says so, the rest go on
            message = (
                f"bnderive failed on this file ({type(exc).__name__}: {exc}); please report it"
            )
            return FileResult(str(file), None, message, time.perf_counter() - started)

    results: dict[Path, FileResult] = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(one, f): f for f in files}
        for done, future in enumerate(as_completed(futures), start=1):
            result = future.result()
            results[futures[future]] = result
            if progress is not None:
                progress(result, done, len(files))
    return [results[f] for f in files]


def exit_code(results: list[FileResult]) -> int:
    """1 if any file is refuted; else 2 if any could not be (fully) checked; else 3 if any is
    undecided; else 0."""
    codes = {r.exit_code for r in results}
    for code in (1, 2, 3):
        if code in codes:
            return code
    return 0


CSV_FIELDS = ("file", "status", "holds", "refuted", "undecided", "could not check",
              "refuted rows", "mistakes", "error", "seconds")  # fmt: skip


def to_csv(results: list[FileResult]) -> str:
    """The summary as CSV, one row per file."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for r in results:
        counts = r.counts()
        writer.writerow([
            r.path, r.status, counts["holds"], counts["refuted"], counts["undecided"],
            counts["could not check"], "; ".join(r.refuted()), "; ".join(r.mistakes()),
            (r.error or "").splitlines()[0] if r.error else "", f"{r.seconds:.2f}",
        ])  # fmt: skip
    return buffer.getvalue()
