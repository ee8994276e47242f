"""bnderive teach --norm: the lesson of BatchNorm's relatives on one reduction set.

The lesson's numbers are checked against independent oracles written here in Fractions (the
closed forms of LayerNorm and RMSNorm, nothing of bnderive); its claims (a mistake about γ
passes a test with every γᵢ = 1 and fails the lesson's, ε outside the root differs by O(ε)) are
checked to come out false where they are false; the quiz draws from the family's own forms
(BatchNorm's pool is unchanged); the notebooks are executed in a kernel (nbclient) with a
right and a wrong answer written into the exercise.
"""

from __future__ import annotations

import json
import sys
from fractions import Fraction
from pathlib import Path

import nbclient
import nbformat
import pytest
from click.testing import CliRunner
from rich.cells import cell_len

from bnderive.cli import main
from bnderive.read.corpus import corpus
from bnderive.teach.batch import choose_batch, choose_family_batch, square_mean_square
from bnderive.teach.lesson import build_lesson, family_traps, weight_trap
from bnderive.teach.notebook import exercise_cell
from bnderive.teach.quiz import make_quiz, quiz_pool

ENV = {"COLUMNS": "80", "FORCE_COLOR": None, "TERM": "dumb", "NO_COLOR": "1"}
FAMILIES = ("layer", "instance", "group", "rms")


def run(*args: str):
    return CliRunner().invoke(main, ["teach", *args], env=ENV)


def _root(square: Fraction) -> Fraction:
    num, den = square.numerator, square.denominator
    root = Fraction(round(num**0.5), round(den**0.5))
    assert root * root == square
    return root


# -- independent oracles ---------------------------------------------------------------------------
def layer_oracle(x, g, gamma, eps):
    """dx = (1/σ)(γg − mean(γg) − x̂·mean(γg·x̂)): LayerNorm's compact form, in Fractions."""
    m = len(x)
    mu = sum(x, Fraction(0)) / m
    root = _root(sum(((v - mu) ** 2 for v in x), Fraction(0)) / m + eps)
    xhat = [(v - mu) / root for v in x]
    dxhat = [a * b for a, b in zip(gamma, g, strict=True)]
    mean_d = sum(dxhat, Fraction(0)) / m
    mean_dx = sum((a * b for a, b in zip(dxhat, xhat, strict=True)), Fraction(0)) / m
    dx = tuple((d - mean_d - h * mean_dx) / root for d, h in zip(dxhat, xhat, strict=True))
    return dx, tuple(a * b for a, b in zip(g, xhat, strict=True))


def rms_oracle(x, g, gamma, eps):
    """dx = γg/r − x·Σ(γg·x)/(M r³), r = √(mean(x²) + ε): RMSNorm's, in Fractions."""
    m = len(x)
    r = _root(sum((v * v for v in x), Fraction(0)) / m + eps)
    wg = [a * b for a, b in zip(gamma, g, strict=True)]
    dot = sum((a * b for a, b in zip(wg, x, strict=True)), Fraction(0))
    dx = tuple(w / r - v * dot / (m * r**3) for w, v in zip(wg, x, strict=True))
    return dx, tuple(a * v / r for a, v in zip(g, x, strict=True))


@pytest.mark.parametrize("norm", ["layer", "group"])
@pytest.mark.parametrize("n", [2, 3, 5])
def test_centred_family_lessons_equal_the_oracle(norm, n):
    lesson = build_lesson(n, seed=n, norm=norm)
    b = lesson.batch
    assert lesson.holds, lesson.failures()
    dx, dgamma = layer_oracle(b.x, b.g, b.gamma, b.eps)
    assert lesson.value("dx") == dx and lesson.value("dgamma") == dgamma
    assert lesson.value("dbeta") == b.g
    assert b.root == _root(b.variance + b.eps)


@pytest.mark.parametrize("n", [1, 3, 4])
def test_rms_lesson_equals_the_oracle_and_has_no_mean(n):
    lesson = build_lesson(n, seed=2, norm="rms")
    b = lesson.batch
    assert lesson.holds, lesson.failures()
    assert [s.name for s in lesson.forward] == ["ms", "root", "xhat", "y", "L"]
    assert [s.name for s in lesson.backward] == ["dy", "dxhat", "dms", "dx", "dgamma"]
    assert b.beta is None
    dx, dgamma = rms_oracle(b.x, b.g, b.gamma, b.eps)
    assert lesson.value("dx") == dx and lesson.value("dgamma") == dgamma


def test_family_batches_make_gamma_visible():
    for norm in ("layer", "rms", "group"):
        for seed in range(5):
            b = choose_family_batch(3, norm, seed)
            assert len(set(b.gamma)) > 1  # a γ the same for every element hides γ outside a sum
            assert 0 not in b.x if norm == "rms" else True
    group = choose_family_batch(2, "group", 0)
    assert group.m == 4 and group.gamma[0] == group.gamma[1] and group.gamma[2] == group.gamma[3]


def test_batchnorm_batches_are_unchanged_by_the_family():
    # BatchNorm's lesson draws exactly as before the family (main at b9024ab gave these)
    F = Fraction
    for seed, x, g, gamma, beta, eps in (
        (0, (-2, 0, 5), (1, -1, 2), F(-2), F(-1), F(1, 3)),
        (7, (-1, -2, 3), (2, -3, -1), F(-3, 2), F(1), F(1, 36)),
    ):
        b = choose_batch(3, seed=seed)
        assert (b.x, b.g, b.gamma, b.beta, b.eps) == (
            tuple(map(F, x)),
            tuple(map(F, g)),
            gamma,
            beta,
            eps,
        )
        assert build_lesson(3, seed=seed).batch == b


def test_instance_lesson_uses_batchnorms_traps_at_its_set():
    lesson = build_lesson(3, seed=1, norm="instance")
    assert lesson.holds, lesson.failures()
    assert [t.key for t in lesson.traps] == [
        "zero-term",
        "uniform-gradient",
        "gamma-sigma",
        "degenerate",
    ]
    assert [f.form.name for f in lesson.forms] == ["instancenorm-pytorch"]


def test_family_traps_are_the_familys_mistakes():
    keys = {
        n: [t.key for t in build_lesson(3, seed=0, norm=n).traps] for n in ("layer", "rms", "group")
    }
    assert keys == {
        "layer": ["gamma-outside-sum"],
        "rms": ["gamma-outside-sum", "gamma-missing", "eps-outside"],
        "group": ["gamma-outside-sum"],  # one GroupNorm set is LayerNorm's mathematics
    }


def test_a_trap_claim_that_is_false_is_reported_false():
    # ε outside the root is not hidden by γᵢ = 1: run as a weight mistake, the claim fails
    b = choose_family_batch(3, "rms", 0)
    eps_outside = corpus().find("rmsnorm-paper/eps-outside")
    assert not weight_trap(b, [eps_outside]).holds
    assert weight_trap(b, [corpus().find("rmsnorm-rstd/gamma-missing")]).holds


def test_eps_outside_trap_is_computed_at_a_square_mean_square():
    x = square_mean_square(4, seed=3)
    total = 4 * sum(v * v for v in x)
    assert int(total**0.5) ** 2 == total and len(set(x)) == 4
    (trap,) = [
        t for t in family_traps(choose_family_batch(4, "rms", 3), 3) if t.key == "eps-outside"
    ]
    assert trap.holds
    large, small = trap.batches
    assert large.eps > 1 > Fraction(1, 10**4) > small.eps > 0


# -- the command line -------------------------------------------------------------------------------
def test_teach_norm_layer_walkthrough():
    result = run("--norm", "layer", "--n", "3")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("LayerNorm's backward pass on a tiny set, every number exact")
    assert "γ = [3/2, 3/2, -2]   the scale, one per feature" in out
    assert "3. Three closed forms, the same numbers" in out
    assert "γ taken out of the sums over the set: invisible while every γᵢ is 1" in out
    assert "(≠ the true dx: fails)" in out and "(= the true dx: passes)" in out


def test_teach_norm_rms_traps():
    result = run("--norm", "rms", "--part", "traps")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "chosen so that √(ms + ε) = 13/5 is rational" in out
    assert "γ missing: invisible while every γᵢ is 1" in out
    assert "ε outside the root: a difference that shrinks with ε" in out
    assert "≈ 3.02e-06: below 10⁻⁴" in out and "≈ 0.456: above 10⁻⁴" in out


def test_teach_norm_usage_errors():
    bad = run("--norm", "layer", "--mode", "spatial")
    assert bad.exit_code == 2 and "--mode chooses BatchNorm's layout" in bad.stderr
    assert run("--norm", "rms", "--n", "9").exit_code == 2


def test_family_quiz_draws_from_the_familys_forms():
    layer = quiz_pool("layer")
    assert layer and all(m.base.startswith("layernorm-") for m in layer)
    assert all(m.base.startswith("rmsnorm-") for m in quiz_pool("rms"))
    assert quiz_pool() == quiz_pool("batch")
    assert not any(m.form.norm.value != "batch" for m in quiz_pool())
    quiz = make_quiz(1, "rms")
    right = run("--norm", "rms", "--quiz", "--seed", "1", "--answer", str(quiz.wrong_line))
    assert right.exit_code == 0, right.output
    other = next(k for k in range(1, len(quiz.lines) + 1) if k != quiz.wrong_line)
    wrong = run("--norm", "rms", "--quiz", "--seed", "1", "--answer", str(other))
    assert wrong.exit_code == 1, wrong.output


@pytest.mark.parametrize(("norm", "base"), [("group", "groupnorm-"), ("instance", "instancenorm-")])
def test_group_and_instance_quizzes_draw_from_their_own_forms(norm, base):
    # issue 16: these two families had no mutant, so --quiz exited 2
    pool = quiz_pool(norm)
    assert len(pool) >= 4 and all(m.base.startswith(base) for m in pool)
    for seed in range(3):
        quiz = make_quiz(seed, norm)
        args = ("--norm", norm, "--quiz", "--seed", str(seed), "--answer")
        right = run(*args, str(quiz.wrong_line))
        assert right.exit_code == 0, right.output
        other = next(k for k in range(1, len(quiz.lines) + 1) if k != quiz.wrong_line)
        wrong = run(*args, str(other))
        assert wrong.exit_code == 1, wrong.output


@pytest.mark.parametrize("norm", FAMILIES)
@pytest.mark.parametrize("n", [1, 2, 6])
def test_every_family_lesson_runs_and_fits_80_columns(norm, n):
    result = run("--norm", norm, "--n", str(n), "--seed", "1")
    assert result.exit_code == 0, result.output
    assert max(cell_len(line) for line in result.stdout.splitlines()) <= 80
    small = build_lesson(n, seed=1, norm=norm).batch.m < 3
    words = " ".join(result.stdout.split())
    if norm != "instance":  # M < 3 hides the family's mistakes: computed at a set of three
        assert ("is too small for the mistake to show" in words) == small


def test_quiz_names_the_adjoint_of_the_refuted_entry():
    # the counterexample of a dx̂ line is ∂L/∂x̂ at that element (it was labelled ∂L/∂x)
    result = run("--norm", "layer", "--quiz", "--seed", "0", "--answer", "1")
    assert result.exit_code == 0, result.output
    assert "dxhat[1] = ∂L/∂x̂[0, 0]: truth 12, this line 3" in result.stdout
    assert "bnderive's exact check (M = 3 and 4)" in result.stdout


# -- the notebooks, executed ------------------------------------------------------------------------
LAYER_RIGHT = """
import numpy as np


def layernorm_backward(x, gamma, beta, dout, eps):
    mu = x.mean()
    var = ((x - mu) ** 2).mean()
    xhat = (x - mu) / np.sqrt(var + eps)
    dxhat = dout * gamma
    dx = (dxhat - dxhat.mean() - xhat * (dxhat * xhat).mean()) / np.sqrt(var + eps)
    return dx, dout * xhat, dout
"""

# BatchNorm's compact form carried over: γ taken out of the means (the corpus's llm.c mutant)
LAYER_WRONG = LAYER_RIGHT.replace("dxhat = dout * gamma", "dxhat = dout").replace(
    "dx = (", "dx = gamma * ("
)

RMS_RIGHT = """
import numpy as np


def rmsnorm_backward(x, gamma, dout, eps):
    r = np.sqrt((x * x).mean() + eps)
    wg = dout * gamma
    dx = wg / r - x * (wg * x).sum() / (x.size * r**3)
    return dx, dout * x / r
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


def _execute(tmp_path: Path, norm: str, answer: str | None, kernel: str, monkeypatch) -> list[str]:
    path = tmp_path / f"{norm}.ipynb"
    result = CliRunner().invoke(main, ["teach", "--norm", norm, "--notebook", str(path)])
    assert result.exit_code == 0, result.output
    monkeypatch.setenv("JUPYTER_PATH", kernel)
    nb = nbformat.read(path, as_version=4)
    if answer is not None:
        cell = exercise_cell(nb)
        cell.source = cell.source.splitlines()[0] + "\n" + answer.lstrip("\n")
    client = nbclient.NotebookClient(
        nb,
        kernel_name="bnderive-test",
        timeout=180,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError if any cell fails
    return [
        "".join(o.get("text", "") for o in c.outputs if o.output_type == "stream")
        for c in nb.cells
        if c.cell_type == "code"
    ]


def test_layer_notebook_right_and_wrong(tmp_path, kernel, monkeypatch):
    outputs = _execute(tmp_path, "layer", LAYER_RIGHT, kernel, monkeypatch)
    text = "".join(outputs)
    assert text.count("✓") >= 20 and "DIFFERS" not in text
    assert "layernorm-llmc/gamma-outside-sum, weak test: passes" in text
    assert "✓ layernorm_backward equals the exact gradient" in outputs[-1]
    wrong = _execute(tmp_path, "layer", LAYER_WRONG, kernel, monkeypatch)[-1]
    assert "dx: ✗ the lesson, ✗ a random set" in wrong
    assert "dgamma: ✓ the lesson, ✓ a random set" in wrong
    assert (
        "known mistake: γ taken out of the sums over the set (layernorm-llmc/gamma-outside-sum)"
        in wrong
    )
    assert "✗ layernorm_backward is wrong" in wrong


def test_rms_notebook_runs_with_the_template_and_a_right_answer(tmp_path, kernel, monkeypatch):
    untouched = _execute(tmp_path, "rms", None, kernel, monkeypatch)
    assert "NotImplementedError" in untouched[-1]
    outputs = _execute(tmp_path, "rms", RMS_RIGHT, kernel, monkeypatch)
    text = "".join(outputs)
    assert "DIFFERS" not in text and "rmsnorm-paper/eps-outside, ε = 1e-05" in text
    assert "✓ rmsnorm_backward equals the exact gradient" in outputs[-1]
