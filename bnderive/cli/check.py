from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape

from bnderive.cli.common import STATUS_STYLE, console, document, user_errors
from bnderive.errors import BnderiveError

if TYPE_CHECKING:
    from rich.table import Table

    from bnderive.read.forms import Form
    from bnderive.verify.verdict import Verdict


# -- check ----------------------------------------------------------------------------------------
@click.command()
@click.argument("forms", nargs=-1, metavar="[FORM]...")
@click.option(
    "--form",
    "form_files",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="A form file (TOML) of your own; repeatable.",
)
@click.option(
    "--mode",
    type=click.Choice(["per-activation", "spatial", "both"]),
    default="both",
    show_default=True,
    help="PER_ACTIVATION (N,D) statistics per feature, SPATIAL (N,C,H,W) per channel over N,H,W.",
)
@click.option(
    "--n",
    "n_text",
    default=None,
    metavar="SIZES",
    help="Batch sizes for the exact method, e.g. 1-6 (default) or 4,8,64.",
)
@click.option(
    "--shape",
    "shape_texts",
    multiple=True,
    metavar="N,D|N,C,H,W",
    help="Explicit shapes for the exact method instead of the defaults; repeatable.",
)
@click.option(
    "--method",
    type=click.Choice(["exact", "random", "general", "all"]),
    default="all",
    show_default=True,
    help="exact: proof at explicit sizes; random: exact rational evaluation at large M; "
    "general: proof for every M.",
)
@click.option(
    "--all-n", is_flag=True, help="Only the proof for every M (same as --method general)."
)
@click.option(
    "--m",
    "m_random",
    default=4096,
    show_default=True,
    type=click.IntRange(min=2),
    help="Size of the reduction set for the randomized method.",
)
@click.option(
    "--trials",
    default=3,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="Random points per form for the randomized method.",
)
@click.option(
    "--order",
    type=click.IntRange(1, 2),
    default=1,
    show_default=True,
    help="Which built-in forms: 1 the backward, 2 the double backward.",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes (default: 2 where two cores are available).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the verdicts as JSON.")
@click.option("--no-timing", is_flag=True, help="Leave the time column out (stable output).")
@user_errors
def check(
    forms: tuple[str, ...],
    form_files: tuple[str, ...],
    mode: str,
    n_text: str | None,
    shape_texts: tuple[str, ...],
    method: str,
    m_random: int,
    trials: int,
    as_json: bool,
    no_timing: bool,
    all_n: bool,
    order: int,
    jobs: int | None,
) -> None:
    """Check derivations of the backward pass against the ground truth.

    FORM is the name of a built-in form (see `bnderive forms`) or the path of a form file;
    without FORM and --form, every built-in form of the --order is checked (1: the backward,
    2: the double backward, with Φ = Σ ggI·dx + ggG·dγ + ggB·dβ). Every line of a form is compared
    with the truth of the quantity it defines: for every M (index notation, sums kept as
    reductions), exactly for N = 1..6 (PER_ACTIVATION) and the shapes (2,1,2,2), (2,2,2,3)
    (SPATIAL), and at random points in exact rational arithmetic for M = 4096.

    \b
    Examples:
      bnderive check
      bnderive check staged --method exact --n 8
      bnderive check --all-n
      bnderive check --order 2
      bnderive check --form my_derivation.toml --json

    Exit codes: 0 all hold, 1 something refuted, 2 bad input, 3 undecided.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from bnderive.core.spec import Mode, parse_shape, parse_sizes
    from bnderive.read.catalogue import find_form
    from bnderive.read.derivations import builtin_forms
    from bnderive.read.forms import load_form
    from bnderive.verify.plan import Plan, default_jobs
    from bnderive.verify.verdict import Status, exit_code, overall

    chosen = [find_form(name) for name in forms] + [
        document().load_document(path) if document().is_document(path) else load_form(path)
        for path in form_files
    ]
    if not chosen:
        chosen = [f for f in builtin_forms() if f.order == order]
        if not chosen:
            raise BnderiveError(f"No built-in form of order {order} is installed.")
    modes = [Mode.PER_ACTIVATION, Mode.SPATIAL] if mode == "both" else [Mode.parse(mode)]
    methods = ["general", "exact", "random"] if method == "all" else [method]
    if all_n:
        methods = ["general"]
    n_values = parse_sizes(n_text) if n_text else None
    shapes = [parse_shape(s) for s in shape_texts]
    for s in shapes:
        if s.mode not in modes:
            raise BnderiveError(
                f"The shape {s.shape} is {s.mode.value}, but --mode {mode} was given: "
                "use --mode both or a shape of that mode."
            )

    plan = Plan(
        tuple(chosen),
        tuple(modes),
        tuple(methods),
        tuple(n_values) if n_values else None,
        tuple(shapes),
        m_random,
        trials,
    )
    err = console(stderr=True)
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal or as_json,
    )
    started = time.perf_counter()
    with progress:
        task = progress.add_task("checking", total=len(plan.units()))
        verdicts = plan.run(
            jobs or default_jobs(),
            lambda unit: progress.update(task, advance=1, description=unit.label),
        )
    elapsed = time.perf_counter() - started
    code = exit_code(verdicts)
    known = _known_mistakes(chosen, verdicts)
    if as_json:
        payload = {
            "status": overall(verdicts).value,
            "exit_code": code,
            "seconds": round(elapsed, 3),
            "verdicts": [v.to_dict() for v in verdicts],
            "diagnoses": [
                {"form": form, "equation": number, "quantity": quantity,
                 "matches": [m.to_dict() for m in matches]}
                for (form, number, quantity), matches in known.items()
            ],
        }  # fmt: skip
        click.echo(json.dumps(payload, indent=2, ensure_ascii=False))
        sys.exit(code)
    out = console()
    out.print(_verdict_table(verdicts, timing=not no_timing))
    for line in _explanations(verdicts, known):
        out.print(line)
    for form in chosen:  # a LaTeX document: its equations' lines in the file, and the first wrong
        refuted = [
            v.equation
            for v in verdicts
            if v.form == form.name and v.status is Status.REFUTED and v.follows is None
        ]
        steps = [v for v in verdicts if v.form == form.name and v.follows is not None]
        notes = document().line_notes(form, [n for n in refuted if n is not None], steps)
        for k, note in enumerate(notes):
            out.print(f"\n[bold]{escape(note)}[/]" if k == 0 else escape(note))
    out.print(_summary(verdicts, chosen, elapsed if not no_timing else None))
    sys.exit(code)

    return {0: Status.HOLDS, 1: Status.REFUTED, 3: Status.UNDECIDED}[exit_code(verdicts)]


def _verdict_table(verdicts: Sequence[Verdict], timing: bool) -> Table:
    from rich.table import Table

    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for column in ("form", "line", "quantity", "mode", "method", "verdict"):
        table.add_column(column, no_wrap=True)
    if timing:
        table.add_column("time", justify="right", no_wrap=True)
    for v in verdicts:
        text, style = STATUS_STYLE[v.status.value]
        line = v.source_line if v.source_line is not None else v.equation
        row = [
            v.form,
            str(line or "") + (f" ← {v.follows_line or v.follows}" if v.follows else ""),
            v.quantity + (" (step)" if v.follows else ""),
            v.mode.value if v.mode else "both",
            v.scope,
            f"[{style}]{text}[/]",
        ]
        if timing:
            row.append(f"{v.seconds * 1000:.0f} ms")
        table.add_row(*row)
    return table


def _known_mistakes(
    forms: Sequence[Form], verdicts: Sequence[Verdict]
) -> dict[tuple[str, int, str], list[Any]]:
    """For each refuted line (not a step), the corpus mistakes its value equals."""
    from bnderive.verify.diagnose import (
        diagnose_line,
    )  # builds the corpus: only when something is refuted
    from bnderive.verify.verdict import Status

    found: dict[tuple[str, int, str], list[Any]] = {}
    by_name = {f.name: f for f in forms}
    for v in verdicts:
        key = (v.form, v.equation or 0, v.quantity)
        if v.status is not Status.REFUTED or v.follows is not None or key in found:
            continue
        form = by_name.get(v.form)
        if form is None or v.equation is None:
            continue
        eq = form.equations[v.equation - 1]
        found[key] = diagnose_line(form, eq, v.mode or form.modes[0])
    return {key: matches for key, matches in found.items() if matches}


def _explanations(
    verdicts: Sequence[Verdict], known: dict[tuple[str, int, str], list[Any]] | None = None
) -> list[str]:
    from bnderive.verify.verdict import Status

    lines = []
    named: set[tuple[str, int, str]] = set()
    for v in verdicts:
        line = v.source_line if v.source_line is not None else v.equation
        before = v.follows_line or v.follows
        what = f"line {line} against line {before}" if v.follows else f"line {line}"
        if v.status is Status.REFUTED:
            where = f"{v.form}, {what} ({v.quantity}), {v.scope}"
            if v.follows:
                where += f": line {line} does not follow from line {before}"
            lines.append(f"\n[bold red]✗ {escape(where)}[/]")
            truth = f"line {before}" if v.follows else "truth"
            if v.counterexample is not None:
                c = v.counterexample
                inputs = "; ".join(f"{k} = {val}" for k, val in c.inputs.items())
                lines.append(f"  counterexample: {escape(c.spec.describe())}, channel {c.channel}")
                lines.append(f"    {escape(inputs)}")
                lines.append(
                    f"    {escape(c.entry)}: {truth} {escape(c.truth)}, "
                    f"{'line ' + str(line) if v.follows else 'form'} {escape(c.form)}"
                )
            if v.residual:
                lines.append(
                    f"  {truth} − {'this line' if v.follows else 'form'} = {escape(v.residual)}"
                )
            key = (v.form, v.equation or 0, v.quantity)
            if known and key in known and key not in named and not v.follows:
                named.add(key)
                for match in known[key]:
                    first, *rest = match.lines(v.quantity)
                    lines.append(f"  [bold]{escape(first)}[/]")
                    lines += [f"  {escape(text)}" for text in rest]
        elif v.status is Status.UNDECIDED:
            where = f"{v.form}, {what} ({v.quantity}), {v.scope}"
            lines.append(f"\n[yellow]? {escape(where)}[/]: {escape(v.detail)}")
            if v.residual:
                lines.append(
                    f"  leftover: {f'line {before} − this line' if v.follows else 'truth − form'}"
                    f" = {escape(v.residual)}"
                )
    return lines


def _summary(verdicts: Sequence[Verdict], forms: Sequence[Form], elapsed: float | None) -> str:
    from bnderive.verify.verdict import Status, overall

    counts = {s: sum(1 for v in verdicts if v.status is s) for s in Status}
    parts = [f"{counts[Status.HOLDS]} hold"]
    if counts[Status.REFUTED]:
        parts.append(f"{counts[Status.REFUTED]} refuted")
    if counts[Status.UNDECIDED]:
        parts.append(f"{counts[Status.UNDECIDED]} undecided")
    if counts[Status.UNCHECKED]:
        parts.append(f"{counts[Status.UNCHECKED]} not checked")
    status = overall(verdicts)
    text, style = STATUS_STYLE[status.value]
    took = f" in {elapsed:.1f} s" if elapsed is not None else ""
    names = ", ".join(f.name for f in forms)
    return (
        f"\n[{style}]{text}[/]: {len(forms)} form(s) ({escape(names)}), {', '.join(parts)}{took}."
    )
