"""Run a user's Python file in a guarded child process and get raw values back: the parent side.

``Sandbox`` starts ``child.py`` (a supervisor and, under it, the worker that imports the user's
file) in its own session and temporary working directory, with the CPU time, address space and
file size limits set in the worker, and talks to the worker through two pipes opened before the
user's code runs.  A request is a list of steps the parent chose (call this function with these
inputs, send back that value); the answer is validated strictly against the request: every
value asked for present, under its label, in order, of a known type, with well-formed numbers.
Anything else (a missing value, an extra one, a malformed frame, a worker that died or hung) is
a ``SandboxFailure``: "could not check", never a skip and never a traceback.  The user's code runs
in the worker and can change anything there, so nothing the worker says is trusted beyond the
raw values of the sends the parent asked for; which functions exist, the inputs, the order of
the calls, the comparisons and the verdicts are all decided here and in ``check_impl``.

Every way bnderive ends kills the child's whole process tree and removes the directory:
the normal end, a timeout, an exception, and SIGINT/SIGTERM/SIGHUP to bnderive (``interrupts``);
if bnderive itself is killed, the kernel tells the supervisor (``PR_SET_PDEATHSIG``), which does
it.  The supervisor is a child subreaper, so a double fork or a new session does not escape it,
and as a last resort every process that still carries the sandbox's token in its environment is
killed.  The supervised child is ``bnderive.core.supervisor``'s, shared with ``emit``'s
verification child.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from bnderive.core import supervisor
from bnderive.errors import LimitError  # a --timeout or --memory that is not usable (exit 2)

CHILD = str(Path(__file__).with_name("child.py"))

#: The default and largest values of check-impl's limits, and why the cap.
DEFAULT_TIMEOUT = 20.0
MAX_TIMEOUT = 600.0  # ten minutes: one file of check-impl needs seconds
DEFAULT_MEMORY_MB = 2048
MIN_MEMORY_MB = 64
MAX_MEMORY_MB = 16384  # 16 GiB: BatchNorm at check-impl's shapes needs megabytes
#: The largest answer the parent reads, in bytes.
ANSWER_LIMIT = 64 * 1024 * 1024
#: What is shown of the captured output in a report.
SHOWN = 1500
#: The environment variable that marks every process of a sandbox (``supervisor.sweep``).
TOKEN = supervisor.TOKEN


def check_limits(timeout: float, memory_mb: float) -> tuple[float, int]:
    """The time limit in seconds and the memory limit in MiB, validated: finite, positive and
    below the caps, else a LimitError naming the cap."""
    try:
        timeout = float(timeout)
    except (TypeError, ValueError):
        raise LimitError(f"--timeout {timeout!r} is not a number of seconds.") from None
    if not math.isfinite(timeout) or timeout <= 0:
        raise LimitError(
            f"--timeout {timeout:g} is not usable: give a finite number of seconds above 0 and "
            f"at most {MAX_TIMEOUT:g} (the default is {DEFAULT_TIMEOUT:g})."
        )
    if timeout > MAX_TIMEOUT:
        raise LimitError(
            f"--timeout {timeout:g} is above the cap of {MAX_TIMEOUT:g} s: checking one file "
            f"takes seconds; give at most {MAX_TIMEOUT:g}."
        )
    try:
        memory = float(memory_mb)
    except (TypeError, ValueError):
        raise LimitError(f"--memory {memory_mb!r} is not a number of MiB.") from None
    if not math.isfinite(memory) or memory != int(memory) or memory < MIN_MEMORY_MB:
        shown = str(int(memory)) if math.isfinite(memory) and memory == int(memory) else memory_mb
        raise LimitError(
            f"--memory {shown} is not usable: give a whole number of MiB from "
            f"{MIN_MEMORY_MB} to {MAX_MEMORY_MB} (the default is {DEFAULT_MEMORY_MB})."
        )
    if memory > MAX_MEMORY_MB:
        raise LimitError(
            f"--memory {int(memory)} is above the cap of {MAX_MEMORY_MB} MiB (16 GiB): BatchNorm "
            f"at check-impl's shapes needs megabytes; give at most {MAX_MEMORY_MB}."
        )
    return timeout, int(memory)


class SandboxFailure(Exception):
    """The child could not give the values asked for: it hung, died, exited, or answered
    something malformed.  ``kind`` says which; ``message`` says it for the user."""

    def __init__(self, kind: str, message: str, output: str = "", trace: str = "") -> None:
        super().__init__(message)
        self.kind, self.message, self.output, self.trace = kind, message, output, trace


# -- raw values ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Opaque:
    """An entry of an object array that is no number: its type name."""

    type: str


@dataclass(frozen=True)
class Raw:
    """One value the worker sent, as data: never code, never trusted beyond its type.

    ``t`` is one of none, bool, exact, int, float, array, big, tuple, list, dict, str, object.
    Arrays: ``dtype``, ``shape`` and ``data`` (flat; floats for float dtypes, ints for integer
    ones, and for object arrays Fraction, float or Opaque entries; None for other dtypes).
    """

    t: str
    dtype: str | None = None
    shape: tuple[int, ...] | None = None
    data: tuple[Any, ...] | None = None
    value: Any = None
    length: int | None = None
    items: tuple[Raw, ...] | None = None
    keys: tuple[str, ...] | None = None
    cls: str | None = None

    def describe(self) -> str:
        """How a message names the value: "a tuple of length 2", "None", "a float32 array of
        shape (3, 1)"."""
        if self.t in ("tuple", "list"):
            return f"a {self.t} of length {self.length}"
        if self.t == "none":
            return "None"
        if self.t in ("array", "big"):
            return f"a {self.dtype} array of shape {self.shape}"
        if self.t == "object":
            return f"a {self.cls}"
        if self.t == "dict":
            return f"a dict with keys {', '.join(self.keys or ()) or 'none'}"
        names = {"exact": "number", "int": "int", "float": "float", "bool": "bool", "str": "str"}
        return f"a {names.get(self.t, self.t)}"


_INT = re.compile(r"-?[0-9]{1,4000}")
_FRACTION = re.compile(r"-?[0-9]{1,4000}(/[0-9]{1,4000})?")
FLOAT_DTYPES = ("float16", "float32", "float64", "float128", "longdouble")
INT_DTYPES = tuple(f"{s}int{b}" for s in ("", "u") for b in (8, 16, 32, 64)) + ("bool",)
_TYPES = ("none", "bool", "exact", "int", "float", "array", "big", "tuple", "list", "dict",
          "str", "object")  # fmt: skip


class ChannelError(Exception):
    """The answer is not what the request asked for."""


def _need(condition: bool, what: str) -> None:
    if not condition:
        raise ChannelError(what)


def _text(value: Any, limit: int) -> str:
    _need(isinstance(value, str) and len(value) <= limit, "a text field is malformed")
    return value


def _number(value: Any) -> float:
    _need(isinstance(value, int | float) and not isinstance(value, bool), "a number is malformed")
    return float(value)


def _fraction(text: Any) -> Fraction:
    _need(
        isinstance(text, str) and _FRACTION.fullmatch(text) is not None, "a rational is malformed"
    )
    num, _, den = text.partition("/")
    _need(den == "" or int(den) != 0, "a rational has denominator 0")
    return Fraction(int(num), int(den or 1))


def parse_raw(e: Any, depth: int = 0) -> Raw:
    """A Raw from the JSON the worker sent; ChannelError when it is not well formed."""
    _need(depth <= 4 and isinstance(e, dict), "a value is not described by an object")
    t = e.get("t")
    _need(t in _TYPES, f"unknown value type {str(t)[:20]!r}")
    if t == "none":
        return Raw("none")
    if t == "bool":
        _need(isinstance(e.get("v"), bool), "a bool is malformed")
        return Raw("bool", value=e["v"])
    if t == "exact":
        return Raw("exact", value=_fraction(e.get("q")))
    if t == "int":
        v = e.get("v")
        _need(isinstance(v, str) and _INT.fullmatch(v) is not None, "an int is malformed")
        return Raw("int", value=Fraction(int(v)))
    if t == "float":
        dtype = e.get("dtype")
        _need(dtype in FLOAT_DTYPES, "a float's dtype is unknown")
        return Raw("float", dtype=dtype, value=_number(e.get("v")))
    if t in ("array", "big"):
        dtype, shape = e.get("dtype"), e.get("shape")
        _need(isinstance(dtype, str) and len(dtype) <= 40, "an array's dtype is malformed")
        _need(
            isinstance(shape, list)
            and len(shape) <= 8
            and all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n for n in shape),
            "an array's shape is malformed",
        )
        size = math.prod(shape)
        if t == "big":
            return Raw("big", dtype=dtype, shape=tuple(shape))
        data = e.get("data")
        if data is None:
            _need(dtype not in FLOAT_DTYPES + INT_DTYPES + ("object",), "an array lost its data")
            return Raw("array", dtype=dtype, shape=tuple(shape))
        _need(isinstance(data, list) and len(data) == size, "an array's data has the wrong size")
        if dtype in FLOAT_DTYPES:
            values: tuple[Any, ...] = tuple(_number(v) for v in data)
        elif dtype in INT_DTYPES:
            _need(
                all(isinstance(v, int) and not isinstance(v, bool) for v in data),
                "an integer array holds something else",
            )
            values = tuple(data)
        else:
            _need(dtype == "object", f"an array of dtype {dtype!r} carries data")
            values = tuple(_entry(v) for v in data)
        return Raw("array", dtype=dtype, shape=tuple(shape), data=values)
    if t in ("tuple", "list"):
        length, items = e.get("length", e.get("len")), e.get("items")
        _need(isinstance(length, int) and length >= 0, "a sequence's length is malformed")
        if items is None:
            return Raw(t, length=length)
        _need(isinstance(items, list) and len(items) == min(length, 64), "a sequence is malformed")
        return Raw(t, length=length, items=tuple(parse_raw(v, depth + 1) for v in items))
    if t == "dict":
        keys, items = e.get("keys"), e.get("items")
        _need(isinstance(keys, list) and len(keys) <= 64, "a dict's keys are malformed")
        names = tuple(_text(k, 80) for k in keys)
        if items is None:
            return Raw("dict", keys=names)
        _need(isinstance(items, list) and len(items) == len(keys), "a dict's items are malformed")
        return Raw("dict", keys=names, items=tuple(parse_raw(v, depth + 1) for v in items))
    if t == "str":
        _need(isinstance(e.get("len"), int), "a str is malformed")
        return Raw("str", length=e["len"])
    return Raw("object", cls=_text(e.get("class"), 80))


def _entry(v: Any) -> Any:
    _need(isinstance(v, list) and len(v) == 2 and v[0] in ("q", "f", "o"), "an entry is malformed")
    tag, value = v
    if tag == "q":
        return _fraction(value)
    if tag == "f":
        return _number(value)
    return Opaque(_text(value, 80))


@dataclass(frozen=True)
class Answer:
    """The worker's answer to one request, validated: the values sent (label → Raw), in the
    order asked; the error that stopped the steps, if any; the output captured so far; and the
    float constants the exact run read as fractions (for notes only, never for a verdict)."""

    values: dict[str, Raw]
    error: dict[str, str] | None
    output: str
    conversions: dict[str, tuple[str, str]]


def parse_answer(payload: bytes, request_id: int, labels: list[str]) -> Answer:
    """The answer to request ``request_id`` that asked for ``labels``; ChannelError otherwise."""
    try:
        data = json.loads(payload.decode("utf-8"))
    except (ValueError, RecursionError, UnicodeDecodeError):
        raise ChannelError("the answer is not JSON") from None
    _need(isinstance(data, dict), "the answer is not an object")
    expected = {"id", "results", "error", "stdout", "stderr", "conversions"}
    _need(set(data) == expected, "the answer has other fields than asked")
    _need(data["id"] == request_id and type(data["id"]) is int, "the answer is to another request")
    results, error = data["results"], data["error"]
    _need(isinstance(results, list), "the results are not a list")
    if error is not None:
        _need(isinstance(error, dict) and set(error) == {"kind", "message", "trace"}, "bad error")
        error = {k: _text(error[k], 20_000) for k in ("kind", "message", "trace")}
    got = []
    values: dict[str, Raw] = {}
    for item in results:
        _need(isinstance(item, list) and len(item) == 2, "a result is malformed")
        label = _text(item[0], 200)
        got.append(label)
        values[label] = parse_raw(item[1])
    if error is None:
        _need(got == labels, "the answer does not carry exactly the values asked for")
    else:
        _need(got == labels[: len(got)], "the answer carries values that were not asked for")
    conversions = data["conversions"]
    _need(isinstance(conversions, dict) and len(conversions) <= 50, "the notes are malformed")
    notes: dict[str, tuple[str, str]] = {}
    for key, value in conversions.items():
        _need(isinstance(value, list) and len(value) == 2, "a note is malformed")
        notes[_text(key, 80)] = (_text(value[0], 200), _text(value[1], 20))
    output = _text(data["stdout"], 20_000) + _text(data["stderr"], 20_000)
    return Answer(values, error, output[:SHOWN], notes)


# -- the child's processes -------------------------------------------------------------------------
_LIVE: set[Sandbox] = set()
_LIVE_LOCK = threading.Lock()


class Sandbox:
    """A running child for one user file: ``request`` steps, get validated raw values back.

    Use it as a context manager; leaving it (normally, by an exception, or through
    ``terminate_all``) kills the child's process tree and removes its directory.
    """

    def __init__(self, timeout: float, memory_mb: int) -> None:
        self.timeout, self.memory_mb = check_limits(timeout, memory_mb)
        self.workdir = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = secrets.token_hex(16)
        self.request_fd = self.answer_fd = self.status_fd = -1
        self.deadline = 0.0
        self.waited = 0.0  # seconds spent waiting for the child's answers
        self.requests = 0
        self.closed = False
        self.outcome: dict[str, int] | None = None

    # -- starting and stopping --
    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Take the spare child started for these limits (``prestart``), else start one; the
        time limit counts from now.  While ``warm(keep=True)`` is on, a new spare is started
        for the next file."""
        if not self._adopt():
            self._launch()
        self.deadline = time.monotonic() + self.timeout
        if _WARM["keep"]:
            prestart(self.timeout, self.memory_mb)

    def _adopt(self) -> bool:
        """Take over the spare child's process, pipes and directory, if it has these limits and
        is still waiting for its first request (nothing has run in it: it is as new)."""
        with _LIVE_LOCK:
            spare = _SPARE.pop() if _SPARE else None
            fits = (
                spare is not None
                and (spare.timeout, spare.memory_mb) == (self.timeout, self.memory_mb)
                and spare.proc is not None
                and spare.proc.poll() is None
                and spare.requests == 0
            )
            if fits:
                assert spare is not None
                for name in ("workdir", "proc", "token", "request_fd", "answer_fd", "status_fd"):
                    setattr(self, name, getattr(spare, name))
                spare.proc, spare.workdir, spare.closed = None, "", True
                spare.request_fd = spare.answer_fd = spare.status_fd = -1
                _LIVE.discard(spare)
                _LIVE.add(self)
        if spare is not None and not fits:
            spare.kill()
        return fits

    def _launch(self) -> None:
        self.workdir = tempfile.mkdtemp(prefix="bnderive-impl-")
        with _LIVE_LOCK:
            _LIVE.add(self)
        request_r, request_w = os.pipe()
        answer_r, answer_w = os.pipe()
        status_r, status_w = os.pipe()
        env = supervisor.environment(self.token)
        limits = {"memory": self.memory_mb * 1024 * 1024, "cpu": math.ceil(self.timeout) + 1}
        try:
            with open(os.path.join(self.workdir, "output"), "wb") as output:
                self.proc = subprocess.Popen(
                    [sys.executable, CHILD, str(request_r), str(answer_w), str(status_w),
                     self.workdir, json.dumps(limits)],
                    cwd=self.workdir,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=output,
                    env=env,
                    pass_fds=(request_r, answer_w, status_w),
                    start_new_session=True,
                )  # fmt: skip
        finally:
            for fd in (request_r, answer_w, status_w):
                os.close(fd)
        self.request_fd, self.answer_fd, self.status_fd = request_w, answer_r, status_r
        os.set_blocking(self.request_fd, False)

    def close(self) -> None:
        """End the child: close its request pipe (the worker exits), and whatever is still
        running a moment later is killed; then the sweep and the directory."""
        if self.closed:
            return
        self.closed = True
        try:
            if self.request_fd >= 0:
                os.close(self.request_fd)
                self.request_fd = -1
            if self.proc is not None and self.proc.poll() is None:
                try:
                    self.proc.wait(timeout=1.0)
                except subprocess.TimeoutExpired:
                    self._kill()
        finally:
            self._cleanup()

    def kill(self) -> None:
        """Kill the child's tree now (a timeout, a signal to bnderive) and clean up."""
        if self.closed:
            return
        self.closed = True
        try:
            self._kill()
        finally:
            self._cleanup()

    def _kill(self) -> None:
        if self.proc is not None:
            supervisor.stop(self.proc)

    def _cleanup(self) -> None:
        try:
            if self.proc is not None:
                supervisor.kill_group(self.proc)
            supervisor.sweep(self.token)
            for name in ("request_fd", "answer_fd", "status_fd"):
                fd = getattr(self, name)
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
                    setattr(self, name, -1)
            if self.workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)
        finally:
            with _LIVE_LOCK:
                _LIVE.discard(self)

    # -- talking to the worker --
    def request(self, steps: list[dict[str, Any]], labels: list[str]) -> Answer:
        """Send ``steps``; the validated answer with the values of ``labels`` (the labels of
        the steps' sends, in order).  A SandboxFailure when the child cannot answer."""
        if self.closed or self.proc is None:
            raise SandboxFailure("closed", "the child process has already ended")
        self.requests += 1
        # --timeout bounds the time spent waiting for the child, summed over the requests:
        # bnderive's own work between them (the truth, the diagnosis) is not the file's, and on
        # a loaded machine it made a slow parent look like a file that hangs.
        started = time.monotonic()
        self.deadline = started + max(0.0, self.timeout - self.waited)
        try:
            return self._exchange(steps, labels)
        finally:
            self.waited += time.monotonic() - started

    def _exchange(self, steps: list[dict[str, Any]], labels: list[str]) -> Answer:
        request_id = self.requests
        payload = json.dumps({"id": request_id, "steps": steps}).encode("utf-8")
        self._write(b"%010d" % len(payload) + payload)
        head = self._read(10)
        if not head.isdigit() or int(head) > ANSWER_LIMIT:
            self._malformed("its answer does not start with a length")
        body = self._read(int(head))
        try:
            return parse_answer(body, request_id, labels)
        except ChannelError as exc:
            self._malformed(str(exc))
        raise AssertionError("unreachable")  # pragma: no cover

    def _malformed(self, why: str) -> None:
        self.kill()
        raise SandboxFailure(
            "channel",
            f"the process running the file answered something bnderive did not ask for ({why}); "
            "code that writes to bnderive's channel, replaces its functions or exits early "
            "cannot be checked",
            self.output(),
        )

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            self._wait(write=True)
            try:
                view = view[os.write(self.request_fd, view) :]
            except BlockingIOError:
                continue
            except (BrokenPipeError, OSError):
                self._ended()

    def _read(self, size: int) -> bytes:
        chunks: list[bytes] = []
        while size:
            self._wait(write=False)
            try:
                chunk = os.read(self.answer_fd, min(size, 1 << 20))
            except BlockingIOError:
                continue
            if not chunk:
                self._ended()
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def _wait(self, write: bool) -> None:
        fd = self.request_fd if write else self.answer_fd
        gone = False
        while True:
            left = self.deadline - time.monotonic()
            if left <= 0:
                self._timeout()
            ready = select.select([], [fd], [], min(left, 0.1))[1] if write else (
                select.select([fd], [], [], min(left, 0.1))[0]
            )  # fmt: skip
            if ready:
                return
            # The supervisor exits only after the worker: once it is gone no answer can come,
            # even if a stray process still holds the pipe open (one more look, for the race).
            if gone:
                self._ended()
            gone = self.proc is not None and self.proc.poll() is not None

    def _timeout(self) -> None:
        output = self.output()
        self.kill()
        raise SandboxFailure(
            "timeout",
            f"did not finish within {self.timeout:g} s (an infinite loop, or too slow on object "
            "arrays of exact numbers); the limit is set by --timeout",
            output,
        )

    def _ended(self) -> None:
        """The worker is gone before answering: say how it ended."""
        assert self.proc is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=max(0.1, min(5.0, self.deadline - time.monotonic())))
        outcome = self._status()
        output = self.output()
        self.kill()
        signum = outcome.get("signal")
        if signum is not None:
            name = _signal_name(signum)
            why = {
                "SIGXCPU": f"it used more than {math.ceil(self.timeout) + 1} s of CPU time "
                "(the limit is set by --timeout)",
                "SIGKILL": "it was killed (out of memory? the limit is set by --memory)",
                "SIGSEGV": "it crashed (segmentation fault; out of memory? the limit is set by "
                "--memory)",
                "SIGXFSZ": "it wrote more output than the limit",
                "SIGABRT": "it aborted (out of memory? the limit is set by --memory)",
            }.get(name, "")
            raise SandboxFailure(
                "signal", f"was stopped by {name}" + (f": {why}" if why else ""), output
            )
        code = outcome.get("exit")
        raise SandboxFailure(
            "exit",
            f"exited with code {code} before answering (os._exit, or a crash)"
            if code is not None
            else "ended before answering",
            output,
        )

    def _status(self) -> dict[str, int]:
        """How the worker ended, from the supervisor's status pipe (only it holds that pipe)."""
        if self.outcome is not None:
            return self.outcome
        self.outcome = supervisor.read_status(self.status_fd)
        return self.outcome

    def output(self) -> str:
        """The start of what the child wrote to its stdout and stderr below Python (os.write,
        C code, the interpreter's own messages)."""
        try:
            with open(os.path.join(self.workdir, "output"), "rb") as f:
                return f.read(SHOWN).decode("utf-8", "replace")
        except OSError:
            return ""


# -- a child started ahead of time -------------------------------------------------------------------
#: The spare: a child started before it is needed, for the next Sandbox with its limits.  It is
#: a new process like any other (its own session, directory, token and pipes; the worker has
#: imported NumPy and waits for its first request), used by one file only, and killed like any
#: other (it is in _LIVE).  Starting it early lets its start-up (Python, NumPy: ~0.3 s) run
#: while bnderive imports SymPy and builds the cases, or while the previous file is compared.
_SPARE: list[Sandbox] = []
_WARM = {"keep": False}


def prestart(timeout: float, memory_mb: int) -> None:
    """Start the spare child now (replacing an older one)."""
    box = Sandbox(timeout, memory_mb)
    box._launch()
    with _LIVE_LOCK:
        old, _SPARE[:] = list(_SPARE), [box]
    for spare in old:
        spare.kill()


def discard_spare() -> None:
    """End the spare child, if one is waiting."""
    with _LIVE_LOCK:
        old, _SPARE[:] = list(_SPARE), []
    for spare in old:
        spare.kill()  # nothing of a user's ran in it: no need to let it finish


@contextlib.contextmanager
def warm(timeout: float, memory_mb: int, keep: bool = False) -> Iterator[None]:
    """While the block runs, a child with these limits is started ahead of the Sandbox that
    will use it; with ``keep`` (a folder of files) each Sandbox that takes it starts the next.
    The spare left over is ended on the way out.  (A spare is started from the thread that
    uses the previous one: the kernel's parent-death signal follows the starting thread, and
    the folder's threads live until every file is done.)"""
    _WARM["keep"] = keep
    try:
        prestart(timeout, memory_mb)
        yield
    finally:
        _WARM["keep"] = False
        discard_spare()


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def terminate_all() -> None:
    """Kill every running sandbox's tree and remove its directory (signal handlers call this)."""
    with _LIVE_LOCK:
        live = list(_LIVE)
    for sandbox in live:
        with contextlib.suppress(Exception):
            sandbox.kill()


#: Exit codes after a signal, as shells report them.
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}


@contextlib.contextmanager
def interrupts() -> Iterator[None]:
    """While the block runs, SIGINT, SIGTERM and SIGHUP end bnderive cleanly: every child's
    process tree is killed, the temporary directories are removed, and bnderive exits with
    128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        terminate_all()
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(SIGNAL_EXIT.get(signal.Signals(signum), 128 + signum))

    previous = {s: signal.signal(s, handler) for s in SIGNAL_EXIT}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
