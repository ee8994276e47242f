"""The forward graph drawn with box-drawing characters, from ``core.graph``'s stages.

The picture is computed from the graph (each stage's ``parents()``), not drawn by hand, so it is
the same graph that is differentiated and evaluated.  One node per row, top to bottom in the
order of the forward pass; an input (x, ε, γ, β, g) sits just above the first stage that reads
it.  Every node that is read later owns a vertical lane below its marker ●, down to its last
reader; on a reader's row the lanes of its inputs turn into it (├ ┤ ╰ ╯) and a horizontal line
ends in an arrowhead at the reader's marker::

    ●            x
    ├─►●         μ
    ├──┼─►●      σ²
    │  │  │  ●   ε
    ●◄─┴──┴──╯   x̂

Lanes are reused once they end (interval colouring), so the picture stays a few columns wide.
The style follows ``git log --graph``'s lanes.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from bnderive.core.graph import Graph

#: How each node of the graph is named in the picture.
NODE_NAMES = {
    "x": "x",
    "g": "g",
    "gamma": "γ",
    "beta": "β",
    "eps": "ε",
    "mu": "μ",
    "var": "σ²",
    "ms": "ms",
    "xhat": "x̂",
    "y": "y",
    "L": "L",
}

#: What each input of the graph is, in a few words.
LEAVES = {
    "x": "the input: one reduction set",
    "g": "the upstream gradient ∂L/∂y, given",
    "gamma": "the scale, learned",
    "beta": "the shift, learned",
    "eps": "keeps the root away from 0",
}

# (up, down, left, right) → the box-drawing character with those arms.
_BOX = {
    (True, True, False, False): "│",
    (False, False, True, True): "─",
    (True, True, False, True): "├",
    (True, True, True, False): "┤",
    (True, True, True, True): "┼",
    (True, False, False, True): "╰",
    (True, False, True, False): "╯",
    (True, False, True, True): "┴",
}


def pad(text: str, width: int) -> str:
    """``text`` padded with spaces to ``width`` columns (combining marks, as in x̂, take none)."""
    shown = sum(0 if unicodedata.combining(ch) else 1 for ch in text)
    return text + " " * max(0, width - shown)


@dataclass(frozen=True)
class PictureRow:
    """One row of the picture: the node, its drawn lanes, and the nodes it reads."""

    node: str
    lanes: str  # the box-drawing part, all rows padded to one width
    reads: tuple[str, ...]

    @property
    def name(self) -> str:
        return NODE_NAMES.get(self.node, self.node)


def node_order(graph: Graph) -> list[str]:
    """Stages in forward order, each input placed just above its first reader."""
    order: list[str] = []
    for stage in graph.stages:
        for leaf in graph.leaves:
            if leaf in stage.parents() and leaf not in order:
                order.append(leaf)
        order.append(stage.name)
    return order


def picture(graph: Graph) -> list[PictureRow]:
    """The rows of the drawing of ``graph``."""
    order = node_order(graph)
    row = {name: r for r, name in enumerate(order)}
    parents = {s.name: [p for p in s.parents() if p in row] for s in graph.stages}
    readers: dict[str, list[str]] = {name: [] for name in order}
    for child, ps in parents.items():
        for p in ps:
            readers[p].append(child)
    end = {name: max((row[c] for c in readers[name]), default=row[name]) for name in order}

    # Interval colouring: a node takes the lowest column free from its row to its lane's end;
    # a lane that ends on this very row in a parent frees its column for the child.
    column: dict[str, int] = {}
    busy: dict[int, tuple[str, int]] = {}  # column → (owner, last row)
    for name in order:
        r = row[name]
        col = 0
        while col in busy:
            owner, last = busy[col]
            if last < r or (last == r and owner in parents.get(name, [])):
                break
            col += 1
        column[name] = col
        busy[col] = (name, end[name])
    width = max(column.values()) + 1

    return [
        PictureRow(
            name,
            _draw_row(name, row[name], order, row, column, end, parents, width),
            tuple(parents.get(name, ())),
        )
        for name in order
    ]


def _draw_row(
    name: str,
    r: int,
    order: list[str],
    row: dict[str, int],
    column: dict[str, int],
    end: dict[str, int],
    parents: dict[str, list[str]],
    width: int,
) -> str:
    """One row: each column one character, with two characters of gap between columns."""
    mine = column[name]
    inputs = parents.get(name, [])
    # Lanes passing this row: owners drawn above it whose lane reaches it.
    active = {column[o]: o for o in order if row[o] < r <= end[o] and column[o] != mine}
    span = [column[p] for p in inputs if column[p] != mine] + [mine]
    lo, hi = min(span), max(span)
    cells: list[str] = []
    for col in range(width):
        if col == mine:
            cells.append("●")
        elif col in active:
            owner = active[col]
            inside = lo <= col <= hi
            if owner in inputs:
                arms = (True, end[owner] > r, col > lo, col < hi)
                cells.append(_BOX[arms])
            elif inside:
                cells.append("┼")  # a lane crossing the horizontal line
            else:
                cells.append("│")
        else:
            cells.append("─" if lo < col < hi else " ")
        if col < width - 1:
            cells.append(_gap(col, mine, lo, hi))
    return "".join(cells)


def _gap(col: int, mine: int, lo: int, hi: int) -> str:
    """The two characters between column ``col`` and the next: a line, an arrowhead, blank."""
    if col + 1 == mine and lo < mine:
        return "─►"
    if col == mine and hi > mine:
        return "◄─"
    return "──" if lo <= col and col + 1 <= hi else "  "


__all__ = ["LEAVES", "NODE_NAMES", "PictureRow", "node_order", "pad", "picture"]
