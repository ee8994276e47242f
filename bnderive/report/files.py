"""What ``bnderive report`` reads and writes: its inputs as forms and implementations, the
stability section's maker, the text in the format asked for, and the file written whole.

    read = read_inputs(["examples/post.md", "examples/layers.py"], Norm.BATCH, expected=None)
    report = build_report(read.forms, read.implementations, norm=read.family, ...)
    write_report("post.pdf", render(report, "pdf"), "pdf", inputs)

The command (``cli.report``) checks its options and calls these; nothing here prints.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bnderive.core.spec import Norm
from bnderive.errors import BnderiveError
from bnderive.read.forms import Form


@dataclass(frozen=True)
class ReportInputs:
    """The inputs of a report, read: the forms to check (built-in, TOML, documents), the
    implementations (.py paths, checked as check-impl checks them) and the family reported
    on (the forms' own when they are all of one)."""

    forms: list[Any]
    implementations: list[str]
    family: Norm


def read_inputs(
    inputs: Sequence[str], family: Norm, expected: Norm | None, preamble: str | None = None
) -> ReportInputs:
    """Each input as a form or an implementation; without inputs, the built-in forms of
    ``family``.  ``expected``: the family --norm named explicitly (None: not given), which
    TOML form files are read as and which a LaTeX derivation (always BatchNorm) must be;
    ``preamble``: a file of macro definitions the derivations use (--preamble)."""
    from bnderive.read import documents
    from bnderive.read.derivations import builtin_forms

    macros = documents.load_preamble(preamble) if preamble is not None else None
    if macros is not None and not any(documents.is_document(name) for name in inputs):
        raise BnderiveError(_PREAMBLE_ALONE)
    forms: list[Any] = []
    implementations: list[str] = []
    for name in inputs:
        if name.lower().endswith(".py"):
            implementations.append(name)
        else:
            forms.append(_read_form(name, expected, macros))
    if not inputs:
        forms = [f for f in builtin_forms() if f.order == 1 and f.norm is family]
        if not forms:
            raise BnderiveError(f"No built-in form is installed for {family.title}.")
    families = {f.norm for f in forms}
    if forms and len(families) == 1:
        family = families.pop()
    return ReportInputs(forms, implementations, family)


#: --preamble given with no derivation to read it for.
_PREAMBLE_ALONE = (
    "--preamble holds macros for LaTeX derivations (.md, .tex, .ipynb): give the derivation "
    "that uses them as well."
)


def _read_form(name: str, expected: Norm | None, preamble: Any = None) -> Form:
    """A derivation document (.md, .tex, .ipynb), a TOML form file, or a built-in form's
    name; a document under an explicit --norm other than batch is a usage error."""
    from bnderive.read import documents
    from bnderive.read.catalogue import find_form
    from bnderive.read.forms import load_form

    if documents.is_document(name):
        if expected not in (None, Norm.BATCH):
            norm = expected.value
            raise BnderiveError(
                f"{name}: LaTeX derivations are read as BatchNorm derivations; --norm "
                f'{norm} applies to built-in forms and TOML form files (norm = "{norm}").'
            )
        return documents.load_document(name, preamble=preamble)
    if name.lower().endswith(".toml"):
        return load_form(name, norm=expected)
    return find_form(name, preamble)


def figure_path(output: str | None) -> str | None:
    """Where a Markdown report's stability figure goes: FILE.stability.png beside -o FILE.md
    (None when the report is printed: there is no file to put it beside)."""
    if output is None:
        return None
    from pathlib import Path

    path = Path(output)
    return str(path.with_name(f"{path.stem}.stability.png"))


def stability_maker(figure: str | None) -> Any:
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


def render(report: Any, fmt: str) -> str:
    """The report as Markdown (md) or LaTeX (tex, and pdf before it is compiled)."""
    if fmt == "md":
        from bnderive.report.markdown import markdown

        return markdown(report)
    from bnderive.report.latex import latex

    return latex(report)


def report_command(
    inputs: Sequence[str],
    fmt: str,
    mode: str,
    code: bool,
    stability: bool,
    norm: str,
    groups: int | None,
    preamble: str | None = None,
) -> str:
    """The command that writes this report again (-o left out: where it goes is not what)."""
    words = ["bnderive", "report", *inputs, "--format", fmt]
    if preamble is not None:
        words += ["--preamble", preamble]
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


def write_report(output: str, text: str, fmt: str, inputs: Sequence[str]) -> None:
    """Write the report's text to ``output`` (compiled by pdflatex for pdf), replacing the
    file whole; never one of the report's inputs."""
    from bnderive.report.pdf import compile_pdf

    data = compile_pdf(text) if fmt == "pdf" else text.encode("utf-8")
    _write(output, data, inputs)


def _write(output: str, data: bytes, inputs: Sequence[str]) -> None:
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
