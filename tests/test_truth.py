"""The ground truth equals a brute-force differentiation of the whole forward pass.

The engine's truth (``derive`` → staged adjoints, evaluated on one reduction set by
``instances.symbolic_env`` or ``instances.exact_env``) is compared, entry by entry and exactly,
with ``sympy.diff`` of L = Σ g·(γ x̂ + β) written over the full tensor with plain symbols
(``conftest.Layer``).  Both sides are brought to the same symbols, the radical is replaced by a
positive symbol on both, and the difference must cancel to 0 (``Layer.is_zero``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import sympy as sp

from bnderive import Mode, Spec, derive
from bnderive.core.points import exact_env, symbolic_env
from bnderive.verify.lines import run_lines

SHAPES = [(3, 2), (2, 2, 2, 1)]


def spec_for(shape: tuple[int, ...], **conventions: Any) -> Spec:
    if len(shape) == 2:
        return Spec(Mode.PER_ACTIVATION, n=shape[0], c=shape[1], **conventions)
    n, c, h, w = shape
    return Spec(Mode.SPATIAL, n=n, c=c, h=h, w=w, **conventions)


def engine(spec: Spec, channel: int, kind: str, layer) -> dict[str, Any]:
    """The engine's truth for one channel, every value rewritten in the layer's symbols."""
    inst = (symbolic_env if kind == "symbolic" else exact_env)(spec, channel)
    out = run_lines(derive(spec).definitions(), inst.env)
    assert not out.errors, out.errors
    positions = spec.positions(channel)
    mu, var = layer.stats(channel)
    if kind == "symbolic":
        mapping = {inst.inputs["x"][k]: layer.x[p] for k, p in enumerate(positions)}
        mapping |= {inst.inputs["g"][k]: layer.g[p] for k, p in enumerate(positions)}
        mapping |= {
            inst.inputs["gamma"]: layer.gamma[channel],
            inst.inputs["beta"]: layer.beta[channel],
            inst.env.scalars["eps"]: layer.eps,
            # the teaching view keeps μ and σ² as symbols: they are these functions of x
            inst.env.scalars["mu"]: mu,
            inst.env.scalars["var"]: var,
        }

        def convert(value: Any) -> sp.Expr:
            return sp.sympify(value).xreplace(mapping)
    else:
        by_name = {str(inst.inputs["x"][k]): layer.x[p] for k, p in enumerate(positions)}
        by_name |= {str(inst.inputs["g"][k]): layer.g[p] for k, p in enumerate(positions)}
        by_name |= {
            str(inst.inputs["gamma"]): layer.gamma[channel],
            str(inst.inputs["beta"]): layer.beta[channel],
            "r": layer.r,  # the engine's eliminated √(σ²+ε)
            "epsilon": layer.eps,  # ε outside the root is not eliminated
        }
        if not spec.training:
            by_name |= {str(inst.env.scalars["mu"]): mu, str(inst.env.scalars["var"]): var}
        if "centred" in inst.inputs:
            # training: the engine works in centred coordinates x_k = μ + u_k (k < M),
            # x_M = μ − Σu; back in x they are μ = mean(x) and u_k = x_k − mean(x).
            _, mean, u = inst.inputs["centred"]
            by_name[str(mean)] = mu
            by_name |= {str(v): layer.x[p] - mu for v, p in zip(u, positions, strict=False)}

        def convert(value: Any) -> sp.Expr:
            expr = sp.sympify(value)
            unknown = {s.name for s in expr.free_symbols} - set(by_name)
            assert not unknown, f"engine symbols with no counterpart: {unknown}"
            return expr.xreplace({s: by_name[s.name] for s in expr.free_symbols})

    values: dict[str, Any] = {}
    for name, value in out.values.items():
        if isinstance(value, np.ndarray):
            values[name] = [convert(v) for v in value]
        else:
            values[name] = convert(value)
    return values


@pytest.mark.parametrize("kind", ["symbolic", "exact"])
@pytest.mark.parametrize("shape", SHAPES, ids=["N,D=3,2", "N,C,H,W=2,2,2,1"])
def test_gradients_equal_brute_force_diff(layer_cls, shape, kind):
    layer = layer_cls(shape)
    spec = spec_for(shape)
    dx, dgamma, dbeta = layer.dx(), layer.dgamma(), layer.dbeta()
    for c in range(layer.channels):
        mine = engine(spec, c, kind, layer)
        positions = spec.positions(c)
        assert sorted(positions) == layer.positions(c)
        assert len(mine["dx"]) == len(positions) == layer.m(c)
        for k, pos in enumerate(positions):
            assert layer.is_zero(dx[pos] - mine["dx"][k], c), (c, pos)
        assert layer.is_zero(dgamma[c] - mine["dgamma"], c)
        assert layer.is_zero(dbeta[c] - mine["dbeta"], c)


@pytest.mark.parametrize("shape", SHAPES, ids=["N,D=3,2", "N,C,H,W=2,2,2,1"])
def test_intermediate_adjoints_equal_their_definitions(layer_cls, shape):
    """dσ² holds x and μ fixed; dμ lets σ²(x, μ) follow μ (DESIGN.md §1); dx̂ = g γ."""
    layer = layer_cls(shape)
    spec = spec_for(shape)
    for c in range(layer.channels):
        mine = engine(spec, c, "symbolic", layer)
        assert layer.is_zero(layer.dvar(c) - mine["dvar"], c)
        assert layer.is_zero(layer.dmu(c) - mine["dmu"], c)
        for k, pos in enumerate(spec.positions(c)):
            xhat = sp.Symbol("XhatFree")
            by_xhat = sp.diff(layer.g[pos] * (layer.gamma[c] * xhat + layer.beta[c]), xhat)
            assert sp.expand(by_xhat - mine["dxhat"][k]) == 0


def test_dmu_depends_on_how_var_follows_mu(layer_cls):
    """The two readings of ∂L/∂μ differ as expressions in (x, μ) but agree at μ = mean(x): the
    term through σ² carries Σ(x − μ), which is zero there.  A comparison that confused the two
    readings would still pass at the batch mean, so check the term is genuinely there."""
    layer = layer_cls((3, 1))
    mu, var = layer.mu_sym[0], layer.var_sym[0]
    held = sp.diff(layer.loss_given(0, mu, var), mu).xreplace({var: layer.var_of(0, mu)})
    followed = sp.diff(layer.loss_given(0, mu, layer.var_of(0, mu)), mu)
    assert sp.cancel(held - followed) != 0  # away from the mean they differ
    at_mean = (held - followed).xreplace({mu: layer.mean(0)})
    assert layer.is_zero(at_mean, 0)


def test_the_comparison_can_fail(layer_cls):
    """The exact comparator is not vacuous: small wrong variants of the truth are caught."""
    layer = layer_cls((3, 1))
    spec = spec_for((3, 1))
    mine = engine(spec, 0, "symbolic", layer)
    dx = layer.dx()
    right = mine["dx"][0]
    assert layer.is_zero(dx[0, 0] - right, 0)
    for wrong in (
        right / layer.gamma[0],  # γ dropped
        2 * right,
        right + layer.g[1, 0] - layer.g[2, 0],
        right * sp.sqrt(layer.var(0) + layer.eps),  # σ for σ²
    ):
        assert not layer.is_zero(dx[0, 0] - wrong, 0)


def test_features_never_mix(layer_cls):
    layer = layer_cls((3, 2))
    dx, dgamma = layer.dx(), layer.dgamma()
    other = layer.channel_symbols(1)
    for n in range(3):
        assert not dx[n, 0].free_symbols & other
        assert dx[n, 0].free_symbols & {layer.x[m, 0] for m in range(3)}
    assert not dgamma[0].free_symbols & other
    # the engine works on one reduction set at a time: channel c sees only channel c
    spec = spec_for((3, 2))
    truth = derive(spec)
    for c in range(2):
        inst = symbolic_env(spec, c)
        out = run_lines(truth.definitions(), inst.env)
        own = set(inst.inputs["x"]) | set(inst.inputs["g"])
        own |= {inst.inputs["gamma"], inst.inputs["beta"]}
        own |= {inst.env.scalars[name] for name in ("mu", "var", "eps")}
        assert {str(s) for s in inst.inputs["x"]} == {f"x_{n}{c}" for n in range(3)}
        for value in list(out.values["dx"]) + [out.values["dgamma"]]:
            assert value.free_symbols <= own
            assert value.free_symbols & set(inst.inputs["g"])
        inst = exact_env(spec, c)
        out = run_lines(truth.definitions(), inst.env)
        _, mean, u = inst.inputs["centred"]
        own = {str(s) for s in [*inst.inputs["g"], inst.inputs["gamma"], mean, *u]} | {"r"}
        for value in list(out.values["dx"]) + [out.values["dgamma"]]:
            assert {str(s) for s in sp.sympify(value).free_symbols} <= own
        assert all(p[1] == c for p in spec.positions(c))


@pytest.mark.parametrize("shape", [(1, 2), (1, 2, 1, 1)], ids=["N,D=1,2", "N,C,H,W=1,2,1,1"])
@pytest.mark.parametrize("kind", ["symbolic", "exact"])
def test_single_element_training_gradient_is_zero(layer_cls, shape, kind):
    """N = 1 (M = 1) in training: σ² = 0, x̂ = 0 (ε inside keeps it defined), dx = 0 exactly."""
    layer = layer_cls(shape)
    spec = spec_for(shape)
    for c in range(layer.channels):
        assert sp.expand(layer.var(c)) == 0
        assert sp.expand(layer.x[layer.positions(c)[0]] - layer.mean(c)) == 0
    dx = layer.dx()
    assert all(v == 0 for v in dx.flat)  # x − μ is 0 before anything is differentiated
    for c in range(layer.channels):
        mine = engine(spec, c, kind, layer)
        assert [sp.cancel(v) for v in mine["dx"]] == [0]
        assert sp.cancel(mine["dgamma"]) == 0
        assert sp.expand(mine["dbeta"] - layer.g[layer.positions(c)[0]]) == 0


@pytest.mark.parametrize("shape", SHAPES, ids=["N,D=3,2", "N,C,H,W=2,2,2,1"])
def test_eval_mode_gradient_is_elementwise(layer_cls, shape):
    """Eval: μ, σ² are the running statistics, constants: dx = g γ / √(running_var + ε)."""
    layer = layer_cls(shape, training=False)
    spec = spec_for(shape, training=False)
    dx, dgamma = layer.dx(), layer.dgamma()
    for c in range(layer.channels):
        expected = {
            pos: layer.g[pos] * layer.gamma[c] / sp.sqrt(layer.running_var[c] + layer.eps)
            for pos in layer.positions(c)
        }
        for pos, value in expected.items():
            assert sp.expand(dx[pos] - value) == 0
        for kind in ("symbolic", "exact"):
            mine = engine(spec, c, kind, layer)
            for k, pos in enumerate(spec.positions(c)):
                if kind == "symbolic":
                    assert sp.expand(mine["dx"][k] - expected[pos]) == 0
                assert layer.is_zero(mine["dx"][k] - expected[pos], c)
            assert layer.is_zero(mine["dgamma"] - dgamma[c], c)
        # the adjoints of the running statistics, as constants of the graph
        mine = engine(spec, c, "symbolic", layer)
        L = layer.loss()
        assert sp.expand(mine["dmu"] - sp.diff(L, layer.running_mean[c])) == 0
        assert sp.expand(mine["dvar"] - sp.diff(L, layer.running_var[c])) == 0


@pytest.mark.parametrize(
    "conventions",
    [{"unbiased": True}, {"eps_inside": False}, {"unbiased": True, "eps_inside": False}],
    ids=["bessel", "eps-outside", "bessel+eps-outside"],
)
@pytest.mark.parametrize("shape", [(3, 1), (3, 1, 1, 1)], ids=["N,D=3,1", "N,C,H,W=3,1,1,1"])
def test_conventions_equal_brute_force(layer_cls, conventions, shape):
    layer = layer_cls(shape, **conventions)
    spec = spec_for(shape, **conventions)
    dx, dgamma, dbeta = layer.dx(), layer.dgamma(), layer.dbeta()
    for kind in ("symbolic", "exact"):
        mine = engine(spec, 0, kind, layer)
        for k, pos in enumerate(spec.positions(0)):
            assert layer.is_zero(dx[pos] - mine["dx"][k], 0), (kind, pos)
        assert layer.is_zero(dgamma[0] - mine["dgamma"], 0)
        assert layer.is_zero(dbeta[0] - mine["dbeta"], 0)
    mine = engine(spec, 0, "symbolic", layer)
    assert layer.is_zero(layer.dvar(0) - mine["dvar"], 0)
    assert layer.is_zero(layer.dmu(0) - mine["dmu"], 0)


def test_conventions_change_the_truth(layer_cls):
    """The conventions matter at N = 3: each one's brute-force dx differs from the default's,
    so the tests above could not pass by comparing the default truth with itself."""
    default = layer_cls((3, 1))
    base = default.dx()[0, 0]
    for conventions in ({"unbiased": True}, {"eps_inside": False}):
        other = layer_cls((3, 1), **conventions)
        other_dx = other.dx()[0, 0]
        point = {s: v for s, v in zip(default.x[:, 0], (3, 1, -2), strict=True)}
        point |= {s: v for s, v in zip(default.g[:, 0], (1, -2, 5), strict=True)}
        point |= {default.gamma[0]: 3, default.eps: sp.Rational(1, 7)}
        assert sp.N(base.xreplace(point) - other_dx.xreplace(point), 30) != 0


def test_uniform_upstream_gradient_makes_dx_vanish(layer_cls):
    """DESIGN.md §1's trap, checked on the brute force and on the engine's truth: with g
    uniform, the true dx is identically 0, so a uniform-g test proves nothing."""
    layer = layer_cls((3, 1))
    spec = spec_for((3, 1))
    mine = engine(spec, 0, "symbolic", layer)
    uniform = {layer.g[n, 0]: layer.g[0, 0] for n in range(3)}
    for k, pos in enumerate(spec.positions(0)):
        assert layer.is_zero(layer.dx()[pos].xreplace(uniform), 0)
        assert layer.is_zero(mine["dx"][k].xreplace(uniform), 0)
        assert not layer.is_zero(mine["dx"][k], 0)
