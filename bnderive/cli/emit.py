from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click
from rich.markup import escape

from bnderive.cli.common import EXIT_INTERNAL, EXIT_REFUTED, console, user_errors
from bnderive.errors import BnderiveError

# -- emit -----------------------------------------------------------------------------------------


@click.command()
@click.option(
    "--form",
    "form_name",
    default="compact",
    show_default=True,
    metavar="compact|staged|kronecker|FILE",
    help="The form to turn into code: a built-in name or a form file (TOML).",
)
@click.option(
    "--mode",
    type=click.Choice(["per-activation", "spatial"]),
    default="per-activation",
    show_default=True,
    help="PER_ACTIVATION: (N,D), axis 0; SPATIAL: (N,C,H,W), axes (0,2,3).",
)
@click.option(
    "--target",
    type=click.Choice(["numpy", "numba"]),
    default="numpy",
    show_default=True,
    help="numpy: vectorized NumPy; numba: a fused two-pass parallel kernel (needs numba).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="FILE",
    help="Write the module to FILE instead of printing it.",
)
@user_errors
def emit(form_name: str, mode: str, target: str, output: str | None) -> None:
    r"""Write a proven form as a NumPy module, verified before it is written.

    The module has forward(x, gamma, beta, eps) -> (out, cache), backward(dout, x, gamma, eps)
    -> (dx, dgamma, dbeta) and backward_cached(dout, cache, gamma). Reductions run over the
    batch axes (and H, W in SPATIAL mode); dx is computed as c1·dout + c2·(x − μ) + c3 with
    per-channel coefficients; float32 input stays float32. Before anything is printed or
    written, the module is run in a separate process and its outputs compared, in bnderive,
    with the ground truth, exactly (rational arithmetic) and in float64 at adversarial inputs; a
    disagreement writes nothing. The form's title and sources go into the module's docstring
    as text (one line each; control characters are refused). -o never overwrites the form
    file, and the file is replaced whole, only after verification.

    \b
    Examples:
      bnderive emit                                   compact form, PER_ACTIVATION, on screen
      bnderive emit --form staged --mode spatial -o bn_staged.py
      bnderive emit --form kronecker > bn.py
      bnderive emit --target numba --mode spatial -o bn_numba.py

    Exit codes: 0 written, 1 the form is refuted (nothing written), 2 bad input, 4 bnderive
    failed (the emitted code disagrees with a form that holds: a bug to report).
    """
    from bnderive import __version__
    from bnderive.core.spec import Mode
    from bnderive.emit.emitter import check_output, write_atomically
    from bnderive.emit.emitter import emit as emit_module
    from bnderive.emit.numpy_module import EmitVerificationError
    from bnderive.read.catalogue import find_form

    form = find_form(form_name)
    if output is not None:
        inputs = [p for p in (form_name, form.path) if p and Path(p).exists()]
        check_output(output, inputs)
    try:
        emitted = emit_module(form, Mode.parse(mode), __version__, target=target)
    except EmitVerificationError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_REFUTED if exc.refuted else EXIT_INTERNAL)
    if output is None:
        out = console()
        if out.is_terminal:
            from rich.syntax import Syntax

            out.print(Syntax(emitted.source, "python", word_wrap=False))
        else:  # piped: the module exactly, so that `bnderive emit > bn.py` works
            click.echo(emitted.source, nl=False)
        return
    try:
        write_atomically(output, emitted.source)  # only now: verified, whole or not at all
    except OSError as exc:
        raise BnderiveError(f"Cannot write {output}: {exc.strerror}.") from None
    checks = "; ".join(emitted.verification.checks)
    console(stderr=True).print(
        f"[green]✓[/] wrote {escape(output)}: {escape(form.name)}, {escape(mode)}, {target} "
        f"(verified in a separate process: {escape(checks)})"
    )


# -- bench ----------------------------------------------------------------------------------------
@click.command()
@click.option(
    "--shape",
    "shapes",
    multiple=True,
    metavar="N,C,H,W|N,D",
    help="A shape to time (repeatable). Default: 32,64,56,56; 256,256,14,14; 4096,1024.",
)
@click.option(
    "--dtype",
    type=click.Choice(["float32", "float64"]),
    default="float32",
    show_default=True,
    help="The dtype of x, dout and γ.",
)
@click.option(
    "--repeats",
    type=click.IntRange(min=1),
    default=25,
    show_default=True,
    help="Timing rounds; each round runs every candidate once, in a rotating order.",
)
@click.option(
    "--torch-threads",
    type=click.IntRange(min=1),
    default=None,
    help="PyTorch's intra-op threads in its child process (default: PyTorch's own choice).",
)
@user_errors
def bench(shapes: tuple[str, ...], dtype: str, repeats: int, torch_threads: int | None) -> None:
    r"""Time the emitted backward against hand NumPy, numba, PyTorch and the memory bound.

    Interleaved round by round: the emitted NumPy module (compact and staged forms), the
    staged and compact hand forms, the best hand NumPy, the emitted numba kernel (when numba is
    installed), PyTorch CPU's native_batch_norm_backward (when installed; in a child process
    with its own thread pool, one call per round, so that it never shares the cores with
    numba's pool) and a preallocated copy, from which the 3-pass bound (read dout, read x,
    write dx) is taken.
    Prints medians with ratios to the bound and to PyTorch. Outputs are not preallocated:
    every candidate allocates dx as a framework call would, and the allocator's page-fault tax
    is measured and printed.

    \b
    Examples:
      bnderive bench
      bnderive bench --shape 8,16,16,16 --shape 512,256 --repeats 5
      bnderive bench --dtype float64 --torch-threads 1

    Exit codes: 0 timed, 1 a candidate's gradient is wrong (relative error ≥ 1e-2), 2 bad input.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from bnderive.emit import bench as benchmod

    sizes = [benchmod.parse_bench_shape(s) for s in shapes] or list(benchmod.DEFAULT_SHAPES)
    _check_bench(sizes, repeats, torch_threads)
    out = console()
    err = console(stderr=True)
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} rounds"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
    with progress:

        def tick_for(shape: tuple[int, ...]) -> Callable[[], None]:
            task = progress.add_task(f"timing {shape}", total=repeats)
            return lambda: progress.advance(task)

        results = benchmod.bench(sizes, dtype, repeats, tick_for, torch_threads=torch_threads)
    for result in results:
        torch_s = result.seconds(benchmod.TORCH)
        table = Table(
            title=f"{result.mode.value} {result.shape} {dtype} ({result.mib:.1f} MiB per array), "
            f"{result.rounds} rounds, medians",
            title_justify="left",
        )
        table.add_column("candidate")
        table.add_column("ms", justify="right")
        table.add_column("× bound", justify="right")
        table.add_column("× PyTorch", justify="right")
        table.add_column("dx err", justify="right")
        table.add_column("dγ err", justify="right")
        for row in result.rows:
            table.add_row(
                escape(row.name),
                f"{row.seconds * 1e3:.3f}",
                f"{row.seconds / result.bound:.2f}",
                f"{row.seconds / torch_s:.2f}" if torch_s else "-",
                f"{row.dx_error:.1e}",
                f"{row.dgamma_error:.1e}",
                style=None if row.ok else "bold red",
            )
        table.add_row(
            "3-pass bound",
            f"{result.bound * 1e3:.3f}",
            "1.00",
            f"{result.bound / torch_s:.2f}" if torch_s else "-",
            "",
            "",
            style="dim",
        )
        out.print(table)
        out.print(
            f"outputs are not preallocated: every candidate allocates dx (and its temporaries) "
            f"on each call; a fresh {result.mib:.1f} MiB array costs "
            f"{result.allocator_tax * 1e3:.3f} ms more than a preallocated one (page faults)."
        )
        for note in result.notes:
            out.print(f"[dim]note: {escape(note)}[/]")
    if not all(r.ok for r in results):
        click.echo("Error: a candidate's dx or dγ is wrong (relative error ≥ 1e-2).", err=True)
        sys.exit(EXIT_REFUTED)


def _check_bench(sizes: list[tuple[int, ...]], repeats: int, torch_threads: int | None) -> None:
    """The caps of ``core/limits.py``, before any array is allocated."""
    import math

    from bnderive.core.limits import BENCH_ELEMENTS, BENCH_REPEATS, SIZE, TORCH_THREADS

    for shape in sizes:
        for size in shape:
            SIZE.check(size, f"{size:,} in the shape {shape}")
        elements = math.prod(shape)
        BENCH_ELEMENTS.check(elements, f"{elements:,} for {shape}")
    BENCH_REPEATS.check(repeats)
    if torch_threads is not None:
        TORCH_THREADS.check(torch_threads)
