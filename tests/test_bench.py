"""bnderive bench: structure and exit codes on tiny shapes (timings are never asserted)."""

from __future__ import annotations

from click.testing import CliRunner

from bnderive import bench
from bnderive.cli import main


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
