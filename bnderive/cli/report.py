from __future__ import annotations

import shlex
import sys
from typing import Any

import click

from bnderive.cli.common import checked_groups, console, document, norm_options, safe, user_errors
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
    """
    from bnderive.core.spec import Mode, Norm
    from bnderive.read.catalogue import find_form
    from bnderive.read.derivations import builtin_forms
    from bnderive.read.forms import load_form
    from bnderive.report.build import build_report
    from bnderive.verify.plan import default_jobs

    fmt = _format(fmt, output)
    if fmt == "pdf" and output is None:
        raise BnderiveError("--format pdf writes a file: give -o FILE.pdf.")
    family = Norm.parse(norm)
    g = checked_groups(norm, groups)
    explicit = click.get_current_context().get_parameter_source("norm")
    expected = family if explicit is not click.core.ParameterSource.DEFAULT else None
    forms: list[Any] = []
    implementations: list[str] = []
    for name in inputs:
        lower = name.lower()
        if lower.endswith(".py"):
            implementations.append(name)
        elif document().is_document(name):
            if expected not in (None, Norm.BATCH):
                raise BnderiveError(
                    f"{name}: LaTeX derivations are read as BatchNorm derivations; --norm "
                    f'{norm} applies to built-in forms and TOML form files (norm = "{norm}").'
                )
            forms.append(document().load_document(name))
        elif lower.endswith(".toml"):
            forms.append(load_form(name, norm=expected))
        else:
            forms.append(find_form(name))
    if not inputs:
        forms = [f for f in builtin_forms() if f.order == 1 and f.norm is family]
        if not forms:
            raise BnderiveError(f"No built-in form is installed for {family.title}.")
    figure = _figure_path(output) if stability and fmt == "md" else None
    stability_maker = _stability(figure) if stability else None
    families = {f.norm for f in forms}
    if forms and len(families) == 1:
        family = families.pop()
    modes = [Mode.PER_ACTIVATION, Mode.SPATIAL] if mode == "both" else [Mode.parse(mode)]
    result = build_report(
        forms,
        implementations,
        modes=modes,
        norm=family,
        groups=g,
        jobs=jobs or default_jobs(),
        code=code,
        code_forms=forms if inputs else [],
        stability=stability_maker,
        command=_command(inputs, fmt, mode, code, stability, norm, groups),
    )
    text = _render(result, fmt)
    if output is None:
        click.echo(text, nl=False)
    else:
        from bnderive.report.pdf import compile_pdf

        data = compile_pdf(text) if fmt == "pdf" else text.encode("utf-8")
        _write(output, data, inputs)
        err = console(stderr=True)
        err.print(f"wrote {safe(output)}: {safe(result.summary.verdict)}")
    sys.exit(result.exit_code)


def _figure_path(output: str | None) -> str | None:
    """Where a Markdown report's stability figure goes: FILE.stability.png beside -o FILE.md
    (None when the report is printed: there is no file to put it beside)."""
    if output is None:
        return None
    from pathlib import Path

    path = Path(output)
    return str(path.with_name(f"{path.stem}.stability.png"))


def _stability(figure: str | None) -> Any:
    """The stability study's section maker (``bnderive.stability``), or exit 2 without it.
    The study is ``bnderive stability``'s default (float32, one draw per point), with the
    emitted numba kernel when numba is installed; ``figure``: the PNG a Markdown report links
    to, written beside it (LaTeX draws its figures from the tables)."""
    import importlib.util

    if importlib.util.find_spec("bnderive.stability") is None:
        raise BnderiveError(
            "--stability is not available in this installation of bnderive: the stability "
            "study (bnderive.stability) is not installed. Leave --stability out."
        )

    def make() -> Any:
        from bnderive.emit.numba_module import numba_available
        from bnderive.report.model import stability_section
        from bnderive.stability import study

        numba = numba_available()
        found = study(numba=numba)
        notes = [] if numba else ["the emitted numba kernel is not studied: numba is not installed"]
        return stability_section(found, *_draw(found, figure), notes=notes)

    return make


def _draw(found: Any, figure: str | None) -> tuple[str, str]:
    """(the figure's file name beside the report, "") or ("", why there is no figure)."""
    from pathlib import Path

    from bnderive.stability.figure import MatplotlibMissingError, save_figure

    if figure is None:
        return "", (
            "a Markdown report printed on the terminal has no file beside it for the PNG: write "
            "it with -o FILE.md (the figure goes to FILE.stability.png), or draw the study with "
            "bnderive stability -o FILE.png."
        )
    try:
        save_figure(found, figure)
    except MatplotlibMissingError:
        return "", "matplotlib is not installed (pip install 'bnderive[report]')."
    return Path(figure).name, ""


def _format(fmt: str | None, output: str | None) -> str:
    suffix = (output or "").rsplit(".", 1)[-1].lower() if output and "." in output else ""
    if fmt is None:
        return suffix if suffix in FORMATS else "md"
    if suffix in FORMATS and suffix != fmt:
        raise BnderiveError(
            f"--format {fmt} contradicts -o {output}: give a .{fmt} file, or leave --format out."
        )
    return fmt


def _render(result: Any, fmt: str) -> str:
    if fmt == "md":
        from bnderive.report.markdown import markdown

        return markdown(result)
    from bnderive.report.latex import latex

    return latex(result)


def _command(
    inputs: tuple[str, ...],
    fmt: str,
    mode: str,
    code: bool,
    stability: bool,
    norm: str,
    groups: int | None,
) -> str:
    """The command that writes this report again (-o left out: where it goes is not what)."""
    words = ["bnderive", "report", *inputs, "--format", fmt]
    if mode != "both":
        words += ["--mode", mode]
    if norm != "batch":
        words += ["--norm", norm]
    if groups is not None:
        words += ["--groups", str(groups)]
    if code:
        words.append("--code")
    if stability:
        words.append("--stability")
    return shlex.join(words)


def _write(output: str, data: bytes, inputs: tuple[str, ...]) -> None:
    """Replace ``output`` whole (never an input of the report)."""
    import contextlib
    import os
    import tempfile
    from pathlib import Path

    target = Path(os.path.realpath(output))
    for name in inputs:
        if Path(name).exists() and Path(os.path.realpath(name)) == target:
            raise BnderiveError(f"-o {output} is an input of the report: choose another file.")
    if not target.parent.is_dir():
        raise BnderiveError(f"-o {output}: the directory {target.parent} does not exist.")
    handle = tempfile.NamedTemporaryFile(
        "wb", dir=target.parent, prefix=f".{target.name}.", delete=False
    )
    try:
        with handle:
            handle.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(handle.name, 0o666 & ~umask)
        os.replace(handle.name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(handle.name)
        raise
