"""The child process that runs a user's Python file: the only place bnderive executes user code.

Run as a script by ``sandbox.Sandbox`` (never imported by bnderive), it imports only the standard
library, NumPy, gmpy2 and ``exact_number`` (loaded by its path), never the rest of bnderive.  It
is two processes:

* the **supervisor** (this script as started), ``bnderive/core/supervisor.py``'s ``supervise``
  (loaded by its path; the same one runs ``emit``'s verification child): a child subreaper that
  forks the worker, waits for it, kills every process the user's code started, however often it
  forked or whatever session it made, reports how the worker ended on a status pipe only it
  holds, and exits; on SIGTERM (from bnderive, or the kernel when bnderive dies) it kills its
  whole tree and removes the working directory.
* the **worker**: resource limits (CPU time, address space, file size, no core files), then it
  loads the user's file and serves requests from the parent: each request is a list of steps
  (call this function of the file with these inputs, read this item of what it returned, send
  that value back), and the answer carries the raw values the steps asked to send.  The worker
  decides nothing: which functions exist, what is called with which inputs in which order, what
  the values mean, and every verdict are the parent's.  The user's code runs in this process and
  can change anything in it, so the parent trusts nothing the answer says but the raw values of
  the sends it asked for, validates those strictly, and treats anything else as "could not
  check".

The wire: a request or an answer is a frame, 10 ASCII digits giving the length, then that many
bytes of UTF-8 JSON.  Requests arrive on one inherited pipe, answers leave on another; both are
opened by the parent before the user's code runs.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys

#: Characters the user's code may print before the run is stopped.
OUTPUT_LIMIT = 1_000_000
#: What is kept of the captured output for messages.
SHOWN = 1500
#: The largest request the worker reads, in bytes.
REQUEST_LIMIT = 64 * 1024 * 1024
#: Array entries one answer may carry (a BatchNorm result at check-impl's shapes has < 100).
ENTRY_LIMIT = 1_000_000
#: How deep tuples, lists and dicts are described in an answer.
DEPTH_LIMIT = 3

#: The stand-in package a file with relative imports (``from .layers import x``) belongs to.
PACKAGE = "bnderive_user_package"

PR_SET_PDEATHSIG = 1


def _supervisor():  # noqa: ANN202 - the module loaded by its path
    """``bnderive/core/supervisor.py``, loaded by its path (this script imports nothing else of
    bnderive)."""
    import importlib.util

    core = os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(__file__))), "core")
    spec = importlib.util.spec_from_file_location(
        "bnderive_supervisor", os.path.join(core, "supervisor.py")
    )
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _prctl(option: int, value: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):  # not Linux: the process group is the fallback
        return False


# -- the wire ---------------------------------------------------------------------------------------
def write_frame(fd: int, payload: bytes, write=os.write) -> None:
    data = b"%010d" % len(payload) + payload
    while data:
        data = data[write(fd, data) :]


def read_exactly(fd: int, size: int, read=os.read) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int) -> bytes | None:
    head = read_exactly(fd, 10)
    if head is None or not head.isdigit():
        return None
    size = int(head)
    if size > REQUEST_LIMIT:
        return None
    return read_exactly(fd, size)


# -- the supervisor ----------------------------------------------------------------------------------
def supervise(argv: list[str]) -> None:
    """The user's file runs in a worker under ``bnderive.core.supervisor``'s supervisor."""
    request_fd, answer_fd, status_fd = (int(a) for a in argv[:3])
    workdir, limits = argv[3], json.loads(argv[4])
    _supervisor().supervise(
        lambda: work(request_fd, answer_fd, limits),
        workdir,
        status_fd,
        close=(request_fd, answer_fd),
    )


# -- the worker --------------------------------------------------------------------------------------
def _limit(memory: int, cpu: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    # a backstop for output written below sys.stdout (os.write, C extensions)
    limit = 16 * OUTPUT_LIMIT
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


class OutputLimit(BaseException):
    """The user's code printed more than OUTPUT_LIMIT characters (not an Exception, so that a
    bare ``except Exception`` in the user's code cannot swallow it)."""


class _Bounded:
    """A stand-in for sys.stdout/sys.stderr that keeps the start and stops a flood."""

    def __init__(self) -> None:
        self.kept: list[str] = []
        self.size = 0

    def write(self, text: str) -> int:
        text = str(text)
        self.size += len(text)
        if self.size > OUTPUT_LIMIT:
            raise OutputLimit(f"printed more than {OUTPUT_LIMIT:,} characters")
        if sum(len(t) for t in self.kept) < SHOWN:
            self.kept.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def text(self) -> str:
        return "".join(self.kept)[:SHOWN]


class StepError(Exception):
    """A step failed: the kind, the message, and the traceback trimmed to the user's frames."""

    def __init__(self, kind: str, message: str, trace: str = "") -> None:
        super().__init__(message)
        self.kind, self.message, self.trace = kind, message, trace


def work(request_fd: int, answer_fd: int, limits: dict) -> None:
    """Serve requests until the parent closes the pipe."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # dies with the supervisor
    _limit(int(limits["memory"]), int(limits["cpu"]))
    # What the worker needs, bound here before the user's code can replace the module globals.
    write, read, dumps, loads = os.write, os.read, json.dumps, json.loads
    send, receive, exit_now = write_frame, read_exactly, os._exit
    out, err = _Bounded(), _Bounded()
    sys.stdout, sys.stderr = out, err  # type: ignore[assignment]
    here = os.path.dirname(os.path.realpath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != here]
    server = Server()
    server.prepare()
    while True:
        head = receive(request_fd, 10, read)
        if head is None or not head.isdigit() or int(head) > REQUEST_LIMIT:
            exit_now(0)
        payload = receive(request_fd, int(head), read)
        if payload is None:
            exit_now(0)
        answer = server.answer(loads(payload.decode("utf-8")), out, err)
        try:
            data = dumps(answer, allow_nan=True).encode("utf-8")
        except (TypeError, ValueError, OutputLimit) as exc:  # pragma: no cover - defensive
            data = dumps({"id": answer.get("id"), "results": [], "error": {
                "kind": "encode", "message": f"the answer could not be written: {exc}",
                "trace": ""}}).encode("utf-8")  # fmt: skip
        send(answer_fd, data, write)


class Server:
    """The worker's state between requests: the user's module and the values the steps named."""

    def __init__(self) -> None:
        self.module = None
        self.path = ""
        self.env: dict = {}
        self.np = None
        self.exact_number = None
        self.saved: list[str] = []

    # -- loading --
    def prepare(self) -> None:
        """Import NumPy and the exact number type before the first request, so that a child
        started ahead of time (``sandbox.prestart``) has done it while it waited.  Nothing of
        the user's has run yet; a failure here (too little --memory) is left for ``load`` to
        meet again and report."""
        try:
            self.modules()
        except BaseException:  # noqa: BLE001 - reported by load, in the answer
            pass

    def modules(self) -> tuple:
        """NumPy and ``exact_number`` (loaded by its path, once)."""
        import importlib.util

        if self.exact_number is None:
            here = os.path.dirname(os.path.realpath(__file__))
            spec = importlib.util.spec_from_file_location(
                "bnderive_exact_number", os.path.join(here, "exact_number.py")
            )
            exact_number = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
            sys.modules[spec.name] = exact_number  # type: ignore[union-attr]
            spec.loader.exec_module(exact_number)  # type: ignore[union-attr]
            self.exact_number = exact_number
        import numpy as np

        self.np = np
        return np, self.exact_number

    def load(self, path: str, stubs: list[str], provide: list[str]) -> None:
        """Import the user's file: ``stubs`` are modules it imports that are not to be found
        (stand-ins whose functions raise when called), ``provide`` names bound to numpy before
        the file runs (a snippet from a post that uses np without importing it)."""
        import importlib.util

        np, _exact = self.modules()
        self.path = path
        sys.path.insert(0, os.path.dirname(path))
        user = importlib.util.spec_from_file_location("bnderive_user_impl", path)
        if user is None or user.loader is None:
            raise StepError("import", "it cannot be imported as a module (the suffix .py)")
        module = importlib.util.module_from_spec(user)
        sys.modules[user.name] = module
        packages = [name for name in stubs if name.startswith(PACKAGE)]
        if packages:
            # `from .layers import x`: the file is read as a module of a stand-in package (the
            # parent lists the one the file sits in first, then its parents and siblings)
            module.__package__ = packages[0]
        for name in stubs:
            sys.modules.setdefault(name, _stub_module(name))
        for name in provide:
            setattr(module, name, np)
        self.module = module
        name = os.path.basename(path)
        self.guarded(f"importing {name}", lambda: user.loader.exec_module(module))

    # -- a request --
    def answer(self, request: dict, out: _Bounded, err: _Bounded) -> dict:
        results: list = []
        error = None
        try:
            for step in request.get("steps", []):
                self.step(step, results)
        except StepError as exc:
            error = {"kind": exc.kind, "message": exc.message, "trace": exc.trace}
        except OutputLimit as exc:
            error = {"kind": "output", "message": str(exc), "trace": ""}
        conversions = {}
        if self.exact_number is not None:
            conversions = {
                str(k)[:80]: [str(v[0])[:200], str(v[1])[:20]]
                for k, v in list(self.exact_number.CONVERSIONS.items())[:50]
            }
        return {
            "id": request.get("id"),
            "results": results,
            "error": error,
            "stdout": out.text(),
            "stderr": err.text(),
            "conversions": conversions,
        }

    def step(self, step: dict, results: list) -> None:
        op = step["op"]
        what = step.get("what") or op
        if op == "load":
            self.load(step["file"], step.get("stubs", []), step.get("provide", []))
        elif op == "let":
            self.env[step["name"]] = self.guarded(what, lambda: self.value(step["value"]))
        elif op == "call":
            fn = self.guarded(what, lambda: self.value(step["fn"]))
            args = self.guarded(what, lambda: [self.value(a) for a in step.get("args", [])])
            kwargs = self.guarded(
                what, lambda: {k: self.value(v) for k, v in step.get("kwargs", {}).items()}
            )
            if "kwargs_from" in step:
                extra = self.guarded(what, lambda: dict(self.value(step["kwargs_from"])))
                kwargs.update(extra)
            if not callable(fn):
                raise StepError("missing", f"{what}: {type(fn).__name__} is not callable")
            value = self.guarded(what, lambda: fn(*args, **kwargs))
            if step.get("to"):
                self.env[step["to"]] = value
        elif op == "setattr":
            obj = self.value(step["obj"])
            value = self.value(step["value"])
            self.guarded(what, lambda: setattr(obj, step["name"], value))
        elif op == "setitem":
            obj = self.value(step["obj"])
            value = self.value(step["value"])
            self.guarded(what, lambda: obj.__setitem__(step["key"], value))
        elif op == "send":
            value = self.guarded(what, lambda: self.value(step["value"]))
            encoded = self.guarded(what, lambda: self.encode(value, 0, [0]))
            results.append([step["label"], encoded])
        elif op == "numpy":
            self.exact_numpy(bool(step["exact"]))
        elif op == "reset":
            self.exact_number.CONVERSIONS.clear()
        else:
            raise StepError("protocol", f"unknown step {op!r}")

    # -- values --
    def value(self, e: dict):
        np = self.np
        if "var" in e:
            if e["var"] not in self.env:
                raise StepError("missing", f"no value named {e['var']!r} (an earlier step failed)")
            return self.env[e["var"]]
        if "global" in e:
            name = e["global"]
            if not hasattr(self.module, name):
                raise StepError("missing", f"the file defines no {name!r}")
            return getattr(self.module, name)
        if "attr" in e:
            obj, name = e["attr"]
            return getattr(self.value(obj), name)
        if "item" in e:
            obj, key = e["item"]
            return self.value(obj)[key]
        if "lit" in e:
            return e["lit"]
        if "array" in e:
            spec = e["array"]
            return self.array(spec["kind"], spec["shape"], spec["data"])
        if "scalar" in e:
            spec = e["scalar"]
            return self.scalar(spec["kind"], spec["value"])
        if "dict" in e:
            return {k: self.value(v) for k, v in e["dict"].items()}
        if "tuple" in e:
            return tuple(self.value(v) for v in e["tuple"])
        if "list" in e:
            return [self.value(v) for v in e["list"]]
        if "astype" in e:
            value, dtype = e["astype"]
            if dtype not in ("float16", "float32", "float64"):
                raise StepError("protocol", f"unknown dtype {dtype!r}")
            return np.asarray(self.value(value), dtype=dtype)
        if "recorder" in e:
            return _Recorder()
        if "copy" in e:
            value = self.value(e["copy"])
            if isinstance(value, np.ndarray):
                return value.copy()
            if isinstance(value, dict):
                return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in value.items()}
            return value
        raise StepError("protocol", f"unknown value {sorted(e)!r}")

    def scalar(self, kind: str, text: str):
        from fractions import Fraction

        if kind == "exact":
            return self.exact_number.Exact(text)
        return (
            self.np.dtype(kind).type(Fraction(text)) if kind != "float" else float(Fraction(text))
        )

    def array(self, kind: str, shape: list, data: list):
        from fractions import Fraction

        np = self.np
        if kind == "exact":
            flat = np.empty(len(data), dtype=object)
            flat[:] = [self.exact_number.Exact(v) for v in data]
            return flat.reshape(shape)
        dtype = np.float64 if kind == "float" else np.dtype(kind)
        return np.array([float(Fraction(v)) for v in data], dtype=dtype).reshape(shape)

    def exact_numpy(self, on: bool) -> None:
        """While on, the module's global numpy is a proxy whose np.zeros, np.ones and np.empty
        without a dtype hold exact numbers, so that values the code writes into them stay
        exact (a float64 buffer would round them)."""
        np, module = self.np, self.module
        if on:
            proxy = _exact_numpy(np, self.exact_number.Exact)
            self.saved = [k for k, v in vars(module).items() if v is np]
            for k in self.saved:
                setattr(module, k, proxy)
        else:
            for k in self.saved:
                setattr(module, k, np)
            self.saved = []

    def encode(self, value, depth: int, count: list[int]):
        """A raw description of a value: arrays and numbers in full, containers to a depth."""
        np, exact = self.np, self.exact_number.Exact
        if value is None:
            return {"t": "none"}
        if isinstance(value, bool | np.bool_):
            return {"t": "bool", "v": bool(value)}
        if isinstance(value, exact):
            return {"t": "exact", "q": str(value)}
        if isinstance(value, int | np.integer):
            return {"t": "int", "v": str(int(value))}
        if isinstance(value, float | np.floating):
            dtype = "float64" if isinstance(value, float) else str(value.dtype)
            return {"t": "float", "dtype": dtype, "v": float(value)}
        if isinstance(value, np.ndarray):
            count[0] += value.size
            if count[0] > ENTRY_LIMIT:
                return {"t": "big", "shape": list(value.shape), "dtype": str(value.dtype)}
            kind = value.dtype.kind
            if kind in "fiub":
                flat = value.reshape(-1)
                return {
                    "t": "array",
                    "dtype": str(value.dtype),
                    "shape": list(value.shape),
                    # float16/float32 widen to float64 exactly
                    "data": flat.astype(np.float64).tolist()
                    if kind == "f"
                    else [int(v) for v in flat],
                }
            if kind == "O":
                return {
                    "t": "array",
                    "dtype": "object",
                    "shape": list(value.shape),
                    "data": [self.entry(v) for v in value.reshape(-1)],
                }
            return {"t": "array", "dtype": str(value.dtype)[:40], "shape": list(value.shape),
                    "data": None}  # fmt: skip
        if isinstance(value, tuple | list):
            kind = "tuple" if isinstance(value, tuple) else "list"
            if depth >= DEPTH_LIMIT:
                return {"t": kind, "len": len(value), "items": None}
            return {
                "t": kind,
                "len": len(value),
                "items": [self.encode(v, depth + 1, count) for v in value[:64]],
            }
        if isinstance(value, dict):
            keys = [k for k in list(value)[:64]]
            return {
                "t": "dict",
                "keys": [str(k)[:80] for k in keys],
                "items": None
                if depth >= DEPTH_LIMIT
                else [self.encode(value[k], depth + 1, count) for k in keys],
            }
        if isinstance(value, str):
            return {"t": "str", "len": len(value)}
        return {"t": "object", "class": type(value).__name__[:80]}

    def entry(self, v):
        np, exact = self.np, self.exact_number.Exact
        from fractions import Fraction

        if isinstance(v, exact):
            return ["q", str(v)]
        if isinstance(v, bool | np.bool_):
            return ["o", "bool"]
        if isinstance(v, int | np.integer):
            return ["q", str(int(v))]
        if isinstance(v, Fraction):
            return ["q", f"{v.numerator}/{v.denominator}"]
        if isinstance(v, float | np.floating):
            return ["f", float(v)]
        return ["o", type(v).__name__[:80]]

    # -- running the user's code --
    def guarded(self, what: str, call):
        """Run ``call``; anything it raises becomes a StepError naming ``what``."""
        NotExact = self.exact_number.NotExact if self.exact_number else ArithmeticError
        try:
            return call()
        except StepError:
            raise
        except OutputLimit as exc:
            raise StepError("output", f"{what} {exc}", self.trimmed(exc)) from None
        except SystemExit as exc:
            raise StepError(
                "exit", f"{what} called sys.exit({exc.code!r})", self.trimmed(exc)
            ) from None
        except MemoryError as exc:
            raise StepError(
                "memory",
                f"{what} ran out of memory (the limit is set by --memory)",
                self.trimmed(exc),
            ) from None
        except RecursionError as exc:
            raise StepError("exception", f"{what} recursed too deep", self.trimmed(exc)) from None
        except NotExact as exc:
            raise StepError("inexact", f"{what}: {exc}", self.trimmed(exc)) from None
        except SyntaxError as exc:
            where = f"line {exc.lineno}" + (f", column {exc.offset}" if exc.offset else "")
            raise StepError(
                "syntax", f"{what}: a syntax error at {where}: {exc.msg}", self.trimmed(exc)
            ) from None
        except ImportError as exc:
            raise StepError(
                "import", f"{what} failed: {type(exc).__name__}: {exc}", self.trimmed(exc)
            ) from None
        except BaseException as exc:  # the user's own exception  # noqa: BLE001
            raise StepError(
                "exception", f"{what} raised {type(exc).__name__}: {exc}", self.trimmed(exc)
            ) from None

    def trimmed(self, exc: BaseException) -> str:
        """The traceback of ``exc`` with only the frames in the user's file, and the exception."""
        import traceback

        try:
            path = os.path.realpath(self.path)
            frames = [
                f
                for f in traceback.extract_tb(exc.__traceback__)
                if os.path.realpath(f.filename) == path
            ]
            lines = traceback.format_list(frames)
            lines += traceback.format_exception_only(type(exc), exc)
            return "".join(lines).rstrip()[:4000]
        except BaseException:  # noqa: BLE001 - a hostile exception may break formatting
            return ""


class _Recorder:
    """A stand-in for the optimizer object a layer hands its gradients to
    (``self.gamma_opt.update(self.gamma, dgamma)``): whatever method is called records its
    arguments in ``args`` and returns the first (the parameter, unchanged)."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)

        def record(*args, **kwargs):
            self.__dict__["args"] = args
            return args[0] if args else None

        return record


def _stub_module(name: str):
    """A stand-in for a module the file imports but bnderive cannot find: every attribute is a
    function that raises when called, so code that does not use it runs."""
    import types

    class Stub(types.ModuleType):
        __path__: list = []

        def __getattr__(self, attr: str):
            if attr.startswith("__"):
                raise AttributeError(attr)

            def missing(*args, **kwargs):
                raise ImportError(f"{name}.{attr} is not available (the module was not found)")

            return missing

    return Stub(name)


def _exact_numpy(np, exact):
    import types

    class ExactNumpy(types.ModuleType):
        def __getattr__(self, name: str):
            return getattr(np, name)

        @staticmethod
        def _filled(shape, value, dtype):
            if dtype is not None:
                return np.full(shape, value, dtype=dtype)
            out = np.empty(shape, dtype=object)
            out[...] = exact(value)  # one immutable value: arithmetic returns new ones
            return out

        def zeros(self, shape, dtype=None, **kw):
            return self._filled(shape, 0, dtype) if not kw else np.zeros(shape, dtype, **kw)

        def empty(self, shape, dtype=None, **kw):
            return self._filled(shape, 0, dtype) if not kw else np.empty(shape, dtype, **kw)

        def ones(self, shape, dtype=None, **kw):
            return self._filled(shape, 1, dtype) if not kw else np.ones(shape, dtype, **kw)

    return ExactNumpy("numpy")


if __name__ == "__main__":
    supervise(sys.argv[1:])
