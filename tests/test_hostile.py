"""Hostile and huge input (issue 10): nothing executes, nothing hangs, nothing escapes as a
traceback, and every exit code means what DESIGN.md §6 says.

Each case writes its own files in tmp_path.  A case gets the honest exit code (2 for input that
cannot be used; 1 or 3 where that is the verdict), a message, no traceback, no file written
outside tmp_path, no process left running, within seconds.  Inputs that used to hang (huge
powers, huge sizes, FIFOs, /dev/zero) run in a child process with a timeout and in their own
process group, so that a regression fails here instead of hanging CI; the rest run in-process
through click's CliRunner.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from bnderive.cli import main

ENV = {"COLUMNS": "120", "FORCE_COLOR": None, "TERM": "dumb", "NO_COLOR": "1"}
#: A child that runs longer than this has hung: the caps say "before any work starts".
HANG = 60


def cli(*args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of bnderive in-process."""
    result = CliRunner().invoke(main, list(args), env=ENV)
    return result.exit_code, result.stdout, result.stderr


def child(*args: str, cwd: Path | None = None, timeout: float = HANG) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``python -m bnderive`` in its own process group; on a
    timeout the whole group is killed and the test fails."""
    env = {**os.environ, "COLUMNS": "120", "TERM": "dumb", "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bnderive", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"bnderive {' '.join(args)} did not finish within {timeout} s")
    assert_group_gone(proc.pid)
    return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def assert_group_gone(pgid: int) -> None:
    """No process of bnderive's group is left (workers, children of check-impl)."""
    for _ in range(50):
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.killpg(pgid, signal.SIGKILL)
    pytest.fail("a process of bnderive's group was still running after it exited")


def assert_clean_error(code: int, out: str, err: str, want: int = 2, *messages: str) -> None:
    text = out + err
    assert code == want, text
    assert "Traceback" not in text
    assert 'File "' not in text
    for message in messages:
        assert message in text, (message, text)


# -- exit codes and the shared error handling (item 9) ------------------------------------------------
@pytest.fixture
def broken_library(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug inside the library: find_form raises something that is not a BnderiveError."""

    def bug(name: str) -> None:
        raise ZeroDivisionError("a bug planted by the test")

    monkeypatch.setattr("bnderive.read.catalogue.find_form", bug)


def test_an_internal_error_exits_4_asking_for_a_bug_report(broken_library):
    code, out, err = cli("forms", "staged")
    assert_clean_error(code, out, err, 4, "bnderive failed: ZeroDivisionError", "report", "--debug")


def test_debug_prints_the_traceback_of_an_internal_error(broken_library):
    code, out, err = cli("--debug", "forms", "staged")
    assert code == 4
    assert "Traceback" in err and "a bug planted by the test" in err


def test_an_internal_error_with_json_is_a_json_object(broken_library):
    code, out, err = cli("check", "staged", "--json")
    assert code == 4
    payload = json.loads(out)
    assert payload["status"] == "error" and payload["exit_code"] == 4
    assert "bnderive failed" in payload["message"]


@pytest.mark.parametrize(
    "args",
    [
        ["check", "--json", "--form", "{tmp}/missing.toml"],
        ["check", "--json", "--m", "abc"],
        ["check", "nosuchform", "--json"],
        ["explain", "--json", "--eps", "nan"],
    ],
    ids=["missing file", "usage error", "unknown form", "bad number"],
)
def test_bad_input_with_json_is_a_json_object_on_stdout(tmp_path, args):
    code, out, err = cli(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert code == 2
    payload = json.loads(out)
    assert payload["status"] == "error" and payload["exit_code"] == 2 and payload["message"]
    assert "Traceback" not in out + err


def test_a_closed_pipe_exits_141_quietly():
    proc = subprocess.Popen(
        [sys.executable, "-m", "bnderive", "mutants"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stdout is not None
    proc.stdout.close()  # the reader is gone before the first write, as with `| head -c 0`
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert proc.wait(timeout=HANG) == 141, err
    assert err == ""


def test_ctrl_c_exits_130_and_stops_the_workers():
    proc = subprocess.Popen(
        [sys.executable, "-m", "bnderive", "check", "--n", "1-64", "--method", "exact"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    time.sleep(4)  # sympy imported, the workers forked
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the terminal's whole foreground group
    out, err = proc.communicate(timeout=HANG)
    assert proc.returncode == 130, err
    assert "Traceback" not in err.decode()
    assert_group_gone(proc.pid)


def test_sigterm_stops_the_workers_too():
    proc = subprocess.Popen(
        [sys.executable, "-m", "bnderive", "check", "--n", "1-64", "--method", "exact"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    time.sleep(4)
    proc.send_signal(signal.SIGTERM)  # to bnderive alone, not its group
    proc.communicate(timeout=HANG)
    assert proc.returncode == 143
    assert_group_gone(proc.pid)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_output_to_a_full_device_is_a_message_not_a_traceback():
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "bnderive", "forms"],
            stdout=full,
            stderr=subprocess.PIPE,
            timeout=HANG,
        )
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert "cannot write the output (No space left on device)" in err
    assert "Traceback" not in err and "Exception ignored" not in err


# -- markup and terminal escapes (item 8) ---------------------------------------------------------------
def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


FORM = """name = {name}
[[equations]]
defines = "dbeta"
expr = {expr}
"""


def form_file(tmp_path: Path, expr: str, name: str = '"h"', file: str = "h.toml") -> Path:
    return write(tmp_path / file, FORM.format(name=name, expr=json.dumps(expr)))


@pytest.mark.parametrize(
    "name",
    ['"a[/]b"', '"[bold red]X[/]"', '"x\\u001b[31mred\\u001b]0;title\\u0007"', '"a\\rb\\u202e"'],
    ids=["closing tag", "markup", "terminal escapes", "carriage return and bidi override"],
)
def test_a_form_name_is_printed_as_text(tmp_path, name):
    path = form_file(tmp_path, "sum(g[k], k)", name=name)
    code, out, err = cli("check", "--form", str(path), "--method", "exact", "--n", "2")
    assert code == 0, out + err
    assert "\x1b" not in out and "\r" not in out and "\u202e" not in out and "\x07" not in out
    if "[" in name and "\\u" not in name:
        assert json.loads(name) in out  # shown as written, not read as markup
