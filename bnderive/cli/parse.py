from __future__ import annotations

from typing import Any

import click

from bnderive.cli.common import console, document, escape, preamble_option, user_errors
from bnderive.errors import BnderiveError

#: What a kind of line is checked against, in words (``parse`` shows it per line).
_AGAINST = {
    "adjoint": "the truth",
    "forward": "the forward graph",
    "local": "its true value",
    "identity": "the left side",
    "name": "its definition",
}


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
@preamble_option
@user_errors
def parse(
    file: str | None,
    expr_text: str | None,
    sigma: str | None,
    spatial: bool,
    preamble: str | None = None,
) -> None:
    """Show how bnderive reads a LaTeX derivation (.md, .tex or .ipynb), line by line.

    For every line of the file's display maths: where it is, the LaTeX, the expression bnderive
    read (Unicode) and the same rendered back to LaTeX, what the line is checked against by
    `bnderive check FILE` (the truth of a gradient, the forward graph, a local derivative's true
    value, the left side of an identity, a name's definition), the notes on what was assumed,
    or why it is not read or not checked. Nothing is checked here.

    \b
    The notation understood (see README, "LaTeX derivation files"):
      maths     align, align*, aligned, eqnarray, equation, gather, split, multline;
                $$ … $$, \\[ … \\], \\( … \\), $ … $ holding an '=', <script type="math/tex">,
                Markdown cells of a notebook, bare equations in a .tex file
      layout    \\boxed{X}, \\underbrace{X}_{note} and \\overbrace{X}^{note} (= X),
                \\color{red}, \\textcolor, \\displaystyle, \\limits, \\mathop, \\left \\right
                \\big \\Bigl …, \\, \\; \\! \\quad \\space, \\tag \\label \\nonumber, trailing . , ?,
                \\text{…} and "(Mean) \\space" annotations, (\\text{Because …}) remarks
                (and since, let, where, with, from, using: also mid-line),
                &&-columns of remarks, &+/&- rows and "=\\\\" (the right side continues)
      values    x_i h_{ij} x[n][c][h][w] X; x^{(k)} (feature k); \\hat{x}_i \\hat{x_i}
                \\widehat{X}; y_i Y; \\mu \\mu_B; \\sigma^2 \\sigma_B^2; \\epsilon; \\gamma \\beta;
                N m M NHW; E[x] \\mathbb{E}[x] (a batch mean), \\operatorname{Var}[x] (its
                variance); names a line defines
                (t = 1/\\sqrt{\\sigma^2+\\epsilon}, also written 1/\\sqrt{…} = t;
                s^2 = … names the whole power s^2); \\overline{x} \\bar{x} (the mean);
                istd rstd invstd that no line defines: 1/\\sqrt{\\sigma^2+\\epsilon} (a note)
      sums      \\sum_{i=1}^{N} \\sum_i \\sum_{i=0}^{N-1} \\Sigma \\sum_{j \\ne i}
                \\sum_{j=1, j\\ne i}^{N} (j ≠ i left out) \\sum_{i=1}^{2} (elements 1, 2)
                Einstein's convention (no Σ written, 1_h x_{bh}; or `summation: einstein`):
                an index repeated in a term and not free on the left side is summed
      deltas    \\delta_{ik} \\delta^{n,h,w}_{N,H,W} [k = i] 1(k == i) \\mathbb{1}[k=i]
      products  \\cdot \\times \\odot * / juxtaposition; "a \\cdot -b"; \\vec{1} \\mathbf{1}_N
      gradients \\frac{\\partial L}{\\partial x_i} (L ℓ J E f C l \\mathcal{L} \\L, and the
                document's loss letter in another font: \\mathcal{l} beside \\partial l; d, \\part,
                \\text{d}, \\mathrm{d}), \\delta y, dout; any ∂L/∂ of y x̂ σ² μ x γ β; a gradient
                no earlier line defines stands for its true value (a note says so)
      local     \\frac{\\partial \\hat{x}_i}{\\partial \\sigma^2}, \\frac{\\partial y_k}{\\partial x_i},
                \\frac{\\partial (\\gamma\\hat{x}+\\beta)}{\\partial \\hat{x}_k},
                \\frac{\\partial}{\\partial x_i}[…]: replaced by their true values
    σ: with both σ² and a bare σ written, σ is √σ² (a note says so); a bare σ alone needs
    `sigma: std|var`. ε: a post that never writes ε is read with ε = 0 (a note says so).

    \b
    Examples:
      bnderive parse examples/post.md
      bnderive parse notes.tex
      bnderive parse notebook.ipynb
      bnderive parse blueprint.tex --preamble macros.tex
      bnderive parse --expr '\\frac{\\partial L}{\\partial x_i}'
      bnderive parse --expr '\\sum_{n,h,w} \\delta y[n][c][h][w]' --spatial
    """
    from bnderive.core.printing import latex, unicode
    from bnderive.read.latex_reader import parse_latex

    out = console()
    if (file is None) == (expr_text is None):
        raise BnderiveError(
            "Give a FILE (.md, .tex or .ipynb) or --expr LATEX, not both or neither."
        )
    if expr_text is not None:
        if preamble is not None:
            raise BnderiveError(
                "--preamble holds macros for a derivation FILE; --expr reads one expression "
                "without them."
            )
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
        raise BnderiveError(
            f"{file}: expected a .md, .tex or .ipynb derivation (a form file is TOML)."
        )
    macros = reader.load_preamble(preamble) if preamble is not None else None
    form = reader.load_document(file, preamble=macros)
    out.print(f"[bold]{escape(form.name)}[/]: {escape(form.title)}")
    modes = ", ".join(m.value for m in form.modes)
    out.print(escape(f"{form.conventions()}; modes: {modes}"))
    for source in form.sources:
        out.print(f"  [dim]source:[/] {escape(source)}")
    for note in form.notes:
        out.print(f"  [yellow]note:[/] {escape(note)}")
    references = {checked: ref for ref, checked in form.references}
    for line in form.lines:
        _print_line(out, form, line, references)
    counts = form.counts()
    out.print(
        f"\n{len(form.lines)} line(s): {counts['checked']} checked, "
        f"{counts['definition']} definition(s), {counts['not checked']} not checked, "
        f"{counts['not read']} not read, {counts['prose']} prose. "
        f"Check them with: bnderive check {escape(file)}"
    )


def _print_line(out: Any, form: Any, line: Any, references: dict[int, int]) -> None:
    """One line of a document: where it is, its LaTeX, what was read, what it is checked
    against (or why not), its notes."""
    out.print(
        f"\n[bold]{escape(line.place)}[/] [dim](column {line.column})[/]  {escape(line.latex)}"
    )
    read = line.read
    if read is not None and read.sides:
        text, tex = _read_sides(read)
        out.print(f"  [cyan]read:[/]  {escape(text)}")
        out.print(f"  [cyan]LaTeX:[/] {escape(tex)}")
        _print_readings(out, read)
    if line.status == "checked":
        numbers = ", ".join(str(n) for n in line.equations)
        ref = references.get(line.equations[0]) if line.equations else None
        against = (
            form.equations[ref - 1].text
            if ref is not None
            else _AGAINST.get(read.kind if read else "", "the truth")
        )
        out.print(
            f"  [green]checked as {escape(line.defines)}: against {escape(against)}[/] "
            f"[dim](equation {numbers})[/]"
        )
    elif line.status == "definition":
        out.print(f"  [green]defines {escape(line.defines)}[/] (a name for later lines)")
    else:
        out.print(f"  [dim]· {escape(line.status)}: {escape(line.reason)}[/]")
    for note in line.notes:
        out.print(f"  [yellow]note:[/] {escape(note)}")


def _print_readings(out: Any, read: Any) -> None:
    """A member read more than one way (an open scope): its value under each reading, which
    ``read:`` above shows the first of."""
    from bnderive.core.printing import unicode

    for k, ways in enumerate(read.readings, start=1):
        if ways is None:
            continue
        where = f"member {k}" if len(read.rhs) > 1 else "the right side"
        out.print(f"  [cyan]{where}, each reading:[/]")
        for j, (label, value) in enumerate(zip(ways.labels, ways.values, strict=True), start=1):
            shown = "not read" if value is None else unicode(value)
            out.print(f"    ({j}) {escape(shown)}  [dim]{escape(label)}[/]")


def _read_sides(read: Any) -> tuple[str, str]:
    """What was read of a line, in Unicode and in LaTeX: its sides joined by '=', '…' for a
    side that was not read (an adjoint's left side named by what it defines)."""
    from bnderive.core.notation import reference
    from bnderive.core.printing import latex, unicode

    lhs = read.lhs
    if read.kind in ("adjoint",) and read.lhs is not None and read.defines:
        lhs = reference(read.defines, read.index)
    shown = [lhs, *read.rhs]
    text = " = ".join("…" if s is None else unicode(s) for s in shown)
    tex = " = ".join("…" if s is None else latex(s) for s in shown)
    if lhs is None:
        text, tex = text.removeprefix("… "), tex.removeprefix("… ")
    return text, tex
