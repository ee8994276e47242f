"""bnderive emit --target numba: the fused kernel, verified as plain Python and compiled.

Golden files hold the emitted numba source of every form × mode (regenerate with
BNDERIVE_UPDATE_GOLDEN=1); they are compared without numba. Compiling is the slow part, so the
verified modules are emitted once per session (``numba_emitted``) and each is compiled once
(``numba_module``); every test that runs the kernel shares them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from bnderive import __version__
from bnderive.cli import main
from bnderive.core.spec import Mode
from bnderive.emit import numba_module as emit_numba
from bnderive.emit.emitter import Emitted, emit
from bnderive.emit.numpy_module import EmitVerificationError
from bnderive.emit.verification import exact_case, load_module, verify_module
from bnderive.read.catalogue import find_form

GOLDEN = Path(__file__).parent / "golden"
FORMS = ["compact", "staged", "kronecker"]
MODES = [Mode.PER_ACTIVATION, Mode.SPATIAL]
CASES = [(f, m) for f in FORMS for m in MODES]


def golden_name(form: str, mode: Mode) -> str:
    return f"emit_numba_{form}_{mode.value.replace('-', '_')}.py"


@pytest.fixture(scope="session")
def numba_emitted() -> Callable[[str, Mode], Emitted]:
    """emit(form, mode, target="numba"), verified and compiled once per session."""
    pytest.importorskip("numba")
    done: dict[tuple[str, Mode], Emitted] = {}

    def get(form: str, mode: Mode) -> Emitted:
        if (form, mode) not in done:
            done[form, mode] = emit(find_form(form), mode, __version__, target="numba")
        return done[form, mode]

    return get


@pytest.fixture(scope="session")
def numba_module(numba_emitted) -> Callable[[str, Mode], dict[str, Any]]:
    """The emitted module, imported once per session (numba compiles per dtype on first use)."""
    done: dict[tuple[str, Mode], dict[str, Any]] = {}

    def get(form: str, mode: Mode) -> dict[str, Any]:
        if (form, mode) not in done:
            done[form, mode] = load_module(numba_emitted(form, mode).source, f"bn_{form}")
        return done[form, mode]

    return get


# -- the source ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("form", "mode"), CASES)
def test_numba_source_is_golden(form, mode):
    """Runs without numba: the source is printed, not compiled."""
    text = emit_numba.render_numba(find_form(form), mode, __version__)
    path = GOLDEN / golden_name(form, mode)
    if os.environ.get("BNDERIVE_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("mode", MODES)
def test_kernel_source_shape(mode):
    text = emit_numba.render_numba(find_form("compact"), mode, __version__)
    # Only reordering of sums and a·b + c fusion are allowed of LLVM; no finite-math flags.
    assert '@numba.njit(parallel=True, fastmath={"contract", "reassoc"}, cache=False)' in text
    assert text.count("numba.prange(chunks)") == 2  # pass 1 and pass 2
    assert "b = chunks - q - 1" in text
    assert "for p in range(1, chunks):" in text  # the chunks' partial sums, added per channel
    compile(text, "emitted", "exec")


@pytest.mark.parametrize("mode", list(Mode))
def test_kernel_source_is_exact_as_plain_python(mode):
    """Runs without numba: the printed kernel, njit the identity, on exact rationals."""
    form = find_form("compact")
    source = emit_numba.render_numba(form, mode, "test")
    verification = verify_module(source, form, mode, "numba", compiled=False)
    assert verification.checks[0].startswith("exact rationals")
    assert any(c.startswith("exact rationals with the") for c in verification.checks)
    assert not any("compiled" in c for c in verification.checks)


def test_plain_python_kernel_gives_exact_rationals():
    form = find_form("staged")
    source = emit_numba.render_numba(form, Mode.SPATIAL, "test")
    module = emit_numba.load_plain(source)
    case = exact_case(form, Mode.SPATIAL)
    _, cache = module["forward"](case.x, case.gamma, case.beta, case.eps)
    for rows in (None, 1):
        dx, dgamma, _ = module["backward_cached"](case.dout, cache, case.gamma, rows=rows)
        assert all(a == b for a, b in zip(dx.ravel(), case.truth["dx"].ravel(), strict=True))
        assert all(a == b for a, b in zip(dgamma, case.truth["dgamma"], strict=True))


# -- verification catches kernels wrong only when the rows are cut into several chunks -------------
@pytest.mark.parametrize(
    ("old", "new", "hidden_in_one_chunk"),
    [
        ("for p in range(1, chunks):", "for p in range(1, 1):", True),  # other chunks' sums lost
        ("b = chunks - q - 1", "b = chunks - 1", True),  # pass 2 writes one chunk only
        ("min(n, q*rows + rows)", "min(n, q*rows + 1)", False),  # pass 1 skips rows
    ],
)
@pytest.mark.parametrize("mode", MODES)
def test_chunked_check_rejects_what_one_chunk_hides(mode, old, new, hidden_in_one_chunk):
    form = find_form("compact")
    source = emit_numba.render_numba(form, mode, "test")
    bad = source.replace(old, new, 1)
    assert bad != source
    with pytest.raises(EmitVerificationError) as caught:
        verify_module(bad, form, mode, "numba", compiled=False)
    # The verification inputs fit in one chunk: only the runs with the rows cut into several
    # chunks can see these; the others fail on every run.
    assert ("row(s) per chunk" in str(caught.value)) is hidden_in_one_chunk, caught.value


def test_missing_numba_is_exit_2(monkeypatch):
    monkeypatch.setattr(emit_numba, "numba_available", lambda: False)
    result = CliRunner().invoke(main, ["emit", "--target", "numba"])
    assert result.exit_code == 2
    assert "pip install numba" in result.output


# -- compiled ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("form", "mode"), CASES)
def test_numba_module_is_verified_and_compiled(numba_emitted, form, mode):
    emitted = numba_emitted(form, mode)
    assert emitted.target == "numba"
    assert emitted.source == emit_numba.render_numba(find_form(form), mode, __version__)
    checks = emitted.verification.checks
    assert any(c.startswith("compiled by numba") for c in checks)
    assert any(c.startswith("exact rationals at") for c in checks)
    assert any(c.startswith("exact rationals with the") for c in checks)


SHAPES = {
    # Several chunks by default, the last one partial (rows = 2¹⁸·N // size).
    Mode.PER_ACTIVATION: (2000, 300),  # 873 rows per chunk: 873, 873, 254
    Mode.SPATIAL: (12, 8, 60, 60),  # 9 images per chunk: 9, 3
}


def _inputs(shape: tuple[int, ...], dtype: type) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(1)
    x = (3 + rng.standard_normal(shape)).astype(dtype)
    dout = rng.standard_normal(shape).astype(dtype)
    gamma = rng.uniform(0.5, 2, shape[1]).astype(dtype)
    return x, dout, gamma


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("form", "mode"), [("compact", m) for m in MODES] + [("staged", Mode.SPATIAL)]
)
def test_numba_matches_numpy_target_and_keeps_dtype(numba_module, form, mode, dtype):
    kernel = numba_module(form, mode)
    numpy_mod = load_module(emit(find_form(form), mode).source)
    x, dout, gamma = _inputs(SHAPES[mode], dtype)
    _, cache = numpy_mod["forward"](x, gamma, gamma * 0, 1e-5)
    want = numpy_mod["backward_cached"](dout, cache, gamma)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    for rows in (None, 1, 5):
        got = kernel["backward_cached"](dout, cache, gamma, rows=rows)
        for a, b in zip(got, want, strict=True):
            assert a.dtype == dtype
            assert np.max(np.abs(a - b)) <= tol * np.max(np.abs(b))


@pytest.mark.parametrize("mode", MODES)
def test_result_does_not_depend_on_the_number_of_threads(numba_module, mode):
    import numba

    kernel = numba_module("compact", mode)
    x, dout, gamma = _inputs(SHAPES[mode], np.float32)
    _, cache = kernel["forward"](x, gamma, gamma * 0, 1e-5)
    saved = numba.get_num_threads()
    results = []
    try:
        for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(threads)
            results.append(kernel["backward_cached"](dout, cache, gamma))
    finally:
        numba.set_num_threads(saved)
    for a, b in zip(results[0], results[-1], strict=True):
        assert np.array_equal(a, b)


def test_cli_emit_numba_writes_the_module(tmp_path):
    pytest.importorskip("numba")
    target = tmp_path / "bn_numba.py"
    result = CliRunner().invoke(
        main, ["emit", "--target", "numba", "--mode", "spatial", "-o", str(target)]
    )
    assert result.exit_code == 0, result.output
    assert "compiled by numba" in result.output
    text = target.read_text(encoding="utf-8")
    assert text == emit_numba.render_numba(find_form("compact"), Mode.SPATIAL, __version__)


def test_a_kernel_wrong_under_numba_is_not_returned(monkeypatch):
    """The compiled runs catch a module that numba miscompiles, or that is wrong only in
    compiled code (here: a module patched after printing to be wrong only under numba)."""
    pytest.importorskip("numba")
    form = find_form("compact")
    source = emit_numba.render_numba(form, Mode.SPATIAL, "test")
    # Right as plain Python (numba's stand-in has no `config`), wrong once compiled.
    wrong = "    if hasattr(numba, 'config'):\n        dgamma = 2 * dgamma\n    return dx, dgamma, dbeta"
    bad = source.replace("    return dx, dgamma, dbeta", wrong)
    assert bad != source
    verify_module(bad, form, Mode.SPATIAL, "numba", compiled=False)
    with pytest.raises(EmitVerificationError, match="float64 under numba"):
        verify_module(bad, form, Mode.SPATIAL, "numba")
