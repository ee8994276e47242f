"""Emit a proven form of BatchNorm's relatives (LayerNorm, InstanceNorm, GroupNorm, RMSNorm).

The mathematics of one reduction set is the same as BatchNorm's (``numpy_module``); what a
family changes is where its sets lie in the input and how γ meets them.  Each family gets a
*layout*: a reshaped view of the input in which every reduction set is a block of trailing axes,

    family     view of x                     sums over   γ viewed as        dγ, dβ add over
    layer      (R, M), M = gamma.size        axis 1      (1, M)             axis 0 (the sets)
    rms        (R, M), M = gamma.size        axis 1      (1, M)             axis 0
    instance   (N, C, H·W)                   axis 2      (1, C, 1)          axis 0 (the samples)
    group      (N, G, C/G, H·W)              axes 2, 3   (1, G, C/G, 1)     axes 0, 3

(LayerNorm and RMSNorm normalize over the trailing axes that γ has, as ``nn.LayerNorm``'s
normalized_shape: a sample of any layout is one row of the (R, M) view.)  Per set, the three
kinds of mathematics (``Norm.per_set``) print as:

* one γ per set (InstanceNorm): exactly BatchNorm's per-set coefficients,
  dx = c1·dout + c2·(x − μ) + c3, and dγ = the set's Σ dout·x̂, added over the samples;
* γ per element (LayerNorm, GroupNorm): the sums see γ_k inside, so the code forms
  dxhat = γ·dout (∂L/∂x̂) once and writes dx = c1·dxhat + c2·(x − μ) + c3 with c1..c3 per set;
  dγ and dβ are elementwise (dout·x̂, dout), added over every set that shares the γ;
* no mean (RMSNorm): the statistic is the mean square ms = Σ x²/M, and x itself plays the part
  of x − μ: dx = c1·dxhat + c2·x + c3.

Everything is printed by :class:`FamilyEmitter` (the NumPy printer with the layout's views,
reductions and final sums), from the same plan as BatchNorm's code: the form's lines inlined,
centred, its sums turned into named reductions, the coefficients read off by differentiation
and shared by ``sympy.cse``.  BatchNorm's own modules are not printed here (their code, and
golden files, are ``numpy_module``'s).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sympy as sp

from bnderive.core import notation as N
from bnderive.core.derive import derive, inline
from bnderive.core.graph import Graph
from bnderive.core.spec import Mode, Norm, Spec, conventions_text
from bnderive.emit.numpy_module import (
    _DOUT_BASE,
    _XMU_BASE,
    BETA,
    C1,
    C2,
    C3,
    DBETA,
    DGAMMA,
    DOUT,
    DX,
    EPS,
    GAMMA,
    INV_STD,
    M_SYM,
    MU,
    OUT,
    VAR,
    XHAT,
    XMU,
    Assign,
    DocLine,
    FunctionDef,
    Module,
    NumPyEmitter,
    Reduce,
    Return,
    Update,
    UserText,
    _reduction_name,
    _Rewriter,
    _supported,
)
from bnderive.errors import FormError
from bnderive.read.forms import Form

# -- the symbols the families add -------------------------------------------------------------------
#: The input itself: RMSNorm's "centred" input (it has no mean), and the array being viewed.
X = sp.Symbol("x")
#: ∂L/∂x̂ = γ·dout, elementwise: the families whose γ varies within a set sum it, not dout.
DXHAT = sp.Symbol("dxhat")
#: RMSNorm's statistic and its reciprocal root, 1/√(ms + ε).
MS = sp.Symbol("ms")
INV_RMS = sp.Symbol("inv_rms", positive=True)
#: GroupNorm's number of groups, a constant of the emitted module.
G_SYM = sp.Symbol("G")
#: The shape of the input (the outputs are viewed back to it) and of γ (LayerNorm's dγ).
SHAPE = sp.Symbol("shape")
GAMMA_SHAPE = sp.Symbol("gamma_shape")
_GAMMA_BASE = sp.IndexedBase("gamma")


# -- the layout ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Layout:
    """Where a family's reduction sets lie: the view of the input, the axes of one set, how γ
    broadcasts against the view, and the axes dγ and dβ are summed over at the end."""

    norm: Norm
    groups: int = 1

    def __post_init__(self) -> None:
        if self.norm is Norm.BATCH:
            raise ValueError("BatchNorm's modules are numpy_module's")

    @property
    def rows(self) -> bool:
        """LayerNorm and RMSNorm: the (R, M) view, one set per row."""
        return self.norm in (Norm.LAYER, Norm.RMS)

    @property
    def set_axes(self) -> tuple[int, ...]:
        return {Norm.LAYER: (1,), Norm.RMS: (1,), Norm.INSTANCE: (2,), Norm.GROUP: (2, 3)}[
            self.norm
        ]

    @property
    def letters(self) -> tuple[str, str]:
        """einsum's subscripts of the view and of one value per set."""
        return {
            Norm.LAYER: ("rm", "r"),
            Norm.RMS: ("rm", "r"),
            Norm.INSTANCE: ("ncs", "nc"),
            Norm.GROUP: ("ngks", "ng"),
        }[self.norm]

    @property
    def affine_axes(self) -> tuple[int, ...]:
        """The axes of the view that dγ and dβ are summed over: those γ does not index."""
        return (0, 3) if self.norm is Norm.GROUP else (0,)

    @property
    def symbols(self) -> tuple[sp.Symbol, sp.Symbol, sp.Symbol]:
        """(the centred input, the statistic under the root, its reciprocal root)."""
        if self.norm.centred:
            return XMU, VAR, INV_STD
        return X, MS, INV_RMS

    def plan_spec(self, form: Form) -> Spec:
        """A small spec of this family with the form's conventions (sizes do not matter)."""
        if self.rows:
            base = Spec(Mode.PER_ACTIVATION, n=2, c=2, norm=self.norm)
        else:
            base = Spec(Mode.SPATIAL, n=2, c=2, h=2, w=1, norm=self.norm, groups=1)
        return form.spec(base)

    def describe(self) -> str:
        """The layout in words, for the module's docstring."""
        if self.rows:
            return (
                "x is (…, *gamma.shape): one reduction set per index of the leading axes, over "
                "the trailing axes γ has; viewed as (R, M) with M = gamma.size, sums over axis 1"
            )
        if self.norm is Norm.INSTANCE:
            return (
                "x is (N, C, H, W) (or (N, C, L)): one reduction set per sample and channel; "
                "viewed as (N, C, H·W), sums over axis 2; M = H·W"
            )
        return (
            f"x is (N, C, H, W) (or (N, C, L)) with G = {self.groups} groups of C/G channels: "
            "one reduction set per sample and group; viewed as (N, G, C/G, H·W), sums over "
            "axes (2, 3); M = C/G·H·W"
        )


# -- statement nodes ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class View:
    """The input viewed so that every reduction set is a block of trailing axes."""

    array: sp.Symbol


@dataclass(frozen=True)
class ViewLike:
    """``array`` viewed with the shape of another (dout like the viewed x)."""

    array: sp.Symbol
    like: sp.Symbol


@dataclass(frozen=True)
class ShapeOf:
    array: sp.Symbol


@dataclass(frozen=True)
class SetSize:
    """M, the elements of one reduction set, as a Python int."""

    array: sp.Symbol


@dataclass(frozen=True)
class GammaView:
    """γ (and β) viewed to broadcast against the view."""

    array: sp.Symbol


@dataclass(frozen=True)
class AffineSum:
    """dγ or dβ: the per-set (or per-element) parts added over the axes γ does not index,
    shaped like γ."""

    value: Any


@dataclass(frozen=True)
class Restore:
    """An array of the view shaped back like the input."""

    array: sp.Symbol


class FamilyEmitter(NumPyEmitter):
    """NumPyEmitter with a family's layout: its views, its reductions and its final sums."""

    printmethod = "_bnderive_family"
    _default_settings = {**NumPyEmitter._default_settings, "layout": None}

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        super().__init__(settings)
        self.layout: Layout = self._settings["layout"]

    def _kept(self) -> str:
        """Indexing that turns one value per set back into the view's rank (keepdims)."""
        extra = len(self.layout.set_axes)
        return "[" + ", ".join(["...", *(["None"] * extra)]) + "]"

    def _print_Reduce(self, node: Reduce) -> str:
        """Σ over one set: einsum for a product of two arrays, else np.sum(keepdims=True)."""
        factors = sp.Mul.make_args(node.expr)
        if len(factors) == 2 and all(isinstance(f, sp.Symbol) for f in factors):
            operands = [self._print(f) for f in factors]
        elif isinstance(node.expr, sp.Pow) and node.expr.exp == 2 and node.expr.base.is_Symbol:
            operands = [self._print(node.expr.base)] * 2
        else:
            axes = self.layout.set_axes
            return f"np.sum({self._print(node.expr)}, axis={axes}, keepdims=True)"
        full, kept = self.layout.letters
        spec = ",".join([full] * len(operands)) + "->" + kept
        return f'np.einsum("{spec}", {", ".join(operands)}){self._kept()}'

    def _print_View(self, node: View) -> str:
        name = self._print(node.array)
        if self.layout.rows:
            return f"{name}.reshape(-1, M)"
        if self.layout.norm is Norm.INSTANCE:
            return f"{name}.reshape({name}.shape[0], {name}.shape[1], -1)"
        return f"{name}.reshape({name}.shape[0], G, {name}.shape[1] // G, -1)"

    def _print_ViewLike(self, node: ViewLike) -> str:
        return f"{self._print(node.array)}.reshape({self._print(node.like)}.shape)"

    def _print_ShapeOf(self, node: ShapeOf) -> str:
        return f"{self._print(node.array)}.shape"

    def _print_SetSize(self, node: SetSize) -> str:
        name = self._print(node.array)
        if self.layout.rows:
            return f"{name}.size"
        return " * ".join(f"{name}.shape[{a}]" for a in self.layout.set_axes)

    def _print_GammaView(self, node: GammaView) -> str:
        name = self._print(node.array)
        shape = {
            Norm.LAYER: "1, -1",
            Norm.RMS: "1, -1",
            Norm.INSTANCE: "1, -1, 1",
            Norm.GROUP: "1, G, -1, 1",
        }[self.layout.norm]
        return f"{name}.reshape({shape})"

    def _print_AffineSum(self, node: AffineSum) -> str:
        axes = self.layout.affine_axes
        axis = str(axes[0]) if len(axes) == 1 else str(axes)
        shape = "gamma_shape" if self.layout.rows else "-1"
        return f"np.sum({self._print(node.value)}, axis={axis}).reshape({shape})"

    def _print_Restore(self, node: Restore) -> str:
        return f"{self._print(node.array)}.reshape(shape)"


# -- from a form to statements -----------------------------------------------------------------------
def _with_dxhat(expr: sp.Expr) -> sp.Expr:
    """dout·γ → dxhat where the product appears (γ per element); ``expr`` itself otherwise."""
    swapped = expr.xreplace({DOUT: DXHAT / GAMMA})
    return expr if swapped.has(GAMMA) else swapped


class _FamilyRewriter(_Rewriter):
    """Sums over one set → named reductions of the view's arrays (dxhat where γ meets dout)."""

    def __init__(self, layout: Layout, divisor: sp.Expr) -> None:
        super().__init__(divisor)
        self.layout = layout
        self.centred, self.statistic, _ = layout.symbols

    def reduction(self, summand: sp.Expr, index: sp.Symbol) -> sp.Expr:
        element = summand.xreplace(
            {
                _XMU_BASE[index]: self.centred,
                _DOUT_BASE[index]: DOUT,
                _GAMMA_BASE[index]: GAMMA,
            }
        )
        if self.layout.norm.affine_per_element:
            element = _with_dxhat(element)
        if element.has(sp.Indexed) or index in element.free_symbols:
            raise FormError(f"the summand {summand} cannot be emitted as a reduction")
        if element == self.centred**2:  # the statistic, computed once: σ²·divisor or ms·M
            return self.divisor * self.statistic
        name = _reduction_name(element) or f"sum_{len(self.reductions) + 1}"
        symbol = sp.Symbol(name)
        self.reductions[symbol] = element
        return symbol


@dataclass
class FamilyPlan:
    """One form's backward for a family: reductions, per-set statements, dx, dγ, dβ."""

    reductions: dict[sp.Symbol, sp.Expr]
    per_set: list[tuple[sp.Symbol, sp.Expr]]
    coefficients: tuple[sp.Expr, sp.Expr, sp.Expr] | None  # of (dout or dxhat, centred, 1)
    dx: sp.Expr | None  # elementwise, when the form's dx is not affine in them
    dgamma: sp.Expr
    dbeta: sp.Expr | None  # RMSNorm: no β
    needs_statistic: bool
    uses_dxhat: bool
    borrowed: tuple[str, ...]


def plan_family(form: Form, layout: Layout) -> FamilyPlan:
    """The form's dx, dγ, dβ for ``layout``: named reductions, per-set coefficients, one pass."""
    _supported(form)
    norm = layout.norm
    if form.norm.per_set != norm.per_set:
        raise FormError(
            f"{form.name} is a derivation for {form.norm.title}; {norm.title} needs a form of "
            f"its own per-set mathematics (emit --norm {form.norm.value} writes this one)."
        )
    definitions, borrowed = _family_definitions(form, layout)
    divisor = M_SYM - 1 if form.unbiased else M_SYM
    lowering = _Lowering(form, layout, definitions, divisor if norm.centred else M_SYM)
    centred, statistic, _ = layout.symbols
    dx = lowering.lower(N.reference("dx", N.i))
    index = N.i if norm.affine_per_element else None
    dgamma = sp.expand(lowering.lower(N.reference("dgamma", index)))
    dbeta = sp.expand(lowering.lower(N.reference("dbeta", index))) if norm.has_beta else None
    if not norm.affine_per_element:
        for value in (dgamma, dbeta):
            if value is not None and (value.has(DOUT) or value.has(centred)):
                raise FormError(f"{form.name}: dγ and dβ must be sums, one value per set")
    dx, lead, coefficients = _affine_in_lead(dx, layout)
    per_set_outputs = [] if norm.affine_per_element else [dgamma, dbeta]
    per_set, coeffs, dx_elementwise, rest = _shared_subexpressions(
        dx, coefficients, [v for v in per_set_outputs if v is not None]
    )
    if coeffs is None:
        lead = DOUT
    if not norm.affine_per_element:
        dgamma = rest[0]
        dbeta = rest[1] if len(rest) > 1 else None
    reductions = lowering.rewriter.reductions
    everything = [e for _, e in per_set] + [
        e for e in (*(coeffs or ()), dx_elementwise, dgamma, dbeta) if e is not None
    ]
    return FamilyPlan(
        reductions=reductions,
        per_set=per_set,
        coefficients=coeffs,
        dx=dx_elementwise,
        dgamma=dgamma,
        dbeta=dbeta,
        needs_statistic=any(e.has(statistic) for e in everything),
        uses_dxhat=lead is DXHAT
        or any(e.has(DXHAT) for e in reductions.values())
        or any(e.has(DXHAT) for e in everything),
        borrowed=tuple(borrowed),
    )


def _family_definitions(
    form: Form, layout: Layout
) -> tuple[dict[str, tuple[bool, sp.Expr]], list[str]]:
    """What a name in the form's lines stands for (name → (elementwise, expression)): the forward
    stages, the form's own lines, and the truth's dγ/dβ where the form leaves them out (the
    names it borrows, returned second)."""
    graph = Graph.build(layout.plan_spec(form))
    truth = derive(graph)
    definitions: dict[str, tuple[bool, sp.Expr]] = {}
    for stage in graph.stages:
        if stage.elementwise:
            definitions[stage.name] = (True, stage.at(N.i))
    wanted = ("dgamma", "dbeta") if layout.norm.has_beta else ("dgamma",)
    borrowed = [n for n in wanted if not any(eq.name == n for eq in form.equations)]
    for name in borrowed:
        definitions[name] = (truth[name].elementwise, truth[name].expr)
    for eq in form.equations:
        definitions[eq.name] = (eq.elementwise, eq.expr)
    if borrowed:  # the truth's adjoints refer to its own earlier adjoints by name
        for adj in truth.adjoints:
            definitions.setdefault(adj.name, (adj.elementwise, adj.expr))
    return definitions, borrowed


class _Lowering:
    """A quantity of the form, inlined and written in the emitted module's per-set symbols:
    sums become named reductions, x, g, γ at i the view's arrays, ε the reciprocal root."""

    def __init__(
        self,
        form: Form,
        layout: Layout,
        definitions: dict[str, tuple[bool, sp.Expr]],
        divisor: sp.Expr,
    ) -> None:
        self.form, self.layout, self.definitions = form, layout, definitions
        self.rewriter = _FamilyRewriter(layout, divisor)

    def lower(self, expr: sp.Expr) -> sp.Expr:
        norm, form = self.layout.norm, self.form
        centred, statistic, inv_root = self.layout.symbols
        stat_symbol = N.var if norm.centred else N.ms
        expr = inline(expr, self.definitions)
        mapping: dict[sp.Basic, sp.Expr] = {}
        for node in expr.atoms(sp.Indexed):
            base, index = str(node.base.label), node.indices[0]
            if base == "x":  # centring (RMSNorm: x is its own "centred" input)
                mapping[node] = (MU if norm.centred else 0) + _XMU_BASE[index]
            elif base == "g":
                mapping[node] = _DOUT_BASE[index]
            elif base == "gamma" and norm.affine_per_element:
                mapping[node] = _GAMMA_BASE[index]
            else:
                raise FormError(f"{form.name}: {node} cannot be emitted (unknown array)")
        expr = self.rewriter.rewrite(expr.xreplace(mapping))
        expr = expr.xreplace(
            {_XMU_BASE[N.i]: centred, _DOUT_BASE[N.i]: DOUT, _GAMMA_BASE[N.i]: GAMMA, N.M: M_SYM}
        )
        if expr.has(sp.Indexed):
            raise FormError(f"{form.name}: an element other than i is left in {expr}")
        # ε = root⁻² − statistic: the radicals become powers of the reciprocal root.
        expr = expr.xreplace({N.eps: inv_root**-2 - stat_symbol})
        return expr.xreplace({N.mu: MU, stat_symbol: statistic, N.gamma: GAMMA, N.beta: BETA})


def _affine_in_lead(
    dx: sp.Expr, layout: Layout
) -> tuple[sp.Expr, sp.Expr, tuple[sp.Expr, sp.Expr, sp.Expr] | None]:
    """(dx, lead, (c1, c2, c3)) with dx = c1·lead + c2·centred + c3, lead = dout (one γ per
    set) or dxhat = γ·dout (γ per element), and per-set coefficients; (…, None) when dx is not
    affine in them."""
    norm = layout.norm
    centred = layout.symbols[0]
    lead = DOUT
    if norm.affine_per_element:
        swapped = sp.expand(dx.xreplace({DOUT: DXHAT / GAMMA}))
        if not swapped.has(GAMMA) and not swapped.has(DOUT):
            dx, lead = swapped, DXHAT
    c1, c2 = sp.diff(dx, lead), sp.diff(dx, centred)
    c3 = dx.xreplace({lead: 0, centred: 0})
    arrays = (DOUT, DXHAT, centred) + ((GAMMA,) if norm.affine_per_element else ())
    affine = not any(c.has(*arrays) for c in (c1, c2, c3)) and (
        sp.expand(dx - (c1 * lead + c2 * centred + c3)) == 0
    )
    return dx, lead, (c1, c2, c3) if affine else None


def _shared_subexpressions(
    dx: sp.Expr,
    coefficients: tuple[sp.Expr, sp.Expr, sp.Expr] | None,
    per_set_outputs: list[sp.Expr],
) -> tuple[
    list[tuple[sp.Symbol, sp.Expr]],
    tuple[sp.Expr, sp.Expr, sp.Expr] | None,
    sp.Expr | None,
    list[sp.Expr],
]:
    """Common subexpressions of the per-set values, named t0, t1, …: (the per-set statements,
    the coefficients of dx or None, the elementwise dx when it is not affine or None, the
    per-set outputs).  A subexpression of M alone (1/M) would be a Python float: it is put back
    into its uses."""
    if coefficients is not None:
        items = [sp.factor_terms(sp.expand(c)) for c in coefficients]
        items += [sp.factor_terms(v) for v in per_set_outputs]
        replacements, reduced = sp.cse(items, symbols=sp.numbered_symbols("t"), optimizations=None)
        coeffs: tuple[sp.Expr, sp.Expr, sp.Expr] | None = tuple(reduced[:3])  # type: ignore[assignment]
        dx_elementwise, rest = None, reduced[3:]
    else:
        items = [dx, *per_set_outputs]
        replacements, reduced = sp.cse(items, symbols=sp.numbered_symbols("t"))
        coeffs, dx_elementwise, rest = None, reduced[0], reduced[1:]
    back: dict[sp.Symbol, sp.Expr] = {}
    kept = []
    for name, value in replacements:
        value = value.xreplace(back)
        if value.free_symbols <= {M_SYM}:
            back[name] = value
        else:
            kept.append((name, value))
    if coeffs is not None:
        coeffs = tuple(c.xreplace(back) for c in coeffs)  # type: ignore[assignment]
    if dx_elementwise is not None:
        dx_elementwise = dx_elementwise.xreplace(back)
    return kept, coeffs, dx_elementwise, [e.xreplace(back) for e in rest]


# -- the module ----------------------------------------------------------------------------------------
_REDUCTION_COMMENTS = {
    "sum_dout": "Σ dout, per set",
    "sum_dout_xmu": "Σ dout·(x − μ), per set",
    "sum_dxhat": "Σ dxhat, per set",
    "sum_dxhat_xmu": "Σ dxhat·(x − μ), per set",
    "sum_dxhat_x": "Σ dxhat·x, per set",
    "sum_xmu": "Σ (x − μ): zero exactly, kept: it corrects the rounding of μ",
}


def _head(layout: Layout, array: sp.Symbol, view: bool) -> list[Any]:
    """G (GroupNorm), the input's shape, M and the view of ``array``, in the order each needs."""
    out: list[Any] = []
    if layout.norm is Norm.GROUP:
        out.append(Assign(G_SYM, sp.Integer(layout.groups), "G: the groups this module is for"))
    out.append(Assign(SHAPE, ShapeOf(DOUT if not view else array), "the input's shape"))
    size = Assign(M_SYM, SetSize(GAMMA if layout.rows else array), "M: elements per set, an int")
    if layout.rows:
        out += [size]
        if view:
            out.append(Assign(array, View(array), "one reduction set per row"))
    else:
        if view:
            sets = "(n, c)" if layout.norm is Norm.INSTANCE else "(n, g)"
            out.append(Assign(array, View(array), f"one reduction set per {sets}"))
        out.append(size)
    return out


def _statistics(layout: Layout, divisor: sp.Expr) -> list[Any]:
    if not layout.norm.centred:
        return [
            Assign(MS, Reduce(X**2) / M_SYM, "ms = Σ x² / M: the mean square (no mean)"),
            Assign(INV_RMS, 1 / sp.sqrt(MS + EPS), "1/√(ms + ε)"),
        ]
    return [
        Assign(MU, Reduce(X) / M_SYM, "μ = Σ x / M, per set"),
        Assign(XMU, X - MU, "the centred input; the variance is never Σx² − (Σx)²/M"),
        Assign(VAR, Reduce(XMU**2) / divisor, "σ² = Σ (x − μ)² / " + str(divisor)),
        Assign(INV_STD, 1 / sp.sqrt(VAR + EPS), "1/√(σ² + ε)"),
    ]


def _backward_body(plan: FamilyPlan, layout: Layout, own: bool) -> list[Any]:
    """The statements after the statistics are known; ``own``: the centred input is this
    function's own temporary (it may be updated in place once dγ is taken)."""
    centred, _, _ = layout.symbols
    body: list[Any] = [Assign(GAMMA, GammaView(GAMMA), "γ against the view")]
    if plan.uses_dxhat:
        body.append(Assign(DXHAT, GAMMA * DOUT, "∂L/∂x̂ = γ·dout, per element"))
    for name, element in plan.reductions.items():
        body.append(Assign(name, Reduce(element), _REDUCTION_COMMENTS.get(str(name), "")))
    for k, (name, value) in enumerate(plan.per_set):
        body.append(Assign(name, value, "per-set subexpression" if k == 0 else ""))
    # dγ and dβ first: a per-element dγ reads x − μ, which the dx pass may overwrite.
    body.append(Assign(DGAMMA, AffineSum(plan.dgamma), "dγ: the sets' parts added up"))
    if plan.dbeta is not None:
        body.append(Assign(DBETA, AffineSum(plan.dbeta), "dβ: the sets' parts added up"))
    if plan.coefficients is not None:
        lead = DXHAT if plan.uses_dxhat and layout.norm.affine_per_element else DOUT
        c1, c2, c3 = plan.coefficients
        # A coefficient that is exactly 0 (RMSNorm has no c3: no mean to subtract) is left out.
        terms = [f"c1·{lead}"] + [t for t, c in ((f"c2·{centred}", c2), ("c3", c3)) if c != 0]
        names = "c1..c3" if len(terms) == 3 else ", ".join(t.split("·")[0] for t in terms)
        body.append(Assign(C1, c1, f"dx = {' + '.join(terms)}, {names} per set"))
        body += [Assign(name, c) for name, c in ((C2, c2), (C3, c3)) if c != 0]
        if own and c2 != 0:
            body.append(Update(centred, "*", C2, f"{centred} is ours: reuse it for c2·{centred}"))
            if c3 != 0:
                body.append(Update(centred, "+", C3))
            body.append(Assign(DX, C1 * lead))
            body.append(Update(DX, "+", centred))
        else:
            body.append(Assign(DX, C1 * lead))
            if c2 != 0:
                body.append(Update(DX, "+", C2 * centred))
            if c3 != 0:
                body.append(Update(DX, "+", C3))
    else:
        body.append(Assign(DX, plan.dx))
    outputs = (Restore(DX), DGAMMA) + ((DBETA,) if plan.dbeta is not None else ())
    body.append(Return(outputs))
    return body


def _conventions(form: Form, norm: Norm) -> str:
    words = conventions_text(form.training, form.unbiased, form.eps_inside, norm=norm)
    root = "x̂ = (x − μ)/√(σ² + ε)" if norm.centred else "x̂ = x/√(mean(x²) + ε)"
    return f"{words}: {root}"


def build_family_module(form: Form, layout: Layout, version: str) -> Module:
    plan = plan_family(form, layout)
    divisor = M_SYM - 1 if form.unbiased else M_SYM
    functions = (
        _family_forward(layout, divisor),
        _family_backward(plan, layout, divisor),
        _family_backward_cached(plan, layout, divisor),
    )
    return Module(tuple(_family_header(form, layout, plan, version)), functions)


def _cache_of(layout: Layout) -> tuple[sp.Symbol, ...]:
    """What forward returns for backward_cached."""
    return (XMU, MU, INV_STD) if layout.norm.centred else (X, INV_RMS)


def _gamma_shape(layout: Layout) -> list[Any]:
    return [Assign(GAMMA_SHAPE, ShapeOf(GAMMA), "γ's shape, for dγ and dβ")] if layout.rows else []


def _family_forward(layout: Layout, divisor: sp.Expr) -> FunctionDef:
    norm = layout.norm
    centred, _, inv_root = layout.symbols
    beta = norm.has_beta
    cache = _cache_of(layout)
    affine = [Assign(GAMMA, GammaView(GAMMA), "γ against the view")]
    if beta:
        affine.append(Assign(BETA, GammaView(BETA)))
    y = GAMMA * XHAT + BETA if beta else GAMMA * XHAT
    return FunctionDef(
        "forward",
        ("x", "gamma", "beta", "eps") if beta else ("x", "gamma", "eps"),
        f"{norm.title} forward: out = γ·x̂{' + β' if beta else ''}, every set by its own "
        "statistics.\n\n"
        f"Returns out and the cache ({', '.join(map(str, cache))}) for backward_cached, in "
        "the view's\nshape (one value per set for the statistics).",
        tuple(
            _head(layout, X, view=True)
            + _statistics(layout, divisor)
            + [Assign(XHAT, centred * inv_root, "x̂, per element")]
            + affine
            + [
                Assign(OUT, y, "y = γ·x̂ + β" if beta else "y = γ·x̂"),
                Return((Restore(OUT), sp.Tuple(*cache))),
            ]
        ),
    )


def _family_backward(plan: FamilyPlan, layout: Layout, divisor: sp.Expr) -> FunctionDef:
    grads = "∂L/∂x, ∂L/∂γ" + (", ∂L/∂β" if layout.norm.has_beta else "")
    return FunctionDef(
        "backward",
        ("dout", "x", "gamma", "eps"),
        f"{grads} from the upstream gradient dout = ∂L/∂y and the input x.",
        tuple(
            _head(layout, X, view=True)
            + _gamma_shape(layout)
            + _statistics(layout, divisor)
            + [Assign(DOUT, ViewLike(DOUT, X), "dout in the same view")]
            + _backward_body(plan, layout, own=layout.norm.centred)
        ),
    )


def _family_backward_cached(plan: FamilyPlan, layout: Layout, divisor: sp.Expr) -> FunctionDef:
    centred = layout.symbols[0]
    cache = _cache_of(layout)
    cached: list[Any] = [Assign(cache, sp.Symbol("cache"), "from forward")]
    cached += _head(layout, centred, view=False)
    cached += _gamma_shape(layout)
    cached.append(Assign(DOUT, ViewLike(DOUT, centred), "dout in the cache's view"))
    if plan.needs_statistic:
        if layout.norm.centred:
            cached.append(Assign(VAR, Reduce(XMU**2) / divisor, "σ², used by this form"))
        else:
            cached.append(Assign(MS, Reduce(X**2) / M_SYM, "ms, used by this form"))
    return FunctionDef(
        "backward_cached",
        ("dout", "cache", "gamma"),
        f"The same gradients from forward's cache ({', '.join(map(str, cache))}); the cache "
        "is not modified.",
        tuple(cached + _backward_body(plan, layout, own=False)),
    )


def _family_header(form: Form, layout: Layout, plan: FamilyPlan, version: str) -> list[DocLine]:
    """The module's docstring: the form (its text as user text), conventions, layout, lines."""
    from bnderive.core import printing as display

    norm = layout.norm
    beta = norm.has_beta
    where = form.path or form.name
    groups = f" (G = {layout.groups})" if norm is Norm.GROUP else ""
    header: list[DocLine] = [
        UserText(
            f"{where}: the form's name",
            form.name,
            f"{norm.title}{groups} backward, emitted by bnderive {version} from the form '",
            "':",
        ),
        UserText(f"{where}: the form's title", form.title, "  "),
        *(UserText(f"{where}: source {k}", s, "  source: ") for k, s in enumerate(form.sources, 1)),
        f"Conventions: {_conventions(form, norm)}.",
        f"Layout: {layout.describe()}.",
        f"γ{', β' if beta else ''}: {_affine_words(layout)}.",
        "The form's lines, as proven for one reduction set (∂L/∂y is dout):",
        *(
            UserText(f"{where}: line {eq.number}", f"{eq.label} = {display.unicode(eq.expr)}", "  ")
            for eq in form.equations
        ),
    ]
    if plan.borrowed:
        header.append(f"  {', '.join(plan.borrowed)} not defined by the form: the ground truth's.")
    header += [
        "Verified by bnderive before it was written, in a separate process: exact rational",
        "arithmetic at a point where every set's root is rational, and float64 at adversarial",
        "random inputs, against the ground truth of the whole layer. dtype is preserved",
        "(float32 in, float32 out); pass eps as a Python float.",
    ]
    return header


def _affine_words(layout: Layout) -> str:
    if layout.norm is Norm.INSTANCE:
        return "one per channel (C,), the same for every element of a set; dγ adds the sets' sums"
    if layout.norm is Norm.GROUP:
        return (
            "one per channel (C,), so within a set (a group) γ varies from channel to channel; "
            "dγ adds dout·x̂ over the samples and H·W"
        )
    return "shaped like the normalized axes, one per element of a set; dγ adds over the sets"


def render_family(form: Form, layout: Layout, version: str) -> str:
    """The module's source, not yet verified (see ``emitter.emit``)."""
    return FamilyEmitter({"layout": layout}).print_module(
        build_family_module(form, layout, version)
    )


__all__ = ["FamilyEmitter", "FamilyPlan", "Layout", "build_family_module", "plan_family"]
