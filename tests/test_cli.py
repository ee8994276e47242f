"""The command line through click's CliRunner: exact output (golden files) and exit codes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from bnderive.cli import main
from bnderive.read.forms import load_form
from bnderive.verify.plan import check_form
from bnderive.verify.verdict import Status

GOLDEN = Path(__file__).parent / "golden"
ENV = {"COLUMNS": "120", "FORCE_COLOR": None, "TERM": "dumb", "NO_COLOR": "1"}


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(main, list(args), env=ENV, input=input)


def assert_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("BNDERIVE_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


# -- check ----------------------------------------------------------------------------------------
def test_check_staged_output_is_exact():
    result = run("check", "staged", "--mode", "per-activation", "--no-timing")
    assert result.exit_code == 0, result.output
    assert_golden("check_staged_per_activation.txt", result.output)


def test_check_default_proves_every_builtin_form():
    result = run("check", "--no-timing")
    assert result.exit_code == 0, result.output
    assert (
        "✓ holds: 9 form(s) (chainer, compact, eval, kronecker, kronecker-chain, pytorch, staged, "
        "tensorflow-folded-forward, tensorflow-fused-grad), 34 lines: 29 hold, 5 not checked."
        in result.output
    )
    # every cell of every method says it holds: nothing refuted or open; the frameworks' forms
    # name helpers (coef0 = rsqrt(var + eps), ...), the five lines "not checked"
    for mark in ("✗", "?", "not proven"):
        assert mark not in result.output, mark
    assert result.output.count("· not checked") == 5 * 4


def _write_form(tmp_path: Path, dx_expr: str, name: str = "user") -> Path:
    example = run("forms", "--example").output
    original = 'expr = "gamma/sqrt(var + eps) * (g[i] - (dbeta + xhat[i]*dgamma)/M)"'
    assert original in example
    path = tmp_path / f"{name}.toml"
    path.write_text(example.replace(original, f'expr = "{dx_expr}"'), encoding="utf-8")
    return path


def test_example_form_round_trips_and_holds(tmp_path):
    path = tmp_path / "example.toml"
    path.write_text(run("forms", "--example").output, encoding="utf-8")
    form = load_form(path)
    verdicts = check_form(form, methods=("exact",))
    assert {v.status for v in verdicts} == {Status.HOLDS}
    result = run("check", "--form", str(path), "--no-timing")
    assert result.exit_code == 0, result.output


def test_missing_gamma_is_refuted_with_counterexample(tmp_path):
    path = _write_form(tmp_path, "1/sqrt(var + eps) * (g[i] - (dbeta + xhat[i]*dgamma)/M)")
    result = run("check", "--form", str(path), "--mode", "per-activation", "--no-timing")
    assert result.exit_code == 1, result.output
    assert_golden("check_missing_gamma.txt", result.output)


def test_refuted_json_names_line_and_values(tmp_path):
    path = _write_form(tmp_path, "gamma/sqrt(var + eps) * (g[i] - (dbeta - xhat[i]*dgamma)/M)")
    result = run("check", "--form", str(path), "--json")
    assert result.exit_code == 1
    payload = json.loads(result.output)
    assert payload["status"] == "refuted" and payload["exit_code"] == 1
    refuted = [v for v in payload["verdicts"] if v["status"] == "refuted"]
    assert {v["quantity"] for v in refuted} == {"dx[i]"}
    assert {v["method"] for v in refuted} == {"exact", "random"}
    undecided = [v for v in payload["verdicts"] if v["status"] == "undecided"]
    assert {(v["quantity"], v["method"]) for v in undecided} == {("dx[i]", "general")}
    assert {v["mode"] for v in refuted} == {"per-activation", "spatial"}
    cex = refuted[0]["counterexample"]
    assert cex["truth"] != cex["form"]
    assert set(cex["inputs"]) >= {"x", "g", "γ", "ε"}
    holding = [v for v in payload["verdicts"] if v["status"] == "holds"]
    assert {v["quantity"] for v in holding} == {"dbeta", "dgamma"}


def test_check_json_of_builtin_form():
    result = run("check", "compact", "--method", "random", "--m", "64", "--trials", "2", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["status"] == "holds"
    assert all(v["method"] == "random" and v["trials"] == 2 for v in payload["verdicts"])
    assert all(0 < v["bound"] < 1e-9 for v in payload["verdicts"])


def test_check_explicit_sizes_and_shapes():
    result = run(
        "check",
        "kronecker",
        "--method",
        "exact",
        "--n",
        "8",
        "--mode",
        "per-activation",
        "--no-timing",
    )
    assert result.exit_code == 0
    assert "exact: per-activation M = 8" in result.output
    result = run(
        "check",
        "compact",
        "--method",
        "exact",
        "--shape",
        "2,3,1,2",
        "--mode",
        "spatial",
        "--no-timing",
    )
    assert result.exit_code == 0
    assert "exact: spatial M = 4" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["check", "nosuchform"], "No form named 'nosuchform'"),
        (
            ["check", "--form", "missing.toml"],
            "missing.toml: no such file; give the path of a form file",
        ),
        (["check", "--n", "a-b"], "Cannot read the sizes"),
        (["check", "--n", "0"], "must be at least 1"),
        (["check", "--shape", "2,2,2"], "has 3 dimensions"),
        (["check", "--shape", "2,2", "--mode", "spatial"], "is per-activation"),
        (["derive", "--n", "0"], "must be at least 1"),
        (["derive", "--h", "3"], "--mode spatial"),
        (
            ["derive", "--mode", "spatial", "--unbiased", "--n", "1", "--h", "1", "--w", "1"],
            "M-1 = 0",
        ),
        (["forms", "nosuchform"], "No form named"),
    ],
)
def test_bad_input_exits_2_with_one_paragraph(args, message):
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "the key 'name' is missing"),
        ("name = 'x'\nequations = []\n", "has no equations"),
        ("name = [\n", "not valid TOML"),
        ("name='x'\n[[equations]]\ndefines='dx[i]'\nexpr='g[i]*('\n", "was never closed"),
        ("name='x'\n[[equations]]\ndefines='dx[i]'\nexpr='foo(g[i])'\n", "unknown function 'foo'"),
        ("name='x'\n[[equations]]\ndefines='dx[i]'\nexpr='z*g[i]'\n", "unknown name(s) z"),
        ("name='x'\n[[equations]]\ndefines='dx'\nexpr='g[i]'\n", "write defines = 'dx[i]'"),
        (
            "name='x'\n[[equations]]\ndefines='dx[i]'\nexpr='__import__(\"os\").getcwd()'\n",
            "unknown function",
        ),
    ],
)
def test_malformed_form_files_exit_2(tmp_path, content, message):
    path = tmp_path / "bad.toml"
    path.write_text(content, encoding="utf-8")
    result = run("check", "--form", str(path))
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_binary_form_file_exits_2(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_bytes(b"\x00\xff\xfe\x81binary")
    result = run("check", "--form", str(path))
    assert result.exit_code == 2
    assert "a binary file (it has NUL bytes), not text" in result.output


def test_undecided_exit_code_3(tmp_path):
    # (x_i − μ)/(x_i − Σx/M) is 1 for N ≥ 2 but 0/0 for N = 1: the line cannot be decided there.
    path = _write_form(
        tmp_path,
        "gamma/sqrt(var + eps) * (g[i] - (dbeta + xhat[i]*dgamma)/M) * (x[i]-mu)/(x[i]-sum(x[k],k)/M)",
    )
    result = run(
        "check",
        "--form",
        str(path),
        "--method",
        "exact",
        "--n",
        "1",
        "--mode",
        "per-activation",
        "--no-timing",
    )
    assert result.exit_code == 3, result.output
    assert "undecided" in result.output


# -- derive ---------------------------------------------------------------------------------------
def test_derive_output_is_exact():
    result = run("derive", "--n", "2")
    assert result.exit_code == 0, result.output
    assert_golden("derive_n2.txt", result.output)


def test_derive_spatial_latex_is_exact():
    result = run("derive", "--mode", "spatial", "--n", "2", "--h", "1", "--w", "2", "--latex")
    assert result.exit_code == 0, result.output
    assert_golden("derive_spatial_latex.txt", result.output)


def test_derive_general_proves_each_step_of_the_chain():
    result = run("derive", "--general")
    assert result.exit_code == 0, result.output
    assert_golden("derive_general.txt", result.output)
    assert result.output.count("✓ holds for every M") == 4
    assert "\\delta_{ik}\\delta_{jl}" in result.output  # Thorey's notation, as published


def test_derive_eval_mode_has_no_path_through_statistics():
    result = run("derive", "--eval", "--n", "3")
    assert result.exit_code == 0
    dx_line = next(line for line in result.output.splitlines() if line.startswith("∂L/∂xᵢ"))
    assert dx_line.startswith("∂L/∂xᵢ = ∂L/∂x̂ᵢ/√(ε + σ²)")
    assert "via" not in result.output.split("∂L/∂xᵢ")[1].split("∂L/∂γ")[0]


# -- forms and help -------------------------------------------------------------------------------
def test_forms_lists_every_builtin_form():
    result = run("forms")
    assert result.exit_code == 0
    for name in ("staged", "kronecker", "compact", "eval"):
        assert name in result.output
    # then the shipped LaTeX derivations, each by the name `check` takes
    documents = result.output.split("LaTeX derivation", 1)[1]
    for name, file in (("staged-latex", "staged.md"), ("thorey-chain", "thorey.tex")):
        assert name in documents and file in documents


def test_forms_shows_one_form():
    result = run("forms", "staged")
    assert result.exit_code == 0
    assert "2. dvar = " in result.output
    assert "arXiv:1502.03167" in result.output


@pytest.mark.parametrize("command", [[], ["check"], ["derive"], ["forms"]])
def test_every_help_has_an_example(command):
    result = run(*command, "--help")
    assert result.exit_code == 0
    assert "Example" in result.output
    assert "bnderive " in result.output


def test_python_m_bnderive_is_the_same_command():
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "bnderive", "--version"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0
    assert done.stdout.strip() == f"bnderive, version {__import__('bnderive').__version__}"


LINES_OUT_OF_ORDER = r"""# A derivation whose gradient line is checked by more methods than its forward lines

$$\mu = \frac{1}{m}\sum_{i=1}^m x_i$$

$$\sigma^2 = \frac{1}{m}\sum_{i=1}^m (x_i-\mu)^2$$

$$\hat{x}_i = \frac{x_i-\mu}{\sqrt{\sigma^2+\epsilon}}$$

$$\frac{\partial L}{\partial \beta} = \sum_{i=1}^m \frac{\partial L}{\partial y_i}$$
"""


def test_check_lists_the_lines_in_the_documents_order(tmp_path: Path):
    """The table follows the document: the randomized method checks only the gradient line,
    and its verdicts came first, so ∂L/∂β (line 9) was listed above μ (line 3)."""
    path = tmp_path / "post.md"
    path.write_text(LINES_OUT_OF_ORDER, encoding="utf-8")
    result = run("check", str(path), "--no-timing")
    assert result.exit_code == 0, result.output
    rows = [line.split()[0] for line in result.output.splitlines() if line[:1].isdigit()]
    assert rows == ["3", "5", "7", "9"], result.output
