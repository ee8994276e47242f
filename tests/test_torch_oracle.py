"""PyTorch as an independent oracle: the engine's ground truth equals autograd through
``torch.nn.functional.batch_norm`` in float64.

How the engine's truth is evaluated, soundly: every float64 input is converted to the exact
rational it denotes (``Fraction(float)`` is exact), and the truth's staged adjoints are evaluated
on those rationals with the SYMBOLIC backend (``instances.point_env``).  √(σ²+ε) of a rational is
generally irrational, so the values are exact algebraic numbers (rationals times square roots),
which SymPy keeps exact; only at the end are they rounded to 30 significant digits.  The
reference is thus the exact gradient at PyTorch's own inputs, and the comparison at rtol 1e-10
measures PyTorch's float64 rounding (≈1e-15 here) and nothing of ours.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import sympy as sp

from bnderive import Mode, Spec, derive
from bnderive.core.evaluate import SYMBOLIC
from bnderive.core.points import point_env, random_point
from bnderive.verify.lines import run_lines

torch = pytest.importorskip("torch")
F = torch.nn.functional

pytestmark = pytest.mark.torch

RTOL = 1e-10
LAYOUTS = [(5, 3), (3, 2, 2, 3)]
IDS = ["N,D=5,3", "N,C,H,W=3,2,2,3"]


def spec_for(shape: tuple[int, ...], training: bool = True) -> Spec:
    if len(shape) == 2:
        return Spec(Mode.PER_ACTIVATION, n=shape[0], c=shape[1], training=training)
    n, c, h, w = shape
    return Spec(Mode.SPATIAL, n=n, c=c, h=h, w=w, training=training)


def adversarial_inputs(shape: tuple[int, ...], seed: int) -> dict[str, np.ndarray]:
    """γ far from 1 (and negative somewhere), σ² far from 1, a mean far from 0, non-uniform g."""
    rng = np.random.default_rng(seed)
    c = shape[1]
    return {
        "x": rng.normal(size=shape) * 10.0 + 11.0,
        "g": rng.normal(size=shape) * 2.0 + 0.5,
        "gamma": rng.uniform(1.5, 3.0, size=c) * np.where(np.arange(c) % 2, -1.0, 1.0),
        "beta": rng.normal(size=c),
        "running_mean": rng.normal(size=c) * 3.0,
        "running_var": rng.uniform(0.05, 20.0, size=c),
        "eps": 0.0123,
    }


def torch_gradients(inputs: dict, training: bool) -> dict[str, np.ndarray]:
    x = torch.tensor(inputs["x"], dtype=torch.float64, requires_grad=True)
    weight = torch.tensor(inputs["gamma"], dtype=torch.float64, requires_grad=True)
    bias = torch.tensor(inputs["beta"], dtype=torch.float64, requires_grad=True)
    running_mean = torch.tensor(inputs["running_mean"], dtype=torch.float64)
    running_var = torch.tensor(inputs["running_var"], dtype=torch.float64)
    y = F.batch_norm(
        x,
        running_mean,
        running_var,
        weight,
        bias,
        training=training,
        momentum=0.1,
        eps=inputs["eps"],
    )
    (y * torch.tensor(inputs["g"], dtype=torch.float64)).sum().backward()
    return {
        "dx": x.grad.numpy(),
        "dgamma": weight.grad.numpy(),
        "dbeta": bias.grad.numpy(),
    }


def engine_gradients(inputs: dict, spec: Spec) -> dict[str, np.ndarray]:
    """The engine's truth at the exact rationals of the float64 inputs (see the module doc)."""
    truth = derive(spec)
    out = {
        "dx": np.empty(spec.shape),
        "dgamma": np.empty(spec.c),
        "dbeta": np.empty(spec.c),
    }
    for c in range(spec.c):
        positions = spec.positions(c)
        point = random_point(spec, 0, 3)  # every key the environment wants
        point.pop("r", None)
        point.update(
            x=[Fraction(float(inputs["x"][p])) for p in positions],
            g=[Fraction(float(inputs["g"][p])) for p in positions],
            gamma=Fraction(float(inputs["gamma"][c])),
            beta=Fraction(float(inputs["beta"][c])),
            eps=Fraction(inputs["eps"]),
        )
        if not spec.training:
            point.update(
                mu=Fraction(float(inputs["running_mean"][c])),
                var=Fraction(float(inputs["running_var"][c])),
            )
        inst = point_env(spec, c, point, SYMBOLIC)
        values = run_lines(truth.definitions(), inst.env)
        assert not values.errors, values.errors
        for k, p in enumerate(positions):
            out["dx"][p] = float(sp.N(values.values["dx"][k], 30))
        out["dgamma"][c] = float(sp.N(values.values["dgamma"], 30))
        out["dbeta"][c] = float(sp.N(values.values["dbeta"], 30))
    return out


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("shape", LAYOUTS, ids=IDS)
def test_training_gradients_match_pytorch(shape, seed):
    inputs = adversarial_inputs(shape, seed)
    spec = spec_for(shape)
    assert spec.m >= 3
    mine = engine_gradients(inputs, spec)
    theirs = torch_gradients(inputs, training=True)
    for name in ("dx", "dgamma", "dbeta"):
        np.testing.assert_allclose(theirs[name], mine[name], rtol=RTOL, atol=0, err_msg=name)
    # the inputs are adversarial where it matters
    axes = spec.reduction_axes
    assert np.all(inputs["x"].var(axis=axes) > 4.0)  # σ and σ² differ by more than 2×
    assert np.all(np.abs(inputs["gamma"]) > 1.4)
    assert np.abs(mine["dx"]).max() > 1e-3  # the gradient is not the trivial 0


@pytest.mark.parametrize("shape", LAYOUTS, ids=IDS)
def test_eval_gradients_match_pytorch(shape):
    inputs = adversarial_inputs(shape, 7)
    spec = spec_for(shape, training=False)
    mine = engine_gradients(inputs, spec)
    theirs = torch_gradients(inputs, training=False)
    for name in ("dx", "dgamma", "dbeta"):
        np.testing.assert_allclose(theirs[name], mine[name], rtol=RTOL, atol=0, err_msg=name)


@pytest.mark.parametrize("shape", LAYOUTS, ids=IDS)
def test_eval_and_training_gradients_differ(shape):
    """The two modes are not interchangeable at these inputs (so each test above is a test)."""
    inputs = adversarial_inputs(shape, 3)
    train = engine_gradients(inputs, spec_for(shape))["dx"]
    evald = engine_gradients(inputs, spec_for(shape, training=False))["dx"]
    assert not np.allclose(train, evald, rtol=1e-3)


def test_a_wrong_truth_would_be_caught():
    """The tolerance is tight enough to see the classic mistakes: dx without the statistics'
    paths, or with γ dropped, is far outside rtol 1e-10 of PyTorch."""
    shape = (5, 3)
    inputs = adversarial_inputs(shape, 0)
    theirs = torch_gradients(inputs, training=True)["dx"]
    x, g, gamma, eps = inputs["x"], inputs["g"], inputs["gamma"], inputs["eps"]
    var = x.var(axis=0)
    constants = g * gamma / np.sqrt(var + eps)
    assert not np.allclose(theirs, constants, rtol=RTOL, atol=0)
    right = engine_gradients(inputs, spec_for(shape))["dx"]
    assert not np.allclose(theirs, right / gamma, rtol=RTOL, atol=0)
