"""bnderive teach --notebook: the notebook is executed in a kernel of this venv's Python.

The exercise cell gets a right and a wrong ``batchnorm_backward`` written into it, as a student
would; the check cell must then print bnderive's checker's verdict: holds, or refuted with the
known mistake named.  The kernel is described by a kernelspec written to a temporary directory
(JUPYTER_PATH) that runs ``sys.executable``, so the test needs no kernel installed on the
machine and the kernel imports this checkout of bnderive.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbclient  # the test extra: a missing one is an error, not a skip
import nbformat
import pytest
from click.testing import CliRunner

from bnderive.cli import main
from bnderive.teach.exercise import EXERCISE_FILE
from bnderive.teach.notebook import CHECKER, exercise_cell

RIGHT = """
import numpy as np


def batchnorm_backward(x, gamma, beta, dout, eps):
    mu = x.mean(axis=0)
    var = ((x - mu) ** 2).mean(axis=0)
    xhat = (x - mu) / np.sqrt(var + eps)
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    n = x.shape[0]
    dx = gamma / np.sqrt(var + eps) * (dout - (dbeta + xhat * dgamma) / n)
    return dx, dgamma, dbeta
"""

# The same with γ forgotten in dx: the mistake a test with γ = 1 cannot see.
WRONG = RIGHT.replace("dx = gamma / np.sqrt", "dx = 1 / np.sqrt")

# SPATIAL: (N, C, H, W) input, statistics per channel over the axes (0, 2, 3).
SPATIAL_RIGHT = """
import numpy as np


def batchnorm_backward(x, gamma, beta, dout, eps):
    axes = (0, 2, 3)
    per_channel = (1, -1, 1, 1)
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    xhat = (x - mu) / np.sqrt(var + eps)
    dbeta = dout.sum(axis=axes)
    dgamma = (dout * xhat).sum(axis=axes)
    m = x.shape[0] * x.shape[2] * x.shape[3]
    mean_terms = (dbeta.reshape(per_channel) + xhat * dgamma.reshape(per_channel)) / m
    dx = gamma.reshape(per_channel) / np.sqrt(var + eps) * (dout - mean_terms)
    return dx, dgamma, dbeta
"""


@pytest.fixture(scope="module")
def kernel(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / "bnderive-test"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "bnderive test", "language": "python"})
    )
    return str(root)


def _lesson(tmp_path: Path, *args: str) -> Path:
    path = tmp_path / "lesson.ipynb"
    result = CliRunner().invoke(main, ["teach", "--notebook", str(path), *args])
    assert result.exit_code == 0, result.output
    assert f"Wrote {path}" in result.output
    return path


def _execute(path: Path, answer: str, kernel: str, monkeypatch) -> list[tuple[str, str]]:
    """Write ``answer`` into the exercise cell, run every cell; (source, text output) pairs."""
    monkeypatch.setenv("JUPYTER_PATH", kernel)
    nb = nbformat.read(path, as_version=4)
    cell = exercise_cell(nb)
    cell.source = f"%%writefile {EXERCISE_FILE}\n" + answer.lstrip("\n")
    client = nbclient.NotebookClient(
        nb,
        kernel_name="bnderive-test",
        timeout=180,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()  # raises CellExecutionError if any cell fails
    out = []
    for c in nb.cells:
        if c.cell_type == "code":
            text = "".join(o.get("text", "") for o in c.outputs if o.output_type == "stream")
            out.append((c.source, text))
    return out


def test_generated_notebook_is_valid_and_stable(tmp_path):
    path = _lesson(tmp_path)
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    kinds = [c.cell_type for c in nb.cells]
    assert kinds.count("markdown") >= 20 and kinds.count("code") >= 20
    assert any("$$" in c.source for c in nb.cells if c.cell_type == "markdown")
    again = tmp_path / "again.ipynb"
    CliRunner().invoke(main, ["teach", "--notebook", str(again)])
    assert again.read_text() == path.read_text()  # the same seed, the same file


def test_notebook_with_a_right_answer(tmp_path, kernel, monkeypatch):
    outputs = _execute(_lesson(tmp_path), RIGHT, kernel, monkeypatch)
    checks = "".join(text for _, text in outputs)
    assert checks.count("✓") >= 30 and "DIFFERS" not in checks
    assert "dx₁ / scale" in checks and "compact/gamma-missing, weak test: passes" in checks
    verdict = outputs[-1][1]
    assert "batchnorm_backward dx: ✓ holds" in verdict
    assert "✓ holds: batchnorm_backward equals the exact gradient, exactly." in verdict


def test_notebook_with_a_wrong_answer(tmp_path, kernel, monkeypatch):
    outputs = _execute(_lesson(tmp_path), WRONG, kernel, monkeypatch)
    verdict = outputs[-1][1]
    assert "batchnorm_backward dx: ✗ refuted" in verdict
    assert "batchnorm_backward dgamma: ✓ holds" in verdict
    assert "known mistake: γ missing (gamma-missing)" in verdict
    assert "✗ refuted: batchnorm_backward is wrong" in verdict


def test_spatial_notebook_with_a_right_answer(tmp_path, kernel, monkeypatch):
    path = _lesson(tmp_path, "--mode", "spatial", "--n", "2", "--seed", "1")
    assert "(N, C, H, W)" in exercise_cell(nbformat.read(path, as_version=4)).source
    outputs = _execute(path, SPATIAL_RIGHT, kernel, monkeypatch)
    assert "DIFFERS" not in "".join(text for _, text in outputs)
    assert "✓ holds: batchnorm_backward equals the exact gradient, exactly." in outputs[-1][1]


def test_check_cell_calls_the_public_checker(tmp_path):
    nb = nbformat.read(_lesson(tmp_path), as_version=4)
    assert CHECKER == "from bnderive import check_impl"
    assert CHECKER in nb.cells[-1].source and "check_impl(" in nb.cells[-1].source


def test_notebook_needs_an_ipynb_path(tmp_path):
    result = CliRunner().invoke(main, ["teach", "--notebook", str(tmp_path / "lesson.txt")])
    assert result.exit_code == 2 and ".ipynb" in result.stderr
