from __future__ import annotations

import click
from rich.markup import escape

from bnderive.cli.common import console, document, user_errors
from bnderive.errors import BnderiveError


# -- parse ----------------------------------------------------------------------------------------
@click.command()
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
    r"""Show how bnderive reads a LaTeX derivation (.md or .tex), line by line.

    For every line of the file's align/equation blocks: where it is, the LaTeX, the expression
    bnderive read (Unicode) and the same rendered back to LaTeX, and the quantity it defines
    (checked by `bnderive check FILE`) or why it is not checked. Nothing is checked here; a line
    bnderive cannot read is an error with its line and column (exit code 2).

    \b
    Examples:
      bnderive parse examples/post.md
      bnderive parse notes.tex
      bnderive parse --expr '\frac{\partial L}{\partial x_i}'
      bnderive parse --expr '\sum_{n,h,w} \delta y[n][c][h][w]' --spatial
    """
    from bnderive.core.notation import reference
    from bnderive.core.printing import latex, unicode
    from bnderive.read.latex_reader import parse_latex

    out = console()
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
    reader = document()
    if not reader.is_document(file):
        raise BnderiveError(f"{file}: expected a .md or .tex derivation (a form file is TOML).")
    form = reader.load_document(file)
    out.print(f"[bold]{escape(form.name)}[/]: {escape(form.title)}")
    modes = ", ".join(m.value for m in form.modes)
    out.print(escape(f"{form.conventions()}; modes: {modes}"))
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
