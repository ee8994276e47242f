from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from bnderive.cli.common import STATUS_STYLE, console, escape, json_text, safe, user_errors

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


def _number(text: str, option: str) -> float:
    """An option's value as a number (NaN and ∞ are read too, and refused by check_limits)."""
    from bnderive.usercode.sandbox import LimitError

    try:
        return float(text)
    except ValueError:
        raise LimitError(f"{option} {text!r} is not a number.") from None


# -- check-impl -----------------------------------------------------------------------------------
@click.command("check-impl")
@click.argument("files", nargs=-1, required=True, metavar="FILE.py|DIR...")
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
    "--class",
    "layer_class",
    default=None,
    metavar="NAME",
    help="Check only this layer class (a class with forward/backward methods; every BatchNorm "
    "class of the file is checked by default).",
)
@click.option(
    "--mode",
    type=click.Choice(["per-activation", "spatial"]),
    default=None,
    help="Check only PER_ACTIVATION (N,D, statistics per feature) or SPATIAL (N,C,H,W, per "
    "channel: spatial_batchnorm_*). Default: every mode the file has functions for.",
)
@click.option(
    "--eval",
    "eval_mode",
    is_flag=True,
    help="Check only eval mode: running statistics (cs231n: bn_param['mode'] = 'test'; "
    "functional: f(..., eps, running_mean, running_var)).",
)
@click.option("--train", "train_mode", is_flag=True, help="Check only training mode.")
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
    help="Seconds each file may run (wall clock; the CPU time is limited to the same), at "
    "most 600.",
)
@click.option(
    "--memory",
    "memory_mb",
    default="2048",
    show_default=True,
    metavar="MIB",
    help="Address-space limit of the process running a file, in MiB (64 to 16384).",
)
@click.option(
    "--jobs", default=2, show_default=True, type=int, help="Files checked at once (folder mode)."
)
@click.option(
    "--csv", "csv_path", default=None, metavar="FILE", help="Write the folder summary as CSV."
)
@click.option(
    "--norm",
    type=click.Choice(["batch", "layer", "instance", "group", "rms"]),
    default="batch",
    show_default=True,
    help="The normalization the file implements: layer, instance, group (with --groups) or "
    "rms are checked against that family's exact truth (CS231n's layernorm_forward/backward, "
    "spatial_groupnorm_forward/backward, or a functional backward), training mode.",
)
@click.option("--groups", type=int, default=None, metavar="G", help="GroupNorm's number of groups.")
@click.option("--json", "as_json", is_flag=True, help="Print the verdicts as JSON.")
@user_errors
def check_impl(
    files: tuple[str, ...],
    api: str | None,
    function: str | None,
    layer_class: str | None,
    mode: str | None,
    eval_mode: bool,
    train_mode: bool,
    running: str,
    timeout: str,
    memory_mb: str,
    jobs: int,
    csv_path: str | None,
    norm: str,
    groups: int | None,
    as_json: bool,
) -> None:
    r"""Check NumPy implementations of BatchNorm: the forward output (training and eval mode),
    the running statistics, and dx, dgamma, dbeta of every backward, one row each.

    The file runs in a separate process (with --timeout and --memory, in a temporary directory)
    on exact rational inputs: integer x with a large mean, uneven dout, gamma not 0 or ±1, and
    eps chosen so that sqrt(var + eps) is rational. Its results are compared with the ground
    truth exactly at N = 3, 4, 5 and (3,2) (PER_ACTIVATION) or (2,2,2,2) and (3,1,2,2) (SPATIAL).
    Where the code cannot run exactly (it converts to float, calls np.exp, ...), its float
    results are compared within a rounding bound derived for their dtype at those inputs, and
    the verdict says "numeric"; a result too imprecise to tell the truth from a known mistake
    (float16, usually) is undecided. A function that cannot be checked gets its own row with
    the reason, and the file is then never "holds".

    The CS231n forward starts from non-zero running statistics in bn_param; in training mode
    their update is compared (exactly where the code allows) with the declared convention's
    (--running; auto names the one the code follows), in eval mode they must be unchanged. In
    eval mode the backward is checked against the eval-mode gradient when the test-mode forward
    returns a cache (CS231n's returns None: its backward is for training only).

    Several files or a folder: each file in its own child process, --jobs at a time, a summary
    table with one row per file (--csv FILE writes it, --json prints every report).

    \b
    Examples:
      bnderive check-impl examples/layers.py
      bnderive check-impl examples/layers_nogamma.py
      bnderive check-impl examples/layers.py --running pytorch --train
      bnderive check-impl examples/layers.py --eval
      bnderive check-impl examples/mybn.py --function bn_backward
      bnderive check-impl layers.py --class BatchNormalization
      bnderive check-impl mybn.py --function bn_backward_eval --eval --json
      bnderive check-impl submissions/ --jobs 2 --csv grades.csv
      bnderive check-impl layers.py --norm group --groups 2

    Exit codes: 0 all hold, 1 something refuted, 2 a file or function could not be checked
    (nothing refuted), 3 undecided.
    """
    from bnderive.core.spec import Mode
    from bnderive.usercode.sandbox import check_limits, interrupts, warm

    seconds, mib = check_limits(_number(timeout, "--timeout"), _number(memory_mb, "--memory"))
    if eval_mode and train_mode:
        from bnderive.usercode.layout import ImplementationError

        raise ImplementationError(
            "--eval and --train each check one mode only: give one of them, or neither to "
            "check both."
        )
    options = {
        "api": api,
        "function": function,
        "layer_class": layer_class,
        "mode": Mode.parse(mode) if mode else None,
        "training": False if eval_mode else (True if train_mode else None),
        "timeout": seconds,
        "memory_mb": mib,
        "running": running,
        "norm": norm,
        "groups": groups,
    }
    from pathlib import Path

    folder = len(files) > 1 or Path(files[0]).is_dir() or csv_path is not None
    # the child that runs the (first) file starts now, while bnderive imports SymPy
    with interrupts(), warm(seconds, mib, keep=folder):
        if folder:
            _folder(files, jobs, csv_path, as_json, options)
        from bnderive.usercode.norm_impl import check_any

        report = check_any(files[0], **options)
    _print_report(report, as_json)
    sys.exit(report.exit_code)


def _print_report(report: object, as_json: bool) -> None:
    """check-impl's result: as JSON, or the file and its calls, the table of verdicts, what
    each refuted, approximate or open row found, the failures, the notes and the totals."""
    code = report.exit_code  # type: ignore[attr-defined]
    if as_json:
        payload = {"status": report.status, "exit_code": code}  # type: ignore[attr-defined]
        payload.update(report.to_dict())  # type: ignore[attr-defined]
        click.echo(json_text(payload))
        return
    out = console()
    r: Any = report
    out.print(f"[bold]{escape(r.file)}[/]: {r.api} API, {escape(', '.join(r.functions))}")
    for line in r.calls:
        out.print(f"[dim]called: {escape(line)}[/]")
    out.print(_verdict_table(r))
    _print_findings(out, r)
    for f in r.failures:
        out.print(
            f"\n[bold magenta]Error: {escape(f.function)} {escape(', '.join(f.quantities))} "
            f"({escape(f.section)})[/] could not be checked: {escape(f.message)}"
        )
    for note in r.notes:
        out.print(f"[dim]note: {escape(note)}[/]")
    _print_totals(out, r, code)


def _verdict_table(r: Any) -> Table:
    """One row per verdict (function, quantity, mode, method, verdict), then one per function
    that could not be checked."""
    from rich.table import Table

    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for column in ("function", "quantity", "mode", "method", "verdict"):
        table.add_column(column, no_wrap=True)
    sections = r.sections
    for k, v in enumerate(r.verdicts):
        text, style = STATUS_STYLE[v.status.value]
        mode_text = sections[k] if k < len(sections) else (v.mode.value if v.mode else "")
        table.add_row(
            safe(v.form), safe(v.quantity), mode_text, safe(v.scope), f"[{style}]{text}[/]"
        )
    for f in r.failures:
        table.add_row(
            safe(f.function),
            safe(", ".join(f.quantities)),
            safe(f.section),
            "",
            "[bold magenta]! could not check[/]",
        )
    return table


def _print_findings(out: Console, r: Any) -> None:
    """Under the table, each refuted row with its counterexample (and its diagnosis, once per
    function and quantity), each row that holds only numerically, and each open row, with
    the mode where the verdicts span several."""
    from bnderive.verify.verdict import Status

    sections = r.sections
    told: set[tuple[str, str, tuple[str, ...]]] = set()  # a diagnosis once, under its first row
    for k, v in enumerate(r.verdicts):
        where = f" ({sections[k]})" if len({*sections}) > 1 and k < len(sections) else ""
        head = f"{escape(v.form)}: {escape(v.quantity)}{escape(where)}"
        if v.status is Status.REFUTED and v.counterexample is not None:
            c = v.counterexample
            out.print(f"\n[bold red]✗ {head}[/] {escape(v.detail)}")
            inputs = "; ".join(f"{k} = {val}" for k, val in c.inputs.items())
            out.print(f"    {escape(inputs)}")
            out.print(f"    {escape(c.entry)}: truth {escape(c.truth)}, yours {escape(c.form)}")
            diagnosis = r.diagnosis(k)
            lines = [] if (v.form, v.quantity, tuple(diagnosis)) in told else diagnosis
            told.add((v.form, v.quantity, tuple(diagnosis)))
            for j, text in enumerate(lines):
                out.print(f"  [bold]{escape(text)}[/]" if j == 0 else f"  {escape(text)}")
        elif v.method == "numeric" and v.status is Status.HOLDS:
            out.print(f"\n[yellow]~ {head}[/] {escape(v.detail)}")
        elif v.status is Status.UNDECIDED:
            out.print(f"\n[yellow]? {head}[/] {escape(v.detail)}")


def _print_totals(out: Console, r: Any, code: int) -> None:
    """The last line: the overall status, how many rows hold, are refuted or open, how many
    functions could not be checked, and the time taken."""
    from bnderive.verify.verdict import Status

    counts = {s: sum(1 for v in r.verdicts if v.status is s) for s in Status}
    parts = [f"{counts[Status.HOLDS]} hold"] + [
        f"{counts[s]} {s.value}" for s in (Status.REFUTED, Status.UNDECIDED) if counts[s]
    ]
    if r.failures:
        parts.append(f"{len(r.failures)} function(s) could not be checked")
    text, style = {
        0: STATUS_STYLE["holds"], 1: STATUS_STYLE["refuted"], 3: STATUS_STYLE["undecided"],
        2: ("! could not check", "bold magenta"),
    }[code]  # fmt: skip
    out.print(f"\n[{style}]{text}[/]: {', '.join(parts)} in {r.seconds:.1f} s.")


def _folder(
    files: tuple[str, ...], jobs: int, csv_path: str | None, as_json: bool, options: dict
) -> None:
    """Folder mode: every file in its own child, a summary table, --csv and --json."""
    from pathlib import Path

    from rich.table import Table

    from bnderive.usercode import folder

    paths = folder.collect(files)
    err = console(stderr=True)

    def progress(result: folder.FileResult, done: int, total: int) -> None:
        if not as_json:
            err.print(f"[dim][{done}/{total}] {escape(result.path)}: {result.status}[/]")

    results = folder.check_many(paths, jobs=jobs, progress=progress, **options)
    if csv_path is not None:
        Path(csv_path).write_text(folder.to_csv(results), encoding="utf-8")
    code = folder.exit_code(results)
    if as_json:
        payload = {"exit_code": code, "files": [r.to_dict() for r in results]}
        click.echo(json_text(payload))
        sys.exit(code)
    out = console()
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for column in ("file", "verdict", "hold", "refuted", "undecided", "not checked", "mistakes"):
        table.add_column(column)
    styles = {"holds": "green", "refuted": "bold red", "undecided": "yellow",
              "could not check": "bold magenta"}  # fmt: skip
    for r in results:
        counts = r.counts()
        mistakes = "; ".join(r.mistakes()) or ("; ".join(r.refuted()) if r.refuted() else "")
        if r.report is None and r.error:
            mistakes = r.error.splitlines()[0][:120]
        table.add_row(
            escape(r.path), f"[{styles[r.status]}]{r.status}[/]", str(counts["holds"]),
            str(counts["refuted"]), str(counts["undecided"]), str(counts["could not check"]),
            escape(mistakes),
        )  # fmt: skip
    out.print(table)
    by = {s: sum(r.status == s for r in results) for s in styles}
    total = sum(r.seconds for r in results)
    out.print(
        f"\n{len(results)} files: {by['holds']} hold, {by['refuted']} refuted, "
        f"{by['undecided']} undecided, {by['could not check']} could not be checked "
        f"({total:.1f} s of checking)."
    )
    sys.exit(code)
