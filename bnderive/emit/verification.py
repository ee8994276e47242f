"""Verify an emitted module against the ground truth before anything is written.

The module is imported in a fresh namespace and compared with the truth: exactly, in rational
arithmetic (``Exact``: strict rationals, so a float constant in the emitted code is an error), at a
point where √(σ²+ε) is rational in every channel, and in float64 at adversarial random inputs; and
float32 inputs must give float32 outputs.  A mismatch raises :class:`EmitVerificationError`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import sympy as sp

from bnderive.core import notation as N
from bnderive.core.derive import derive
from bnderive.core.evaluate import Backend, Env, evaluate
from bnderive.core.graph import Graph
from bnderive.core.points import _forward, point_env
from bnderive.core.spec import Mode, Spec
from bnderive.emit.numpy_module import EmitVerificationError
from bnderive.read.forms import Form


# -- verification: the emitted module against the ground truth ---------------------------------------
class Exact:
    """An exact rational for object arrays, with the ``sqrt`` that ``np.sqrt`` calls on object
    elements: the root of a perfect square, else ``ArithmeticError`` (no silent rounding)."""

    __slots__ = ("q",)

    def __init__(self, value: Any) -> None:
        self.q = value.q if isinstance(value, Exact) else Fraction(value)

    @staticmethod
    def _of(other: Any) -> Fraction:
        if isinstance(other, Exact):
            return other.q
        if isinstance(other, int | Fraction):
            return Fraction(other)
        raise TypeError(f"inexact operand {other!r} ({type(other).__name__}) in exact code")

    def __add__(self, other: Any) -> Exact:
        return Exact(self.q + self._of(other))

    __radd__ = __add__

    def __sub__(self, other: Any) -> Exact:
        return Exact(self.q - self._of(other))

    def __rsub__(self, other: Any) -> Exact:
        return Exact(self._of(other) - self.q)

    def __mul__(self, other: Any) -> Exact:
        return Exact(self.q * self._of(other))

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> Exact:
        return Exact(self.q / self._of(other))

    def __rtruediv__(self, other: Any) -> Exact:
        return Exact(self._of(other) / self.q)

    def __pow__(self, exponent: int) -> Exact:
        if not isinstance(exponent, int):
            raise TypeError(f"inexact exponent {exponent!r} in exact code")
        return Exact(self.q**exponent)

    def __neg__(self) -> Exact:
        return Exact(-self.q)

    def __pos__(self) -> Exact:
        return self

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Exact | int | Fraction) and self.q == self._of(other)

    def __hash__(self) -> int:
        return hash(self.q)

    def sqrt(self) -> Exact:
        n, d = self.q.numerator, self.q.denominator
        rn, rd = math.isqrt(n) if n >= 0 else -1, math.isqrt(d)
        if n < 0 or rn * rn != n or rd * rd != d:
            raise ArithmeticError(f"√{self.q} is not rational")
        return Exact(Fraction(rn, rd))

    def __repr__(self) -> str:
        return f"Exact({self.q})"


#: float64 evaluation of the truth's index notation (the evaluator's third backend).
FLOAT64 = Backend(
    "float64",
    lambda r: float(r),
    lambda value, exponent: np.power(value, float(exponent)),
    lambda arr: np.sum(arr, axis=-1),
)


@dataclass(frozen=True)
class _Case:
    """Inputs of one verification run and the truth per channel."""

    spec: Spec  # the full layout, C channels
    x: np.ndarray
    dout: np.ndarray
    gamma: np.ndarray
    beta: np.ndarray
    eps: Any
    truth: dict[str, np.ndarray]  # dx, y (full arrays), dgamma, dbeta, mu, inv_std (per channel)


def _layout_spec(mode: Mode, channels: int, form: Form) -> Spec:
    if mode is Mode.PER_ACTIVATION:
        return form.spec(Spec(mode, n=5, c=channels))
    return form.spec(Spec(mode, n=2, c=channels, h=2, w=3))


def _truth_case(
    spec: Spec, per_channel: list[dict[str, Any]], env_of: Callable[[Spec, dict], Env], eps: Any
) -> _Case:
    """Evaluate the ground truth channel by channel and assemble full arrays."""
    one = Spec(spec.mode, n=spec.n, c=1, h=spec.h, w=spec.w, unbiased=spec.unbiased)
    truth = derive(one)
    kind = object if isinstance(eps, Exact) else np.float64
    full = {name: np.empty(spec.shape, dtype=kind) for name in ("x", "dout", "dx", "y")}
    channel_values: dict[str, list[Any]] = {n: [] for n in ("dgamma", "dbeta", "mu", "inv_std")}
    gamma, beta = [], []
    for channel, point in enumerate(per_channel):
        env = env_of(one, point)
        for name, elementwise, expr in truth.definitions():
            env.store(name, evaluate(expr, env, N.i if elementwise else None), elementwise)
        values = {
            "x": point["x"],
            "dout": point["g"],
            "dx": env.arrays["dx"],
            "y": env.arrays["y"],
        }
        for j, position in enumerate(spec.positions(channel)):
            for name, array in values.items():
                full[name][position] = array[j]
        channel_values["dgamma"].append(env.scalars["dgamma"])
        channel_values["dbeta"].append(env.scalars["dbeta"])
        channel_values["mu"].append(env.scalars["mu"])
        radicand = env.scalars["var"] + env.scalars["eps"]
        channel_values["inv_std"].append(env.backend.root(radicand, sp.Rational(-1, 2)))
        gamma.append(point["gamma"])
        beta.append(point["beta"])
    result = {name: np.array(v, dtype=kind) for name, v in channel_values.items()}
    result.update(dx=full["dx"], y=full["y"])
    return _Case(
        spec,
        full["x"],
        full["dout"],
        np.array(gamma, dtype=kind),
        np.array(beta, dtype=kind),
        eps,
        result,
    )


def exact_case(form: Form, mode: Mode, seed: int = 6) -> _Case:
    """Integer inputs where √(σ²+ε) is rational in every channel, truth in exact rationals.

    ε is one number for all channels, so every channel gets the same variance: the same base
    values, permuted, possibly mirrored and shifted by a large-ish mean (σ² is invariant under
    all three); the upstream gradients, γ and β differ from channel to channel.
    """
    from bnderive.core.evaluate import RATIONAL

    spec = _layout_spec(mode, 3, form)
    draw = np.random.default_rng(seed)
    m = spec.m
    base = draw.choice(np.arange(-20, 21), size=m, replace=False).tolist()
    divisor = m - 1 if form.unbiased else m
    var = Fraction(m * sum(v * v for v in base) - sum(base) ** 2, m * divisor)
    r = math.isqrt(math.ceil(var)) + 2  # √(σ²+ε) = r, ε = r² − σ² > 0
    eps = Fraction(r * r) - var
    points = []
    for channel in range(spec.c):
        order = draw.permutation(m).tolist()
        sign = 1 if channel % 2 == 0 else -1
        shift = int(draw.integers(500, 1500)) * (1 if channel != 1 else -1)
        x = [sign * base[k] + shift for k in order]
        g = draw.integers(-9, 10, size=m).tolist()
        g[0] = g[1] + 3  # never uniform
        gamma = int(draw.choice([-7, -3, 3, 5, 11]))
        points.append(
            {
                "x": x,
                "g": g,
                "gamma": gamma,
                "beta": int(draw.integers(-9, 10)),
                "r": r,
                "ggI": [0] * m,
                "ggG": 0,
                "ggB": 0,
            }
        )

    def env_of(one: Spec, point: dict[str, Any]) -> Env:
        return point_env(one, 0, point, RATIONAL).env.child()

    case = _truth_case(spec, points, env_of, Exact(eps))
    to_exact = np.frompyfunc(lambda v: Exact(Fraction(int(v.numerator), int(v.denominator))), 1, 1)
    return _Case(
        spec,
        to_exact(case.x).astype(object),
        to_exact(case.dout).astype(object),
        to_exact(case.gamma).astype(object),
        to_exact(case.beta).astype(object),
        Exact(eps),
        {name: to_exact(v).astype(object) for name, v in case.truth.items()},
    )


def float_case(form: Form, mode: Mode, seed: int = 6) -> _Case:
    """Adversarial float64 inputs: γ far from 1 and of both signs, σ² from 1e-4 to 1e6,
    means up to 1e3, non-uniform upstream gradients; ε = 1e-3."""
    spec = _layout_spec(mode, 4, form)
    draw = np.random.default_rng(seed)
    scales = [0.01, 0.7, 30.0, 1000.0]
    means = [250.0, -40.0, 3.0, 900.0]
    gammas = [-2.5, 0.3, 3.7, -0.04]
    points = []
    for channel in range(spec.c):
        x = means[channel] + scales[channel] * draw.standard_normal(spec.m)
        g = draw.standard_normal(spec.m) * 2.0 + 0.5
        points.append({"x": x, "g": g, "gamma": gammas[channel], "beta": float(draw.normal())})
    eps = 1e-3
    graph = Graph.build(spec)

    def env_of(one: Spec, point: dict[str, Any]) -> Env:
        env = Env(one.m, FLOAT64, {"x": point["x"], "g": point["g"]}, {})
        env.scalars.update(gamma=point["gamma"], beta=point["beta"], eps=eps)
        return _forward(env, graph, None)

    return _truth_case(spec, points, env_of, eps)


def load_module(source: str, name: str = "emitted") -> dict[str, Any]:
    """Import emitted source in a fresh namespace."""
    namespace: dict[str, Any] = {"__name__": name}
    exec(compile(source, f"<bnderive emit: {name}>", "exec"), namespace)  # noqa: S102
    return namespace


def _run_module(module: dict[str, Any], case: _Case) -> dict[str, dict[str, Any]]:
    """Every entry point of the module at the case's inputs."""
    x, dout = case.x, case.dout
    out, cache = module["forward"](x.copy(), case.gamma, case.beta, case.eps)
    xmu, mu, inv_std = cache
    results = {
        "forward": {"y": out, "mu": mu.reshape(-1), "inv_std": inv_std.reshape(-1)},
    }
    dx, dgamma, dbeta = module["backward"](dout.copy(), x.copy(), case.gamma, case.eps)
    results["backward"] = {"dx": dx, "dgamma": dgamma, "dbeta": dbeta}
    saved = xmu.copy()
    dx, dgamma, dbeta = module["backward_cached"](dout.copy(), cache, case.gamma)
    results["backward_cached"] = {"dx": dx, "dgamma": dgamma, "dbeta": dbeta}
    results["cache unchanged"] = {"xmu": np.array_equal(saved, cache[0])}
    return results


@dataclass(frozen=True)
class Verification:
    """What ``verify_module`` checked."""

    checks: tuple[str, ...]


def verify_module(
    source: str,
    form: Form,
    mode: Mode,
    loader: Callable[[str, str], dict[str, Any]] = load_module,
) -> Verification:
    """Import the emitted module and compare every output with the ground truth; raise
    :class:`EmitVerificationError` at the first disagreement."""
    where = f"the module emitted from {form.name!r} ({mode.value})"
    try:
        module = loader(source, form.name)
    except Exception as exc:  # the printer wrote something that is not Python
        raise EmitVerificationError(f"{where} does not import: {exc}") from exc
    checks = []

    def fail(kind: str, function: str, name: str, detail: str) -> None:
        raise EmitVerificationError(f"{where}: {kind}: {function} gives a wrong {name}: {detail}")

    case = exact_case(form, mode)
    try:
        results = _run_module(module, case)
    except Exception as exc:
        raise EmitVerificationError(
            f"{where} fails in exact arithmetic: {type(exc).__name__}: {exc}"
        ) from exc
    for function, values in results.items():
        for name, value in values.items():
            if function == "cache unchanged":
                if not value:
                    fail("exact", "backward_cached", "cache", "it modified the cache")
                continue
            expected = case.truth[name]
            if value.shape != expected.shape or not all(
                a == b for a, b in zip(value.ravel(), expected.ravel(), strict=True)
            ):
                bad = next(
                    (
                        j
                        for j, (a, b) in enumerate(
                            zip(value.ravel(), expected.ravel(), strict=False)
                        )
                        if a != b
                    ),
                    0,
                )
                fail(
                    "exact",
                    function,
                    name,
                    f"shape {value.shape} vs {expected.shape}; entry {bad}: "
                    f"{value.ravel()[bad]!r}, truth {expected.ravel()[bad]!r}",
                )
    checks.append(f"exact rationals at {case.spec.describe()}, √(σ²+ε) rational")

    case = float_case(form, mode)
    results = _run_module(module, case)
    for function, values in results.items():
        for name, value in values.items():
            if function == "cache unchanged":
                if not value:
                    fail("float64", "backward_cached", "cache", "it modified the cache")
                continue
            expected = case.truth[name]
            scale = np.max(np.abs(expected)) + 1e-300
            error = np.max(np.abs(np.asarray(value, dtype=np.float64) - expected)) / scale
            if value.shape != expected.shape or not error < 1e-9:
                fail("float64", function, name, f"relative error {error:.3g}")
    checks.append(f"float64 at {case.spec.describe()}: σ² from 1e-4 to 1e6, γ ≠ 1, ε = 1e-3")

    # float32 in, float32 out: nothing may promote (DESIGN.md §7).
    f32 = {k: v.astype(np.float32) for k, v in (("x", case.x), ("dout", case.dout))}
    gamma32, beta32 = case.gamma.astype(np.float32), case.beta.astype(np.float32)
    out, cache = module["forward"](f32["x"], gamma32, beta32, case.eps)
    outputs = [out, *cache]
    outputs += module["backward"](f32["dout"], f32["x"], gamma32, case.eps)
    outputs += module["backward_cached"](f32["dout"], cache, gamma32)
    dtypes = {str(np.asarray(v).dtype) for v in outputs}
    if dtypes != {"float32"}:
        fail("float32", "the module", "dtype", f"float32 inputs give {sorted(dtypes)}")
    checks.append("float32 inputs give float32 outputs")
    return Verification(tuple(checks))
