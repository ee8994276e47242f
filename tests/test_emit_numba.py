"""bnderive emit --target numba: the fused kernel, verified as plain Python and compiled."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from bnderive import emit_numba
from bnderive.cli import main
from bnderive.emit import emit, exact_case, verify_module
from bnderive.forms import find_form
from bnderive.spec import Mode


@pytest.mark.parametrize("mode", list(Mode))
def test_kernel_source_is_exact_as_plain_python(mode):
    """Runs without numba: the printed kernel, njit the identity, on exact rationals."""
    form = find_form("compact")
    source = emit_numba.render_numba(form, mode, "test")
    verification = verify_module(source, form, mode, emit_numba.load_plain)
    assert verification.checks[0].startswith("exact rationals")
    assert "@numba.njit(parallel=True" in source
    assert "numba.prange(" in source


def test_plain_python_kernel_gives_exact_rationals():
    form = find_form("staged")
    source = emit_numba.render_numba(form, Mode.SPATIAL, "test")
    module = emit_numba.load_plain(source)
    case = exact_case(form, Mode.SPATIAL)
    _, cache = module["forward"](case.x, case.gamma, case.beta, case.eps)
    dx, dgamma, _ = module["backward_cached"](case.dout, cache, case.gamma)
    assert all(a == b for a, b in zip(dx.ravel(), case.truth["dx"].ravel(), strict=True))
    assert all(a == b for a, b in zip(dgamma, case.truth["dgamma"], strict=True))


def test_missing_numba_is_exit_2(monkeypatch):
    monkeypatch.setattr(emit_numba, "numba_available", lambda: False)
    result = CliRunner().invoke(main, ["emit", "--target", "numba"])
    assert result.exit_code == 2
    assert "pip install numba" in result.output


@pytest.mark.parametrize(
    ("form", "mode"),
    [("compact", Mode.SPATIAL), ("staged", Mode.PER_ACTIVATION), ("kronecker", Mode.SPATIAL)],
)
def test_numba_module_is_verified_and_compiled(form, mode):
    pytest.importorskip("numba")
    emitted = emit(find_form(form), mode, target="numba")
    assert emitted.target == "numba"
    assert any(c.startswith("compiled by numba") for c in emitted.verification.checks)
    assert any("exact rationals" in c for c in emitted.verification.checks)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numba_matches_numpy_target_and_keeps_dtype(dtype):
    pytest.importorskip("numba")
    from bnderive.emit import load_module

    form = find_form("compact")
    shape = (300, 700)  # PER_ACTIVATION: several feature blocks, the last one partial
    kernel = load_module(emit(form, Mode.PER_ACTIVATION, target="numba").source)
    numpy_mod = load_module(emit(form, Mode.PER_ACTIVATION).source)
    rng = np.random.default_rng(1)
    x = (3 + rng.standard_normal(shape)).astype(dtype)
    dout = rng.standard_normal(shape).astype(dtype)
    gamma = rng.uniform(0.5, 2, shape[1]).astype(dtype)
    _, cache = numpy_mod["forward"](x, gamma, gamma * 0, 1e-5)
    got = kernel["backward_cached"](dout, cache, gamma)
    want = numpy_mod["backward_cached"](dout, cache, gamma)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    for a, b in zip(got, want, strict=True):
        assert a.dtype == dtype
        assert np.max(np.abs(a - b)) <= tol * np.max(np.abs(b))


def test_cli_emit_numba_writes_the_module(tmp_path):
    pytest.importorskip("numba")
    target = tmp_path / "bn_numba.py"
    result = CliRunner().invoke(
        main, ["emit", "--target", "numba", "--mode", "spatial", "-o", str(target)]
    )
    assert result.exit_code == 0, result.output
    assert "compiled by numba" in result.output
    assert "_backward_kernel" in target.read_text(encoding="utf-8")
