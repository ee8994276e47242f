"""The normalization family: LayerNorm, InstanceNorm, GroupNorm, RMSNorm beside BatchNorm.

The ground truth of each family is checked three independent ways:

* against a brute force that knows nothing of bnderive's reduction sets: the whole forward pass
  written with NumPy axis means over an explicit tensor of SymPy symbols, differentiated with
  ``sympy.diff`` (exact, at points where every root is rational);
* against PyTorch autograd (``layer_norm``, ``instance_norm``, ``group_norm``, ``rms_norm``,
  ``batch_norm``) in float64, when torch is installed;
* against the LayerNorm lines of real derivation posts (``tests/data/layernorm``: the team's
  transcriptions with NumPy renderings, verified there against finite differences).

And the families' identities: GroupNorm with G = 1 is LayerNorm over (C, H, W), with G = C it is
InstanceNorm; InstanceNorm of one sample and channel is BatchNorm of that set.
"""

from __future__ import annotations

import ast
import math
import tomllib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

from bnderive import Mode, Spec, SpecError, derive
from bnderive.core.derive import local_truth
from bnderive.core.evaluate import FLOAT, evaluate
from bnderive.core.layer import exact_point, layer_truth
from bnderive.core.points import point_env
from bnderive.core.spec import Norm
from bnderive.verify.lines import run_lines

DATA = Path(__file__).parent / "data" / "layernorm"

# -- the shapes every family is checked at ------------------------------------------------------------
SPECS = [
    Spec(Mode.PER_ACTIVATION, n=3, c=4),
    Spec(Mode.SPATIAL, n=2, c=2, h=2, w=3),
    Spec(Mode.PER_ACTIVATION, n=2, c=4, norm="layer"),
    Spec(Mode.SPATIAL, n=2, c=2, h=2, w=3, norm="layer"),
    Spec(Mode.SPATIAL, n=2, c=2, h=2, w=3, norm="layer", last_axes=2),
    Spec(Mode.SPATIAL, n=2, c=3, h=2, w=2, norm="instance"),
    Spec(Mode.SPATIAL, n=2, c=4, h=1, w=3, norm="group", groups=2),
    Spec(Mode.SPATIAL, n=2, c=4, h=2, w=1, norm="group", groups=1),
    Spec(Mode.PER_ACTIVATION, n=2, c=4, norm="rms"),
    Spec(Mode.SPATIAL, n=2, c=2, h=1, w=3, norm="rms"),
]
IDS = [s.describe().split(" (")[0].replace(" ", ":") for s in SPECS]


# -- spec ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_reduction_sets_partition_the_input(spec):
    seen = [p for s in range(spec.sets) for p in spec.positions(s)]
    assert len(seen) == len(set(seen)) == math.prod(spec.shape)
    assert all(len(spec.positions(s)) == spec.m for s in range(spec.sets))
    for p in seen:  # every element reads γ inside the affine shape
        index = spec.affine_index(p)
        assert all(0 <= i < n for i, n in zip(index, spec.affine_shape, strict=True))


def test_the_families_sets():
    layer = Spec(Mode.SPATIAL, n=2, c=3, h=2, w=2, norm="layer")
    assert (layer.m, layer.sets, layer.affine_shape) == (12, 2, (3, 2, 2))
    assert layer.set_label(1) == "sample 1"
    group = Spec(Mode.SPATIAL, n=2, c=4, h=2, w=2, norm="group", groups=2)
    assert (group.m, group.sets, group.affine_shape) == (8, 4, (4,))
    assert group.positions(3)[0] == (1, 2, 0, 0)  # sample 1, group 1 starts at channel 2
    assert group.set_label(3) == "sample 1, group 1"
    instance = Spec(Mode.SPATIAL, n=2, c=3, h=2, w=2, norm="instance")
    assert (instance.m, instance.sets) == (4, 6)
    assert instance.set_label(4) == "sample 1, channel 1"
    assert Spec(Mode.PER_ACTIVATION, n=3, c=5, norm="rms").m == 5
    assert Spec().sets == 1 and Spec(Mode.PER_ACTIVATION, n=3, c=2).sets == 2  # BatchNorm: channels


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        (dict(mode=Mode.SPATIAL, c=4, h=2, w=2, norm="group", groups=3), "divide"),
        (dict(mode=Mode.PER_ACTIVATION, c=4, norm="instance"), "(N, C, H, W)"),
        (dict(c=4, norm="layer", groups=2), "--groups belongs to GroupNorm"),
        (dict(c=4, norm="layer", training=False), "no running statistics"),
        (dict(c=4, norm="rms", unbiased=True), "no mean and no variance"),
        (dict(c=4, norm="layer", last_axes=2), "last k axes"),
        (dict(c=4, norm="softmax"), "Unknown normalization"),
    ],
)
def test_bad_family_configurations_say_what_to_do(kwargs, words):
    with pytest.raises(SpecError) as info:
        Spec(**kwargs)
    assert words in str(info.value)


def test_batchnorm_specs_are_unchanged():
    spec = Spec(Mode.SPATIAL, n=2, c=2, h=2, w=3)
    assert spec.describe() == "spatial 2×2×2×3 (M=12; training, biased var, ε inside √)"
    assert spec.norm is Norm.BATCH and spec == Spec(Mode.SPATIAL, n=2, c=2, h=2, w=3, norm="batch")


# -- the truth, per set -------------------------------------------------------------------------------
def test_per_element_affine_makes_dgamma_elementwise():
    truth = derive(Spec(Mode.PER_ACTIVATION, n=2, c=3, norm="layer"))
    assert truth["dgamma"].elementwise and truth["dbeta"].elementwise
    gamma, g, x = sp.IndexedBase("gamma"), sp.IndexedBase("g"), sp.IndexedBase("x")
    mu, var, eps = sp.symbols("mu var eps")
    i = sp.Symbol("i", integer=True)
    assert truth.inline("dxhat") == g[i] * gamma[i]
    # this set's part of ∂L/∂γ_i: one term, g_i·x̂_i, not a sum over the set
    assert truth.inline("dgamma") == g[i] * (x[i] - mu) / sp.sqrt(var + eps)
    assert truth.inline("dbeta") == g[i]
    batch = derive(Spec())
    assert not batch["dgamma"].elementwise


def test_rmsnorm_has_no_mean_stage():
    truth = derive(Spec(Mode.PER_ACTIVATION, n=2, c=3, norm="rms"))
    assert "dmu" not in truth and "dvar" not in truth and "dbeta" not in truth
    assert truth.names == ["dy", "dxhat", "dms", "dx", "dgamma"]
    assert "mu" not in [s.name for s in truth.graph.stages]


# -- a brute force over the explicit tensor -----------------------------------------------------------
def _groups(spec: Spec, a: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """The input viewed so that each reduction set is one row, as a user's NumPy code would
    write it: (sets, M) with reshape/transpose by the family's axes."""
    if spec.norm is Norm.BATCH:
        moved = np.moveaxis(a, 1, 0)
        return moved.reshape(a.shape[1], -1), moved.shape
    if spec.norm is Norm.INSTANCE:
        return a.reshape(a.shape[0] * a.shape[1], -1), a.shape
    if spec.norm is Norm.GROUP:
        return a.reshape(a.shape[0] * spec.groups, -1), a.shape
    k = spec.normalized_axes
    return a.reshape(-1, math.prod(a.shape[-k:])), a.shape


def _ungroup(spec: Spec, rows: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if spec.norm is Norm.BATCH:
        return np.moveaxis(rows.reshape(shape), 0, 1)
    return rows.reshape(shape)


def _gamma_full(spec: Spec, gamma: np.ndarray) -> np.ndarray:
    """γ broadcast to the input's shape (per channel, or the normalized shape)."""
    if spec.norm in (Norm.LAYER, Norm.RMS):
        return np.broadcast_to(gamma, spec.shape)
    shape = [1] * len(spec.shape)
    shape[1] = spec.c
    return np.broadcast_to(gamma.reshape(shape), spec.shape)


def brute_force(spec: Spec, point: dict) -> dict[str, np.ndarray]:
    """out, dx, dγ, dβ by sympy.diff of the whole loss, at ``point`` (exact)."""
    x = np.empty(spec.shape, dtype=object)
    for index in np.ndindex(spec.shape):
        x[index] = sp.Symbol("X_" + "_".join(map(str, index)), real=True)
    size = math.prod(spec.affine_shape)
    gamma = np.array([sp.Symbol(f"Ga_{k}", real=True) for k in range(size)], dtype=object)
    beta = np.array([sp.Symbol(f"Be_{k}", real=True) for k in range(size)], dtype=object)
    gamma, beta = gamma.reshape(spec.affine_shape), beta.reshape(spec.affine_shape)
    rows, shape = _groups(spec, x)
    m = rows.shape[1]
    eps = sp.Rational(point["eps"].numerator, point["eps"].denominator)
    if spec.norm.centred:
        mean = rows.sum(axis=1, keepdims=True) / m
        var = ((rows - mean) ** 2).sum(axis=1, keepdims=True) / m
        xhat = (rows - mean) / np.vectorize(sp.sqrt, otypes=[object])(var + eps)
    else:
        ms = (rows**2).sum(axis=1, keepdims=True) / m
        xhat = rows / np.vectorize(sp.sqrt, otypes=[object])(ms + eps)
    y = _ungroup(spec, xhat, shape) * _gamma_full(spec, gamma)
    if spec.norm.has_beta:
        y = y + _gamma_full(spec, beta)
    loss = sp.Add(*[y[i] * sp.Rational(str(point["g"][i])) for i in np.ndindex(spec.shape)])
    values = {x[i]: sp.Rational(str(point["x"][i])) for i in np.ndindex(spec.shape)}
    for k, (gk, bk) in enumerate(zip(gamma.ravel(), beta.ravel(), strict=True)):
        values[gk] = sp.Rational(str(point["gamma"].ravel()[k]))
        if spec.norm.has_beta:
            values[bk] = sp.Rational(str(point["beta"].ravel()[k]))

    def at(expr: sp.Expr) -> sp.Expr:
        return sp.nsimplify(expr.xreplace(values))

    out = {
        "out": np.vectorize(at, otypes=[object])(y),
        "dx": np.array([at(sp.diff(loss, v)) for v in x.ravel()], dtype=object).reshape(spec.shape),
        "dgamma": np.array([at(sp.diff(loss, v)) for v in gamma.ravel()], dtype=object),
    }
    if spec.norm.has_beta:
        out["dbeta"] = np.array([at(sp.diff(loss, v)) for v in beta.ravel()], dtype=object)
    return out


@pytest.mark.parametrize(
    "spec",
    [s for s in SPECS if math.prod(s.shape) <= 12],
    ids=lambda s: s.describe().split(" (")[0],
)
def test_truth_equals_the_brute_force_exactly(spec):
    point = exact_point(spec, seed=3)
    mine = layer_truth(spec, point["x"], point["g"], point["gamma"], point["beta"], point["eps"])
    brute = brute_force(spec, point)
    for name, expected in brute.items():
        got = np.asarray(mine[name], dtype=object).ravel()
        assert [sp.Rational(str(v)) for v in got] == list(np.asarray(expected).ravel()), name


def test_exact_point_gives_every_set_a_rational_root():
    for spec in SPECS:
        point = exact_point(spec, seed=5)
        values = layer_truth(
            spec, point["x"], point["g"], point["gamma"], point["beta"], point["eps"], "rational"
        )  # the rational backend raises if a root is irrational
        assert values["dx"].shape == spec.shape


# -- the families' identities ---------------------------------------------------------------------------
def _fr(values) -> list[Fraction]:
    return [Fraction(int(v.numerator), int(v.denominator)) for v in np.asarray(values).ravel()]


def test_groupnorm_with_one_group_is_layernorm_over_chw():
    group = Spec(Mode.SPATIAL, n=2, c=3, h=2, w=2, norm="group", groups=1)
    layer = Spec(Mode.SPATIAL, n=2, c=3, h=2, w=2, norm="layer")
    p = exact_point(group, seed=2)
    gn = layer_truth(group, p["x"], p["g"], p["gamma"], p["beta"], p["eps"], "rational")
    full = lambda v: np.broadcast_to(v.reshape(3, 1, 1), (3, 2, 2)).copy()  # noqa: E731
    ln = layer_truth(layer, p["x"], p["g"], full(p["gamma"]), full(p["beta"]), p["eps"], "rational")
    assert _fr(gn["out"]) == _fr(ln["out"]) and _fr(gn["dx"]) == _fr(ln["dx"])
    # γ per channel: GroupNorm's dγ_c is LayerNorm's dγ summed over that channel's H, W
    assert _fr(gn["dgamma"]) == _fr(ln["dgamma"].reshape(3, -1).sum(axis=1))
    assert _fr(gn["dbeta"]) == _fr(ln["dbeta"].reshape(3, -1).sum(axis=1))


def test_groupnorm_with_one_channel_per_group_is_instancenorm():
    group = Spec(Mode.SPATIAL, n=2, c=3, h=2, w=2, norm="group", groups=3)
    instance = Spec(Mode.SPATIAL, n=2, c=3, h=2, w=2, norm="instance")
    p = exact_point(group, seed=4)
    gn = layer_truth(group, p["x"], p["g"], p["gamma"], p["beta"], p["eps"], "rational")
    inn = layer_truth(instance, p["x"], p["g"], p["gamma"], p["beta"], p["eps"], "rational")
    for name in ("out", "dx", "dgamma", "dbeta"):
        assert _fr(gn[name]) == _fr(inn[name]), name


def test_instancenorm_of_one_sample_is_batchnorm_of_that_channel():
    instance = Spec(Mode.SPATIAL, n=1, c=2, h=2, w=3, norm="instance")
    batch = Spec(Mode.SPATIAL, n=1, c=2, h=2, w=3)
    p = exact_point(instance, seed=6)
    a = layer_truth(instance, p["x"], p["g"], p["gamma"], p["beta"], p["eps"], "symbolic")
    b = layer_truth(batch, p["x"], p["g"], p["gamma"], p["beta"], p["eps"], "symbolic")
    for name in ("out", "dx", "dgamma", "dbeta"):
        assert all(
            sp.simplify(u - v) == 0 for u, v in zip(a[name].ravel(), b[name].ravel(), strict=True)
        )


def test_layer_truth_refuses_wrong_shapes():
    from bnderive import EvaluationError

    spec = Spec(Mode.PER_ACTIVATION, n=2, c=3, norm="layer")
    p = exact_point(spec)
    with pytest.raises(EvaluationError, match=r"gamma has shape"):
        layer_truth(spec, p["x"], p["g"], p["gamma"][:2], p["beta"], p["eps"])


# -- real LayerNorm derivations -------------------------------------------------------------------------
_ALLOWED = (
    ast.Expression, ast.BinOp, ast.UnaryOp, ast.Call, ast.Name, ast.Load, ast.Constant,
    ast.Attribute, ast.Subscript, ast.Slice, ast.Tuple, ast.Add, ast.Sub, ast.Mult, ast.Div,
    ast.Pow, ast.USub, ast.UAdd, ast.MatMult, ast.keyword,
)  # fmt: skip


def _numpy_value(text: str, namespace: dict) -> np.ndarray:
    """A transcription's NumPy rendering, evaluated with arithmetic, np.* and the given names
    only (test data of ours, still not trusted: no name outside ``namespace``, no builtins but
    the import hook NumPy's array methods need)."""
    tree = ast.parse(text, mode="eval")
    for node in ast.walk(tree):
        assert isinstance(node, _ALLOWED), f"{type(node).__name__} in {text!r}"
        if isinstance(node, ast.Name):
            assert node.id in namespace, f"{node.id} in {text!r}"
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            assert node.value.id == "np" or node.attr in ("T", "mean", "sum"), text
    code = compile(tree, "<transcription>", "eval")
    return eval(code, {"__builtins__": {"__import__": __import__}}, namespace)  # noqa: S307


#: The quantities of a transcription that bnderive has a truth for (one sample: dγ, dβ per element).
_CHECKED = {"mu", "var", "xhat", "y", "dxhat", "dvar", "dmu", "dx", "dgamma", "dbeta"}


def _layer_values(m: int, eps_inside: bool, seed: int) -> dict:
    """bnderive's LayerNorm truth of one sample in float64, with the forward stages, the local
    derivatives it knows, and the names the transcriptions use for them."""
    rng = np.random.default_rng(seed)
    spec = Spec(Mode.PER_ACTIVATION, n=1, c=m, norm="layer", eps_inside=eps_inside)
    x = rng.normal(size=m) * rng.uniform(0.2, 3) + rng.uniform(-3, 4)
    g = rng.normal(size=m) * np.linspace(0.5, 2.0, m)
    gamma = rng.uniform(0.4, 2.3) * (1 + 0.5 * rng.normal(size=m))
    beta = rng.normal(size=m) * 0.5
    eps = 0.1
    point = {
        "x": x,
        "g": g,
        "gamma": gamma,
        "beta": beta,
        "eps": eps,
        "ggI": [0] * m,
        "ggG": 0,
        "ggB": 0,
    }
    inst = point_env(spec, 0, point, FLOAT)
    truth = run_lines(derive(spec).definitions(), inst.env)
    env = inst.env
    mu, var = env.scalars["mu"], env.scalars["var"]
    s = np.sqrt(var + eps) if eps_inside else np.sqrt(var) + eps
    values = dict(truth.values)
    values.update(
        x=x, g=g, gamma=gamma, beta=beta, eps=eps, M=m, np=np, eye=np.eye(m), ones=np.ones(m),
        sqrt=np.sqrt, sum=np.sum, dot=np.dot, diag=np.diag, outer=np.outer,
        mu=mu, mean=mu, var=var, xhat=env.arrays["xhat"], y=env.arrays["y"], xmu=x - mu,
        s=s, istd=1 / s, std=np.sqrt(var),
        dnorm_mean=np.mean(values["dxhat"]), dnorm_norm_mean=np.mean(values["dxhat"] * env.arrays["xhat"]),
    )  # fmt: skip
    for name in ("dvar_dx", "dmu_dx", "dxhat_dvar", "dxhat_dmu"):
        local = local_truth(spec, name)
        values[name] = evaluate(local, env, sp.Symbol("i", integer=True))
    # d√σ²/dx_i by the chain rule from bnderive's dσ²/dx_i (the posts with ε outside use it)
    values["dstd_dx"] = values["dvar_dx"] / (2 * np.sqrt(var))
    return values


@pytest.mark.parametrize("path", sorted(DATA.glob("*.expected.toml")), ids=lambda p: p.stem)
def test_layernorm_truth_agrees_with_real_derivations(path):
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    conventions = data["conventions"]
    assert conventions["norm"] == "layer"
    eps_inside = conventions["epsilon"] == "inside"
    points = [_layer_values(m, eps_inside, seed) for seed, m in enumerate((4, 5, 7, 6))]
    checked = 0
    for line in data["line"]:
        key = line["quantity"].split("[")[0]
        if key not in _CHECKED or "truth" in line:
            continue
        names = {
            n.id for n in ast.walk(ast.parse(line["numpy"], mode="eval")) if isinstance(n, ast.Name)
        }
        if not names <= set(points[0]) | {"None"}:
            continue  # a name of the post's own registry that bnderive has no truth for
        worst = 0.0
        for values in points:
            namespace = dict(values)
            namespace["None"] = None
            claim = np.asarray(_numpy_value(line["numpy"], namespace), dtype=float)
            true = np.asarray(values[key], dtype=float)
            claim = np.broadcast_to(claim, np.broadcast_shapes(claim.shape, true.shape))
            worst = max(
                worst, float(np.max(np.abs(claim - true)) / max(np.max(np.abs(true)), 1e-4))
            )
        if line["expected"] == "holds":
            assert worst < 1e-9, (line["latex"], worst)
        else:
            assert worst > 1e-6, (line["latex"], worst)
        checked += 1
    assert checked >= 4, f"only {checked} lines of {path.name} could be checked"


# -- PyTorch autograd ---------------------------------------------------------------------------------------
def _torch_case(spec: Spec, seed: int):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(seed)
    x = rng.normal(size=spec.shape) * 4.0 + 7.0  # mean far from 0, σ² far from 1
    g = rng.normal(size=spec.shape) * 2.0 + 0.3
    gamma = rng.uniform(1.5, 3.0, size=spec.affine_shape) * np.where(
        rng.random(spec.affine_shape) < 0.5, -1.0, 1.0
    )
    beta = rng.normal(size=spec.affine_shape)
    eps = 0.0123
    tx = torch.tensor(x, requires_grad=True)
    tg = torch.tensor(gamma, requires_grad=True)
    tb = torch.tensor(beta, requires_grad=True)
    if spec.norm is Norm.BATCH:
        y = F.batch_norm(tx, None, None, tg, tb, training=True, eps=eps)
    elif spec.norm is Norm.LAYER:
        y = F.layer_norm(tx, spec.affine_shape, tg, tb, eps=eps)
    elif spec.norm is Norm.INSTANCE:
        y = F.instance_norm(tx, weight=tg, bias=tb, eps=eps)
    elif spec.norm is Norm.GROUP:
        y = F.group_norm(tx, spec.groups, tg, tb, eps=eps)
    else:
        y = F.rms_norm(tx, spec.affine_shape, tg, eps=eps)
    (y * torch.tensor(g)).sum().backward()
    reference = {"out": y.detach().numpy(), "dx": tx.grad.numpy(), "dgamma": tg.grad.numpy()}
    if spec.norm.has_beta:
        reference["dbeta"] = tb.grad.numpy()
    inputs = {"x": x, "g": g, "gamma": gamma, "beta": beta if spec.norm.has_beta else None}
    return inputs, eps, reference


@pytest.mark.torch
@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_truth_equals_pytorch_autograd(spec):
    """The exact truth at PyTorch's own float64 inputs (read as the rationals they are; the
    roots stay algebraic), rounded only at the end: the difference is PyTorch's rounding."""
    inputs, eps, reference = _torch_case(spec, seed=11)
    exact = {
        k: (None if v is None else np.vectorize(Fraction, otypes=[object])(v))
        for k, v in inputs.items()
    }
    truth = layer_truth(
        spec, exact["x"], exact["g"], exact["gamma"], exact["beta"], Fraction(eps), "symbolic"
    )
    for name, ref in reference.items():
        mine = np.array([float(sp.N(v, 30)) for v in np.asarray(truth[name]).ravel()])
        ref = np.asarray(ref).ravel()
        assert np.max(np.abs(mine - ref)) <= 1e-10 * np.max(np.abs(ref)), name
