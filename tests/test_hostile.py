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


#: A check that runs for a minute or two (four exact sizes near the cap, every built-in form), in
#: two forked workers whatever the cores (the default is one worker on one core).
LONG_CHECK = ["check", "--n", "1000-1003", "--method", "exact", "--mode", "per-activation"]
LONG_CHECK += ["--jobs", "2"]


def _group(pgid: int) -> list[int]:
    """The pids of the process group ``pgid`` (Linux /proc; the leader included)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # the process ended while the directory was read
            continue
        if int(fields[2]) == pgid:  # fields after "pid (comm)": state, ppid, pgrp
            members.append(int(stat.parent.name))
    return members


def _ignores_sigint(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = next(line for line in status.splitlines() if line.startswith("SigIgn:"))
    return bool(int(mask.split()[1], 16) & (1 << (signal.SIGINT - 1)))


def wait_for_workers(proc: subprocess.Popen, count: int = 2) -> None:
    """Wait until bnderive has forked its ``count`` workers and each has set itself up (it
    ignores SIGINT, ``plan._worker``): from then on bnderive is inside its command, past the
    imports and the handlers it installs.  A fixed sleep raced with them on a loaded machine (a
    signal during the import of SymPy is a traceback, one to a worker not yet set up too)."""
    deadline = time.monotonic() + HANG
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the check ended before it could be interrupted"
        workers = [pid for pid in _group(proc.pid) if pid != proc.pid]
        if len(workers) >= count and all(_ignores_sigint(pid) for pid in workers):
            return
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail(f"bnderive started no {count} workers within {HANG} s")


def _as_from_a_terminal() -> None:
    """Ctrl-C's default action in the child, as in a terminal's foreground job.  A test runner
    started in the background of a script (``cmd &`` without job control) ignores SIGINT, its
    children inherit that, and Python then never turns SIGINT into KeyboardInterrupt: bnderive
    would rightly ignore the Ctrl-C and the test would wait for it forever."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_exits_130_and_stops_the_workers():
    proc = subprocess.Popen(
        [sys.executable, "-m", "bnderive", *LONG_CHECK],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=_as_from_a_terminal,
    )
    wait_for_workers(proc)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the terminal's whole foreground group
    out, err = proc.communicate(timeout=HANG)
    assert proc.returncode == 130, err
    assert "Traceback" not in err.decode()
    assert_group_gone(proc.pid)


#: Ctrl-C in the instant between a worker's start and the pool's note of it (forced: the pool's
#: _spawn_process starts the second worker and is interrupted).  That worker was unknown to
#: ``plan._stop``, and Python's exit waited for it forever: the hang the test above met under load.
INTERRUPTED_START = """
import sys
import concurrent.futures.process as cfp
from bnderive.core.spec import Mode
from bnderive.read.catalogue import find_form
from bnderive.verify.check import check_forms

spawn, started = cfp.ProcessPoolExecutor._spawn_process, []


def interrupted(self):
    started.append(1)
    if len(started) < 2:
        return spawn(self)
    worker = self._mp_context.Process(
        target=cfp._process_worker,
        args=(self._call_queue, self._result_queue, self._initializer, self._initargs,
              self._max_tasks_per_child),
    )
    worker.start()
    raise KeyboardInterrupt


cfp.ProcessPoolExecutor._spawn_process = interrupted
try:
    forms = [find_form("staged"), find_form("compact")]
    check_forms(forms, (Mode.PER_ACTIVATION,), ("exact",), (30, 31, 32), jobs=2)
except KeyboardInterrupt:
    sys.exit(130)
"""


def test_ctrl_c_while_the_workers_start_stops_them_all(tmp_path):
    script = tmp_path / "interrupted_start.py"
    script.write_text(INTERRUPTED_START, encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        _, err = proc.communicate(timeout=HANG)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("bnderive waited forever for a worker it started as Ctrl-C came")
    assert proc.returncode == 130, err
    assert_group_gone(proc.pid)


#: Ctrl-C while bnderive starts (forced: SIGINT arrives as ``bnderive.cli`` and click are
#: imported, before any command runs).  It printed a traceback, or click's "Aborted!" with exit
#: code 1 ("refuted"); there is nothing to clean up yet, so the process ends at once with 130.
INTERRUPTED_IMPORT = """
import builtins, os, signal, sys
import bnderive.__main__

real_import = builtins.__import__


def interrupting_import(name, *args, **kwargs):
    if name == "bnderive.cli":
        os.kill(os.getpid(), signal.SIGINT)
    return real_import(name, *args, **kwargs)


builtins.__import__ = interrupting_import
sys.argv = ["bnderive", "check"]
bnderive.__main__.run()
"""


def test_ctrl_c_while_bnderive_starts_exits_130_quietly(tmp_path):
    script = tmp_path / "interrupted_import.py"
    script.write_text(INTERRUPTED_IMPORT, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        timeout=HANG,
        preexec_fn=_as_from_a_terminal,
    )
    assert proc.returncode == 130, proc.stderr
    assert proc.stdout == b"" and proc.stderr == b""


def test_ctrl_c_after_start_is_a_keyboard_interrupt_again(monkeypatch):
    """Once the command runs, Ctrl-C must unwind (workers stopped, files removed): the quiet
    start-up handler is replaced by Python's own before the command's code runs."""
    import bnderive.__main__ as entry
    from bnderive.cli import main as group

    seen = []

    def main(prog_name):
        group.main(["forms", "--help"], prog_name=prog_name, standalone_mode=False)
        seen.append(signal.getsignal(signal.SIGINT))

    monkeypatch.setattr("bnderive.cli.main", main)
    previous = signal.getsignal(signal.SIGINT)
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        entry.run()
        assert seen == [signal.default_int_handler]
    finally:
        signal.signal(signal.SIGINT, previous)


def test_sigterm_stops_the_workers_too():
    proc = subprocess.Popen(
        [sys.executable, "-m", "bnderive", *LONG_CHECK],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    wait_for_workers(proc)
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


# -- the table of hostile inputs ------------------------------------------------------------------------
#: The body of a form that holds: sum(g[k], k) is dβ.
GOOD = 'name = "ok"\n[[equations]]\ndefines = "dbeta"\nexpr = "sum(g[k], k)"\n'


def hostile_files(tmp_path: Path) -> None:
    """Every file a case names, written in tmp_path (FIFOs and symlinks too)."""
    write(tmp_path / "ok.toml", GOOD)
    write(tmp_path / "big.toml", GOOD + "# " + "x" * (1 << 20) + "\n")
    (tmp_path / "binary.toml").write_bytes(b'name = "x"\n\x00\x01\x02')
    (tmp_path / "latin1.md").write_bytes("$$ \\beta = 1 $$ caf\xe9\n".encode("latin-1"))
    (tmp_path / "folder.toml").mkdir()
    os.mkfifo(tmp_path / "fifo.toml")
    os.mkfifo(tmp_path / "fifo.md")
    (tmp_path / "zero.toml").symlink_to("/dev/zero")
    (tmp_path / "zero.md").symlink_to("/dev/zero")
    (tmp_path / "dangling.toml").symlink_to(tmp_path / "nowhere.toml")
    os.mkfifo(tmp_path / "fifo.py")
    (tmp_path / "zero.py").symlink_to("/dev/zero")
    write(tmp_path / "impl.py", "def bn_backward(x, gamma, beta, dout, eps):\n    return dout\n")
    pwned = tmp_path / "pwned"
    for name, expr in TOML_EXPRESSIONS.items():
        write(tmp_path / f"{name}.toml", form_text(expr.replace("{pwned}", str(pwned))))
    for name, text in FILES.items():
        write(tmp_path / name, text)
    for name, rhs in LATEX_RIGHT_SIDES.items():
        write(
            tmp_path / f"{name}.md", f"$$\n\\frac{{\\partial L}}{{\\partial \\beta}} = {rhs}\n$$\n"
        )


def form_text(expr: str, defines: str = "dbeta") -> str:
    return f'name = "h"\n[[equations]]\ndefines = "{defines}"\nexpr = {json.dumps(expr)}\n'


#: TOML form expressions, each written to NAME.toml ({pwned}: a file that must never appear).
TOML_EXPRESSIONS = {
    "power_tower": "0*10**10**10",
    "caret_tower": "0*10^10^10",
    "long_sum": "+".join(["g[1]"] * 5000),
    "minuses": "-" * 20000 + "g[1]",
    "parens": "(" * 200 + "g[1]" + ")" * 200,
    "signs": "-(" * 150 + "g[1]" + ")" * 150,
    "deep_sum": "+".join(["1"] * 1500),
    "huge_decimal": "1e-999999999*g[1]",
    "huge_integer": "1" * 100,
    "index_minus_one": "x[-1]",
    "index_half": "x[0.5]",
    "index_expression": "x[k+1]",
    "divide_by_zero": "sum(g[k], k)/0",
    "zero_power": "0**-1",
    "zoo": "zoo",
    "nan": "nan",
    "oo": "oo",
    "unbound_index": "x[j]",
    "import": "__import__('pathlib').Path('{pwned}').touch()",
    "lambda": "(lambda: __import__('os'))()",
    "attribute": "x.__class__",
    "string": "'text'",
    "comprehension": "[g[k] for k in (1, 2)]",
    "sqrt_of_minus_one": "sum(g[k], k) + sqrt(-1)",
    "degree": "(x[1] + g[1])**16 * (x[2] + g[2])**16 * x[3]",
}

#: Whole files: forms with bad keys or structure, derivations with bad front matter.
_SUM = "\\frac{\\partial L}{\\partial \\beta} = \\sum_i g_i"
FILES = {
    "unknown_key.toml": GOOD + "colour = 'red'\n",
    "unknown_convention.toml": GOOD.replace("[[equations]]", "[conventions]\nvaraince = 'unbiased'\n\n[[equations]]"),
    "unknown_equation_key.toml": GOOD + "note = 'x'\n",
    "many_equations.toml": 'name = "many"\n' + '[[equations]]\ndefines = "dbeta"\nexpr = "sum(g[k], k)"\n' * 201,
    "index_letter.toml": 'name = "k"\n[[equations]]\ndefines = "k"\nexpr = "1"\n' + GOOD.split("\n", 1)[1],
    "sources_table.toml": GOOD.replace('name = "ok"', 'name = "ok"\nsources = 3'),
    "helper_chain.toml": (
        'name = "chain"\n[[equations]]\ndefines = "h1[i]"\nexpr = "(x[i] + g[i])**8"\n'
        '[[equations]]\ndefines = "h2[i]"\nexpr = "h1[i]**8"\n'
    ),
    "unbiased.toml": GOOD.replace("[[equations]]", "[conventions]\nvariance = 'unbiased'\n\n[[equations]]"),
    "duplicate_key.md": f"---\nname: a\nname: b\n---\n$$\n{_SUM}\n$$\n",
    "duplicate_alias.md": f"---\nsource: a\nsources:\n  - b\n---\n$$\n{_SUM}\n$$\n",
    "duplicate_convention.md": f"---\nvariance: biased\nconventions:\n  variance: unbiased\n---\n$$\n{_SUM}\n$$\n",
    "duplicate_key.tex": f"% bnderive: mode: spatial\n% bnderive: mode: both\n\\[ {_SUM} \\]\n",
    "degree_chain.md": (
        "$$\n\\frac{\\partial L}{\\partial \\sigma^2} = (x_1 + g_1)^{16} \\\\\n"
        "\\frac{\\partial L}{\\partial \\mu} = \\left(\\frac{\\partial L}{\\partial \\sigma^2}\\right)^{16}\n$$\n"
    ),
}  # fmt: skip

#: Right sides of ∂L/∂β = …, each written to NAME.md.
LATEX_RIGHT_SIDES = {
    "tower": "10^{10^{10}}",
    "nested_powers": "((10^{9})^{9})^{9}",
    "latex_parens": "(" * 200 + "1" + ")" * 200,
    "latex_minuses": "-" * 20000 + "1",
    "latex_long_sum": "+".join(["g_1"] * 5000),
    "latex_big_number": "1" * 100,
    "latex_frac_zero": "\\frac{1}{0}",
    "latex_root_minus_one": "\\sqrt{-1}",
    "latex_degree": "(x_1+g_1)^{16} (x_2+g_2)^{16} x_3",
    "latex_markup": "\\sum_i g_i [/] [bold]",
}


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


#: (id, command line, exit code, what the message says, run in a child process).  {tmp} is the
#: case's directory.  "child" marks the inputs that used to hang or exhaust memory.
CASES: list[tuple[str, list[str], int, list[str], bool]] = [
    # -- sizes (item 5) --
    ("check --n 1000000", ["check", "--n", "1000000"], 2, ["above the cap of 1,024", "--method random"], True),
    ("check --n 1-100000000", ["check", "--n", "1-100000000"], 2, ["100,000,000", "above the cap of 4,096"], True),
    ("check --n 1024 in SPATIAL", ["check", "--n", "1024", "--mode", "spatial", "--method", "exact"], 2, ["spatial (1024, 1, 2, 2) is 4,096"], False),
    ("check --m 1e20", ["check", "--m", "1e20"], 2, ["Invalid value for '--m'"], False),
    ("check --m huge", ["check", "--m", "99999999999999999999", "--method", "random"], 2, ["above the cap of 65,536"], True),
    ("check --trials 1000", ["check", "--trials", "1000", "--method", "random"], 2, ["--trials is 1,000, above the cap of 100"], False),
    ("check --jobs 1000", ["check", "--jobs", "1000"], 2, ["--jobs is 1,000, above the cap of 16"], False),
    ("check --jobs 0", ["check", "--jobs", "0"], 2, ["Invalid value for '--jobs'"], False),
    ("check --shape 2,1000,2,2", ["check", "--shape", "2,1000,2,2"], 2, ["above the cap of 64"], False),
    ("check --shape -1,2", ["check", "--shape", "-1,2"], 2, ["must be at least 1"], False),
    ("derive --n 1000000", ["derive", "--n", "1000000"], 2, ["above the cap of 256", "--general"], True),
    ("derive --n huge", ["derive", "--n", "100000000000000000000000"], 2, ["above the cap of 1,000,000"], False),
    ("derive --w 1000 spatial", ["derive", "--mode", "spatial", "--w", "1000"], 2, ["above the cap of 256"], False),
    ("explain --n 1e8", ["explain", "--n", "100000000"], 2, ["above the cap of 1,000,000"], True),
    ("explain --n 5000", ["explain", "--n", "5000"], 2, ["above the cap of 4,096"], False),
    ("explain --c 1000", ["explain", "--c", "1000"], 2, ["above the cap of 64"], False),
    ("explain --n 256 --c 64", ["explain", "--n", "256", "--c", "64"], 2, ["N·C·H·W for explain is 16,384", "above the cap of 8,192"], False),
    ("explain --eps 1e-999999999", ["explain", "--eps", "1e-999999999"], 2, ["decimal exponent", "above the cap of 30"], True),
    ("explain --eps nan", ["explain", "--eps", "nan"], 2, ["not a finite number"], False),
    ("explain --gamma inf", ["explain", "--gamma", "inf"], 2, ["not a finite number"], False),
    ("explain --eps -1", ["explain", "--eps", "-1"], 2, ["must be positive"], False),
    ("explain --x-mean with 50 digits", ["explain", "--x-mean", "1" * 50], 2, ["above the cap of 40"], False),
    ("explain --rtol 1/0", ["explain", "--rtol", "1/0"], 2, ["divides by zero"], False),
    ("explain --seed -1", ["explain", "--seed", "-1"], 2, ["--seed -1"], False),
    ("explain --timeout nan", ["explain", "{tmp}/impl.py", "--timeout", "nan"], 2, ["--timeout"], False),
    ("bench --shape 100000,100000", ["bench", "--shape", "100000,100000"], 2, ["10,000,000,000", "above the cap of 2^25"], True),
    ("bench --repeats 10^6", ["bench", "--repeats", "1000000"], 2, ["above the cap of 1,000"], False),
    ("check-impl --memory 99999999999999", ["check-impl", "{tmp}/impl.py", "--memory", "99999999999999"], 2, ["--memory"], False),
    ("check-impl --timeout nan", ["check-impl", "{tmp}/impl.py", "--timeout", "nan"], 2, ["--timeout"], False),
    # -- conflicting options (item 10) --
    ("--all-n with --method exact", ["check", "--all-n", "--method", "exact"], 2, ["contradicts --method exact"], False),
    ("--n with --method random", ["check", "--n", "4", "--method", "random"], 2, ["--n sets the sizes of the exact method"], False),
    ("--n with --shape", ["check", "--n", "4", "--shape", "2,2"], 2, ["give one of them"], False),
    ("--trials with --method general", ["check", "--trials", "5", "--method", "general"], 2, ["--trials sets the randomized method"], False),
    ("--order with a named form", ["check", "staged", "--order", "2"], 2, ["leave --order out"], False),
    ("derive --c with --d", ["derive", "--c", "2", "--d", "3"], 2, ["--c and --d"], False),
    # -- files (item 6) --
    ("check --form FIFO", ["check", "--form", "{tmp}/fifo.toml"], 2, ["is a FIFO (named pipe), not a regular file"], True),
    ("check FIFO derivation", ["check", "{tmp}/fifo.md"], 2, ["is a FIFO"], True),
    ("parse FIFO", ["parse", "{tmp}/fifo.md"], 2, ["is a FIFO"], True),
    ("emit --form FIFO", ["emit", "--form", "{tmp}/fifo.toml"], 2, ["is a FIFO"], True),
    ("check --form /dev/zero", ["check", "--form", "/dev/zero"], 2, ["is a character device"], True),
    ("check --form symlink to /dev/zero", ["check", "--form", "{tmp}/zero.toml"], 2, ["character device (through a symlink)"], True),
    ("parse symlink to /dev/zero", ["parse", "{tmp}/zero.md"], 2, ["character device (through a symlink)"], True),
    ("check --form /dev/urandom", ["check", "--form", "/dev/urandom"], 2, ["is a character device"], True),
    ("explain --against a FIFO", ["explain", "{tmp}/impl.py", "--against", "{tmp}/fifo.toml"], 2, ["is a FIFO"], True),
    ("check-impl a FIFO", ["check-impl", "{tmp}/fifo.py"], 2, ["not a regular file"], True),
    ("check-impl a symlink to /dev/zero", ["check-impl", "{tmp}/zero.py"], 2, ["not a regular file"], True),
    ("explain FILE a FIFO", ["explain", "{tmp}/fifo.py"], 2, ["is a FIFO"], True),
    ("a 1 MiB form", ["check", "--form", "{tmp}/big.toml"], 2, ["above the cap of 1 MiB"], False),
    ("a directory", ["check", "--form", "{tmp}/folder.toml"], 2, ["is a directory"], False),
    ("a dangling symlink", ["check", "--form", "{tmp}/dangling.toml"], 2, ["no such file"], False),
    ("a binary form", ["check", "--form", "{tmp}/binary.toml"], 2, ["line 2: a binary file (it has NUL bytes)"], False),
    ("a Latin-1 derivation", ["check", "{tmp}/latin1.md"], 2, ["line 1: not UTF-8 text"], False),
    # -- TOML expressions: huge, deep, malformed, executable (items 7, 8, 9) --
    ("TOML 0*10**10**10", ["check", "--form", "{tmp}/power_tower.toml"], 2, ["10**10**10", "above the cap of 16"], True),
    ("TOML 0*10^10^10", ["check", "--form", "{tmp}/caret_tower.toml"], 2, ["above the cap of 16"], True),
    ("TOML 5000-term sum", ["check", "--form", "{tmp}/long_sum.toml"], 2, ["length in characters is 24,999"], False),
    ("TOML 20000 unary minuses", ["check", "--form", "{tmp}/minuses.toml"], 2, ["above the cap of 4,000"], False),
    ("TOML 200 nested parentheses", ["check", "--form", "{tmp}/parens.toml"], 2, ["too many nested parentheses"], False),
    ("TOML 150 nested signs", ["check", "--form", "{tmp}/signs.toml"], 2, ["nesting depth", "above the cap of 100"], False),
    ("TOML 1500-term sum", ["check", "--form", "{tmp}/deep_sum.toml"], 2, ["above the cap of"], False),
    ("TOML 1e-999999999", ["check", "--form", "{tmp}/huge_decimal.toml"], 2, ["decimal exponent", "above the cap of 30"], True),
    ("TOML 100-digit integer", ["check", "--form", "{tmp}/huge_integer.toml"], 2, ["above the cap of 40"], False),
    ("TOML x[-1]", ["check", "--form", "{tmp}/index_minus_one.toml"], 2, ["x[-1]", "an element index is one of the letters"], False),
    ("TOML x[0.5]", ["check", "--form", "{tmp}/index_half.toml"], 2, ["x[0.5]"], False),
    ("TOML x[k+1]", ["check", "--form", "{tmp}/index_expression.toml"], 2, ["x[k+1] in"], False),
    ("TOML /0", ["check", "--form", "{tmp}/divide_by_zero.toml"], 2, ["divides by zero"], False),
    ("TOML 0**-1", ["check", "--form", "{tmp}/zero_power.toml"], 2, ["divides by zero"], False),
    ("TOML zoo", ["check", "--form", "{tmp}/zoo.toml"], 2, ["unknown name(s) zoo"], False),
    ("TOML nan", ["check", "--form", "{tmp}/nan.toml"], 2, ["unknown name(s) nan"], False),
    ("TOML oo", ["check", "--form", "{tmp}/oo.toml"], 2, ["unknown name(s) oo"], False),
    ("TOML unbound index", ["check", "--form", "{tmp}/unbound_index.toml"], 2, ["the index j", "neither summed over"], False),
    ("TOML __import__", ["check", "--form", "{tmp}/import.toml"], 2, ["unknown function"], True),
    ("TOML lambda", ["check", "--form", "{tmp}/lambda.toml"], 2, ["unknown function"], False),
    ("TOML attribute access", ["check", "--form", "{tmp}/attribute.toml"], 2, ["Attribute is not allowed"], False),
    ("TOML string constant", ["check", "--form", "{tmp}/string.toml"], 2, ["is not a number"], False),
    ("TOML comprehension", ["check", "--form", "{tmp}/comprehension.toml"], 2, ["ListComp is not allowed"], False),
    ("TOML sqrt(-1)", ["check", "--form", "{tmp}/sqrt_of_minus_one.toml"], 2, ["imaginary unit"], False),
    ("TOML degree 33", ["check", "--form", "{tmp}/degree.toml"], 2, ["degree", "above the cap of 32"], False),
    ("TOML helper chain", ["check", "--form", "{tmp}/helper_chain.toml"], 2, ["with the lines before it", "is 64, above the cap of 32"], False),
    ("emit a TOML power tower", ["emit", "--form", "{tmp}/power_tower.toml"], 2, ["above the cap of 16"], True),
    # -- TOML structure (item 10) --
    ("TOML unknown key", ["check", "--form", "{tmp}/unknown_key.toml"], 2, ["unknown key 'colour'"], False),
    ("TOML unknown convention", ["check", "--form", "{tmp}/unknown_convention.toml"], 2, ["unknown convention 'varaince'"], False),
    ("TOML unknown equation key", ["check", "--form", "{tmp}/unknown_equation_key.toml"], 2, ["unknown key 'note'"], False),
    ("TOML 201 equations", ["check", "--form", "{tmp}/many_equations.toml"], 2, ["201, above the cap of 200"], False),
    ("TOML defines an index letter", ["check", "--form", "{tmp}/index_letter.toml"], 2, ["an index letter"], False),
    ("TOML sources = 3", ["check", "--form", "{tmp}/sources_table.toml"], 2, ["sources must be a list of strings"], False),
    ("unbiased form at --n 1", ["check", "--form", "{tmp}/unbiased.toml", "--method", "exact", "--n", "1"], 3, ["Bessel's variance divides by M − 1 = 0", "--n 2-6"], False),
    # -- LaTeX (items 7, 8) --
    ("LaTeX 10^{10^{10}}", ["check", "{tmp}/tower.md"], 2, ["above the cap of 16"], True),
    ("LaTeX ((10^9)^9)^9", ["check", "{tmp}/nested_powers.md"], 2, ["more than 100 digits"], True),
    ("LaTeX 200 nested parentheses", ["check", "{tmp}/latex_parens.md"], 2, ["nesting depth", "above the cap of 150"], False),
    ("LaTeX 20000 unary minuses", ["check", "{tmp}/latex_minuses.md"], 2, ["nesting depth"], False),
    ("LaTeX 5000-term sum", ["check", "{tmp}/latex_long_sum.md"], 2, ["tokens on one line"], False),
    ("LaTeX 100-digit number", ["check", "{tmp}/latex_big_number.md"], 2, ["above the cap of 40"], False),
    ("LaTeX \\frac{1}{0}", ["check", "{tmp}/latex_frac_zero.md"], 2, ["division by zero"], False),
    ("LaTeX \\sqrt{-1}", ["check", "{tmp}/latex_root_minus_one.md"], 2, ["imaginary unit"], False),
    ("LaTeX degree 33", ["check", "{tmp}/latex_degree.md"], 2, ["above the cap of 32"], False),
    ("LaTeX degree through earlier lines", ["check", "{tmp}/degree_chain.md"], 2, ["with the lines before it"], True),
    ("parse --expr 10^{10^{10}}", ["parse", "--expr", "10^{10^{10}}"], 2, ["above the cap of 16"], True),
    ("check --expr with 200 parentheses", ["check", "--expr", "\\beta = " + "(" * 200 + "1" + ")" * 200], 2, ["nesting depth"], False),
    # -- front matter (item 10) --
    ("duplicate front-matter key", ["check", "{tmp}/duplicate_key.md"], 2, ["'name' is given twice (first on line 2)"], False),
    ("source and sources", ["check", "{tmp}/duplicate_alias.md"], 2, ["given twice", "which means the same"], False),
    ("a convention twice", ["check", "{tmp}/duplicate_convention.md"], 2, ["'variance' is given twice"], False),
    ("duplicate TeX header key", ["check", "{tmp}/duplicate_key.tex"], 2, ["'mode' is given twice"], False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "code", "messages", "in_child"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_hostile_input(tmp_path, args, code, messages, in_child):
    hostile_files(tmp_path)
    before = snapshot(tmp_path)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if in_child:
        got = child(*args, cwd=workdir)
    else:
        got = cli(*args)
    assert_clean_error(*got, code, *messages)
    assert not any(workdir.iterdir()), "nothing is written where bnderive runs"
    assert snapshot(tmp_path) == before | {"cwd"}, "nothing is written next to the inputs"


def test_at_least_fifty_hostile_inputs():
    assert len({c[0] for c in CASES}) == len(CASES) >= 50


def test_a_form_file_never_runs_its_text(tmp_path):
    """The import payload's file is not created, whatever the exit code says."""
    hostile_files(tmp_path)
    cli("check", "--form", str(tmp_path / "import.toml"))
    cli("emit", "--form", str(tmp_path / "import.toml"))
    assert not (tmp_path / "pwned").exists()


def test_markup_in_a_derivation_is_shown_as_text(tmp_path):
    hostile_files(tmp_path)
    code, out, err = cli("check", str(tmp_path / "latex_markup.md"), "--method", "exact")
    assert "Traceback" not in out + err and "bnderive failed" not in out + err
    assert code in (1, 2)


def test_check_expr_from_an_endless_stdin_is_bounded():
    with open("/dev/zero", "rb") as zero:
        proc = subprocess.run(
            [sys.executable, "-m", "bnderive", "check", "--expr", "-"],
            stdin=zero,
            capture_output=True,
            timeout=HANG,
        )
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert "above the cap of 1 MiB" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("exponent", "said"),
    [
        ("x^{100}", "the exponent is 100, above the cap of 16"),
        ("x^{1/100}", "the denominator of the exponent 1/100 is 100, above the cap of 16"),
        ("x^{100/3}", "the numerator of the exponent 100/3 is 100, above the cap of 16"),
    ],
)
def test_a_refused_exponent_says_which_part_is_too_large(exponent, said):
    """'the exponent's size is 1/100, above the cap of 16' read as if 1/100 were above 16."""
    result = CliRunner().invoke(main, ["parse", "--expr", exponent])
    assert result.exit_code == 2
    assert said in result.output
