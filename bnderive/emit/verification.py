"""Verify an emitted module against the ground truth before anything is written.

The module is run in a separate process that bnderive does not trust (``runner`` starts it,
``child`` is what runs there): the child imports the module, calls its entry points on inputs
chosen here and sends back the raw outputs; every comparison and the verdict are made here, in
bnderive's own process, which never imports the module.  What is compared: exactly, in rational
arithmetic (``Exact``: strict rationals, so a float constant in the emitted code is an error), at
a point where √(σ²+ε) is rational in every channel, and in float64 at adversarial random inputs;
and float32 inputs must give float32 outputs.  A mismatch, or a child that does not return a
well-formed result, raises :class:`EmitVerificationError`.
"""

from __future__ import annotations

import dataclasses
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
from bnderive.core.layer import as_fractions, exact_point, layer_truth, set_point
from bnderive.core.points import _forward, point_env
from bnderive.core.spec import Mode, Norm, Spec
from bnderive.emit.child import BATCH_API, Exact, load_source
from bnderive.emit.family_module import Layout
from bnderive.emit.numpy_module import EmitVerificationError
from bnderive.emit.runner import (
    ChildFailure,
    decode_array,
    encode_input,
    printable,
    run_module,
    validated,
)
from bnderive.read.forms import Form

# -- verification: the emitted module against the ground truth ---------------------------------------
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
    beta: np.ndarray | None  # None: RMSNorm has no β
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
    """Import emitted source in a fresh namespace of *this* process: for tests and benchmarks of
    modules bnderive emitted from its own forms.  ``verify_module`` never does this."""
    return load_source(source, name)


@dataclass(frozen=True)
class Verification:
    """What ``verify_module`` checked."""

    checks: tuple[str, ...]


#: The outputs compared with the truth: the child's key → the truth's name.
_COMPARED = {
    "forward.out": "y",
    "forward.mu": "mu",
    "forward.inv_std": "inv_std",
    "forward.inv_rms": "inv_std",  # RMSNorm's 1/√(ms + ε), the truth's reciprocal root
    "dx": "dx",
    "dgamma": "dgamma",
    "dbeta": "dbeta",
}


def _chunk_rows(case_rows: int) -> list[int]:
    """Rows per chunk that cut the verification inputs into several chunks, the last partial."""
    return [r for r in (1, 2) if r < case_rows]


def _inputs(case: _Case, dtype: Any = None) -> dict[str, Any]:
    arrays = {"x": case.x, "dout": case.dout, "gamma": case.gamma}
    if case.beta is not None:  # RMSNorm has no β
        arrays["beta"] = case.beta
    if dtype is not None:
        arrays = {k: v.astype(dtype) for k, v in arrays.items()}
    return {**{k: encode_input(v) for k, v in arrays.items()}, "eps": encode_input(case.eps)}


def _function(key: str) -> tuple[str, str]:
    """'backward_cached[rows=1].dx' → ('backward_cached with 1 row(s) per chunk', 'dx')."""
    call, _, name = key.rpartition(".")
    if "[rows=" in call:
        call = f"backward_cached with {call.split('=')[1].rstrip(']')} row(s) per chunk"
    return call, name


def _truth_name(key: str) -> str | None:
    return _COMPARED.get(key) or (
        _COMPARED.get(key.rpartition(".")[2]) if key.startswith("backward") else None
    )


def _expected_keys(rows: list[int | None], api: dict[str, Any] | None = None) -> set[str]:
    api = api or BATCH_API
    keys = {"forward.out"} | {f"forward.{n}" for n in api["cache"]}
    keys |= {f"backward.{n}" for n in api["grads"]}
    for r in rows:
        call = "backward_cached" if r is None else f"backward_cached[rows={r}]"
        keys |= {f"{call}.{n}" for n in api["grads"]}
    first = api["cache"][0]
    return keys | {f"cache.{first}_before", f"cache.{first}_after"}


class _Checker:
    """The comparisons, in bnderive's process, of what the child returned with the truth."""

    def __init__(self, where: str, results: Any, runs: list[dict]) -> None:
        self.where = where
        self.results = validated(results, runs)
        self.rows = {r["id"]: r["rows"] for r in runs}
        self.apis = {r["id"]: r.get("api") or BATCH_API for r in runs}

    def fail(self, kind: str, function: str, name: str, detail: str) -> None:
        raise EmitVerificationError(
            f"{self.where}: {kind}: {function} gives a wrong {name}: {detail}"
        )

    def outputs(self, run: str, kind: str, exact: bool) -> dict[str, Any]:
        """The run's outputs, validated and decoded; its error as a failure."""
        entry = self.results[run]
        if not entry["ok"]:
            raise EmitVerificationError(f"{self.where} fails ({kind}): {printable(entry['error'])}")
        raw = entry["outputs"]
        expected = _expected_keys(self.rows[run], self.apis[run])
        if set(raw) != expected:
            raise ChildFailure(f"run {run!r} returned other outputs than the entry points give")
        return {key: decode_array(raw[key], exact, f"run {run!r}, {key}") for key in sorted(raw)}

    def cache_unchanged(self, kind: str, got: dict[str, Any]) -> None:
        first = next(k for k in got if k.startswith("cache.") and k.endswith("_before"))
        after_key = first.removesuffix("_before") + "_after"
        before, after = got[first].values, got[after_key].values
        if before.shape != after.shape or not np.array_equal(before, after):
            self.fail(kind, "backward_cached", "cache", "it modified the cache")

    def exact(self, run: str, kind: str, case: _Case) -> None:
        got = self.outputs(run, kind, exact=True)
        to_fraction = np.frompyfunc(lambda e: e.q, 1, 1)
        for key, array in got.items():
            name = _truth_name(key)
            if name is None:
                continue
            value = array.values
            expected = to_fraction(case.truth[name])
            if name in ("mu", "inv_std"):
                value = value.reshape(-1)
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
                shown = value.ravel()[bad] if value.size else "nothing"
                truth = expected.ravel()[bad] if expected.size else "nothing"
                self.fail(
                    kind,
                    _function(key)[0],
                    name,
                    f"shape {value.shape} vs {expected.shape}; entry {bad}: {shown}, truth {truth}",
                )
        self.cache_unchanged(kind, got)

    def float64(self, run: str, kind: str, case: _Case) -> None:
        got = self.outputs(run, kind, exact=False)
        for key, array in got.items():
            name = _truth_name(key)
            if name is None:
                continue
            value = array.values
            if name in ("mu", "inv_std"):
                value = value.reshape(-1)
            expected = np.asarray(case.truth[name], dtype=np.float64)
            if value.shape != expected.shape:
                self.fail(
                    kind, _function(key)[0], name, f"shape {value.shape}, not {expected.shape}"
                )
            scale = np.max(np.abs(expected)) + 1e-300
            error = np.max(np.abs(value - expected)) / scale
            if not error < 1e-9:  # also NaN
                self.fail(kind, _function(key)[0], name, f"relative error {error:.3g}")
        self.cache_unchanged(kind, got)

    def float32(self, run: str, kind: str) -> None:
        got = self.outputs(run, kind, exact=False)
        dtypes = {a.dtype for key, a in got.items() if not key.startswith("cache.")}
        if dtypes != {"float32"}:
            self.fail(kind, "the module", "dtype", f"float32 inputs give {sorted(dtypes)}")


def verify_module(
    source: str,
    form: Form,
    mode: Mode,
    target: str = "numpy",
    compiled: bool = True,
    runner: Callable[..., Any] = run_module,
) -> Verification:
    """Run the emitted module in a child process and compare every output with the ground
    truth here; raise :class:`EmitVerificationError` at the first disagreement.

    ``target`` "numba": the kernel runs first as plain Python (numba's ``njit`` the identity, so
    that it runs exactly on object arrays) through every check of the numpy target, and exactly
    again with the rows cut into chunks of 1 and 2 rows; then, with ``compiled``, compiled by
    numba: float64 at the adversarial inputs (also in chunks) and float32 stays float32."""
    numba = target == "numba"
    what = "numba module" if numba else "module"
    where = f"the {what} emitted from {form.name!r} ({mode.value})"
    exact, floats = exact_case(form, mode), float_case(form, mode)
    chunks: list[int | None] = [None, *_chunk_rows(exact.x.shape[0])] if numba else [None]
    runs: list[dict[str, Any]] = [
        {"id": "exact", "module": "plain", "inputs": _inputs(exact), "rows": chunks},
        {"id": "float64", "module": "plain", "inputs": _inputs(floats), "rows": [None]},
        {"id": "float32", "module": "plain", "inputs": _inputs(floats, np.float32), "rows": [None]},
    ]
    float_chunks: list[int | None] = [None, *_chunk_rows(floats.x.shape[0])]
    if numba and compiled:
        runs += [
            {
                "id": "numba64",
                "module": "compiled",
                "inputs": _inputs(floats),
                "rows": float_chunks,
            },
            {
                "id": "numba32",
                "module": "compiled",
                "inputs": _inputs(floats, np.float32),
                "rows": [None],
            },
        ]
    try:
        results = runner(source, form.name, runs)
        check = _Checker(where, results, runs)
        check.exact("exact", "exact", exact)
        check.float64("float64", "float64", floats)
        check.float32("float32", "float32")
        checks = [
            f"exact rationals at {exact.spec.describe()}, √(σ²+ε) rational",
            f"float64 at {floats.spec.describe()}: σ² from 1e-4 to 1e6, γ ≠ 1, ε = 1e-3",
            "float32 inputs give float32 outputs",
        ]
        if numba:
            checks = [f"{c} (the kernel as plain Python)" for c in checks]
            n = exact.x.shape[0]
            checks.append(
                f"exact rationals with the {n} rows cut into chunks of "
                f"{' or '.join(map(str, chunks[1:]))} row(s) (the kernel as plain Python)"
            )
        if numba and compiled:
            check.float64("numba64", "float64 under numba", floats)
            check.float32("numba32", "float32 under numba")
            checks.append(
                f"compiled by numba: float64 at {floats.spec.describe()} (also in chunks of "
                f"{' or '.join(map(str, float_chunks[1:]))} row(s)), float32 stays float32"
            )
    except ChildFailure as exc:
        raise EmitVerificationError(
            f"{where} could not be verified: the verification process failed: {exc}"
        ) from exc
    return Verification(tuple(checks))


# -- the relatives: LayerNorm, InstanceNorm, GroupNorm, RMSNorm ---------------------------------------
def family_api(norm: Norm) -> dict[str, Any]:
    """The entry points of a family's module, as the child calls them (see ``child.BATCH_API``)."""
    if norm.centred:
        return BATCH_API
    return {"beta": False, "cache": ["x", "inv_rms"], "grads": ["dx", "dgamma"]}


def family_specs(layout: Layout, form: Form) -> list[Spec]:
    """The layers a family's module is verified at: for LayerNorm and RMSNorm an (N, D) input
    and an (N, C, H, W) one normalized over its last two axes (the module normalizes over γ's
    axes, whatever the input's rank); InstanceNorm and GroupNorm an (N, C, H, W) input."""
    norm = layout.norm
    if layout.rows:
        specs = [
            Spec(Mode.PER_ACTIVATION, n=3, c=4, norm=norm),
            Spec(Mode.SPATIAL, n=2, c=2, h=2, w=3, norm=norm, last_axes=2),
        ]
    elif norm is Norm.INSTANCE:
        specs = [Spec(Mode.SPATIAL, n=2, c=3, h=2, w=2, norm=norm)]
    else:
        specs = [
            Spec(Mode.SPATIAL, n=2, c=2 * layout.groups, h=2, w=2, norm=norm, groups=layout.groups)
        ]
    return [_with_conventions(s, form) for s in specs]


def _with_conventions(spec: Spec, form: Form) -> Spec:
    return dataclasses.replace(spec, unbiased=form.unbiased, eps_inside=form.eps_inside)


def _set_statistics(spec: Spec, point: dict[str, Any], backend: Backend) -> dict[str, list[Any]]:
    """μ (centred families) and the reciprocal root 1/√(σ²+ε) (RMSNorm: 1/√(ms+ε)) of every
    set, from the forward graph of the core at the layer's inputs."""
    stats: dict[str, list[Any]] = {"mu": [], "inv_std": []}
    for channel in range(spec.sets):
        values = set_point(
            spec, channel, point["x"], point["g"], point["gamma"], point["beta"], point["eps"]
        )
        env = point_env(spec, channel, values, backend).env
        radicand = "var" if spec.norm.centred else "ms"
        if spec.norm.centred:
            stats["mu"].append(env.scalars["mu"])
        root = env.backend.root(env.scalars[radicand] + env.scalars["eps"], sp.Rational(-1, 2))
        stats["inv_std"].append(root)
    if not spec.norm.centred:
        del stats["mu"]
    return stats


def family_exact_case(spec: Spec, seed: int = 6) -> _Case:
    """``core.layer.exact_point``: one ε with every set's root rational; the truth of the whole
    layer (``layer_truth``) in exact rationals, as ``Exact`` values for the child."""
    from bnderive.core.evaluate import RATIONAL

    point = exact_point(spec, seed)
    truth = layer_truth(
        spec, point["x"], point["g"], point["gamma"], point["beta"], point["eps"], RATIONAL
    )
    values: dict[str, Any] = {"y": truth["out"], "dx": truth["dx"], "dgamma": truth["dgamma"]}
    if "dbeta" in truth:
        values["dbeta"] = truth["dbeta"]
    values.update(_set_statistics(spec, point, RATIONAL))

    def exact(array: Any) -> np.ndarray:
        fractions = as_fractions(array)
        out = np.empty(fractions.shape, dtype=object)
        for index, v in np.ndenumerate(fractions):
            out[index] = Exact(v)
        return out

    return _Case(
        spec,
        exact(point["x"]),
        exact(point["g"]),
        exact(point["gamma"]),
        exact(point["beta"]) if point["beta"] is not None else None,
        Exact(point["eps"]),
        {name: exact(v) for name, v in values.items()},
    )


def family_float_case(spec: Spec, seed: int = 6) -> _Case:
    """Adversarial float64 inputs: every set its own mean (up to 1e3) and spread (σ² from 1e-4
    to 1e6), γ of both signs far from 1 and varying, a non-uniform upstream gradient, ε = 1e-3;
    the truth of the whole layer in float64 (``layer_truth``)."""
    from bnderive.core.evaluate import FLOAT

    draw = np.random.default_rng(seed)
    scales = [0.01, 0.7, 30.0, 1000.0]
    means = [250.0, -40.0, 3.0, 900.0]
    x = np.empty(spec.shape)
    for channel in range(spec.sets):
        values = draw.standard_normal(spec.m) * scales[channel % 4]
        if spec.norm.centred:
            values = values + means[channel % 4]
        for position, v in zip(spec.positions(channel), values, strict=True):
            x[position] = v
    g = draw.standard_normal(spec.shape) * 2.0 + 0.5
    size = int(np.prod(spec.affine_shape))
    gamma = (draw.choice([-1.0, 1.0], size) * draw.uniform(0.04, 3.7, size)).reshape(
        spec.affine_shape
    )
    beta = draw.normal(size=spec.affine_shape) if spec.norm.has_beta else None
    eps = 1e-3
    truth = layer_truth(spec, x, g, gamma, beta, eps, FLOAT)
    values: dict[str, Any] = {"y": truth["out"], "dx": truth["dx"], "dgamma": truth["dgamma"]}
    if "dbeta" in truth:
        values["dbeta"] = truth["dbeta"]
    point = {"x": x, "g": g, "gamma": gamma, "beta": beta, "eps": eps}
    values.update(_set_statistics(spec, point, FLOAT))
    return _Case(
        spec,
        x,
        g,
        gamma,
        beta,
        eps,
        {k: np.asarray(v, dtype=np.float64) for k, v in values.items()},
    )


def verify_family_module(
    source: str, form: Form, layout: Layout, runner: Callable[..., Any] = run_module
) -> Verification:
    """A LayerNorm, InstanceNorm, GroupNorm or RMSNorm module run in a child process and
    compared, here, with the ground truth of the whole layer (``core.layer``): exactly at each
    of ``family_specs``, in float64 at adversarial inputs there, and float32 stays float32.
    :class:`EmitVerificationError` at the first disagreement."""
    norm = layout.norm
    where = f"the {norm.title} module emitted from {form.name!r}"
    api = family_api(norm)
    specs = family_specs(layout, form)
    exact = [family_exact_case(s) for s in specs]
    floats = [family_float_case(s) for s in specs]
    runs: list[dict[str, Any]] = []
    for k, case in enumerate(exact):
        runs.append(
            {
                "id": f"exact{k}",
                "module": "plain",
                "inputs": _inputs(case),
                "rows": [None],
                "api": api,
            }
        )
    for k, case in enumerate(floats):
        runs.append(
            {
                "id": f"float64-{k}",
                "module": "plain",
                "inputs": _inputs(case),
                "rows": [None],
                "api": api,
            }
        )
    runs.append(
        {
            "id": "float32",
            "module": "plain",
            "inputs": _inputs(floats[0], np.float32),
            "rows": [None],
            "api": api,
        }
    )
    try:
        results = runner(source, form.name, runs)
        check = _Checker(where, results, runs)
        for k, case in enumerate(exact):
            check.exact(f"exact{k}", f"exact at {case.spec.describe()}", case)
        for k, case in enumerate(floats):
            check.float64(f"float64-{k}", f"float64 at {case.spec.describe()}", case)
        check.float32("float32", "float32")
    except ChildFailure as exc:
        raise EmitVerificationError(
            f"{where} could not be verified: the verification process failed: {exc}"
        ) from exc
    shapes = " and ".join(s.describe() for s in specs)
    return Verification(
        (
            f"exact rationals at {shapes}, every root rational",
            "float64 at the same layouts: σ² from 1e-4 to 1e6, γ ≠ 1 varying, ε = 1e-3",
            "float32 inputs give float32 outputs",
        )
    )
