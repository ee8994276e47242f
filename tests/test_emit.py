"""``bnderive emit``: the emitted NumPy modules, their verification, and the command.

Golden files hold the emitted source (regenerate with BNDERIVE_UPDATE_GOLDEN=1); the modules
must equal the ground truth exactly at a rational point and in float64 at adversarial inputs,
keep float32 float32, agree with PyTorch autograd, and pass ``bnderive check-impl``.
"""

from __future__ import annotations

import importlib.util
import io
import os
import tokenize
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bnderive import __version__
from bnderive.cli import main
from bnderive.core.spec import Mode
from bnderive.emit.emitter import emit
from bnderive.emit.numpy_module import EmitVerificationError, plan_backward, render
from bnderive.emit.verification import Exact, exact_case, float_case, load_module, verify_module
from bnderive.errors import FormError
from bnderive.read.catalogue import find_form
from bnderive.read.forms import Form, load_form

GOLDEN = Path(__file__).parent / "golden"
FORMS_DIR = Path(__file__).parent / "forms"
ENV = {"COLUMNS": "120", "FORCE_COLOR": None, "TERM": "dumb", "NO_COLOR": "1"}
FORMS = ["compact", "staged", "kronecker"]
MODES = [Mode.PER_ACTIVATION, Mode.SPATIAL]
CASES = [(f, m) for f in FORMS for m in MODES]


def run(*args: str, env: dict | None = None):
    return CliRunner().invoke(main, list(args), env=env or ENV)


def golden_name(form: str, mode: Mode) -> str:
    return f"emit_{form}_{mode.value.replace('-', '_')}.py"


@pytest.fixture(scope="module")
def emitted():
    return {(f, m): emit(find_form(f), m, __version__) for f, m in CASES}


# -- the source ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("form", "mode"), CASES)
def test_emitted_source_is_golden(emitted, form, mode):
    text = emitted[form, mode].source
    path = GOLDEN / golden_name(form, mode)
    if os.environ.get("BNDERIVE_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


@pytest.mark.parametrize(("form", "mode"), CASES)
def test_source_shape(emitted, form, mode):
    text = emitted[form, mode].source
    axes = "(0,)" if mode is Mode.PER_ACTIVATION else "(0, 2, 3)"
    assert f"axis={axes}, keepdims=True" in text
    # Sizes are Python ints and there are no float constants (DESIGN.md §7: float32 stays).
    numbers = [
        t.string
        for t in tokenize.generate_tokens(io.StringIO(text).readline)
        if t.type == tokenize.NUMBER
    ]
    assert all(n.isdigit() for n in numbers), numbers
    assert "np.prod" not in text
    # Centred: the variance is Σ (x − μ)², never Σx² − (Σx)²/M.
    assert (
        'np.einsum("nd,nd->d", xmu, xmu)' in text or 'np.einsum("nchw,nchw->c", xmu, xmu)' in text
    )
    for name in ("mu", "var", "inv_std", "xhat", "xmu"):
        assert f"    {name} = " in text
    form_obj = find_form(form)
    assert form_obj.name in text.splitlines()[0] and __version__ in text.splitlines()[0]
    assert all(f"source: {s}" in text for s in form_obj.sources)
    assert "biased variance 1/M" in text and mode.value.upper().replace("-", "_") in text
    compile(text, "emitted", "exec")


def test_staged_keeps_its_zero_reduction_and_compact_does_not(emitted):
    # Σ(x − μ) = 0 exactly, but the staged dμ uses it, and in float it corrects μ's rounding.
    assert "sum_xmu = " in emitted["staged", Mode.SPATIAL].source
    assert "sum_xmu = " not in emitted["compact", Mode.SPATIAL].source


def test_coefficients_are_per_channel():
    plan = plan_backward(find_form("compact"), Mode.SPATIAL)
    assert plan.coefficients is not None and plan.dx is None
    for c in plan.coefficients:
        assert not {str(s) for s in c.free_symbols} & {"dout", "xmu", "x"}


# -- the truth ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("form", "mode"), CASES)
def test_exact_at_a_rational_point(emitted, form, mode):
    module = load_module(emitted[form, mode].source)
    case = exact_case(find_form(form), mode, seed=11)
    assert isinstance(case.x.flat[0], Exact)
    dx, dgamma, dbeta = module["backward"](case.dout, case.x.copy(), case.gamma, case.eps)
    assert list(dx.ravel()) == list(case.truth["dx"].ravel())
    assert list(dgamma) == list(case.truth["dgamma"]) and list(dbeta) == list(case.truth["dbeta"])
    out, cache = module["forward"](case.x, case.gamma, case.beta, case.eps)
    assert list(out.ravel()) == list(case.truth["y"].ravel())
    dx2, dgamma2, dbeta2 = module["backward_cached"](case.dout, cache, case.gamma)
    assert list(dx2.ravel()) == list(dx.ravel()) and list(dgamma2) == list(dgamma)


@pytest.mark.parametrize(("form", "mode"), CASES)
def test_float64_at_adversarial_inputs(emitted, form, mode):
    module = load_module(emitted[form, mode].source)
    case = float_case(find_form(form), mode, seed=12)
    dx, dgamma, dbeta = module["backward"](case.dout, case.x, case.gamma, case.eps)
    for value, name in ((dx, "dx"), (dgamma, "dgamma"), (dbeta, "dbeta")):
        truth = case.truth[name]
        assert value.dtype == np.float64
        np.testing.assert_allclose(value, truth, rtol=1e-9, atol=1e-12 * np.abs(truth).max())


@pytest.mark.parametrize("mode", MODES)
def test_float32_stays_float32_and_is_accurate(emitted, mode):
    module = load_module(emitted["compact", mode].source)
    shape = (64, 8) if mode is Mode.PER_ACTIVATION else (8, 4, 5, 6)
    rng = np.random.default_rng(0)
    x = (300 + 5 * rng.standard_normal(shape)).astype(np.float32)
    dout = rng.standard_normal(shape).astype(np.float32)
    c = shape[1]
    gamma = rng.uniform(0.5, 3, c).astype(np.float32)
    beta = rng.standard_normal(c).astype(np.float32)
    out, cache = module["forward"](x, gamma, beta, 1e-5)
    results = [out, *cache]
    results += module["backward"](dout, x, gamma, 1e-5)
    results += module["backward_cached"](dout, cache, gamma)
    assert {r.dtype for r in results} == {np.dtype(np.float32)}
    dx64 = module["backward"](dout.astype(np.float64), x.astype(np.float64), gamma, 1e-5)[0]
    dx32 = module["backward"](dout, x, gamma, 1e-5)[0]
    assert np.max(np.abs(dx32 - dx64)) / np.max(np.abs(dx64)) < 1e-3


def test_backward_cached_leaves_the_cache_alone(emitted):
    module = load_module(emitted["staged", Mode.SPATIAL].source)
    x = np.random.default_rng(1).standard_normal((3, 2, 2, 2))
    out, cache = module["forward"](x, np.ones(2), np.zeros(2), 1e-3)
    saved = [c.copy() for c in cache]
    module["backward_cached"](np.ones_like(x), cache, np.ones(2))
    assert all(np.array_equal(a, b) for a, b in zip(saved, cache, strict=True))


@pytest.mark.torch
@pytest.mark.parametrize(("form", "mode"), CASES)
def test_backward_agrees_with_torch_autograd(emitted, form, mode):
    torch = pytest.importorskip("torch")
    module = load_module(emitted[form, mode].source)
    shape = (7, 5) if mode is Mode.PER_ACTIVATION else (3, 4, 3, 2)
    rng = np.random.default_rng(3)
    scale = rng.uniform(0.05, 40, shape[1]).reshape((1, -1) + (1,) * (len(shape) - 2))
    x = 200 + scale * rng.standard_normal(shape)
    dout = rng.standard_normal(shape) + 0.3
    gamma = rng.uniform(-3, 3, shape[1])
    beta = rng.standard_normal(shape[1])
    eps = 1e-3
    tx = torch.tensor(x, requires_grad=True)
    tg = torch.tensor(gamma, requires_grad=True)
    tb = torch.tensor(beta, requires_grad=True)
    y = torch.nn.functional.batch_norm(tx, None, None, tg, tb, training=True, eps=eps)
    (y * torch.tensor(dout)).sum().backward()
    out, _ = module["forward"](x, gamma, beta, eps)
    np.testing.assert_allclose(out, y.detach().numpy(), rtol=1e-10, atol=1e-10)
    dx, dgamma, dbeta = module["backward"](dout, x, gamma, eps)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-8, atol=1e-12 * np.abs(dx).max())
    np.testing.assert_allclose(dgamma, tg.grad.numpy(), rtol=1e-9)
    np.testing.assert_allclose(dbeta, tb.grad.numpy(), rtol=1e-12)


# -- verification is sound: a wrong module is never returned ---------------------------------------
@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("c1 = t0", "c1 = gamma"),  # γ/√(σ²+ε) → γ
        ("dbeta = sum_dout", "dbeta = 2*sum_dout"),
        ("/M  # σ²", "/(M - 1)  # σ²"),  # Bessel in the forward
        ("out = gamma*xhat + beta", "out = gamma*xhat"),
        ("dx += c3", "dx += c3*1.0"),  # a float constant: inexact, and float64 promotion
        ("    dx += c3\n", "    dx += c3\n    xmu *= 2\n"),  # backward_cached modifies the cache
        ("xmu = x - mu  #", "xmu = x - mu + 0.0*x  #"),
        ("return out, (xmu, mu, inv_std)", "return out.astype(np.float64), (xmu, mu, inv_std)"),
    ],
)
def test_verification_rejects_wrong_modules(old, new):
    source = render(find_form("compact"), Mode.SPATIAL, __version__)
    bad = source.replace(old, new, 1)
    assert bad != source
    with pytest.raises(EmitVerificationError):
        verify_module(bad, find_form("compact"), Mode.SPATIAL)


def load_test_form(path: Path) -> Form:
    """A test form file without its [expect] table (what the test expects is not the form's)."""
    return load_form(path, path.read_text(encoding="utf-8").split("\n[expect]", 1)[0])


def test_a_wrong_form_is_reported_as_refuted_not_written():
    form = load_test_form(FORMS_DIR / "wrong_missing_gamma.toml")
    with pytest.raises(EmitVerificationError, match="is refuted"):
        emit(form, Mode.SPATIAL)


@pytest.mark.parametrize(
    "path", sorted(p.name for p in FORMS_DIR.glob("equivalent_*.toml") if "outside" not in p.name)
)
def test_equivalent_user_forms_emit_and_verify(path):
    for mode in MODES:
        emitted = emit(load_test_form(FORMS_DIR / path), mode)
        assert len(emitted.verification.checks) == 3


@pytest.mark.parametrize("name", ["eval", "pytorch-double-backward"])
def test_unsupported_forms_are_user_errors(name):
    with pytest.raises(FormError):
        emit(find_form(name), Mode.SPATIAL)
    assert run("emit", "--form", name).exit_code == 2


# -- round trip ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_round_trip_emit_import_check_impl(tmp_path, mode):
    path = tmp_path / "bn_emitted.py"
    result = run("emit", "--form", "staged", "--mode", mode.value, "-o", str(path))
    assert result.exit_code == 0, result.output
    spec = importlib.util.spec_from_file_location("bn_emitted", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    verify_module(path.read_text(encoding="utf-8"), find_form("staged"), mode)
    # bnderive's own implementation checker, exact, through the functional API.
    wrapper = tmp_path / "bn_functional.py"
    wrapper.write_text(
        path.read_text(encoding="utf-8")
        + "\n\ndef f(x, gamma, beta, dout, eps):\n    return backward(dout, x, gamma, eps)\n",
        encoding="utf-8",
    )
    if "check-impl" not in main.commands:
        pytest.skip("check-impl is not available")
    checked = run(
        "check-impl", str(wrapper), "--api", "functional", "--function", "f", "--mode", mode.value
    )
    assert checked.exit_code == 0, checked.output
    assert "exact" in checked.output


# -- the command ----------------------------------------------------------------------------------------
def test_cli_prints_the_module_when_piped(emitted):
    result = run("emit", "--form", "kronecker", "--mode", "spatial")
    assert result.exit_code == 0, result.output
    assert result.output == emitted["kronecker", Mode.SPATIAL].source


def test_cli_highlights_on_a_terminal():
    result = run(
        "emit", env={**ENV, "NO_COLOR": None, "TERM": "xterm-256color", "FORCE_COLOR": "1"}
    )
    assert result.exit_code == 0, result.output
    assert "\x1b[" in result.output and "forward" in result.output


def test_cli_writes_the_file_and_says_so(tmp_path):
    path = tmp_path / "bn.py"
    result = run("emit", "--form", "compact", "-o", str(path))
    assert result.exit_code == 0, result.output
    assert f"wrote {path}" in result.output and "verified" in result.output
    assert path.read_text(encoding="utf-8") == render(
        find_form("compact"), Mode.PER_ACTIVATION, __version__
    )


def test_cli_exit_codes(tmp_path):
    assert run("emit", "--form", "no-such-form").exit_code == 2
    assert run("emit", "--mode", "diagonal").exit_code == 2
    unwritable = tmp_path / "missing" / "bn.py"
    result = run("emit", "-o", str(unwritable))
    assert result.exit_code == 2 and "Cannot write" in result.output
    assert not unwritable.exists()
    form_file = tmp_path / "wrong_missing_gamma.toml"  # without the test's [expect] table
    text = (FORMS_DIR / form_file.name).read_text(encoding="utf-8")
    form_file.write_text(text.split("\n[expect]", 1)[0], encoding="utf-8")
    wrong = run("emit", "--form", str(form_file), "-o", str(tmp_path / "w.py"))
    assert wrong.exit_code == 1 and "refuted" in wrong.output
    assert not (tmp_path / "w.py").exists()


def test_emit_help_has_examples():
    result = run("emit", "--help")
    assert result.exit_code == 0 and "Examples:" in result.output
