from __future__ import annotations

import sys

import click

from bnderive.cli.common import (
    checked_groups,
    console,
    norm_options,
    preamble_option,
    safe,
    user_errors,
)
from bnderive.errors import BnderiveError

FORMATS = ("md", "tex", "pdf")


@click.command()
@click.argument("inputs", nargs=-1, metavar="[FORM|FILE]...")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="md (Markdown), tex (LaTeX) or pdf (LaTeX compiled by pdflatex). Default: from the "
    "suffix of -o, else md.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="PATH",
    help="Write the report to PATH instead of printing it (needed for pdf).",
)
@click.option(
    "--mode",
    type=click.Choice(["per-activation", "spatial", "both"]),
    default="both",
    show_default=True,
    help="PER_ACTIVATION (N,D) statistics per feature, SPATIAL (N,C,H,W) per channel over N,H,W.",
)
@click.option(
    "--code",
    is_flag=True,
    help="Add the modules `bnderive emit` writes from the forms given that hold (none given: "
    "the family's default form), NumPy and numba (when installed), verified.",
)
@click.option(
    "--stability",
    is_flag=True,
    help="Add the floating-point stability study: tables and figures (pgfplots in LaTeX; in "
    "Markdown a PNG written beside -o FILE.md as FILE.stability.png).",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes for the check (default: 2 where two cores are available).",
)
@preamble_option
@norm_options
@user_errors
def report(
    inputs: tuple[str, ...],
    fmt: str | None,
    output: str | None,
    mode: str,
    code: bool,
    stability: bool,
    jobs: int | None,
    norm: str = "batch",
    groups: int | None = None,
    preamble: str | None = None,
) -> None:
    r"""Write a report of what was checked: LaTeX (and PDF) for a handout, Markdown for a post.

    Each input is a built-in form (see `bnderive forms`), a form file (TOML), a derivation
    (.md, .tex, .ipynb) or an implementation (.py, run as check-impl runs it); without inputs,
    the built-in forms of --norm. The report has, where there is data for them: a summary (what
    was checked, the conventions, the verdict in one sentence, the command that reproduces it,
    the versions); the forward graph as a picture (TikZ in LaTeX, Mermaid in Markdown); the
    ground truth stage by stage and the published forms proven for every M; each derivation
    line by line with its verdict and method, counterexamples, the known mistake and where it
    comes in; each implementation's table, diagnoses and counterexamples; with --code the
    module `bnderive emit` writes from each form given that holds (without forms, the default
    form), NumPy and numba, verified; with --stability the float study (`bnderive stability`'s
    default run, with the numba kernel when numba is installed) as tables and figures.

    Everything taken from the inputs is escaped, and a derivation's formulas are printed again
    from what was read, never copied: a report cannot run TeX commands from its inputs. The
    same inputs give the same bytes (no timestamps; SOURCE_DATE_EPOCH sets a date). --format
    pdf runs pdflatex in a temporary directory with shell escape off and a timeout.

    Exit codes: 0 all hold, 1 something refuted, 2 bad input (or a function that could not be
    checked, as for check-impl), 3 undecided, 4 bnderive failed.

    \b
    Examples:
      bnderive report -o report.md
      bnderive report examples/post.md --format md
      bnderive report examples/post.md -o post.pdf
      bnderive report examples/layers_nogamma.py -o feedback.tex
      bnderive report --code -o proven.pdf
      bnderive report --norm layer -o layernorm.md
      bnderive report blueprint.tex --preamble macros.tex -o blueprint.md
    """
    from bnderive.core.spec import Mode, Norm
    from bnderive.report.build import build_report
    from bnderive.report.files import (
        figure_path,
        read_inputs,
        render,
        report_command,
        stability_maker,
        write_report,
    )
    from bnderive.verify.plan import default_jobs

    fmt = _format(fmt, output)
    if fmt == "pdf" and output is None:
        raise BnderiveError("--format pdf writes a file: give -o FILE.pdf.")
    family = Norm.parse(norm)
    g = checked_groups(norm, groups)
    explicit = click.get_current_context().get_parameter_source("norm")
    expected = family if explicit is not click.core.ParameterSource.DEFAULT else None
    read = read_inputs(inputs, family, expected, preamble)
    figure = figure_path(output) if stability and fmt == "md" else None
    result = build_report(
        read.forms,
        read.implementations,
        modes=[Mode.PER_ACTIVATION, Mode.SPATIAL] if mode == "both" else [Mode.parse(mode)],
        norm=read.family,
        groups=g,
        jobs=jobs or default_jobs(),
        code=code,
        code_forms=read.forms if inputs else [],
        stability=stability_maker(figure) if stability else None,
        command=report_command(inputs, fmt, mode, code, stability, norm, groups, preamble),
    )
    text = render(result, fmt)
    if output is None:
        click.echo(text, nl=False)
    else:
        write_report(output, text, fmt, inputs)
        err = console(stderr=True)
        err.print(f"wrote {safe(output)}: {safe(result.summary.verdict)}")
    sys.exit(result.exit_code)


def _format(fmt: str | None, output: str | None) -> str:
    """--format, else the one -o's suffix names, else md; a --format that contradicts the
    suffix is a usage error."""
    suffix = (output or "").rsplit(".", 1)[-1].lower() if output and "." in output else ""
    if fmt is None:
        return suffix if suffix in FORMATS else "md"
    if suffix in FORMATS and suffix != fmt:
        raise BnderiveError(
            f"--format {fmt} contradicts -o {output}: give a .{fmt} file, or leave --format out."
        )
    return fmt
