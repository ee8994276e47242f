"""The child process that runs an emitted module for ``bnderive emit``'s verification.

bnderive does not trust the module it is about to write: it is imported here, in a separate
process, never in bnderive's own.  This file is run as a script (``python -P child.py JOB``) and
imports only the standard library and NumPy (and numba, for the compiled run), never the rest of
bnderive.  It reads the job (JSON: the module's path, the inputs of each run), calls the module's
entry points on those inputs and writes back what they returned, raw: every array as its dtype,
shape and values (exact rationals as "p/q", floats as ``float.hex``).  It compares nothing and
decides nothing: the parent (``bnderive.emit.runner``) validates what comes back and compares it
with the ground truth itself.  Anything the module does in here (print, patch, crash) can at
worst make the parent's verification fail: the output file is not written.

``Exact`` (strict rationals for object arrays) and the plain-Python stand-in for numba live here
because the child needs them; bnderive's tests import them from here too.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import threading
import time
import types
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import numpy as np

#: The characters of an error message the child sends back.
ERROR_CHARS = 500


class Exact:
    """An exact rational for object arrays, with the ``sqrt`` that ``np.sqrt`` calls on object
    elements: the root of a perfect square, else ``ArithmeticError`` (no silent rounding)."""

    __slots__ = ("q",)

    def __init__(self, value: Any) -> None:
        self.q = value.q if isinstance(value, Exact) else Fraction(value)

    @staticmethod
    def _of(other: Any) -> Fraction:
        if isinstance(other, Exact):
            return other.q
        if isinstance(other, int | Fraction):
            return Fraction(other)
        raise TypeError(f"inexact operand {other!r} ({type(other).__name__}) in exact code")

    def __add__(self, other: Any) -> Exact:
        return Exact(self.q + self._of(other))

    __radd__ = __add__

    def __sub__(self, other: Any) -> Exact:
        return Exact(self.q - self._of(other))

    def __rsub__(self, other: Any) -> Exact:
        return Exact(self._of(other) - self.q)

    def __mul__(self, other: Any) -> Exact:
        return Exact(self.q * self._of(other))

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> Exact:
        return Exact(self.q / self._of(other))

    def __rtruediv__(self, other: Any) -> Exact:
        return Exact(self._of(other) / self.q)

    def __pow__(self, exponent: int) -> Exact:
        if not isinstance(exponent, int):
            raise TypeError(f"inexact exponent {exponent!r} in exact code")
        return Exact(self.q**exponent)

    def __neg__(self) -> Exact:
        return Exact(-self.q)

    def __pos__(self) -> Exact:
        return self

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Exact | int | Fraction) and self.q == self._of(other)

    def __hash__(self) -> int:
        return hash(self.q)

    def sqrt(self) -> Exact:
        n, d = self.q.numerator, self.q.denominator
        rn, rd = math.isqrt(n) if n >= 0 else -1, math.isqrt(d)
        if n < 0 or rn * rn != n or rd * rd != d:
            raise ArithmeticError(f"√{self.q} is not rational")
        return Exact(Fraction(rn, rd))

    def __repr__(self) -> str:
        return f"Exact({self.q})"


@contextlib.contextmanager
def plain_python_numba() -> Iterator[None]:
    """``import numba`` gives a stand-in: ``njit`` the identity, ``prange`` = ``range``, so that
    the printed kernel runs as plain Python (exactly, on object arrays)."""
    stub = types.ModuleType("numba")

    def njit(*args: Any, **kwargs: Any) -> Any:
        if args and callable(args[0]):
            return args[0]
        return lambda function: function

    stub.njit = njit  # type: ignore[attr-defined]
    stub.prange = range  # type: ignore[attr-defined]
    saved = sys.modules.get("numba")
    sys.modules["numba"] = stub
    try:
        yield
    finally:
        if saved is None:
            del sys.modules["numba"]
        else:
            sys.modules["numba"] = saved


def load_source(source: str, name: str, plain: bool = False) -> dict[str, Any]:
    """Import ``source`` in a fresh namespace (numba replaced by plain Python when ``plain``)."""
    namespace: dict[str, Any] = {"__name__": name}
    code = compile(source, f"<bnderive emit: {name}>", "exec")
    with plain_python_numba() if plain else contextlib.nullcontext():
        exec(code, namespace)  # noqa: S102 - this is the child: running the module is its job
    return namespace


# -- the channel: arrays as data --------------------------------------------------------------------
def decode(data: dict[str, Any]) -> Any:
    """An input of the job: an exact or float array, or a scalar (ε)."""
    kind = data["kind"]
    if "value" in data:  # a scalar
        return Exact(Fraction(data["value"])) if kind == "exact" else float.fromhex(data["value"])
    if kind == "exact":
        values = [Exact(Fraction(v)) for v in data["values"]]
        array = np.empty(len(values), dtype=object)
        array[:] = values
    else:
        array = np.array([float.fromhex(v) for v in data["values"]], dtype=kind)
    return array.reshape(data["shape"])


def _element(value: Any) -> str:
    if isinstance(value, Exact):
        return f"{value.q.numerator}/{value.q.denominator}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value}/1"
    return f"inexact {type(value).__name__}"  # the parent refuses it, naming the type


def encode(value: Any) -> dict[str, Any]:
    """A returned array as dtype, shape and values (exact "p/q", or float.hex)."""
    array = np.asarray(value)
    if array.dtype == object:
        values = [_element(v) for v in array.ravel()]
    elif array.dtype.kind in "fiu":
        values = [float(v).hex() for v in array.ravel()]
    else:
        values = []
    return {"dtype": str(array.dtype), "shape": list(array.shape), "values": values}


# -- one run: every entry point at one set of inputs --------------------------------------------------
#: BatchNorm's entry points: forward(x, gamma, beta, eps) -> (out, (xmu, mu, inv_std)) and
#: backward(...) -> (dx, dgamma, dbeta).  A run's "api" names another family's (RMSNorm has no β:
#: forward(x, gamma, eps) -> (out, (x, inv_rms)), backward(...) -> (dx, dgamma)).
BATCH_API: dict[str, Any] = {
    "beta": True,
    "cache": ["xmu", "mu", "inv_std"],
    "grads": ["dx", "dgamma", "dbeta"],
}


def _named(values: Any, names: list[str], what: str) -> list[tuple[str, Any]]:
    values = tuple(values)
    if len(values) != len(names):
        raise ValueError(f"{what} returned {len(values)} values, not {len(names)}")
    return list(zip(names, values, strict=True))


def run(
    module: dict[str, Any],
    inputs: dict[str, Any],
    rows: list[int | None],
    api: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """forward, backward and backward_cached (once per ``rows``) at ``inputs``, raw."""
    api = api or BATCH_API
    x, dout, gamma = (decode(inputs[k]) for k in ("x", "dout", "gamma"))
    eps = decode(inputs["eps"])
    outputs: dict[str, Any] = {}
    if api["beta"]:
        out, cache = module["forward"](x.copy(), gamma, decode(inputs["beta"]), eps)
    else:
        out, cache = module["forward"](x.copy(), gamma, eps)
    cached = _named(cache, api["cache"], "forward's cache")
    before = np.array(cached[0][1], copy=True)
    outputs["forward.out"] = encode(out)
    for name, value in cached:
        outputs[f"forward.{name}"] = encode(value)
    grads = api["grads"]
    for name, value in _named(
        module["backward"](dout.copy(), x.copy(), gamma, eps), grads, "backward"
    ):
        outputs[f"backward.{name}"] = encode(value)
    for r in rows:
        extra = {} if r is None else {"rows": r}
        values = module["backward_cached"](dout.copy(), cache, gamma, **extra)
        call = "backward_cached" if r is None else f"backward_cached[rows={r}]"
        for name, value in _named(values, grads, "backward_cached"):
            outputs[f"{call}.{name}"] = encode(value)
    first = api["cache"][0]
    outputs[f"cache.{first}_before"] = encode(before)
    outputs[f"cache.{first}_after"] = encode(cached[0][1])
    return outputs


def _watch_parent(workdir: str) -> None:
    """If bnderive dies (the kernel's SIGTERM on Linux, or a watchdog noticing the parent is
    gone), stop too and remove the job's directory."""
    import shutil

    parent = os.getppid()

    def leave(*_: Any) -> None:
        shutil.rmtree(workdir, ignore_errors=True)
        os._exit(70)

    signal.signal(signal.SIGTERM, leave)
    if os.getppid() != parent:
        leave()

    def watch() -> None:
        while True:
            time.sleep(0.25)
            if os.getppid() != parent:
                leave()

    threading.Thread(target=watch, daemon=True).start()


def _supervisor() -> Any:
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


def supervised(job_path: str, status_fd: int) -> None:
    """The job runs in a worker under ``bnderive.core.supervisor``'s supervisor (this process):
    every process the module starts is killed when the worker ends, however it forked."""
    workdir = os.path.dirname(os.path.abspath(job_path))
    _supervisor().supervise(lambda: main(job_path), workdir, status_fd)


def main(job_path: str) -> None:
    with open(job_path, encoding="utf-8") as handle:
        job = json.load(handle)
    _watch_parent(os.path.dirname(os.path.abspath(job_path)))
    with open(job["source"], encoding="utf-8") as handle:
        source = handle.read()
    modules: dict[str, dict[str, Any]] = {}
    results: dict[str, Any] = {}
    for spec in job["runs"]:
        kind = spec["module"]  # "plain": numba's njit the identity; "compiled": real numba
        try:
            if kind not in modules:
                try:
                    modules[kind] = load_source(source, job["name"], plain=kind == "plain")
                except Exception as exc:
                    raise ImportError(f"the module does not import: {exc!r}") from exc
            outputs = run(modules[kind], spec["inputs"], spec["rows"], spec.get("api"))
            results[spec["id"]] = {"ok": True, "outputs": outputs}
        except Exception as exc:  # the module failed: the parent reports it, never trusts it
            text = f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]
            results[spec["id"]] = {"ok": False, "error": text}
    temporary = job["result"] + ".part"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump({"runs": results}, handle)
    os.replace(temporary, job["result"])


if __name__ == "__main__":
    supervised(sys.argv[1], int(sys.argv[2]))
