"""The stability study (issue 14 item 4): the exact reference, the measured facts, the figure
and the command.

The facts asserted are the ones the default study measures (seed 0, M = 256, spread 1): each
assertion says why it holds, and none is widened beyond what was measured.
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
import sympy as sp
from click.testing import CliRunner

from bnderive.cli import main
from bnderive.core import notation as N
from bnderive.core.derive import derive
from bnderive.core.evaluate import SYMBOLIC, evaluate, rational
from bnderive.core.points import point_env
from bnderive.core.spec import Mode, Spec
from bnderive.errors import EvaluationError
from bnderive.stability.exact import exact_dx, relative_error
from bnderive.stability.floats import FORWARD, forward, one_pass_variance, two_pass_variance
from bnderive.stability.study import (
    EMITTED_NUMPY,
    FORMS,
    ONE_PASS,
    TWO_PASS,
    sizes_up_to,
    study,
)
from bnderive.stability.written import WrittenEvaluator


@pytest.fixture(scope="module")
def default() -> object:
    """The study of the README's run in float32, float16 and float64 (M sweep to 64)."""
    return study(("float32", "float16", "float64"), max_m=64)


# -- the exact reference ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("x", "g", "gamma", "eps"),
    [
        # μ = 2, σ² = 3.5, ε = 0.5: √(σ² + ε) = 2 is rational, so the truth is an exact rational
        ([0.0, 1.0, 2.0, 5.0], [3.0, -1.0, 2.0, 7.0], 1.5, 0.5),
        # σ² + ε = 13427/9216 + 1/4 is not a square: the truth has an irrational root
        ([0.5, 0.25, 3.0, -0.75, 1.0, 0.0], [1.0, 0.5, -2.0, 0.25, 3.0, -1.0], -0.75, 0.25),
    ],
)
def test_the_reference_is_the_ground_truth(x, g, gamma, eps):
    """A_i/√d is the ground truth of core.derive evaluated exactly (SymPy numbers, the root
    kept exact): equal when √d is rational, else hi + lo agrees with it to 1e-30."""
    spec = Spec(Mode.PER_ACTIVATION, n=len(x))
    point = {"x": x, "g": g, "ggI": [0] * len(x), "gamma": gamma, "beta": 0, "eps": eps}
    ref = exact_dx(np.array(x), np.array(g), gamma, eps)
    truth = evaluate(derive(spec).inline("dx"), point_env(spec, 0, point, SYMBOLIC).env, N.i)
    if ref.root is not None:
        assert [a / rational(ref.root) for a in ref.numerators] == [
            rational(sp.Rational(t)) for t in truth
        ]
        assert list(ref.hi) == [float(t) for t in truth] and not ref.lo.any()
    else:
        for t, hi, lo in zip(truth, ref.hi, ref.lo, strict=True):
            got = sp.Rational(float(hi)) + sp.Rational(float(lo))
            assert abs(sp.N(got - t, 80)) <= abs(sp.N(t, 80)) * sp.Rational(1, 10**30)
            assert hi == float(sp.N(t, 40))  # hi is the correctly rounded value


def test_relative_error_is_normwise_and_inf_for_overflow():
    ref = exact_dx(np.array([0.0, 1.0, 2.0, 5.0]), np.array([3.0, -1.0, 2.0, 7.0]), 1.5, 0.5)
    # the truth is (27, −33, −9, 15)/16; an error of 1/16 in one entry is 1/33 of max |dx|
    got = np.array([27.0, -33.0, -9.0, 16.0]) / 16
    assert relative_error(got, ref) == pytest.approx(1 / 33, rel=1e-15)
    assert relative_error(ref.hi, ref) == 0.0
    assert relative_error(np.array([np.inf, 0, 0, 0]), ref) == math.inf
    assert relative_error(np.array([np.nan, 0, 0, 0]), ref) == math.inf


# -- the measured facts ----------------------------------------------------------------------------
def test_one_pass_variance_breaks_down_as_the_mean_grows(default):
    """E[x²] − μ² subtracts two numbers of size mean² that agree in all but the last digits of
    σ² ≈ 1: at mean 1e4 in float32, E[x²] ≈ 1e8 is held to a spacing of 8, so nothing of σ² is
    left (measured: the one-pass σ² is exactly 0, error 1), while two-pass Σ(x − μ)²/M keeps
    σ² to 7e-9 (measured)."""
    one = dict(default.series("mean", "float32", ONE_PASS))
    two = dict(default.series("mean", "float32", TWO_PASS))
    assert one[1e4] == 1.0  # σ² came out exactly 0
    assert two[1e4] < 1e-8
    assert one[1e4] > 1e6 * two[1e4]
    # from mean 1 on, every decade makes one-pass worse (1e-5, 7e-4, 9e-2, 1, 1e3, 7e4)
    grows = [one[m] for m in (1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6)]
    assert grows == sorted(grows) and len(set(grows)) == len(grows)
    assert one[1e6] > 1e4  # far past 100%: the "variance" is garbage (measured 7.4e4)


def test_two_pass_variance_is_exact_to_rounding_in_float64(default):
    """Two-pass in float64 at M = 256: every point within 2^-52 of the exact σ² (measured 0 or
    1.25e-16); one-pass at mean 1e6 loses 12 digits (measured 2.4e-4)."""
    two = default.series("mean", "float64", TWO_PASS)
    assert all(e <= 2.0**-52 for _, e in two)
    assert default.error("mean", "float64", ONE_PASS, 1e6) > 1e-5


def test_dx_error_grows_with_the_mean_and_the_staged_form_is_best(default):
    """In float32 the error of ∂L/∂x grows with the mean: μ is rounded at the size of the mean
    and every x − μ carries that rounding (measured 8e-8 at mean 0, 1.2e-3 at 1e6). From mean
    1e3 on, kronecker, compact and the emitted kernel (emitted from compact) have the same error
    within 1% (measured), and the staged form, evaluated as written, is 1.3-1.7× more accurate
    (measured 1.68, 1.67, 1.67, 1.35 at 1e3, 1e4, 1e5, 1e6): its dμ keeps dσ²·Σ −2(x − μ)/M,
    zero in exact arithmetic, which in floats is −2·Σ(x − μ̃) and corrects the first-order
    error of the rounded μ̃ (DESIGN §7). The same holds in float64. (These are seed 0's
    numbers; over seeds 0-19 the compact/staged ratio ranges from 0.7 to 8.8, median 1.2.)"""
    others = ("kronecker", "compact", EMITTED_NUMPY)
    for dtype in ("float32", "float64"):
        for mean in (1e3, 1e4, 1e5, 1e6):
            errors = [default.error("mean", dtype, n, mean) for n in others]
            assert max(errors) / min(errors) < 1.01, (dtype, mean, errors)
            ratio = min(errors) / default.error("mean", dtype, "staged", mean)
            assert 1.3 < ratio < 1.75, (dtype, mean, ratio)
    staged = dict(default.series("mean", "float32", "staged"))
    compact = dict(default.series("mean", "float32", "compact"))
    assert compact[1e6] > 1e4 * compact[0.0]  # 1.2e-3 against 6.0e-8
    assert staged[1e6] > 1e4 * staged[0.0]
    at_zero = [default.error("mean", "float32", n, 0.0) for n in (*FORMS, EMITTED_NUMPY)]
    assert max(at_zero) < 2e-7  # a few units of float32's 6e-8: the forms' own rounding


def test_the_zero_term_is_not_zero_in_floats():
    """Why the forms are evaluated as written: the staged form's Σ −2(x − μ) is the sum of the
    rounded differences, −2·Σ(x − μ̃) ≠ 0; rearranged as −2·Σx + 2·M·μ̃ (what an exact evaluator
    may do) it is exactly 0 in float32, since μ̃ = Σx/M with M a power of two."""
    rng = np.random.default_rng([0, 256])
    x = (1e4 + rng.standard_normal(256)).astype(np.float32)
    ev = forward(x, np.zeros(256), 1.5, 1e-5, "float32")
    mu = ev.scalars["mu"]
    written = ev.line("sum(-2*(x[k] - mu), k)", None)
    assert written == np.float32(-2) * np.sum(x - mu, dtype=np.float32) and written != 0
    rearranged = np.float32(-2) * np.sum(x, dtype=np.float32) + np.float32(2 * 256) * mu
    assert rearranged == 0


def test_forward_is_the_graph():
    """The forward pass the forms are evaluated after is core.graph's, stage by stage."""
    from bnderive.core.graph import Graph
    from bnderive.core.notation import parse

    graph = Graph.build(Spec(Mode.PER_ACTIVATION, n=4))
    for name, _index, text in FORWARD:
        assert parse(text) == graph.stage(name).at(N.i), name  # the same SymPy expression


def test_written_evaluation_follows_the_text():
    ev = WrittenEvaluator(np.dtype("float32"), 3, {"x": [1.0, 2.0, 4.0]}, {"mu": 0.5, "eps": 1})
    assert ev.line("sum(x[k], k)/M", None) == np.float32(7 / 3)
    assert list(ev.line("(x[i] - mu)*2", "i")) == [1.0, 3.0, 7.0]
    assert ev.line("sum(mu, k)", None) == np.float32(1.5)  # a constant summed M times
    assert ev.line("sum(x[k]*sum(x[l], l), k)", None) == np.float32(49)
    assert ev.line("(eps + 3)**(-1/2)", None) == np.float32(0.5)
    assert ev.line("sum(x[k] - x[i], k)", "i").tolist() == [4.0, 1.0, -5.0]
    for bad in ("x.real", "__import__('os')", "x[0]", "sum(x[k], mu)", "y", "lambda: 1", "abs(mu)"):
        with pytest.raises(EvaluationError):
            ev.line(bad, None)


def test_float16_overflows(default):
    """float16's largest number is 65504: at mean 1e5 the inputs do not fit (NaN, noted), and at
    mean 1e3 with M = 256 the sum Σx ≈ 2.6e5 of μ overflows (inf), in every candidate."""
    for candidate in default.candidates:
        row = next(
            r
            for r in default.rows
            if r.sweep == "mean"
            and r.dtype == "float16"
            and r.mean == 1e5
            and r.candidate == candidate
        )
        assert math.isnan(row.error) and "overflows float16" in row.note
        assert default.error("mean", "float16", candidate, 1e3) == math.inf
    assert default.error("mean", "float16", "compact", 1.0) < 1e-3


def test_variances_against_exact_values():
    x = np.array([1e4 + 0.5, 1e4 - 0.5], dtype=np.float32)  # exact σ² = 0.25
    assert float(two_pass_variance(x)) == 0.25
    assert float(one_pass_variance(x)) == 0.0  # 1e8 + 1e4 + 0.25 rounds to a multiple of 8


def test_the_study_is_deterministic():
    a = study(("float32",), max_m=16, means=(0.0, 1e4))
    b = study(("float32",), max_m=16, means=(0.0, 1e4))
    assert a == b
    assert a.sizes == (4, 16) and sizes_up_to(100) == (4, 16, 64, 100)
    assert len(a.rows) == (2 + 2) * len(a.candidates)  # (2 means + 2 sizes) × candidates


def test_rows_cover_every_point_and_candidate(default):
    for dtype in default.dtypes:
        for candidate in default.candidates:
            assert [p for p, _ in default.series("mean", dtype, candidate)] == list(default.means)
            assert [p for p, _ in default.series("M", dtype, candidate)] == [4.0, 16.0, 64.0]
    data = default.as_dict()
    json.dumps(data, allow_nan=False)  # non-finite errors are null
    nulls = [r for r in data["rows"] if r["error"] is None]
    assert nulls and all(r["note"] for r in nulls)


# -- the figure ------------------------------------------------------------------------------------
def test_figure_axes_and_lines(default):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from bnderive.stability.figure import DX_LABEL, VAR_LABEL, figure

    fig = figure(default)
    try:
        axes = fig.axes
        assert len(axes) == 3 * len(default.dtypes)
        ax_mean, ax_m, ax_var = axes[:3]  # float32's row
        assert ax_mean.get_ylabel() == DX_LABEL and ax_var.get_ylabel() == VAR_LABEL
        assert ax_mean.get_xlabel() == "input mean (spread 1)"
        assert ax_m.get_xlabel() == "M, elements of the reduction set (mean 1000)"
        assert ax_mean.get_yscale() == "log" and ax_m.get_xscale() == "log"
        lines = {line.get_label(): line for line in ax_mean.get_lines()}
        assert set(lines) == {*FORMS, EMITTED_NUMPY}
        x, y = lines["staged"].get_data()
        want = default.series("mean", "float32", "staged")
        assert list(x) == [p for p, _ in want] and list(y) == [e for _, e in want]
        var_lines = {line.get_label(): line for line in ax_var.get_lines()}
        assert set(var_lines) == {ONE_PASS, TWO_PASS}
        assert var_lines[ONE_PASS].get_ydata()[5] == 1.0  # mean 1e4: σ² came out 0
        # float16's overflowed points are gaps (NaN), not drawn values
        f16 = {line.get_label(): line for line in axes[3].get_lines()}
        assert np.isnan(f16["compact"].get_ydata()[4:]).all()
    finally:
        plt.close(fig)


def test_save_figure_writes_a_png(default, tmp_path):
    pytest.importorskip("matplotlib")
    from bnderive.stability.figure import save_figure

    path = tmp_path / "s.png"
    save_figure(default, str(path))
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1300, 360 * len(default.dtypes))


# -- the command -------------------------------------------------------------------------------------
def run(*args: str):
    return CliRunner().invoke(main, ["stability", *args], env={"COLUMNS": "80"})


def test_cli_table_fits_80_columns():
    result = run("--max-m", "16")
    assert result.exit_code == 0, result.output
    assert "float32, as the mean grows (M = 256)" in result.output
    assert "float32, as M grows (mean 1000)" in result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80
    row = next(line for line in result.output.splitlines() if line.strip().startswith("10000"))
    assert row.split()[-2:] == ["1.0e+00", "7.3e-09"]  # one-pass, two-pass σ² at mean 1e4


def test_cli_json_and_several_dtypes():
    result = run("--dtype", "float32", "float16", "--max-m", "4", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["dtypes"] == ["float32", "float16"] and data["sizes"] == [4]
    assert {r["dtype"] for r in data["rows"]} == {"float32", "float16"}


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--dtype", "float8"), "float8"),
        (("--dtype", "float32", "int8"), "int8"),
        (("float32",), "--dtype"),
        (("--max-m", "100000"), "above the cap of 65,536"),
        (("--m", "2"), "--m"),
        (("--mean", "nan"), "--mean"),
        (("--mean", "2e6"), "--mean"),
    ],
)
def test_cli_bad_input_exit_2(args, words):
    result = run(*args)
    assert result.exit_code == 2 and words in result.output and "Traceback" not in result.output


def test_cli_without_matplotlib_exit_2(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib fails
    result = run("-o", str(tmp_path / "s.png"))
    assert result.exit_code == 2
    assert "pip install 'bnderive[report]'" in result.output
    assert not (tmp_path / "s.png").exists()


def test_cli_without_numba_exit_2(monkeypatch):
    import bnderive.emit.numba_module as numba_module

    monkeypatch.setattr(numba_module, "numba_available", lambda: False)
    result = run("--numba")
    assert result.exit_code == 2 and "pip install 'bnderive[numba]'" in result.output


def test_cli_writes_the_figure(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "s.png"
    result = run("--max-m", "4", "-o", str(path))
    assert result.exit_code == 0 and f"wrote {path}" in result.output
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_help_has_examples():
    result = run("--help")
    assert result.exit_code == 0
    assert result.output.rstrip().splitlines()[-1].strip().startswith("bnderive stability")
    assert "Examples:" in result.output


# -- several draws per point, and the numba kernel ------------------------------------------------
def test_trials_give_the_median_and_range_of_single_draws():
    """--trials N: each row is the median of the N single-draw studies (seeds 0, 1, 2) and its
    range, computed here from those studies themselves."""
    settings = {"max_m": 16, "means": (0.0, 1e4), "m": 64}
    several = study(("float32",), trials=3, **settings)
    singles = [study(("float32",), seed=s, **settings) for s in range(3)]
    assert several.trials == 3 and len(several.rows) == len(singles[0].rows)
    for k, row in enumerate(several.rows):
        errors = sorted(single.rows[k].error for single in singles)
        assert (row.error, row.low, row.high) == (errors[1], errors[0], errors[2])
    assert any("median of 3 draws" in n for n in several.notes)
    assert any("one draw of the inputs (seed 0)" in n for n in singles[0].notes)
    data = several.as_dict()
    assert data["trials"] == 3 and {"low", "high"} <= set(data["rows"][0])
    assert "low" not in singles[0].as_dict()["rows"][0]


def test_trials_of_float16_overflow_stay_not_measured():
    several = study(("float16",), trials=2, max_m=4, means=(1e5,))
    row = next(r for r in several.rows if r.sweep == "mean" and r.candidate == "compact")
    assert math.isnan(row.error) and "overflows float16" in row.note


def test_cli_trials_and_seed():
    result = run("--max-m", "4", "--m", "16", "--trials", "2", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["trials"] == 2 and "median of 2 draws" in data["error"]
    table = run("--max-m", "4", "--m", "16", "--trials", "2")
    assert "median of 2 draws" in " ".join(table.output.split())
    bad = run("--seed", "-1")  # numpy's generator takes no negative seed
    assert bad.exit_code == 2 and "--seed" in bad.output and "Traceback" not in bad.output


NO_NUMBA = "numba is not installed (pip install numba): the emitted numba kernel is not studied"


def test_the_numba_kernel_is_studied():
    """The emitted numba kernel (compiled, parallel, fastmath contract/reassoc) is measured like
    the others. Measured (seed 0, M = 256): from mean 1e3 on its error equals the NumPy
    kernel's within 0.5% in float32 and float64 (both are dominated by μ's rounding); below,
    the two differ by their order of summation (numba/NumPy 0.56-1.08), and numba is never
    more than 1.1× the largest error of the forms and the NumPy kernel. float16: numba has
    none (not measured, noted)."""
    pytest.importorskip("numba", reason=NO_NUMBA)
    s = study(("float32", "float64", "float16"), max_m=64, means=(0.0, 1.0, 1e3, 1e6), numba=True)
    assert "emitted numba" in s.candidates
    for dtype in ("float32", "float64"):
        for sweep, points in (("mean", s.means), ("M", s.sizes)):
            for point in points:
                numba = s.error(sweep, dtype, "emitted numba", float(point))
                others = [
                    s.error(sweep, dtype, c, float(point))
                    for c in s.dx_candidates
                    if c != "emitted numba"
                ]
                assert 0 < numba <= 1.1 * max(others), (dtype, sweep, point, numba, others)
        for mean in (1e3, 1e6):
            numpy_error = s.error("mean", dtype, EMITTED_NUMPY, mean)
            assert abs(s.error("mean", dtype, "emitted numba", mean) / numpy_error - 1) < 0.005
    f16 = [r for r in s.rows if r.dtype == "float16" and r.candidate == "emitted numba"]
    assert f16 and all(math.isnan(r.error) and r.note for r in f16)
