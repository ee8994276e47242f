"""bnderive bench: structure and exit codes on tiny shapes (timings are never asserted)."""

from __future__ import annotations

import importlib.util
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bnderive.cli import main
from bnderive.emit import bench


def test_bench_command_prints_a_table_per_shape():
    result = CliRunner().invoke(
        main, ["bench", "--shape", "2,3,2,2", "--shape", "4,3", "--repeats", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "spatial (2, 3, 2, 2) float32" in result.output
    assert "per-activation (4, 3) float32" in result.output
    for name in ("emitted compact, cached", "staged hand", "compact hand", "3-pass bound"):
        assert result.output.count(name) == 2
    assert "not preallocated" in result.output
    assert "× bound" in result.output


def test_bench_float64():
    result = CliRunner().invoke(main, ["bench", "--shape", "3,2", "--dtype", "float64"])
    assert result.exit_code == 0, result.output
    assert "float64" in result.output


def test_bench_rejects_bad_shapes_with_exit_2():
    for shape in ("2,3,4", "a,b", "1,3", "0,3,2,2"):
        result = CliRunner().invoke(main, ["bench", "--shape", shape])
        assert result.exit_code == 2, (shape, result.output)
        assert "Error" in result.output


def test_bench_rejects_bad_dtype_and_repeats():
    assert CliRunner().invoke(main, ["bench", "--dtype", "float16"]).exit_code == 2
    assert CliRunner().invoke(main, ["bench", "--repeats", "0"]).exit_code == 2


def test_bench_shape_result_library():
    result = bench.bench_shape((3, 2, 2, 2), "float32", rounds=1)
    assert result.ok
    assert result.bound > 0
    names = [row.name for row in result.rows]
    assert names[:3] == [bench.EMITTED, "emitted staged, cached", "emitted compact, from x"]
    assert all(row.seconds > 0 for row in result.rows)


# -- PyTorch in a child process -------------------------------------------------------------------
def test_without_torch_there_is_no_child_and_a_note(monkeypatch):
    monkeypatch.setattr(bench, "torch_installed", lambda: False)
    child, why = bench.start_torch_child()
    assert child is None and "not installed" in why
    result = bench.bench_shape((4, 3), "float32", rounds=1)
    assert bench.TORCH not in [row.name for row in result.rows]
    assert any("not installed" in note for note in result.notes)


def test_a_child_that_dies_is_an_error_with_its_exit_code():
    with pytest.raises(bench.TorchChildError, match="exited \\(3\\)"):
        bench.TorchChild([sys.executable, "-c", "import sys; sys.exit(3)"])


def test_a_child_that_hangs_is_given_up_on(monkeypatch):
    monkeypatch.setattr(bench.TorchChild, "TIMEOUT", 0.5)
    with pytest.raises(bench.TorchChildError, match="did not answer"):
        bench.TorchChild([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_child_that_fails_is_a_note_not_a_crash(monkeypatch):
    monkeypatch.setattr(bench, "torch_installed", lambda: True)
    monkeypatch.setattr(bench.TorchChild, "COMMAND", ("-c", "raise SystemExit('no torch here')"))
    child, why = bench.start_torch_child()
    assert child is None and "no PyTorch row" in why and "no torch here" in why


def test_child_protocol_in_process():
    """The child's loop, fed requests directly: setup checks PyTorch's gradients, time times."""
    pytest.importorskip("torch")
    shape = (6, 3, 2, 2)
    inputs = bench.make_inputs(shape, "float64", seed=4)
    axes = (0, 2, 3)
    mu = inputs.x.mean(axis=axes)
    inv_std = 1 / np.sqrt(inputs.x.var(axis=axes) + inputs.eps)
    requests = [
        {"cmd": "time"},  # before setup: an error, and the loop goes on
        {"cmd": "threads", "n": 1},
        {
            "cmd": "setup",
            "shape": list(shape),
            "dtype": "float64",
            "seed": 4,
            "mu": mu.tolist(),
            "inv_std": inv_std.tolist(),
        },
        {"cmd": "time"},
        {"cmd": "quit"},
        {"cmd": "time"},  # never read
    ]
    out = io.StringIO()
    bench.torch_child_main(io.StringIO("".join(json.dumps(r) + "\n" for r in requests)), out)
    hello, early, threads, setup, timed = (json.loads(line) for line in out.getvalue().splitlines())
    assert "torch" in hello and hello["threads"] >= 1
    assert threads == {"threads": 1}
    assert "before setup" in early["error"]
    assert setup["dx_error"] < 1e-12 and setup["dgamma_error"] < 1e-12  # float64 agrees
    assert timed["seconds"] > 0


@pytest.mark.torch
def test_pytorch_row_comes_from_the_child():
    pytest.importorskip("torch")
    with bench.TorchChild() as child:
        first = bench.bench_shape((8, 3), "float32", rounds=2, torch_child=child)
        second = bench.bench_shape((2, 3, 2, 2), "float64", rounds=2, torch_child=child)
    for result in (first, second):
        row = next(row for row in result.rows if row.name == bench.TORCH)
        assert row.ok and row.seconds > 0
        assert any("child process" in note for note in result.notes)


def test_cli_bench_says_how_pytorch_was_timed():
    pytest.importorskip("torch")
    result = CliRunner().invoke(
        main, ["bench", "--shape", "4,3", "--repeats", "1", "--torch-threads", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "PyTorch CPU" in result.output and "child process" in result.output
    assert "(1 thread)" in " ".join(result.output.split())
    assert CliRunner().invoke(main, ["bench", "--torch-threads", "0"]).exit_code == 2


def test_a_child_that_dies_mid_run_leaves_a_note_and_the_other_rows():
    pytest.importorskip("torch")
    with bench.TorchChild() as child:
        calls = {"n": 0}
        original = child.time_one

        def flaky() -> float:
            calls["n"] += 1
            if calls["n"] == 3:
                raise bench.TorchChildError("the PyTorch child exited (-9): killed")
            return original()

        child.time_one = flaky  # type: ignore[method-assign]
        result = bench.bench_shape((6, 3), "float32", rounds=3, torch_child=child)
    names = [row.name for row in result.rows]
    assert bench.TORCH not in names and bench.EMITTED in names
    assert any("no PyTorch row" in note and "killed" in note for note in result.notes)
    assert not any(note.startswith("PyTorch ") for note in result.notes)


BENCHMARKS = sorted((Path(__file__).parent.parent / "benchmarks").glob("bench_*.py"))


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda p: p.name)
def test_every_benchmark_imports_what_it_uses(path):
    """A benchmark names the library's functions by their modules, so a moved function fails here
    (CI's smoke run once crashed on ``verify.exact_check`` after the layout change)."""
    spec = importlib.util.spec_from_file_location(f"_bench_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(module.main)
