from __future__ import annotations

import sys
from typing import Any

import click

from bnderive.cli.common import console, escape, json_text, user_errors
from bnderive.errors import BnderiveError


def _check_sizes(n: int, c: int, h: int | None, w: int | None, spatial: bool) -> None:
    """The caps of ``core/limits.py`` on explain's sizes, before anything is drawn."""
    from bnderive.core.limits import EXPLAIN_CHANNELS, EXPLAIN_ELEMENTS, EXPLAIN_M, SIZE
    from bnderive.core.spec import layer_sizes

    c, h, w = layer_sizes(spatial, c, h, w)
    for name, value in (("n", n), ("c", c), ("h", h), ("w", w)):
        if value < 1:
            raise BnderiveError(f"--{name} {value}: a size must be at least 1.")
        SIZE.check(value, f"--{name} {value:,}")
    EXPLAIN_M.check(n * h * w, f"{n * h * w:,}")
    EXPLAIN_CHANNELS.check(c)
    EXPLAIN_ELEMENTS.check(n * c * h * w, f"{n * c * h * w:,}")


# -- explain --------------------------------------------------------------------------------------
@click.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option(
    "--against",
    default="truth",
    show_default=True,
    metavar="truth|torch|FILE",
    help="With FILE: the reference to run it against: bnderive's exact gradient, PyTorch's "
    "BatchNorm layer, or another implementation file.",
)
@click.option("--function", default=None, metavar="NAME", help="FILE's backward function.")
@click.option(
    "--ref-function", default=None, metavar="NAME", help="The reference file's backward function."
)
@click.option(
    "--mode",
    type=click.Choice(["per-activation", "spatial"]),
    default="per-activation",
    show_default=True,
    help="PER_ACTIVATION (N,D), statistics per feature; SPATIAL (N,C,H,W), per channel.",
)
@click.option("--n", "n", default=4, show_default=True, type=int, help="Batch size N.")
@click.option("--c", "c", default=1, show_default=True, type=int, help="Features D or channels C.")
@click.option("--h", "h", default=None, type=int, help="Height H (SPATIAL; default 2).")
@click.option("--w", "w", default=None, type=int, help="Width W (SPATIAL; default 2).")
@click.option(
    "--loss",
    type=click.Choice(["sum", "mean", "random", "weights"]),
    default="mean",
    show_default=True,
    help="How the test makes a scalar of y: y.sum(), y.mean(), y.backward(randn) or (w·y).sum().",
)
@click.option(
    "--gamma",
    default="1",
    show_default=True,
    metavar="VALUES",
    help="γ: one value or one per feature, comma-separated (a fresh layer has 1).",
)
@click.option("--beta", default="0", show_default=True, help="β (a fresh layer has 0).")
@click.option("--x-mean", default="0", show_default=True, help="x is drawn as mean + std·N(0,1).")
@click.option("--x-std", default="1", show_default=True, help="The std x is drawn with.")
@click.option(
    "--x-var",
    default=None,
    metavar="V",
    help="The test standardizes x: each feature's batch variance is V (e.g. 1); not with --x-std.",
)
@click.option("--eps", default="1e-5", show_default=True, help="ε of the backward under test.")
@click.option("--ref-eps", default=None, metavar="EPS", help="ε of the reference (default: --eps).")
@click.option(
    "--reference",
    type=click.Choice(["train", "eval"]),
    default="train",
    show_default=True,
    help="The mode the reference runs in (model.train() or model.eval()).",
)
@click.option(
    "--running-mean", default="0", show_default=True, help="The reference's running mean (eval)."
)
@click.option(
    "--running-var", default="1", show_default=True, help="The reference's running variance (eval)."
)
@click.option(
    "--rtol", default="1e-5", show_default=True, help="The relative tolerance of the test."
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the inputs drawn.")
@click.option(
    "--timeout",
    default=20.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Seconds an implementation file may run.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@user_errors
def explain(
    file: str | None,
    against: str,
    function: str | None,
    ref_function: str | None,
    mode: str,
    n: int,
    c: int,
    h: int | None,
    w: int | None,
    loss: str,
    gamma: str,
    beta: str,
    x_mean: str,
    x_std: str,
    x_var: str | None,
    eps: str,
    ref_eps: str | None,
    reference: str,
    running_mean: str,
    running_var: str,
    rtol: str,
    seed: int,
    timeout: float,
    as_json: bool,
) -> None:
    r"""Explain why a gradient test of BatchNorm can lie: what in its setup hides mistakes.

    Describe the test (batch size, loss, γ, inputs, ε on each side, the reference's mode) and
    each weakness is measured with the exact ground truth at inputs drawn as the test draws
    them: a uniform upstream gradient (a sum or mean loss) makes the true dx exactly 0; M ≤ 2
    values per feature make it O(ε); γ = 1 hides a missing γ; σ² + ε ≈ 1 hides σ for σ²; an
    eval-mode reference and a different ε change dx even when both sides are right. With FILE
    (a NumPy backward, CS231n or functional API, run as check-impl runs it), its dx is compared
    with the reference's at those inputs and the difference split into what the setup explains
    and what it does not.

    \b
    Examples:
      bnderive explain --n 2 --loss mean --reference eval
      bnderive explain --n 16 --loss random --gamma 1.5 --eps 1e-3 --ref-eps 1e-5
      bnderive explain examples/layers.py --against torch --n 2 --loss mean --reference eval
      bnderive explain examples/mybn.py --against examples/layers.py --loss random --json

    Exit codes: 0 no weakness found, 1 a weakness found (the test can lie) or a difference the
    setup does not explain, 2 bad input.
    """
    from bnderive.core.spec import Mode
    from bnderive.usercode import explain as explainer

    numbers = {"--gamma": gamma, "--beta": beta, "--x-mean": x_mean, "--x-std": x_std,
               "--x-var": x_var, "--eps": eps, "--ref-eps": ref_eps,
               "--running-mean": running_mean, "--running-var": running_var, "--rtol": rtol}  # fmt: skip
    height, width, timeout = _checked_options(
        file, against, function, ref_function, mode, (n, c, h, w), numbers, seed, timeout
    )
    setup = explainer.Setup(
        n=n,
        features=c,
        mode=Mode.parse(mode),
        h=height,
        w=width,
        loss=loss,
        gamma=tuple(v for v in gamma.split(",")),
        beta=beta,
        x_mean=x_mean,
        x_std=x_std,
        x_var=x_var,
        eps=eps,
        reference_eps=ref_eps,
        reference=reference,
        running_mean=running_mean,
        running_var=running_var,
        rtol=rtol,
        seed=seed,
    )
    if file is None:
        result = explainer.explain(setup)
    else:
        result = explainer.compare(setup, file, against, function, ref_function, timeout)
    if as_json:
        click.echo(json_text(result.to_dict()))
        sys.exit(result.exit_code)
    _print_findings(setup, result)
    sys.exit(result.exit_code)


def _checked_options(
    file: str | None,
    against: str,
    function: str | None,
    ref_function: str | None,
    mode: str,
    sizes: tuple[int, int, int | None, int | None],
    numbers: dict[str, str | None],
    seed: int,
    timeout: float,
) -> tuple[int, int, float]:
    """Options that contradict each other or are out of bounds are an error before anything
    runs; returns (H, W) of the layer and the child's timeout."""
    from bnderive.core.limits import parse_decimal
    from bnderive.core.spec import layer_sizes
    from bnderive.usercode.sandbox import DEFAULT_MEMORY_MB, check_limits

    n, c, h, w = sizes
    spatial = mode == "spatial"
    if not spatial and (h not in (None, 1) or w not in (None, 1)):
        raise BnderiveError(
            "--h and --w belong to SPATIAL (N,C,H,W) input: add --mode spatial, or leave them out."
        )
    if file is None and (against != "truth" or function or ref_function):
        raise BnderiveError(
            "--against, --function and --ref-function compare an implementation: give its FILE "
            "first (bnderive explain FILE --against torch ...)."
        )
    _check_sizes(n, c, h if spatial else 1, w if spatial else 1, spatial)
    _, height, width = layer_sizes(spatial, c, h, w)
    for option, text in numbers.items():  # bounded before anything builds the number
        for part in (text or "").split(",") if text is not None else ():
            parse_decimal(part, option)
    if not 0 <= seed < 2**63:
        raise BnderiveError(f"--seed {seed} is not usable: give a whole number from 0 to 2^63 - 1.")
    if file is not None:
        from bnderive.read.files import check_regular_file

        check_regular_file(file, "a Python file")
        if against not in ("truth", "torch"):
            check_regular_file(against, "a Python file, or truth or torch")
        timeout, _ = check_limits(timeout, DEFAULT_MEMORY_MB)
    return height, width, timeout


def _print_findings(setup: Any, result: Any) -> None:
    """The setup, a table of the checks, each weakness with its evidence, the comparison."""
    from rich.table import Table

    from bnderive.usercode import explain as explainer

    out = console()
    out.print(f"[bold]setup:[/] {escape(setup.describe())}")
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for column in ("check", "kind", "effect", "flagged when", "verdict"):
        table.add_column(column, no_wrap=True)
    for f in result.findings:
        verdict = "[bold red]✗ can lie[/]" if f.flagged else "[green]✓ fine[/]"
        when = f"{'≤' if f.kind == 'blind spot' else '>'} {f.threshold:g}"
        table.add_row(f.name, f.kind, explainer.share(f.effect), when, verdict)
    out.print(table)
    for f in result.flagged:
        out.print(f"\n[bold red]✗ {escape(f.name)}:[/] {escape(f.sentence)}")
        for key, value in f.evidence.items():
            out.print(f"    {escape(key)}: {escape(value)}")
    if result.comparison is not None:
        lines = result.comparison.sentences()
        style = "green" if result.comparison.explained else "bold red"
        out.print(f"\n[{style}]{escape(lines[0])}[/]")
        for line in lines[1:]:
            out.print(escape(line))
    names = [f.name for f in result.flagged]
    if names:
        what = "weakness" if len(names) == 1 else "weaknesses"
        summary = f"\n[bold red]✗ {len(names)} {what}, the test can lie:[/] {', '.join(names)}."
    else:
        summary = "\n[green]✓ no weakness found in this setup.[/]"
    if result.comparison is not None and not result.comparison.explained:
        summary += " [bold red]The difference is not the setup's alone.[/]"
    out.print(summary)
