"""The candidates of the study, evaluated in one float dtype with NumPy.

* a published form (``derivations/``: staged, kronecker, compact): its equations evaluated in
  order by ``core.evaluate`` with a backend whose every number and array is of the dtype, after
  the forward stages (μ, σ², x̂) of ``core.graph`` evaluated the same way: a float forward pass
  and the form as SymPy reads it: its canonical order, and a number times a sum distributed
  (the staged form's Σ −2(x − μ) becomes Σ (−2x + 2μ), which cancels in float16 where
  x − μ would not); nothing else is rearranged;
* an emitted kernel (``emit``: the verified NumPy module, and the numba one when asked): its
  ``backward(dout, x, gamma, eps)`` called on arrays of the dtype;
* the variance alone, two ways: two-pass Σ(x − μ)²/M (what the graph and the kernels compute) and
  one-pass Σx²/M − μ² (E[x²] − μ², the form a proof may write; DESIGN §7 says it breaks down).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import numpy as np
import sympy as sp

from bnderive.core import notation as N
from bnderive.core.evaluate import Backend, Env, evaluate
from bnderive.core.graph import Graph
from bnderive.core.spec import Mode, Spec
from bnderive.read.forms import Form


def float_backend(dtype: np.dtype) -> Backend:
    """``core.evaluate``'s backend for one float dtype: numbers are scalars of the dtype, sums
    NumPy's (pairwise) sums in the dtype, powers and roots ``np.power`` in the dtype."""
    kind = np.dtype(dtype).type

    def number(r: sp.Rational) -> Any:
        return kind(float(r))

    def root(value: Any, exponent: sp.Rational) -> Any:
        with np.errstate(all="ignore"):  # NaN and inf are results of the study, not errors
            return np.power(value, kind(float(exponent)))

    def power(value: Any, exponent: int) -> Any:
        with np.errstate(all="ignore"):
            return np.power(value, kind(exponent))

    def quiet(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        def run(a: Any, b: Any) -> Any:
            with np.errstate(all="ignore"):
                return op(a, b)

        return run

    def total(arr: np.ndarray) -> Any:
        with np.errstate(all="ignore"):
            return np.sum(arr, axis=-1, dtype=kind)

    return Backend(
        np.dtype(dtype).name,
        number,
        root,
        total,
        add=quiet(operator.add),
        mul=quiet(operator.mul),
        power=power,
        full=lambda m, value: np.full(m, value, dtype=kind),
    )


def forward_env(x: np.ndarray, g: np.ndarray, gamma: Any, eps: Any, dtype: np.dtype) -> Env:
    """One reduction set's inputs (of ``dtype``) and its forward stages μ, σ², x̂, y evaluated
    in ``dtype`` from the graph of ``core.graph`` (training mode, biased variance, ε inside)."""
    kind = np.dtype(dtype).type
    m = int(np.asarray(x).size)
    env = Env(m, float_backend(dtype))
    env.arrays["x"] = np.asarray(x, dtype=kind).ravel().copy()
    env.arrays["g"] = np.asarray(g, dtype=kind).ravel().copy()
    env.scalars.update(gamma=kind(gamma), beta=kind(0), eps=kind(eps))
    graph = Graph.build(Spec(Mode.PER_ACTIVATION, n=m))
    for stage in graph.stages:
        if stage.name == "L":
            continue
        if stage.elementwise:
            env.store(stage.name, evaluate(stage.at(N.i), env, N.i), True)
        else:
            env.store(stage.name, evaluate(stage.at(N.i), env), False)
    return env


def form_dx(form: Form, env: Env) -> np.ndarray:
    """∂L/∂x by ``form``'s equations, in order, in the environment's dtype."""
    local = env.child()
    for eq in form.equations:
        value = evaluate(eq.expr, local, eq.index)
        local.store(eq.store_name, value, eq.elementwise)
    return np.asarray(local.arrays["dx"])


def kernel_dx(
    backward: Callable[..., Any],
    x: np.ndarray,
    g: np.ndarray,
    gamma: Any,
    eps: Any,
    dtype: np.dtype,
) -> np.ndarray:
    """∂L/∂x by an emitted module's ``backward(dout, x, gamma, eps)`` on (M, 1) arrays."""
    kind = np.dtype(dtype).type
    with np.errstate(all="ignore"):
        dx, _, _ = backward(
            np.asarray(g, dtype=kind).reshape(-1, 1),
            np.asarray(x, dtype=kind).reshape(-1, 1),
            np.asarray([gamma], dtype=kind),
            kind(eps),
        )
    return np.asarray(dx).ravel()


def two_pass_variance(x: np.ndarray) -> Any:
    """Σ(x − μ)²/M in x's dtype: the mean first, then the centred squares."""
    with np.errstate(all="ignore"):
        mu = np.sum(x) / x.size
        d = x - mu
        return np.sum(d * d) / x.size


def one_pass_variance(x: np.ndarray) -> Any:
    """Σx²/M − (Σx/M)² in x's dtype (E[x²] − μ²): one pass over the data, then a difference
    of two large, nearly equal numbers."""
    with np.errstate(all="ignore"):
        mu = np.sum(x) / x.size
        return np.sum(x * x) / x.size - mu * mu
