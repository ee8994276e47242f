from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape

from bnderive.cli.common import STATUS_STYLE, console, user_errors
from bnderive.errors import BnderiveError

if TYPE_CHECKING:
    from rich.console import Console

    from bnderive.core.spec import Spec


# -- derive ---------------------------------------------------------------------------------------
@click.command()
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
    r"""Print the ground truth: each forward stage and its adjoint, stage by stage.

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
    from bnderive.core.printing import derivation_view
    from bnderive.core.spec import Mode, Spec

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
    out = console()
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
    from bnderive.core.printing import unicode

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
    from bnderive import __version__
    from bnderive.core.printing import derivation_view, latex, unicode
    from bnderive.read.catalogue import find_form
    from bnderive.verify.every_m import general_check

    steps = derivation_view(spec, instantiate=False)
    chain = find_form(CHAIN) if spec.training and not spec.unbiased and spec.eps_inside else None
    verdicts = {v.equation: v for v in general_check(chain)} if chain else {}
    if as_latex:
        lines = [f"% bnderive {__version__}: every M, {spec.conventions()}", r"\begin{align*}"]
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
    out = console()
    out.print(f"[bold]BatchNorm for every M ({escape(spec.conventions())})[/]")
    out.print("[dim]One reduction set: x_k, k = 1..M, Σₖ over the set; i is any one element.[/]")
    _print_steps(out, steps, ("Forward graph", "Backward by the chain rule"), instances=False)
    if not chain:
        out.print("\n[dim]The Kronecker chain is written for the default conventions.[/]")
        return
    out.print(f"\n[bold underline]{escape(chain.title)}[/]")
    out.print(f"[dim]{escape(chain.sources[0])}[/]")
    for eq in chain.equations:
        verdict = verdicts[eq.number]
        text, style = STATUS_STYLE[verdict.status.value]
        out.print(f"\n[bold]{eq.number}.[/] ∂L/∂xᵢ = {escape(unicode(eq.expr))}")
        if eq.latex:
            out.print(f"   [dim]as published: {escape(eq.latex)}[/]")
        out.print(
            f"   [{style}]{text} for every M[/]"
            + (f": {escape(verdict.residual)}" if verdict.residual else "")
        )


def sp_reference(eq: Any) -> Any:
    from bnderive.core.notation import reference

    return reference(eq.name, eq.index)


def _stage_word(name: str) -> str:
    return {"xhat": "x̂", "var": "σ²", "mu": "μ", "y": "y", "L": "L"}.get(name, name)


def _derive_latex(spec: Spec, steps: Sequence[Any]) -> str:
    from bnderive import __version__
    from bnderive.core.printing import latex

    lines = [f"% bnderive {__version__}: {spec.describe()}", r"\begin{align*}"]
    for step in steps:
        lines.append(f"  {latex(step.lhs)} &= {latex(step.general)} \\\\")
        lines.append(f"  &= {latex(step.instance)} \\\\")
    lines[-1] = lines[-1].removesuffix(" \\\\")
    lines.append(r"\end{align*}")
    return "\n".join(lines)
