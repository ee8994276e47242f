from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bnderive.cli.common import (
    EXIT_INTERNAL,
    EXIT_REFUTED,
    checked_groups,
    console,
    escape,
    norm_options,
    user_errors,
)
from bnderive.errors import BnderiveError

if TYPE_CHECKING:
    from rich.table import Table

# -- emit -----------------------------------------------------------------------------------------


#: The form each family emits when --form is not given.
DEFAULT_FORMS = {
    "batch": "compact",
    "layer": "layernorm-pytorch",
    "instance": "instancenorm-pytorch",
    "group": "groupnorm-pytorch",
    "rms": "rmsnorm-rstd",
}


@click.command()
@click.option(
    "--form",
    "form_name",
    default=None,
    metavar="NAME|FILE",
    help="The form to turn into code: a built-in name or a form file (TOML). Default: compact "
    "(BatchNorm), layernorm-pytorch, instancenorm-pytorch, groupnorm-pytorch, rmsnorm-rstd.",
)
@click.option(
    "--mode",
    type=click.Choice(["per-activation", "spatial"]),
    default=None,
    help="BatchNorm's layout: PER_ACTIVATION (N,D), axis 0 (the default); SPATIAL (N,C,H,W), "
    "axes (0,2,3). The other families' layouts follow from --norm.",
)
@norm_options
@click.option(
    "--target",
    type=click.Choice(["numpy", "numba"]),
    default="numpy",
    show_default=True,
    help="numpy: vectorized NumPy; numba: a fused two-pass parallel kernel (needs numba; "
    "BatchNorm only).",
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
def emit(
    form_name: str | None,
    mode: str | None,
    norm: str,
    groups: int | None,
    target: str,
    output: str | None,
) -> None:
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

    --norm emits BatchNorm's relatives from their published forms: layer (LayerNorm over the
    trailing axes γ has, any input rank), instance and group ((N, C, H, W) or (N, C, L) input;
    --groups G is built into the GroupNorm module) and rms (RMSNorm: forward(x, gamma, eps),
    backward -> (dx, dgamma), no β). Each is verified against the whole layer's truth, exactly
    and in float64, at several layouts. A form of the same per-set mathematics may be emitted
    for another family (compact as InstanceNorm, layernorm-pytorch as GroupNorm). --target
    numba writes BatchNorm's kernel only.

    \b
    Examples:
      bnderive emit                                   compact form, PER_ACTIVATION, on screen
      bnderive emit --form staged --mode spatial -o bn_staged.py
      bnderive emit --form kronecker > bn.py
      bnderive emit --target numba --mode spatial -o bn_numba.py
      bnderive emit --norm layer -o layernorm.py
      bnderive emit --norm rms --form rmsnorm-paper
      bnderive emit --norm group --groups 4 -o groupnorm.py

    Exit codes: 0 written, 1 the form is refuted (nothing written), 2 bad input, 4 bnderive
    failed (the emitted code disagrees with a form that holds: a bug to report).
    """
    from bnderive import __version__
    from bnderive.core.spec import Mode, Norm
    from bnderive.emit.emitter import check_output, write_atomically
    from bnderive.emit.emitter import emit as emit_module
    from bnderive.emit.family_module import Layout
    from bnderive.emit.numpy_module import EmitVerificationError

    g = checked_groups(norm, groups)
    explicit = click.get_current_context().get_parameter_source("norm") not in (
        None,
        click.core.ParameterSource.DEFAULT,
    )
    form = _chosen_form(form_name, Norm.parse(norm) if explicit else None)
    family = form.norm
    if family is not Norm.BATCH:
        _check_family_mode(family, mode)
    if output is not None:
        inputs = [p for p in (form_name, form.path) if p and Path(p).exists()]
        check_output(output, inputs)
    layout = None if family is Norm.BATCH else Layout(family, g)
    chosen_mode = Mode.parse(mode or "per-activation")
    try:
        emitted = emit_module(form, chosen_mode, __version__, target=target, layout=layout)
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
    if layout is None:
        what = f"{escape(chosen_mode.value)}"
    else:
        what = family.title + (f" (G = {g})" if family is Norm.GROUP else "")
    console(stderr=True).print(
        f"[green]✓[/] wrote {escape(output)}: {escape(form.name)}, {what}, {target} "
        f"(verified in a separate process: {escape(checks)})"
    )


def _chosen_form(form_name: str | None, expected: Any) -> Any:
    """The form --form names (the family's default without it), read as the family --norm
    gives: a form of the same per-set mathematics, or a usage error."""
    import dataclasses

    from bnderive.core.spec import Mode, Norm
    from bnderive.read.catalogue import find_form
    from bnderive.read.forms import load_form

    if form_name is None:
        form_name = DEFAULT_FORMS[(expected or Norm.BATCH).value]
    path = Path(form_name)
    if expected is not None and path.suffix.lower() == ".toml" and path.exists():
        return load_form(path, norm=expected)
    form = find_form(form_name)
    if expected is None or form.norm is expected:
        return form
    if form.norm.per_set != expected.per_set:
        kinds = {
            "batch": "one γ per set, centred",
            "layer": "γ per element, centred",
            "rms": "γ per element, no mean",
        }
        same = [
            Norm.parse(n).title
            for n in DEFAULT_FORMS
            if n != expected.value and Norm.parse(n).per_set == expected.per_set
        ]
        raise BnderiveError(
            f"{form.name} is a derivation for {form.norm.title} ({kinds[form.norm.per_set]}); "
            f"{expected.title} is {kinds[expected.per_set]}: emit it with --norm "
            f"{form.norm.value}, or give a form for {expected.title} (e.g. "
            f"{DEFAULT_FORMS[expected.value]}; `bnderive forms` lists them"
            + (f"; a {' or '.join(same)} form fits too, the same per set)." if same else ").")
        )
    modes = (Mode.SPATIAL,) if expected in (Norm.INSTANCE, Norm.GROUP) else form.modes
    return dataclasses.replace(form, norm=expected, modes=modes)


def _check_family_mode(family: Any, mode: str | None) -> None:
    """--mode is BatchNorm's; the relatives' layouts follow from the family."""
    from bnderive.core.spec import Norm

    if mode is None:
        return
    if family in (Norm.LAYER, Norm.RMS):
        raise BnderiveError(
            f"--mode chooses BatchNorm's reduction axes; the {family.title} module normalizes "
            "over the trailing axes γ has, for an input of any rank: leave --mode out."
        )
    if mode != "spatial":
        raise BnderiveError(
            f"{family.title} takes (N, C, H, W) input (its module views it as the sets it "
            "needs): leave --mode out, or give --mode spatial."
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
    from bnderive.emit import bench as benchmod

    sizes = [benchmod.parse_bench_shape(s) for s in shapes] or list(benchmod.DEFAULT_SHAPES)
    _check_bench(sizes, repeats, torch_threads)
    results = _bench_with_progress(sizes, dtype, repeats, torch_threads)
    out = console()
    for result in results:
        out.print(_bench_table(result, dtype))
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


def _bench_with_progress(
    sizes: list[tuple[int, ...]], dtype: str, repeats: int, torch_threads: int | None
) -> list[Any]:
    """``emit.bench.bench``, with a progress bar per shape on a terminal's stderr."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from bnderive.emit import bench as benchmod

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

        return benchmod.bench(sizes, dtype, repeats, tick_for, torch_threads=torch_threads)


def _bench_table(result: Any, dtype: str) -> Table:
    """One shape's candidates: median time, against the 3-pass memory bound and PyTorch, and
    each one's error in dx and dγ (a wrong one in red)."""
    from rich.table import Table

    from bnderive.emit import bench as benchmod

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
    return table


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
