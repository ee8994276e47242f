"""bnderive teach: the lesson's numbers, the graph picture, the walkthrough, the quiz.

The lesson computes everything with bnderive's graph, truth and evaluator; these tests check
those numbers against an independent oracle (the compact closed form written out in Fractions
here), check that the lesson's comparisons can fail (a wrong form is flagged), and pin the
terminal output with golden files at 80 columns.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from fractions import Fraction
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.cells import cell_len

from bnderive.cli import main
from bnderive.core.graph import Graph
from bnderive.core.spec import Spec
from bnderive.read.corpus import corpus
from bnderive.teach.batch import MAX_N, choose_batch, rational_root
from bnderive.teach.graph_view import picture
from bnderive.teach.lesson import batch_env, build_lesson, run_form
from bnderive.teach.printers import numpy, with_decimal
from bnderive.teach.quiz import grade, make_quiz, quiz_pool
from bnderive.verify.verdict import Status

GOLDEN = Path(__file__).parent / "golden"
ENV = {"COLUMNS": "80", "FORCE_COLOR": None, "TERM": "dumb", "NO_COLOR": "1"}
ANSI_COLOR = re.compile(r"\x1b\[[0-9;]*3[0-9][;m]|\x1b\[[0-9;]*9[0-7][;m]")


def run(*args: str, input: str | None = None, env: dict | None = None):
    return CliRunner().invoke(main, ["teach", *args], env=env or ENV, input=input)


def assert_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("BNDERIVE_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


# -- an independent oracle ----------------------------------------------------------------------
def oracle(x, g, gamma, eps):
    """The compact form in Fractions, with √(σ²+ε) found by trying: nothing of bnderive."""
    m = len(x)
    mu = sum(x, Fraction(0)) / m
    var = sum(((v - mu) ** 2 for v in x), Fraction(0)) / m
    square = var + eps
    root = Fraction(
        int(round(float(square.numerator) ** 0.5)), int(round(float(square.denominator) ** 0.5))
    )
    assert root * root == square
    xhat = [(v - mu) / root for v in x]
    dbeta = sum(g, Fraction(0))
    dgamma = sum((a * b for a, b in zip(g, xhat, strict=True)), Fraction(0))
    dx = tuple(
        gamma / root * (gi - (dbeta + xi * dgamma) / m) for gi, xi in zip(g, xhat, strict=True)
    )
    return {
        "mu": mu,
        "var": var,
        "root": root,
        "xhat": tuple(xhat),
        "dx": dx,
        "dgamma": dgamma,
        "dbeta": dbeta,
    }


# -- the batch ----------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["per-activation", "spatial"])
@pytest.mark.parametrize("n", range(1, MAX_N + 1))
def test_batch_is_exact_and_adversarial(n, mode):
    for seed in range(8):
        b = choose_batch(n, mode, seed)
        want = oracle(b.x, b.g, b.gamma, b.eps)  # asserts √(σ²+ε) is rational
        assert want["root"] == b.root and b.eps > 0
        assert b.gamma not in (0, 1, -1) and abs(b.gamma) != b.root
        assert all(v != 0 for v in b.g)
        if b.m >= 2:
            assert 0 not in want["xhat"] and len(set(b.x)) == b.m
            assert len(set(b.g)) >= min(b.m, 3) and want["dbeta"] != 0 and want["dgamma"] != 0


def test_batch_is_stable_under_a_seed():
    assert choose_batch(3, "per-activation", 0) == choose_batch(3, "per-activation", 0)
    assert choose_batch(3, "per-activation", 0).x == (-2, 0, 5)
    assert choose_batch(3, "per-activation", 0) != choose_batch(3, "per-activation", 1)


def test_rational_root_is_the_closest_small_one():
    r, eps = rational_root(Fraction(14, 3))
    assert (r, eps) == (Fraction(13, 6), Fraction(1, 36))
    assert rational_root(Fraction(0)) == (Fraction(1, 6), Fraction(1, 36))


# -- the lesson ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("n", "mode", "seed"),
    [
        (3, "per-activation", 0),
        (4, "spatial", 5),
        (1, "per-activation", 2),
        (2, "per-activation", 3),
        (1, "spatial", 0),
        (6, "per-activation", 11),
    ],
)
def test_lesson_numbers_equal_the_oracle(n, mode, seed):
    lesson = build_lesson(n, mode, seed)
    b = lesson.batch
    want = oracle(b.x, b.g, b.gamma, b.eps)
    for name in ("mu", "var", "root", "xhat"):
        assert lesson.value(name) == want[name], name
    for name in ("dx", "dgamma", "dbeta"):
        assert lesson.value(name) == want[name], name
    assert lesson.value("xmu") == tuple(v - want["mu"] for v in b.x)
    assert lesson.value("y") == tuple(b.gamma * v + b.beta for v in want["xhat"])
    assert lesson.holds, lesson.failures()


def test_backward_paths_add_up_and_the_zero_path_is_zero():
    lesson = build_lesson()
    dmu = next(s for s in lesson.backward if s.name == "dmu")
    assert {p.via for p in dmu.paths} == {"xhat", "var"}
    assert next(p for p in dmu.paths if p.via == "var").value == 0
    dx = next(s for s in lesson.backward if s.name == "dx")
    assert [p.via for p in dx.paths] == ["xhat", "var", "mu"]  # nearest reader first
    total = tuple(sum(c, Fraction(0)) for c in zip(*(p.value for p in dx.paths), strict=True))
    assert total == dx.value and all(s.paths_add_up for s in lesson.backward)


def test_a_wrong_form_is_flagged_not_waved_through():
    lesson = build_lesson()
    truth = {s.name: s.value for s in lesson.backward}
    wrong = run_form(corpus().find("compact/gamma-missing").form, batch_env(lesson.batch), truth)
    assert not wrong.agrees
    assert [line.agrees for line in wrong.lines] == [True, True, False]


def test_traps_are_computed():
    lesson = build_lesson()
    traps = {t.key: t for t in lesson.traps}
    assert set(traps) == {"zero-term", "uniform-gradient", "gamma-sigma", "degenerate"}
    assert all(t.holds for t in traps.values())
    uniform = traps["uniform-gradient"].rows
    assert uniform[0].value == (0, 0, 0) and uniform[1].value == (0, 0, 0)
    assert re.search(r"(\d+) of (\d+) mutants", uniform[-1].note)
    sigma = {r.label: r for r in traps["gamma-sigma"].rows}
    assert sigma["weak test: compact/gamma-missing dx"].value == sigma["weak test: true dx"].value
    assert (
        sigma["strong test: compact/gamma-missing dx"].value != sigma["strong test: true dx"].value
    )
    (two,) = traps["degenerate"].batches
    assert two.m == 2 and traps["degenerate"].rows[-1].value == two.eps / two.root**2


# -- printers and the picture -------------------------------------------------------------------
def test_numbers_have_decimals_beside_fractions():
    assert with_decimal(Fraction(-12, 13)) == "-12/13 ≈ -0.9231"
    assert with_decimal(Fraction(6, 5)) == "6/5 = 1.2"
    assert with_decimal((Fraction(3), Fraction(-1))) == "[3, -1]"


def test_numpy_printer_writes_one_reduction_set():
    lesson = build_lesson()
    formulas = {s.name: numpy(s.formula) for s in lesson.forward}
    assert formulas["mu"] == "np.sum(x)/M"
    assert formulas["var"] == "np.sum((x - mu)**2)/M"
    assert formulas["xhat"] == "(x - mu)/np.sqrt(var + eps)"


def test_graph_picture_is_the_graph():
    graph = Graph.build(Spec())
    rows = picture(graph)
    assert [r.node for r in rows] == [
        "x",
        "mu",
        "var",
        "eps",
        "xhat",
        "gamma",
        "beta",
        "y",
        "g",
        "L",
    ]
    for row in rows:
        if row.node in graph.names:
            assert set(row.reads) == set(graph.stage(row.node).parents()) - {"M"}
    assert [r.lanes.rstrip() for r in rows] == [
        "●",
        "├─►●",
        "├──┼─►●",
        "│  │  │  ●",
        "●◄─┴──┴──╯",
        "│  ●",
        "│  │  ●",
        "●◄─┴──╯",
        "│  ●",
        "●◄─╯",
    ]


# -- the command line ---------------------------------------------------------------------------
def test_teach_default_golden():
    result = run()
    assert result.exit_code == 0, result.output
    assert_golden("teach_default.txt", result.stdout)


def test_teach_spatial_traps_golden():
    result = run("--mode", "spatial", "--n", "2", "--seed", "5", "--part", "traps")
    assert result.exit_code == 0, result.output
    assert_golden("teach_spatial_traps.txt", result.stdout)


@pytest.mark.parametrize(
    "args", [(), ("--n", "6", "--seed", "4"), ("--mode", "spatial", "--n", "4")]
)
def test_teach_fits_80_columns(args):
    result = run(*args)
    assert result.exit_code == 0, result.output
    widest = max(cell_len(line) for line in result.stdout.splitlines())  # x̂ is one cell
    assert widest <= 80
    assert not any(line.endswith(" ") for line in result.stdout.splitlines())


def test_piped_output_follows_columns():
    wide = run(env={**ENV, "COLUMNS": "100"}).stdout
    assert wide != run().stdout and max(cell_len(line) for line in wide.splitlines()) <= 100


def test_parts_select_sections():
    result = run("--part", "backward")
    assert "2. The backward pass" in result.stdout
    assert "1. The forward pass" not in result.stdout and "4. Traps" not in result.stdout


def test_no_color_is_respected():
    terminal = {**ENV, "TERM": "xterm-256color", "FORCE_COLOR": "1"}
    colored = run("--part", "forward", env={**terminal, "NO_COLOR": None})
    assert ANSI_COLOR.search(colored.stdout)
    plain = run("--part", "forward", env={**terminal, "NO_COLOR": "1"})
    assert not ANSI_COLOR.search(plain.stdout)
    assert re.sub(r"\x1b\[[0-9;]*m", "", plain.stdout) == run("--part", "forward").stdout


def test_step_never_waits_without_a_terminal():
    # CliRunner's stdin and stdout are not terminals: --step must not read or print prompts.
    assert run("--step", "--part", "forward").stdout == run("--part", "forward").stdout


def test_step_waits_for_enter_on_a_terminal(monkeypatch):
    cli_teach = importlib.import_module("bnderive.cli.teach")  # the module, not the command
    monkeypatch.setattr(cli_teach, "interactive", lambda: True)
    result = run("--step", "--part", "forward", input="\n" * 20)
    plain = run("--part", "forward").stdout
    assert result.exit_code == 0
    prompts = result.stdout.count("next step")
    assert prompts == 8  # the header, the graph, then seven stages: eight waits between them
    assert result.stdout.replace("  ⏎ next step (Ctrl-D: show the rest)", "") == plain


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--n", "0"), "from 1 to 6"),
        (("--n", "7"), "from 1 to 6"),
        (("--answer", "2"), "add --quiz"),
        (("--quiz", "--notebook", "x.ipynb"), "give one of them"),
        (("--quiz", "--part", "forms"), "--part"),
        (("--quiz", "--answer", "9"), "lines 1 to"),
        (("--quiz", "--n", "4"), "--seed alone"),
        (("--quiz", "--step"), "--step paces"),
        (("--notebook", "x.ipynb", "--step"), "--step paces"),
    ],
)
def test_usage_errors_exit_2(args, message):
    result = run(*args)
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.output


# -- the quiz -----------------------------------------------------------------------------------
@pytest.mark.parametrize("mutant", quiz_pool(), ids=lambda m: m.id)
def test_quiz_answer_is_the_first_refuted_line(mutant):
    """Catalogue-driven: every mutant a quiz can draw has a first refuted line, the checker's,
    and it is a line the mistake edited; every line before it holds."""
    index = quiz_pool().index(mutant)
    seed = next(s for s in range(2000) if _drawn(s) == index)
    quiz = make_quiz(seed)
    assert quiz.mutant is mutant
    assert quiz.wrong_line in mutant.edited
    for number in range(1, quiz.wrong_line):
        assert quiz.verdict(number).status is Status.HOLDS
    refuted = quiz.verdict(quiz.wrong_line)
    assert refuted.status is Status.REFUTED and refuted.counterexample is not None


def _drawn(seed: int) -> int:
    from random import Random

    return Random(seed).randrange(len(quiz_pool()))


def test_quiz_pool_is_published_forms_with_edited_lines():
    pool = quiz_pool()
    assert len(pool) >= 40
    assert {m.base for m in pool} <= {"staged", "compact", "kronecker", "kronecker-chain", "eval"}
    assert all(m.edited and m.form.order == 1 for m in pool)


def test_grade_explains_each_kind_of_wrong_answer():
    quiz = make_quiz(3)  # staged/sign-flip#dx: line 4 is wrong
    assert quiz.mutant.id == "staged/sign-flip#dx" and quiz.wrong_line == 4
    assert grade(quiz, 4).right
    assert "holds" in grade(quiz, 2).about_answer
    chain = next(s for s in range(200) if make_quiz(s).mutant.id == "staged/gamma-missing")
    later = grade(make_quiz(chain), 3)
    assert not later.right and "only because it uses the value of line 1" in later.about_answer


def test_quiz_answer_exit_codes_and_golden():
    right = run("--quiz", "--seed", "3", "--answer", "4")
    assert right.exit_code == 0 and "✓ Right: line 4" in right.stdout
    wrong = run("--quiz", "--seed", "3", "--answer", "2")
    assert wrong.exit_code == 1
    assert_golden("teach_quiz_wrong.txt", wrong.stdout)


def test_quiz_reads_the_answer_from_stdin():
    result = run("--quiz", "--seed", "3", input="4\n")
    assert result.exit_code == 0 and "Which line is wrong? (1-6)" in result.stdout
    empty = run("--quiz", "--seed", "3", input="")
    assert empty.exit_code == 2 and "--answer K" in empty.stderr


def test_notebook_without_nbformat_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "nbformat", None)  # import nbformat raises ImportError
    result = run("--notebook", str(tmp_path / "lesson.ipynb"))
    assert result.exit_code == 2
    assert "pip install 'bnderive[teach]'" in result.stderr
    assert not (tmp_path / "lesson.ipynb").exists()
