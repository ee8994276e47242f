"""A form's equations evaluated in a float dtype in the order they are written.

``core.evaluate`` is built for exact arithmetic and rearranges freely: it splits Σ(a + b) into
Σa + Σb and pulls constants out of sums, which is harmless in rationals and changes the result
in floats (the staged form's Σ −2(x − μ) becomes −2·Σx + 2·M·μ, exactly 0 in float32 when μ was
computed from the same Σx, where the sum of the rounded differences is not).  SymPy's own
reading changes the order too (−2(x − μ) is distributed to −2x + 2μ).  A float study must
follow the text: this module walks the Python syntax tree of an equation's text (``ast.parse``
runs nothing) with the allow-list of ``core.notation.parse`` (numbers, names, + − × / and
powers, subscripts ``x[k]``, ``sqrt`` and ``sum(expr, k)``) and computes every operation in the
dtype, left to right as written; ``sum`` is NumPy's sum over the summation index in the dtype;
a power is computed wider and rounded once into the dtype (``WrittenEvaluator._power``: NumPy's
own float power differs between CPUs).
Only forms that ``notation.parse`` has already read come here (``Form`` objects); anything
outside the allow-list is an error, never evaluated.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import Any

import numpy as np

from bnderive.core import python_syntax
from bnderive.errors import EvaluationError
from bnderive.read.forms import Form

#: The index names of the notation.
INDICES = frozenset("ijklnpq")


class WrittenEvaluator:
    """Evaluate the text of equations over one reduction set of size M in ``dtype``.

    ``arrays`` are per-element values (length M), ``scalars`` per-set values (of the dtype).
    An index free in a line is axis 0; each ``sum(…, k)`` adds an axis and reduces it."""

    def __init__(
        self, dtype: np.dtype, m: int, arrays: Mapping[str, np.ndarray], scalars: Mapping[str, Any]
    ) -> None:
        self.kind = np.dtype(dtype).type
        self.m = m
        self.arrays = {k: np.asarray(v, dtype=self.kind) for k, v in arrays.items()}
        self.scalars = {k: self.kind(v) for k, v in scalars.items()}
        self.scalars["M"] = self.kind(m)

    def line(self, text: str, index: str | None) -> Any:
        """One equation's right side: an array over ``index`` when given, else a scalar."""
        tree = python_syntax.parse(text.replace("^", "**"), mode="eval")
        scope = {index: 0} if index is not None else {}
        with np.errstate(all="ignore"):  # inf and NaN are results of the study
            value = self._walk(tree.body, scope)
        if index is not None:
            return np.broadcast_to(value, (self.m,)).astype(self.kind)
        if isinstance(value, np.ndarray) and value.size != 1:
            raise EvaluationError(f"{text!r} has a free index but defines one value per set")
        return self.kind(np.asarray(value).reshape(()))

    def run(self, form: Form) -> dict[str, Any]:
        """Every equation of ``form`` in order; the values by name (dx among them)."""
        for eq in form.equations:
            value = self.line(eq.text, str(eq.index) if eq.index is not None else None)
            target = self.arrays if eq.elementwise else self.scalars
            target[eq.store_name] = value
        return {**self.scalars, **self.arrays}

    # -- the walk ---------------------------------------------------------------------------------
    def _walk(self, node: ast.AST, scope: dict[str, int]) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            if isinstance(node.value, bool):
                raise EvaluationError(f"{node.value!r} is not a number")
            return self.kind(node.value)
        if isinstance(node, ast.Name):
            if node.id in self.scalars:
                return self.scalars[node.id]
            raise EvaluationError(f"{node.id} has no value here (an array needs an index)")
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            value = self._walk(node.operand, scope)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp):
            left, right = self._walk(node.left, scope), self._walk(node.right, scope)
            if isinstance(node.op, ast.Add):
                return left + right
            if isinstance(node.op, ast.Sub):
                return left - right
            if isinstance(node.op, ast.Mult):
                return left * right
            if isinstance(node.op, ast.Div):
                return left / right
            if isinstance(node.op, ast.Pow):
                return self._power(left, right)
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
            return self._element(node.value.id, node.slice, scope)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
            if node.func.id == "sqrt" and len(node.args) == 1:
                return np.sqrt(self._walk(node.args[0], scope))
            if node.func.id == "sum" and len(node.args) == 2:
                return self._sum(node.args[0], node.args[1], scope)
        raise EvaluationError(
            f"{ast.dump(node)[:60]} is outside what the float evaluation reads (numbers, names, "
            "+ - * / **, x[k], sqrt, sum)"
        )

    def _power(self, base: Any, exponent: Any) -> Any:
        """``base ** exponent`` computed in NumPy's long double and rounded once into the dtype.

        NumPy's own float32 and float64 ``power`` is not the same function on every CPU: on
        AVX-512 machines it runs SIMD routines (Intel's SVML) whose last bits differ from the C
        library's ``pow``, so the study's errors (and the README's table) changed with the
        machine (the Kronecker form's (σ² + ε)^(−3/2) in float32 at M = 256: 1.0e-07 on one
        machine, 9.0e-08 on another).  The long double power (the C library's ``powl``; 64-bit
        significand on x86-64) rounded to the dtype is the correctly rounded power in all but
        the rarest halfway cases: the IEEE model of one operation, on every CPU.  A power of
        a value that does not fit the dtype stays inf or NaN as before."""
        wide = np.power(np.asarray(base, dtype=np.longdouble), np.longdouble(exponent))
        return np.asarray(wide).astype(self.kind) if np.ndim(wide) else self.kind(wide)

    def _element(self, name: str, index: ast.AST, scope: dict[str, int]) -> np.ndarray:
        if name not in self.arrays or not isinstance(index, ast.Name) or index.id not in scope:
            raise EvaluationError(f"{name}[…]: an array indexed by a free or summed index")
        shape = [1] * len(scope)
        shape[scope[index.id]] = self.m
        return self.arrays[name].reshape(shape)

    def _sum(self, summand: ast.AST, index: ast.AST, scope: dict[str, int]) -> Any:
        if not isinstance(index, ast.Name) or index.id not in INDICES or index.id in scope:
            raise EvaluationError("sum(expr, k) runs over a new index k")
        inner = {**scope, index.id: len(scope)}
        value = np.asarray(self._walk(summand, inner), dtype=self.kind)
        full = [1] * (len(inner) - value.ndim) + list(value.shape)
        value = value.reshape(full)
        shape = list(value.shape)
        shape[-1] = self.m  # a summand without the index is summed M times, as written
        return np.sum(np.broadcast_to(value, shape), axis=-1, dtype=self.kind)
