"""Output that must not depend on Python's string hashes: the same code run in fresh
processes, one per ``PYTHONHASHSEED`` (a process's hashes are fixed for its life, so a set's
order can only be seen to change across processes)."""

from __future__ import annotations

import os
import subprocess
import sys


def printed_under_seeds(code: str, args: list[str], seeds: int) -> set[str]:
    """What ``python -c code *args`` prints under the hash seeds 0 … seeds − 1, as a set: one
    element when the output does not depend on the seed.  Fails if a run fails."""
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", code, *args],
            env=os.environ | {"PYTHONHASHSEED": str(seed)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in range(seeds)
    ]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert all(run.returncode == 0 for run in runs), [err for _, err in outputs]
    return {out for out, _ in outputs}
