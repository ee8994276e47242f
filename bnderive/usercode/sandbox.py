"""Run a user's BatchNorm implementation in a guarded child process, exactly where it can be.

The child is this file run as a script (it imports only the standard library, NumPy and gmpy2,
never the rest of bnderive): it loads the user's file, calls the functions of its API on the
inputs of a job, and writes what they returned as JSON (exact values as strings like "3/7").
The parent (``run_job``) starts it with a timeout, an address-space limit and a file-size limit, in
a temporary working directory, with stdout and stderr captured; a child that hangs, exits,
floods its output or exhausts memory becomes an error report, never a traceback of bnderive.

Exactness: every input is an object array of ``Exact`` numbers, rationals that NumPy's object
loops can carry through ``np.sqrt``, ``np.mean``, ``np.var``, ``np.sum`` and ``**``: the square
root is exact because the inputs are chosen so that √(σ²+ε) is rational.  A float literal in the
user's code (0.5, 1e-5, ``1./N``) becomes exact on contact: a short decimal is read as that
decimal, a float that is the nearest double to a fraction with a small denominator (1/3) as that
fraction; anything else is kept as the exact value of the double and reported.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import traceback
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

try:  # C rationals: an order of magnitude faster than fractions.Fraction
    from gmpy2 import isqrt as _isqrt
    from gmpy2 import mpq as _Q
except ImportError:  # pragma: no cover - gmpy2 is a dependency
    _Q = Fraction  # type: ignore[assignment,misc]
    _isqrt = math.isqrt  # type: ignore[assignment]

#: Characters the user's code may print before the run is stopped.
OUTPUT_LIMIT = 1_000_000
#: What is shown of the captured output in a report.
SHOWN = 1500


# -- the exact number type -------------------------------------------------------------------------
class NotExact(ArithmeticError):
    """A value with no exact rational representation (an irrational root, NaN, ∞)."""


#: Float constants met during the run: (float, the fraction it was read as, how).
CONVERSIONS: dict[str, tuple[str, str]] = {}
#: "function/quantity" → the dtype of a result narrower than float64 (float32, float16): its
#: rounding is the code's choice, and the comparison allows for it.
PRECISION: dict[str, str] = {}


def _float_to_q(value: float | np.floating) -> Any:
    """A float met in the user's code as an exact rational (see the module docstring)."""
    f = float(value)
    if not math.isfinite(f):
        raise NotExact(f"{f} has no exact value")
    if f == int(f) and abs(f) < 2**53:
        return _Q(int(f))
    text = str(value)  # the shortest repr, for float32 too
    digits = text.lower().split("e")[0].lstrip("-").replace(".", "").lstrip("0")
    if len(digits) <= 12:
        return _Q(Fraction(text))
    kind = type(value) if isinstance(value, np.floating) else float
    for bound in (10, 100, 1000, 10_000, 100_000, 1_000_000):
        candidate = Fraction(f).limit_denominator(bound)
        if kind(candidate.numerator / candidate.denominator) == value:
            CONVERSIONS.setdefault(text, (str(candidate), "fraction"))
            return _Q(candidate)
    exact = Fraction(f)
    CONVERSIONS.setdefault(text, (str(exact), "binary"))
    return _Q(exact)


def _coerce(other: Any) -> Any:
    if isinstance(other, Exact):
        return other.q
    if isinstance(other, bool | int | np.integer):
        return _Q(int(other))
    if isinstance(other, float | np.floating):
        return _float_to_q(other)
    if isinstance(other, Fraction):
        return _Q(other.numerator, other.denominator)
    if type(other) is type(_Q(0)):
        return other
    return NotImplemented


def _exact_root(q: Any, k: int) -> Any:
    """The k-th root of a rational, or NotExact."""
    num, den = int(q.numerator), int(q.denominator)
    if num < 0 and k % 2 == 0:
        raise NotExact(f"even root of the negative number {num}/{den}")

    def root(a: int) -> int:
        r = int(_isqrt(a)) if k == 2 else round(a ** (1.0 / k))
        for cand in (r - 1, r, r + 1):
            if cand >= 0 and cand**k == a:
                return cand
        raise NotExact(f"the root of order {k} of {_q_text(q)} is not rational")

    sign = -1 if num < 0 else 1
    return _Q(sign * root(abs(num)), root(den))


class Exact:
    """An exact rational that NumPy object arrays can compute with."""

    __slots__ = ("q",)

    def __init__(self, value: Any = 0) -> None:
        if isinstance(value, str):
            self.q = _Q(Fraction(value))
        else:
            q = _coerce(value)
            if q is NotImplemented:
                raise TypeError(f"cannot make an exact number of {type(value).__name__}")
            self.q = q

    @classmethod
    def _of(cls, q: Any) -> Exact:
        out = cls.__new__(cls)
        out.q = q
        return out

    # arithmetic: the other operand is made exact first (floats on contact)
    def _binary(self, other: Any, op: Callable[[Any, Any], Any]) -> Any:
        o = _coerce(other)
        if o is NotImplemented:
            return NotImplemented
        return Exact._of(op(self.q, o))

    def __add__(self, o: Any) -> Any:
        return self._binary(o, lambda a, b: a + b)

    def __radd__(self, o: Any) -> Any:
        return self._binary(o, lambda a, b: b + a)

    def __sub__(self, o: Any) -> Any:
        return self._binary(o, lambda a, b: a - b)

    def __rsub__(self, o: Any) -> Any:
        return self._binary(o, lambda a, b: b - a)

    def __mul__(self, o: Any) -> Any:
        return self._binary(o, lambda a, b: a * b)

    def __rmul__(self, o: Any) -> Any:
        return self._binary(o, lambda a, b: b * a)

    def __truediv__(self, o: Any) -> Any:
        return self._binary(o, lambda a, b: a / b)

    def __rtruediv__(self, o: Any) -> Any:
        return self._binary(o, lambda a, b: b / a)

    def __neg__(self) -> Exact:
        return Exact._of(-self.q)

    def __pos__(self) -> Exact:
        return self

    def __abs__(self) -> Exact:
        return Exact._of(abs(self.q))

    def __pow__(self, exponent: Any) -> Any:
        e = _coerce(exponent)
        if e is NotImplemented:
            return NotImplemented
        p, k = int(e.numerator), int(e.denominator)
        base = self.q if k == 1 else _exact_root(self.q, k)
        if p < 0 and base == 0:
            raise ZeroDivisionError("0 to a negative power")
        return Exact._of(base**p)

    def __rpow__(self, base: Any) -> Any:
        b = _coerce(base)
        if b is NotImplemented:
            return NotImplemented
        return Exact._of(b) ** self

    # what NumPy's object loops call: np.sqrt, np.conjugate, .real (np.var), np.abs
    def sqrt(self) -> Exact:
        return Exact._of(_exact_root(self.q, 2))

    def conjugate(self) -> Exact:
        return self

    @property
    def real(self) -> Exact:
        return self

    @property
    def imag(self) -> Exact:
        return Exact._of(_Q(0))

    # comparisons and conversions
    def _compare(self, other: Any) -> Any:
        try:
            return _coerce(other)
        except NotExact:
            return NotImplemented

    def __eq__(self, o: object) -> bool:
        q = self._compare(o)
        return NotImplemented if q is NotImplemented else self.q == q

    def __lt__(self, o: Any) -> bool:
        q = self._compare(o)
        return NotImplemented if q is NotImplemented else self.q < q

    def __le__(self, o: Any) -> bool:
        q = self._compare(o)
        return NotImplemented if q is NotImplemented else self.q <= q

    def __gt__(self, o: Any) -> bool:
        q = self._compare(o)
        return NotImplemented if q is NotImplemented else self.q > q

    def __ge__(self, o: Any) -> bool:
        q = self._compare(o)
        return NotImplemented if q is NotImplemented else self.q >= q

    def __hash__(self) -> int:
        return hash(Fraction(int(self.q.numerator), int(self.q.denominator)))

    def __float__(self) -> float:
        return float(self.q)

    def __int__(self) -> int:
        return int(self.q)

    def __bool__(self) -> bool:
        return self.q != 0

    def __str__(self) -> str:
        return _q_text(self.q)

    __repr__ = __str__


def _q_text(q: Any) -> str:
    num, den = int(q.numerator), int(q.denominator)
    return str(num) if den == 1 else f"{num}/{den}"


# -- the child: guards -----------------------------------------------------------------------------
class OutputLimit(BaseException):
    """The user's code printed more than OUTPUT_LIMIT characters (not an Exception, so that a
    bare ``except Exception`` in the user's code cannot swallow it)."""


class _Bounded:
    """A stand-in for sys.stdout/sys.stderr that keeps the start and stops a flood."""

    def __init__(self) -> None:
        self.kept: list[str] = []
        self.size = 0

    def write(self, text: str) -> int:
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


class UserError(Exception):
    """Something the user's file did wrong, with the kind and the trimmed traceback."""

    def __init__(self, kind: str, message: str, trace: str = "") -> None:
        super().__init__(message)
        self.kind, self.message, self.trace = kind, message, trace


def _trimmed(exc: BaseException, path: str) -> str:
    """The traceback of ``exc`` with only the frames in the user's file, and the exception."""
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if os.path.realpath(f.filename) == os.path.realpath(path)
    ]
    lines = traceback.format_list(frames)
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines).rstrip()


def _guarded(path: str, what: str, call: Callable[[], Any]) -> Any:
    """Run ``call``; anything it raises becomes a UserError naming ``what``."""
    try:
        return call()
    except UserError:
        raise
    except OutputLimit as exc:
        raise UserError("output", f"{what} {exc}", _trimmed(exc, path)) from None
    except SystemExit as exc:
        raise UserError(
            "exit", f"{what} called sys.exit({exc.code!r})", _trimmed(exc, path)
        ) from None
    except MemoryError as exc:
        raise UserError(
            "memory",
            f"{what} ran out of memory (the limit is set by --memory)",
            _trimmed(exc, path),
        ) from None
    except RecursionError as exc:
        raise UserError("exception", f"{what} recursed too deep", _trimmed(exc, path)) from None
    except NotExact as exc:
        raise UserError("inexact", f"{what}: {exc}", _trimmed(exc, path)) from None
    except Exception as exc:  # the user's own exception
        raise UserError(
            "exception", f"{what} raised {type(exc).__name__}: {exc}", _trimmed(exc, path)
        ) from None


#: What to do about a file that is not Python source.
GIVE_PY = "give the path of the .py file that defines the BatchNorm functions"


class _ExactNumpy(types.ModuleType):
    """numpy for the exact run: arrays the code allocates with np.zeros, np.ones or np.empty
    and no dtype hold exact zeros and ones, so that values the code writes into them stay
    exact (a float64 buffer would round them); every other name is numpy's own."""

    def __init__(self) -> None:
        super().__init__("numpy")

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    @staticmethod
    def _filled(shape: Any, value: int, dtype: Any) -> np.ndarray:
        if dtype is not None:
            return np.full(shape, value, dtype=dtype)
        out = np.empty(shape, dtype=object)
        out[...] = Exact(value)  # one immutable value: arithmetic returns new ones
        return out

    def zeros(self, shape: Any, dtype: Any = None, **kw: Any) -> np.ndarray:
        return self._filled(shape, 0, dtype) if not kw else np.zeros(shape, dtype, **kw)

    def empty(self, shape: Any, dtype: Any = None, **kw: Any) -> np.ndarray:
        return self._filled(shape, 0, dtype) if not kw else np.empty(shape, dtype, **kw)

    def ones(self, shape: Any, dtype: Any = None, **kw: Any) -> np.ndarray:
        return self._filled(shape, 1, dtype) if not kw else np.ones(shape, dtype, **kw)


@contextmanager
def exact_allocation(module: Any) -> Iterator[None]:
    """While the exact run lasts, the module's global numpy is ``_ExactNumpy``."""
    names = [k for k, v in vars(module).items() if v is np]
    proxy = _ExactNumpy()
    for k in names:
        setattr(module, k, proxy)
    try:
        yield
    finally:
        for k in names:
            setattr(module, k, np)


def load_module(path: str) -> Any:
    name = Path(path).name
    spec = importlib.util.spec_from_file_location("bnderive_user_impl", path)
    if spec is None or spec.loader is None:
        raise UserError(
            "import",
            f"{name} is not a Python file: check-impl imports it as a module, which needs the "
            f"suffix .py; {GIVE_PY}",
        )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        data = Path(path).read_bytes()
        if b"\0" in data:
            raise UserError("import", f"{name} is a binary file (it has NUL bytes); {GIVE_PY}")
        source = data.decode("utf-8")
        compile(source, path, "exec")
    except SyntaxError as exc:
        where = f"line {exc.lineno}" + (f", column {exc.offset}" if exc.offset else "")
        text = (exc.text or "").rstrip("\n")
        caret = " " * max(0, (exc.offset or 1) - 1) + "^" if text else ""
        trace = f'  File "{path}", {where}\n    {text}\n    {caret}'.rstrip()
        raise UserError(
            "syntax", f"{Path(path).name} has a syntax error at {where}: {exc.msg}", trace
        ) from None
    except UnicodeDecodeError as exc:
        raise UserError(
            "import",
            f"{name} is not UTF-8 text (byte {exc.start} cannot be decoded: {exc.reason}), so not "
            f"Python source; {GIVE_PY}",
        ) from None
    except OSError as exc:
        raise UserError("import", f"{name} cannot be read ({exc.strerror}); {GIVE_PY}") from None

    def run() -> None:
        try:
            spec.loader.exec_module(module)  # type: ignore[union-attr]
        except ImportError as exc:
            raise UserError(
                "import",
                f"importing {Path(path).name} failed: {type(exc).__name__}: {exc}",
                _trimmed(exc, path),
            ) from None

    _guarded(path, f"importing {Path(path).name}", run)
    return module


# -- the child: APIs -------------------------------------------------------------------------------
CS231N = {
    "per-activation": ("batchnorm_forward", "batchnorm_backward", "batchnorm_backward_alt"),
    "spatial": ("spatial_batchnorm_forward", "spatial_batchnorm_backward", None),
}


def _functions(module: Any) -> list[str]:
    return sorted(
        name
        for name, value in vars(module).items()
        if callable(value)
        and not name.startswith("_")
        and getattr(value, "__module__", None) == module.__name__
    )


def _parameters(f: Any) -> list[str]:
    try:
        return list(inspect.signature(f).parameters)
    except (TypeError, ValueError):
        return []


def _arity(f: Any) -> int:
    return len(_parameters(f)) if callable(f) else 0


def _takes_eps(forward: Any) -> bool:
    """A forward(x, gamma, beta, eps), as posts write it, rather than CS231n's bn_param."""
    names = _parameters(forward)
    return len(names) >= 4 and ("eps" in names[3].lower() or names[3].lower() == "epsilon")


def resolve_api(module: Any, job: dict[str, Any]) -> dict[str, Any]:
    """Which functions to call: {"api": ..., "forward": name|None, "backward": [names]}."""
    api, function, mode = job.get("api"), job.get("function"), job["mode"]
    defined = _functions(module)
    listing = ", ".join(defined) if defined else "none"
    forward, backward, alt = CS231N[mode]
    if mode == "per-activation" and not hasattr(module, forward) and not function:
        spatial = [n for n in CS231N["spatial"] if n and hasattr(module, n)]
        if spatial:
            raise UserError(
                "missing",
                f"the file defines {' and '.join(spatial)} but not {forward}: add --mode spatial "
                "to check the SPATIAL (N,C,H,W) functions.",
            )
    if api is None:
        if function:
            api = "functional"
        elif hasattr(module, forward):
            api = "cs231n"
        elif _arity(getattr(module, backward, None)) >= 5:  # backward(x, gamma, beta, dout, eps)
            api, function = "functional", backward
        elif hasattr(module, backward):
            api = "cs231n"
        elif len(defined) == 1:
            api, function = "functional", defined[0]
        else:
            raise UserError(
                "api",
                f"cannot tell which API the file implements: it defines no {forward}/{backward} "
                f"pair (the CS231n API) and not exactly one function (functions found: {listing}). "
                "Name the function with --function NAME, or use --api.",
            )
    if api == "cs231n":
        names = [n for n in (backward, alt) if n and callable(getattr(module, n, None))]
        missing = [n for n in (forward,) if not callable(getattr(module, n, None))]
        if not names:
            missing.append(backward)
        if missing:
            raise UserError(
                "missing",
                f"the CS231n API in {mode} mode needs {forward} and {backward}"
                + (f" (or {alt})" if alt else "")
                + f"; the file does not define {' and '.join(missing)} (functions found: "
                f"{listing}).",
            )
        takes_eps = _takes_eps(getattr(module, forward))
        return {"api": "cs231n", "forward": forward, "backward": names, "forward_eps": takes_eps}
    if not function:
        if len(defined) != 1:
            raise UserError(
                "missing",
                f"the functional API needs the function's name: give --function NAME "
                f"(functions found: {listing}).",
            )
        function = defined[0]
    if not callable(getattr(module, function, None)):
        raise UserError(
            "missing", f"the file defines no function {function!r} (functions found: {listing})."
        )
    return {"api": "functional", "forward": None, "backward": [function]}


def _array(values: Any, kind: str) -> np.ndarray:
    if kind == "exact":
        return np.vectorize(Exact, otypes=[object])(np.array(values, dtype=object))
    return np.vectorize(lambda s: float(Fraction(s)), otypes=[float])(
        np.array(values, dtype=object)
    )


def _scalar(value: str, kind: str) -> Any:
    return Exact(value) if kind == "exact" else float(Fraction(value))


def _check_output(
    path: str, who: str, name: str, value: Any, shape: tuple[int, ...], kind: str
) -> tuple[list[Any], str | None]:
    """(the values as JSON, why the run is not exact or None); a wrong shape is a UserError."""
    try:
        arr = np.asarray(value, dtype=object if kind == "exact" else float)
    except (TypeError, ValueError) as exc:
        raise UserError(
            "type", f"{who} returned {name} of type {type(value).__name__}, not an array: {exc}"
        ) from None
    want = int(np.prod(shape))
    if arr.shape != shape:
        vector = len(shape) == 1 and arr.size == want and max(arr.shape, default=1) in (want, 1)
        if not vector:
            raise UserError(
                "shape",
                f"{who} returned {name} with shape {arr.shape}; expected {shape}"
                + (" (one value per feature/channel)" if len(shape) == 1 else " (the shape of x)"),
            )
        arr = arr.reshape(shape)
    if kind == "float":
        dtype = getattr(value, "dtype", None)
        if dtype is not None and np.issubdtype(dtype, np.floating) and dtype.itemsize < 8:
            PRECISION[f"{who}/{name}"] = str(dtype)
        bad = ~np.isfinite(arr)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise UserError(
                "nan",
                f"{who} returned {name} with non-finite values ({arr[where]} at {list(where)}) "
                "on finite inputs with ε > 0",
            )
        return arr.tolist(), None
    flat = []
    reason = None
    for v in arr.reshape(-1):
        if isinstance(v, Exact):
            flat.append(str(v))
        elif isinstance(v, bool | int | np.integer | Fraction):
            flat.append(str(Fraction(int(v)) if not isinstance(v, Fraction) else v))
        else:
            reason = (
                f"{name} has entries of type {type(v).__name__}: the code converts to floating "
                "point (e.g. astype(float), np.zeros(shape, dtype=float), math.sqrt)"
            )
            break
    return (np.array(flat, dtype=object).reshape(shape).tolist() if reason is None else []), reason


#: The running statistics a CS231n forward keeps in bn_param.
RUNNING = ("running_mean", "running_var")


def run_case(
    module: Any, path: str, calls: dict[str, Any], case: dict[str, Any], kind: str
) -> tuple[dict[str, dict[str, Any]], str | None, dict[str, Any]]:
    """Call the API on one case: {function: {quantity: values}}, why it is not exact, and what
    else the forward did: the running statistics it left in bn_param (``running``, None for the
    functional API), why those are not exact, and whether the backward was skipped because the
    test-mode forward returned no cache."""
    shape = tuple(case["shape"])
    channels = (shape[1],)
    x, dout = _array(case["x"], kind), _array(case["dout"], kind)
    gamma, beta = _array(case["gamma"], kind), _array(case["beta"], kind)
    eps = _scalar(case["eps"], kind)
    training = case["training"]
    running = (
        (_array(case["running_mean"], kind), _array(case["running_var"], kind))
        if case.get("running_mean") is not None
        else None
    )
    results: dict[str, dict[str, Any]] = {}
    reasons: list[str] = []
    extra: dict[str, Any] = {"running": None, "running_why_not_exact": None, "skipped": False}

    def take(who: str, name: str, value: Any, want: tuple[int, ...]) -> None:
        values, reason = _check_output(path, who, name, value, want, kind)
        results.setdefault(who, {})[name] = values
        if reason:
            reasons.append(f"{who}: {reason}")

    def unpack(who: str, value: Any, names: tuple[str, ...]) -> tuple[Any, ...]:
        if not isinstance(value, tuple | list) or len(value) != len(names):
            got = (
                f"a {type(value).__name__} of length {len(value)}"
                if isinstance(value, tuple | list)
                else f"{type(value).__name__}"
            )
            raise UserError(
                "arity",
                f"{who} must return ({', '.join(names)}), a tuple of {len(names)}; it returned {got}",
            )
        return tuple(value)

    if calls["api"] == "cs231n":
        fwd = getattr(module, calls["forward"])

        if calls.get("forward_eps"):  # forward(x, gamma, beta, eps): no bn_param, no running stats
            if not training:
                raise UserError(
                    "api",
                    f"{calls['forward']} takes eps, not bn_param, so it has no eval (test) mode; "
                    "leave out --eval, or give the forward a bn_param with 'mode' and the "
                    "running statistics",
                )
            running = None

        def forward() -> tuple[tuple[Any, ...], dict[str, Any]]:
            if calls.get("forward_eps"):
                who = f"{calls['forward']}(x, gamma, beta, eps)"
                value = _guarded(path, who, lambda: fwd(x.copy(), gamma.copy(), beta.copy(), eps))
                return unpack(calls["forward"], value, ("out", "cache")), {}
            param: dict[str, Any] = {"mode": "train" if training else "test", "eps": eps}
            if case.get("momentum") is not None:  # only when a convention is declared
                param["momentum"] = _scalar(case["momentum"], kind)
            if running is not None:
                param["running_mean"], param["running_var"] = (a.copy() for a in running)
            who = f"{calls['forward']}(x, gamma, beta, bn_param)"
            value = _guarded(path, who, lambda: fwd(x.copy(), gamma.copy(), beta.copy(), param))
            return unpack(calls["forward"], value, ("out", "cache")), param

        for number, name in enumerate(calls["backward"]):
            (out, cache), param = forward()
            if number == 0:
                take(calls["forward"], "out", out, shape)
                if running is not None:
                    extra["running"], extra["running_why_not_exact"] = _take_running(
                        path, calls["forward"], param, channels, kind
                    )
            if not training and cache is None:
                # CS231n's backward is written for training mode; a test-mode forward that
                # returns no cache says so, and its backward is not called.
                extra["skipped"] = True
                break
            bwd = getattr(module, name)
            value = _guarded(path, f"{name}(dout, cache)", lambda: bwd(dout.copy(), cache))  # noqa: B023
            dx, dgamma, dbeta = unpack(name, value, ("dx", "dgamma", "dbeta"))
            take(name, "dx", dx, shape)
            take(name, "dgamma", dgamma, channels)
            take(name, "dbeta", dbeta, channels)
    else:
        name = calls["backward"][0]
        f = getattr(module, name)
        args = [x.copy(), gamma.copy(), beta.copy(), dout.copy(), eps]
        if running is not None and not training:
            args += [a.copy() for a in running]
        signature = "x, gamma, beta, dout, eps" + (
            ", running_mean, running_var" if not training else ""
        )
        value = _guarded(path, f"{name}({signature})", lambda: f(*args))
        dx, dgamma, dbeta = unpack(name, value, ("dx", "dgamma", "dbeta"))
        take(name, "dx", dx, shape)
        take(name, "dgamma", dgamma, channels)
        take(name, "dbeta", dbeta, channels)
    return results, ("; ".join(reasons) or None), extra


def _take_running(
    path: str, who: str, param: dict[str, Any], channels: tuple[int, ...], kind: str
) -> tuple[dict[str, Any], str | None]:
    """The running statistics the forward left in bn_param, one value per feature/channel, and
    why they are not exact (None when they are)."""
    if not all(key in param for key in RUNNING):
        missing = [key for key in RUNNING if key not in param]
        raise UserError(
            "running",
            f"{who} removed {' and '.join(missing)} from bn_param; keep the running statistics "
            "in bn_param (updated in training mode, read in test mode)",
        )
    out: dict[str, Any] = {}
    reasons = []
    for key in RUNNING:
        out[key], reason = _check_output(
            path, who, f"bn_param['{key}']", param[key], channels, kind
        )
        reasons += [reason] if reason else []
    return out, ("; ".join(reasons) or None)


def child(job_path: str) -> None:
    """The child's entry point: run the job, write the result file, never raise."""
    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    out, err = _Bounded(), _Bounded()
    sys.stdout, sys.stderr = out, err  # type: ignore[assignment]
    path = job["file"]
    here = os.path.dirname(os.path.realpath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != here]
    sys.path.insert(0, os.path.dirname(path))
    result: dict[str, Any]
    try:
        module = load_module(path)
        calls = resolve_api(module, job)
        cases = []
        for case in job["cases"]:
            CONVERSIONS.clear()
            PRECISION.clear()
            floats, _, extra = run_case(module, path, calls, case, "float")
            exact_extra: dict[str, Any] = {"running": None, "running_why_not_exact": None}
            try:
                with exact_allocation(module):
                    exact, reason, exact_extra = run_case(module, path, calls, case, "exact")
            except UserError as exc:
                if exc.kind in ("output", "exit", "memory"):
                    raise
                # the float run worked: the exact type is what failed
                exact, reason = {}, exc.message
                exact_extra["running_why_not_exact"] = exc.message
            running_reason = exact_extra["running_why_not_exact"]
            cases.append(
                {
                    "float": floats,
                    "exact": exact if reason is None else None,
                    "why_not_exact": reason,
                    "conversions": dict(CONVERSIONS),
                    "precision": dict(PRECISION),
                    # the running statistics are exact or not on their own: a backward that
                    # converts to float does not make the forward's update inexact
                    "running": None
                    if extra["running"] is None
                    else {
                        "float": extra["running"],
                        "exact": exact_extra["running"] if running_reason is None else None,
                        "why_not_exact": running_reason,
                    },
                    "backward_skipped": extra["skipped"],
                }
            )
        result = {"ok": True, "calls": calls, "cases": cases}
    except UserError as exc:
        result = {"ok": False, "kind": exc.kind, "message": exc.message, "trace": exc.trace}
    except OutputLimit as exc:  # printed while bnderive was formatting: still the user's
        result = {"ok": False, "kind": "output", "message": str(exc), "trace": ""}
    result["stdout"] = out.text()
    result["stderr"] = err.text()
    Path(job["result"]).write_text(json.dumps(result), encoding="utf-8")


# -- the parent ------------------------------------------------------------------------------------
class SandboxFailure(Exception):
    """The child did not report: it hung, was killed, or exited on its own."""

    def __init__(self, kind: str, message: str, output: str = "") -> None:
        super().__init__(message)
        self.kind, self.message, self.output = kind, message, output


def _limits(memory: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        # a backstop for output written below sys.stdout (os.write, C extensions)
        limit = 16 * OUTPUT_LIMIT
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def run_job(job: dict[str, Any], timeout: float, memory: int) -> dict[str, Any]:
    """Run ``job`` in a child process; its result, or SandboxFailure."""
    workdir = tempfile.mkdtemp(prefix="bnderive-impl-")
    try:
        job = dict(job, result=os.path.join(workdir, "result.json"))
        job_path = os.path.join(workdir, "job.json")
        Path(job_path).write_text(json.dumps(job), encoding="utf-8")
        env = {
            k: v
            for k, v in os.environ.items()
            if k == "PYTHONPATH" or not k.startswith(("PYTHON", "COV_", "PYTEST"))
        }
        # one thread each: BLAS thread pools reserve address space the limit would count
        env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        stdout_path, stderr_path = (os.path.join(workdir, n) for n in ("stdout", "stderr"))
        with open(stdout_path, "wb") as so, open(stderr_path, "wb") as se:
            proc = subprocess.Popen(
                [sys.executable, os.path.realpath(__file__), job_path],
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=so,
                stderr=se,
                env=env,
                preexec_fn=_limits(memory),
                start_new_session=True,
            )
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                raise SandboxFailure(
                    "timeout",
                    f"did not finish within {timeout:g} s (an infinite loop, or too slow on "
                    "object arrays of exact numbers); the limit is set by --timeout",
                    _tail(stdout_path) + _tail(stderr_path),
                ) from None
            _kill_group(proc)  # anything the user's code left running
        result_path = job["result"]
        if os.path.exists(result_path):
            try:
                return json.loads(Path(result_path).read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                pass
        code = proc.returncode
        output = _tail(stdout_path) + _tail(stderr_path)
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            why = {
                "SIGXFSZ": "it wrote more output than the limit",
                "SIGKILL": "it was killed (out of memory?)",
                "SIGSEGV": "it crashed (segmentation fault)",
            }.get(name, "")
            raise SandboxFailure(
                "signal", f"was stopped by {name}" + (f": {why}" if why else ""), output
            )
        if os.path.getsize(stdout_path) + os.path.getsize(stderr_path) > 8 * OUTPUT_LIMIT:
            raise SandboxFailure("output", "flooded its output", output)
        raise SandboxFailure(
            "exit",
            f"exited with code {code} before reporting a result (os._exit, or a crash)",
            output,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _tail(path: str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read(SHOWN)
    except OSError:
        return ""
    return data.decode("utf-8", "replace")


if __name__ == "__main__":
    child(sys.argv[1])
