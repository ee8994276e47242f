"""The command line: click commands over the library, rich for output, no mathematics here."""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import __version__
from .display import derivation_view, latex, unicode
from .errors import BnderiveError
from .forms import Form, builtin_forms, find_form, load_form
from .general import general_check
from .plan import Plan, default_jobs
from .spec import Mode, Spec
from .verify import Status, Verdict, exit_code, parse_shape, parse_sizes

EXIT_USAGE = 2

_STATUS_STYLE = {
    Status.HOLDS: ("✓ holds", "green"),
    Status.REFUTED: ("✗ refuted", "bold red"),
    Status.UNDECIDED: ("? undecided", "yellow"),
    Status.UNCHECKED: ("· not checked", "dim"),
}


def _console(stderr: bool = False) -> Console:
    width = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "120"))
    # soft_wrap: long lines (counterexamples, formulas) stay whole, so they can be copied.
    return Console(stderr=stderr, width=width, highlight=False, soft_wrap=True)


def _document() -> Any:
    """The LaTeX document reader, imported when used: building its grammar costs start-up time
    every other command would pay."""
    from . import document

    return document


def user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Bad input is one paragraph on stderr and exit code 2, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except BnderiveError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(EXIT_USAGE)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bnderive")
def main() -> None:
    """Prove or refute derivations of the Batch Normalization backward pass, exactly.

    \b
    Examples:
      bnderive check                       prove the published closed forms
      bnderive derive --n 2                the ground truth, stage by stage
      bnderive forms                       the known forms and their sources
      bnderive check my_post.md            a LaTeX derivation, line by line
      bnderive check-impl layers.py        a NumPy implementation (CS231n API)
      bnderive mutants                     the known mistakes bnderive names
      bnderive explain --n 2 --loss mean   why a gradient test can lie
      bnderive emit -o bn.py               proven, fast NumPy code

    Exit codes: 0 everything checked holds, 1 something is refuted, 2 bad input or usage,
    3 undecided.
    """


# -- check ----------------------------------------------------------------------------------------
@main.command()
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
    chosen = [find_form(name) for name in forms] + [
        _document().load_document(path) if _document().is_document(path) else load_form(path)
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
    err = _console(stderr=True)
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
            "status": _summary_status(verdicts).value,
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
    out = _console()
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
        notes = _document().line_notes(form, [n for n in refuted if n is not None], steps)
        for k, note in enumerate(notes):
            out.print(f"\n[bold]{escape(note)}[/]" if k == 0 else escape(note))
    out.print(_summary(verdicts, chosen, elapsed if not no_timing else None))
    sys.exit(code)


def _summary_status(verdicts: Sequence[Verdict]) -> Status:
    return {0: Status.HOLDS, 1: Status.REFUTED, 3: Status.UNDECIDED}[exit_code(verdicts)]


def _verdict_table(verdicts: Sequence[Verdict], timing: bool) -> Table:
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for column in ("form", "line", "quantity", "mode", "method", "verdict"):
        table.add_column(column, no_wrap=True)
    if timing:
        table.add_column("time", justify="right", no_wrap=True)
    for v in verdicts:
        text, style = _STATUS_STYLE[v.status]
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
    from .diagnose import diagnose_line  # builds the corpus: only when something is refuted

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
    counts = {s: sum(1 for v in verdicts if v.status is s) for s in Status}
    parts = [f"{counts[Status.HOLDS]} hold"]
    if counts[Status.REFUTED]:
        parts.append(f"{counts[Status.REFUTED]} refuted")
    if counts[Status.UNDECIDED]:
        parts.append(f"{counts[Status.UNDECIDED]} undecided")
    if counts[Status.UNCHECKED]:
        parts.append(f"{counts[Status.UNCHECKED]} not checked")
    status = _summary_status(verdicts)
    text, style = _STATUS_STYLE[status]
    took = f" in {elapsed:.1f} s" if elapsed is not None else ""
    names = ", ".join(f.name for f in forms)
    return (
        f"\n[{style}]{text}[/]: {len(forms)} form(s) ({escape(names)}), {', '.join(parts)}{took}."
    )


# -- derive ---------------------------------------------------------------------------------------
@main.command()
@click.option(
    "--mode",
    type=click.Choice(["per-activation", "spatial"]),
    default="per-activation",
    show_default=True,
    help="PER_ACTIVATION (N,D) or SPATIAL (N,C,H,W).",
)
@click.option("--n", "n", default=2, show_default=True, type=int, help="Batch size N.")
@click.option("--c", "c", default=1, show_default=True, type=int, help="Features D or channels C.")
@click.option("--d", "d", default=None, type=int, help="Features D (PER_ACTIVATION; same as --c).")
@click.option("--h", "h", default=None, type=int, help="Height H (SPATIAL; default 2).")
@click.option("--w", "w", default=None, type=int, help="Width W (SPATIAL; default 2).")
@click.option("--eval", "eval_mode", is_flag=True, help="Eval mode: running statistics.")
@click.option("--unbiased", is_flag=True, help="Bessel-corrected variance 1/(M−1) in the forward.")
@click.option("--eps-outside", is_flag=True, help="Normalize by √σ² + ε instead of √(σ²+ε).")
@click.option("--latex", "as_latex", is_flag=True, help="Print LaTeX (an align* block).")
@click.option(
    "--general",
    is_flag=True,
    help="For every M: index notation only, then Thorey's Kronecker chain, each step proved.",
)
@user_errors
def derive(
    mode: str,
    n: int,
    c: int,
    d: int | None,
    h: int | None,
    w: int | None,
    eval_mode: bool,
    unbiased: bool,
    eps_outside: bool,
    as_latex: bool,
    general: bool,
) -> None:
    """Print the ground truth: each forward stage and its adjoint, stage by stage.

    Each line shows the definition in index notation (any M) and, after "→", its value for
    channel 0 of the given sizes; adjoints list one chain-rule path per stage that consumes
    the node, and later adjoints refer to earlier ones by name, as a staged derivation does.

    \b
    Examples:
      bnderive derive --n 2
      bnderive derive --mode spatial --n 2 --h 2 --w 2
      bnderive derive --eval --latex
      bnderive derive --general
    """
    spatial = mode == "spatial"
    if not spatial and (h not in (None, 1) or w not in (None, 1)):
        raise BnderiveError(
            "--h and --w belong to SPATIAL (N,C,H,W) input: add --mode spatial, or leave them out."
        )
    spec = Spec(
        Mode.parse(mode),
        n=n,
        c=d if d is not None else c,
        h=(h if h is not None else 2) if spatial else 1,
        w=(w if w is not None else 2) if spatial else 1,
        training=not eval_mode,
        unbiased=unbiased,
        eps_inside=not eps_outside,
    )
    if general:
        _derive_general(spec, as_latex)
        return
    steps = derivation_view(spec)
    if as_latex:
        click.echo(_derive_latex(spec, steps))
        return
    out = _console()
    out.print(f"[bold]BatchNorm, {escape(spec.describe())}[/]")
    if spec.c > 1:
        out.print(
            f"[dim]Channel 0 shown; the other {spec.c - 1} are the same in their own symbols.[/]"
        )
    layout = "x₀₁₂₃ is x[n=0, c=1, h=2, w=3]" if spatial else "x₀₁ is x[n=0, d=1]"
    out.print(
        f"[dim]Symbols: {escape(layout)}. In index notation x_k is element k of one reduction set "
        "and Σₖ runs over k = 1..M.[/]"
    )
    _print_steps(out, steps, ("Forward graph", "Backward: ∂L/∂(each stage)"), instances=True)


def _print_steps(
    out: Console, steps: Sequence[Any], titles: tuple[str, str], instances: bool
) -> None:
    """Each stage and adjoint in index notation, its chain-rule paths, and its instance."""
    for kind, title in zip(("forward", "backward"), titles, strict=True):
        out.print(f"\n[bold underline]{title}[/]")
        for step in (s for s in steps if s.kind == kind):
            out.print(
                f"[bold cyan]{escape(unicode(step.lhs))}[/] = {escape(unicode(step.general))}"
                + (f"   [dim]# {escape(step.meaning)}[/]" if step.meaning else "")
            )
            if len(step.paths) > 1:
                for via, expr in step.paths:
                    out.print(
                        f"    [dim]via {escape(_stage_word(via))}:[/] {escape(unicode(expr))}"
                    )
            if instances:
                out.print(f"    → {escape(unicode(step.instance))}")


CHAIN = "kronecker-chain"


def _derive_general(spec: Spec, as_latex: bool) -> None:
    steps = derivation_view(spec, instantiate=False)
    chain = find_form(CHAIN) if spec.training and not spec.unbiased and spec.eps_inside else None
    verdicts = {v.equation: v for v in general_check(chain)} if chain else {}
    if as_latex:
        lines = [f"% bnderive {__version__}: every M, {_conventions_of(spec)}", r"\begin{align*}"]
        lines += [f"  {latex(s.lhs)} &= {latex(s.general)} \\\\" for s in steps]
        if chain:
            for eq in chain.equations:
                lines.append(
                    f"  % line {eq.number}: {verdicts[eq.number].status.value} for every M"
                )
                lines.append(f"  {latex(sp_reference(eq))} &= {latex(eq.expr)} \\\\")
        lines[-1] = lines[-1].removesuffix(" \\\\")
        lines.append(r"\end{align*}")
        click.echo("\n".join(lines))
        return
    out = _console()
    out.print(f"[bold]BatchNorm for every M ({escape(_conventions_of(spec))})[/]")
    out.print("[dim]One reduction set: x_k, k = 1..M, Σₖ over the set; i is any one element.[/]")
    _print_steps(out, steps, ("Forward graph", "Backward by the chain rule"), instances=False)
    if not chain:
        out.print("\n[dim]The Kronecker chain is written for the default conventions.[/]")
        return
    out.print(f"\n[bold underline]{escape(chain.title)}[/]")
    out.print(f"[dim]{escape(chain.sources[0])}[/]")
    for eq in chain.equations:
        verdict = verdicts[eq.number]
        text, style = _STATUS_STYLE[verdict.status]
        out.print(f"\n[bold]{eq.number}.[/] ∂L/∂xᵢ = {escape(unicode(eq.expr))}")
        if eq.latex:
            out.print(f"   [dim]as published: {escape(eq.latex)}[/]")
        out.print(
            f"   [{style}]{text} for every M[/]"
            + (f": {escape(verdict.residual)}" if verdict.residual else "")
        )


def sp_reference(eq: Any) -> Any:
    from .notation import reference

    return reference(eq.name, eq.index)


def _conventions_of(spec: Spec) -> str:
    return ", ".join(
        [
            "training" if spec.training else "eval",
            "Bessel variance" if spec.unbiased else "biased variance",
            "ε inside √" if spec.eps_inside else "ε outside √",
        ]
    )


def _stage_word(name: str) -> str:
    return {"xhat": "x̂", "var": "σ²", "mu": "μ", "y": "y", "L": "L"}.get(name, name)


def _derive_latex(spec: Spec, steps: Sequence[Any]) -> str:
    lines = [f"% bnderive {__version__}: {spec.describe()}", r"\begin{align*}"]
    for step in steps:
        lines.append(f"  {latex(step.lhs)} &= {latex(step.general)} \\\\")
        lines.append(f"  &= {latex(step.instance)} \\\\")
    lines[-1] = lines[-1].removesuffix(" \\\\")
    lines.append(r"\end{align*}")
    return "\n".join(lines)


# -- forms ----------------------------------------------------------------------------------------
EXAMPLE_FORM = """\
# A derivation as bnderive reads it: check it with `bnderive check --form FILE`.
name = "my-derivation"
title = "My derivation of the BatchNorm backward pass"
sources = ["Where it comes from: author, title, URL"]

[conventions]          # the defaults; change what your derivation assumes
variance = "biased"    # or "unbiased" (1/(M-1) in the forward)
epsilon = "inside"     # or "outside": x̂ = (x-μ)/(√σ² + ε)
training = true        # false: eval mode (μ, σ² are running statistics)

# One table per line of the derivation, in order. `defines` is the quantity:
# dxhat[i], dvar, dmu, dx[i], dgamma, dbeta (checked against the truth), or a
# name of your own (a helper, used by later lines, not checked).
# `expr` uses x[k], g[k] (= dL/dy_k), xhat[k], mu, var, eps, gamma, M,
# sum(f, k) for the sum over the reduction set, delta(i, k), sqrt, **.

[[equations]]
defines = "dbeta"
latex = '\\frac{\\partial L}{\\partial \\beta} = \\sum_i \\frac{\\partial L}{\\partial y_i}'
expr = "sum(g[k], k)"

[[equations]]
defines = "dgamma"
latex = '\\frac{\\partial L}{\\partial \\gamma} = \\sum_i \\frac{\\partial L}{\\partial y_i} \\hat{x}_i'
expr = "sum(g[k]*xhat[k], k)"

[[equations]]
defines = "dx[i]"
latex = '\\frac{\\partial L}{\\partial x_i} = \\frac{\\gamma}{\\sqrt{\\sigma^2+\\epsilon}}\\left(g_i - \\frac{\\delta\\beta + \\hat{x}_i \\delta\\gamma}{M}\\right)'
expr = "gamma/sqrt(var + eps) * (g[i] - (dbeta + xhat[i]*dgamma)/M)"
"""


@main.command()
@click.argument("name", required=False)
@click.option("--example", is_flag=True, help="Print a template form file to start from.")
@user_errors
def forms(name: str | None, example: bool) -> None:
    """List the known forms with their sources, or show one form's equations.

    \b
    Examples:
      bnderive forms
      bnderive forms staged
      bnderive forms --example > mine.toml
    """
    if example:
        click.echo(EXAMPLE_FORM, nl=False)
        return
    out = _console()
    if name:
        form = find_form(name)
        out.print(f"[bold]{escape(form.name)}[/]: {escape(form.title)}")
        out.print(escape(_conventions(form)))
        if form.description:
            out.print(escape(form.description))
        for source in form.sources:
            out.print(f"  [dim]source:[/] {escape(source)}")
        for eq in form.equations:
            out.print(
                f"\n[bold cyan]{eq.number}. {escape(eq.label)}[/] = {escape(unicode(eq.expr))}"
            )
            if eq.latex:
                out.print(f"   [dim]{escape(eq.latex)}[/]")
        return
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("form", no_wrap=True)
    table.add_column("title")
    table.add_column("lines", justify="right")
    table.add_column("conventions")
    table.add_column("sources")
    for form in builtin_forms():
        table.add_row(
            form.name,
            escape(form.title),
            str(len(form.equations)),
            escape(_conventions(form)),
            escape("; ".join(s.split(",")[0] for s in form.sources)),
        )
    out.print(table)


@main.command()
@click.argument("name", required=False)
@click.option("--rewrites", is_flag=True, help="List the equivalent rewrites instead.")
@user_errors
def mutants(name: str | None, rewrites: bool) -> None:
    """List the corpus of known mistakes, or show one mistake and its mutants.

    Each mistake (σ for σ², the path through μ dropped, γ missing, …) is put into correct
    built-in forms as *mutants*; `bnderive check` refutes every one of them and, when a line of
    yours is refuted, names the mistake whose result equals yours. A mutant or rewrite is a form
    like any other: `bnderive check compact/gamma-missing`, `bnderive forms caffe`.

    \b
    Examples:
      bnderive mutants
      bnderive mutants sigma-for-variance
      bnderive mutants --rewrites
      bnderive check staged/half-lost --method exact
    """
    from .corpus import corpus

    book = corpus()
    out = _console()
    if rewrites:
        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        table.add_column("rewrite", no_wrap=True)
        table.add_column("why it is right")
        for r in book.rewrites:
            table.add_row(r.name, escape(r.explanation))
        out.print(table)
        out.print(f"\n{len(book.rewrites)} rewrites; each holds under `bnderive check`.")
        return
    if name:
        try:
            mistake = book.mistake(name)
        except KeyError:
            names = ", ".join(m.name for m in book.mistakes)
            raise BnderiveError(
                f"No mistake named {name!r} in the corpus; the mistakes are: {names}."
            ) from None
        out.print(f"[bold]{escape(mistake.name)}[/]: {escape(mistake.title)}")
        out.print(f"  what is wrong: {escape(mistake.explanation)}")
        out.print(f"  what is right: {escape(mistake.fix)}")
        for source in mistake.sources:
            out.print(f"  [dim]source:[/] {escape(source)}")
        for mutant in (m for m in book.mutants if m.mistake is mistake):
            out.print(f"\n[bold cyan]{escape(mutant.id)}[/]")
            if mutant.note:
                out.print(f"  {escape(mutant.note)}")
            for eq in mutant.form.equations:
                if eq.number in mutant.edited:
                    out.print(
                        f"  line {eq.number}: {escape(eq.label)} = {escape(unicode(eq.expr))}"
                    )
            if not mutant.edited:
                out.print(f"  declared {escape(_conventions(mutant.form))}")
        return
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("mistake", no_wrap=True)
    table.add_column("title")
    table.add_column("mutants")
    for mistake in book.mistakes:
        ids = [  # the form each mutant was made from, with its variant
            m.base + (f"#{m.id.split('#')[1]}" if "#" in m.id else "")
            for m in book.mutants
            if m.mistake is mistake
        ]
        table.add_row(mistake.name, escape(mistake.title), escape(", ".join(ids) or "—"))
    out.print(table)
    out.print(
        f"\n{len(book.mistakes)} mistakes, {len(book.mutants)} mutants, "
        f"{len(book.rewrites)} rewrites (`bnderive mutants --rewrites`)."
    )


def _conventions(form: Form) -> str:
    return ", ".join(
        [
            "training" if form.training else "eval",
            "Bessel variance" if form.unbiased else "biased variance",
            "ε inside √" if form.eps_inside else "ε outside √",
        ]
    )


# -- check-impl -----------------------------------------------------------------------------------
@main.command("check-impl")
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
    default=20.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Seconds the file may run.",
)
@click.option(
    "--memory",
    "memory_mb",
    default=2048,
    show_default=True,
    type=click.IntRange(min=64),
    help="Address-space limit of the process running the file, in MiB.",
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
    timeout: float,
    memory_mb: int,
    as_json: bool,
) -> None:
    """Check a NumPy implementation of BatchNorm (forward output, running statistics, dx,
    dgamma, dbeta).

    The file runs in a separate process (with --timeout and --memory, in a temporary directory)
    on exact rational inputs: integer x with a large mean, uneven dout, gamma not 0 or ±1, and
    eps chosen so that sqrt(var + eps) is rational. Its results are compared with the ground
    truth exactly at N = 3, 4, 5 and (3,2) (PER_ACTIVATION) or (2,2,2,2) and (3,1,2,2) (SPATIAL).
    Where the code cannot run exactly (it converts to float, calls np.exp, ...), its float64
    results are compared within a relative tolerance of 1e-8 and the verdict says "numeric".

    The CS231n forward starts from non-zero running statistics in bn_param; in training mode
    their update is compared (exactly where the code allows) with the declared convention's
    (--running; auto names the one the code follows), in eval mode they must be unchanged. With --eval the backward is checked against the eval-mode
    gradient when the test-mode forward returns a cache (CS231n's returns None: its backward
    is for training only).

    \b
    Examples:
      bnderive check-impl layers.py
      bnderive check-impl layers.py --mode spatial
      bnderive check-impl layers.py --running pytorch
      bnderive check-impl layers.py --eval
      bnderive check-impl mybn.py --function bn_backward
      bnderive check-impl mybn.py --function bn_backward_eval --eval --json

    Exit codes: 0 all hold, 1 something refuted, 2 the file could not be run or returned
    something unusable, 3 undecided.
    """
    from .impl import check_impl as run_check

    report = run_check(
        file,
        api=api,
        function=function,
        mode=Mode.parse(mode),
        training=not eval_mode,
        timeout=timeout,
        memory=memory_mb * 1024 * 1024,
        running=running,
    )
    code = exit_code(report.verdicts)
    if as_json:
        payload = {"status": _summary_status(report.verdicts).value, "exit_code": code}
        payload.update(report.to_dict())
        click.echo(json.dumps(payload, indent=2, ensure_ascii=False))
        sys.exit(code)
    out = _console()
    out.print(
        f"[bold]{escape(report.file)}[/]: {report.api} API, {escape(', '.join(report.functions))}"
    )
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for column in ("function", "quantity", "mode", "method", "verdict"):
        table.add_column(column, no_wrap=True)
    for v in report.verdicts:
        text, style = _STATUS_STYLE[v.status]
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
    status = _summary_status(report.verdicts)
    text, style = _STATUS_STYLE[status]
    counts = {s: sum(1 for v in report.verdicts if v.status is s) for s in Status}
    parts = [f"{counts[Status.HOLDS]} hold"] + [
        f"{counts[s]} {s.value}" for s in (Status.REFUTED, Status.UNDECIDED) if counts[s]
    ]
    out.print(f"\n[{style}]{text}[/]: {', '.join(parts)} in {report.seconds:.1f} s.")
    sys.exit(code)


# -- parse ----------------------------------------------------------------------------------------
@main.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option(
    "--expr", "expr_text", metavar="LATEX", help="Read one LaTeX expression instead of a file."
)
@click.option(
    "--sigma",
    type=click.Choice(["std", "var"]),
    default=None,
    help="With --expr: what a bare σ means (a file declares it in its front matter).",
)
@click.option(
    "--spatial", is_flag=True, help="With --expr: SPATIAL mode, where a lone N is refused."
)
@user_errors
def parse(file: str | None, expr_text: str | None, sigma: str | None, spatial: bool) -> None:
    """Show how bnderive reads a LaTeX derivation (.md or .tex), line by line.

    For every line of the file's align/equation blocks: where it is, the LaTeX, the expression
    bnderive read (Unicode) and the same rendered back to LaTeX, and the quantity it defines
    (checked by `bnderive check FILE`) or why it is not checked. Nothing is checked here; a line
    bnderive cannot read is an error with its line and column (exit code 2).

    \b
    Examples:
      bnderive parse derivation.md
      bnderive parse notes.tex
      bnderive parse --expr '\frac{\\partial L}{\\partial x_i}'
      bnderive parse --expr '\\sum_{n,h,w} \\delta y[n][c][h][w]' --spatial
    """
    from .latex import parse_latex
    from .notation import reference

    out = _console()
    if (file is None) == (expr_text is None):
        raise BnderiveError("Give a FILE (.md or .tex) or --expr LATEX, not both or neither.")
    if expr_text is not None:
        expr = parse_latex(expr_text, sigma=sigma, spatial=spatial)
        out.print(f"[bold]SymPy:[/] {escape(unicode(expr))}")
        out.print(f"[bold]LaTeX:[/] {escape(latex(expr))}")
        out.print(f"[dim]srepr: {escape(str(expr))}[/]")
        return
    if sigma or spatial:
        raise BnderiveError(
            "--sigma and --spatial belong to --expr; a file declares them in its front matter "
            "(sigma: std, mode: spatial)."
        )
    assert file is not None
    document = _document()
    if not document.is_document(file):
        raise BnderiveError(f"{file}: expected a .md or .tex derivation (a form file is TOML).")
    form = document.load_document(file)
    out.print(f"[bold]{escape(form.name)}[/]: {escape(form.title)}")
    modes = ", ".join(m.value for m in form.modes)
    out.print(escape(f"{_conventions(form)}; modes: {modes}"))
    for source in form.sources:
        out.print(f"  [dim]source:[/] {escape(source)}")
    for line in form.lines:
        out.print(
            f"\n[bold]line {line.line}[/] [dim](column {line.column})[/]  {escape(line.latex)}"
        )
        read = line.read
        if read is not None:
            lhs = read.lhs
            if read.defines is not None and read.lhs is not None:
                lhs = reference(read.defines, read.index)
            shown = [lhs, *read.rhs]
            text = " = ".join("…" if s is None else unicode(s) for s in shown)
            tex = " = ".join("…" if s is None else latex(s) for s in shown)
            if lhs is None and read.lhs is None and line.latex.lstrip().startswith(("=", "&")):
                text, tex = text.removeprefix("… "), tex.removeprefix("… ")
            out.print(f"  [cyan]read:[/]  {escape(text)}")
            out.print(f"  [cyan]LaTeX:[/] {escape(tex)}")
        if line.checked:
            numbers = ", ".join(str(n) for n in line.equations)
            out.print(f"  [green]defines {escape(line.defines)}[/] (equation {numbers})")
        else:
            out.print(f"  [dim]· not checked: {escape(line.reason)}[/]")
    checked = sum(1 for line in form.lines if line.checked)
    out.print(
        f"\n{len(form.lines)} line(s): {checked} define a checked quantity "
        f"({len(form.equations)} equation(s)), {len(form.lines) - checked} not checked. "
        f"Check them with: bnderive check {escape(file)}"
    )


# -- emit -----------------------------------------------------------------------------------------
EXIT_REFUTED = 1


@main.command()
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
    """Write a proven form as a NumPy module, verified before it is written.

    The module has forward(x, gamma, beta, eps) -> (out, cache), backward(dout, x, gamma, eps)
    -> (dx, dgamma, dbeta) and backward_cached(dout, cache, gamma). Reductions run over the
    batch axes (and H, W in SPATIAL mode); dx is computed as c1·dout + c2·(x − μ) + c3 with
    per-channel coefficients; float32 input stays float32. Before anything is printed or
    written, the module is imported and compared with the ground truth, exactly (rational
    arithmetic) and in float64 at adversarial inputs; a disagreement exits 1 and writes nothing.

    \b
    Examples:
      bnderive emit                                   compact form, PER_ACTIVATION, on screen
      bnderive emit --form staged --mode spatial -o bn_staged.py
      bnderive emit --form my_derivation.toml > bn.py
      bnderive emit --target numba --mode spatial -o bn_numba.py

    Exit codes: 0 written, 1 the code (or the form) disagrees with the truth, 2 bad input.
    """
    from .emit import EmitVerificationError
    from .emit import emit as emit_module

    form = find_form(form_name)
    try:
        emitted = emit_module(form, Mode.parse(mode), __version__, target=target)
    except EmitVerificationError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_REFUTED)
    if output is None:
        out = _console()
        if out.is_terminal:
            from rich.syntax import Syntax

            out.print(Syntax(emitted.source, "python", word_wrap=False))
        else:  # piped: the module exactly, so that `bnderive emit > bn.py` works
            click.echo(emitted.source, nl=False)
        return
    try:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(emitted.source)
    except OSError as exc:
        raise BnderiveError(f"Cannot write {output}: {exc.strerror}.") from None
    checks = "; ".join(emitted.verification.checks)
    _console(stderr=True).print(
        f"[green]✓[/] wrote {escape(output)}: {escape(form.name)}, {escape(mode)}, {target} "
        f"(verified: {escape(checks)})"
    )


# -- bench ----------------------------------------------------------------------------------------
@main.command()
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
    """Time the emitted backward against hand NumPy, numba, PyTorch and the memory bound.

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
    from . import bench as benchmod

    sizes = [benchmod.parse_bench_shape(s) for s in shapes] or list(benchmod.DEFAULT_SHAPES)
    out = _console()
    err = _console(stderr=True)
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


# -- explain --------------------------------------------------------------------------------------
@main.command()
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
    """Explain why a gradient test of BatchNorm can lie: what in its setup hides mistakes.

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
      bnderive explain layers.py --against torch --n 2 --loss mean --reference eval
      bnderive explain mine.py --against theirs.py --loss random --json

    Exit codes: 0 no weakness found, 1 a weakness found (the test can lie) or a difference the
    setup does not explain, 2 bad input.
    """
    from . import explain as explainer

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
    setup = explainer.Setup(
        n=n,
        features=c,
        mode=Mode.parse(mode),
        h=(h if h is not None else 2) if spatial else 1,
        w=(w if w is not None else 2) if spatial else 1,
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
        click.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
        sys.exit(result.exit_code)
    out = _console()
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
    sys.exit(result.exit_code)


if __name__ == "__main__":  # pragma: no cover
    main()
