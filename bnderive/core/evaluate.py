"""Evaluate index-notation expressions for one reduction set of explicit size M.

An expression's free indices become array axes (element 1..M at position 0..M−1); ``Sum`` over
the reduction set reduces an axis; ``KroneckerDelta`` is an identity pattern, and a sum whose
summand carries δ_kj is reduced to the summand at k = j before anything is expanded.  The
backends: ``SYMBOLIC`` keeps SymPy expressions (exact proofs), ``RATIONAL`` uses exact
rationals (exact values at a point), ``FLOAT`` float64 (labels only, never verdicts).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache, reduce
from typing import Any

import numpy as np
import sympy as sp

from bnderive.core import notation as N
from bnderive.errors import EvaluationError

try:  # C rationals: an order of magnitude faster than fractions.Fraction
    from gmpy2 import mpq as _Q
except ImportError:  # pragma: no cover - gmpy2 is a dependency; this is the fallback
    _Q = Fraction  # type: ignore[assignment,misc]


class NotRational(ArithmeticError):
    """A root of a rational that is not a perfect power: no exact rational value."""


#: The most entries one reduction may build (an array over every index its summand depends on),
#: when the caller sets a budget (``entry_budget``); None: no limit (the exact method at its
#: sizes, check-impl).
_BUDGET: ContextVar[int | None] = ContextVar("entry_budget", default=None)


@contextmanager
def entry_budget(entries: int) -> Iterator[None]:
    """Evaluate with at most ``entries`` entries per reduction; beyond, ``TooLarge``."""
    token = _BUDGET.set(entries)
    try:
        yield
    finally:
        _BUDGET.reset(token)


class TooLarge(ArithmeticError):
    """A sum whose summand depends on more indices than the ``entry_budget`` allows at this M:
    the caller evaluates at a smaller M (``verify.plan``) instead of running for minutes."""


@dataclass(frozen=True)
class Backend:
    name: str
    number: Callable[[sp.Rational], Any]
    root: Callable[[Any, sp.Rational], Any]
    total: Callable[[np.ndarray], Any]  # sum over the last axis
    add: Callable[[Any, Any], Any] = operator.add
    mul: Callable[[Any, Any], Any] = operator.mul
    power: Callable[[Any, int], Any] = operator.pow  # integer exponents
    full: Callable[[int, Any], np.ndarray] | None = None  # a length-M array of one value


def _sympy_total(arr: np.ndarray) -> Any:
    flat = arr.reshape(-1, arr.shape[-1])
    out = np.empty(flat.shape[0], dtype=object)
    for row, values in enumerate(flat):
        out[row] = sp.Add(*values)
    return out.reshape(arr.shape[:-1]) if arr.ndim > 1 else out[0]


#: An integer as an exact rational of the fast kind.
EXACT_INT = _Q


def rational(value: Any) -> Any:
    """An exact rational of the fast kind (gmpy2.mpq, else Fraction)."""
    if isinstance(value, sp.Rational):
        return _Q(int(value.p), int(value.q))
    if isinstance(value, Fraction):
        return _Q(value.numerator, value.denominator)
    return _Q(value)


def _exact_root(value: Any, exponent: sp.Rational) -> Any:
    """value ** (p/q) for a rational value, exactly, or NotRational."""
    value = Fraction(int(value.numerator), int(value.denominator))
    p, q = int(exponent.p), int(exponent.q)
    if value < 0 and q % 2 == 0:
        raise NotRational(f"even root of the negative number {value}")
    sign = -1 if value < 0 else 1

    def iroot(a: int) -> int:
        r = round(abs(a) ** (1.0 / q)) if a.bit_length() < 1000 else math.isqrt(abs(a))
        # Newton polish for big integers, then verify exactly.
        r = _integer_root(abs(a), q, r)
        if r**q != abs(a):
            raise NotRational(f"{a} is not a perfect {q}-th power")
        return r

    base = _Q(iroot(value.numerator), iroot(value.denominator)) * sign
    if value == 0 and p < 0:
        raise ZeroDivisionError("0 to a negative power")
    return base**p


def _integer_root(a: int, q: int, guess: int) -> int:
    if a < 2:
        return a
    r = max(1, guess)
    for _ in range(200):
        nxt = ((q - 1) * r + a // r ** (q - 1)) // q
        if abs(nxt - r) <= 1:
            for cand in (nxt - 1, nxt, nxt + 1, r):
                if cand >= 0 and cand**q == a:
                    return cand
            return nxt
        r = nxt
    return r


def _fraction_root(value: Any, exponent: sp.Rational) -> Any:
    if isinstance(value, np.ndarray):
        return np.frompyfunc(lambda v: _exact_root(v, exponent), 1, 1)(value)
    return _exact_root(value, exponent)


def _sympy_root(value: Any, exponent: sp.Rational) -> Any:
    return value**exponent


SYMBOLIC = Backend("symbolic", lambda r: r, _sympy_root, _sympy_total)

try:
    import symengine as _se
except ImportError:  # pragma: no cover - symengine is a dependency; SymPy is the fallback
    _se = None

#: The eliminated radical r = √(σ²+ε), as a symengine symbol (see instances.exact_env).
ENGINE_R = _se.Symbol("r") if _se is not None else None


def _engine_root(value: Any, exponent: sp.Rational) -> Any:
    """base^(p/q) in symengine; a base equal to k·r² (k > 0 rational) becomes k^(p/q)·r^(2p/q):
    the radical elimination of DESIGN.md §4, done while evaluating."""
    if isinstance(value, np.ndarray):
        return np.frompyfunc(lambda v: _engine_root(v, exponent), 1, 1)(value)
    e = _se.Rational(int(exponent.p), int(exponent.q))
    if (2 * exponent).is_integer:
        ratio = value / ENGINE_R**2
        if not ratio.free_symbols:
            ratio = _se.expand(ratio)
        else:
            ratio = _se.expand(value) / ENGINE_R**2
            ratio = _se.expand(ratio)
        if ratio.is_Number and ratio > 0:
            return ratio**e * ENGINE_R ** int(2 * exponent)
    return value**e


def _engine_total(arr: np.ndarray) -> Any:
    flat = arr.reshape(-1, arr.shape[-1])
    out = np.empty(flat.shape[0], dtype=object)
    for row, values in enumerate(flat):
        out[row] = _se.Add(*values)
    return out.reshape(arr.shape[:-1]) if arr.ndim > 1 else out[0]


ENGINE = (
    Backend(
        "symengine",
        lambda r: _se.Integer(int(r.p)) / _se.Integer(int(r.q)),
        _engine_root,
        _engine_total,
    )
    if _se is not None
    else None
)
RATIONAL = Backend(
    "rational",
    rational,
    _fraction_root,
    lambda arr: np.sum(arr, axis=-1),
)


def _float_root(value: Any, exponent: sp.Rational) -> Any:
    with np.errstate(invalid="ignore", divide="ignore"):  # NaN/inf are checked by the caller
        return np.power(np.asarray(value, dtype=float), float(exponent))


#: float64: for values with no exact rational form (a fourth root, √σ² with ε outside), where an
#: answer is a label (the diagnosis of a known mistake), never a verdict.
FLOAT = Backend(
    "float64",
    lambda r: float(r),
    _float_root,
    lambda arr: np.sum(arr, axis=-1),
    full=lambda m, value: np.full(m, value, dtype=float),
)


@dataclass
class Env:
    """Values of one reduction set: element arrays (length M) and scalars."""

    m: int
    backend: Backend
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    scalars: dict[str, Any] = field(default_factory=dict)
    #: Values of closed reductions over inputs and forward stages, shared with children:
    #: those never change, so Σ g·x̂ is evaluated once for the truth and every form.
    memo: dict[sp.Expr, Any] = field(default_factory=dict)

    def child(self) -> Env:
        return Env(self.m, self.backend, dict(self.arrays), dict(self.scalars), self.memo)

    def store(self, name: str, value: Any, elementwise: bool) -> None:
        if elementwise:
            self.arrays[name] = as_elements(value, self.m, self.backend)
        else:
            self.scalars[name] = value


def as_elements(value: Any, m: int, backend: Backend | None = None) -> np.ndarray:
    """A value of one free index as a length-M array (a scalar is broadcast)."""
    if isinstance(value, np.ndarray):
        return np.broadcast_to(value, (m,)).copy()
    if backend is not None and backend.full is not None:
        return backend.full(m, value)
    out = np.empty(m, dtype=object)
    out[:] = [value] * m
    return out


def evaluate(expr: sp.Expr, env: Env, index: sp.Symbol | None = None) -> Any:
    """The value of ``expr``; with ``index``, an array over that free index."""
    scope = {index: 0} if index is not None else {}
    value = _Walker(env).walk(expr, scope)
    if index is not None:
        return as_elements(value, env.m, env.backend)
    if isinstance(value, np.ndarray):
        free = sorted(str(s) for s in expr.free_symbols if s in N.INDICES)
        raise EvaluationError(
            f"{expr} has the free index {', '.join(free)} but defines one value per reduction set:"
            " sum over it, or define an elementwise quantity such as dx[i]."
        )
    return value


class _Walker:
    def __init__(self, env: Env) -> None:
        self.env = env
        self.backend = env.backend

    def walk(self, expr: sp.Basic, scope: Mapping[sp.Symbol, int]) -> Any:
        if isinstance(expr, sp.Rational):
            return self.backend.number(expr)
        if isinstance(expr, sp.Float):
            return self.backend.number(sp.Rational(str(expr)))
        if isinstance(expr, sp.Symbol):
            return self._symbol(expr, scope)
        if isinstance(expr, sp.Indexed):
            return self._indexed(expr, scope)
        if isinstance(expr, sp.Add):
            return reduce(self.backend.add, (self.walk(a, scope) for a in expr.args))
        if isinstance(expr, sp.Mul):
            return reduce(self.backend.mul, (self.walk(a, scope) for a in expr.args))
        if isinstance(expr, sp.Pow):
            return self._pow(expr, scope)
        if isinstance(expr, sp.Sum):
            if _stable(expr) and not (expr.free_symbols & set(scope)):
                memo = self.env.memo
                if expr not in memo:
                    value = self._sum(expr, scope)
                    if isinstance(value, np.ndarray):  # closed: all axes have length 1
                        value = value.reshape(-1)[0]
                    memo[expr] = value
                return memo[expr]
            return self._sum(expr, scope)
        if isinstance(expr, sp.KroneckerDelta):
            return self._delta(expr, scope)
        raise EvaluationError(
            f"cannot evaluate {type(expr).__name__} in {expr}: only +, −, ×, /, powers, roots, "
            "Σ over the reduction set and δ are understood."
        )

    # -- leaves -----------------------------------------------------------------------------------
    def _symbol(self, sym: sp.Symbol, scope: Mapping[sp.Symbol, int]) -> Any:
        if sym == N.M:
            return self.backend.number(sp.Integer(self.env.m))
        if sym.name in self.env.scalars:
            return self.env.scalars[sym.name]
        if sym in scope:
            raise EvaluationError(f"the index {sym} is used as a number; write x[{sym}] etc.")
        raise EvaluationError(f"{sym} has no value here: define it on an earlier line.")

    def _position(self, idx: sp.Expr, scope: Mapping[sp.Symbol, int]) -> int | None:
        """Axis of a free index, or None for a fixed element number."""
        if idx in scope:
            return scope[idx]
        if isinstance(idx, sp.Integer):
            if not 1 <= int(idx) <= self.env.m:
                raise EvaluationError(f"element {idx} is outside 1..M = 1..{self.env.m}.")
            return None
        raise EvaluationError(
            f"the index {idx} is neither bound by a Σ nor the free index of the line."
        )

    def _axis_array(self, values: np.ndarray, axis: int, ndim: int) -> np.ndarray:
        shape = [1] * ndim
        shape[axis] = self.env.m
        return values.reshape(shape)

    def _indexed(self, expr: sp.Indexed, scope: Mapping[sp.Symbol, int]) -> Any:
        label = expr.base.label  # a Symbol's name: str() would run SymPy's printer
        name = label.name if isinstance(label, sp.Symbol) else str(label)
        if name not in self.env.arrays:
            raise EvaluationError(f"{name}[…] has no value here: define it on an earlier line.")
        if len(expr.indices) != 1:
            raise EvaluationError(f"{expr}: one index per element of a reduction set.")
        values = self.env.arrays[name]
        axis = self._position(expr.indices[0], scope)
        if axis is None:
            return values[int(expr.indices[0]) - 1]
        return self._axis_array(values, axis, len(scope))

    def _delta(self, expr: sp.KroneckerDelta, scope: Mapping[sp.Symbol, int]) -> Any:
        a, b = expr.args
        pa, pb = self._position(a, scope), self._position(b, scope)
        ndim = len(scope)
        pos = np.arange(1, self.env.m + 1, dtype=object)
        left = self._axis_array(pos, pa, ndim) if pa is not None else int(a)
        right = self._axis_array(pos, pb, ndim) if pb is not None else int(b)
        eq = np.equal(left, right)
        if not isinstance(eq, np.ndarray):
            return self.backend.number(sp.Integer(int(bool(eq))))
        one, zero = self.backend.number(sp.Integer(1)), self.backend.number(sp.Integer(0))
        if self.backend.full is not None:  # a numeric dtype
            return np.where(eq, one, zero)
        out = np.empty(eq.shape, dtype=object)
        out[...] = np.where(eq, one, zero)
        return out

    def _pow(self, expr: sp.Pow, scope: Mapping[sp.Symbol, int]) -> Any:
        base, exponent = expr.args
        if not isinstance(exponent, sp.Rational):
            raise EvaluationError(f"the exponent of {expr} must be a number.")
        value = self.walk(base, scope)
        try:
            if exponent.q == 1:
                return self.backend.power(value, int(exponent))
            return self.backend.root(value, exponent)
        except ZeroDivisionError:
            raise EvaluationError(f"{expr} divides by zero at this point.") from None

    # -- reductions -------------------------------------------------------------------------------
    def _sum(self, expr: sp.Sum, scope: Mapping[sp.Symbol, int]) -> Any:
        summand, *limits = expr.args
        if len(limits) > 1:
            # Σ_k Σ_p f as Σ_k (Σ_p f): the inner sum is then reduced with k in scope, where
            # its δ_kp and δ_ip collapse (``_reduce_plan``), instead of an array over i, k and p
            # (M³ entries: minutes and gigabytes at the randomized method's M = 4096)
            inner = sp.Sum(summand, *limits[:-1])
            return self._reduce(inner, [limits[-1]], scope)
        return self._reduce(summand, list(limits), scope)

    def _reduce(self, summand: sp.Expr, limits: list, scope: Mapping[sp.Symbol, int]) -> Any:
        """Σ over the last (outermost) limit of Σ over the others of ``summand``."""
        if not limits:
            return self.walk(summand, scope)
        index, lower, upper = limits[-1]
        inner_limits = limits[:-1]
        if lower != 1 or upper not in (N.M, sp.Integer(self.env.m)):
            raise EvaluationError(
                f"a sum over {index} runs from {lower} to {upper}: sums run over the reduction "
                f"set, from 1 to M; write sum(expr, {index})."
            )
        if index in scope:
            raise EvaluationError(f"the summation index {index} is already in use; rename it.")
        value: Any = self.backend.number(sp.Integer(0))
        plan = _reduce_plan(summand, index, bool(inner_limits), frozenset(scope))
        for kind, first, second in plan.terms:
            if kind == "delta":
                # Σ_k δ_kj f(k) = f(j): the delta picks one element (``second`` is f(j)).
                value = self.backend.add(value, self.walk(second, scope))
            else:
                # Σ_k c·h(k) = c·Σ_k h(k): c (``first``) is evaluated once, outside the sum.
                part = self.backend.mul(
                    self.walk(first, scope), self._reduce(second, [limits[-1]], scope)
                )
                value = self.backend.add(value, part)
        general = plan.general
        if general is not None:
            inner = dict(scope)
            inner[index] = len(scope)
            axes = sum(1 for s in inner if s in general.free_symbols)
            budget = _BUDGET.get()
            if budget is not None and self.env.m**axes > budget:
                raise TooLarge(
                    f"Σ over {index} of a summand over {axes} indices at M = {self.env.m}: "
                    f"{self.env.m}^{axes} entries"
                )
            body = self._reduce(general, inner_limits, inner)
            count = self.backend.number(sp.Integer(self.env.m))
            add, mul = self.backend.add, self.backend.mul
            if not isinstance(body, np.ndarray):
                value = add(value, mul(body, count))
            elif body.shape[-1] == 1:
                value = add(value, mul(body[..., 0], count))
            else:
                value = add(value, self.backend.total(body))
        return value


@dataclass(frozen=True)
class _Plan:
    """How ``_reduce`` takes one Σ over ``index`` apart, decided from the expression alone:
    ("delta", j, f(j)) terms, ("split", c, h(k)) terms, and the general rest (None if none)."""

    terms: tuple[tuple[str, sp.Expr, sp.Expr], ...]
    general: sp.Expr | None


@lru_cache(maxsize=4096)
def _reduce_plan(
    summand: sp.Expr, index: sp.Symbol, nested: bool, scope: frozenset[sp.Symbol]
) -> _Plan:
    """The symbolic half of ``_Walker._reduce``, once per summand, index and free indices in
    scope: the numbers differ from point to point, the expansions and splits do not (they cost
    more than the arithmetic at check-impl's sizes)."""
    if nested:
        terms: Any = [summand]
    else:
        # Expanding exposes δ factors and separates Σ_n a(i)·b(n) into a(i)·Σ_n b(n),
        # which keeps a sum over n from building an M×M array when i is also free.
        mixed = any(idx in summand.free_symbols for idx in scope)
        terms = sp.Add.make_args(_expand_deltas(summand, index, force=mixed))
    planned: list[tuple[str, sp.Expr, sp.Expr]] = []
    general = []
    for term in terms:
        partner = _delta_partner(term, index) if not nested else None
        if partner is not None:
            target, rest = partner
            planned.append(("delta", target, rest.xreplace({index: target})))
            continue
        inside, outside = _split_factors(term, index) if not nested else ([term], [])
        if outside and inside:
            planned.append(("split", sp.Mul(*outside), sp.Mul(*inside)))
        else:
            general.append(term)
    return _Plan(tuple(planned), sp.Add(*general) if general else None)


#: Names whose values are fixed for the life of an environment: inputs and forward stages.
_STABLE = frozenset(
    {"x", "g", "ggI", "xhat", "y", "mu", "var", "ms", "eps", "gamma", "beta", "ggG", "ggB", "M"}
)


@lru_cache(maxsize=4096)
def _stable(expr: sp.Expr) -> bool:
    return all(
        s.is_integer or s.name in _STABLE for s in expr.atoms(sp.Symbol) if not s.is_Dummy
    ) and not any(s.is_Dummy and not s.is_integer for s in expr.atoms(sp.Dummy))


def _expand_deltas(summand: sp.Expr, index: sp.Symbol, force: bool = False) -> sp.Expr:
    deltas = [d for d in summand.atoms(sp.KroneckerDelta) if index in d.free_symbols]
    return sp.expand_mul(summand) if deltas or force else summand


def _split_factors(term: sp.Expr, index: sp.Symbol) -> tuple[list[sp.Expr], list[sp.Expr]]:
    """The factors of a product that depend on ``index``, and those that do not."""
    inside, outside = [], []
    for factor in sp.Mul.make_args(term):
        (inside if index in factor.free_symbols else outside).append(factor)
    return inside, outside


def _delta_partner(term: sp.Expr, index: sp.Symbol) -> tuple[sp.Expr, sp.Expr] | None:
    """For a term δ(index, j)·f, return (j, f); None if the term has no such factor."""
    for factor in sp.Mul.make_args(term):
        if isinstance(factor, sp.KroneckerDelta) and index in factor.args:
            a, b = factor.args
            other = b if a == index else a
            if other == index or index in other.free_symbols:
                continue
            rest = sp.Mul(*[f for f in sp.Mul.make_args(term) if f is not factor])
            return other, rest
    return None
