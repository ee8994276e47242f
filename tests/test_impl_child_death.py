"""check-impl: the child dies after some sections were checked, and --running auto's momentum hint.

The child runs the sections of a CS231n file in order (per-activation training, per-activation
eval, spatial training, spatial eval).  When it dies in a later one (os._exit, a timeout, a crash
in eval mode), the sections already checked keep their rows and every later function is a
"could not check" row with the child's message: exit 2, never "holds" for the file.

The user files are written here in the CS231n assignment-2 layout (style of
tests/impls_real/cs231n_staged.py: bn_param with mode/eps/momentum, a tuple cache, the spatial
pair transposing to (N·H·W, C)); each test writes one hook into one place.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from bnderive.cli import main

ENV = {"COLUMNS": "200", "FORCE_COLOR": None, "TERM": "dumb", "NO_COLOR": "1"}

# {train}, {test}, {sfwd}, {sbwd}: a statement run at the start of the training branch, the
# test-mode branch, the spatial forward, the spatial backward (``pass`` when unused)
CS231N = """
import os
import numpy as np


def batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param["mode"]
    eps = bn_param.get("eps", 1e-5)
    momentum = {momentum}
    d = x.shape[1]
    running_mean = bn_param.get("running_mean", np.zeros(d, dtype=x.dtype))
    running_var = bn_param.get("running_var", np.zeros(d, dtype=x.dtype))
    cache = None
    if mode == "train":
        {train}
        mu = x.mean(axis=0)
        var = ((x - mu) ** 2).mean(axis=0)
        std = np.sqrt(var + eps)
        xhat = (x - mu) / std
        out = gamma * xhat + beta
        running_mean = momentum * running_mean + (1 - momentum) * mu
        running_var = momentum * running_var + (1 - momentum) * var
        cache = (xhat, gamma, std)
    else:
        {test}
        out = gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta
    bn_param["running_mean"] = running_mean
    bn_param["running_var"] = running_var
    return out, cache


def batchnorm_backward(dout, cache):
    xhat, gamma, std = cache
    m = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dx = gamma / (m * std) * (m * dout - dbeta - xhat * dgamma)
    return dx, dgamma, dbeta


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    {sfwd}
    n, c, h, w = x.shape
    out, cache = batchnorm_forward(x.transpose(0, 2, 3, 1).reshape(-1, c), gamma, beta, bn_param)
    return out.reshape(n, h, w, c).transpose(0, 3, 1, 2), cache


def spatial_batchnorm_backward(dout, cache):
    {sbwd}
    n, c, h, w = dout.shape
    dx, dgamma, dbeta = batchnorm_backward(dout.transpose(0, 2, 3, 1).reshape(-1, c), cache)
    return dx.reshape(n, h, w, c).transpose(0, 3, 1, 2), dgamma, dbeta
"""

EXIT = "os._exit(7)"
LOOP = "while True:\n            pass"
HINT = (
    "(with --running auto, bn_param carries no momentum so that the code's own default shows "
    "which convention it follows: read it with bn_param.get('momentum', 0.9), or declare "
    "--running cs231n or --running pytorch)"
)


def write(tmp_path: Path, momentum: str = 'bn_param.get("momentum", 0.9)', **hooks: str) -> str:
    fill = {"train": "pass", "test": "pass", "sfwd": "pass", "sbwd": "pass", **hooks}
    if "sfwd" in hooks or "sbwd" in hooks:  # one level less indented than the branches
        fill = {k: v.replace("\n        ", "\n    ") for k, v in fill.items()}
    path = tmp_path / "cs231n_layers.py"
    path.write_text(CS231N.format(momentum=momentum, **fill), encoding="utf-8")
    return str(path)


def check(path: str, *args: str):
    return CliRunner().invoke(main, ["check-impl", path, *args], env=ENV)


def rows(result) -> dict[tuple[str, str], list[str]]:
    """(function, section) → the verdicts of its rows, from the JSON report: verdict rows as their
    status, failure rows as 'failed'."""
    data = json.loads(result.output)
    out: dict[tuple[str, str], list[str]] = {}
    assert data["exit_code"] == 2 and data["status"] == "could not check"
    for v in data["verdicts"]:
        out.setdefault((v["form"], v["section"]), []).append(v["status"])
    for f in data["failures"]:
        out.setdefault((f["function"], f["section"]), []).append("failed")
    return out


def table(result) -> dict[tuple[str, str], set[str]]:
    """(function, mode) → the verdicts printed in its table rows."""
    out: dict[tuple[str, str], set[str]] = {}
    for line in result.output.splitlines():
        for verdict in ("✓ holds", "! could not check", "✗"):
            if line.rstrip().endswith(verdict) or f" {verdict} " in line:
                words = line.split()
                mode = next(m for m in ("per-activation", "spatial") if m in words)
                kind = "eval" if "eval" in words else "training"
                out.setdefault((words[0], f"{mode} {kind}"), set()).add(verdict)
    return out


PER_TRAIN = ("per-activation training",)
CHECKED_FIRST = {
    ("batchnorm_forward", "per-activation training"),
    ("batchnorm_backward", "per-activation training"),
}


def test_the_file_as_written_holds(tmp_path):
    # the control: without a hook every section is checked and holds, so the rows below that
    # are not checked are so because of the death alone
    result = check(write(tmp_path))
    assert result.exit_code == 0, result.output
    printed = table(result)
    assert all(v == {"✓ holds"} for v in printed.values()), result.output
    assert "(not completed)" not in result.output
    assert {k[1] for k in printed} == {
        "per-activation training", "per-activation eval", "spatial training", "spatial eval",
    }  # fmt: skip


def test_os_exit_in_a_later_section_keeps_the_checked_rows(tmp_path):
    path = write(tmp_path, sbwd=EXIT)
    result = check(path)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    printed = table(result)
    for key in (*CHECKED_FIRST, ("batchnorm_forward", "per-activation eval")):
        assert printed[key] == {"✓ holds"}, (key, result.output)
    for key in (
        ("spatial_batchnorm_forward", "spatial training"),
        ("spatial_batchnorm_backward", "spatial training"),
        ("spatial_batchnorm_forward", "spatial eval"),
    ):
        assert printed[key] == {"! could not check"}, (key, result.output)
    assert "exited with code 7 before answering" in result.output
    assert "could not check: 9 hold, 4 function(s)" in result.output
    assert "✓ holds:" not in result.output
    # the same in the JSON report: no spatial verdict, a failure for each spatial function
    data = rows(check(path, "--json"))
    assert all(s == "holds" for k, v in data.items() if k[1].startswith("per-") for s in v)
    spatial = {k: v for k, v in data.items() if k[1].startswith("spatial")}
    assert spatial and all(v == ["failed"] for v in spatial.values()), data


def test_a_timeout_in_a_later_section_keeps_the_checked_rows(tmp_path):
    result = check(write(tmp_path, sfwd=LOOP), "--timeout", "2")
    assert result.exit_code == 2, result.output
    printed = table(result)
    for key in (*CHECKED_FIRST, ("batchnorm_forward", "per-activation eval")):
        assert printed[key] == {"✓ holds"}, (key, result.output)
    assert printed[("spatial_batchnorm_forward", "spatial training")] == {"! could not check"}
    assert printed[("spatial_batchnorm_backward", "spatial training")] == {"! could not check"}
    assert "did not finish within 2 s" in result.output and "--timeout" in result.output
    assert "✓ holds:" not in result.output


def test_dying_in_eval_mode_leaves_only_training_checked(tmp_path):
    result = check(write(tmp_path, test=EXIT))
    assert result.exit_code == 2, result.output
    printed = table(result)
    for key in CHECKED_FIRST:
        assert printed[key] == {"✓ holds"}, (key, result.output)
    # eval mode and every section after it: not checked, never holds
    later = {k: v for k, v in printed.items() if k[1] != "per-activation training"}
    assert ("batchnorm_forward", "per-activation eval") in later
    assert ("spatial_batchnorm_backward", "spatial training") in later
    assert all(v == {"! could not check"} for v in later.values()), result.output
    assert "could not check: 6 hold, 6 function(s)" in result.output
    # the called lines do not claim that eval mode or the spatial layer ran
    called = [line for line in result.output.splitlines() if line.startswith("called: ")]
    assert any(
        line.endswith("[per-activation, training and eval (not completed)]") for line in called
    )
    assert all("spatial, training (not completed) and eval (not completed)]" in line
               for line in called if line.startswith("called: spatial_")), called  # fmt: skip


def test_dying_in_the_first_section_is_one_error_for_the_file(tmp_path):
    result = check(write(tmp_path, train=EXIT))
    assert result.exit_code == 2, result.output
    assert "exited with code 7" in result.output
    assert "holds" not in result.output


def test_a_required_momentum_under_running_auto_prints_the_hint(tmp_path):
    path = write(tmp_path, momentum='bn_param["momentum"]')
    result = check(path)  # --running auto is the default
    assert result.exit_code == 2, result.output
    assert "KeyError: 'momentum'" in result.output
    assert HINT in " ".join(result.output.split())
    assert "holds" not in result.output
    assert "Traceback (most recent" not in result.output
    # declared conventions pass a momentum: no KeyError, no hint, and the file holds
    for convention in ("cs231n", "pytorch"):
        declared = check(path, "--running", convention, "--train")
        assert declared.exit_code in (0, 1), declared.output
        assert "KeyError" not in declared.output and "carries no momentum" not in declared.output
    assert check(path, "--running", "cs231n").exit_code == 0


def test_another_key_error_gets_no_momentum_hint(tmp_path):
    # the hint is for momentum only: a KeyError on another key of bn_param is reported as is
    path = write(tmp_path, momentum='bn_param["decay"]')
    result = check(path)
    assert result.exit_code == 2, result.output
    assert "KeyError: 'decay'" in result.output
    assert "carries no momentum" not in result.output
