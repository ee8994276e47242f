from __future__ import annotations

import json
import sys

import click
from rich.markup import escape

from bnderive.cli.common import STATUS_STYLE, console, user_errors


def _number(text: str, option: str) -> float:
    """An option's value as a number (NaN and ∞ are read too, and refused by check_limits)."""
    from bnderive.usercode.sandbox import LimitError

    try:
        return float(text)
    except ValueError:
        raise LimitError(f"{option} {text!r} is not a number.") from None


# -- check-impl -----------------------------------------------------------------------------------
@click.command("check-impl")
@click.argument("file", type=click.Path())
@click.option(
    "--api",
    type=click.Choice(["cs231n", "functional"]),
    default=None,
    help="cs231n: batchnorm_forward/batchnorm_backward; functional: "
    "f(x, gamma, beta, dout, eps) -> (dx, dgamma, dbeta). Detected when left out.",
)
@click.option(
    "--function", "function", default=None, metavar="NAME", help="The functional API's function."
)
@click.option(
    "--mode",
    type=click.Choice(["per-activation", "spatial"]),
    default="per-activation",
    show_default=True,
    help="PER_ACTIVATION (N,D) statistics per feature, SPATIAL (N,C,H,W) per channel "
    "(spatial_batchnorm_* in the CS231n API).",
)
@click.option(
    "--eval",
    "eval_mode",
    is_flag=True,
    help="Eval mode: running statistics (cs231n: bn_param['mode'] = 'test'; "
    "functional: f(..., eps, running_mean, running_var)).",
)
@click.option(
    "--running",
    type=click.Choice(["auto", "cs231n", "pytorch"]),
    default="auto",
    show_default=True,
    help="The running-statistics update the cs231n forward must follow: cs231n (momentum 0.9 "
    "on the old value, biased variance) or pytorch (momentum 0.1 on the new value, unbiased "
    "running_var); auto names the one it follows.",
)
@click.option(
    "--timeout",
    default="20",
    show_default=True,
    metavar="SECONDS",
    help="Seconds the file may run (wall clock; the CPU time is limited to the same), at most 600.",
)
@click.option(
    "--memory",
    "memory_mb",
    default="2048",
    show_default=True,
    metavar="MIB",
    help="Address-space limit of the process running the file, in MiB (64 to 16384).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the verdicts as JSON.")
@user_errors
def check_impl(
    file: str,
    api: str | None,
    function: str | None,
    mode: str,
    eval_mode: bool,
    running: str,
    timeout: str,
    memory_mb: str,
    as_json: bool,
) -> None:
    r"""Check a NumPy implementation of BatchNorm (forward output, running statistics, dx,
    dgamma, dbeta).

    The file runs in a separate process (with --timeout and --memory, in a temporary directory)
    on exact rational inputs: integer x with a large mean, uneven dout, gamma not 0 or ±1, and
    eps chosen so that sqrt(var + eps) is rational. Its results are compared with the ground
    truth exactly at N = 3, 4, 5 and (3,2) (PER_ACTIVATION) or (2,2,2,2) and (3,1,2,2) (SPATIAL).
    Where the code cannot run exactly (it converts to float, calls np.exp, ...), its float
    results are compared within a rounding bound derived for their dtype at those inputs, and
    the verdict says "numeric"; a result too imprecise to tell the truth from a known mistake
    (float16, usually) is undecided.

    The CS231n forward starts from non-zero running statistics in bn_param; in training mode
    their update is compared (exactly where the code allows) with the declared convention's
    (--running; auto names the one the code follows), in eval mode they must be unchanged. With --eval the backward is checked against the eval-mode
    gradient when the test-mode forward returns a cache (CS231n's returns None: its backward
    is for training only).

    \b
    Examples:
      bnderive check-impl examples/layers.py
      bnderive check-impl examples/layers_nogamma.py
      bnderive check-impl examples/layers.py --running pytorch
      bnderive check-impl examples/layers.py --eval
      bnderive check-impl examples/mybn.py --function bn_backward
      bnderive check-impl mybn.py --function bn_backward_eval --eval --json

    Exit codes: 0 all hold, 1 something refuted, 2 the file could not be run or returned
    something unusable, 3 undecided.
    """
    from rich.table import Table

    from bnderive.core.spec import Mode
    from bnderive.usercode.check_impl import check_impl as run_check
    from bnderive.usercode.sandbox import check_limits, interrupts
    from bnderive.verify.verdict import Status, exit_code, overall

    seconds, mib = check_limits(_number(timeout, "--timeout"), _number(memory_mb, "--memory"))
    with interrupts():
        report = run_check(
            file,
            api=api,
            function=function,
            mode=Mode.parse(mode),
            training=not eval_mode,
            timeout=seconds,
            memory_mb=mib,
            running=running,
        )
    code = exit_code(report.verdicts)
    if as_json:
        payload = {"status": overall(report.verdicts).value, "exit_code": code}
        payload.update(report.to_dict())
        click.echo(json.dumps(payload, indent=2, ensure_ascii=False))
        sys.exit(code)
    out = console()
    out.print(
        f"[bold]{escape(report.file)}[/]: {report.api} API, {escape(', '.join(report.functions))}"
    )
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for column in ("function", "quantity", "mode", "method", "verdict"):
        table.add_column(column, no_wrap=True)
    for v in report.verdicts:
        text, style = STATUS_STYLE[v.status.value]
        mode_text = v.mode.value if v.mode else ""
        table.add_row(v.form, v.quantity, mode_text, v.scope, f"[{style}]{text}[/]")
    out.print(table)
    for v in report.verdicts:
        if v.status is Status.REFUTED and v.counterexample is not None:
            c = v.counterexample
            out.print(f"\n[bold red]✗ {escape(v.form)}: {escape(v.quantity)}[/] {escape(v.detail)}")
            inputs = "; ".join(f"{k} = {val}" for k, val in c.inputs.items())
            out.print(f"    {escape(inputs)}")
            out.print(f"    {escape(c.entry)}: truth {escape(c.truth)}, yours {escape(c.form)}")
            for k, text in enumerate(report.diagnoses.get((v.form, v.quantity), [])):
                out.print(f"  [bold]{escape(text)}[/]" if k == 0 else f"  {escape(text)}")
        elif v.method == "numeric" and v.status is Status.HOLDS:
            out.print(f"\n[yellow]~ {escape(v.form)}: {escape(v.quantity)}[/] {escape(v.detail)}")
        elif v.status is Status.UNDECIDED:
            out.print(f"\n[yellow]? {escape(v.form)}: {escape(v.quantity)}[/] {escape(v.detail)}")
    for note in report.notes:
        out.print(f"[dim]note: {escape(note)}[/]")
    status = overall(report.verdicts)
    text, style = STATUS_STYLE[status.value]
    counts = {s: sum(1 for v in report.verdicts if v.status is s) for s in Status}
    parts = [f"{counts[Status.HOLDS]} hold"] + [
        f"{counts[s]} {s.value}" for s in (Status.REFUTED, Status.UNDECIDED) if counts[s]
    ]
    out.print(f"\n[{style}]{text}[/]: {', '.join(parts)} in {report.seconds:.1f} s.")
    sys.exit(code)
