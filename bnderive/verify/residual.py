"""What a wrong line is off by: truth − line in index notation, short enough to read.

The exact method finds a refuted line at explicit sizes, where truth − line is a long expression
in x₀₀, g₀₁, …  A student wants the difference the way the posts write the maths: per element i,
with sums over the reduction set.  Here it is computed for every M, the way ``every_m`` proves
lines, but in *centred* coordinates u_k = x_k − μ, in which the forward graph's own reductions
vanish or are the variance (training mode):

    Σ_k u_k = 0,        Σ_k u_k² = M σ²   ((M − 1) σ² with Bessel's correction)

so Σ_k g_k x_k never appears beside −μ Σ_k g_k: both are Σ_k g_k (x_k − μ).  The result is put
over a common denominator, its common factor pulled out (``factor_terms``), and written back with
u_i = x_i − μ and √(σ²+ε) for the eliminated root.  It is a description, never a verdict: the
verdict comes from the methods of ``verify``.
"""

from __future__ import annotations

import sympy as sp

from bnderive.core import notation as N
from bnderive.core.derive import inline
from bnderive.core.spec import Spec
from bnderive.core.sums import SumRewriter
from bnderive.read.forms import Equation, Form
from bnderive.verify.every_m import definitions_of
from bnderive.verify.lines import truth_of

_U = sp.IndexedBase("u")  # u_k = x_k − μ
_K = sp.Symbol("k", integer=True)  # the canonical index of a reduction, as printed
_R = sp.Symbol("r", positive=True)  # √(σ²+ε) (or √σ² with ε outside the root)


class _CentredReducer(SumRewriter):
    """Σ_k over centred summands: Σ u = 0, Σ u² = Mσ², anything else kept as a sum."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec

    def reduction(self, summand: sp.Expr, index: sp.Symbol) -> sp.Expr:
        summand = summand.xreplace({index: _K})
        if not self.spec.norm.centred:  # RMSNorm: no μ; its statistic is ms = (1/M) Σ x²
            if summand == N.x[_K] ** 2:
                return N.M * (N.ms if self.spec.eps_inside else _R**2)
            return sp.Sum(summand, (_K, 1, N.M))
        if self.spec.training:
            if summand == _U[_K]:
                return sp.Integer(0)
            if summand == _U[_K] ** 2:
                divisor = N.M - 1 if self.spec.unbiased else N.M
                return divisor * (
                    N.var if self.spec.eps_inside and not self.spec.eps_zero else _R**2
                )
        return sp.Sum(summand, (_K, 1, N.M))


def _centre(expr: sp.Expr, spec: Spec) -> sp.Expr:
    """x_k → u_k + μ for every x in ``expr`` (RMSNorm, which has no μ, keeps x)."""
    if not spec.norm.centred:
        return expr
    return expr.replace(
        lambda e: isinstance(e, sp.Indexed) and e.base == N.x,
        lambda e: _U[e.indices] + N.mu,
    )


def _radical_out(expr: sp.Expr, spec: Spec) -> sp.Expr:
    """ε = r² − σ² (ε inside the root) or σ² = r² (ε outside, or ε = 0): the root becomes a
    symbol."""
    stat = N.var if spec.norm.centred else N.ms  # RMSNorm's root is √(ms + ε)
    if spec.eps_zero:
        return expr.xreplace({stat: _R**2, N.eps: sp.Integer(0)})
    return expr.xreplace({N.eps: _R**2 - stat} if spec.eps_inside else {stat: _R**2})


def _factored(expr: sp.Expr) -> sp.Expr:
    """The numerator factored over the integers (sums as opaque generators), the denominator
    kept: (γ − 1)·(…) rather than six terms.

    Which way round a factor is written (−γ·(A − B) or γ·(B − A)) follows the order of the
    generators, which SymPy sorts by name: the sums' stand-ins are named in the sums' own
    canonical order (``default_sort_key``), never in the order of a set of them (which follows
    the string hashes, so PYTHONHASHSEED) nor by a global counter (``Dummy()``'s Dummy_N, which
    follows how many were made before)."""
    ordered = sorted(expr.atoms(sp.Sum), key=sp.default_sort_key)
    sums = {s: sp.Dummy(f"sum{n}") for n, s in enumerate(ordered)}
    back = {d: s for s, d in sums.items()}
    numerator, denominator = sp.fraction(expr.xreplace(sums))
    return (sp.factor(numerator) / sp.factor(denominator)).xreplace(back)


def index_residual(form: Form, eq: Equation, base: Spec | None = None) -> sp.Expr | None:
    """truth − (the line ``eq`` of ``form`` with the lines before it substituted), for every M,
    in index notation; None when it cannot be written (a sum the rewrite does not know)."""
    spec = form.spec(base or Spec())
    truth = truth_of(form.order, spec)
    defs = definitions_of(form, truth)
    reference: sp.Expr | None = None
    references = dict((b, a) for a, b in getattr(form, "references", ()))
    for line in form.equations:
        if line.number == references.get(eq.number):  # a document's line against its reference
            reference = inline(line.expr, defs)
        defs[line.store_name] = (line.elementwise, line.expr)
        if line is eq:
            break
    if reference is None and eq.kind == "quantity" and eq.name in truth:
        reference = truth.inline(eq.name)
    if reference is None:
        return None
    try:
        diff = _radical_out(_centre(reference - inline(eq.expr, defs), spec), spec)
        reduced = _radical_out(_CentredReducer(spec).rewrite(diff), spec)
    except (ValueError, TypeError):
        return None
    leftover = _factored(sp.cancel(sp.together(reduced)))
    stat = N.var if spec.norm.centred else N.ms
    root = sp.sqrt(stat + N.eps) if spec.eps_inside and not spec.eps_zero else sp.sqrt(stat)
    return leftover.replace(
        lambda e: isinstance(e, sp.Indexed) and e.base == _U,
        lambda e: N.x[e.indices] - N.mu,
    ).xreplace({_R: root})


__all__ = ["index_residual"]
