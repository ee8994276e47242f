"""Calling a user's BatchNorm functions through the sandbox: every decision is the parent's.

``resolve_api`` decides from the parsed file (``layout``) which API it implements and which
functions are called; ``run_case`` builds the steps for one input point (inputs, the calls in
order, what is sent back), sends them to the child, and turns the raw values that come back into
arrays, checking each against what was asked: a tuple of the right length, an array of the right
shape, finite numbers.  A value that is not what was asked is an ImplementationError (exit 2),
never a skip.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from bnderive.usercode.layout import Function, ImplementationError, Source
from bnderive.usercode.sandbox import FLOAT_DTYPES, INT_DTYPES, Opaque, Raw, Sandbox

CS231N = {
    "per-activation": ("batchnorm_forward", "batchnorm_backward", "batchnorm_backward_alt"),
    "spatial": ("spatial_batchnorm_forward", "spatial_batchnorm_backward", None),
}


class UserFailure(Exception):
    """The user's code failed or returned something unusable in one call: the message, and its
    own traceback trimmed to the frames in the file."""

    def __init__(self, kind: str, message: str, trace: str = "", output: str = "") -> None:
        super().__init__(message)
        self.kind, self.message, self.trace, self.output = kind, message, trace, output


@dataclass
class Calls:
    """What the parent decided to call."""

    api: str  # "cs231n" | "functional"
    forward: str | None
    backward: list[str]
    forward_eps: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "api": self.api,
            "forward": self.forward,
            "backward": list(self.backward),
            "forward_eps": self.forward_eps,
        }


def _takes_eps(forward: Function | None) -> bool:
    """A forward(x, gamma, beta, eps), as posts write it, rather than CS231n's bn_param."""
    if forward is None:
        return False
    names = forward.params
    return len(names) >= 4 and ("eps" in names[3].lower() or names[3].lower() == "epsilon")


def resolve_api(source: Source, api: str | None, function: str | None, mode: str) -> Calls:
    """Which functions to call, decided from the file as written (nothing is imported)."""
    defined = source.functions
    listing = source.listing()
    forward, backward, alt = CS231N[mode]

    def has(name: str | None) -> bool:
        return name is not None and (name in defined or name in source.classes)

    if mode == "per-activation" and not has(forward) and not function:
        spatial = [n for n in CS231N["spatial"] if n and has(n)]
        if spatial:
            raise ImplementationError(
                f"{source.name}: the file defines {' and '.join(spatial)} but not {forward}: add "
                "--mode spatial to check the SPATIAL (N,C,H,W) functions."
            )
    public = [n for n in defined if not n.startswith("_")] + [
        n for n in source.classes if not n.startswith("_")
    ]
    if api is None:
        if function:
            api = "functional"
        elif has(forward):
            api = "cs231n"
        elif backward in defined and len(defined[backward].params) >= 5:
            api, function = "functional", backward  # backward(x, gamma, beta, dout, eps)
        elif has(backward):
            api = "cs231n"
        elif len(public) == 1:
            api, function = "functional", public[0]
        else:
            raise ImplementationError(
                f"{source.name}: cannot tell which API the file implements: it defines no "
                f"{forward}/{backward} pair (the CS231n API) and not exactly one function "
                f"(functions found: {listing}). Name the function with --function NAME, or use "
                "--api."
            )
    if api == "cs231n":
        names = [n for n in (backward, alt) if has(n)]
        missing = [n for n in (forward,) if not has(n)]
        if not names:
            missing.append(backward)
        if missing:
            raise ImplementationError(
                f"{source.name}: the CS231n API in {mode} mode needs {forward} and {backward}"
                + (f" (or {alt})" if alt else "")
                + f"; the file does not define {' and '.join(missing)} (functions found: "
                f"{listing})."
            )
        return Calls("cs231n", forward, names, _takes_eps(defined.get(forward)))
    if not function:
        if len(public) != 1:
            raise ImplementationError(
                f"{source.name}: the functional API needs the function's name: give --function "
                f"NAME (functions found: {listing})."
            )
        function = public[0]
    if not has(function):
        raise ImplementationError(
            f"{source.name}: the file defines no function {function!r} (functions found: "
            f"{listing})."
        )
    return Calls("functional", None, [function])


# -- the steps ---------------------------------------------------------------------------------------
def _var(name: str) -> dict[str, Any]:
    return {"var": name}


def _copy(name: str) -> dict[str, Any]:
    return {"copy": {"var": name}}


def _array_step(name: str, values: Any, kind: str) -> dict[str, Any]:
    arr = np.asarray(values, dtype=object)
    data = [_text(v) for v in arr.reshape(-1)]
    return {"op": "let", "name": name,
            "value": {"array": {"kind": kind, "shape": list(arr.shape), "data": data}}}  # fmt: skip


def _scalar_step(name: str, value: Any, kind: str) -> dict[str, Any]:
    return {"op": "let", "name": name, "value": {"scalar": {"kind": kind, "value": _text(value)}}}


def _text(value: Any) -> str:
    q = Fraction(value)
    return str(q.numerator) if q.denominator == 1 else f"{q.numerator}/{q.denominator}"


def load(box: Sandbox, source: Source, stubs: list[str] = (), provide: list[str] = ()) -> None:  # type: ignore[assignment]
    """Import the user's file in the child; a UserFailure when importing it fails."""
    step = {"op": "load", "file": str(source.path.resolve()), "stubs": list(stubs),
            "provide": list(provide), "what": f"importing {source.name}"}  # fmt: skip
    answer = box.request([step], [])
    if answer.error is not None:
        raise UserFailure(
            answer.error["kind"], answer.error["message"], answer.error["trace"], answer.output
        )


@dataclass
class Run:
    """The results of one case in one arithmetic (float or exact): function → quantity → array
    (float64, or Fraction objects), the dtype each result came back in, why the run is not
    exact (None when it is), and the running statistics the forward left in bn_param."""

    values: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    dtypes: dict[str, str] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    running: dict[str, np.ndarray] | None = None
    running_reasons: list[str] = field(default_factory=list)
    running_dtypes: dict[str, str] = field(default_factory=dict)
    skipped: bool = False
    conversions: dict[str, tuple[str, str]] = field(default_factory=dict)


class Caller:
    """Runs one case through the child: the parent's program for the resolved API."""

    def __init__(self, box: Sandbox, calls: Calls, mode: str) -> None:
        self.box, self.calls, self.mode = box, calls, mode

    def request(self, steps: list[dict[str, Any]], labels: list[str]) -> dict[str, Raw]:
        answer = self.box.request(steps, labels)
        self.conversions.update(answer.conversions)
        if answer.error is not None:
            raise UserFailure(
                answer.error["kind"], answer.error["message"], answer.error["trace"], answer.output
            )
        return answer.values

    def run(self, case: Any, kind: str, momentum: str | None) -> Run:
        """Call the API on one case in ``kind`` arithmetic ("float" or "exact")."""
        self.conversions: dict[str, tuple[str, str]] = {}
        run = Run()
        spec = case.spec
        shape, channels = tuple(spec.shape), (spec.c,)
        training = spec.training
        inputs = [
            {"op": "reset"},
            {"op": "numpy", "exact": kind == "exact"},
            _array_step("x", case.x, kind),
            _array_step("dout", case.g, kind),
            _array_step("gamma", np.array(case.gamma, dtype=object), kind),
            _array_step("beta", np.array(case.beta, dtype=object), kind),
            _scalar_step("eps", case.eps, kind),
        ]
        has_running = bool(case.running_mean)
        if has_running:
            inputs += [
                _array_step("running_mean", np.array(case.running_mean, dtype=object), kind),
                _array_step("running_var", np.array(case.running_var, dtype=object), kind),
            ]
        if momentum is not None:
            inputs.append(_scalar_step("momentum", Fraction(momentum), kind))
        self.request(inputs, [])
        calls = self.calls

        def take(who: str, name: str, raw: Raw, want: tuple[int, ...]) -> None:
            values, dtype, reason = to_array(who, name, raw, want, kind)
            run.values.setdefault(who, {})[name] = values
            run.dtypes[f"{who}/{name}"] = dtype
            if reason:
                run.reasons.append(f"{who}: {reason}")

        if calls.api == "cs231n":
            assert calls.forward is not None
            forward = calls.forward
            if calls.forward_eps and not training:
                raise ImplementationError(
                    f"{forward} takes eps, not bn_param, so it has no eval (test) mode; leave "
                    "out --eval, or give the forward a bn_param with 'mode' and the running "
                    "statistics"
                )
            for number, name in enumerate(calls.backward):
                steps: list[dict[str, Any]] = []
                if calls.forward_eps:
                    who = f"{forward}(x, gamma, beta, eps)"
                    args = [_copy("x"), _copy("gamma"), _copy("beta"), _var("eps")]
                    labels = ["forward"]
                else:
                    who = f"{forward}(x, gamma, beta, bn_param)"
                    param: dict[str, Any] = {
                        "mode": {"lit": "train" if training else "test"},
                        "eps": _var("eps"),
                    }
                    if momentum is not None:
                        param["momentum"] = _var("momentum")
                    if has_running:
                        param["running_mean"] = _copy("running_mean")
                        param["running_var"] = _copy("running_var")
                    steps.append({"op": "let", "name": "param", "value": {"dict": param}})
                    args = [_copy("x"), _copy("gamma"), _copy("beta"), _var("param")]
                    labels = ["forward", "param"]
                steps.append({"op": "call", "fn": {"global": forward}, "args": args,
                              "to": "forward", "what": who})  # fmt: skip
                steps.append({"op": "send", "label": "forward", "value": _var("forward"),
                              "what": who})  # fmt: skip
                if "param" in labels:
                    steps.append({"op": "send", "label": "param", "value": _var("param"),
                                  "what": who})  # fmt: skip
                values = self.request(steps, labels)
                out, cache = unpack(forward, values["forward"], ("out", "cache"))
                if number == 0:
                    take(forward, "out", out, shape)
                    if has_running and "param" in values:
                        run.running, reasons, run.running_dtypes = take_running(
                            forward, values["param"], channels, kind
                        )
                        run.running_reasons += reasons
                if not training and cache.t == "none":
                    # CS231n's backward is written for training mode; a test-mode forward that
                    # returns no cache says so, and its backward is not called.
                    run.skipped = True
                    break
                who = f"{name}(dout, cache)"
                values = self.request(
                    [
                        {"op": "call", "fn": {"global": name},
                         "args": [_copy("dout"), {"item": [_var("forward"), 1]}],
                         "to": "backward", "what": who},
                        {"op": "send", "label": "backward", "value": _var("backward"), "what": who},
                    ],
                    ["backward"],
                )  # fmt: skip
                dx, dgamma, dbeta = unpack(name, values["backward"], ("dx", "dgamma", "dbeta"))
                take(name, "dx", dx, shape)
                take(name, "dgamma", dgamma, channels)
                take(name, "dbeta", dbeta, channels)
        else:
            name = calls.backward[0]
            args = [_copy("x"), _copy("gamma"), _copy("beta"), _copy("dout"), _var("eps")]
            if has_running and not training:
                args += [_copy("running_mean"), _copy("running_var")]
            signature = "x, gamma, beta, dout, eps" + (
                ", running_mean, running_var" if not training else ""
            )
            who = f"{name}({signature})"
            values = self.request(
                [
                    {"op": "call", "fn": {"global": name}, "args": args, "to": "result",
                     "what": who},
                    {"op": "send", "label": "result", "value": _var("result"), "what": who},
                ],
                ["result"],
            )  # fmt: skip
            dx, dgamma, dbeta = unpack(name, values["result"], ("dx", "dgamma", "dbeta"))
            take(name, "dx", dx, shape)
            take(name, "dgamma", dgamma, channels)
            take(name, "dbeta", dbeta, channels)
        run.conversions = dict(self.conversions)
        return run


def unpack(who: str, raw: Raw, names: tuple[str, ...]) -> tuple[Raw, ...]:
    """The items of a returned tuple, checked to be as many as ``names``."""
    if raw.t not in ("tuple", "list") or raw.length != len(names) or raw.items is None:
        got = raw.describe() if raw.t in ("tuple", "list") else _type_name(raw)
        raise UserFailure(
            "arity",
            f"{who} must return ({', '.join(names)}), a tuple of {len(names)}; it returned {got}",
        )
    return raw.items


def _type_name(raw: Raw) -> str:
    return {
        "none": "NoneType",
        "array": "ndarray",
        "big": "ndarray",
        "exact": "number",
        "object": raw.cls or "object",
    }.get(raw.t, raw.t)


def take_running(
    who: str, param: Raw, channels: tuple[int, ...], kind: str
) -> tuple[dict[str, np.ndarray], list[str], dict[str, str]]:
    """The running statistics the forward left in bn_param, why they are not exact, and the
    dtypes they came back in."""
    keys = param.keys or ()
    missing = [k for k in ("running_mean", "running_var") if k not in keys]
    if param.t != "dict" or missing or param.items is None:
        raise UserFailure(
            "running",
            f"{who} removed {' and '.join(missing) or 'the running statistics'} from bn_param; "
            "keep the running statistics in bn_param (updated in training mode, read in test "
            "mode)",
        )
    out, reasons, dtypes = {}, [], {}
    for key in ("running_mean", "running_var"):
        raw = param.items[keys.index(key)]
        values, dtype, reason = to_array(who, f"bn_param['{key}']", raw, channels, kind)
        out[key], dtypes[key] = values, dtype
        reasons += [reason] if reason else []
    return out, reasons, dtypes


def _stack(raw: Raw) -> tuple[list[Any], tuple[int, ...], str] | None:
    """A scalar, an array, or nested lists/tuples of them as (flat entries, shape, dtype)."""
    if raw.t in ("exact", "int"):
        return [raw.value], (), "object"
    if raw.t == "bool":
        return [Opaque("bool")], (), "object"
    if raw.t == "float":
        return [raw.value], (), raw.dtype or "float64"
    if raw.t == "array" and raw.data is not None and raw.shape is not None:
        if raw.dtype in INT_DTYPES:  # integers are exact numbers
            return [Fraction(int(v)) for v in raw.data], raw.shape, "object"
        return list(raw.data), raw.shape, raw.dtype or "object"
    if raw.t in ("tuple", "list") and raw.items is not None and raw.length == len(raw.items):
        parts = [_stack(item) for item in raw.items]
        if not parts or any(p is None for p in parts):
            return None
        shapes = {p[1] for p in parts}  # type: ignore[index]
        if len(shapes) != 1:
            return None
        dtypes = {p[2] for p in parts}  # type: ignore[index]
        dtype = dtypes.pop() if len(dtypes) == 1 else "object"
        flat = [v for p in parts for v in p[0]]  # type: ignore[index]
        return flat, (len(parts), *shapes.pop()), dtype
    return None


def to_array(
    who: str, name: str, raw: Raw, shape: tuple[int, ...], kind: str
) -> tuple[np.ndarray, str, str | None]:
    """The value as an array of ``shape`` (float64, or Fraction objects in the exact run), the
    dtype it came back in, and why it is not exact (None when it is)."""
    stacked = _stack(raw)
    if stacked is None or (
        raw.t == "array" and raw.dtype not in FLOAT_DTYPES + INT_DTYPES + ("object",)
    ):
        raise UserFailure(
            "type", f"{who} returned {name} as {raw.describe()}, not an array of numbers"
        )
    flat, got, dtype = stacked
    want = int(np.prod(shape))
    if got != shape:
        vector = len(shape) == 1 and len(flat) == want and max(got, default=1) in (want, 1)
        if not vector:
            raise UserFailure(
                "shape",
                f"{who} returned {name} with shape {got}; expected {shape}"
                + (" (one value per feature/channel)" if len(shape) == 1 else " (the shape of x)"),
            )
    if kind == "float":
        if any(isinstance(v, Opaque) for v in flat):
            kinds = sorted({v.type for v in flat if isinstance(v, Opaque)})
            raise UserFailure(
                "type", f"{who} returned {name} with entries of type {', '.join(kinds)}"
            )
        arr = np.array([float(v) for v in flat], dtype=float).reshape(shape)
        bad = ~np.isfinite(arr)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise UserFailure(
                "nan",
                f"{who} returned {name} with non-finite values ({arr[where]} at {list(where)}) "
                "on finite inputs with ε > 0",
            )
        return arr, dtype if dtype in FLOAT_DTYPES else "float64", None
    reason = None
    if dtype in FLOAT_DTYPES:
        reason = (
            f"{name} came back as {dtype}: the code converts to floating point (e.g. "
            "astype(float), np.zeros(shape, dtype=float), math.sqrt)"
        )
    else:
        odd = [v for v in flat if not isinstance(v, Fraction)]
        if odd:
            what = type(odd[0]).__name__ if not isinstance(odd[0], Opaque) else odd[0].type
            what = "float" if isinstance(odd[0], float) else what
            reason = (
                f"{name} has entries of type {what}: the code converts to floating point (e.g. "
                "astype(float), np.zeros(shape, dtype=float), math.sqrt)"
            )
    if reason is not None:
        return np.empty(0, dtype=object), dtype, reason
    arr = np.empty(len(flat), dtype=object)
    arr[:] = flat
    return arr.reshape(shape), dtype, None
