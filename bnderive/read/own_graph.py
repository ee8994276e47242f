"""The forward graph a LaTeX derivation writes with names of its own (issue 12).

Levy-Kramer's LayerNorm post (2024) defines m_b (the mean), μ_{bh} = x_{bh} − 1_h m_b, v_b (the
variance), σ_b = √(v_b + ε) and y_{bh} = μ_{bh}/σ_b γ_h + β_h, then differentiates with respect
to its own names: ∂l/∂σ_p, ∂l/∂v_p, ∂σ_b/∂v_p.  Those are gradients in the post's graph, as
written: ∂L/∂v = Σ over the later lines u that use v of ∂L/∂u · ∂u/∂v (u's right side with the
other nodes held), down to the layer's nodes (y, x̂, σ², μ) whose gradients are the true ones;
a local derivative ∂u/∂v is u's right side differentiated with the other nodes held.  This is
what ``code_lines`` does for a post's NumPy code, with its chain rule (``_contribution``).

A name written again later (v_b = (1/H) 1_h μ_{bh}², after v_b = (1/H) 1_h (x_{bh} − 1_h m_b)²)
is a new node of the graph: a line uses the latest one before it.  The gradient is not worked
out (``GraphUnknown``, the line is not checked) when a layer node is computed twice after the
node (which one the gradient flows through is not said) or when a row after it that mentions it
and is no derivative could not be read (a path might be missing); never guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import sympy as sp

from bnderive.core import notation as N
from bnderive.read.code_lines import _contribution, _reduce_deltas, _uses

#: The layer's nodes a forward line of the post defines, and whether each is per element.
LAYER_NODES = {"y": True, "xhat": True, "mu": False, "var": False}


def hidden_path(name: str, through: list[str], wrt: str) -> str:
    """Why ∂name/∂wrt is not checked when ``name`` is defined through other names of the post
    that depend on ``wrt`` too (μ_{bh} = x_{bh} − 1_h m_b; ``xn = xmu * inv``): the local
    derivative (them held fixed) and the total one (through them) differ, and the notation
    does not say which.  One message for the LaTeX and the ASCII reader."""
    return (
        f"∂{name}/∂{wrt}: {name} is defined through {', '.join(through)}, which depends on "
        f"{wrt} too: is the derivative taken with it held fixed (the local one of the post's "
        "graph) or through it (the total one)? The notation does not say"
    )


class GraphUnknown(Exception):
    """A gradient or a local derivative in the post's graph cannot be worked out: why."""


@dataclass(frozen=True)
class GraphNode:
    name: str  # the name (sigma, v, μ) or the layer node (y, xhat, mu, var)
    expr: sp.Expr  # its right side as written, at element i when per element
    elementwise: bool
    order: int  # where it is in the document (the form's equation count when it was read)
    layer: bool  # a forward line of the layer's own node (its gradient is the true one)


@dataclass
class OwnGraph:
    nodes: list[GraphNode] = field(default_factory=list)
    #: rows that were not read or not checked: (order, text), a path they might hold is unknown
    gaps: list[tuple[int, str]] = field(default_factory=list)

    def add(self, name: str, expr: sp.Expr, elementwise: bool, order: int, layer: bool) -> None:
        self.nodes.append(GraphNode(name, expr, elementwise, order, layer))

    def gap(self, order: int, text: str) -> None:
        self.gaps.append((order, text))

    def owns(self, name: str) -> bool:
        return any(n.name == name and not n.layer for n in self.nodes)

    def latest(self, name: str, before: int | None = None) -> GraphNode | None:
        found = [n for n in self.nodes if n.name == name and (before is None or n.order < before)]
        return found[-1] if found else None

    # -- ∂L/∂v ----------------------------------------------------------------------------------
    def adjoint(self, name: str, index: sp.Expr | None, truth: dict[str, sp.Expr]) -> sp.Expr:
        """∂L/∂name (at ``index`` when the name is per element); ``truth`` the true gradients
        of the layer's nodes (dxhat at i, dvar, dmu)."""
        node = self.latest(name)
        if node is None or node.layer:
            raise GraphUnknown(f"∂L/∂{name}: no line the post's graph reads defines {name}")
        value = self._adjoint(node, truth, set())
        if node.elementwise and index is not None:
            value = value.xreplace({N.i: index})
        return value

    def _adjoint(self, node: GraphNode, truth: dict[str, sp.Expr], seen: set[int]) -> sp.Expr:
        if node.order in seen:  # pragma: no cover - a forward graph has no cycle
            raise GraphUnknown("the post's graph has a cycle")
        after = [n for n in self.nodes if n.order > node.order]
        layer = [n.name for n in after if n.layer]
        twice = sorted({n for n in layer if layer.count(n) > 1})
        if twice:
            raise GraphUnknown(
                f"∂L/∂{node.name}: {', '.join(twice)} is computed more than once after it, so "
                "which one the gradient flows through is not said"
            )
        for order, text in self.gaps:
            if order > node.order and _mentions(text, node.name) and "\\partial" not in text:
                raise GraphUnknown(
                    f"∂L/∂{node.name}: a row after its definition uses it and was not read "
                    f"({text[:40]}…)"
                )
        total = sp.Integer(0)
        used = False
        for consumer in after:
            if not _uses(consumer.expr, node.name):
                continue
            if self.latest(node.name, consumer.order) is not node:
                continue  # it uses a later definition of the name
            if consumer.layer:
                outer = N.g[N.i] if consumer.name == "y" else truth["d" + consumer.name]
            else:
                outer = self._adjoint(consumer, truth, seen | {node.order})
            total += _contribution(
                outer, consumer.expr, consumer.elementwise, node.name, node.elementwise
            )
            used = True
        if not used:
            raise GraphUnknown(
                f"∂L/∂{node.name}: no later line of the forward pass uses it, so its gradient is "
                "not said"
            )
        return total

    # -- ∂u/∂v ----------------------------------------------------------------------------------
    def partial(self, of: sp.Expr, wrt: sp.Expr, before: int) -> sp.Expr:
        """∂of/∂wrt with the other nodes held: ``of`` a node of the graph (its right side, the
        latest before ``before``) or an expression written out; ``wrt`` a name's symbol."""
        expr = of
        label = label_of(of)
        if label is not None:
            node = self.latest(label, before)
            if node is None:
                raise GraphUnknown(f"∂{label}/∂{label_of(wrt)}: no line defines {label} before")
            expr = node.expr
            if isinstance(of, sp.Indexed):
                expr = expr.xreplace({N.i: of.indices[0]})
        return _reduce_deltas(sp.diff(expr, wrt))


def label_of(expr: sp.Expr) -> str | None:
    """The name of a symbol (σ) or of an array's element (μ[h]); None for anything else, an
    index (i, an integer symbol) included."""
    if isinstance(expr, sp.Indexed):
        return str(expr.base.label)
    if isinstance(expr, sp.Symbol) and not expr.is_integer:
        return expr.name
    return None


_WRITTEN = {"sigma": r"\\sigma|σ", "μ": r"\\mu|μ", "mu": r"\\mu|μ", "var": r"\\sigma|σ"}


def _mentions(text: str, name: str) -> bool:
    pattern = _WRITTEN.get(name, rf"(?<![A-Za-z\\]){re.escape(name)}(?![A-Za-z])")
    return re.search(pattern, text) is not None
