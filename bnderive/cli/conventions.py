"""``bnderive conventions``: the frameworks' running statistics, run side by side."""

from __future__ import annotations

import json
import sys
import textwrap
from typing import TYPE_CHECKING, Any

import click

from bnderive.cli.common import console, escape, user_errors
from bnderive.errors import BnderiveError

if TYPE_CHECKING:
    from rich.table import Table

    from bnderive.core.running import Simulation


@click.command()
@click.option(
    "--steps",
    type=click.IntRange(1, 10000),
    default=20,
    show_default=True,
    metavar="K",
    help="Training steps (batches) to simulate.",
)
@click.option(
    "--batch",
    type=click.IntRange(2, 10000),
    default=8,
    show_default=True,
    metavar="N",
    help="Values per batch (one feature: M = N).",
)
@click.option(
    "--decay",
    default="0.5",
    show_default=True,
    metavar="D",
    help="The decay of TensorFlow's ExponentialMovingAverage (0 < D < 1; 0.5 as in seed 004).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the batches.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="FILE.png",
    help="Also plot the running μ, σ² and the eval output per step (needs matplotlib).",
)
@click.option("--json", "as_json", is_flag=True, help="Print every step's values as JSON.")
@user_errors
def conventions(
    steps: int, batch: int, decay: str, seed: int, output: str | None, as_json: bool
) -> None:
    """Run the frameworks' running-statistics conventions on the same batches and show how far
    their running μ, σ² and eval-mode outputs drift apart.

    Every framework keeps running ← (1 − w)·running + w·batch, but with its own weight w (PyTorch's
    momentum 0.1 is w; CS231n's 0.9, Keras' 0.99 and TensorFlow's ExponentialMovingAverage decay
    weigh the old value; cuDNN's factor 1/(1 + n) makes the cumulative mean), its own variance
    (biased σ² or unbiased M/(M − 1)·σ²) and its own start. The batches are integers around 3
    (seeded), one feature, and every update is computed in exact rational arithmetic: the
    differences are the conventions', not rounding. The eval-mode output
    γ·(x − running μ)/√(running σ² + ε) + β is compared at one input x.

    \b
    Examples:
      bnderive conventions
      bnderive conventions --steps 100 --batch 4
      bnderive conventions --decay 0.9 -o running.png
      bnderive conventions --json

    Exit codes: 0 done, 2 bad input (a decay outside (0, 1), no matplotlib for -o).
    """
    from fractions import Fraction

    from bnderive.core.running import simulate

    try:
        d = Fraction(decay)
    except (ValueError, ZeroDivisionError):
        raise BnderiveError(
            f"--decay {decay!r} is not a number: give one in (0, 1), e.g. 0.5."
        ) from None
    if not 0 < d < 1:
        raise BnderiveError(
            f"--decay {decay} is outside (0, 1): TensorFlow's decay weighs the old value."
        )
    if output is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise BnderiveError(
                "-o FILE.png plots with matplotlib, which is not installed: "
                "pip install 'bnderive[report]' (or leave -o out for the table)."
            ) from None
    sim = simulate(steps=steps, batch=batch, seed=seed, decay=d)
    if as_json:
        click.echo(json.dumps(_as_dict(sim), indent=2, ensure_ascii=False))
    else:
        _print(sim)
    if output is not None:
        _plot(sim, output)
        if not as_json:
            console().print(f"\nwrote {escape(output)}")
    sys.exit(0)


def _checkpoints(steps: int) -> list[int]:
    """1, 2, 5, 10, 20, 50, … up to and including ``steps``."""
    out, base = [], 1
    while base <= steps:
        out += [s for s in (base, 2 * base, 5 * base) if s <= steps]
        base *= 10
    return sorted(set(out + [steps]))


def _g(value: Any) -> str:
    return f"{float(value):.5g}"


def _print(sim: Simulation) -> None:
    """What was simulated, where each convention ends (``_final_table``), how far apart they
    are after each step (``_spread_table``), and the sources."""
    out = console()
    k = sim.steps
    mean, var = sim.population()
    n = len(sim.batches[0])
    steps = f"{k} step" + ("s" if k > 1 else "")
    batches = f"{k} batch" + ("es" if k > 1 else "")
    out.print(f"[bold]Running statistics after {steps}[/], every convention on the same")
    out.print(f"{batches} of {n} values (one feature, integers around 3; exact arithmetic).")
    out.print(
        f"[dim]All {k * n} values: μ = {_g(mean)}, σ² = {_g(var)} (biased). Eval output at "
        f"x = {_g(sim.probe)}:[/]"
    )
    out.print(
        f"[dim]y = γ·(x − μ)/√(σ² + ε) + β with γ = {_g(sim.gamma)}, β = {_g(sim.beta)}, "
        f"ε = {_g(sim.eps)}.[/]"
    )
    out.print(_final_table(sim))
    out.print("\n[bold]How far apart[/]: max − min over the five conventions, after each step")
    out.print(_spread_table(sim))
    out.print("\n[dim]Sources:[/]")
    for track in sim.tracks:
        text = textwrap.fill(
            f"{track.convention.name}: {track.convention.source}",
            width=78,
            initial_indent="  ",
            subsequent_indent="    ",
        )
        out.print(f"[dim]{escape(text)}[/]")


def _final_table(sim: Simulation) -> Table:
    """Each convention's running μ, σ² after the last step and the eval output they give,
    then μ, σ² of all the data seen."""
    from rich.table import Table

    mean, var = sim.population()
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for column, justify in (
        ("convention", "left"),
        ("running ← update", "left"),
        ("μ", "right"),
        ("σ²", "right"),
        ("eval y", "right"),
    ):
        table.add_column(column, justify=justify, no_wrap=column != "running ← update")
    for track in sim.tracks:
        m, v = track.means[-1], track.variances[-1]
        table.add_row(
            track.convention.name,
            escape(track.convention.words),
            _g(m),
            _g(v),
            _g(sim.eval_output(m, v)),
        )
    table.add_row(
        "all data", "μ, σ² of every value seen", _g(mean), _g(var), _g(sim.eval_output(mean, var))
    )
    return table


def _spread_table(sim: Simulation) -> Table:
    """max − min over the conventions of μ, σ² and the eval output, at the checkpoints."""
    from rich.table import Table

    spread = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    spread.add_column("step", justify="right")
    for column in ("μ", "σ²", "eval y"):
        spread.add_column(column, justify="right")
    for step in _checkpoints(sim.steps):
        means = [t.means[step - 1] for t in sim.tracks]
        variances = [t.variances[step - 1] for t in sim.tracks]
        outputs = [sim.eval_output(m, v) for m, v in zip(means, variances, strict=True)]
        spread.add_row(
            str(step),
            _g(max(means) - min(means)),
            _g(max(variances) - min(variances)),
            _g(max(outputs) - min(outputs)),
        )
    return spread


def _as_dict(sim: Simulation) -> dict[str, Any]:
    mean, var = sim.population()
    return {
        "steps": sim.steps,
        "batch": len(sim.batches[0]),
        "batches": [[str(v) for v in b] for b in sim.batches],
        "gamma": str(sim.gamma),
        "beta": str(sim.beta),
        "eps": str(sim.eps),
        "probe": str(sim.probe),
        "data": {"mean": str(mean), "var": str(var)},
        "conventions": [
            {
                "name": t.convention.name,
                "update": t.convention.words,
                "source": t.convention.source,
                "unbiased": t.convention.unbiased,
                "running_mean": [str(m) for m in t.means],
                "running_var": [str(v) for v in t.variances],
                "eval_output": [
                    sim.eval_output(m, v) for m, v in zip(t.means, t.variances, strict=True)
                ],
            }
            for t in sim.tracks
        ],
    }


def _plot(sim: Simulation, path: str) -> None:
    """Three panels over the steps: running μ, running σ², eval output; one line per convention
    and the data's own values (of every batch so far) dashed."""
    import matplotlib

    matplotlib.use("Agg")  # a file, no window
    import matplotlib.pyplot as plt

    steps = list(range(1, sim.steps + 1))
    data = [sim.population(s) for s in steps]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), constrained_layout=True)
    panels = (
        ("running μ", lambda t: [float(m) for m in t.means], [float(m) for m, _ in data]),
        ("running σ²", lambda t: [float(v) for v in t.variances], [float(v) for _, v in data]),
        (
            "eval output y",
            lambda t: [sim.eval_output(m, v) for m, v in zip(t.means, t.variances, strict=True)],
            [sim.eval_output(m, v) for m, v in data],
        ),
    )
    for ax, (title, values, reference) in zip(axes, panels, strict=True):
        for track in sim.tracks:
            ax.plot(steps, values(track), label=track.convention.name)
        ax.plot(steps, reference, "k--", linewidth=1, label="all data so far")
        ax.set_title(title)
        ax.set_xlabel("step")
    axes[0].legend(fontsize="small")
    try:
        fig.savefig(path, dpi=100)
    except OSError as exc:
        raise BnderiveError(f"{path}: cannot write the plot ({exc.strerror}).") from None
    finally:
        plt.close(fig)
