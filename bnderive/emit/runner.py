"""Run an emitted module in a child process bnderive does not trust, and read back raw outputs.

The parent side of ``bnderive.emit.child``.  The emitted module is written to a fresh temporary
directory and imported there by the child script, with a CPU-time limit, an address-space limit,
a file-size limit and a wall-clock timeout; its stdout and stderr go to files that are only ever
shown, trimmed.  The child is ``bnderive.core.supervisor``'s supervised child, the one
check-impl's sandbox runs a user's file in: a supervisor (a child subreaper, in its own session)
runs the module in a worker under it and kills every process the module started when the
worker ends, however often they forked or whatever session they made; on a timeout, an error
here or a signal to bnderive the supervisor is stopped with its whole tree, and every process
still carrying the run's token in its environment is killed (``supervisor.sweep``).  What the
child sends back is data through one narrow channel (a JSON file): it is read with a size bound
and validated here, field by field, against what the job asked for; anything else (a missing
run, an extra key, a value that is not a rational or a float, a shape that does not match its
values) is a :class:`ChildFailure`, never a result.  The comparison with the ground truth and the
verdict are the caller's (``bnderive.emit.verification``), in this process.
"""

from __future__ import annotations

import json
import math
import os
import re
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from bnderive.core import supervisor

#: Wall-clock seconds the child may take (numba compiles the kernel in a few seconds on an idle
#: machine; a shared 2-core machine can be ten times slower).
TIMEOUT = 300.0
#: Address space of the child: NumPy, numba and LLVM with room to spare; the inputs are tiny.
MEMORY = 4 * 2**30
#: Largest file the child may write (its result, its captured output).
FILE_SIZE = 64 * 2**20
#: Largest result file read back.
RESULT_BYTES = 16 * 2**20
#: Bounds on one returned array: dimensions and elements (the verification inputs are small).
MAX_DIMS = 4
MAX_ELEMENTS = 100_000
#: The characters of the child's output or error shown in a message.
SHOWN = 400

_RATIONAL = re.compile(r"-?[0-9]{1,4000}/[0-9]{1,4000}")
_INEXACT = re.compile(r"inexact [A-Za-z_][A-Za-z0-9_]{0,60}")
_DTYPES = {"object", "float16", "float32", "float64", "int32", "int64", "longdouble"}


class ChildFailure(Exception):
    """The child did not return a valid result (timeout, crash, malformed output)."""


def printable(text: str, limit: int = SHOWN) -> str:
    """``text`` from the child, safe to put in a message: control characters shown escaped
    (no terminal escape sequences reach the user's screen), at most ``limit`` characters."""
    text = text[:limit] + ("…" if len(text) > limit else "")
    return "".join(
        c if unicodedata.category(c)[0] != "C" else repr(c)[1:-1] for c in text.replace("\n", " ")
    )


@dataclass(frozen=True)
class Inexact:
    """An element of an exact run that the module did not compute as a rational (a float, or
    None in an entry it never wrote): equal to no rational, so it fails the comparison."""

    type_name: str

    def __str__(self) -> str:
        return f"a {self.type_name}, not an exact rational"


@dataclass(frozen=True)
class Array:
    """One array the child returned: its dtype as the module produced it, and its values
    (Fractions in an object array for exact runs, float64 otherwise)."""

    dtype: str
    values: np.ndarray


def decode_array(data: Any, exact: bool, what: str) -> Array:
    """Validate one returned array; :class:`ChildFailure` if it is not what the channel allows.

    In an exact run every element must be a rational "p/q" (an element the module computed as
    a float comes back as "inexact float" and is refused, naming the type)."""

    def bad(why: str) -> ChildFailure:
        return ChildFailure(f"{what}: {why}")

    if not isinstance(data, dict) or set(data) != {"dtype", "shape", "values"}:
        raise bad("not an array record")
    dtype, shape, values = data["dtype"], data["shape"], data["values"]
    if not isinstance(dtype, str) or dtype not in _DTYPES:
        raise bad(f"dtype {printable(str(dtype), 40)} is not a real array dtype")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_DIMS
        or not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n for n in shape)
        or math.prod(shape) > MAX_ELEMENTS
    ):
        raise bad("a malformed shape")
    if not isinstance(values, list) or len(values) != math.prod(shape):
        raise bad(f"{len(values) if isinstance(values, list) else '?'} values for shape {shape}")
    if not all(isinstance(v, str) and len(v) <= 8100 for v in values):
        raise bad("a value that is not a short string")
    if exact:
        if dtype != "object":
            raise bad(f"a {dtype} array where exact rationals were expected")
        out = np.empty(len(values), dtype=object)
        for k, v in enumerate(values):
            if _INEXACT.fullmatch(v):  # the module computed something else: a wrong value
                out[k] = Inexact(v.split(" ", 1)[1])
                continue
            if not _RATIONAL.fullmatch(v):
                raise bad(f"entry {k} is {printable(v, 40)}, not an exact rational")
            p, q = v.split("/")
            if int(q) == 0:
                raise bad(f"entry {k} has denominator 0")
            out[k] = Fraction(int(p), int(q))
        return Array(dtype, out.reshape(shape))
    if dtype == "object":
        raise bad("an object array where floats were expected")
    try:
        floats = np.array([float.fromhex(v) for v in values], dtype=np.float64)
    except (ValueError, OverflowError):
        raise bad("a value that is not a float") from None
    return Array(dtype, floats.reshape(shape))


def encode_input(value: Any) -> dict[str, Any]:
    """An input for the child: an exact (``.q``) or float array, or the scalar ε."""
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            return {
                "kind": "exact",
                "shape": list(value.shape),
                "values": [f"{e.q.numerator}/{e.q.denominator}" for e in value.ravel()],
            }
        return {
            "kind": str(value.dtype),
            "shape": list(value.shape),
            "values": [float(e).hex() for e in value.ravel()],
        }
    if hasattr(value, "q"):
        return {"kind": "exact", "value": f"{value.q.numerator}/{value.q.denominator}"}
    return {"kind": "float", "value": float(value).hex()}


def _limits(timeout: float, memory: int) -> Callable[[], None]:
    cpu = int(math.ceil(timeout))

    def apply() -> None:  # runs in the child, before the interpreter starts
        # SIGTERM to the supervisor when bnderive dies, however it dies: it then kills its tree
        # and removes the directory (it asks again once it runs: this covers the start)
        supervisor.prctl(supervisor.PR_SET_PDEATHSIG, signal.SIGTERM)
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE, FILE_SIZE))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def _tail(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            return handle.read(SHOWN).decode("utf-8", "replace")
    except OSError:
        return ""


def run_module(
    source: str,
    name: str,
    runs: list[dict[str, Any]],
    timeout: float = TIMEOUT,
    memory: int = MEMORY,
) -> Any:
    """Import ``source`` in a child process and run every job in ``runs`` there.

    Each run is ``{"id", "module": "plain"|"compiled", "inputs": {x, dout, gamma, beta, eps},
    "rows": [None, 1, ...]}``.  Returns the child's result as it was read, meant to be
    ``{"runs": {id: {"ok": True, "outputs": {key: record}} or {"ok": False, "error": str}}}``;
    raises :class:`ChildFailure` if the child does not return JSON.  The caller validates the
    rest (:func:`validated`, :func:`decode_array`)."""
    workdir = tempfile.mkdtemp(prefix="bnderive-emit-")
    proc: subprocess.Popen[bytes] | None = None
    token = secrets.token_hex(16)
    status_r, status_w = os.pipe()
    try:
        module_path = os.path.join(workdir, "emitted.py")
        result_path = os.path.join(workdir, "result.json")
        job_path = os.path.join(workdir, "job.json")
        Path(module_path).write_text(source, encoding="utf-8")
        job = {"source": module_path, "name": name, "result": result_path, "runs": runs}
        Path(job_path).write_text(json.dumps(job), encoding="utf-8")
        env = supervisor.environment(token)
        child = os.path.join(os.path.dirname(os.path.realpath(__file__)), "child.py")
        out_path, err_path = (os.path.join(workdir, n) for n in ("stdout", "stderr"))
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-P", child, job_path, str(status_w)],
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=env,
                preexec_fn=_limits(timeout, memory),
                pass_fds=(status_w,),
                start_new_session=True,
            )
            os.close(status_w)
            status_w = -1
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                raise ChildFailure(f"it did not finish within {timeout:g} s") from None
            finally:
                # on every way out (done, timeout, Ctrl-C, an error here): the supervisor and
                # its tree, then whatever escaped it
                supervisor.stop(proc)
                supervisor.sweep(token)
        output = printable(_tail(err_path) or _tail(out_path))
        if not os.path.isfile(result_path):
            raise ChildFailure(
                f"it {_ended(supervisor.read_status(status_r), proc.returncode)} before "
                "returning a result" + (f" ({output})" if output else "")
            )
        if os.path.getsize(result_path) > RESULT_BYTES:
            raise ChildFailure("its result is larger than any verification result can be")
        try:
            result = json.loads(Path(result_path).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ChildFailure("its result is not JSON") from None
    finally:
        if proc is not None and proc.returncode is None:
            supervisor.stop(proc)
        supervisor.sweep(token)
        for fd in (status_r, status_w):
            if fd >= 0:
                os.close(fd)
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def _ended(status: dict[str, int], code: int | None) -> str:
    """How the module's process ended, from the supervisor's report (else its own exit)."""
    if "signal" in status:
        try:
            return f"was stopped by {signal.Signals(status['signal']).name}"
        except ValueError:
            return f"was stopped by signal {status['signal']}"
    if "exit" in status:
        return f"exited {status['exit']}"
    if code is not None and code < 0:
        return f"was stopped by {signal.Signals(-code).name}"
    return f"exited {code}"


def validated(result: Any, runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The result's shape: exactly the runs asked for, each ok with outputs or an error.
    The verifier calls this on whatever its runner returned (never trusting the runner)."""
    ids = {r["id"] for r in runs}
    if not isinstance(result, dict) or set(result) != {"runs"}:
        raise ChildFailure("its result is not a result record")
    got = result["runs"]
    if not isinstance(got, dict) or set(got) != ids:
        raise ChildFailure("its result does not have exactly the runs asked for")
    for key, entry in got.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("ok"), bool):
            raise ChildFailure(f"run {key!r}: not a run record")
        if entry["ok"]:
            if set(entry) != {"ok", "outputs"} or not isinstance(entry["outputs"], dict):
                raise ChildFailure(f"run {key!r}: a malformed record")
        elif set(entry) != {"ok", "error"} or not isinstance(entry["error"], str):
            raise ChildFailure(f"run {key!r}: a malformed error record")
    return got
