"""Linear → BatchNorm → ReLU (seed 002): dL/dW, dL/db, dL/dX through BatchNorm, and dL/db ≡ 0.

The facts are proved for every batch size by the every-M engine; the truth at explicit inputs
(``core.composite.affine_bn_relu_truth``, what a checker of CS231n's ``affine_bn_relu_backward``
compares with) is checked against a brute-force ``sympy.diff`` of the whole loss and against
PyTorch autograd.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import sympy as sp

from bnderive.core import notation as N
from bnderive.core.composite import affine_bn_relu_truth
from bnderive.core.spec import Spec
from bnderive.errors import EvaluationError
from bnderive.verify.composite import bias_cancels, bias_gradient
from bnderive.verify.every_m import prove


def test_the_bias_is_cancelled_by_the_mean_for_every_m():
    facts = {f.name: f for f in bias_cancels()}
    assert facts["centred"].holds and facts["centred"].leftover == 0
    assert facts["variance"].holds and facts["variance"].leftover == 0


def test_the_proof_engine_does_not_prove_a_wrong_cancellation():
    # sanity of the engine used above: h_i − μ(a) is not a_i − μ(a); the bias is left over
    a, b, i, k = sp.IndexedBase("a"), sp.Symbol("b"), N.i, N.k
    result = prove(
        (a[i] + b) - N.reduce_sum(a[k], k) / N.M, a[i] - N.reduce_sum(a[k], k) / N.M, Spec()
    )
    assert not result.zero and result.leftover == b


def test_bias_gradient_is_exactly_zero_in_training_for_every_m():
    fact = bias_gradient(training=True)
    assert fact.holds and fact.leftover == 0


def test_bias_gradient_is_not_zero_in_eval_mode():
    fact = bias_gradient(training=False)
    assert not fact.holds
    g, k = N.g, sp.Symbol("k", integer=True)
    assert (
        sp.simplify(fact.leftover - N.gamma * sp.Sum(g[k], (k, 1, N.M)) / sp.sqrt(N.var + N.eps))
        == 0
    )


# -- the truth at explicit inputs ------------------------------------------------------------------
def _inputs(seed: int, n: int = 4, d_in: int = 3, d: int = 2) -> dict:
    rng = np.random.default_rng(seed)

    def q(shape, scale=1.0, shift=0.0):
        return np.vectorize(lambda v: Fraction(round(v * 8), 8), otypes=[object])(
            rng.normal(size=shape) * scale + shift
        )

    return {
        "x": q((n, d_in), 2.0, 1.0),
        "w": q((d_in, d)),
        "b": q((d,), 3.0),
        "gamma": q((d,), 0.5, 1.5),
        "beta": q((d,), 0.5),
        "dout": q((n, d)),
        "eps": Fraction(1, 10),
    }


def _brute_force(inputs: dict) -> dict:
    """Every gradient by sympy.diff of L = Σ dout·ReLU(BN(XW + b)), exact."""
    n, d_in = inputs["x"].shape
    d = inputs["w"].shape[1]
    X = np.array([[sp.Symbol(f"X{a}_{c}") for c in range(d_in)] for a in range(n)], dtype=object)
    W = np.array([[sp.Symbol(f"W{a}_{c}") for c in range(d)] for a in range(d_in)], dtype=object)
    B = np.array([sp.Symbol(f"B{c}") for c in range(d)], dtype=object)
    G = np.array([sp.Symbol(f"G{c}") for c in range(d)], dtype=object)
    Be = np.array([sp.Symbol(f"Be{c}") for c in range(d)], dtype=object)
    eps = sp.Rational(1, 10)
    h = X.dot(W) + B
    mean = h.sum(axis=0) / n
    var = ((h - mean) ** 2).sum(axis=0) / n
    y = G * (h - mean) / np.vectorize(sp.sqrt, otypes=[object])(var + eps) + Be
    values = {}
    for sym, val in [
        (X, inputs["x"]),
        (W, inputs["w"]),
        (B, inputs["b"]),
        (G, inputs["gamma"]),
        (Be, inputs["beta"]),
    ]:
        for s_, v in zip(sym.ravel(), np.asarray(val).ravel(), strict=True):
            values[s_] = sp.Rational(v.numerator, v.denominator)
    mask = np.vectorize(lambda e: bool(sp.N(e.xreplace(values), 50) > 0), otypes=[bool])(y)
    loss = sp.Add(
        *[
            sp.Rational(str(inputs["dout"][idx])) * y[idx]
            for idx in np.ndindex(y.shape)
            if mask[idx]
        ]
    )

    def grad(symbols):
        return np.vectorize(lambda s_: sp.diff(loss, s_).xreplace(values), otypes=[object])(symbols)

    return {"dx": grad(X), "dw": grad(W), "db": grad(B), "dgamma": grad(G), "dbeta": grad(Be)}


def _same(a, b) -> bool:
    return all(
        sp.simplify(sp.nsimplify(u) - v) == 0
        if isinstance(u, sp.Basic)
        else sp.simplify(sp.Rational(str(u)) - v) == 0
        for u, v in zip(np.asarray(a).ravel(), np.asarray(b).ravel(), strict=True)
    )


def test_truth_equals_the_brute_force_exactly():
    inputs = _inputs(seed=1, n=3, d_in=2, d=2)
    truth = affine_bn_relu_truth(**inputs)
    assert 0 < np.count_nonzero(truth["out"] != 0) < truth["out"].size  # the ReLU cuts some
    brute = _brute_force(inputs)
    for name in ("dx", "dw", "db", "dgamma", "dbeta"):
        assert _same(truth[name], brute[name]), name


def test_bias_gradient_is_zero_at_explicit_inputs_and_not_assumed():
    truth = affine_bn_relu_truth(**_inputs(seed=2))
    assert all(v == 0 for v in truth["db"])
    # dh itself is not zero: db vanishes because dh sums to zero over the batch, per feature
    assert any(v != 0 for v in truth["dh"].ravel())


def test_shapes_are_checked():
    inputs = _inputs(seed=3)
    inputs["w"] = inputs["w"][:2]
    with pytest.raises(EvaluationError, match="w has shape"):
        affine_bn_relu_truth(**inputs)


@pytest.mark.torch
def test_truth_equals_pytorch_autograd():
    torch = pytest.importorskip("torch")
    inputs = _inputs(seed=5, n=6, d_in=3, d=4)
    as_float = {k: np.asarray(v, dtype=float) for k, v in inputs.items() if k != "eps"}
    eps = float(inputs["eps"])
    t = {k: torch.tensor(v, requires_grad=k != "dout") for k, v in as_float.items()}
    h = t["x"] @ t["w"] + t["b"]
    y = torch.nn.functional.batch_norm(h, None, None, t["gamma"], t["beta"], training=True, eps=eps)
    out = torch.relu(y)
    (out * t["dout"]).sum().backward()
    truth = affine_bn_relu_truth(**inputs)
    for name, ref in (
        ("out", out.detach().numpy()),
        ("dx", t["x"].grad.numpy()),
        ("dw", t["w"].grad.numpy()),
        ("db", t["b"].grad.numpy()),
        ("dgamma", t["gamma"].grad.numpy()),
        ("dbeta", t["beta"].grad.numpy()),
    ):
        mine = np.array([float(sp.N(v, 30)) for v in np.asarray(truth[name]).ravel()])
        scale = max(np.max(np.abs(ref)), 1.0)
        assert np.max(np.abs(mine - ref.ravel())) <= 1e-12 * scale, name


# -- TensorFlow's folded forward (seed 004) -------------------------------------------------------------
def test_tensorflow_folded_forward_is_the_standard_forward_for_every_m():
    from bnderive import Status, find_form
    from bnderive.verify.every_m import general_check

    form = find_form("tensorflow-folded-forward")
    (out,) = [v for v in general_check(form) if v.quantity == "out[i]"]
    assert out.status is Status.HOLDS


def test_a_wrong_fold_is_refuted_with_a_counterexample(tmp_path):
    from bnderive import Status, load_form
    from bnderive.verify.plan import check_form

    path = tmp_path / "fold.toml"
    path.write_text(
        'name = "fold-without-mu"\n[[equations]]\ndefines = "inv"\nexpr = "gamma*(var + eps)**(-1/2)"\n'
        '[[equations]]\ndefines = "out[i]"\nexpr = "x[i]*inv + beta"\n',
        encoding="utf-8",
    )
    verdicts = [
        v for v in check_form(load_form(path), methods=("exact",)) if v.quantity == "out[i]"
    ]
    assert verdicts and all(v.status is Status.REFUTED for v in verdicts)
    assert "out[1] = y[" in verdicts[0].counterexample.entry
