"""Sums over the reduction set, rewritten term by term into closed forms.

Σ_k is linear, so a sum of an expanded summand is the sum of its terms, and in each term

* a factor free of k comes out: Σ_k c·h(k) = c·Σ_k h(k), and Σ_k c = M·c;
* a Kronecker delta picks its partner: Σ_k δ_kj·f(k) = f(j);
* what is left, Σ_k h(k), is a *reduction*: the subclass says what it becomes (an opaque
  symbol for the every-M proof, a named per-channel array for emitted code).
"""

from __future__ import annotations

import sympy as sp

from bnderive.core import notation as N


class SumRewriter:
    """Rewrites every Σ over the reduction set (k = 1..M) of an expression, inner sums first."""

    def rewrite(self, expr: sp.Expr) -> sp.Expr:
        if isinstance(expr, sp.Sum):
            summand = self.rewrite(expr.function)
            for index, lower, upper in reversed(expr.limits):
                if lower != 1 or upper != N.M:
                    self.refuse(f"a sum over {index} from {lower} to {upper}")
                summand = self.one_sum(summand, index)
            return summand
        if not expr.args or not expr.has(sp.Sum):
            return expr
        return expr.func(*[self.rewrite(a) for a in expr.args])

    def one_sum(self, summand: sp.Expr, index: sp.Symbol) -> sp.Expr:
        """Σ_index summand, for a summand without sums."""
        total = sp.Integer(0)
        for term in sp.Add.make_args(sp.expand(summand)):
            inside, outside = [], []
            for factor in sp.Mul.make_args(term):
                (inside if index in factor.free_symbols else outside).append(factor)
            c = sp.Mul(*outside)
            if not inside:
                total += self.size() * c  # Σ_k c = M·c
                continue
            delta = next(
                (f for f in inside if isinstance(f, sp.KroneckerDelta) and index in f.args), None
            )
            if delta is not None:  # Σ_k δ_kj f(k) = f(j)
                a, b = delta.args
                rest = sp.Mul(*[f for f in inside if f is not delta])
                total += c * rest.xreplace({index: b if a == index else a})
                continue
            total += c * self.reduction(sp.Mul(*inside), index)
        return total

    def size(self) -> sp.Expr:
        """M, the number of elements of the reduction set."""
        return N.M

    def reduction(self, summand: sp.Expr, index: sp.Symbol) -> sp.Expr:
        """Σ_index summand for a delta-free product that depends on ``index``."""
        raise NotImplementedError

    def refuse(self, what: str) -> None:
        """A sum this rewriter cannot handle: raise the caller's kind of error."""
        raise ValueError(what)


__all__ = ["SumRewriter"]
