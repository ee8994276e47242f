"""``bnderive emit`` against hostile forms: the form's text is data, never code (issue 10, item 1).

A form's name, title and sources go into the emitted module's docstring; they once went into a
``#`` comment header, where a line break ended the comment and the rest of the title ran as code,
in bnderive's own process, during the verification: it could replace the verifier and have a form
without γ written as "verified".  Now (1) the printer writes every user string into a checked
docstring line (control characters refused, quotes and backslashes escaped) and parses the
printed module back, and (2) the module is verified in a child process: the parent never imports
it, and what the child returns is validated as data.  Each defence is tested on its own: the
second with the first switched off.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bnderive.cli import main
from bnderive.core.spec import Mode
from bnderive.emit import child as emit_child
from bnderive.emit import numpy_module, runner, verification
from bnderive.emit.emitter import emit
from bnderive.emit.numpy_module import EmitVerificationError, render
from bnderive.emit.runner import ChildFailure, run_module
from bnderive.emit.verification import verify_module
from bnderive.errors import FormError
from bnderive.read.catalogue import find_form
from bnderive.read.forms import form_from_dict

ENV = {"COLUMNS": "120", "FORCE_COLOR": None, "TERM": "dumb", "NO_COLOR": "1"}

EQUATIONS = {
    "right": [
        {"defines": "dbeta", "expr": "sum(g[k], k)"},
        {"defines": "dgamma", "expr": "sum(g[k]*xhat[k], k)"},
        {
            "defines": "dx[i]",
            "expr": "gamma/sqrt(var + eps) * (g[i] - (dbeta + xhat[i]*dgamma)/M)",
        },
    ],
    # γ missing from dx: the mistake a forged verification would let through.
    "no-gamma": [
        {"defines": "dbeta", "expr": "sum(g[k], k)"},
        {"defines": "dgamma", "expr": "sum(g[k]*xhat[k], k)"},
        {"defines": "dx[i]", "expr": "1/sqrt(var + eps) * (g[i] - (dbeta + xhat[i]*dgamma)/M)"},
    ],
}


def forged_title(marker: Path) -> str:
    """A title that, pasted into a comment, ends it and runs: it records the process it ran in,
    then replaces the verifier's comparisons (today's and the old ones) by no-ops."""
    return (
        "innocent\n"
        f"import os; open({str(marker)!r}, 'w').write(str(os.getpid()))\n"
        "import bnderive.emit.verification as _v\n"
        "_v._run_module = lambda m, c: {'backward': {k: c.truth[k] for k in ('dx', 'dgamma', "
        "'dbeta')}}\n"
        "_v.verify_module = lambda *a, **k: _v.Verification(('forged',))\n"
        "_v._Checker.exact = _v._Checker.float64 = _v._Checker.float32 = lambda *a: None"
    )


def make_form(
    title: str = "A title",
    sources: tuple[str, ...] = ("Author, Title, URL",),
    name: str = "hostile",
    equations: str = "right",
):
    data = {"name": name, "title": title, "sources": list(sources)}
    return form_from_dict({**data, "equations": EQUATIONS[equations]}, "hostile.toml")


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string (JSON's escapes are TOML's, \\uXXXX included)."""
    return json.dumps(text)


def write_form(path: Path, title: str, equations: str = "right", sources=("A source",)) -> Path:
    lines = [
        'name = "hostile"',
        f"title = {toml_string(title)}",
        f"sources = [{', '.join(toml_string(s) for s in sources)}]",
    ]
    for eq in EQUATIONS[equations]:
        lines += ["", "[[equations]]", f'defines = "{eq["defines"]}"', f'expr = "{eq["expr"]}"']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run(*args: str):
    return CliRunner().invoke(main, list(args), env=ENV)


# -- 1. the printer: user strings are checked docstring lines ------------------------------------
REFUSED = {
    "newline": "a\nimport os",
    "carriage return": "a\rimport os",
    "CRLF": "a\r\nimport os",
    "NUL": "a\x00b",
    "line separator U+2028": "a\u2028import os",
    "paragraph separator U+2029": "a\u2029b",
    "terminal escape": "a\x1b[31mred",
    "bidi override U+202E": "a\u202eb",
    "tab": "a\tb",
    "form feed": "a\x0cb",
    "next line U+0085": "a\x85b",
    "zero-width space U+200B": "a\u200bb",
}


@pytest.mark.parametrize("field", ["title", "source", "name"])
@pytest.mark.parametrize("text", REFUSED.values(), ids=REFUSED.keys())
def test_a_user_string_that_is_not_one_printable_line_is_refused(field, text):
    form = {
        "title": lambda: make_form(title=text),
        "source": lambda: make_form(sources=("fine", text)),
        "name": lambda: make_form(name=text),
    }[field]()
    with pytest.raises(FormError) as caught:
        render(form, Mode.PER_ACTIVATION, "test")
    message = str(caught.value)
    what = {"title": "the form's title", "source": "source 2", "name": "the form's name"}[field]
    assert what in message and "one line of printable text" in message
    # The message itself shows the offending text escaped, never raw.
    assert text not in message


ACCEPTED = {
    "triple quotes": 'x"""; import os; """',
    "one quote at the end": 'ends with a quote"',
    "backslash at the end": "ends with a backslash\\",
    "escape sequences as text": "\\n \\r \\x00 \\u2028 \\N{BULLET} \\'",
    "single quotes": "'''; import os; '''",
    "hash": "# not a comment",
    "unicode": "Ioffe & Szegedy, σ² + ε, δ_ij, x̂, “quoted” — 批量归一化",
    "braces": "{form.title} %s {0}",
}


@pytest.mark.parametrize("text", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_quotes_and_backslashes_are_escaped_and_round_trip_as_data(text):
    form = make_form(title=text, sources=(text, "plain"), name=text)
    source = render(form, Mode.SPATIAL, "test")
    tree = ast.parse(source)
    doc = ast.get_docstring(tree, clean=False)
    lines = doc.splitlines()
    assert lines[0] == f"BatchNorm backward, emitted by bnderive test from the form '{text}':"
    assert lines[1] == f"  {text}"
    assert lines[2] == f"  source: {text}" and lines[3] == "  source: plain"
    # Only the docstring, the import and the three functions at the top level.
    kinds = [type(stmt).__name__ for stmt in tree.body]
    assert kinds == ["Expr", "Import", "FunctionDef", "FunctionDef", "FunctionDef"]
    # ... and the module it heads is still verified (in a child process).
    assert emit(form, Mode.SPATIAL, "test").source == source


def test_builtin_headers_round_trip():
    for name in ("compact", "staged", "kronecker"):
        form = find_form(name)
        doc = ast.get_docstring(ast.parse(render(form, Mode.SPATIAL, "t")), clean=False)
        assert f"  {form.title}" in doc.splitlines()
        assert all(f"  source: {s}" in doc.splitlines() for s in form.sources)


def test_comments_and_docstrings_of_bnderive_are_checked_too():
    printer = numpy_module.NumPyEmitter({"mode": Mode.SPATIAL})
    with pytest.raises(EmitVerificationError, match="bnderive bug"):
        printer._comment("x = 1", "two\nlines")
    with pytest.raises(EmitVerificationError, match="bnderive bug"):
        printer._docstring(("fine", "not\rfine"))


def comment_header(self, lines, indent=""):
    """The printer as it was: text pasted into ``#`` comments, unchecked."""
    text = [
        line.prefix + line.text + line.suffix if hasattr(line, "text") else line for line in lines
    ]
    return "\n".join(f"{indent}# {t}" for t in text) + f"\n{indent}pass"


def test_the_printed_module_is_parsed_back(monkeypatch):
    """The last guard: even if a string got through as code, the module's top level would not
    be what the printer meant to write, and nothing is returned."""
    monkeypatch.setattr(numpy_module.NumPyEmitter, "_docstring", comment_header)
    form = make_form(title="innocent\nimport os")
    with pytest.raises(EmitVerificationError, match="bnderive bug: the printed module has"):
        render(form, Mode.SPATIAL, "test")


# -- 2. the forged verification of a form without γ --------------------------------------------------
def test_cli_refuses_the_forging_form_and_writes_nothing(tmp_path):
    marker = tmp_path / "ran"
    form = write_form(tmp_path / "forge.toml", forged_title(marker), "no-gamma")
    out = tmp_path / "bn.py"
    result = run("emit", "--form", str(form), "-o", str(out))
    assert result.exit_code == 2, result.output
    assert "line break" in result.output and "Traceback" not in result.output
    assert not out.exists() and not marker.exists()


@pytest.mark.parametrize("target", ["numpy", "numba"])
def test_with_the_printer_guards_off_the_child_still_cannot_forge(tmp_path, monkeypatch, target):
    """The injected text runs, but in the child: the parent's verifier is untouched, the form
    without γ is refuted, nothing is returned."""
    if target == "numba":
        pytest.importorskip("numba")
    monkeypatch.setattr(numpy_module.NumPyEmitter, "_docstring", comment_header)
    monkeypatch.setattr(numpy_module, "_check_structure", lambda source, node: None)
    marker = tmp_path / "ran"
    form = make_form(title=forged_title(marker), equations="no-gamma")
    with pytest.raises(EmitVerificationError) as caught:
        emit(form, Mode.PER_ACTIVATION, "test", target=target)
    assert caught.value.refuted, caught.value
    # It did run (the guards were off) ... in another process.
    assert marker.exists() and int(marker.read_text()) != os.getpid()
    assert verification.verify_module.__module__ == "bnderive.emit.verification"


def test_the_parent_never_imports_the_emitted_module(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the emitted module was imported in bnderive's process")

    monkeypatch.setattr(emit_child, "load_source", refuse)
    monkeypatch.setattr(verification, "load_source", refuse)
    emitted = emit(find_form("compact"), Mode.SPATIAL, "test")
    assert len(emitted.verification.checks) == 3


def test_a_bug_in_bnderive_is_exit_4_not_refuted(monkeypatch, tmp_path):
    """A module that disagrees with a form that holds is bnderive's bug: exit 4, not 1."""
    from bnderive.emit import emitter

    def wrong(*args, **kwargs):
        raise EmitVerificationError("the module gives a wrong dx")

    monkeypatch.setattr(emitter, "verify_module", wrong)
    out = tmp_path / "bn.py"
    result = run("emit", "--form", "compact", "-o", str(out))
    assert result.exit_code == 4 and "bnderive bug" in result.output
    assert not out.exists()


# -- 3. the channel: what the child returns is validated, never trusted -------------------------------
def _honest(source, name, runs):
    return run_module(source, name, runs)


def _tampered(change):
    """A runner whose result is the honest one, changed by ``change(results)``."""

    def runner_(source, name, runs):
        results = run_module(source, name, runs)
        change(results)
        return results

    return runner_


def _set(run_id, key, field, value):
    def change(results):
        results["runs"][run_id]["outputs"][key][field] = value

    return change


TAMPERED = {
    "a run missing": lambda r: r["runs"].pop("float32"),
    "an output missing": lambda r: r["runs"]["exact"]["outputs"].pop("backward.dx"),
    "an extra output": lambda r: r["runs"]["exact"]["outputs"].update(
        extra=r["runs"]["exact"]["outputs"]["backward.dx"]
    ),
    "a run marked skipped": lambda r: r["runs"]["exact"].update(skipped=True),
    "not a rational": _set("exact", "backward.dx", "values", ["1.5"] * 108),
    "division by zero": _set("exact", "backward.dgamma", "values", ["1/0"] * 3),
    "too few values": _set("exact", "backward.dx", "values", ["1/1"]),
    "a negative shape": _set("exact", "backward.dx", "shape", [-1]),
    "a huge shape": _set("exact", "backward.dx", "shape", [10**6, 10**6]),
    "a float array in an exact run": _set("exact", "backward.dx", "dtype", "float64"),
    "an unknown dtype": _set("float64", "backward.dx", "dtype", "<script>"),
    "not a float": _set("float64", "backward.dbeta", "values", ["x", "y", "z", "w"]),
    "an object array in a float run": _set("float64", "backward.dbeta", "dtype", "object"),
    "numbers instead of strings": _set("float64", "backward.dbeta", "values", [1, 2, 3, 4]),
    "a record that is a list": lambda r: r["runs"]["exact"]["outputs"].update(
        {"backward.dx": [1, 2]}
    ),
    "ok that is a string": lambda r: r["runs"]["exact"].update(ok="yes"),
    "not a result record": lambda r: r.update(verdict="holds"),
}


@pytest.mark.parametrize("change", TAMPERED.values(), ids=TAMPERED.keys())
def test_a_malformed_result_is_never_a_verification(change):
    form = find_form("compact")
    source = render(form, Mode.PER_ACTIVATION, "test")
    verify_module(source, form, Mode.PER_ACTIVATION, runner=_honest)  # the honest one passes
    with pytest.raises(EmitVerificationError):
        verify_module(source, form, Mode.PER_ACTIVATION, runner=_tampered(change))


def test_nan_and_inf_are_wrong_values():
    form = find_form("compact")
    source = render(form, Mode.PER_ACTIVATION, "test")
    for bad in ("nan", "inf"):
        values = [float(bad).hex()] * 4
        with pytest.raises(EmitVerificationError, match="relative error"):
            verify_module(
                source,
                form,
                Mode.PER_ACTIVATION,
                runner=_tampered(_set("float64", "backward.dbeta", "values", values)),
            )


def test_a_child_error_is_shown_escaped():
    form = find_form("compact")
    source = render(form, Mode.PER_ACTIVATION, "test")
    source = source.replace(
        "import numpy as np", "import numpy as np\nraise ValueError('\\x1b[2J')"
    )
    with pytest.raises(EmitVerificationError) as caught:
        verify_module(source, form, Mode.PER_ACTIVATION)
    assert "\x1b" not in str(caught.value) and "\\x1b[2J" in str(caught.value)


# -- 4. the child process: limited, killed, cleaned up ------------------------------------------------
def _process_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in state  # a zombie waiting for init: not running


def test_a_child_that_hangs_is_killed_with_everything_it_started(tmp_path):
    pids = tmp_path / "pids"
    source = (
        "import os, subprocess, time\n"
        "p = subprocess.Popen(['sleep', '60'])\n"
        f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{p.pid}}')\n"
        "time.sleep(60)\n"
    )
    started = time.monotonic()
    with pytest.raises(ChildFailure, match="did not finish within 2 s"):
        run_module(
            source, "hang", [{"id": "a", "module": "plain", "inputs": {}, "rows": [None]}], 2
        )
    assert time.monotonic() - started < 20
    deadline = time.monotonic() + 5
    while not all(_process_gone(int(p)) for p in pids.read_text().split()):
        assert time.monotonic() < deadline, "a process of the child is still running"
        time.sleep(0.05)


def test_the_child_has_limits_and_its_directory_is_removed(tmp_path):
    record = tmp_path / "limits"
    source = (
        "import os, resource\n"
        f"open({str(record)!r}, 'w').write(' '.join(map(str, [\n"
        "    resource.getrlimit(resource.RLIMIT_CPU)[0], resource.getrlimit(resource.RLIMIT_AS)[0],\n"
        "    resource.getrlimit(resource.RLIMIT_FSIZE)[0], os.getsid(0) == os.getppid(),\n"
        "    os.getcwd()])))\n"
    )
    runs = [{"id": "a", "module": "plain", "inputs": {}, "rows": [None]}]
    results = run_module(source, "limits", runs, timeout=30)
    assert results["runs"]["a"]["ok"] is False  # no forward(): the run fails, the child reports it
    cpu, memory, size, own_session, workdir = record.read_text().split()
    assert int(cpu) == 30 and int(memory) == runner.MEMORY and int(size) == runner.FILE_SIZE
    assert own_session == "True"  # under the supervisor, which leads a session of its own
    assert not Path(workdir).exists()


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_the_child_dies_with_bnderive_and_its_directory_goes(tmp_path, how):
    """bnderive killed while the child runs: the child stops too and removes its directory."""
    record = tmp_path / "child"
    source = (
        "import os, time\n"
        f"open({str(record)!r}, 'w').write(f'{{os.getpid()}} {{os.getcwd()}}')\n"
        "time.sleep(60)\n"
    )
    parent = tmp_path / "parent.py"
    runs = [{"id": "a", "module": "plain", "inputs": {}, "rows": [None]}]
    parent.write_text(
        f"from bnderive.emit.runner import run_module\nrun_module({source!r}, 'x', {runs!r}, 60)\n",
        encoding="utf-8",
    )
    proc = subprocess.Popen([sys.executable, str(parent)])
    deadline = time.monotonic() + 60
    while not record.exists() or len(record.read_text().split()) < 2:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    pid, workdir = record.read_text().split()
    os.kill(proc.pid, how)
    proc.wait()
    deadline = time.monotonic() + 10
    while not (_process_gone(int(pid)) and not Path(workdir).exists()):
        assert time.monotonic() < deadline, "the child outlived bnderive, or left its directory"
        time.sleep(0.05)


# The module double-forks a daemon, in a new session or in the child's: a process-group kill
# cannot reach the first, and both outlive the module's own process.  Style of the attack: the
# classic Unix daemonisation (fork, setsid, fork), as check-impl's tests write it
# (tests/test_impl_sandbox.py, DOUBLE_FORK).
DOUBLE_FORK = """
import os, time
if os.fork() == 0:
    {setsid}
    if os.fork() == 0:
        with open({pidfile!r}, "a") as f:
            f.write(f"{{os.getpid()}}\\n")
        time.sleep(120)
        os._exit(0)
    os._exit(0)
time.sleep(0.5)
"""


def _pids(path: Path, count: int = 1) -> list[int]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if path.exists():
            pids = [int(p) for p in path.read_text().split()]
            if len(pids) >= count:
                return pids
        time.sleep(0.05)
    raise AssertionError("the module's daemon did not report its pid")


def _all_gone(pids: list[int], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if all(_process_gone(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("setsid", ["os.setsid()", "pass"], ids=["new session", "same session"])
def test_a_double_fork_in_the_module_does_not_escape(tmp_path, setsid):
    """The daemon outlives the module's process, which returns normally: the supervisor (a
    child subreaper) still kills it when the module's process ends."""
    pidfile = tmp_path / "pids"
    source = DOUBLE_FORK.format(setsid=setsid, pidfile=str(pidfile))
    runs = [{"id": "a", "module": "plain", "inputs": {}, "rows": [None]}]
    results = run_module(source, "daemon", runs, timeout=60)
    assert results["runs"]["a"]["ok"] is False  # no forward(): the run fails, reported as data
    assert _all_gone(_pids(pidfile)), "a daemon the module started is still running"


KILLS_SUPERVISOR = """
import os, signal, time
_supervisor = os.getppid()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        with open({pidfile!r}, "a") as f:
            f.write(f"{{os.getpid()}}\\n")
        os.kill(_supervisor, signal.SIGKILL)
        time.sleep(120)
        os._exit(0)
    os._exit(0)
time.sleep(30)
"""


def test_a_daemon_that_kills_the_supervisor_is_still_killed(tmp_path):
    """The daemon, in a session of its own, kills the supervisor first: the parent's sweep (every
    process carrying the run's token in its environment) still finds it."""
    pidfile = tmp_path / "pids"
    runs = [{"id": "a", "module": "plain", "inputs": {}, "rows": [None]}]
    with pytest.raises(ChildFailure, match="before returning a result"):
        run_module(KILLS_SUPERVISOR.format(pidfile=str(pidfile)), "daemon", runs, timeout=60)
    assert _all_gone(_pids(pidfile)), "a daemon that killed the supervisor is still running"


def test_a_child_that_dies_is_a_failure_not_a_result():
    runs = [{"id": "a", "module": "plain", "inputs": {}, "rows": [None]}]
    with pytest.raises(ChildFailure, match="SIGKILL"):
        run_module("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n", "die", runs)
    with pytest.raises(ChildFailure, match="exited 0"):
        run_module("import os\nos._exit(0)\n", "exit", runs)


# -- 5. the output file ---------------------------------------------------------------------------------
def test_o_onto_the_form_file_is_refused(tmp_path):
    form = write_form(tmp_path / "mine.toml", "Mine")
    before = form.read_bytes()
    for target in (form, tmp_path / "." / "mine.toml"):
        result = run("emit", "--form", str(form), "-o", str(target))
        assert result.exit_code == 2 and "would destroy the form" in result.output
    link = tmp_path / "link.py"
    link.symlink_to(form)
    hard = tmp_path / "hard.py"
    os.link(form, hard)
    for target in (link, hard):
        result = run("emit", "--form", str(form), "-o", str(target))
        assert result.exit_code == 2 and "would destroy the form" in result.output
    assert form.read_bytes() == before


def test_o_onto_a_latex_derivation_input_is_refused(tmp_path):
    from bnderive.read.catalogue import builtin_documents

    documents = [f for f in builtin_documents() if f.path]
    if not documents:
        pytest.fail("no shipped LaTeX derivation with a path to test with")
    path = Path(documents[0].path)
    copy = tmp_path / path.name
    copy.write_bytes(path.read_bytes())
    result = run("emit", "--form", str(copy), "-o", str(copy))
    assert result.exit_code == 2 and "would destroy the form" in result.output
    assert copy.read_bytes() == path.read_bytes()


def test_o_onto_a_device_is_refused():
    result = run("emit", "-o", "/dev/null")
    assert result.exit_code == 2 and "not a regular file" in result.output


def test_the_output_is_written_only_after_verification_and_whole(tmp_path):
    out = tmp_path / "bn.py"
    out.write_text("old contents\n", encoding="utf-8")
    os.chmod(out, 0o640)
    wrong = write_form(tmp_path / "wrong.toml", "No γ", "no-gamma")
    result = run("emit", "--form", str(wrong), "-o", str(out))
    assert result.exit_code == 1 and "refuted" in result.output
    assert out.read_text(encoding="utf-8") == "old contents\n"  # untouched
    result = run("emit", "--form", "compact", "-o", str(out))
    assert result.exit_code == 0 and "verified in a separate process" in result.output
    assert out.read_text(encoding="utf-8") == render(
        find_form("compact"), Mode.PER_ACTIVATION, __import__("bnderive").__version__
    )
    assert stat.S_IMODE(out.stat().st_mode) == 0o640  # permissions kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bn.py", "wrong.toml"]  # no temp file


def test_the_exact_inputs_reach_the_child_as_exact_values():
    """The channel in the other direction: inputs are encoded exactly (p/q, float.hex)."""
    from fractions import Fraction

    x = np.array([emit_child.Exact(Fraction(1, 3)), emit_child.Exact(-2)], dtype=object)
    record = runner.encode_input(x)
    assert record == {"kind": "exact", "shape": [2], "values": ["1/3", "-2/1"]}
    back = emit_child.decode(record)
    assert [e.q for e in back] == [Fraction(1, 3), Fraction(-2)]
    floats = np.array([0.1, -1e30, 2**-140], dtype=np.float32)
    assert np.array_equal(emit_child.decode(runner.encode_input(floats)), floats)
