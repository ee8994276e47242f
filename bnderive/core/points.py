"""One reduction set of a spec, instantiated: the environments that evaluation runs in.

* ``symbolic_env``: every input a SymPy symbol (x₀₁, g₀₁, γ₀, β₀), the statistics as symbols
  μ₀, σ²₀ (the teaching view: what ``derive`` prints).
* ``exact_env``: the same inputs, μ and σ² as the polynomials they are, and the radical
  eliminated (DESIGN.md §4): r = √(σ²+ε) becomes a positive symbol and ε = r² − σ²(x), so every
  quantity of a correct form is a rational function of x, g, γ, r and zero is decided exactly.
* ``point_env``: exact numbers (SymPy rationals or ``Fraction``) at a given point.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from random import Random
from typing import Any

import numpy as np
import sympy as sp

from bnderive.core import notation as N
from bnderive.core.evaluate import (
    ENGINE,
    ENGINE_R,
    EXACT_INT,
    FLOAT,
    SYMBOLIC,
    Backend,
    Env,
    evaluate,
    rational,
)
from bnderive.core.graph import Graph
from bnderive.core.spec import Spec

#: The eliminated radical √(σ²+ε).
R = sp.Symbol("r", positive=True)


def element_name(base: str, position: tuple[int, ...]) -> str:
    digits = (
        "".join(str(p) for p in position) if max(position) < 10 else ",".join(map(str, position))
    )
    return f"{base}_{digits}"


def input_symbols(spec: Spec, channel: int, engine: bool = False) -> dict[str, Any]:
    positions = spec.positions(channel)
    if engine:
        import symengine as se

        def make(name: str) -> Any:
            return se.Symbol(name)
    else:

        def make(name: str) -> Any:
            return sp.Symbol(name, real=True)

    x = np.array([make(element_name("x", p)) for p in positions], dtype=object)
    g = np.array([make(element_name("g", p)) for p in positions], dtype=object)
    ggi = np.array([make(element_name("ggI", p)) for p in positions], dtype=object)
    out = {
        "x": x,
        "g": g,
        "ggI": ggi,
        "gamma": make(f"gamma_{channel}"),
        "beta": make(f"beta_{channel}"),
        "ggG": make(f"ggG_{channel}"),
        "ggB": make(f"ggB_{channel}"),
    }
    if spec.norm.affine_per_element:
        # One γ and β per element: independent symbols, one per element of the set, named by
        # the index into γ where that is one per element (LayerNorm: γ_d), else by the element's
        # position.  (GroupNorm shares γ among a channel's elements; a statement proved for
        # independent γ_k holds for shared ones, and the exact method's permutation symmetry
        # needs the elements interchangeable.)
        where = [spec.affine_index(p) for p in positions]
        if len(set(where)) < len(where):
            where = positions
        for name in ("gamma", "beta"):
            out[name] = np.array([make(element_name(name, p)) for p in where], dtype=object)
    return out


def affine_arrays(spec: Spec) -> tuple[str, ...]:
    """The affine parameters that are arrays (one value per element) in this family's sets."""
    if not spec.norm.affine_per_element:
        return ()
    return ("gamma", "beta") if spec.norm.has_beta else ("gamma",)


def _with_inputs(env: Env, inputs: dict[str, Any], spec: Spec) -> Env:
    arrays = affine_arrays(spec)
    for name in ("x", "g", "ggI", *arrays):
        env.arrays[name] = inputs[name]
    for name in ("gamma", "beta", "ggG", "ggB"):
        if name not in arrays:
            env.scalars[name] = inputs[name]
    return env


def _forward(
    env: Env, graph: Graph, expand: Callable | None, eps_rule: Callable | None = None
) -> Env:
    """Fill in the forward stages (μ, σ² when training; x̂, y) by evaluating the graph.

    ``eps_rule(σ²)`` gives ε once σ² is known (the elimination ε = r² − σ²; RMSNorm's
    ε = r² − ms)."""
    radicand = graph.radicand
    if eps_rule is not None and radicand in env.scalars:
        env.scalars["eps"] = eps_rule(env.scalars[radicand])
    for stage in graph.stages:
        if stage.name == "L":
            continue
        if stage.elementwise:
            env.store(stage.name, evaluate(stage.at(N.i), env, N.i), True)
        else:
            value = evaluate(stage.at(N.i), env)
            env.store(stage.name, expand(value) if expand else value, False)
        if stage.name == radicand and eps_rule is not None:
            env.scalars["eps"] = eps_rule(env.scalars[radicand])
    return env


@dataclass(frozen=True)
class Instance:
    """An environment plus what it was made from."""

    spec: Spec
    channel: int
    env: Env
    inputs: dict[str, Any]


def symbolic_env(spec: Spec, channel: int = 0) -> Instance:
    graph = Graph.build(spec)
    inputs = input_symbols(spec, channel)
    env = Env(spec.m, SYMBOLIC, {"x": inputs["x"], "g": inputs["g"]}, {})
    for name in ("gamma", "beta"):
        if name in affine_arrays(spec):
            env.arrays[name] = inputs[name]
        else:
            env.scalars[name] = inputs[name]
    env.scalars["eps"] = sp.Symbol("epsilon", positive=True)
    if spec.norm.centred:
        env.scalars["mu"] = sp.Symbol(f"mu_{channel}", real=True)
        env.scalars["var"] = sp.Symbol(f"sigma2_{channel}", nonnegative=True)
    else:
        env.scalars["ms"] = sp.Symbol(f"ms_{channel}", nonnegative=True)
    for stage in graph.stages:
        if stage.elementwise:
            env.store(stage.name, evaluate(stage.at(N.i), env, N.i), True)
    return Instance(spec, channel, env, inputs)


def exact_env(spec: Spec, channel: int = 0) -> Instance:
    """Inputs as symbols, statistics as polynomials, ε eliminated: in symengine when it is
    installed (about 20× faster), else in SymPy; ``zero.decide_zero`` accepts either."""
    graph = Graph.build(spec)
    engine = ENGINE is not None
    inputs = input_symbols(spec, channel, engine=engine)
    env = _with_inputs(Env(spec.m, ENGINE if engine else SYMBOLIC), inputs, spec)
    if engine:
        import symengine as se

        expand, r, symbol = se.expand, ENGINE_R, se.Symbol
    else:
        expand, r, symbol = sp.expand, R, sp.Symbol
    if not spec.training:
        env.scalars["mu"] = symbol(f"mu_{channel}")
        env.scalars["var"] = symbol(f"sigma2_{channel}")
    elif spec.norm.centred:
        # Centred coordinates: x_k = μ + u_k for k < M and x_M = μ − Σu, a linear change of
        # variables that keeps every identity.  Each x_k − μ is then one symbol, not M terms,
        # which keeps the expansions small (they dominate the exact check).
        mean = symbol(f"mu_{channel}")
        u = [symbol(f"u{index}_{channel}") for index in range(1, spec.m)]
        last = mean - sum(u) if u else mean
        env.arrays["x"] = np.array([mean + v for v in u] + [last], dtype=object)
        inputs = dict(inputs, centred=(inputs["x"], mean, u))
    rule = None
    if spec.eps_zero:
        env.scalars["eps"] = expand(symbol("epsilon") * 0)  # ε = 0 (the graph has no ε)
    elif spec.eps_inside:
        # ε = r² − σ²: then √(σ² + ε) = r exactly.
        rule = lambda v: expand(r**2 - v)  # noqa: E731
    else:
        env.scalars["eps"] = symbol("epsilon")
    return Instance(spec, channel, _forward(env, graph, expand, rule), inputs)


def point_env(spec: Spec, channel: int, point: dict[str, Any], backend: Backend) -> Instance:
    """Inputs at ``point``: x, g (sequences of length M), gamma, beta, and either eps or r
    (then ε = r² − σ², chosen so that √(σ²+ε) = r is rational)."""
    graph = Graph.build(spec)
    if backend is SYMBOLIC:
        conv = lambda v: sp.Rational(Fraction(v).numerator, Fraction(v).denominator)  # noqa: E731
        exact_ints = conv
    elif backend is FLOAT:
        conv = exact_ints = float
    else:
        conv, exact_ints = rational, EXACT_INT
    env = Env(spec.m, backend, {}, {})
    for name in ("x", "g", "ggI"):
        # Integer inputs convert without the generic path: this is most of the set-up at M=4096.
        env.arrays[name] = np.fromiter(
            map(exact_ints, point[name]), dtype=float if backend is FLOAT else object, count=spec.m
        )
    arrays = affine_arrays(spec)
    for name in arrays:
        env.arrays[name] = np.fromiter(
            map(conv, point[name]), dtype=float if backend is FLOAT else object, count=spec.m
        )
    for name in ("gamma", "beta", "ggG", "ggB"):
        if name not in arrays and name in point:
            env.scalars[name] = conv(point[name])
    if not spec.training:
        env.scalars.update(mu=conv(point["mu"]), var=conv(point["var"]))
    rule = None
    if "eps" in point:
        env.scalars["eps"] = conv(point["eps"])
    else:
        r = conv(point["r"])
        rule = lambda v: r * r - v  # noqa: E731
    return Instance(spec, channel, _forward(env, graph, None, rule), dict(point))


def random_point(spec: Spec, seed: int, spread: int) -> dict[str, Any]:
    """Adversarial inputs: non-uniform x and g, γ ≠ 1, σ² far from 1, ε > 0 with √(σ²+ε) rational.

    Values are integers in [−spread, spread] drawn from ``seed``; r is an integer above √σ², so
    ε = r² − σ² > 0.
    """
    m = spec.m
    rng = Random(seed)
    draw = np.random.default_rng(seed)

    def distinct(k: int) -> list[int]:
        while True:
            vals = draw.integers(-spread, spread + 1, size=k).tolist()
            if k < 2 or len(set(vals)) > 1:
                return vals

    x, g = distinct(m), distinct(m)
    gamma = 2
    while spread > 1 and gamma in (0, 1, -1, 2):  # γ = ±1 hides a missing γ
        gamma = rng.randint(-spread, spread)
    beta = rng.randint(-spread, spread)
    point: dict[str, Any] = {"x": x, "g": g, "gamma": gamma, "beta": beta}
    # Inputs of the double backward: nonzero, so that no term of Φ is switched off.
    point["ggI"] = distinct(m)
    point["ggG"] = rng.choice([v for v in (-3, -2, 2, 3, spread) if v != 0])
    point["ggB"] = rng.choice([v for v in (-2, 3, -spread) if v != 0])
    if not spec.norm.centred:
        var = Fraction(sum(v * v for v in x), m)  # RMSNorm's mean square stands for σ²
    elif spec.training:
        # σ² = (Σx² − (Σx)²/M)/divisor, in integers until the last step
        divisor = m - 1 if spec.unbiased else m
        total = sum(x)
        var = Fraction(m * sum(v * v for v in x) - total * total, m * divisor)
    else:
        point["mu"] = rng.randint(-spread, spread)
        point["var"] = rng.randint(1, spread * spread)
        var = Fraction(point["var"])
    if spec.eps_zero:
        point["eps"] = 0
    elif spec.eps_inside:
        floor = math.isqrt(math.ceil(var)) + 1
        point["r"] = floor + rng.randint(0, spread)
    else:
        point["eps"] = Fraction(rng.randint(1, spread), spread + 1)
    if spec.norm.affine_per_element:
        # One γ and β per element, drawn last (the BatchNorm points stay what they were): γ_k
        # avoids 0 and ±1 and is not constant over the set, so a γ pulled out of a sum shows.
        def off_unit() -> int:  # uniform on [−spread−2, spread+2] without 0, ±1
            while True:
                v = rng.randint(-spread - 2, spread + 2)
                if v not in (0, 1, -1):
                    return v

        while True:
            point["gamma"] = [off_unit() for _ in range(m)]
            if m < 2 or len(set(point["gamma"])) > 1:
                break
        if spec.norm.has_beta:
            point["beta"] = [rng.randint(-spread, spread) for _ in range(m)]
    return point


def modular_point_env(spec: Spec, seed: int) -> Instance:
    """A uniformly random point of F_p (see ``modular``): inputs are residues mod p, r is
    drawn and ε = r² − σ² (mod p), so √(σ²+ε) = r; in eval mode μ and σ² are drawn too."""
    from bnderive.core.finite_field import P, modular_backend

    draw = np.random.default_rng(seed)
    r = int(draw.integers(1, P))
    env = Env(spec.m, modular_backend(r))
    inputs: dict[str, Any] = {"r": r}
    for name in ("x", "g", "ggI"):
        env.arrays[name] = draw.integers(0, P, size=spec.m, dtype=np.int64)
        inputs[name] = env.arrays[name]
    for name in ("gamma", "beta", "ggG", "ggB"):
        env.scalars[name] = inputs[name] = int(draw.integers(0, P))
    for name in affine_arrays(spec):
        del env.scalars[name]
        env.arrays[name] = inputs[name] = draw.integers(0, P, size=spec.m, dtype=np.int64)

    def rule(v: Any) -> int:
        return (r * r - int(v)) % P

    if not spec.training:
        env.scalars["mu"] = int(draw.integers(0, P))
        env.scalars["var"] = int(draw.integers(0, P))
        env.scalars["eps"] = rule(env.scalars["var"])
        return Instance(spec, 0, _forward(env, Graph.build(spec), None), inputs)
    return Instance(spec, 0, _forward(env, Graph.build(spec), None, rule), inputs)
