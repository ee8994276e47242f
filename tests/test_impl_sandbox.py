"""The sandbox of check-impl: the user's code cannot forge the verdict, and leaves nothing behind.

Each forgery test takes a backward that is WRONG (dx without γ, refuted exactly when honest) and
adds one attack written as a hostile user would: patching the child's functions so that the
backward's values are dropped or marked skipped, writing a result file, printing fake JSON,
exiting early, returning malformed values, monkeypatching NumPy, Fraction or the exact number
type, writing frames into the child's channel.  Each must end in exit code 2 ("could not be
checked", with a message) or the honest verdict, exit 1: never "holds" (exit 0).

The runaway tests start real processes: a double fork into a new session, a grandchild that
kills the supervisor first, a file that loops while bnderive gets SIGTERM, SIGINT or SIGKILL.
Afterwards no process of the file may be alive and no temporary directory may be left.
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
from bnderive.usercode.check_impl import check_impl
from bnderive.usercode.layout import ImplementationError
from bnderive.usercode.sandbox import MAX_MEMORY_MB, MAX_TIMEOUT, Sandbox, SandboxFailure
from bnderive.verify.verdict import Status

ENV = {"COLUMNS": "200", "FORCE_COLOR": None, "TERM": "dumb", "NO_COLOR": "1"}

WRONG = """
import numpy as np


def bn_backward(x, gamma, beta, dout, eps):
    n = x.shape[0]
    mu = x.mean(axis=0)
    xc = x - mu
    var = (xc * xc).mean(axis=0)
    istd = 1 / np.sqrt(var + eps)
    xhat = xc * istd
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dx = istd / n * (n * dout - dbeta - xhat * dgamma)  # γ missing
    return dx, dgamma, dbeta
"""

RIGHT = WRONG.replace("dx = istd / n", "dx = gamma * istd / n").replace("  # γ missing", "")


def run(path: Path, *args: str):
    return CliRunner().invoke(main, ["check-impl", str(path), *args], env=ENV)


def write(tmp_path: Path, text: str, name: str = "impl.py") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_the_wrong_backward_is_refuted_when_nothing_is_attacked(tmp_path):
    result = run(write(tmp_path, WRONG))
    assert result.exit_code == 1, result.output
    assert run(write(tmp_path, RIGHT, "right.py")).exit_code == 0


# -- forgery: one test per route ---------------------------------------------------------------------
PATCH_ANSWER = """
import sys
_server = sys.modules["__main__"].Server
_answer = _server.answer


def _forged(self, request, out, err):
    answer = _answer(self, request, out, err)
    {body}
    return answer


_server.answer = _forged
"""

FORGERIES = {
    # the child's own functions patched: the backward's values dropped from the answer
    "drop the backward": (
        PATCH_ANSWER.format(
            body='answer["results"] = [r for r in answer["results"] if r[0] != "result"]'
        ),
        2,
    ),
    # ... or the backward "marked skipped", as the old child's result file allowed
    "mark it skipped": (
        PATCH_ANSWER.format(
            body='answer["backward_skipped"] = True; answer["skipped"] = ["bn_backward"]'
        ),
        2,
    ),
    # ... or its error turned into silence
    "an empty answer": (PATCH_ANSWER.format(body='answer["results"] = []'), 2),
    # ... or a value of another label put in its place
    "a value relabelled": (
        PATCH_ANSWER.format(
            body='answer["results"] = [["forward", r[1]] for r in answer["results"]]'
        ),
        2,
    ),
    # a result file in the working directory, as the old parent read it
    "its own result file": (
        'import json\nfor name in ("result.json", "job.json"):\n'
        '    open(name, "w").write(json.dumps({"ok": True, "cases": [], "calls": {}}))\n',
        1,
    ),
    # fake JSON on stdout and stderr
    "fake JSON printed": (
        'import json, sys\nprint(json.dumps({"ok": True, "status": "holds", "results": []}))\n'
        'sys.__stdout__.write(\'{"id": 1, "results": []}\\n\')\n',
        1,
    ),
    # exits before answering, at import and in the backward
    "os._exit(0) at import": ("import os\nos._exit(0)\n", 2),
    "sys.exit(0) in the backward": (
        "import sys\n_real = None\n",
        2,
    ),
    # NumPy, Fraction and the exact number type changed in the child: the parent compares
    "numpy patched": (
        "import numpy as _np\n_np.allclose = lambda *a, **k: True\n"
        "_np.array_equal = lambda *a, **k: True\n_np.isclose = lambda *a, **k: True\n",
        1,
    ),
    "Fraction patched": (
        "import fractions\nfractions.Fraction.__eq__ = lambda self, other: True\n"
        "fractions.Fraction.__ne__ = lambda self, other: False\n",
        1,
    ),
    "Exact patched": (
        'import sys\n_exact = sys.modules["bnderive_exact_number"].Exact\n'
        "_exact.__eq__ = lambda self, other: True\n_exact.__ne__ = lambda self, other: False\n",
        1,
    ),
    "json patched": (
        'import json\njson.dumps = lambda *a, **k: \'{"id": 1, "results": [], "error": null}\'\n'
        "json.loads = lambda *a, **k: {}\n",
        1,
    ),
    # frames written straight into every pipe the child holds
    "frames written into the channel": (
        "import os, stat\n"
        '_frame = b\'{"id": 2, "results": [], "error": null, "stdout": "", \''
        'b\'"stderr": "", "conversions": {}}\'\n'
        "for _fd in range(3, 64):\n"
        "    try:\n"
        "        if stat.S_ISFIFO(os.fstat(_fd).st_mode):\n"
        "            os.write(_fd, b'%010d' % len(_frame) + _frame)\n"
        "    except OSError:\n"
        "        pass\n",
        2,
    ),
    # the channel closed under the worker
    "the channel closed": (
        "import os, stat\n"
        "for _fd in range(3, 64):\n"
        "    try:\n"
        "        if stat.S_ISFIFO(os.fstat(_fd).st_mode):\n"
        "            os.close(_fd)\n"
        "    except OSError:\n"
        "        pass\n",
        2,
    ),
    # the child's frame writer replaced: nothing ever arrives
    "the frame writer replaced": (
        'import sys\n_main = sys.modules["__main__"]\n'
        "_main.write_frame = lambda *a, **k: None\n_main.read_exactly = lambda *a, **k: None\n",
        1,
    ),
}


@pytest.mark.parametrize("route", list(FORGERIES))
def test_a_forgery_never_buys_holds(tmp_path, route):
    attack, expected = FORGERIES[route]
    text = attack + WRONG
    if route == "sys.exit(0) in the backward":
        text = WRONG.replace("    return dx, dgamma, dbeta", "    import sys\n    sys.exit(0)")
    result = run(write(tmp_path, text), "--timeout", "10")
    assert result.exit_code == expected, result.output
    assert "Traceback" not in result.output
    if expected == 2:
        assert result.output.startswith("Error: ")
    else:
        payload = run(write(tmp_path, text), "--json", "--timeout", "10")
        rows = {v["quantity"]: v["status"] for v in json.loads(payload.output)["verdicts"]}
        assert rows["dx"] == "refuted" and rows["dgamma"] == "holds"


def test_the_patched_answer_is_named_as_such(tmp_path):
    attack = FORGERIES["drop the backward"][0]
    result = run(write(tmp_path, attack + WRONG))
    assert "answered something bnderive did not ask for" in result.output
    assert "cannot be checked" in result.output


MALFORMED = {
    "a dict": ("{'dx': dx}", "must return (dx, dgamma, dbeta), a tuple of 3; it returned dict"),
    "strings": ("('dx', 'dgamma', 'dbeta')", "returned dx as a str, not an array of numbers"),
    "Nones": ("(None, None, None)", "returned dx as None, not an array of numbers"),
    "an object": ("(object(), dgamma, dbeta)", "returned dx as a object, not an array"),
    "a huge array": ("(np.zeros(2_000_000), dgamma, dbeta)", "not an array of numbers"),
    "ragged lists": ("([[1.0], [1.0, 2.0]], dgamma, dbeta)", "not an array of numbers"),
    "complex numbers": ("(dx + 0j, dgamma, dbeta)", "not an array of numbers"),
    "strings in an array": ("(dx.astype(str), dgamma, dbeta)", "not an array of numbers"),
    "nested deep": ("((((((dx,),),),),), dgamma, dbeta)", "not an array of numbers"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_results_are_could_not_check(tmp_path, case):
    value, message = MALFORMED[case]
    text = WRONG.replace("return dx, dgamma, dbeta", f"return {value}")
    result = run(write(tmp_path, text))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert message in result.output


def test_a_raising_array_conversion_is_could_not_check(tmp_path):
    text = WRONG.replace(
        "return dx, dgamma, dbeta",
        "class Odd:\n        def __array__(self, *a, **k):\n            raise KeyError('no')\n"
        "    return Odd(), dgamma, dbeta",
    )
    result = run(write(tmp_path, text))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


# -- the channel, directly ---------------------------------------------------------------------------
def test_an_answer_must_carry_exactly_what_was_asked(tmp_path):
    path = write(tmp_path, RIGHT)
    with Sandbox(10, 2048) as box:
        box.request([{"op": "load", "file": str(path)}], [])
        steps = [{"op": "let", "name": "a", "value": {"lit": 3}},
                 {"op": "send", "label": "a", "value": {"var": "a"}}]  # fmt: skip
        assert box.request(steps, ["a"]).values["a"].value == 3
        with pytest.raises(SandboxFailure) as failure:
            box.request(steps, ["a", "b"])  # a value asked for is missing
        assert failure.value.kind == "channel"
    assert box.closed and not os.path.exists(box.workdir)


# -- runaway children ---------------------------------------------------------------------------------
def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in (b"Z", b"X")


def wait_for_pids(path: Path, count: int, seconds: float = 20.0) -> list[int]:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if path.exists():
            pids = [int(p) for p in path.read_text().split()]
            if len(pids) >= count:
                return pids
        time.sleep(0.05)
    raise AssertionError(f"the user's file did not report {count} pid(s)")


def all_dead(pids: list[int], seconds: float = 5.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


DOUBLE_FORK = """
import os, time
_pidfile = os.environ["BND_PIDFILE"]
if os.fork() == 0:
    {setsid}
    if os.fork() == 0:
        with open(_pidfile, "a") as f:
            f.write(f"{{os.getpid()}}\\n")
        time.sleep(120)
        os._exit(0)
    os._exit(0)
time.sleep(0.3)
"""


@pytest.mark.parametrize("setsid", ["os.setsid()", "pass"], ids=["new session", "same session"])
def test_a_double_fork_is_killed(tmp_path, monkeypatch, setsid):
    pidfile = tmp_path / "pids"
    monkeypatch.setenv("BND_PIDFILE", str(pidfile))
    path = write(tmp_path, DOUBLE_FORK.format(setsid=setsid) + RIGHT)
    report = check_impl(path)
    assert {v.status for v in report.verdicts} == {Status.HOLDS}
    pids = wait_for_pids(pidfile, 1)
    assert all_dead(pids), pids


KILLS_SUPERVISOR = """
import os, signal, time
_pidfile = os.environ["BND_PIDFILE"]
_supervisor = os.getppid()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        with open(_pidfile, "a") as f:
            f.write(f"{os.getpid()}\\n")
        os.kill(_supervisor, signal.SIGKILL)
        time.sleep(120)
        os._exit(0)
    os._exit(0)
time.sleep(5)
"""


def test_a_grandchild_that_kills_the_supervisor_is_still_killed(tmp_path, monkeypatch):
    pidfile = tmp_path / "pids"
    monkeypatch.setenv("BND_PIDFILE", str(pidfile))
    path = write(tmp_path, KILLS_SUPERVISOR + RIGHT)
    with pytest.raises(ImplementationError) as failure:
        check_impl(path, timeout=10)
    assert "before answering" in str(failure.value)
    pids = wait_for_pids(pidfile, 1)
    assert all_dead(pids), pids


LOOPS = """
import os
with open(os.environ["BND_PIDFILE"], "a") as f:
    f.write(f"{os.getpid()}\\n")


def bn_backward(x, gamma, beta, dout, eps):
    while True:
        pass
"""


def bnderive(args: list[str], tmp_path: Path, pidfile: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, BND_PIDFILE=str(pidfile), TMPDIR=str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "bnderive", "check-impl", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)]
)
def test_a_signal_to_bnderive_kills_the_child_and_removes_its_directory(tmp_path, signum, code):
    pidfile = tmp_path / "pids"
    path = write(tmp_path, LOOPS)
    proc = bnderive([str(path), "--timeout", "120"], tmp_path, pidfile)
    try:
        pids = wait_for_pids(pidfile, 1)
        assert list((tmp_path / "tmp").iterdir())  # the child's directory exists
        proc.send_signal(signum)
        proc.wait(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == code
    assert all_dead(pids), pids
    assert list((tmp_path / "tmp").iterdir()) == []


def test_bnderive_killed_outright_still_takes_its_child_along(tmp_path):
    # SIGKILL cannot be handled: the kernel tells the supervisor (PR_SET_PDEATHSIG), which
    # kills the tree and removes the directory.
    pidfile = tmp_path / "pids"
    path = write(tmp_path, LOOPS)
    proc = bnderive([str(path), "--timeout", "120"], tmp_path, pidfile)
    try:
        pids = wait_for_pids(pidfile, 1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=20)
    finally:
        proc.kill()
    assert all_dead(pids, 10), pids
    end = time.monotonic() + 10
    while list((tmp_path / "tmp").iterdir()) and time.monotonic() < end:
        time.sleep(0.05)
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_timeout_kills_the_child_and_removes_its_directory(tmp_path, monkeypatch):
    pidfile = tmp_path / "pids"
    monkeypatch.setenv("BND_PIDFILE", str(pidfile))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    path = write(tmp_path, LOOPS)
    result = run(path, "--timeout", "1")
    assert result.exit_code == 2 and "did not finish within 1 s" in result.output
    assert all_dead(wait_for_pids(pidfile, 1))
    assert list((tmp_path / "tmp").iterdir()) == []


def test_the_worker_runs_under_cpu_memory_and_file_size_limits(tmp_path, monkeypatch):
    pidfile = tmp_path / "limits"
    monkeypatch.setenv("BND_PIDFILE", str(pidfile))
    text = (
        "import os, resource\n"
        "with open(os.environ['BND_PIDFILE'], 'w') as f:\n"
        "    for r in ('RLIMIT_CPU', 'RLIMIT_AS', 'RLIMIT_FSIZE', 'RLIMIT_CORE'):\n"
        "        f.write(f'{r} {resource.getrlimit(getattr(resource, r))[0]}\\n')\n"
    ) + RIGHT
    report = check_impl(write(tmp_path, text), timeout=7, memory_mb=1024)
    assert {v.status for v in report.verdicts} == {Status.HOLDS}
    limits = dict(line.split() for line in pidfile.read_text().splitlines())
    assert limits == {
        "RLIMIT_CPU": "8",
        "RLIMIT_AS": str(1024 * 1024 * 1024),
        "RLIMIT_FSIZE": str(16_000_000),
        "RLIMIT_CORE": "0",
    }


def test_a_cpu_bound_grandchild_hits_its_cpu_limit(tmp_path):
    # the CPU limit is inherited: a forked child that spins is stopped by SIGXCPU on its own
    text = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    while True:\n"
        "        pass\n"
        "def bn_backward(x, gamma, beta, dout, eps):\n"
        "    while True:\n"
        "        pass\n"
    )
    result = run(write(tmp_path, text), "--timeout", "1")
    assert result.exit_code == 2, result.output


# -- the options ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--timeout", "nan", "--timeout nan is not usable"),
        ("--timeout", "inf", "--timeout inf is not usable"),
        ("--timeout", "0", "--timeout 0 is not usable"),
        ("--timeout", "-1", "--timeout -1 is not usable"),
        ("--timeout", "1e9", f"above the cap of {MAX_TIMEOUT:g} s"),
        ("--timeout", "soon", "--timeout 'soon' is not a number"),
        ("--memory", "99999999999999", f"above the cap of {MAX_MEMORY_MB} MiB"),
        ("--memory", "0", "--memory 0 is not usable"),
        ("--memory", "-5", "--memory -5 is not usable"),
        ("--memory", "nan", "--memory nan is not usable"),
        ("--memory", "1.5", "--memory 1.5 is not usable"),
        ("--memory", "lots", "--memory 'lots' is not a number"),
    ],
)
def test_limits_are_validated_with_a_message_naming_the_cap(tmp_path, option, value, message):
    result = run(write(tmp_path, RIGHT), option, value)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_the_memory_limit_message_suggests_the_option(tmp_path):
    text = RIGHT.replace(
        "    n = x.shape[0]",
        "    hoard = [bytearray(10**8) for _ in range(100)]\n    n = x.shape[0]",
    )
    result = run(write(tmp_path, text), "--memory", "512")
    assert result.exit_code == 2
    assert "out of memory" in result.output and "--memory" in result.output


# -- the child started ahead (sandbox.warm) ------------------------------------------------------------
RECORDS_ITS_PROCESS = (
    RIGHT
    + """
import os as _os

with open(_os.environ["BND_PIDFILE"], "a") as _f:
    _f.write(f"{_os.getpid()} {_os.getcwd()}\\n")
"""
)


@pytest.mark.parametrize("count", [1, 3])
def test_every_file_gets_a_new_child_even_when_it_was_started_ahead(tmp_path, monkeypatch, count):
    """The child started ahead of use (while bnderive imports SymPy; in a folder, the next
    file's) is used by one file only: every file's worker is its own process in its own
    directory, and afterwards none of them, and no spare, is left."""
    import tempfile

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where the children's directories go
    root = tmp_path / "class"
    root.mkdir()
    for k in range(count):
        write(root, RECORDS_ITS_PROCESS, f"s{k}.py")
    pidfile = tmp_path / "pids"
    target = str(root) if count > 1 else str(root / "s0.py")
    result = CliRunner().invoke(
        main, ["check-impl", target, "--jobs", "2"], env={**ENV, "BND_PIDFILE": str(pidfile)}
    )
    assert result.exit_code == 0, result.output
    records = [line.split() for line in pidfile.read_text().splitlines()]
    assert len(records) == count, records  # each file imported once, in its own worker
    pids = [int(pid) for pid, _ in records]
    assert len(set(pids)) == count and len({where for _, where in records}) == count
    assert all_dead(pids)
    assert list(scratch.iterdir()) == [], "every child's directory, the spare's too, is removed"


def test_the_timeout_counts_the_childs_time_not_bnderives(tmp_path):
    """--timeout bounds the time spent waiting for the file's answers: bnderive's own work
    between requests (slow on a loaded machine) does not make the file "did not finish", and
    the file's own time still does."""
    path = write(tmp_path, RIGHT + "\n\ndef slow():\n    import time\n    time.sleep(30)\n")
    with Sandbox(1, 2048) as box:
        box.request([{"op": "load", "file": str(path)}], [])
        time.sleep(1.5)  # the parent computing, past the file's whole limit
        steps = [{"op": "let", "name": "a", "value": {"lit": 3}},
                 {"op": "send", "label": "a", "value": {"var": "a"}}]  # fmt: skip
        assert box.request(steps, ["a"]).values["a"].value == 3
        with pytest.raises(SandboxFailure) as failure:
            box.request([{"op": "call", "fn": {"global": "slow"}, "args": []}], [])
        assert failure.value.kind == "timeout"
