"""Supervised child processes: a process tree that cannot outlive bnderive or escape its kill.

bnderive runs code it does not trust in a child process twice: a user's Python file
(``check-impl``, ``bnderive.usercode.sandbox``) and the module ``emit`` is about to write
(``bnderive.emit.runner``).  Both children are built the same way, by this module:

* **the child side**, :func:`supervise`, runs in the child script as started (the
  *supervisor*).  It makes itself a *child subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``), so that
  every process the untrusted code starts, however often it forks and whatever session it makes
  for itself, is re-parented to the supervisor when its own parent exits; it asks the kernel for
  SIGTERM when bnderive dies (``PR_SET_PDEATHSIG``); it forks the *worker* (which runs the
  untrusted code and dies with the supervisor), waits for it, kills every descendant that is
  left, reports how the worker ended on a status pipe only it holds, and exits.  On SIGTERM (from
  bnderive, or from the kernel when bnderive dies) it kills every descendant, removes the working
  directory and exits.
* **the parent side** starts the supervisor in its own session with :func:`environment` (which
  marks every process of the tree with a token), stops it with :func:`stop` (SIGTERM, so that the
  supervisor kills its tree, then SIGKILL to the session), reads how the worker ended with
  :func:`read_status`, and as a last resort kills every process that still carries the token in
  its environment (:func:`sweep`): whatever escaped both the session and the supervisor (a
  grandchild in a new session that killed the supervisor first).

This file imports only the standard library: the child scripts load it by its path (they import
nothing else of bnderive), and the parents import it as ``bnderive.core.supervisor``.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from typing import NoReturn

#: The environment variable that marks every process of one supervised child (see ``sweep``).
TOKEN = "BNDERIVE_SANDBOX"

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

#: The exit code of a worker whose code raised (the supervisor reports it; nothing trusts it).
WORKER_FAILED = 70


def prctl(option: int, value: int) -> bool:
    """Linux's ``prctl(option, value)``; False where it is not available (the process group
    and ``sweep`` are the fallback there)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


# -- the child side ----------------------------------------------------------------------------------
def _children_map() -> dict[int, list[int]]:
    """Every process's children, from /proc (parent pid → pids)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # the command name may hold spaces and parentheses: the fields follow the last ")"
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(name))
    return children


def descendants(root: int) -> list[int]:
    """Every process below ``root`` in the process tree."""
    children = _children_map()
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def kill_descendants() -> None:
    """SIGKILL every descendant of this process and reap them, until none is left (a process
    that forks while being killed is found in the next round)."""
    me = os.getpid()
    for _ in range(200):
        pids = descendants(me)
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        reaped = False
        while True:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            reaped = True
        if not pids and not reaped:
            return
        if pids and not reaped:
            time.sleep(0.005)


def write_frame(fd: int, payload: bytes) -> None:
    """A frame: 10 ASCII digits giving the length, then the bytes."""
    data = b"%010d" % len(payload) + payload
    while data:
        data = data[os.write(fd, data) :]


def supervise(
    worker: Callable[[], object], workdir: str, status_fd: int = -1, close: tuple[int, ...] = ()
) -> NoReturn:
    """Run ``worker()`` in a forked worker process under this one, the supervisor; never returns.

    The worker exits 0 when ``worker`` returns and ``WORKER_FAILED`` when it raises (it may also
    end itself).  ``close`` are descriptors only the worker uses (the supervisor closes its
    copies, so that the parent sees them close when the worker ends); ``status_fd`` (closed in
    the worker) receives one frame, JSON ``{"exit": code}`` or ``{"signal": number}``, after the
    worker and everything it started are gone."""
    parent = os.getppid()
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    state = {"worker": 0}

    def terminate(signum: int, frame: object) -> None:
        if state["worker"]:
            with contextlib.suppress(OSError):
                os.kill(state["worker"], signal.SIGKILL)
        kill_descendants()
        shutil.rmtree(workdir, ignore_errors=True)
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # bnderive decides what Ctrl-C does
    if os.getppid() != parent:  # bnderive died before the death signal was asked for
        terminate(signal.SIGTERM, None)
    pid = os.fork()
    if pid == 0:
        code = WORKER_FAILED
        try:
            if status_fd >= 0:
                os.close(status_fd)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the worker dies with the supervisor
            worker()
            code = 0
        except BaseException:  # the worker's own failure: say it on stderr, exit WORKER_FAILED
            with contextlib.suppress(BaseException):
                import traceback

                traceback.print_exc()
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(BaseException):
                    stream.flush()
            os._exit(code)
    state["worker"] = pid
    for fd in close:
        with contextlib.suppress(OSError):
            os.close(fd)
    report: dict[str, int] = {}
    try:
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            report["signal"] = os.WTERMSIG(status)
        else:
            report["exit"] = os.WEXITSTATUS(status)
    except ChildProcessError:
        report["lost"] = 1
    state["worker"] = 0
    kill_descendants()
    if status_fd >= 0:
        with contextlib.suppress(OSError):
            write_frame(status_fd, json.dumps(report).encode())
    os._exit(0)


# -- the parent side ---------------------------------------------------------------------------------
def environment(token: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a supervised child: bnderive's own, without Python's and the test
    tools' settings (``PYTHONPATH`` kept), one BLAS thread (a thread pool reserves address space
    the memory limit would count), no bytecode files, and ``TOKEN=token``."""
    base = os.environ if base is None else base
    env = {
        k: v
        for k, v in base.items()
        if k == "PYTHONPATH" or not k.startswith(("PYTHON", "COV_", "PYTEST", TOKEN))
    }
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env[TOKEN] = token
    return env


def stop(proc: subprocess.Popen[bytes], grace: float = 2.0) -> None:
    """End a supervised child now: SIGTERM to the supervisor (it kills its whole tree, however
    the processes in it forked, and removes its directory), then SIGKILL to its session's group,
    whatever is left of it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    kill_group(proc)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL to the child's session group (it was started with ``start_new_session``)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def read_status(fd: int) -> dict[str, int]:
    """How the worker ended, from the supervisor's status pipe (``{}`` if it said nothing: it
    was killed, or the worker is still running); only integers are kept."""
    if fd < 0:
        return {}
    os.set_blocking(fd, False)
    try:
        data = os.read(fd, 4096)
    except (BlockingIOError, OSError):
        data = b""
    with contextlib.suppress(ValueError):
        report = json.loads(data[10:].decode("utf-8"))
        if isinstance(report, dict):
            return {
                k: v for k, v in report.items() if isinstance(v, int) and not isinstance(v, bool)
            }
    return {}


def sweep(token: str) -> None:
    """Kill every process whose environment carries ``TOKEN=token``: whatever escaped the
    supervisor (it was killed first) and the session (it made its own)."""
    marker = f"{TOKEN}={token}".encode()
    for _ in range(100):
        found = []
        try:
            names = os.listdir("/proc")
        except OSError:
            return
        for name in names:
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/environ", "rb") as f:
                    environ = f.read()
            except OSError:
                continue
            if marker in environ.split(b"\0"):
                found.append(int(name))
        if not found:
            return
        for pid in found:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)
