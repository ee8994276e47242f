"""The built wheel carries the data bnderive reads at run time: the published derivations (from
derivations/ at the repository's root), the LaTeX grammar and the mutation corpus."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        pytest.fail(f"pip wheel failed:\n{result.stdout}\n{result.stderr}")
    (path,) = out.glob("bnderive-*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_ships_every_derivation_and_the_data_files(wheel):
    names = set(wheel.namelist())
    shipped = {
        *(f"bnderive/derivations/{p.name}" for p in (ROOT / "derivations").glob("*.toml")),
        *(f"bnderive/derivations/latex/{p.name}" for p in (ROOT / "derivations/latex").iterdir()
          if p.suffix in (".md", ".tex")),
        "bnderive/read/latex_grammar.lark",
        "bnderive/read/corpus/mistakes.toml",
        "bnderive/read/corpus/rewrites.toml",
    }  # fmt: skip
    assert len(shipped) > 10
    assert shipped <= names, sorted(shipped - names)


def test_the_wheel_has_every_subpackage_and_no_tests(wheel):
    names = set(wheel.namelist())
    folders = {p.parent.relative_to(ROOT).as_posix() for p in (ROOT / "bnderive").rglob("*.py")}
    for folder in folders:
        assert f"{folder}/__init__.py" in names, f"{folder} is not in the wheel (pyproject.toml)"
    assert not any(n.startswith(("tests/", "examples/")) for n in names)
