"""Running statistics of the frameworks (core.running) and ``bnderive conventions``."""

from __future__ import annotations

import json
import sys
from fractions import Fraction

import numpy as np
import pytest
from click.testing import CliRunner

from bnderive.cli import main
from bnderive.core.running import batch_statistics, conventions, simulate

ENV = {"COLUMNS": "80", "FORCE_COLOR": None, "TERM": "dumb", "NO_COLOR": "1"}


def run(*args: str):
    return CliRunner().invoke(main, list(args), env=ENV)


def tracks(sim):
    return {t.convention.name: t for t in sim.tracks}


def test_five_conventions_with_their_weights_variances_and_starts():
    by_name = {c.name: c for c in conventions(Fraction(1, 2))}
    assert list(by_name) == ["tf-ema", "keras", "cs231n", "pytorch", "cudnn"]
    assert by_name["pytorch"].weight == Fraction(1, 10) and by_name["pytorch"].unbiased
    assert by_name["cs231n"].weight == Fraction(1, 10) and not by_name["cs231n"].unbiased
    assert by_name["keras"].weight == Fraction(1, 100) and by_name["keras"].start == (0, 1)
    assert by_name["tf-ema"].weight == Fraction(1, 2) and by_name["tf-ema"].start == (0, 0)
    cudnn = by_name["cudnn"]
    assert [cudnn.weight_at(n) for n in range(3)] == [1, Fraction(1, 2), Fraction(1, 3)]


def test_cudnn_factor_is_the_cumulative_average_exactly():
    sim = simulate(steps=7, batch=5, seed=3)
    cudnn = tracks(sim)["cudnn"]
    for k in range(1, 8):
        means = [batch_statistics(b, True)[0] for b in sim.batches[:k]]
        variances = [batch_statistics(b, True)[1] for b in sim.batches[:k]]
        assert cudnn.means[k - 1] == sum(means) / k  # = the mean of all values seen
        assert cudnn.variances[k - 1] == sum(variances) / k
        assert cudnn.means[k - 1] == sim.population(k)[0]


def test_exponential_averages_in_closed_form():
    sim = simulate(steps=6, batch=4, seed=1, decay=Fraction(1, 2))
    t = tracks(sim)
    stats = [batch_statistics(b, False) for b in sim.batches]
    m = len(sim.batches[0])

    def ema(w, start, values):
        k = len(values)
        return (1 - w) ** k * start + sum(
            w * (1 - w) ** (k - 1 - j) * v for j, v in enumerate(values)
        )

    w = Fraction(1, 10)
    biased = [v for _, v in stats]
    assert t["cs231n"].variances[-1] == ema(w, 0, biased)
    assert t["pytorch"].variances[-1] == ema(w, 1, [v * m / (m - 1) for v in biased])
    assert t["pytorch"].means == t["cs231n"].means  # same weight, both start at 0
    assert t["keras"].means[-1] == ema(Fraction(1, 100), 0, [mu for mu, _ in stats])
    assert t["tf-ema"].means[0] == stats[0][0] / 2


def test_the_eval_outputs_drift_apart_then_closer():
    sim = simulate(steps=200, batch=8, seed=0)
    spread = []
    for step in (1, 200):
        outputs = [sim.eval_output(t.means[step - 1], t.variances[step - 1]) for t in sim.tracks]
        spread.append(max(outputs) - min(outputs))
    assert spread[0] > 1 and spread[1] < spread[0]


@pytest.mark.torch
def test_pytorch_convention_equals_batchnorm1d_running_statistics():
    torch = pytest.importorskip("torch")
    sim = simulate(steps=12, batch=6, seed=4)
    layer = torch.nn.BatchNorm1d(1, momentum=0.1).double()
    layer.train()
    for values in sim.batches:
        layer(torch.tensor([[float(v)] for v in values], dtype=torch.float64))
    mine = tracks(sim)["pytorch"]
    assert abs(float(mine.means[-1]) - layer.running_mean.item()) < 1e-12
    assert abs(float(mine.variances[-1]) - layer.running_var.item()) < 1e-12


# -- the command ------------------------------------------------------------------------------------
def test_conventions_table():
    result = run("conventions", "--steps", "10")
    assert result.exit_code == 0, result.output
    for name in ("tf-ema", "keras", "cs231n", "pytorch", "cudnn", "all data"):
        assert f"\n{name} " in result.output
    assert "How far apart" in result.output
    assert all(len(line) <= 80 for line in result.output.splitlines())


def test_conventions_json_is_exact():
    result = run("conventions", "--steps", "3", "--batch", "4", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    cudnn = next(c for c in data["conventions"] if c["name"] == "cudnn")
    values = [Fraction(v) for b in data["batches"] for v in b]
    assert Fraction(cudnn["running_mean"][-1]) == sum(values) / len(values)


def test_conventions_plot(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "running.png"
    result = run("conventions", "--steps", "5", "-o", str(path))
    assert result.exit_code == 0, result.output
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_conventions_bad_input(tmp_path, monkeypatch):
    for decay in ("2", "0", "x"):
        result = run("conventions", "--decay", decay)
        assert result.exit_code == 2 and "--decay" in result.output
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    result = run("conventions", "-o", str(tmp_path / "p.png"))
    assert result.exit_code == 2 and "bnderive[report]" in result.output
    assert run("conventions", "--batch", "1").exit_code == 2


def test_simulation_is_float_free_until_the_eval_output():
    sim = simulate(steps=2, batch=3)
    assert all(isinstance(v, Fraction) for t in sim.tracks for v in t.means + t.variances)
    assert np.isfinite(sim.eval_output(*sim.population()))
