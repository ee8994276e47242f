"""The command line: click commands over the library, rich for output, no mathematics here.

One module per command (or small group of commands), imported only when its command runs or
shows its help (``COMMANDS``); each imports the library only inside its command, so that
``bnderive --help`` starts fast (SymPy, NumPy, lark and rich's heavy parts are never imported by
a ``--help``: ``tests/test_help.py``).
"""

from __future__ import annotations

import inspect

import click

from bnderive import __version__
from bnderive.cli.common import Group, LazyCommands

#: Every command: its name → (where it is defined, the first sentence of its docstring, which
#: ``bnderive --help`` lists without importing the command's module).
COMMANDS: dict[str, tuple[str, str]] = {
    "bench": (
        "bnderive.cli.emit:bench",
        "Time the emitted backward against hand NumPy, numba, PyTorch and the memory bound.",
    ),
    "check": (
        "bnderive.cli.check:check",
        "Check derivations of the backward pass against the ground truth.",
    ),
    "check-impl": (
        "bnderive.cli.check_impl:check_impl",
        "Check NumPy implementations of BatchNorm: the forward output (training and eval mode), "
        "the running statistics, and dx, dgamma, dbeta of every backward, one row each.",
    ),
    "conventions": (
        "bnderive.cli.conventions:conventions",
        "Run the frameworks' running-statistics conventions on the same batches and show how far "
        "their running μ, σ² and eval-mode outputs drift apart.",
    ),
    "derive": (
        "bnderive.cli.derive:derive",
        "Print the ground truth: each forward stage and its adjoint, stage by stage.",
    ),
    "emit": (
        "bnderive.cli.emit:emit",
        "Write a proven form as a NumPy module, verified before it is written.",
    ),
    "explain": (
        "bnderive.cli.explain:explain",
        "Explain why a gradient test of BatchNorm can lie: what in its setup hides mistakes.",
    ),
    "forms": (
        "bnderive.cli.catalogue:forms",
        "List the known forms with their sources, or show one form's equations.",
    ),
    "mutants": (
        "bnderive.cli.catalogue:mutants",
        "List the corpus of known mistakes, or show one mistake and its mutants.",
    ),
    "parse": (
        "bnderive.cli.parse:parse",
        "Show how bnderive reads a LaTeX derivation (.md, .tex or .ipynb), line by line.",
    ),
    "report": (
        "bnderive.cli.report:report",
        "Write a report of what was checked: LaTeX (and PDF) for a handout, Markdown for a post.",
    ),
    "stability": (
        "bnderive.cli.stability:stability",
        "Measure how far float results of the backward pass are from the exact ones.",
    ),
    "teach": (
        "bnderive.cli.teach:teach",
        "Teach the backward pass of BatchNorm on a tiny batch, every number exact.",
    ),
}


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bnderive")
@click.option(
    "--debug",
    is_flag=True,
    help="When bnderive itself fails (exit code 4), print the traceback for a bug report "
    "(also BNDERIVE_DEBUG=1).",
)
def main(debug: bool) -> None:
    r"""Prove or refute derivations of the Batch Normalization backward pass, exactly.

    \b
    Examples:
      bnderive check                       prove the published closed forms
      bnderive derive --n 2                the ground truth, stage by stage
      bnderive forms                       the known forms and their sources
      bnderive check examples/post.md      a LaTeX derivation, line by line
      bnderive check-impl examples/layers.py   a NumPy implementation
      bnderive mutants                     the known mistakes bnderive names
      bnderive explain --n 2 --loss mean   why a gradient test can lie
      bnderive emit -o bn.py               proven, fast NumPy code
      bnderive teach                       a lesson on a tiny batch, every number exact
      bnderive check --norm layer          LayerNorm's published forms (also instance, group, rms)
      bnderive conventions                 the frameworks' running statistics, side by side
      bnderive report examples/post.md -o post.pdf   a report: LaTeX/PDF or Markdown
      bnderive stability                   float error of the forms and kernels, measured

    Exit codes: 0 everything checked holds, 1 something is refuted, 2 bad input or usage,
    3 undecided, 4 bnderive failed (a bug: run with --debug and report it), 130 interrupted
    (Ctrl-C), 141 the output pipe was closed. Form and derivation files are data, never run;
    only check-impl and explain run a Python file (see the README's security model).
    """


def examples_last(command: click.Command) -> None:
    r"""Move the docstring's Examples paragraph after the options: ``--help`` ends with it.

    A command's docstring is its help (sqlite-utils style): what it does, its exit codes, and a
    paragraph of examples (``\\b`` before ``Examples:`` keeps click from re-wrapping it)."""
    # raw docstrings (LaTeX in examples) spell click's no-rewrap marker as a backslash and b
    command.help = inspect.cleandoc(command.help or "").replace("\\b\n", "\b\n")
    paragraphs = command.help.split("\n\n")
    for k, paragraph in enumerate(paragraphs):
        if paragraph.lstrip("\b\n").startswith("Examples:"):
            command.epilog = paragraph
            command.help = "\n\n".join(paragraphs[:k] + paragraphs[k + 1 :])
            return


main.commands = LazyCommands(COMMANDS, prepare=examples_last)
examples_last(main)
