"""The study as a matplotlib figure: one row of panels per dtype.

Panels: (a) ∂L/∂x's relative error against the input mean, one line per candidate; (b) the
same against M; (c) σ²'s relative error against the mean, one-pass and two-pass.  Errors are on
a log scale (an error of exactly 0 is not drawn); a point where the result overflowed is not
drawn either (the table and JSON say so).  With several draws per point (``trials``) a line is
the median and a shaded band the range of the draws.  matplotlib is optional (``pip install
'bnderive[report]'``); ``figure`` raises ``MatplotlibMissingError`` (exit code 2) without it.
"""

from __future__ import annotations

import math
from typing import Any

from bnderive.errors import BnderiveError
from bnderive.stability.study import ONE_PASS, TWO_PASS, StabilityStudy

#: What the axes say (the tests read them back from the figure).
MEAN_LABEL = "input mean (spread {spread:g})"
M_LABEL = "M, elements of the reduction set (mean {mean:g})"
DX_LABEL = "relative error of ∂L/∂x"
VAR_LABEL = "relative error of σ²"


class MatplotlibMissingError(BnderiveError):
    """The figure needs matplotlib, which is not installed."""


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise MatplotlibMissingError(
            "the stability figure is drawn with matplotlib, which is not installed: "
            "pip install 'bnderive[report]' (or leave -o out for the table)."
        ) from None
    matplotlib.use("Agg")  # a file, no window
    import matplotlib.pyplot as plt

    return plt


def _finite(values: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """The points, with a non-finite error as NaN (a gap in the line)."""
    xs = [p for p, _ in values]
    ys = [e if math.isfinite(e) else math.nan for _, e in values]
    return xs, ys


def _band(ax: Any, study: StabilityStudy, sweep: str, dtype: str, candidate: str) -> None:
    """With several draws per point: the range of the draws, shaded around the median line."""
    if study.trials == 1:
        return
    points = study.ranges(sweep, dtype, candidate)
    xs = [p for p, _, _ in points]
    low = [lo if lo is not None and math.isfinite(lo) else math.nan for _, lo, _ in points]
    high = [hi if hi is not None and math.isfinite(hi) else math.nan for _, _, hi in points]
    color = ax.get_lines()[-1].get_color()  # the median line just drawn
    ax.fill_between(xs, low, high, color=color, alpha=0.15, linewidth=0)


def figure(study: StabilityStudy) -> Any:
    """The study's figure (a ``matplotlib.figure.Figure``; close it with ``plt.close``)."""
    plt = _pyplot()
    rows = len(study.dtypes)
    fig, axes = plt.subplots(
        rows, 3, figsize=(13, 3.6 * rows), constrained_layout=True, squeeze=False
    )
    for row, dtype in enumerate(study.dtypes):
        ax_mean, ax_m, ax_var = axes[row]
        for candidate in study.dx_candidates:
            ax_mean.plot(
                *_finite(study.series("mean", dtype, candidate)), marker="o", label=candidate
            )
            _band(ax_mean, study, "mean", dtype, candidate)
            ax_m.plot(*_finite(study.series("M", dtype, candidate)), marker="o", label=candidate)
            _band(ax_m, study, "M", dtype, candidate)
        for candidate in (ONE_PASS, TWO_PASS):
            ax_var.plot(
                *_finite(study.series("mean", dtype, candidate)), marker="o", label=candidate
            )
            _band(ax_var, study, "mean", dtype, candidate)
        for ax in (ax_mean, ax_var):
            ax.set_xscale("symlog", linthresh=1.0)  # the sweep starts at mean 0
            ax.set_xlabel(MEAN_LABEL.format(spread=study.spread))
        ax_m.set_xscale("log", base=2)
        ax_m.set_xlabel(M_LABEL.format(mean=study.size_mean))
        ax_mean.set_title(f"{dtype}: ∂L/∂x, M = {study.m}")
        ax_m.set_title(f"{dtype}: ∂L/∂x, mean {study.size_mean:g}")
        ax_var.set_title(f"{dtype}: σ², M = {study.m}")
        for ax, label in ((ax_mean, DX_LABEL), (ax_m, DX_LABEL), (ax_var, VAR_LABEL)):
            ax.set_yscale("log")
            ax.set_ylabel(label)
            ax.grid(True, which="major", alpha=0.3)
            ax.legend(fontsize="small")
    return fig


def save_figure(study: StabilityStudy, path: str) -> None:
    """Draw the study and write it to ``path`` (PNG, or any format matplotlib knows by the
    suffix); an unwritable path is a ``BnderiveError``."""
    plt = _pyplot()
    fig = figure(study)
    try:
        fig.savefig(path, dpi=100, metadata={"Software": None})
    except OSError as exc:
        raise BnderiveError(f"{path}: cannot write the figure ({exc.strerror}).") from None
    finally:
        plt.close(fig)
