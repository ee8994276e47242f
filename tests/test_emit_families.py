"""``bnderive emit --norm``: the modules of BatchNorm's relatives, their verification, the command.

Driven by the catalogue (Tangent style): every form of derivations/ written for LayerNorm,
InstanceNorm, GroupNorm or RMSNorm is emitted in its family's layout, verified, and held to a
golden file (regenerate with BNDERIVE_UPDATE_GOLDEN=1); adding a family form adds its tests.
Beyond the verifier's own runs, each module is checked here, in this process, at layouts and
seeds the verifier does not use, against ``core.layer.layer_truth`` (exact) and PyTorch's
autograd (float64, when torch is installed).
"""

from __future__ import annotations

import io
import os
import tokenize
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bnderive import __version__
from bnderive.cli import main
from bnderive.core.evaluate import RATIONAL
from bnderive.core.layer import as_fractions, exact_point, layer_truth
from bnderive.core.spec import Mode, Norm, Spec
from bnderive.emit.child import Exact
from bnderive.emit.emitter import emit
from bnderive.emit.family_module import Layout, plan_family, render_family
from bnderive.emit.numpy_module import EmitVerificationError
from bnderive.emit.verification import load_module, verify_family_module
from bnderive.read.catalogue import find_form
from bnderive.read.derivations import builtin_forms

GOLDEN = Path(__file__).parent / "golden"
ENV = {"COLUMNS": "120", "FORCE_COLOR": None, "TERM": "dumb", "NO_COLOR": "1"}
#: GroupNorm's modules are emitted (and held to their golden files) with two groups.
GROUPS = 2
FAMILY_FORMS = [f for f in builtin_forms() if f.norm is not Norm.BATCH]


def layout_of(form) -> Layout:
    return Layout(form.norm, GROUPS if form.norm is Norm.GROUP else 1)


def run(*args: str):
    return CliRunner().invoke(main, list(args), env=ENV)


@pytest.fixture(scope="module")
def emitted():
    return {f.name: emit(f, Mode.SPATIAL, __version__, layout=layout_of(f)) for f in FAMILY_FORMS}


def test_every_family_has_a_form_to_emit():
    assert {f.norm for f in FAMILY_FORMS} == {Norm.LAYER, Norm.INSTANCE, Norm.GROUP, Norm.RMS}


# -- the source --------------------------------------------------------------------------------------
@pytest.mark.parametrize("form", FAMILY_FORMS, ids=[f.name for f in FAMILY_FORMS])
def test_family_module_is_golden(emitted, form):
    text = emitted[form.name].source
    path = GOLDEN / f"emit_{form.norm.value}_{form.name.replace('-', '_')}.py"
    if os.environ.get("BNDERIVE_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")
    assert text.startswith(f'"""{form.norm.title}')
    compile(text, "emitted", "exec")


@pytest.mark.parametrize("form", FAMILY_FORMS, ids=[f.name for f in FAMILY_FORMS])
def test_the_plan_is_per_set_coefficients_of_one_pass(form):
    # Every published family form is affine per set: dx = c1·(dout or γ·dout) + c2·x̃ + c3.
    plan = plan_family(form, layout_of(form))
    assert plan.coefficients is not None and plan.dx is None
    arrays = {"dout", "dxhat", "xmu", "x", "gamma"} if form.norm.affine_per_element else set()
    for c in plan.coefficients:
        assert not {str(s) for s in c.free_symbols} & (arrays or {"dout", "xmu"})
    # Per-element γ: the sums are of ∂L/∂x̂ = γ·dout; RMSNorm has no mean: no c3, no Σ dxhat.
    if form.norm.affine_per_element:
        assert plan.uses_dxhat and all("dout" not in str(s) for s in plan.reductions)
    if form.norm is Norm.RMS:
        assert plan.coefficients[2] == 0 and plan.dbeta is None


@pytest.mark.parametrize("form", FAMILY_FORMS, ids=[f.name for f in FAMILY_FORMS])
def test_each_family_has_its_layout_in_the_code(emitted, form):
    text = emitted[form.name].source
    expected = {
        Norm.LAYER: ["x.reshape(-1, M)", "M = gamma.size", "axis=0).reshape(gamma_shape)"],
        Norm.RMS: ["x.reshape(-1, M)", "ms = np.einsum", "def forward(x, gamma, eps):"],
        Norm.INSTANCE: ["x.reshape(x.shape[0], x.shape[1], -1)", "gamma.reshape(1, -1, 1)"],
        Norm.GROUP: [f"G = {GROUPS}", "x.shape[1] // G, -1)", "axis=(0, 3)).reshape(-1)"],
    }[form.norm]
    for piece in expected:
        assert piece in text, piece
    # Sizes are Python ints and there are no float constants (float32 stays float32).
    numbers = [
        t.string
        for t in tokenize.generate_tokens(io.StringIO(text).readline)
        if t.type == tokenize.NUMBER
    ]
    assert all(n.isdigit() for n in numbers), numbers
    assert "np.prod" not in text
    if form.norm is Norm.RMS:  # no mean path at all
        names = {t.string for t in tokenize.generate_tokens(io.StringIO(text).readline)}
        assert not names & {"mu", "xmu", "var"}


# -- the truth, independently of the verifier ------------------------------------------------------------
def other_specs(norm: Norm) -> list[Spec]:
    """Layouts and sizes the verifier does not use."""
    if norm in (Norm.LAYER, Norm.RMS):
        return [
            Spec(Mode.PER_ACTIVATION, n=2, c=5, norm=norm),
            Spec(Mode.SPATIAL, n=2, c=2, h=1, w=3, norm=norm, last_axes=1),
            Spec(Mode.SPATIAL, n=1, c=2, h=2, w=2, norm=norm),
        ]
    if norm is Norm.INSTANCE:
        return [Spec(Mode.SPATIAL, n=3, c=2, h=1, w=3, norm=norm)]
    return [Spec(Mode.SPATIAL, n=3, c=2 * GROUPS, h=1, w=3, norm=norm, groups=GROUPS)]


def exact_array(values) -> np.ndarray:
    fractions = as_fractions(values)
    out = np.empty(fractions.shape, dtype=object)
    for index, v in np.ndenumerate(fractions):
        out[index] = Exact(v)
    return out


def fractions(values) -> list[Fraction]:
    return [v.q if isinstance(v, Exact) else v for v in np.asarray(values, dtype=object).ravel()]


@pytest.mark.parametrize("form", FAMILY_FORMS, ids=[f.name for f in FAMILY_FORMS])
def test_exact_at_other_layouts(emitted, form):
    module = load_module(emitted[form.name].source)
    for spec in other_specs(form.norm):
        point = exact_point(spec, seed=23)
        truth = layer_truth(
            spec, point["x"], point["g"], point["gamma"], point["beta"], point["eps"], RATIONAL
        )
        x, g, gamma = (exact_array(point[k]) for k in ("x", "g", "gamma"))
        eps = Exact(point["eps"])
        grads = module["backward"](g, x.copy(), gamma, eps)
        names = ("dx", "dgamma", "dbeta")[: len(grads)]
        assert len(grads) == (3 if form.norm.has_beta else 2)
        for name, value in zip(names, grads, strict=True):
            assert value.shape == truth[name].shape, (spec.describe(), name)
            assert fractions(value) == list(as_fractions(truth[name]).ravel()), (spec, name)
        if form.norm.has_beta:
            out, cache = module["forward"](x, gamma, exact_array(point["beta"]), eps)
        else:
            out, cache = module["forward"](x, gamma, eps)
        assert fractions(out) == list(as_fractions(truth["out"]).ravel())
        cached = module["backward_cached"](g, cache, gamma)
        assert [fractions(v) for v in cached] == [fractions(v) for v in grads]


@pytest.mark.parametrize("form", FAMILY_FORMS, ids=[f.name for f in FAMILY_FORMS])
def test_float32_stays_float32_and_is_accurate(emitted, form):
    module = load_module(emitted[form.name].source)
    shape = (6, 8, 4, 5) if form.norm is not Norm.GROUP else (6, 4 * GROUPS, 4, 5)
    rng = np.random.default_rng(0)
    x = (300 + 5 * rng.standard_normal(shape)).astype(np.float32)
    dout = rng.standard_normal(shape).astype(np.float32)
    affine = shape[1:] if form.norm in (Norm.LAYER, Norm.RMS) else shape[1:2]
    gamma = rng.uniform(0.5, 3, affine).astype(np.float32)
    beta = rng.standard_normal(affine).astype(np.float32)
    args = (gamma, beta) if form.norm.has_beta else (gamma,)
    out, cache = module["forward"](x, *args, 1e-5)
    results = [out, *cache, *module["backward"](dout, x, gamma, 1e-5)]
    results += module["backward_cached"](dout, cache, gamma)
    assert {r.dtype for r in results} == {np.dtype(np.float32)}
    dx64 = module["backward"](dout.astype(np.float64), x.astype(np.float64), gamma, 1e-5)[0]
    dx32 = module["backward"](dout, x, gamma, 1e-5)[0]
    assert np.max(np.abs(dx32 - dx64)) / np.max(np.abs(dx64)) < 1e-3


@pytest.mark.torch
@pytest.mark.parametrize("form", FAMILY_FORMS, ids=[f.name for f in FAMILY_FORMS])
def test_backward_agrees_with_torch_autograd(emitted, form):
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    module = load_module(emitted[form.name].source)
    shape = (3, 2 * GROUPS, 3, 2)
    rng = np.random.default_rng(3)
    x = 200 + rng.uniform(0.05, 40) * rng.standard_normal(shape)
    dout = rng.standard_normal(shape) + 0.3
    affine = shape[2:] if form.norm in (Norm.LAYER, Norm.RMS) else shape[1:2]
    gamma = rng.uniform(-3, 3, affine)
    beta = rng.standard_normal(affine)
    eps = 1e-3
    tx = torch.tensor(x, requires_grad=True)
    tg = torch.tensor(gamma, requires_grad=True)
    tb = torch.tensor(beta, requires_grad=True)
    if form.norm is Norm.LAYER:
        y = functional.layer_norm(tx, affine, tg, tb, eps)
    elif form.norm is Norm.RMS:
        y = functional.rms_norm(tx, affine, tg, eps)
    elif form.norm is Norm.INSTANCE:
        y = functional.instance_norm(tx, weight=tg, bias=tb, eps=eps)
    else:
        y = functional.group_norm(tx, GROUPS, tg, tb, eps)
    (y * torch.tensor(dout)).sum().backward()
    args = (gamma, beta) if form.norm.has_beta else (gamma,)
    out, _ = module["forward"](x, *args, eps)
    np.testing.assert_allclose(out, y.detach().numpy(), rtol=1e-10, atol=1e-10)
    grads = module["backward"](dout, x, gamma, eps)
    np.testing.assert_allclose(grads[0], tx.grad.numpy(), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(grads[1], tg.grad.numpy(), rtol=1e-9, atol=1e-10)
    if form.norm.has_beta:
        np.testing.assert_allclose(grads[2], tb.grad.numpy(), rtol=1e-12, atol=1e-10)


# -- verification is sound: a wrong module is never returned -----------------------------------------
@pytest.mark.parametrize(
    ("name", "norm", "old", "new"),
    [
        # dγ not summed over the samples: one row per sample (LayerNorm's classic slip)
        ("layernorm-pytorch", Norm.LAYER, "np.sum(dout*inv_std*xmu, axis=0)", "dout*inv_std*xmu"),
        # γ pulled out of the sum: Σ dout·x̂ instead of Σ γ·dout·x̂
        (
            "layernorm-pytorch",
            Norm.LAYER,
            'einsum("rm,rm->r", dxhat, xmu)',
            'einsum("rm,rm->r", dout, xmu)',
        ),
        # the statistics treated as constants: dx = dxhat/σ
        ("layernorm-llmc", Norm.LAYER, "    dx += xmu\n", "    dx += 0*xmu\n"),
        ("rmsnorm-rstd", Norm.RMS, "    dx += c2*x\n", ""),
        ("rmsnorm-paper", Norm.RMS, "inv_rms**3", "inv_rms**2"),
        (
            "instancenorm-pytorch",
            Norm.INSTANCE,
            "axis=0).reshape(-1)  # dβ",
            "axis=0).reshape(-1)*2  # dβ",
        ),
        ("groupnorm-pytorch", Norm.GROUP, "G = 2", "G = 1"),
        (
            "groupnorm-pytorch",
            Norm.GROUP,
            "axis=(0, 3)).reshape(-1)  # dγ",
            "axis=(0, 2)).reshape(-1)  # dγ",
        ),
        # the forward: β dropped; a Bessel variance
        ("layernorm-pytorch", Norm.LAYER, "out = gamma*xhat + beta", "out = gamma*xhat"),
        (
            "groupnorm-pytorch",
            Norm.GROUP,
            "xmu)[..., None, None]/M  # σ²",
            "xmu)[..., None, None]/(M - 1)  # σ²",
        ),
        # a float constant: inexact on rationals, float64 in float32 code
        ("rmsnorm-rstd", Norm.RMS, "    dx += c2*x\n", "    dx += c2*x*1.0\n"),
        # backward_cached modifies the cache
        (
            "instancenorm-pytorch",
            Norm.INSTANCE,
            "    dx += c3\n    return",
            "    dx += c3\n    xmu *= 2\n    return",
        ),
    ],
)
def test_verification_rejects_wrong_family_modules(name, norm, old, new):
    form = find_form(name)
    layout = Layout(norm, GROUPS if norm is Norm.GROUP else 1)
    source = render_family(form, layout, __version__)
    bad = source.replace(old, new)
    assert bad != source
    with pytest.raises(EmitVerificationError):
        verify_family_module(bad, form, layout)


def test_a_wrong_family_form_is_refuted_and_nothing_is_written(tmp_path):
    path = tmp_path / "ln_wrong.toml"
    text = (Path(find_form("layernorm-llmc").path)).read_text(encoding="utf-8")
    path.write_text(text.replace('expr = "g[i]*gamma[i]"', 'expr = "g[i]"'), encoding="utf-8")
    out = tmp_path / "ln.py"
    result = run("emit", "--norm", "layer", "--form", str(path), "-o", str(out))
    assert result.exit_code == 1, result.output
    assert "is refuted" in result.output and not out.exists()


# -- the command --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "form"),
    [
        (["--norm", "layer"], "layernorm-pytorch"),
        (["--norm", "rms"], "rmsnorm-rstd"),
        (["--norm", "instance"], "instancenorm-pytorch"),
        (["--norm", "group", "--groups", "2"], "groupnorm-pytorch"),
        (["--form", "layernorm-llmc"], "layernorm-llmc"),  # the form's own family
    ],
)
def test_cli_prints_the_family_module(emitted, args, form):
    result = run("emit", *args)
    assert result.exit_code == 0, result.output
    assert result.output == emitted[form].source


def test_cli_emits_a_form_for_another_family_of_the_same_per_set_mathematics(tmp_path):
    # BatchNorm's compact form is InstanceNorm's per set; LayerNorm's kernel is GroupNorm's.
    for args, title in (
        (["--norm", "instance", "--form", "compact"], "InstanceNorm backward"),
        (["--norm", "group", "--groups", "3", "--form", "layernorm-pytorch"], "GroupNorm (G = 3)"),
    ):
        out = tmp_path / "m.py"
        result = run("emit", *args, "-o", str(out))
        assert result.exit_code == 0, result.output
        assert "wrote" in result.output and "verified" in result.output
        assert out.read_text(encoding="utf-8").startswith(f'"""{title}')


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--norm", "layer", "--form", "compact"], "derivation for BatchNorm"),
        (["--norm", "batch", "--form", "rmsnorm-paper"], "emit it with --norm rms"),
        (["--norm", "layer", "--mode", "spatial"], "leave --mode out"),
        (["--norm", "group", "--mode", "per-activation"], "(N, C, H, W)"),
        (["--norm", "rms", "--target", "numba"], "BatchNorm's fused kernel only"),
        (["--groups", "2"], "belongs to GroupNorm"),
        (["--norm", "layer", "--groups", "2"], "belongs to GroupNorm"),
    ],
)
def test_cli_usage_errors(args, words):
    result = run("emit", *args)
    assert result.exit_code == 2, result.output
    assert words in result.output and "Traceback" not in result.output


def test_help_documents_norm():
    result = run("emit", "--help")
    assert result.exit_code == 0
    assert "--norm" in result.output and "--groups" in result.output
    assert "bnderive emit --norm layer" in result.output
