"""The command line: click commands over the library, rich for output, no mathematics here.

One module per command (or small group of commands); each imports the library only inside its
command, so that ``bnderive --help`` starts fast.
"""

from __future__ import annotations

import click

from bnderive import __version__
from bnderive.cli.catalogue import forms, mutants
from bnderive.cli.check import check
from bnderive.cli.check_impl import check_impl
from bnderive.cli.derive import derive
from bnderive.cli.emit import bench, emit
from bnderive.cli.explain import explain
from bnderive.cli.parse import parse
from bnderive.cli.teach import teach


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bnderive")
def main() -> None:
    """Prove or refute derivations of the Batch Normalization backward pass, exactly.

    \b
    Examples:
      bnderive check                       prove the published closed forms
      bnderive derive --n 2                the ground truth, stage by stage
      bnderive forms                       the known forms and their sources
      bnderive check my_post.md            a LaTeX derivation, line by line
      bnderive check-impl layers.py        a NumPy implementation (CS231n API)
      bnderive mutants                     the known mistakes bnderive names
      bnderive explain --n 2 --loss mean   why a gradient test can lie
      bnderive emit -o bn.py               proven, fast NumPy code
      bnderive teach                       a lesson on a tiny batch, every number exact

    Exit codes: 0 everything checked holds, 1 something is refuted, 2 bad input or usage,
    3 undecided.
    """


for _command in (check, derive, forms, mutants, check_impl, parse, emit, bench, explain, teach):
    main.add_command(_command)
