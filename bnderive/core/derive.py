"""Ground truth: the adjoints of the forward graph, by the chain rule over its stages.

Each adjoint is the sum, over the stages that consume a node, of the consumer's adjoint times
the local derivative, which SymPy's ``diff`` takes of the consumer's definition at one element:

    ∂L/∂v = Σ_{u consumes v} ∂L/∂u · ∂u/∂v

A reduction u = s·Σ_k f(v_k) seen from element i of v contributes ∂L/∂u · s · f'(v_i) (the
Kronecker delta of ∂v_k/∂v_i already reduced); an elementwise u seen from a scalar v contributes
Σ_k ∂L/∂u_k · ∂u_k/∂v.  The adjoints refer to each other by name (``dxhat[k]``, ``dvar``) the way a
staged derivation does; ``inline`` substitutes them away.  The intermediate adjoints are those of
this graph: ∂L/∂σ² holds x and μ fixed, ∂L/∂μ holds x fixed and lets σ² follow μ.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import sympy as sp

from bnderive.core import notation as N
from bnderive.core.graph import ELEMENT, SCALAR, Graph, to_index_notation
from bnderive.core.spec import Spec


@dataclass(frozen=True)
class Term:
    """One path of the chain rule: the contribution of consumer ``via`` to an adjoint."""

    via: str
    expr: sp.Expr


@dataclass(frozen=True)
class Adjoint:
    """∂L/∂(node) in index notation; elementwise adjoints are written at index i."""

    name: str  # "dxhat", "dvar", ...
    node: str  # "xhat", "var", ...
    elementwise: bool
    terms: tuple[Term, ...]

    @property
    def expr(self) -> sp.Expr:
        return sp.Add(*(t.expr for t in self.terms))

    def reference(self, index: sp.Symbol | None = None) -> sp.Expr:
        return N.reference(self.name, index if self.elementwise else None)


@dataclass(frozen=True)
class Truth:
    """The staged adjoints of a graph, in the order a backward pass computes them."""

    graph: Graph
    adjoints: tuple[Adjoint, ...]

    def __getitem__(self, name: str) -> Adjoint:
        for adj in self.adjoints:
            if adj.name == name:
                return adj
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return any(adj.name == name for adj in self.adjoints)

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.adjoints]

    @property
    def order(self) -> int:
        return 1

    def inline(self, name: str) -> sp.Expr:
        """The adjoint with every reference to an earlier adjoint and to x̂, y substituted."""
        return inline(self[name].expr, self._definitions())

    def definitions(self) -> list[tuple[str, bool, sp.Expr]]:
        """(name, elementwise, expression) in the order a backward pass computes them."""
        return [(a.name, a.elementwise, a.expr) for a in self.adjoints]

    def _definitions(self) -> dict[str, tuple[bool, sp.Expr]]:
        defs: dict[str, tuple[bool, sp.Expr]] = {}
        for stage in self.graph.stages:
            if stage.elementwise:
                defs[stage.name] = (True, stage.at(N.i))
        for adj in self.adjoints:
            defs[adj.name] = (adj.elementwise, adj.expr)
        return defs


def derive(spec: Spec | Graph) -> Truth:
    """The ground-truth adjoints for a spec's conventions (any M)."""
    graph = spec if isinstance(spec, Graph) else Graph.build(spec)
    s = graph.spec
    return Truth(graph, _adjoints(s.training, s.unbiased, s.eps_inside))


@lru_cache(maxsize=16)
def _adjoints(training: bool, unbiased: bool, eps_inside: bool) -> tuple[Adjoint, ...]:
    """The adjoints depend on the conventions only, not on the sizes: derived once each."""
    spec = Spec(training=training, unbiased=unbiased, eps_inside=eps_inside, n=2)
    graph = Graph.build(spec)
    stages = {s.name: s for s in graph.stages}
    order = [s.name for s in graph.stages]  # forward order
    targets = [n for n in reversed(order) if n != "L"] + ["gamma", "beta"]
    if "x" not in targets:
        targets.insert(targets.index("gamma"), "x")
    if not graph.spec.training:
        targets = [t for t in targets if t not in ("gamma", "beta", "x")]
        targets += ["mu", "var", "x", "gamma", "beta"]
    adjoints: dict[str, Adjoint] = {}

    def adjoint_ref(node: str, index: sp.Symbol) -> sp.Expr:
        if node == "L":
            return sp.Integer(1)
        adj = adjoints["d" + node]
        return adj.reference(index)

    for node in targets:
        elementwise = node in ELEMENT
        variable = ELEMENT[node] if elementwise else SCALAR[node]
        terms: list[Term] = []
        for consumer in order:
            u = stages[consumer]
            local = sp.diff(u.definition, variable)
            if local == 0:
                continue
            if elementwise and u.elementwise:
                expr = adjoint_ref(consumer, N.i) * to_index_notation(local, N.i)
            elif elementwise:  # u is a reduction s·Σ_k f(v_k): the δ_ki picks k = i
                expr = adjoint_ref(consumer, N.i) * u.scale * to_index_notation(local, N.i)
            elif u.elementwise:  # scalar v feeds every element of u
                expr = N.reduce_sum(adjoint_ref(consumer, N.k) * to_index_notation(local, N.k), N.k)
            else:  # scalar v inside the summand of a reduction
                expr = (
                    adjoint_ref(consumer, N.k)
                    * u.scale
                    * N.reduce_sum(to_index_notation(local, N.k), N.k)
                )
            terms.append(Term(consumer, expr))
        adjoints["d" + node] = Adjoint("d" + node, node, elementwise, tuple(terms))
    return tuple(adjoints.values())


def inline(expr: sp.Expr, definitions: dict[str, tuple[bool, sp.Expr]]) -> sp.Expr:
    """Substitute named quantities by their definitions until none is left.

    ``definitions`` maps a name to (elementwise, expression); elementwise definitions are written
    at index i.  Summation indices inside a definition are renamed to fresh ones so that placing
    the definition at index k cannot capture anything.
    """
    for _ in range(len(definitions) + 1):
        replaced = False
        mapping: dict[sp.Basic, sp.Expr] = {}
        for node in expr.atoms(sp.Indexed):
            name = str(node.base.label)
            if name in definitions and definitions[name][0]:
                mapping[node] = at_index(definitions[name][1], node.indices[0])
        for sym in expr.atoms(sp.Symbol):
            if sym.name in definitions and not definitions[sym.name][0]:
                mapping[sym] = definitions[sym.name][1]
        if mapping:
            expr = expr.xreplace(mapping)
            replaced = True
        if not replaced:
            return expr
    raise ValueError("circular definitions")


def at_index(expr: sp.Expr, index: sp.Expr) -> sp.Expr:
    """An expression written at index i, placed at ``index`` with bound indices renamed."""
    fresh = {}
    for s in expr.atoms(sp.Sum):
        for limit in s.limits:
            fresh[limit[0]] = sp.Dummy(str(limit[0]), integer=True)
    renamed = _rename_bound(expr, fresh) if fresh else expr
    return renamed.xreplace({N.i: index})


def _rename_bound(expr: sp.Expr, fresh: dict[sp.Symbol, sp.Symbol]) -> sp.Expr:
    if isinstance(expr, sp.Sum):
        summand = _rename_bound(expr.function, fresh)
        limits = []
        for index, lower, upper in expr.limits:
            new = fresh.get(index, index)
            summand = summand.xreplace({index: new})
            limits.append((new, lower, upper))
        return sp.Sum(summand, *limits)
    if not expr.args:
        return expr
    return expr.func(*[_rename_bound(a, fresh) for a in expr.args])


#: Local derivatives a document may define: quantity → (graph stage, variable), at element i.
LOCAL_DERIVATIVES: dict[str, tuple[str, str]] = {
    "dvar_dx": ("var", "x"),
    "dmu_dx": ("mu", "x"),
    "dxhat_dvar": ("xhat", "var"),
    "dxhat_dmu": ("xhat", "mu"),
}


def local_truth(spec: Spec, name: str) -> sp.Expr | None:
    """The truth of a local derivative at element i: SymPy's ``diff`` of the graph stage's
    definition.  A reduction stage s·Σ_k f(x_k) differentiated at element i is s·f'(x_i), and
    stages are differentiated with their other inputs held fixed (∂σ²/∂x_i with μ fixed,
    ∂x̂_i/∂μ with σ² fixed): the partial derivatives of the staged chain rule.  For ∂σ²/∂x_i this
    is also the total derivative (μ a function of x): the extra term is
    −(2/M²)·Σ_k (x_k − μ) = 0.  None where the graph has no such stage (μ, σ² in eval mode)."""
    of, wrt = LOCAL_DERIVATIVES[name]
    graph = Graph.build(spec)
    try:
        stage = graph.stage(of)
    except KeyError:
        return None
    variable = ELEMENT[wrt] if wrt in ELEMENT else SCALAR[wrt]
    local = to_index_notation(sp.diff(stage.definition, variable), N.i)
    return local if stage.elementwise else stage.scale * local
