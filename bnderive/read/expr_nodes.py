"""Gradients with respect to a sub-expression of the forward pass, as posts take them (issue 12).

Dahal (2017) and vishalvatsalya (2019) define y_i = γx̂_i + β and then write ∂C/∂(γx̂_i) =
∂C/∂y_i: they treat γx̂_i as a node of the graph (y = u + β, u = γx̂).  Such a gradient is
defined only once the decomposition is fixed, so bnderive takes it when, and only when, the
expression E appears as written (structurally, in SymPy's canonical form: a subtree, or some of
the terms of a sum or factors of a product) in exactly one place of the forward graph: the
post's own forward lines of y, x̂, σ², μ where they hold, the standard ones where the post writes
none or a wrong one.  E is then an anonymous node u of that graph: the forward line of the node
n that holds it is n = D(u), and

    ∂L/∂E = ∂L/∂n · ∂D/∂u        (summed over n's elements when n is per element),

with ∂L/∂n the true gradient of the layer's node (g for y).  A local derivative ∂F/∂E of a
node F (∂y_i/∂(γx̂_i)) or of an expression written out is F with E replaced by u, differentiated
with the rest held.  E written nowhere in the forward graph (γx_i, where only a refuted line
writes it) or in more than one place (the adjoint would depend on which one is the node), or F
not containing E as written, is not checked, with its reason: never guessed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import sympy as sp

from bnderive.core import notation as N
from bnderive.core.derive import stage_definition
from bnderive.core.printing import unicode
from bnderive.core.spec import Spec
from bnderive.read.code_lines import _WORDS, _contribution, _reduce_deltas
from bnderive.read.own_graph import LAYER_NODES, GraphUnknown, OwnGraph

_U = "u·node"  # the anonymous node E becomes (a name no post writes)


@dataclass(frozen=True)
class Forward:
    """A forward line of the layer's node, as the graph uses it."""

    node: str  # y, xhat, var, mu
    expr: sp.Expr  # at element i when per element
    elementwise: bool
    where: str  # "line 31 as written" or "the standard forward graph"


def forward_lines(spec: Spec, graph: OwnGraph) -> list[Forward]:
    """Each node's forward line: the post's latest one that holds (as written), else the
    standard one."""
    lines = []
    for node, per in LAYER_NODES.items():
        standard = stage_definition(spec, node)
        if standard is None:
            continue
        written = [n for n in graph.nodes if n.layer and n.name == node]
        if written and sp.simplify(written[-1].expr - standard) == 0:
            expr, where = written[-1].expr, "its forward line as written"
        else:
            expr, where = standard, "the standard forward graph"
        lines.append(Forward(node, expr, per, where))
    for own in graph.nodes:  # the post's own names: E written there is another occurrence
        if not own.layer:
            lines.append(Forward(own.name, own.expr, own.elementwise, "the post's own name"))
    return lines


def _at_i(expr: sp.Expr) -> tuple[sp.Expr, sp.Expr | None]:
    """E written at element i (its one index replaced by i), and that index (None: a scalar)."""
    indices = {ix for a in expr.atoms(sp.Indexed) for ix in a.indices}
    if len(indices) > 1:
        raise GraphUnknown(
            f"∂L/∂({unicode(expr)}): an expression of more than one element index is no node"
        )
    if not indices:
        return expr, None
    index = indices.pop()
    return expr.xreplace({index: N.i}), index


def _count(expr: sp.Expr, sub: sp.Expr) -> int:
    """How many times ``sub`` appears in ``expr``: as a subtree, or as some of the terms of a
    sum (the factors of a product) of ``expr``."""
    if expr == sub:
        return 1
    n = sum(_count(a, sub) for a in expr.args)
    if type(expr) is type(sub) and isinstance(expr, sp.Add | sp.Mul):
        have, want = Counter(expr.args), Counter(sub.args)
        if all(have[k] >= v for k, v in want.items()):
            n += 1
    return n


def _in_sums(expr: sp.Expr, sub: sp.Expr) -> int:
    """How many times ``sub`` at element i appears inside a sum over the elements (x_i − μ in
    σ² = Σ_p (x_p − μ)²/M is one of its terms, p = i)."""
    n = 0
    for total in expr.atoms(sp.Sum):
        for limit in total.limits:
            if sub.has(N.i):
                n += _count(total.function, sub.xreplace({N.i: limit[0]}))
    return n


def _replace(expr: sp.Expr, sub: sp.Expr, node: sp.Expr) -> sp.Expr:
    """``expr`` with its one occurrence of ``sub`` replaced by ``node``."""
    if expr == sub:
        return node
    if type(expr) is type(sub) and isinstance(expr, sp.Add | sp.Mul):
        have, want = Counter(expr.args), Counter(sub.args)
        if all(have[k] >= v for k, v in want.items()):
            rest = list((have - want).elements())
            return expr.func(node, *rest)
    if not expr.args:
        return expr
    return expr.func(*[_replace(a, sub, node) for a in expr.args])


def _the_node(expr: sp.Expr, lines: list[Forward]) -> tuple[Forward, sp.Expr, bool]:
    """The forward line that holds E (at element i) once, E as an anonymous node in it, and
    whether E is per element."""
    at_i, index = _at_i(expr)
    per = index is not None
    counts = [(line, _count(line.expr, at_i) + _in_sums(line.expr, at_i)) for line in lines]
    found = [(line, n) for line, n in counts if n]
    shown = unicode(expr)
    if not found:
        raise GraphUnknown(
            f"{shown} is not written in the forward graph (the forward lines of y, x̂, σ², μ "
            "that hold), so it is no node and a derivative with respect to it is not said"
        )
    if len(found) > 1 or found[0][1] > 1:
        where = ", ".join(_WORDS.get(line.node, line.node) for line, _ in found)
        raise GraphUnknown(
            f"{shown} appears more than once in the forward graph ({where}), so which "
            "occurrence is the node (and so a derivative with respect to it) is not said"
        )
    line = found[0][0]
    if line.node not in LAYER_NODES:
        raise GraphUnknown(
            f"{shown} is written in the line of the post's own name {line.node}: a derivative "
            "with respect to it is not worked out there"
        )
    if _in_sums(line.expr, at_i):
        raise GraphUnknown(
            f"{shown} is written inside the sum of {_WORDS[line.node]}'s line (one term per "
            "element): a derivative with respect to it is not worked out"
        )
    u = sp.IndexedBase(_U)[N.i] if per else sp.Symbol(_U)
    return line, _replace(line.expr, at_i, u), per


def expression_adjoint(
    expr: sp.Expr, lines: list[Forward], truth: dict[str, sp.Expr]
) -> tuple[sp.Expr, str]:
    """∂L/∂E (at E's own element) and a note saying how; ``truth`` the true gradients of the
    layer's nodes (dxhat at i, dvar, dmu)."""
    line, written, per = _the_node(expr, lines)
    outer = N.g[N.i] if line.node == "y" else truth["d" + line.node]
    at_i, index = _at_i(expr)
    value = _back(_contribution(outer, written, line.elementwise, _U, per), at_i)
    if index is not None:
        value = value.xreplace({N.i: index})
    note = (
        f"∂L/∂({unicode(expr)}): {unicode(expr)} taken as a node of the forward graph (it appears "
        f"once, in {_WORDS[line.node]}'s line, {line.where}), its gradient through "
        f"{_WORDS[line.node]}"
    )
    return value, note


def expression_partial(of: sp.Expr, expr: sp.Expr, lines: list[Forward]) -> sp.Expr:
    """∂F/∂E with E a node of the forward graph: F a node of the layer (its forward line) or an
    expression written out, with E replaced by the node and the rest held."""
    _the_node(expr, lines)  # E must be a node of the forward graph
    at_i, index = _at_i(expr)
    label = str(of.base.label) if isinstance(of, sp.Indexed) else getattr(of, "name", "")
    body = of
    line = next((f for f in lines if f.node == label), None)
    if line is not None and line.elementwise and isinstance(of, sp.Indexed):
        body = line.expr.xreplace({N.i: of.indices[0]})  # y_k: its forward line at k
    elif line is not None and not line.elementwise:
        body = line.expr
    target = expr if index is None else at_i.xreplace({N.i: index})
    if _count(body, target) != 1:
        raise GraphUnknown(
            f"∂({unicode(of)})/∂({unicode(expr)}): {unicode(expr)} is not written in "
            f"{unicode(body)} as such, so how it depends on it is not said"
        )
    u = sp.Dummy("u")
    return _reduce_deltas(sp.diff(_replace(body, target, u), u)).xreplace({u: target})


def _back(value: sp.Expr, at_i: sp.Expr) -> sp.Expr:
    """The anonymous node written out again as E (at whatever element it is)."""
    mapping: dict[sp.Expr, sp.Expr] = {sp.Symbol(_U): at_i}
    for a in value.atoms(sp.Indexed):
        if str(a.base.label) == _U:
            mapping[a] = at_i.xreplace({N.i: a.indices[0]})
    return value.xreplace(mapping)
