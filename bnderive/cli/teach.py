from __future__ import annotations

import os
import re
import shutil
import sys
from typing import TYPE_CHECKING, Any

import click

from bnderive.cli.common import NORMS, user_errors
from bnderive.errors import BnderiveError

if TYPE_CHECKING:
    from rich.console import Console

#: Exit code when a claim the lesson computes came out false: bnderive itself is wrong.
EXIT_INTERNAL = 4
#: Spaces at the end of a line (before any closing colour codes): rich pads indented blocks.
_TRAILING = re.compile(r"[ ]+((?:\x1b\[[0-9;]*m)*)$", re.M)


# -- teach ----------------------------------------------------------------------------------------
@click.command()
@click.option(
    "--n",
    "n",
    default=3,
    show_default=True,
    type=int,
    help="Batch size N (1 to 6): M = N values per feature, or M = 2N per channel in SPATIAL; "
    "with --norm, the size of the set's last axis (GroupNorm: M = 2N).",
)
@click.option(
    "--mode",
    type=click.Choice(["per-activation", "spatial"]),
    default="per-activation",
    show_default=True,
    help="PER_ACTIVATION: an (N, 1) input; SPATIAL: an (N, 1, 1, 2) input, one channel.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Which tiny batch (and quiz).")
@click.option(
    "--step",
    is_flag=True,
    help="Wait for Enter between steps (only when stdin and stdout are terminals).",
)
@click.option(
    "--part",
    type=click.Choice(["forward", "backward", "forms", "traps", "all"]),
    default="all",
    show_default=True,
    help="Which part of the walkthrough to show.",
)
@click.option(
    "--notebook",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="FILE.ipynb",
    help="Write the lesson as a Jupyter notebook with an exercise and a check cell.",
)
@click.option(
    "--norm",
    type=click.Choice(NORMS),
    default="batch",
    show_default=True,
    help="The family: batch (BatchNorm), or one set of layer (a (1, D) sample, D = --n), rms "
    "(the same, no mean), instance (a (1, 1, 1, W) input, W = --n) or group (one group of two "
    "channels of a (1, 4, 1, W) input, G = 2).",
)
@click.option("--quiz", is_flag=True, help="Find the wrong line of a derivation.")
@click.option(
    "--answer",
    type=int,
    default=None,
    metavar="K",
    help="The quiz's answer, without asking: exit 0 when line K is the wrong one, 1 if not.",
)
@user_errors
def teach(
    n: int,
    mode: str,
    seed: int,
    step: bool,
    part: str,
    notebook: str | None,
    norm: str,
    quiz: bool,
    answer: int | None,
) -> None:
    """Teach the backward pass of BatchNorm on a tiny batch, every number exact.

    The walkthrough evaluates bnderive's own forward graph and ground truth at a batch of small
    rationals whose √(σ²+ε) is rational, so every number is an exact fraction (decimals beside):
    the forward pass stage by stage beside the graph, each adjoint of the backward pass with
    its chain-rule product, the three published closed forms giving the same numbers, and the
    traps (the zero term of dμ, a uniform upstream gradient, γ = 1 and σ² + ε = 1, batches of
    one and two), each computed.

    --notebook writes the same lesson as a Jupyter notebook (NumPy code cells, an exercise cell
    for batchnorm_backward and a cell that checks it with bnderive's checker; needs nbformat:
    pip install 'bnderive[teach]'). --quiz shows a published derivation with one known mistake
    of the corpus put in and asks for the wrong line; bnderive's exact checker decides it.

    --norm teaches one of BatchNorm's relatives on one reduction set: the forward graph of a
    sample (LayerNorm, RMSNorm), the same staged backward pass, the family's published forms,
    and the family's known mistakes computed (γ taken out of a sum, RMSNorm's weight forgotten,
    ε outside the root: each hidden by a test that γ = 1 or a small ε cannot fail); its quiz
    draws from the family's forms and mutants.

    Exit codes: 0 the lesson ran (a quiz: the answer is right), 1 the quiz's answer is wrong,
    2 bad input or usage, 4 a computed claim of the lesson came out false (a bug to report).

    \b
    Examples:
      bnderive teach
      bnderive teach --part traps
      bnderive teach --n 4 --seed 7 --step
      bnderive teach --mode spatial --n 2 --part forward
      bnderive teach --notebook lesson.ipynb
      bnderive teach --quiz --seed 3
      bnderive teach --quiz --seed 3 --answer 2
      bnderive teach --norm layer --n 4
      bnderive teach --norm rms --part traps
      bnderive teach --norm layer --notebook layernorm.ipynb
      bnderive teach --norm rms --quiz --seed 1
    """
    if answer is not None and not quiz:
        raise BnderiveError("--answer K answers a quiz: add --quiz, or leave --answer out.")
    if quiz and notebook:
        raise BnderiveError("--quiz and --notebook are two different lessons: give one of them.")
    if (quiz or notebook) and part != "all":
        raise BnderiveError(
            "--part chooses a part of the terminal walkthrough; leave it out with --quiz or "
            "--notebook (the notebook has every part)."
        )
    if (quiz or notebook) and step:
        raise BnderiveError(
            "--step paces the terminal walkthrough; leave it out with --quiz or --notebook."
        )
    given = [f"--{name}" for name in ("n", "mode") if _given(name)]
    if quiz and given:
        raise BnderiveError(
            f"{' and '.join(given)} choose the walkthrough's batch; the quiz is chosen by "
            "--seed alone: leave them out."
        )
    if norm != "batch" and _given("mode"):
        raise BnderiveError(
            f"--mode chooses BatchNorm's layout; the {norm} lesson has its own (see --norm in "
            "--help): leave --mode out."
        )
    if quiz:
        _quiz(seed, answer, norm)
        return
    from bnderive.teach.lesson import build_lesson

    lesson = build_lesson(n, mode, seed, norm)
    if notebook:
        from bnderive.teach.notebook import write_notebook

        path = write_notebook(notebook, lesson)
        click.echo(
            f"Wrote {path}: the lesson for seed {seed} ({lesson.batch.spec.describe()}); run "
            "it with jupyter (the check cell needs bnderive in the kernel's Python)."
        )
        _fail_if_false(lesson)
        return
    from bnderive.teach.walkthrough import PARTS, steps

    out = teach_console()
    parts = PARTS if part == "all" else (part,)
    pause = _pauser(out, step)
    for k, renderable in enumerate(steps(lesson, parts)):
        if k:
            pause()
        show(out, renderable)
    _fail_if_false(lesson)


def _given(name: str) -> bool:
    """Whether the option was given on the command line (not left at its default)."""
    from click.core import ParameterSource

    source = click.get_current_context().get_parameter_source(name)
    return source not in (None, ParameterSource.DEFAULT)


def teach_console() -> Console:
    """A console for the lesson: the terminal's width on a terminal, else COLUMNS (as every
    command reads it) or 80; long lines wrap (no soft wrap); NO_COLOR is honoured by rich."""
    from rich.console import Console

    if sys.stdout.isatty():
        width = shutil.get_terminal_size((80, 24)).columns
    else:
        try:
            width = int(os.environ.get("COLUMNS") or 80)
        except ValueError:
            width = 80
    return Console(width=max(40, width), highlight=False, soft_wrap=False)


def show(out: Console, renderable: Any) -> None:
    """Print ``renderable`` without the spaces rich pads indented lines with (copyable text,
    stable golden files)."""
    with out.capture() as captured:
        out.print(renderable)
    out.file.write(_TRAILING.sub(r"\1", captured.get()))
    out.file.flush()


def interactive() -> bool:
    """Whether the lesson may wait for the reader: both stdin and stdout are terminals."""
    return sys.stdin.isatty() and sys.stdout.isatty()


def _pauser(out: Console, step: bool) -> Any:
    waiting = step and interactive()

    def pause() -> None:
        nonlocal waiting
        if not waiting:
            return
        try:
            out.input("[dim]  ⏎ next step (Ctrl-D: show the rest)[/]")
        except EOFError:
            waiting = False

    return pause


def _fail_if_false(lesson: Any) -> None:
    if not lesson.holds:
        click.echo(
            "Error: a claim of the lesson came out false ("
            + "; ".join(lesson.failures())
            + "). This is a bug in bnderive: please report it with the command you ran.",
            err=True,
        )
        sys.exit(EXIT_INTERNAL)


# -- quiz -----------------------------------------------------------------------------------------
def _quiz(seed: int, answer: int | None, norm: str = "batch") -> None:
    from bnderive.teach.quiz import grade, make_quiz
    from bnderive.teach.quiz_view import explanation, question

    quiz = make_quiz(seed, norm)
    out = teach_console()
    show(out, question(quiz))
    count = len(quiz.lines)
    if answer is None:
        click.echo()
        try:
            answer = click.prompt(
                f"Which line is wrong? (1-{count})", type=click.IntRange(1, count)
            )
        except click.exceptions.Abort:
            if sys.stdin.isatty():
                sys.exit(130)
            raise BnderiveError(
                "The quiz got no answer (stdin ended): type a line number, or pass --answer K."
            ) from None
    elif not 1 <= answer <= count:
        raise BnderiveError(
            f"--answer {answer}: the derivation has lines 1 to {count}; give one of them."
        )
    result = grade(quiz, answer)
    show(out, explanation(quiz, result))
    sys.exit(0 if result.right else 1)
