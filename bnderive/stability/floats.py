"""The candidates of the study, evaluated in one float dtype with NumPy.

* a published form (``derivations/``: staged, kronecker, compact): its equations evaluated in
  the order they are written (``written.WrittenEvaluator``), after the forward pass of DESIGN §1
  (μ = Σx/M, σ² = Σ(x − μ)²/M, x̂ = (x − μ)/√(σ² + ε)) evaluated the same way: every operation in
  the dtype;
* an emitted kernel (``emit``: the verified NumPy module, and the numba one when asked): its
  ``backward(dout, x, gamma, eps)`` called on arrays of the dtype;
* the variance alone, two ways: two-pass Σ(x − μ)²/M (what the graph and the kernels compute) and
  one-pass Σx²/M − μ² (E[x²] − μ², the form a proof may write; DESIGN §7 says it breaks down).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from bnderive.read.forms import Form
from bnderive.stability.written import WrittenEvaluator

#: The forward pass (core.graph's stages in training mode, biased variance, ε inside the root),
#: written in the notation of the forms; ``tests/test_stability.py`` checks that each reads as
#: the graph's stage.
FORWARD = (
    ("mu", None, "sum(x[k], k)/M"),
    ("var", None, "sum((x[k] - mu)**2, k)/M"),
    ("xhat", "i", "(x[i] - mu)/sqrt(var + eps)"),
)


def forward(x: np.ndarray, g: np.ndarray, gamma: Any, eps: Any, dtype: Any) -> WrittenEvaluator:
    """One reduction set's inputs (read in ``dtype``) and its forward stages μ, σ², x̂,
    evaluated in ``dtype`` as ``FORWARD`` writes them."""
    x = np.asarray(x).ravel()
    ev = WrittenEvaluator(
        np.dtype(dtype), x.size, {"x": x, "g": np.asarray(g).ravel()}, {"gamma": gamma, "eps": eps}
    )
    for name, index, text in FORWARD:
        value = ev.line(text, index)
        (ev.arrays if index else ev.scalars)[name] = value
    return ev


def form_dx(form: Form, ev: WrittenEvaluator) -> np.ndarray:
    """∂L/∂x by ``form``'s equations, in order, as written, in the evaluator's dtype (the
    forward values of ``ev`` are not changed)."""
    local = WrittenEvaluator(ev.kind, ev.m, dict(ev.arrays), dict(ev.scalars))
    return np.asarray(local.run(form)["dx"])


def kernel_dx(
    backward: Callable[..., Any], x: np.ndarray, g: np.ndarray, gamma: Any, eps: Any, dtype: Any
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
