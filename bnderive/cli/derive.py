from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from bnderive.cli.common import (
    STATUS_STYLE,
    checked_groups,
    console,
    escape,
    norm_options,
    user_errors,
)
from bnderive.errors import BnderiveError

if TYPE_CHECKING:
    from rich.console import Console

    from bnderive.core.spec import Spec


# -- derive ---------------------------------------------------------------------------------------
@click.command()
@click.option(
    "--mode",
    type=click.Choice(["per-activation", "spatial"]),
    default=None,
    help="PER_ACTIVATION (N,D) or SPATIAL (N,C,H,W) [default: per-activation; spatial for "
    "--norm instance and group].",
)
@click.option("--n", "n", default=2, show_default=True, type=int, help="Batch size N.")
@click.option(
    "--c",
    "c",
    default=None,
    type=int,
    help="Features D or channels C [default: 1; LayerNorm and RMSNorm on (N,D): 3; GroupNorm: 2·G].",
)
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
@norm_options
@click.option(
    "--last-axes",
    type=click.IntRange(min=1),
    default=None,
    metavar="K",
    help="LayerNorm, RMSNorm: normalize over the last K axes (default: all but the batch axis).",
)
@click.option(
    "--composite",
    type=click.Choice(["linear-bn-relu"]),
    default=None,
    help="A composite graph: linear-bn-relu is h = XW + b, BatchNorm, ReLU (dL/dW, dL/db, dL/dX).",
)
@user_errors
def derive(
    mode: str | None,
    n: int,
    c: int | None,
    d: int | None,
    h: int | None,
    w: int | None,
    eval_mode: bool,
    unbiased: bool,
    eps_outside: bool,
    as_latex: bool,
    general: bool,
    norm: str,
    groups: int | None,
    last_axes: int | None,
    composite: str | None,
) -> None:
    r"""Print the ground truth: each forward stage and its adjoint, stage by stage.

    Each line shows the definition in index notation (any M) and, after "→", its value for
    reduction set 0 of the given sizes (channel 0 for BatchNorm, sample 0 for LayerNorm);
    adjoints list one chain-rule path per stage that consumes the node, and later adjoints
    refer to earlier ones by name, as a staged derivation does. --norm chooses the family;
    its reduction sets and γ, β follow it (LayerNorm, GroupNorm and RMSNorm have one γᵢ per
    element of a set, so their ∂L/∂γᵢ is per element: this set's part of the sum). With
    --composite linear-bn-relu the Linear → BatchNorm → ReLU chain is derived instead: dL/dh
    through BatchNorm (Thorey's Kronecker derivation, each line proved for every M), dL/dW,
    dL/dX, and dL/db, which is exactly 0 in training mode (proved).

    \b
    Examples:
      bnderive derive --n 2
      bnderive derive --mode spatial --n 2 --h 2 --w 2
      bnderive derive --eval --latex
      bnderive derive --general
      bnderive derive --norm layer --n 2 --d 3
      bnderive derive --norm group --groups 2 --c 4 --n 1
      bnderive derive --norm rms --general
      bnderive derive --composite linear-bn-relu
    """
    from bnderive.core.spec import Norm

    family = Norm.parse(norm)
    g = checked_groups(norm, groups)
    if mode is None:
        mode = "spatial" if family in (Norm.INSTANCE, Norm.GROUP) else "per-activation"
    _check_sizes(mode, d, h, w)
    if composite:
        if family is not Norm.BATCH:
            raise BnderiveError("--composite linear-bn-relu has BatchNorm in it: leave --norm out.")
        _derive_composite(n, d if d is not None else (c or 2), eval_mode, as_latex)
        return
    if last_axes is not None and family not in (Norm.LAYER, Norm.RMS):
        raise BnderiveError(
            "--last-axes belongs to LayerNorm and RMSNorm: add --norm layer or rms."
        )
    spec = _spec(mode, n, d if d is not None else c, h, w, eval_mode, unbiased, eps_outside,
                 family, g, last_axes)  # fmt: skip
    if general:
        _derive_general(spec, as_latex)
    else:
        _derive_at_sizes(spec, as_latex)


def _check_sizes(mode: str, d: int | None, h: int | None, w: int | None) -> None:
    """Sizes that belong to the other layout, or given twice, are an error."""
    spatial = mode == "spatial"
    if not spatial and (h not in (None, 1) or w not in (None, 1)):
        raise BnderiveError(
            "--h and --w belong to SPATIAL (N,C,H,W) input: add --mode spatial, or leave them out."
        )
    if (
        d is not None
        and click.get_current_context().get_parameter_source("c").name == "COMMANDLINE"
    ):
        raise BnderiveError("--c and --d both set the number of features: give one of them.")
    if d is not None and spatial:
        raise BnderiveError(
            "--d is the number of features of PER_ACTIVATION (N,D) input; SPATIAL input has "
            "channels: use --c."
        )


def _spec(
    mode: str,
    n: int,
    c: int | None,
    h: int | None,
    w: int | None,
    eval_mode: bool,
    unbiased: bool,
    eps_outside: bool,
    family: Any,
    groups: int,
    last_axes: int | None,
) -> Spec:
    """The layer the options describe, with ``layer_sizes``'s defaults for what is left out."""
    from bnderive.core.spec import Mode, Spec, layer_sizes

    channels, height, width = layer_sizes(mode == "spatial", c, h, w, family, groups)
    return Spec(
        Mode.parse(mode),
        n=n,
        c=channels,
        h=height,
        w=width,
        training=not eval_mode,
        unbiased=unbiased,
        eps_inside=not eps_outside,
        norm=family,
        groups=groups,
        last_axes=last_axes,
    )


def _derive_at_sizes(spec: Spec, as_latex: bool) -> None:
    """Each stage and adjoint in index notation and its value for reduction set 0."""
    from bnderive.core.limits import DERIVE_M
    from bnderive.core.printing import derivation_view
    from bnderive.core.spec import Mode, Norm

    DERIVE_M.check(spec.m, f"{spec.m:,} ({spec.mode.value} {spec.shape})")
    steps = derivation_view(spec)
    if as_latex:
        from bnderive import __version__
        from bnderive.core.align import align_latex, derivation_align

        title = f"bnderive {__version__}: {spec.describe()}"
        click.echo(align_latex(derivation_align(title, steps)))
        return
    out = console()
    out.print(f"[bold]{spec.norm.title}, {escape(spec.describe())}[/]")
    if spec.norm is not Norm.BATCH:
        out.print(f"[dim]{escape(_family_sets(spec))}[/]")
    elif spec.c > 1:
        out.print(
            f"[dim]Channel 0 shown; the other {spec.c - 1} are the same in their own symbols.[/]"
        )
    spatial = spec.mode is Mode.SPATIAL
    layout = "x₀₁₂₃ is x[n=0, c=1, h=2, w=3]" if spatial else "x₀₁ is x[n=0, d=1]"
    out.print(
        f"[dim]Symbols: {escape(layout)}. In index notation x_k is element k of one reduction set "
        "and Σₖ runs over k = 1..M.[/]"
    )
    _print_steps(out, steps, ("Forward graph", "Backward: ∂L/∂(each stage)"), instances=True)


def _derive_composite(n: int, d: int, eval_mode: bool, as_latex: bool) -> None:
    """Linear → BatchNorm → ReLU: the chain, Thorey's Kronecker derivation of ∂L/∂h checked line
    by line for every M, the facts about the bias proved for every M, and an exact instance."""
    from bnderive import __version__
    from bnderive.core.composite import bias_sum, chain, example_instance

    if eval_mode:
        raise BnderiveError(
            "--composite linear-bn-relu derives the training-mode layer (batch statistics); "
            "leave --eval out. (In eval mode ∂L/∂b = γ·Σ g/√(running σ²+ε) is not zero.)"
        )
    from bnderive.verify.chain import prove_chain
    from bnderive.verify.composite import bias_cancels, bias_gradient

    steps = chain()
    values = example_instance(n, d)  # before anything is printed: sizes it cannot take are errors
    proof = prove_chain()
    facts = [*bias_cancels(), bias_gradient(training=True)]
    if as_latex:
        import sympy as sp

        from bnderive.core.align import align_latex, chain_align

        rows = [(lhs, rhs) for _, lhs, rhs, _ in steps] + [(bias_sum(), sp.Integer(0))]
        title = f"bnderive {__version__}: Linear → BatchNorm → ReLU, every M"
        click.echo(align_latex(chain_align(title, rows)))
    else:
        out = console()
        out.print("[bold]Linear → BatchNorm → ReLU for every batch size (training mode)[/]")
        out.print(
            "[dim]Feature j of h = XW + b is one BatchNorm reduction set: k, i run over the N "
            "samples (M = N), p over the inputs.[/]"
        )
        _print_chain(out, steps, proof)
        _print_bias(out, facts)
        _print_composite_instance(out, n, d, values)
    _exit_unless_proved(proof, facts)


def _exit_unless_proved(proof: Any, facts: Sequence[Any]) -> None:
    """The composite's output claims every line of the chain and every fact about b for every
    M: exit 1 when a line is refuted, 3 when a line or a fact is not proved (the every-M engine
    cannot refute a fact: its leftover may hide a zero), saying which on stderr."""
    from bnderive.cli.common import EXIT_REFUTED, EXIT_UNDECIDED
    from bnderive.verify.verdict import Status

    refuted = [n for n, v in proof.verdicts.items() if v.status is Status.REFUTED]
    open_lines = [n for n, v in proof.verdicts.items() if v.status is not Status.HOLDS]
    open_facts = [f.name for f in facts if not f.holds]
    if not open_lines and not open_facts:
        return
    parts = []
    if open_lines:
        lines = ", ".join(str(n) for n in sorted(open_lines))
        parts.append(
            f"line(s) {lines} of {proof.form.name} " + ("refuted" if refuted else "not proved")
        )
    if open_facts:
        parts.append(f"the fact(s) {', '.join(open_facts)} about b not proved")
    click.echo(
        f"Error: {'; '.join(parts)} for every M: the output above claims less than it shows "
        "(exit 1 refuted, 3 not proved).",
        err=True,
    )
    sys.exit(EXIT_REFUTED if refuted else EXIT_UNDECIDED)


def _print_chain(out: Console, steps: Sequence[Any], proof: Any) -> None:
    """The composite's forward and backward, then ∂L/∂h through BatchNorm: Thorey's Kronecker
    chain (``proof``: ``verify.chain.prove_chain``), each line with its every-M verdict."""
    from bnderive.core.printing import unicode

    for kind, title in (("forward", "Forward"), ("backward", "Backward")):
        out.print(f"\n[bold underline]{title}[/]")
        for each, lhs, rhs, meaning in steps:
            if each == kind:
                out.print(
                    f"[bold cyan]{escape(unicode(lhs))}[/] = {escape(unicode(rhs))}   "
                    f"[dim]# {escape(meaning)}[/]"
                )
    out.print(f"\n[bold underline]∂L/∂hᵢⱼ through BatchNorm: {escape(proof.form.title)}[/]")
    for source in proof.form.sources[:1]:
        out.print(f"[dim]{escape(source)}[/]")
    for eq in proof.form.equations:
        text, style = STATUS_STYLE[proof.verdicts[eq.number].status.value]
        out.print(
            f"[bold]{eq.number}.[/] ∂L/∂hᵢ = {escape(unicode(eq.expr))}   [{style}]{text} for every M[/]"
        )
    out.print("[dim](g is ∂L/∂y: dout where y > 0, from the ReLU above; x stands for h.)[/]")


def _print_bias(out: Console, facts: Sequence[Any]) -> None:
    """The facts about the bias b (``verify.composite``), each with what the every-M proof found."""
    from bnderive.core.printing import unicode
    from bnderive.verify.composite import bias_gradient

    out.print("\n[bold underline]The bias b[/]")
    for fact in facts:
        text, style = STATUS_STYLE["holds" if fact.holds else "undecided"]
        out.print(f"{escape(fact.statement)}   [{style}]{text} for every M[/]")
    in_eval = bias_gradient(training=False)
    out.print(
        f"[dim]In eval mode μ and σ² are running statistics and the sum is "
        f"{escape(unicode(in_eval.leftover))}: not zero (γ = 1 and g = (1, 0, …, 0) give "
        "1/√(ε + σ²)).[/]"
    )


def _print_composite_instance(out: Console, n: int, d: int, values: dict[str, Any]) -> None:
    """Every gradient at exact inputs (``core.composite.example_instance``, two inputs)."""
    from bnderive.verify.witness import fmt_list

    d_in = 2
    out.print(
        f"\n[bold underline]At exact inputs: N = {n}, D_in = {d_in}, D = {d} (seeded rationals; "
        "≈ marks an irrational value rounded for display)[/]"
    )
    names = {"db": "b", "dw": "W", "dx": "X", "dgamma": "γ", "dbeta": "β"}
    for name, label in names.items():
        shown = fmt_list([_short(v) for v in values[name].ravel()], 6)
        out.print(f"∂L/∂{label} = {escape(shown)}")


def _short(value: Any) -> str:
    """An exact number for a terminal line: rationals as they are, algebraic numbers to 8
    significant digits (marked ≈)."""
    import sympy as sp

    value = sp.nsimplify(value) if isinstance(value, sp.Basic) else value
    if isinstance(value, sp.Rational) or not isinstance(value, sp.Basic):
        return str(value)
    return f"≈{sp.N(value, 8)}"


def _family_sets(spec: Spec) -> str:
    """Which elements one reduction set holds, and which is shown."""
    over = {
        "layer": "one sample's last axes",
        "rms": "one sample's last axes (no mean)",
        "instance": "one sample and channel, over H, W",
        "group": f"one sample and one group of {spec.c // spec.groups} channel(s), over them and H, W",
    }[spec.norm.value]
    rest = (
        f"; the other {spec.sets - 1} set(s) are the same in their own symbols"
        if spec.sets > 1
        else ""
    )
    return (
        f"Statistics per reduction set: {over} (M = {spec.m}). Set 0 ({spec.set_label(0)}) "
        f"shown{rest}."
    )


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


def _derive_general(spec: Spec, as_latex: bool) -> None:
    """Index notation only, for every M; with the default conventions, Thorey's Kronecker
    chain after it, each line with its every-M verdict (``verify.chain``)."""
    from bnderive import __version__
    from bnderive.core.printing import derivation_view, unicode
    from bnderive.verify.chain import chain_for

    steps = derivation_view(spec, instantiate=False)
    proof = chain_for(spec)
    if as_latex:
        from bnderive.core.align import align_latex, general_align

        title = f"bnderive {__version__}: every M, {spec.conventions()}"
        click.echo(align_latex(general_align(title, steps, proof.rows() if proof else ())))
        return
    out = console()
    out.print(f"[bold]{spec.norm.title} for every M ({escape(spec.conventions())})[/]")
    out.print("[dim]One reduction set: x_k, k = 1..M, Σₖ over the set; i is any one element.[/]")
    _print_steps(out, steps, ("Forward graph", "Backward by the chain rule"), instances=False)
    if proof is None:
        if spec.norm.value == "batch":
            out.print("\n[dim]The Kronecker chain is written for the default conventions.[/]")
        return
    chain = proof.form
    out.print(f"\n[bold underline]{escape(chain.title)}[/]")
    out.print(f"[dim]{escape(chain.sources[0])}[/]")
    for eq in chain.equations:
        verdict = proof.verdicts[eq.number]
        text, style = STATUS_STYLE[verdict.status.value]
        out.print(f"\n[bold]{eq.number}.[/] ∂L/∂xᵢ = {escape(unicode(eq.expr))}")
        if eq.latex:
            out.print(f"   [dim]as published: {escape(eq.latex)}[/]")
        out.print(
            f"   [{style}]{text} for every M[/]"
            + (f": {escape(verdict.residual)}" if verdict.residual else "")
        )


def _stage_word(name: str) -> str:
    return {"xhat": "x̂", "var": "σ²", "mu": "μ", "y": "y", "L": "L"}.get(name, name)
