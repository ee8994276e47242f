"""Proofs for every size M of the reduction set (DESIGN.md §4, "general M").

Truth and form are both index-notation expressions with sums over k = 1..M and M a symbol.
Their difference is rewritten, innermost sum first:

* the radical goes first: ε = r² − σ² (ε inside the root) or σ² = s² (ε outside), so that
  (σ²+ε)^(−3/2) is r⁻³ before anything is expanded;
* each Σ_k is expanded into terms; a factor free of k moves out; a term with δ_kj becomes the
  term at k = j; a constant term becomes M·c; what is left is an opaque reduction, one symbol per
  summand with the index renamed canonically, so Σ_k g_k x_k and Σ_i g_i x_i are the same object;
* the reductions that the forward graph defines are replaced by what they are: Σ x_k = Mμ and
  Σ x_k² = M(σ² + μ²) (or (M−1)σ² + Mμ² with Bessel's correction) in training mode;
* the result is put over a common denominator with ``cancel``.

Zero is a proof for every M: each step is an identity.  A nonzero leftover is not a refutation
(the opaque reductions are treated as independent, which they are for large M but a form may
use a relation the rewrite does not know); it is reported with the leftover term.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import sympy as sp

from bnderive.core import notation as N
from bnderive.core.derive import Truth, inline
from bnderive.core.double_backward import SecondOrderTruth
from bnderive.core.spec import Mode, Spec
from bnderive.core.sums import SumRewriter
from bnderive.read.forms import Equation, Form
from bnderive.verify.readings import combined

if TYPE_CHECKING:
    from bnderive.verify.verdict import Verdict

_K = sp.Symbol("k_", integer=True)  # the canonical summation index of opaque reductions
_R = sp.Symbol("r", positive=True)  # √(σ²+ε), or √σ² when ε is outside the root


@dataclass(frozen=True)
class GeneralResult:
    zero: bool
    leftover: sp.Expr
    #: The opaque reductions of the leftover: symbol → Σ_k summand (summation index ``k_``).
    reductions: dict[sp.Expr, sp.Expr] = field(default_factory=dict)

    def readable(self) -> sp.Expr:
        """The leftover with its opaque reductions written as sums again and r as the root."""
        k = sp.Symbol("k", integer=True)
        back: dict[sp.Expr, sp.Expr] = {}
        for summand, head in self.reductions.items():
            if isinstance(head, sp.Symbol):
                back[head] = N.reduce_sum(summand.xreplace({_K: k}), k)
        return self.leftover.xreplace(back)


class _Reducer(SumRewriter):
    """Rewrites sums into closed forms over opaque reductions."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.opaque: dict[sp.Expr, sp.Symbol] = {}

    def reduction(self, summand: sp.Expr, index: sp.Symbol) -> sp.Expr:
        """Σ_k summand(k): Σx and Σx² from the statistics, anything else an opaque symbol."""
        summand = summand.xreplace({index: _K})  # the canonical index: equal sums meet
        if not self.spec.norm.centred:  # RMSNorm: Σ x_k² = M·ms, and Σ x_k is no statistic
            if summand == N.x[_K] ** 2:
                return N.M * self._var()
        elif self.spec.training:
            x = N.x[_K]
            if summand == x:
                return N.M * N.mu
            if summand == x**2:
                divisor = N.M - 1 if self.spec.unbiased else N.M
                return divisor * self._var() + N.M * N.mu**2
        # Indices other than the summation index stay arguments: Σ_k f(x_k, x_j) depends on j,
        # and an outer Σ_j must see that.
        free = sorted(
            (s for s in summand.free_symbols if s.is_integer and s not in (_K, N.M)), key=str
        )
        if summand not in self.opaque:
            name = f"Σ[{summand}]"
            self.opaque[summand] = sp.Function(name) if free else sp.Symbol(name)
        head = self.opaque[summand]
        return head(*free) if free else head

    def _var(self) -> sp.Expr:
        return _radicand(self.spec) if self.spec.eps_inside and not self.spec.eps_zero else _R**2


def _radicand(spec: Spec) -> sp.Symbol:
    """The statistic under the root: σ², or RMSNorm's mean square."""
    return N.var if spec.norm.centred else N.ms


def prove(truth_expr: sp.Expr, form_expr: sp.Expr, spec: Spec) -> GeneralResult:
    """Is truth − form zero for every M?"""
    diff = truth_expr - form_expr
    stat = _radicand(spec)
    if spec.eps_zero:
        diff = diff.xreplace({N.eps: sp.Integer(0)})
    if spec.eps_inside and not spec.eps_zero:
        diff = diff.xreplace({N.eps: _R**2 - stat})
    else:
        diff = diff.xreplace({stat: _R**2})
    reducer = _Reducer(spec)
    reduced = reducer.rewrite(diff)
    leftover = sp.cancel(sp.together(reduced))
    return GeneralResult(leftover == 0, leftover, dict(reducer.opaque))


def definitions_of(form: Form, truth: Truth | SecondOrderTruth) -> dict[str, tuple[bool, sp.Expr]]:
    defs: dict[str, tuple[bool, sp.Expr]] = {}
    for stage in truth.graph.stages:
        if stage.elementwise:
            defs[stage.name] = (True, stage.at(N.i))
    return defs


@combined
def general_check(form: Form, base: Spec | None = None, mode: Mode | None = None):
    """Every checkable line of ``form`` proved (or not) for all M.

    The lines are read in order, each with the ones before it substituted (``inline``): a line
    that defines a quantity of the truth is proved equal to it (``_prove_line``); an auxiliary
    quantity is not checked; a document's references and lines checked against them, and its
    steps, are proved against what they are compared with afterwards.  The proof does not
    depend on the mode; ``mode`` only labels the verdicts (None: both)."""
    from bnderive.verify.lines import truth_of
    from bnderive.verify.verdict import AUXILIARY, Status, line_verdict, with_steps

    spec = form.spec(base or Spec())
    truth = truth_of(form.order, spec)
    defs = definitions_of(form, truth)
    out = []
    inlined: dict[int, sp.Expr] = {}  # each line with the lines before it substituted, for steps
    for eq in form.equations:
        defs[eq.store_name] = (eq.elementwise, eq.expr)
        if eq.kind in ("reference", "checked"):  # a document's line against a reference: below
            try:
                inlined[eq.number] = inline(eq.expr, defs)
            except (ValueError, TypeError):  # pragma: no cover - circular definitions
                pass
        elif eq.kind != "quantity":  # a name's definition: used by the lines after it
            continue
        elif eq.name not in truth:
            out.append(
                line_verdict(
                    form, eq, Status.UNCHECKED, "general", "all M", detail=AUXILIARY, mode=mode
                )
            )
        else:
            out.append(_prove_line(form, eq, defs, truth, spec, mode, inlined))
    out += _general_references(form, inlined, spec, mode)
    return with_steps(out, _general_steps(form, inlined, spec, mode))


def _prove_line(
    form: Form,
    eq: Equation,
    defs: dict[str, tuple[bool, sp.Expr]],
    truth: Truth | SecondOrderTruth,
    spec: Spec,
    mode: Mode | None,
    inlined: dict[int, sp.Expr],
) -> Verdict:
    """truth(q) − line = 0 for every M, with the line's earlier lines substituted (kept in
    ``inlined`` for the steps): zero is a proof ("holds"); a leftover is "not proved", with the
    leftover as the residual, never a refutation (the opaque reductions are taken as
    independent); a line the rewrite cannot take is undecided, saying why."""
    from bnderive.verify.verdict import Status, line_verdict

    t0 = time.perf_counter()
    try:
        inlined[eq.number] = inline(eq.expr, defs)
        result = prove(truth.inline(eq.name), inlined[eq.number], spec)
    except (ValueError, TypeError) as exc:
        return line_verdict(
            form, eq, Status.UNDECIDED, "general", "all M",
            detail=f"the rewrite for every M does not apply: {exc}",
            seconds=time.perf_counter() - t0, mode=mode,
        )  # fmt: skip
    seconds = time.perf_counter() - t0
    if result.zero:
        return line_verdict(
            form, eq, Status.HOLDS, "general", "all M",
            detail="proved for every M (deltas reduced, sums as opaque reductions, "
            "radical eliminated, cancel)",
            seconds=seconds, mode=mode,
        )  # fmt: skip
    return line_verdict(
        form, eq, Status.UNDECIDED, "general", "all M",
        detail="not proved for every M", residual=str(result.leftover),
        seconds=seconds, mode=mode,
    )  # fmt: skip


def _general_references(
    form: Form, inlined: dict[int, sp.Expr], spec: Spec, mode: Mode | None
) -> list:
    """Each line checked against a reference (μ of the forward graph, the true local derivative,
    the left side of an identity) proved (or not) for every M."""
    return _general_steps(form, inlined, spec, mode, step=False)


def _general_steps(
    form: Form, inlined: dict[int, sp.Expr], spec: Spec, mode: Mode | None, step: bool = True
) -> list:
    """Each step of a document proved (or not) for every M: the line against the line before
    (with ``step`` False: each line against its reference)."""
    from bnderive.verify.lines import form_references, form_steps
    from bnderive.verify.verdict import Status, line_verdict, step_verdict

    out = []
    for before, eq in form_steps(form) if step else form_references(form):
        if before.number not in inlined or eq.number not in inlined:
            continue
        t0 = time.perf_counter()
        try:
            result = prove(inlined[before.number], inlined[eq.number], spec)
        except (ValueError, TypeError) as exc:
            status, detail, residual = (
                Status.UNDECIDED,
                f"the rewrite for every M does not apply: {exc}",
                None,
            )
        else:
            status = Status.HOLDS if result.zero else Status.UNDECIDED
            if step:
                detail = (
                    "follows from the line before for every M"
                    if result.zero
                    else "not proved to follow from the line before for every M"
                )
            else:
                detail = (
                    f"proved equal to {before.text} for every M"
                    if result.zero
                    else f"not proved equal to {before.text} for every M"
                )
            residual = None if result.zero else str(result.leftover)
        make = step_verdict if step else (lambda f, _b, e, *a, **k: line_verdict(f, e, *a, **k))
        out.append(
            make(
                form,
                before,
                eq,
                status,
                "general",
                "all M",
                detail=detail,
                residual=residual,
                seconds=time.perf_counter() - t0,
                mode=mode,
            )
        )
    return out
