"""The command line: click commands over the library, rich for output, no mathematics here.

One module per command (or small group of commands); each imports the library only inside its
command, so that ``bnderive --help`` starts fast.
"""

from __future__ import annotations

import inspect

import click

from bnderive import __version__
from bnderive.cli.catalogue import forms, mutants
from bnderive.cli.check import check
from bnderive.cli.check_impl import check_impl
from bnderive.cli.common import Group
from bnderive.cli.conventions import conventions
from bnderive.cli.derive import derive
from bnderive.cli.emit import bench, emit
from bnderive.cli.explain import explain
from bnderive.cli.parse import parse
from bnderive.cli.report import report
from bnderive.cli.stability import stability
from bnderive.cli.teach import teach


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


for _command in (
    check,
    derive,
    forms,
    mutants,
    check_impl,
    parse,
    emit,
    bench,
    explain,
    teach,
    conventions,
    report,
    stability,
):
    main.add_command(_command)
for _command in (main, *main.commands.values()):
    examples_last(_command)
