"""``bnderive stability``: the float study of the backward pass (``bnderive.stability``)."""

# The layout (a header line in bold, dim notes, rich tables without boxes, the JSON and the -o
# handling) follows bnderive/cli/conventions.py, the other command that draws a figure.

from __future__ import annotations

import math
import sys
import textwrap
from typing import TYPE_CHECKING

import click

from bnderive.cli.common import console, escape, json_text, user_errors
from bnderive.core.limits import STABILITY_M, check_float

if TYPE_CHECKING:
    from bnderive.stability.study import StabilityStudy

#: The dtypes --dtype accepts (NumPy's float types).
DTYPE_CHOICES = ("float16", "float32", "float64")
#: The most draws per point --trials takes (each draw costs one exact reference per point).
TRIALS_CAP = 100
#: Short column heads, so that a table fits 80 columns.
_HEADS = {
    "staged": "staged",
    "kronecker": "kronecker",
    "compact": "compact",
    "emitted numpy": "numpy",
    "emitted numba": "numba",
    "one-pass σ²": "σ² 1-pass",
    "two-pass σ²": "σ² 2-pass",
}


@click.command()
@click.argument("more", nargs=-1, metavar="")
@click.option(
    "--dtype",
    "dtypes",
    type=click.Choice(DTYPE_CHOICES),
    multiple=True,
    metavar="DTYPE [DTYPE]...",
    help="The float dtypes to study: float16, float32 (the default), float64; several after "
    "one --dtype (--dtype float32 float16) or --dtype repeated.",
)
@click.option(
    "--m",
    "m",
    type=click.IntRange(4, None),
    default=256,
    show_default=True,
    metavar="M",
    help=f"M of the mean sweep (at most {STABILITY_M.shown}).",
)
@click.option(
    "--max-m",
    type=click.IntRange(4, None),
    default=4096,
    show_default=True,
    metavar="M",
    help=f"The largest M of the M sweep (4, 16, 64, …; at most {STABILITY_M.shown}).",
)
@click.option(
    "--mean",
    "size_mean",
    type=click.FloatRange(0, 1e6),
    default=1000.0,
    show_default=True,
    metavar="X",
    help="The input mean of the M sweep (0 to 1e6).",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seed of the inputs (0 or more).",
)
@click.option(
    "--trials",
    type=click.IntRange(1, TRIALS_CAP),
    default=1,
    show_default=True,
    metavar="N",
    help="Draws of the inputs per point (seeds S, S+1, …): the table shows the median error, "
    f"--json also the smallest and largest (at most {TRIALS_CAP}).",
)
@click.option(
    "--numba",
    is_flag=True,
    help="Also study the emitted numba kernel (needs numba; verifying and compiling it takes "
    "about half a minute).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="FILE.png",
    help="Also draw the study (needs matplotlib: pip install 'bnderive[report]').",
)
@click.option("--json", "as_json", is_flag=True, help="Print every measurement as JSON.")
@user_errors
def stability(
    more: tuple[str, ...],
    dtypes: tuple[str, ...],
    m: int,
    max_m: int,
    size_mean: float,
    seed: int,
    trials: int,
    numba: bool,
    output: str | None,
    as_json: bool,
) -> None:
    """Measure how far float results of the backward pass are from the exact ones.

    The published forms (staged, kronecker, compact, each evaluated in the dtype in the order
    its equations are written, after a forward pass in the dtype) and the kernel `bnderive emit` writes compute ∂L/∂x of
    one reduction set from inputs x = mean + z (z standard normal, seeded), rounded to the dtype;
    each is compared with the exact ∂L/∂x at the same rounded inputs (rational arithmetic):
    the relative error max|dx − exact| / max|exact|. The mean goes from 0 to 1e6 at M = 256,
    then M from 4 up at mean 1000. Each point is one draw of the inputs; the errors, and which
    form is the most accurate, change from draw to draw: --trials N shows the median of N
    draws. The variance alone is computed two ways, two-pass Σ(x − μ)²/M
    and one-pass E[x²] − μ², against the exact σ². "overflow" marks a result that overflowed
    or is NaN, "—" inputs that do not fit in the dtype (float16 above 65504).

    \b
    Examples:
      bnderive stability
      bnderive stability --dtype float32 float16
      bnderive stability --dtype float64 --max-m 65536
      bnderive stability --trials 20
      bnderive stability -o stability.png
      bnderive stability --json

    Exit codes: 0 done, 2 bad input (an unknown dtype, M above the cap, no matplotlib for -o,
    no numba for --numba).
    """
    from bnderive.errors import BnderiveError

    dtypes = _dtypes(dtypes, more)
    check_float(size_mean, "--mean", 0.0, 1e6)  # click's FloatRange lets NaN through
    STABILITY_M.check(m)
    STABILITY_M.check(max_m)
    if numba:
        from bnderive.emit.numba_module import numba_available

        if not numba_available():
            raise BnderiveError(
                "--numba studies the emitted numba kernel, and numba is not installed: "
                "pip install 'bnderive[numba]' (or leave --numba out)."
            )
    if output is not None:
        from bnderive.stability.figure import _pyplot

        _pyplot()  # no matplotlib: exit 2 before any work
    from bnderive.stability.study import study

    result = study(
        dtypes or ("float32",),
        m=m,
        max_m=max_m,
        size_mean=size_mean,
        seed=seed,
        numba=numba,
        trials=trials,
    )
    if as_json:
        click.echo(json_text(result.as_dict()))
    else:
        _print(result)
    if output is not None:
        from bnderive.stability.figure import save_figure

        save_figure(result, output)
        if not as_json:
            console().print(f"\nwrote {escape(output)}")
    sys.exit(0)


def _dtypes(given: tuple[str, ...], more: tuple[str, ...]) -> tuple[str, ...]:
    """The dtypes of --dtype and the words after it (click options take one value each)."""
    from bnderive.errors import BnderiveError

    if more and not given:
        raise BnderiveError(
            f"unexpected argument {more[0]!r}: stability takes no files; give dtypes after "
            "--dtype, e.g. --dtype float32 float16."
        )
    for word in more:
        if word not in DTYPE_CHOICES:
            raise BnderiveError(
                f"--dtype {word!r} is not a dtype the study knows: give float16, float32 or "
                "float64."
            )
    return tuple(dict.fromkeys((*given, *more)))


def _cell(error: float, note: str) -> str:
    if math.isnan(error):
        return "n/a" if "numba" in note else "—"
    if math.isinf(error):
        return "overflow"
    return f"{error:.1e}"


def _print(result: StabilityStudy) -> None:
    from rich.table import Table

    out = console()
    out.print("[bold]Relative error of ∂L/∂x and σ²[/] against the exact value at the same")
    draws = (
        f"one draw (seed {result.seed}; --trials N: the median of N draws)"
        if result.trials == 1
        else f"the median of {result.trials} draws (seeds {result.seed} to "
        f"{result.seed + result.trials - 1}; --json: the range)"
    )
    setting = (
        f"float inputs: max|got − exact| / max|exact|; x = mean + z (spread "
        f"{result.spread:g}), g random, γ = {result.gamma:g}, ε = {result.eps:g}; each point "
        f"is {draws}."
    )
    for line in textwrap.wrap(setting, width=78):
        out.print(f"[dim]{escape(line)}[/]")
    for dtype in result.dtypes:
        for sweep, label, points in (
            ("mean", "mean", result.means),
            ("M", "M", tuple(float(s) for s in result.sizes)),
        ):
            where = (
                f"as the mean grows (M = {result.m})"
                if sweep == "mean"
                else f"as M grows (mean {result.size_mean:g})"
            )
            out.print(f"\n[bold]{dtype}[/], {where}")
            table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
            table.add_column(label, justify="right")
            for candidate in result.candidates:
                table.add_column(_HEADS.get(candidate, candidate), justify="right")
            cells = {
                (r.candidate, r.mean if sweep == "mean" else float(r.m)): _cell(r.error, r.note)
                for r in result.rows
                if r.sweep == sweep and r.dtype == dtype
            }
            for point in points:
                table.add_row(
                    f"{point:g}",
                    *(cells[(c, point)] for c in result.candidates),
                )
            out.print(table)
    words = (
        "staged, kronecker, compact: the published forms, evaluated as written; numpy"
        + (", numba" if "emitted numba" in result.candidates else "")
        + ": the emitted kernel; σ² 1-pass: E[x²] − μ², σ² 2-pass: Σ(x − μ)²/M; overflow: "
        "inf or NaN; —: x does not fit in the dtype."
    )
    out.print()
    for line in textwrap.wrap(words, width=78):
        out.print(f"[dim]{escape(line)}[/]")
