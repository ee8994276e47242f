"""A derivation as a LaTeX ``align*`` block: a small model (rows, notes) and its printer.

``bnderive derive --latex`` prints the forward graph and the adjoints this way, with their value
at the spec's sizes; ``--general`` adds Thorey's Kronecker chain with its verdicts as notes;
``--composite`` the Linear → BatchNorm → ReLU chain.  The rows hold SymPy expressions and the
printer (``AlignPrinter``, a ``TexPrinter`` with ``_print_X`` methods for the model's classes, in
the style of ``sympy.printing``'s own printers) writes them: no LaTeX is put together by hand.

    print(align_latex(derivation_align(spec, derivation_view(spec))))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sympy as sp

from bnderive.core.printing import Step, TexPrinter


@dataclass(frozen=True)
class AlignRow:
    """``lhs &= rhs``; without ``lhs`` a continuation of the row above (``&= rhs``)."""

    rhs: sp.Expr
    lhs: sp.Expr | None = None


@dataclass(frozen=True)
class AlignNote:
    """A LaTeX comment line inside the block (``% text``): what a row below was found to be."""

    text: str


@dataclass(frozen=True)
class AlignBlock:
    """A ``% title`` comment, then ``\\begin{align*}`` … ``\\end{align*}``."""

    title: str
    rows: tuple[AlignRow | AlignNote, ...]


class AlignPrinter(TexPrinter):
    """Prints ``AlignBlock``: rows separated by ``\\\\`` (none after the last), two spaces in."""

    def _print_AlignBlock(self, block: AlignBlock) -> str:
        last = max(k for k, row in enumerate(block.rows) if isinstance(row, AlignRow))
        lines = [self._print(AlignNote(block.title)), r"\begin{align*}"]
        for k, row in enumerate(block.rows):
            ends = isinstance(row, AlignRow) and k < last
            lines.append("  " + self._print(row) + (r" \\" if ends else ""))
        lines.append(r"\end{align*}")
        return "\n".join(lines)

    def _print_AlignRow(self, row: AlignRow) -> str:
        left = "" if row.lhs is None else self._print(row.lhs) + " "
        return f"{left}&= {self._print(row.rhs)}"

    def _print_AlignNote(self, note: AlignNote) -> str:
        return "% " + " ".join(note.text.split())  # one line: a newline would end the comment


def align_latex(block: AlignBlock) -> str:
    return AlignPrinter().doprint(block)


# -- the blocks of ``bnderive derive`` ------------------------------------------------------------
def derivation_align(title: str, steps: Sequence[Step]) -> AlignBlock:
    """Each stage and adjoint in index notation (any M), then its value at the spec's sizes."""
    rows: list[AlignRow | AlignNote] = []
    for step in steps:
        rows += [AlignRow(step.general, step.lhs), AlignRow(step.instance)]
    return AlignBlock(title, tuple(rows))


def general_align(
    title: str,
    steps: Sequence[Step],
    proved: Sequence[tuple[str, sp.Expr, sp.Expr]] = (),
) -> AlignBlock:
    """Each stage and adjoint in index notation; then lines proved elsewhere as (what was
    found, lhs, rhs), each under a note that says what was found."""
    rows: list[AlignRow | AlignNote] = [AlignRow(s.general, s.lhs) for s in steps]
    for found, lhs, rhs in proved:
        rows += [AlignNote(found), AlignRow(rhs, lhs)]
    return AlignBlock(title, tuple(rows))


def chain_align(title: str, rows: Sequence[tuple[sp.Expr, sp.Expr]]) -> AlignBlock:
    """(lhs, rhs) rows as they are."""
    return AlignBlock(title, tuple(AlignRow(rhs, lhs) for lhs, rhs in rows))


__all__ = [
    "AlignBlock",
    "AlignNote",
    "AlignPrinter",
    "AlignRow",
    "align_latex",
    "chain_align",
    "derivation_align",
    "general_align",
]
