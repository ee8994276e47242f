from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from bnderive.cli.common import console, escape, user_errors
from bnderive.errors import BnderiveError

if TYPE_CHECKING:
    pass


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


@click.command()
@click.argument("name", required=False)
@click.option("--example", is_flag=True, help="Print a template form file to start from.")
@user_errors
def forms(name: str | None, example: bool) -> None:
    r"""List the known forms with their sources, or show one form's equations.

    The list holds every family's published forms: BatchNorm's (the default of `check`) and
    those of LayerNorm, InstanceNorm, GroupNorm and RMSNorm (`check --norm layer`, ...), whose
    conventions column names the family; then the LaTeX derivations shipped with bnderive
    (`check staged-latex` checks one by name, line by line).

    \b
    Examples:
      bnderive forms
      bnderive forms staged
      bnderive forms --example > mine.toml
    """
    from rich.table import Table

    from bnderive.core.printing import unicode
    from bnderive.read.catalogue import builtin_documents, find_form
    from bnderive.read.derivations import builtin_forms

    if example:
        click.echo(EXAMPLE_FORM, nl=False)
        return
    out = console()
    if name:
        form = find_form(name)
        out.print(f"[bold]{escape(form.name)}[/]: {escape(form.title)}")
        family = "" if form.norm.value == "batch" else f"{form.norm.title}: "
        out.print(escape(family + form.conventions()))
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
        family = "" if form.norm.value == "batch" else f"{form.norm.title}: "
        table.add_row(
            form.name,
            escape(form.title),
            str(len(form.equations)),
            escape(family + form.conventions()),
            escape("; ".join(s.split(",")[0] for s in form.sources)),
        )
    out.print(table)
    documents = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    documents.add_column("LaTeX derivation", no_wrap=True)
    documents.add_column("title")
    documents.add_column("lines", justify="right")
    documents.add_column("file")
    documents.add_column("sources")
    for doc in builtin_documents():
        documents.add_row(
            doc.name,
            escape(doc.title),
            str(len(doc.equations)),
            escape(Path(doc.path).name),
            escape("; ".join(s.split(",")[0] for s in doc.sources)),
        )
    out.print()
    out.print(documents)


@click.command()
@click.argument("name", required=False)
@click.option("--rewrites", is_flag=True, help="List the equivalent rewrites instead.")
@user_errors
def mutants(name: str | None, rewrites: bool) -> None:
    r"""List the corpus of known mistakes, or show one mistake and its mutants.

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
    from rich.table import Table

    from bnderive.core.printing import unicode
    from bnderive.read.corpus import corpus

    book = corpus()
    out = console()
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
                out.print(f"  declared {escape(mutant.form.conventions())}")
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
