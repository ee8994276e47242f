"""A whole normalization layer at explicit inputs: every reduction set's truth, put back together.

The ground truth (``derive``) is written for one reduction set.  A layer's input holds many: the
channels of BatchNorm, the samples of LayerNorm, the (sample, group) pairs of GroupNorm.  Here
each set is instantiated at its elements (``Spec.positions``), its γ and β read where the family
indexes them (``Spec.affine_index``), the truth evaluated, and the results scattered back:

    out, dx      one value per element of the input, each from its own set;
    dγ, dβ       shaped like γ: for a per-set γ (BatchNorm, InstanceNorm) the set's Σ_k g_k x̂_k;
                 for a per-element γ (LayerNorm, GroupNorm, RMSNorm) each element's g_k x̂_k,
                 added up over every set that uses that γ (LayerNorm: over the batch).

``layer_truth`` is what an implementation checker compares a user's forward and backward with
(``check-impl --norm``); ``exact_point`` gives inputs where the comparison is exact: one ε for the
whole layer with every √(σ²+ε) rational.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from random import Random
from typing import Any

import numpy as np

from bnderive.core import notation as N
from bnderive.core.derive import derive
from bnderive.core.evaluate import FLOAT, RATIONAL, SYMBOLIC, Backend, Env, NotRational, evaluate
from bnderive.core.points import affine_arrays, point_env
from bnderive.core.spec import Spec
from bnderive.errors import EvaluationError

_BACKENDS = {"rational": RATIONAL, "symbolic": SYMBOLIC, "float": FLOAT}


def set_point(
    spec: Spec,
    channel: int,
    x: np.ndarray,
    g: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray | None,
    eps: Any,
) -> dict[str, Any]:
    """The inputs of reduction set ``channel``, as ``points.point_env`` takes them."""
    positions = spec.positions(channel)
    point: dict[str, Any] = {
        "x": [x[p] for p in positions],
        "g": [g[p] for p in positions],
        "eps": eps,
    }
    # The double backward's inputs are unused here; point_env reads them, so give zeros.
    point.update(ggI=[0] * len(positions), ggG=0, ggB=0)
    gamma_at = [gamma[spec.affine_index(p)] for p in positions]
    beta_at = [beta[spec.affine_index(p)] for p in positions] if beta is not None else None
    if "gamma" in affine_arrays(spec):
        point["gamma"] = gamma_at
        point["beta"] = beta_at if "beta" in affine_arrays(spec) else 0
    else:
        point["gamma"] = gamma_at[0]
        point["beta"] = beta_at[0] if beta_at is not None else 0
    return point


def layer_truth(
    spec: Spec,
    x: np.ndarray,
    g: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray | None,
    eps: Any,
    backend: str | Backend = "rational",
) -> dict[str, np.ndarray]:
    """out, dx (shaped like x), dγ and dβ (shaped like γ, ``spec.affine_shape``) of the whole
    layer at explicit inputs, training mode (BatchNorm's eval mode too, with its running
    statistics as ``running_mean``/``running_var`` not supported here: use ``points``).

    ``backend`` "rational" is exact and needs every √(σ²+ε) rational (``exact_point``);
    "symbolic" is exact for any rational inputs (the roots stay algebraic numbers); "float" is
    float64.  RMSNorm has no β: pass None (dβ is then absent)."""
    backend = _BACKENDS[backend] if isinstance(backend, str) else backend
    if not spec.training:
        raise EvaluationError("layer_truth is written for training mode (batch statistics).")
    x, g, gamma = (
        np.asarray(x, dtype=object),
        np.asarray(g, dtype=object),
        np.asarray(gamma, dtype=object),
    )
    if beta is not None:
        beta = np.asarray(beta, dtype=object)
    for name, value, shape in (
        ("x", x, spec.shape),
        ("g", g, spec.shape),
        ("gamma", gamma, spec.affine_shape),
    ):
        if value.shape != shape:
            raise EvaluationError(
                f"{name} has shape {value.shape}; {spec.describe()} needs {shape}."
            )
    definitions = derive(spec).definitions()
    zero: Any = 0.0 if backend is FLOAT else 0
    out = np.empty(spec.shape, dtype=object)
    dx = np.empty(spec.shape, dtype=object)
    dgamma = np.full(spec.affine_shape, zero, dtype=object)
    dbeta = np.full(spec.affine_shape, zero, dtype=object)
    for channel in range(spec.sets):
        positions = spec.positions(channel)
        point = set_point(spec, channel, x, g, gamma, beta, eps)
        inst = point_env(spec, channel, point, backend)
        values, errors = _run(definitions, inst.env)
        if errors:
            raise EvaluationError(f"the truth is undefined at {spec.describe()}: {errors}")
        per_element = "gamma" in affine_arrays(spec)
        for k, p in enumerate(positions):
            out[p] = inst.env.arrays["y"][k]
            dx[p] = values["dx"][k]
            if per_element:
                a = spec.affine_index(p)
                dgamma[a] = dgamma[a] + values["dgamma"][k]
                if "dbeta" in values:
                    dbeta[a] = dbeta[a] + values["dbeta"][k]
        if not per_element:
            a = spec.affine_index(positions[0])
            dgamma[a] = dgamma[a] + values["dgamma"]
            dbeta[a] = dbeta[a] + values["dbeta"]
    result = {"out": out, "dx": dx, "dgamma": dgamma}
    if spec.norm.has_beta:
        result["dbeta"] = dbeta
    return result


def _run(definitions: list[tuple[str, bool, Any]], base: Env) -> tuple[dict[str, Any], str]:
    """Evaluate the truth's definitions in order (each sees the ones before it)."""
    env = base.child()
    values: dict[str, Any] = {}
    for name, elementwise, expr in definitions:
        try:
            value = evaluate(expr, env, N.i if elementwise else None)
        except (EvaluationError, NotRational, ZeroDivisionError) as exc:
            return values, f"{name}: {exc}"
        env.store(name, value, elementwise)
        values[name] = value
    return values, ""


def exact_point(
    spec: Spec, seed: int = 0, spread: int = 5, root_too: bool = False
) -> dict[str, Any]:
    """Adversarial exact inputs for a whole layer with one ε and every √(σ²+ε) rational.

    Every reduction set holds the same multiset of centred values, permuted and shifted by its
    own mean (RMSNorm: permuted and with signs flipped, which keeps mean(x²)), so every set has
    the same σ² and ε = r² − σ² with an integer r makes all the roots r.  The sets still differ
    (their order, their means), γ avoids 0 and ±1 and varies, and g is uneven.  Returns x, g
    (the input's shape), gamma, beta (``spec.affine_shape``; beta None for RMSNorm), eps and r,
    all ``Fraction``.

    ``root_too``: the sets' √σ² (RMSNorm: √mean(x²)) rational as well, when such values are
    found among the first few thousand draws, so that code that adds ε outside the root runs
    exactly too (and is refuted exactly, not left undecided)."""
    rng = Random(seed)
    m = spec.m
    for attempt in range(1000):
        base = [rng.randint(-spread, spread) for _ in range(m)]
        if m >= 2 and len(set(base)) < 2:
            continue
        if not root_too or _square(_set_variance(spec, base)) or attempt == 999:
            break
    x = np.empty(spec.shape, dtype=object)
    g = np.empty(spec.shape, dtype=object)
    for channel in range(spec.sets):
        values = base[:]
        rng.shuffle(values)
        if spec.norm.centred:
            offset = rng.randint(10, 40) * rng.choice((-1, 1))
            values = [v + offset for v in values]
        else:
            values = [v * rng.choice((-1, 1)) for v in values]
        for p, v in zip(spec.positions(channel), values, strict=True):
            x[p] = Fraction(v)
            g[p] = Fraction(rng.randint(-spread, spread))
    var = _set_variance(spec, base)
    r = math.isqrt(math.ceil(var)) + 1 + rng.randint(0, 3)
    eps = r * r - var
    size = math.prod(spec.affine_shape)
    choices = [v for v in range(-spread, spread + 1) if v not in (0, 1, -1)]
    gamma = np.array([Fraction(rng.choice(choices)) for _ in range(size)], dtype=object)
    beta = np.array([Fraction(rng.randint(-spread, spread)) for _ in range(size)], dtype=object)
    return {
        "x": x,
        "g": g,
        "gamma": gamma.reshape(spec.affine_shape),
        "beta": beta.reshape(spec.affine_shape) if spec.norm.has_beta else None,
        "eps": eps,
        "r": Fraction(r),
    }


def _set_variance(spec: Spec, base: Sequence[int]) -> Fraction:
    """σ² of one set's values (RMSNorm: their mean square)."""
    m = len(base)
    if not spec.norm.centred:
        return Fraction(sum(v * v for v in base), m)
    divisor = m - 1 if spec.unbiased else m
    mean = Fraction(sum(base), m)
    return sum((Fraction(v) - mean) ** 2 for v in base) / divisor


def _square(value: Fraction) -> bool:
    """Is ``value`` the square of a rational?"""
    p, q = value.numerator, value.denominator
    return p >= 0 and math.isqrt(p) ** 2 == p and math.isqrt(q) ** 2 == q


def as_fractions(values: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Exact rationals (``Fraction``) of an array of exact numbers (gmpy2, SymPy or Fraction)."""
    arr = np.asarray(values, dtype=object)
    out = np.empty(arr.shape, dtype=object)
    for index, v in np.ndenumerate(arr):
        out[index] = (
            Fraction(int(v.numerator), int(v.denominator))
            if hasattr(v, "numerator")
            else Fraction(str(v))
        )
    return out
