"""Every console example in README.md is run, and must print what the README shows.

Each ``$ bnderive …`` line of a ```console block is run by a shell in a temporary directory
outside the checkout that holds a copy of ``examples/`` (the files the README uses), with the
installed ``bnderive`` on PATH, as a reader would type it.  Its exit code must be the one the
README states (``# exits N`` at the end of the command; 0 when it says nothing) and its output,
stdout and stderr as the terminal shows them, must be the lines under it, after timings are
masked (``in 1.2 s``, ``12 ms``).  A command with no lines under it is run for its exit code only
(``bench``, whose output is all timing).  A command that needs PyTorch is skipped, with the
reason, when torch is not installed.

After changing an output on purpose, ``BNDERIVE_UPDATE_README=1 python -m pytest
tests/test_readme.py`` writes the new outputs into README.md; read the diff before committing.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
EXAMPLES = ROOT / "examples"
#: The terminal the README's outputs were made in.
ENV = {"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb", "PYTHONIOENCODING": "utf-8"}
TIMINGS = [
    (re.compile(r" in [0-9]+(\.[0-9]+)? s\b"), " in … s"),
    (re.compile(r"\b[0-9]+(\.[0-9]+)? ms\b"), "… ms"),
]


@dataclass(frozen=True)
class Example:
    command: str  # as the reader types it, without the "# exits N" comment
    exit_code: int
    output: str | None  # None: run for the exit code only
    line: int  # the command's line in README.md

    @property
    def needs_torch(self) -> bool:
        return "torch" in self.command.split()


def examples(text: str) -> list[Example]:
    """The commands of every ```console block, with the output shown under each."""
    out = []
    lines = text.splitlines()
    inside = False
    current: list[str] | None = None
    start, head = 0, ""

    def close() -> None:
        if current is None:
            return
        command, _, comment = head.partition(" # exits ")
        shown = "\n".join(current).rstrip("\n")
        out.append(
            Example(command.strip(), int(comment or 0), shown + "\n" if shown else None, start)
        )

    for number, line in enumerate(lines, 1):
        if line.startswith("```console"):
            inside, current = True, None
            continue
        if inside and line.startswith("```"):
            close()
            inside, current = False, None
            continue
        if not inside:
            continue
        if line.startswith("$ "):
            close()
            head, start, current = line[2:], number, []
        elif current is not None:
            current.append(line)
    return out


EXAMPLES_IN_README = examples(README.read_text(encoding="utf-8"))


def masked(text: str) -> str:
    lines = []
    for line in text.splitlines():
        for pattern, replacement in TIMINGS:
            line = pattern.sub(replacement, line)
        lines.append(line.rstrip())
    return "\n".join(lines).rstrip("\n") + "\n"


def run(example: Example, where: Path) -> subprocess.CompletedProcess[str]:
    shutil.copytree(EXAMPLES, where / "examples")
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, **ENV, "PATH": path}
    return subprocess.run(
        ["bash", "-c", example.command],
        cwd=where,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_readme_has_examples():
    assert len(EXAMPLES_IN_README) >= 8
    assert all(e.command.startswith("bnderive ") for e in EXAMPLES_IN_README)


@pytest.mark.parametrize(
    "example", EXAMPLES_IN_README, ids=[f"line{e.line}" for e in EXAMPLES_IN_README]
)
def test_readme_example_prints_what_the_readme_shows(example: Example, tmp_path: Path):
    if example.needs_torch and importlib.util.find_spec("torch") is None:
        pytest.skip(f"README line {example.line} needs PyTorch: pip install torch==2.13.0")
    where = tmp_path / "reader"  # outside the checkout, as a reader's directory is
    where.mkdir()
    result = run(example, where)
    shown = masked(result.stdout + result.stderr)
    if os.environ.get("BNDERIVE_UPDATE_README") and example.output is not None:
        _update(example, result.stdout + result.stderr)
        return
    assert "Traceback" not in shown, shown
    assert result.returncode == example.exit_code, (
        f"README line {example.line}: `{example.command}` exited {result.returncode}, "
        f"the README says {example.exit_code}\n{shown}"
    )
    if example.output is not None:
        assert shown == masked(example.output), f"README line {example.line}: `{example.command}`"


def _update(example: Example, output: str) -> None:
    """Write the command's real output under it in README.md (the block it heads)."""
    lines = README.read_text(encoding="utf-8").splitlines()
    heads = [k for k, line in enumerate(lines) if line.startswith(f"$ {example.command}")]
    assert len(heads) == 1, f"`{example.command}` is in README.md {len(heads)} times"
    index = heads[0]
    end = index + 1
    while not (lines[end].startswith("$ ") or lines[end].startswith("```")):
        end += 1
    new = [line.rstrip() for line in output.rstrip("\n").splitlines()]
    old = lines[index + 1 : end]
    if masked("\n".join(old)) == masked("\n".join(new)):
        return  # only timings differ: keep the README as it is
    lines[index + 1 : end] = new
    README.write_text("\n".join(lines) + "\n", encoding="utf-8")
