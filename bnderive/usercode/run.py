"""Calling a user's BatchNorm functions through the sandbox: every decision is the parent's.

``resolve_api`` decides from the parsed file (``layout``) which API it implements and which
functions are called; ``run_case`` builds the steps for one input point (inputs, the calls in
order, what is sent back), sends them to the child, and turns the raw values that come back into
arrays, checking each against what was asked: a tuple of the right length, an array of the right
shape, finite numbers.  A value that is not what was asked is an ImplementationError (exit 2),
never a skip.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

import numpy as np

from bnderive.usercode.layer import LayerPlan, module_level_methods
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

    api: str  # "cs231n" (a forward/backward pair, whatever the names) | "functional"
    forward: str | None
    backward: list[str]
    forward_eps: bool = False
    #: what each parameter of the forward gets, in order: x, gamma, beta, eps, param (the
    #: bn_param dict), mode ("train"/"test"), flag (True in training), or "default" (left out)
    forward_args: tuple[str, ...] = ("x", "gamma", "beta", "param")
    #: the bn_param keys the forward reads for eps, momentum and the running statistics
    param_keys: dict[str, str] = field(default_factory=dict)
    #: per backward: what each parameter after dout gets: "cache", "**cache", or an input
    #: (x, gamma, beta, eps) or a cache entry by name ("cache:NAME") / position ("cache#K")
    backward_args: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: SPATIAL γ and β given as (1, C, 1, 1), for code that broadcasts them without a reshape
    gamma4: bool = False
    #: a layer class (api "class"): how to build it and call it, read from the syntax tree
    layer: LayerPlan | None = None
    #: the SPATIAL input layout: "nchw", or "nhwc" for channel-last code (x and dout are given
    #: as (N, H, W, C), out and dx read back in that layout)
    layout: str = "nchw"
    #: what a backward returns, in order (RMSNorm has no β: dx, dgamma)
    grads: tuple[str, ...] = ("dx", "dgamma", "dbeta")
    #: GroupNorm's G, for a forward parameter G (``check-impl --norm group``)
    groups: int = 0
    #: the forward's parameter names, in order: a role after one left at its default is given
    #: by keyword (bn_forward(X, gamma, beta, cache, momentum=.9, train=True): train=False)
    forward_names: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "api": self.api,
            "forward": self.forward,
            "backward": list(self.backward),
            "forward_eps": self.forward_eps,
        }

    @property
    def has_eval(self) -> bool:
        if self.layer is not None:
            return self.layer.flag is not None
        return "param" in self.forward_args or any(a in ("mode", "flag") for a in self.forward_args)


def _takes_eps(forward: Function | None) -> bool:
    """A forward(x, gamma, beta, eps), as posts write it, rather than CS231n's bn_param."""
    if forward is None:
        return False
    names = forward.params
    return len(names) >= 4 and ("eps" in names[3].lower() or names[3].lower() == "epsilon")


def resolve_api(source: Source, api: str | None, function: str | None, mode: str) -> Calls:
    """Which functions to call, decided from the file as written (nothing is imported)."""
    _refuse_spatial_only(source, function, mode)
    methods = module_level_methods(source)  # def forward(self, x) at module level
    public = [n for n in source.functions if not n.startswith("_") and n not in methods]
    if api is None:
        guessed = _guess_api(source, function, mode, public)
        if isinstance(guessed, Calls):
            return guessed
        api, function = guessed
    if api == "cs231n":
        return _cs231n_calls(source, mode)
    return _functional_calls(source, function, public)


def _defines(source: Source, name: str | None) -> bool:
    """Whether the file defines ``name`` as a function or a class."""
    return name is not None and (name in source.functions or name in source.classes)


def _refuse_spatial_only(source: Source, function: str | None, mode: str) -> None:
    """A file with CS231n's SPATIAL functions and not its PER_ACTIVATION forward, checked in
    per-activation mode without --function: a usage error that says to add --mode spatial."""
    forward = CS231N[mode][0]
    if mode == "per-activation" and not _defines(source, forward) and not function:
        spatial = [n for n in CS231N["spatial"] if n and _defines(source, n)]
        if spatial:
            raise ImplementationError(
                f"{source.name}: the file defines {' and '.join(spatial)} but not {forward}: add "
                "--mode spatial to check the SPATIAL (N,C,H,W) functions."
            )


def _guess_api(
    source: Source, function: str | None, mode: str, public: list[str]
) -> Calls | tuple[str, str | None]:
    """The API the file implements when --api is not given, as (api, function), or the calls
    of a forward/backward pair found under other names: a --function given means functional;
    CS231n's forward, or its backward, means cs231n (a backward(x, gamma, beta, dout, eps) is
    functional); else a pair; else the one public function.  A layer class, or nothing to go
    by, is a usage error saying what to do."""
    defined = source.functions
    forward, backward, _ = CS231N[mode]
    if function:
        return "functional", function
    if _defines(source, forward):
        return "cs231n", function
    if backward in defined and len(defined[backward].params) >= 5:
        return "functional", backward  # backward(x, gamma, beta, dout, eps)
    if _defines(source, backward):
        return "cs231n", function
    if (pair := find_pair(source, mode)) is not None:
        return pair
    if len(public) == 1 and public[0] in defined:
        return "functional", public[0]
    if layers := [
        c.name for c in source.classes.values()
        if {"forward", "backward"} & set(c.methods) or "__call__" in c.methods
    ]:  # fmt: skip
        raise ImplementationError(
            f"{source.name}: the file defines the layer class {', '.join(layers)}; check-impl "
            "does not call layer classes yet (their constructors, the cache on self and "
            "dγ, dβ stored as attributes vary from library to library). Wrap the layer in "
            "functions batchnorm_forward(x, gamma, beta, bn_param) -> (out, cache) and "
            "batchnorm_backward(dout, cache) -> (dx, dgamma, dbeta), and check those."
        )
    raise ImplementationError(
        f"{source.name}: cannot tell which API the file implements: it defines no "
        f"{forward}/{backward} pair (the CS231n API) and not exactly one function "
        f"(functions found: {source.listing()}). Name the function with --function NAME, or "
        "use --api."
    )


def _cs231n_calls(source: Source, mode: str) -> Calls:
    """CS231n's API in ``mode``: the forward and the backward (or the alternative backward)
    the file defines, how the forward takes eps (a parameter, as posts write it, or in
    bn_param) and what each backward is given; a missing function is a usage error."""
    forward, backward, alt = CS231N[mode]
    names = [n for n in (backward, alt) if _defines(source, n)]
    missing = [n for n in (forward,) if not _defines(source, n)]
    if not names:
        missing.append(backward)
    if missing:
        raise ImplementationError(
            f"{source.name}: the CS231n API in {mode} mode needs {forward} and {backward}"
            + (f" (or {alt})" if alt else "")
            + f"; the file does not define {' and '.join(missing)} (functions found: "
            f"{source.listing()})."
        )
    return _cs231n_pair(source, forward, names)


def pair_by_name(source: Source, calls: Calls) -> list[Calls]:
    """The forward each backward of a CS231n pair is called after, made explicit: a backward
    whose name has a forward of its own in the file (batchnorm_backward_alt and
    batchnorm_forward_alt, which keeps the short cache that backward unpacks) gets that forward,
    as its own pair; the others keep the pair's forward.  A forward named like the pair's with
    "_alt" and no backward of its own is checked alone (out, running statistics, eval), so that
    no forward of the file goes unchecked.  Other APIs are returned as they are."""
    if calls.api != "cs231n" or calls.forward is None:
        return [calls]
    keep, pairs = [], []
    for b in calls.backward:
        f = b.replace("backward", "forward")
        if f != calls.forward and "backward" in b and _defines(source, f):
            pairs.append(_cs231n_pair(source, f, [b]))
        else:
            keep.append(b)
    alt = f"{calls.forward}_alt"
    if _defines(source, alt) and all(p.forward != alt for p in pairs):
        pairs.append(_cs231n_pair(source, alt, []))
    if not pairs:
        return [calls]
    main = replace(
        calls, backward=keep, backward_args={b: calls.backward_args[b] for b in keep
                                             if b in calls.backward_args},
    )  # fmt: skip
    return [main, *pairs]


def _cs231n_pair(source: Source, forward: str, backward: list[str]) -> Calls:
    """A CS231n pair of the given names (``pair_by_name``), bound as ``_cs231n_calls`` binds."""
    defined = source.functions
    takes_eps = _takes_eps(defined.get(forward))
    args = ("x", "gamma", "beta", "eps") if takes_eps else ("x", "gamma", "beta", "param")
    f = defined.get(forward)
    if f is not None and not takes_eps:
        args = bind_forward(source, f) or args
    return Calls(
        "cs231n", forward, backward, takes_eps, args, param_keys(source, forward),
        {n: bind_backward(source, forward, defined[n]) for n in backward if n in defined},
    )  # fmt: skip


def _functional_calls(source: Source, function: str | None, public: list[str]) -> Calls:
    """The functional API: the function named (without a name, the file's one public
    function); a name the file does not define, or no name and not one function, is a usage
    error."""
    if not function:
        if len(public) != 1:
            raise ImplementationError(
                f"{source.name}: the functional API needs the function's name: give --function "
                f"NAME (functions found: {source.listing()})."
            )
        function = public[0]
    if not _defines(source, function):
        raise ImplementationError(
            f"{source.name}: the file defines no function {function!r} (functions found: "
            f"{source.listing()})."
        )
    return Calls("functional", None, [function])


# -- other names and signatures ----------------------------------------------------------------------
GAMMA = ("gamma", "g", "weight", "w", "scale", "bw")
BETA = ("beta", "b", "bias", "shift", "bb", "delta")
EPS = ("eps", "epsilon")
FLAG = ("train", "training", "is_training", "train_flg", "train_mode")
#: a forward parameter that takes the running statistics as a pair (hipsternet's
#: bn_forward(X, gamma, beta, cache, momentum, train) -> (out, cache, running_mean, running_var))
RUNNING_IN = ("cache", "running", "stats", "running_stats", "bn_cache", "moving")
PARAM_KEYS = {
    "eps": ("eps", "epsilon"),
    "momentum": ("momentum", "decay"),
    "running_mean": ("running_mean", "moving_mean", "mean_running"),
    "running_var": ("running_var", "moving_var", "var_running"),
}


def bind_forward(source: Source, f: Function) -> tuple[str, ...] | None:
    """What each parameter of a forward gets, by name (and by place for x, γ, β); None when a
    parameter without a default cannot be bound."""
    out: list[str] = []
    for k, name in enumerate(f.params):
        low = name.lower()
        has_default = k >= f.required
        if k == 0:
            out.append("x")
        elif low in GAMMA or (k == 1 and low not in EPS):
            out.append("gamma")
        elif low in BETA or (k == 2 and low not in EPS):
            out.append("beta")
        elif low in EPS:
            out.append("eps")
        elif "param" in low:
            out.append("param")
        elif low in RUNNING_IN and k >= 3:
            out.append("running")  # (running_mean, running_var) in, returned updated
        elif low == "mode":
            out.append("mode")
        elif low in FLAG:
            out.append("flag")
        elif has_default:
            out.append("default")
        else:
            return None
    return tuple(out)


def param_keys(source: Source, forward: str) -> dict[str, str]:
    """The bn_param keys the forward reads (``bn_param['epsilon']``, ``.get('decay')``), mapped to
    eps, momentum, running_mean, running_var; CS231n's names where it reads none."""
    import ast

    node = next(
        (n for n in ast.walk(source.tree)
         if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == forward),
        None,
    )  # fmt: skip
    read: set[str] = set()
    if node is not None:
        for n in ast.walk(node):
            if isinstance(n, ast.Subscript) and isinstance(n.slice, ast.Constant):
                read.add(str(n.slice.value))
            if isinstance(n, ast.Call) and getattr(n.func, "attr", "") in ("get", "setdefault"):
                if n.args and isinstance(n.args[0], ast.Constant):
                    read.add(str(n.args[0].value))
    keys = {}
    for role, names in PARAM_KEYS.items():
        keys[role] = next((k for k in names if k in read), names[0])
    return keys


def _cache_names(source: Source, forward: str) -> list[str] | None:
    """The names in the tuple the forward returns as its cache (its second returned value),
    when it is written as a tuple of names, directly or through a variable."""
    import ast

    node = next(
        (n for n in ast.walk(source.tree)
         if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == forward),
        None,
    )  # fmt: skip
    if node is None:
        return None
    assigned: dict[str, ast.expr] = {}
    for n in ast.walk(node):
        if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name):
            assigned[n.targets[0].id] = n.value
    for n in ast.walk(node):
        if isinstance(n, ast.Return) and isinstance(n.value, ast.Tuple) and len(n.value.elts) >= 2:
            cache = n.value.elts[1]
            if isinstance(cache, ast.Name) and cache.id in assigned:
                cache = assigned[cache.id]
            if isinstance(cache, ast.Tuple) and all(isinstance(e, ast.Name) for e in cache.elts):
                return [e.id for e in cache.elts]  # type: ignore[attr-defined]
    return None


def bind_backward(source: Source, forward: str | None, f: Function) -> tuple[str, ...]:
    """What each parameter of a backward after dout gets: the forward's cache (whole, or its
    entries by name), or the layer's inputs by name."""
    rest = list(f.params[1:])
    if f.varkw and not rest:
        return ("**cache",)
    if len(rest) == 1 and not f.kwonly:
        return ("cache",)
    names = _cache_names(source, forward) if forward else None
    out = []
    for k, name in enumerate(rest):
        low = name.lower()
        if names and name in names:
            out.append(f"cache#{names.index(name)}")
        elif low in GAMMA:
            out.append("gamma")
        elif low in BETA:
            out.append("beta")
        elif low in EPS:
            out.append("eps")
        elif low in ("x", "inputs", "input", "z"):
            out.append("x")
        elif k + 1 >= f.required:
            out.append("default")
        else:
            out.append("cache")
    if f.kwonly or f.varkw:
        out.append("**cache")
    return tuple(out)


def _reshapes_gamma(source: Source, forward: str) -> bool:
    """Whether a SPATIAL forward reshapes γ itself (CS231n's take γ of shape (C,)); one that
    does not multiplies an (N, C, H, W) array by it as given, so it expects (1, C, 1, 1)."""
    import ast

    node = next(
        (n for n in ast.walk(source.tree)
         if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == forward),
        None,
    )  # fmt: skip
    if node is None:
        return True
    text = ast.unparse(node)
    gamma = node.args.args[1].arg if len(node.args.args) > 1 else "gamma"
    return bool(
        re.search(rf"\b{gamma}\s*(\.reshape|\[\s*(None|np\.newaxis|:))", text)
        or "transpose" in text
        or "swapaxes" in text
        or "moveaxis" in text
    )


def _stem(name: str) -> str:
    low = name.lower()
    for word in ("_forward", "forward", "_fwd", "_backward", "backward", "_bwd", "_grad", "grad"):
        low = low.replace(word, "")
    return low.strip("_")


#: CS231n's Linear → BatchNorm → ReLU pair (``composite_impl``): not a BatchNorm pair
COMPOSITE = re.compile(r"^(affine|fc|linear|dense)_?(bn|batch_?norm)_?relu_(forward|backward)$")


def find_pair(source: Source, mode: str) -> Calls | None:
    """A forward/backward pair under other names (bn_forward/bn_backward, batch_norm_forward/…,
    np_batch_norm_2d/np_batch_norm_2d_backward), matched by the stem of their names."""
    functions = [
        f
        for n, f in source.functions.items()
        if not n.startswith("_") and not COMPOSITE.match(n.lower())
    ]
    backwards = [f for f in functions if re.search(r"backward|_bwd|grad", f.name.lower())]
    forwards = [
        f for f in functions
        if f not in backwards and (re.search(r"forward|_fwd", f.name.lower())
                                   or re.search(r"(bn|batch_?norm)", f.name.lower()))
    ]  # fmt: skip
    spatial = re.compile(r"2d|spatial|conv")
    backwards = [
        b for b in backwards if bool(spatial.search(b.name.lower())) == (mode == "spatial")
    ]
    for b in backwards:
        if len(b.params) >= 5 and b.params[0].lower() in ("x", "inputs"):
            continue  # a functional backward(x, gamma, beta, dout, eps)
        for f in forwards:
            if _stem(f.name) == _stem(b.name) or _stem(f.name) in ("bn", "batchnorm", "batch_norm"):
                args = bind_forward(source, f)
                if args is None:
                    continue
                return Calls(
                    "cs231n", f.name, [b.name], "eps" in args and "param" not in args, args,
                    param_keys(source, f.name), {b.name: bind_backward(source, f.name, b)},
                    mode == "spatial" and not _reshapes_gamma(source, f.name),
                    forward_names=tuple(f.params),
                )  # fmt: skip
    return None


# -- the steps ---------------------------------------------------------------------------------------
def _var(name: str) -> dict[str, Any]:
    return {"var": name}


def _copy(name: str) -> dict[str, Any]:
    return {"copy": {"var": name}}


def _array_step(name: str, values: Any, kind: str) -> dict[str, Any]:
    arr = np.asarray(values, dtype=object)
    data = [exact_text(v) for v in arr.reshape(-1)]
    return {"op": "let", "name": name,
            "value": {"array": {"kind": kind, "shape": list(arr.shape), "data": data}}}  # fmt: skip


def _scalar_step(name: str, value: Any, kind: str) -> dict[str, Any]:
    return {
        "op": "let",
        "name": name,
        "value": {"scalar": {"kind": kind, "value": exact_text(value)}},
    }


def exact_text(value: Any) -> str:
    """An exact number as the messages write it: ``3`` or ``-7/9``."""
    q = Fraction(value)
    return str(q.numerator) if q.denominator == 1 else f"{q.numerator}/{q.denominator}"


def nested_text(arr: Any) -> str:
    """Nested lists of exact numbers, written as numbers (no quotes): ``[[1, -1/2], [0, 3]]``."""
    value = np.asarray(arr, dtype=object)
    if value.ndim == 0:
        return exact_text(value.item())
    return "[" + ", ".join(nested_text(v) for v in value) + "]"


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
    #: backward functions that failed at this case (the forward failing raises instead)
    failures: dict[str, UserFailure] = field(default_factory=dict)
    #: (backward, dgamma|dbeta) that came back unusable while the rest of it did not
    quantity_failures: dict[tuple[str, str], UserFailure] = field(default_factory=dict)
    #: (function, quantity) that came back in another shape holding one value per feature,
    #: such as (1, D) from keepdims=True: the shape it had (accepted, and noted)
    reshaped: dict[tuple[str, str], tuple[int, ...]] = field(default_factory=dict)


@dataclass
class _Point:
    """One run of one case in one arithmetic: what was sent, and the Run being filled."""

    run: Run
    calls: Calls
    kind: str  # "float" or "exact"
    shape: tuple[int, ...]  # of x as the code takes it ((N, H, W, C) for channel-last code)
    channels: tuple[int, ...]  # of γ, β, dγ, dβ and the running statistics
    training: bool
    has_running: bool
    momentum: str | None
    nhwc: bool
    flat: int = 0  # positions per channel of a flattening layer (0: not one)

    def take(self, who: str, name: str, raw: Raw, want: tuple[int, ...]) -> None:
        """A value read back, checked (``to_array``) and stored under ``who``/``name``."""
        if raw.t == "array" and raw.shape is not None and tuple(raw.shape) != tuple(want):
            if len(want) == 1 and int(np.prod(raw.shape)) == want[0]:
                self.run.reshaped[(who, name)] = tuple(raw.shape)
        if who in self.calls.backward and name != "dx":
            # a wrong dγ or dβ (a (D, D) dγ) is its own failure row: dx is still checked
            try:
                values, dtype, reason = to_array(who, name, raw, want, self.kind)
            except UserFailure as exc:
                self.run.quantity_failures[(who, name)] = exc
                return
        else:
            values, dtype, reason = to_array(who, name, raw, want, self.kind)
        if self.nhwc and name in ("out", "dx") and values.size:
            values = values.transpose(0, 3, 1, 2)
        if self.flat and name in ("dgamma", "dbeta") and values.size:
            values = values.reshape(-1, self.flat).sum(axis=1)  # per activation → per channel
        self.run.values.setdefault(who, {})[name] = values
        self.run.dtypes[f"{who}/{name}"] = dtype
        if reason:
            self.run.reasons.append(f"{who}: {reason}")

    def fail(self, name: str, exc: UserFailure) -> None:
        """A backward that failed at this case: its own failure, unless the child cannot go on
        (its output flooded, it exited, it ran out of memory)."""
        if exc.kind in ("output", "exit", "memory"):
            raise exc
        self.run.failures[name] = exc
        self.run.values.pop(name, None)


def _forward_result(forward: str, returned: Raw) -> tuple[Raw, Raw, bool]:
    """(out, cache, whether the forward returned a tuple) from what the forward returned:
    (out, cache, …), or out alone (cache None)."""
    if returned.t == "none":
        raise UserFailure("arity", f"{forward} must return (out, cache), or out; it returned None")
    tupled = returned.t in ("tuple", "list") and (returned.length or 0) >= 2
    if tupled and returned.items is not None:
        return returned.items[0], returned.items[1], tupled
    if returned.t in ("tuple", "list"):
        out, cache = unpack(forward, returned, ("out", "cache"))
        return out, cache, tupled
    return returned, Raw("none"), tupled


class Caller:
    """Runs one case through the child: the parent's program for the resolved API."""

    def __init__(self, box: Sandbox, calls: Calls, mode: str) -> None:
        self.box, self.calls, self.mode = box, calls, mode
        #: the backward gets its cache with these two entries swapped (the diagnosis "cache
        #: unpacked in the wrong order"); the length of the forward's cache tuple
        self.swap: tuple[int, int] | None = None
        self.cache_length = 0

    def request(self, steps: list[dict[str, Any]], labels: list[str]) -> dict[str, Raw]:
        answer = self.box.request(steps, labels)
        self.conversions.update(answer.conversions)
        if answer.error is not None:
            raise UserFailure(
                answer.error["kind"], answer.error["message"], answer.error["trace"], answer.output
            )
        return answer.values

    def run(self, case: Any, kind: str, momentum: str | None) -> Run:
        """Call the API on one case in ``kind`` arithmetic ("float" or "exact"): the inputs
        are sent, then the calls of the file's API, and every value read back is checked."""
        self.conversions: dict[str, tuple[str, str]] = {}
        point = self._send_inputs(case, kind, momentum)
        calls = self.calls
        if calls.api == "class":
            assert calls.layer is not None
            self._layer(
                calls.layer, point.run, point.take, point.training, momentum,
                point.has_running, point.shape, point.channels[0], kind, read=not point.flat,
            )  # fmt: skip
        elif calls.api == "cs231n":
            self._cs231n(point)
        else:
            self._functional(point)
        point.run.conversions = dict(self.conversions)
        return point.run

    # -- the steps of one run --
    def _send_inputs(self, case: Any, kind: str, momentum: str | None) -> _Point:
        """Send x, dout, γ, β, ε (and the running statistics and momentum) to the child as
        ``kind`` numbers; channel-last code gets x and dout as (N, H, W, C)."""
        spec = case.spec
        shape = tuple(spec.shape)
        nhwc = self.calls.layout == "nhwc" and len(shape) == 4
        x, dout = case.x, case.g
        if nhwc:  # channel-last code: given (N, H, W, C), read back and turned to (N, C, H, W)
            x, dout = x.transpose(0, 2, 3, 1), dout.transpose(0, 2, 3, 1)
            shape = tuple(x.shape)
        # A layer that flattens (N, C, H, W) to (N, C·H·W) keeps one γ, β and running statistic
        # per activation: each channel's value is given at its H·W positions, and its dγ, dβ are
        # summed back over them (``_Point.take``).
        flat = math.prod(shape[2:]) if self.calls.layout == "flat" and len(shape) == 4 else 0

        def per_channel(values: Any) -> np.ndarray:
            arr = np.array(values, dtype=object)
            return np.repeat(arr, flat) if flat else arr

        inputs = [
            {"op": "reset"},
            {"op": "numpy", "exact": kind == "exact"},
            _array_step("x", x, kind),
            _array_step("dout", dout, kind),
            _array_step("gamma", _affine(per_channel(case.gamma), self.calls.gamma4), kind),
            _array_step("beta", _affine(per_channel(case.beta), self.calls.gamma4), kind),
            _scalar_step("eps", case.eps, kind),
        ]
        has_running = bool(case.running_mean)
        if has_running:
            inputs += [
                _array_step("running_mean", per_channel(case.running_mean), kind),
                _array_step("running_var", per_channel(case.running_var), kind),
            ]
        if momentum is not None:
            inputs.append(_scalar_step("momentum", Fraction(momentum), kind))
        self.request(inputs, [])
        channels = (spec.c * flat,) if flat else (spec.c,)
        if getattr(case, "affine", ()):  # a family's γ (LayerNorm's per element): its shape
            channels = tuple(case.affine)
        return _Point(
            Run(), self.calls, kind, shape, channels, spec.training, has_running, momentum, nhwc,
            flat,
        )  # fmt: skip

    def _cs231n(self, point: _Point) -> None:
        """A forward/backward pair: for each backward, the forward (which makes its cache),
        then the backward on that cache; the forward's out and running statistics are read at
        the first."""
        calls = self.calls
        assert calls.forward is not None
        forward = calls.forward
        if not point.training and not calls.has_eval:
            raise ImplementationError(
                f"{forward} takes eps, not bn_param, so it has no eval (test) mode; leave "
                "out --eval, or give the forward a bn_param with 'mode' and the running "
                "statistics"
            )
        keys = calls.param_keys or {r: n[0] for r, n in PARAM_KEYS.items()}
        # a forward without a backward of its own (out alone) is called once
        for number, name in enumerate(calls.backward or [None]):
            values = self._call_forward(point, keys)
            out, cache, tupled = _forward_result(forward, values["forward"])
            if number == 0:
                point.take(forward, "out", out, point.shape)
                if point.has_running and "running" in calls.forward_args:
                    self._returned_running(point, values["forward"])
                if point.has_running and "param" in values:
                    run = point.run
                    run.running, reasons, run.running_dtypes = take_running(
                        forward, values["param"], point.channels, point.kind, keys
                    )
                    run.running_reasons += reasons
            if not point.training and cache.t == "none":
                # CS231n's backward is written for training mode; a test-mode forward that
                # returns no cache says so, and its backward is not called.
                point.run.skipped = True
                break
            if name is not None:
                self._call_backward(point, name, cache, tupled)

    def _returned_running(self, point: _Point, returned: Raw) -> None:
        """The running statistics a forward that takes them as a pair returns after its cache:
        (out, cache, running_mean, running_var)."""
        forward = self.calls.forward
        if returned.t not in ("tuple", "list") or returned.items is None or len(returned.items) < 4:
            raise UserFailure(
                "arity",
                f"{forward} takes the running statistics as a pair and must return them after "
                f"its cache, (out, cache, running_mean, running_var); it returned "
                f"{returned.describe()}",
            )
        run = point.run
        out, reasons, dtypes = {}, [], {}
        for k, role in ((2, "running_mean"), (3, "running_var")):
            arr, dtype, reason = to_array(
                forward, f"the returned {role}", returned.items[k], point.channels, point.kind
            )
            out[role], dtypes[role] = arr, dtype
            reasons += [reason] if reason else []
        run.running, run.running_dtypes = out, dtypes
        run.running_reasons += reasons

    def _call_forward(self, point: _Point, keys: dict[str, str]) -> dict[str, Raw]:
        """Call the forward with the arguments its signature asks for (bn_param built from
        the keys it reads); its result and, with bn_param, the dict after the call."""
        forward = self.calls.forward
        steps: list[dict[str, Any]] = []
        args: list[dict[str, Any]] = []
        labels = ["forward"]
        shown: list[str] = []
        kwargs: dict[str, Any] = {}
        names = self.calls.forward_names
        skipped = False
        for k, role in enumerate(self.calls.forward_args):
            if role == "default":
                skipped = True  # left at its default
                continue
            if skipped and k >= len(names):
                break  # no name to give it by: the rest keep their defaults
            n = len(args)
            if role in ("x", "gamma", "beta"):
                args.append(_copy(role))
            elif role == "eps":
                args.append(_var("eps"))
            elif role == "param":
                param: dict[str, Any] = {
                    "mode": {"lit": "train" if point.training else "test"},
                    keys["eps"]: _var("eps"),
                }
                if point.momentum is not None:
                    param[keys["momentum"]] = _var("momentum")
                if point.has_running:
                    param[keys["running_mean"]] = _copy("running_mean")
                    param[keys["running_var"]] = _copy("running_var")
                steps.append({"op": "let", "name": "param", "value": {"dict": param}})
                args.append(_var("param"))
                labels.append("param")
                role = "bn_param"
            elif role == "mode":
                args.append({"lit": "train" if point.training else "test"})
            elif role == "groups":
                args.append({"lit": self.calls.groups})
            elif role == "running":
                args.append(
                    {"tuple": [_copy("running_mean"), _copy("running_var")]}
                    if point.has_running
                    else {"lit": None}
                )
            elif role == "flag":
                args.append({"lit": point.training})
            if skipped and len(args) > n:
                kwargs[names[k]] = args.pop()
                shown.append(f"{names[k]}={role}")
                continue
            shown.append(role)
        who = f"{forward}({', '.join(shown)})"
        steps.append({"op": "call", "fn": {"global": forward}, "args": args, "kwargs": kwargs,
                      "to": "forward", "what": who})  # fmt: skip
        steps.append({"op": "send", "label": "forward", "value": _var("forward"), "what": who})
        if "param" in labels:
            steps.append({"op": "send", "label": "param", "value": _var("param"), "what": who})
        return self.request(steps, labels)

    def _cache_ref(self, cache: Raw, tupled: bool) -> dict[str, Any]:
        """How the backward is given the forward's cache: the second value the forward
        returned (None when it returned out alone), its entries swapped for the diagnosis
        "cache unpacked in the wrong order" (``swap``)."""
        ref: dict[str, Any] = {"item": [_var("forward"), 1]} if tupled else {"lit": None}
        if cache.t in ("tuple", "list") and cache.length:
            self.cache_length = cache.length
            if self.swap is not None and max(self.swap) < cache.length:
                order = list(range(cache.length))
                i, j = self.swap
                order[i], order[j] = order[j], order[i]
                ref = {"tuple": [{"item": [ref, k]} for k in order]}
        return ref

    def _call_backward(self, point: _Point, name: str, cache: Raw, tupled: bool) -> None:
        """Call one backward on dout and the cache (whole, unpacked, or as keywords, as its
        signature takes it); a failure is this backward's only."""
        binding = self.calls.backward_args.get(name, ("cache",))
        cache_ref = self._cache_ref(cache, tupled)
        bargs: list[dict[str, Any]] = [_copy("dout")]
        call: dict[str, Any] = {"op": "call", "fn": {"global": name}, "to": "backward"}
        for role in binding:
            if role == "default":
                break
            if role == "cache":
                bargs.append(cache_ref)
            elif role == "**cache":
                call["kwargs_from"] = cache_ref
            elif role.startswith("cache#"):
                bargs.append({"item": [cache_ref, int(role[6:])]})
            elif role in ("x", "gamma", "beta"):
                bargs.append(_copy(role))
            elif role == "eps":
                bargs.append(_var("eps"))
        who = f"{name}(dout, {', '.join(binding)})"
        call.update(args=bargs, what=who)
        try:
            values = self.request(
                [call, {"op": "send", "label": "backward", "value": _var("backward"),
                        "what": who}],
                ["backward"],
            )  # fmt: skip
            got = values["backward"]
            if got.t in ("array", "big"):
                point.take(name, "dx", got, point.shape)  # a backward that returns dx alone
            else:
                grads = unpack(name, got, self.calls.grads)
                for quantity, raw in zip(self.calls.grads, grads, strict=True):
                    point.take(
                        name, quantity, raw, point.shape if quantity == "dx" else point.channels
                    )
        except UserFailure as exc:  # this backward only: the others are still checked
            point.fail(name, exc)

    def _functional(self, point: _Point) -> None:
        """f(x, gamma, beta, dout, eps) -> (dx, dgamma, dbeta), with the running statistics
        after eps in eval mode."""
        name = self.calls.backward[0]
        beta = [_copy("beta")] if "dbeta" in self.calls.grads else []
        args = [_copy("x"), _copy("gamma"), *beta, _copy("dout"), _var("eps")]
        if point.has_running and not point.training:
            args += [_copy("running_mean"), _copy("running_var")]
        signature = ("x, gamma, beta, dout, eps" if beta else "x, gamma, dout, eps") + (
            ", running_mean, running_var" if not point.training else ""
        )
        who = f"{name}({signature})"
        try:
            values = self.request(
                [
                    {"op": "call", "fn": {"global": name}, "args": args, "to": "result",
                     "what": who},
                    {"op": "send", "label": "result", "value": _var("result"), "what": who},
                ],
                ["result"],
            )  # fmt: skip
            grads = unpack(name, values["result"], self.calls.grads)
            for quantity, raw in zip(self.calls.grads, grads, strict=True):
                point.take(name, quantity, raw, point.shape if quantity == "dx" else point.channels)
        except UserFailure as exc:
            point.fail(name, exc)

    def _layer(
        self,
        plan: LayerPlan,
        run: Run,
        take: Any,
        training: bool,
        momentum: str | None,
        has_running: bool,
        shape: tuple[int, ...],
        c: int,
        kind: str,
        read: bool = True,
    ) -> None:
        """A layer class: build it, set γ, β and the running statistics where the plan found
        them, call forward (and backward in training), read the gradients where they are.
        ``read`` False: the running statistics are set but not read back (a flattening layer
        keeps them per activation, not per channel)."""
        self._construct_layer(plan, momentum, has_running, c)
        narrow = self._parameter_dtype(plan) if kind == "float" else None
        steps, fkwargs = _layer_setup(plan, training, has_running, c, narrow)
        read_running = bool(has_running and read and plan.running)
        self._layer_forward(plan, run, take, steps, fkwargs, read_running, shape, c, kind)
        self._layer_backward(plan, run, take, shape, c)

    def _construct_layer(
        self, plan: LayerPlan, momentum: str | None, has_running: bool, c: int
    ) -> None:
        """The child's ``layer``: the class called with the constructor keywords the plan
        found, each given its role's value (momentum left out where the run uses the
        constructor's default; running statistics None where the case has none)."""
        kwargs: dict[str, Any] = {}
        for keyword, role in plan.init:
            if role in ("gamma", "beta"):
                kwargs[keyword] = _copy(role)
            elif role == "momentum":
                if momentum is None:
                    continue  # the constructor's default
                kwargs[keyword] = _var("momentum")
            elif role == "eps":
                kwargs[keyword] = _var("eps")
            elif role == "features":
                kwargs[keyword] = {"lit": c}
            elif role in ("running_mean", "running_var"):
                kwargs[keyword] = _copy(role) if has_running else {"lit": None}
        built = f"{plan.cls}({', '.join(kwargs)})"
        self.request(
            [{"op": "call", "fn": {"global": plan.cls}, "args": [], "kwargs": kwargs,
              "to": "layer", "what": built}], [],
        )  # fmt: skip

    def _parameter_dtype(self, plan: LayerPlan) -> str | None:
        """The dtype the built layer keeps γ (or a running statistic) in when it is float16 or
        float32 (a library-wide dtype): the float run gives it γ, β and the running statistics
        in that dtype, as its own would be.  None: float64, or nothing to probe, or not set
        yet (lazy initialisation)."""
        probe = plan.gamma or next(iter(plan.running.values()), None)
        if probe is None:
            return None
        try:
            raw = self.request(
                [{"op": "send", "label": "probe", "value": _layer_ref(probe),
                  "what": "probing"}],
                ["probe"],
            )["probe"]  # fmt: skip
        except UserFailure:
            return None  # not set yet (lazy initialisation): float64
        if raw.t == "array" and raw.dtype in ("float16", "float32"):
            return raw.dtype
        return None

    def _layer_forward(
        self,
        plan: LayerPlan,
        run: Run,
        take: Any,
        steps: list[dict[str, Any]],
        fkwargs: dict[str, Any],
        read_running: bool,
        shape: tuple[int, ...],
        c: int,
        kind: str,
    ) -> None:
        """Run the setting ``steps``, then forward(x) (with the training flag's keyword,
        where it is one); take its output and, with ``read_running``, the running statistics
        the forward left on the layer."""
        layer = _var("layer")
        forward = plan.forward_name
        fn = {"global": plan.forward} if plan.forward_global else {"attr": [layer, plan.forward]}
        args = [layer, _copy("x")] if plan.forward_global else [_copy("x")]
        shown = ", ".join(["x", *(f"{k}={v['lit']}" for k, v in fkwargs.items())])
        who = f"{forward}({shown})"
        steps.append({"op": "call", "fn": fn, "args": args, "kwargs": fkwargs, "to": "forward",
                      "what": who})  # fmt: skip
        steps.append({"op": "send", "label": "forward", "value": _var("forward"), "what": who})
        labels = ["forward"]
        if read_running:
            for role, ref in plan.running.items():
                steps.append({"op": "send", "label": role, "value": _layer_ref(ref), "what": who})
                labels.append(role)
        values = self.request(steps, labels)
        returned = values["forward"]
        if returned.t in ("tuple", "list") and returned.items:
            returned = returned.items[0]  # forward -> (out, cache)
        take(forward, "out", returned, shape)
        if read_running:
            _take_running(plan, run, forward, values, c, kind)

    def _layer_backward(
        self, plan: LayerPlan, run: Run, take: Any, shape: tuple[int, ...], c: int
    ) -> None:
        """backward(dout), when the layer has one and the run calls it: dx from what it
        returns, dγ and dβ from the returned triple or from where the plan found them (an
        attribute, an accumulator, a recorder's argument).  A failure is the backward's
        (recorded in ``run.failures``), except the child's output, exit and memory limits."""
        name = plan.backward_name
        if name is None or name not in self.calls.backward:
            return
        layer = _var("layer")
        who = f"{name}(dout)"
        steps = [
            {"op": "call", "fn": {"attr": [layer, plan.backward]}, "args": [_copy("dout")],
             "to": "backward", "what": who},
            {"op": "send", "label": "backward", "value": _var("backward"), "what": who},
        ]  # fmt: skip
        labels = ["backward"]
        for role, where in plan.grads.items():
            if where[0] == "recorder":
                value = {"item": [{"attr": [{"attr": [layer, where[1]]}, "args"]}, where[2]]}
            else:
                value = _layer_ref(where[1])
            steps.append({"op": "send", "label": role, "value": value,
                          "what": f"reading {name}'s {role}"})  # fmt: skip
            labels.append(role)
        try:
            got = self.request(steps, labels)
            raw = got["backward"]
            if raw.t in ("tuple", "list") and raw.length == 3:
                dx, dgamma, dbeta = unpack(name, raw, ("dx", "dgamma", "dbeta"))
                take(name, "dx", dx, shape)
                take(name, "dgamma", dgamma, (c,))
                take(name, "dbeta", dbeta, (c,))
            else:
                if raw.t in ("tuple", "list") and raw.items:
                    raw = raw.items[0]
                take(name, "dx", raw, shape)
                for role in ("dgamma", "dbeta"):
                    if role in got:
                        take(name, role, got[role], (c,))
        except UserFailure as exc:
            if exc.kind in ("output", "exit", "memory"):
                raise
            run.failures[name] = exc
            run.values.pop(name, None)


def _layer_ref(ref: tuple[str, ...]) -> dict[str, Any]:
    """Where a plan's reference points on the child's ``layer``: ("attr", name) is
    ``layer.name``, ("item", name, key) is ``layer.name[key]``."""
    if ref[0] == "attr":
        return {"attr": [_var("layer"), ref[1]]}
    return {"item": [{"attr": [_var("layer"), ref[1]]}, ref[2]]}


def _set_on_layer(ref: tuple[str, ...], value: dict[str, Any], what: str) -> dict[str, Any]:
    """The step that stores ``value`` where ``ref`` points on the child's ``layer``."""
    if ref[0] == "attr":
        return {"op": "setattr", "obj": _var("layer"), "name": ref[1], "value": value,
                "what": what}  # fmt: skip
    return {"op": "setitem", "obj": {"attr": [_var("layer"), ref[1]]}, "key": ref[2],
            "value": value, "what": what}  # fmt: skip


def _layer_setup(
    plan: LayerPlan, training: bool, has_running: bool, c: int, narrow: str | None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The steps that prepare the built layer for forward: γ, β and (where the case has them)
    the running statistics set where the plan found them (in ``narrow``, the layer's own
    dtype, when it has one), the guards set, the gradient recorders and accumulators put in
    place, and the training flag set; with the forward's keywords (the flag, where it is a
    parameter of forward)."""

    def given(role: str) -> dict[str, Any]:
        return _copy(role) if narrow is None else {"astype": [_var(role), narrow]}

    steps: list[dict[str, Any]] = []
    for role in ("gamma", "beta"):
        ref = getattr(plan, role)
        if ref is not None:
            steps.append(_set_on_layer(ref, given(role), f"setting the layer's {role}"))
    if has_running:
        for role, ref in plan.running.items():
            steps.append(_set_on_layer(ref, given(role), f"setting the layer's {role}"))
    for name, what in plan.guards:
        value = {"lit": True} if what == "true" else {"lit": c}
        steps.append(_set_on_layer(("attr", name), value, "setting " + name))
    for role, where in plan.grads.items():
        if where[0] == "recorder":
            steps.append(
                _set_on_layer(
                    ("attr", where[1]), {"recorder": True}, f"giving the layer a {where[1]}"
                )
            )
        elif where[2] == "add":
            steps.append(
                _set_on_layer(where[1], {"lit": 0}, f"setting the layer's {role} accumulator to 0")
            )
    flag_value = training if plan.flag is None else (training == plan.flag[2])
    fkwargs: dict[str, Any] = {}
    if plan.flag is not None and plan.flag[0] == "attr":
        steps.append(
            _set_on_layer(("attr", plan.flag[1]), {"lit": flag_value}, f"setting {plan.flag[1]}")
        )
    elif plan.flag is not None:
        fkwargs[plan.flag[1]] = {"lit": flag_value}
    return steps, fkwargs


def _take_running(
    plan: LayerPlan, run: Run, forward: str, values: dict[str, Raw], c: int, kind: str
) -> None:
    """The running statistics read back after forward, as (C,) arrays in ``run`` with their
    dtypes and the reasons any could not be read (a shape other than (C,) is recorded in
    ``run.reshaped``)."""
    out, reasons, dtypes = {}, [], {}
    for role, ref in plan.running.items():
        where = f"self.{ref[1]}" if ref[0] == "attr" else f"self.{ref[1]}[{ref[2]!r}]"
        arr, dtype, reason = to_array(forward, where, values[role], (c,), kind)
        out[role], dtypes[role] = arr, dtype
        got = values[role]
        if got.t == "array" and got.shape is not None and tuple(got.shape) != (c,):
            run.reshaped[(forward, where)] = tuple(got.shape)
        reasons += [reason] if reason else []
    run.running, run.running_reasons, run.running_dtypes = out, reasons, dtypes


def _affine(values: Any, four: bool) -> np.ndarray:
    """γ or β as the code takes it: (C,), or (1, C, 1, 1) for SPATIAL code that broadcasts it."""
    arr = np.array(values, dtype=object)
    return arr.reshape(1, -1, 1, 1) if four else arr


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
    who: str, param: Raw, channels: tuple[int, ...], kind: str, names: dict[str, str] | None = None
) -> tuple[dict[str, np.ndarray], list[str], dict[str, str]]:
    """The running statistics the forward left in bn_param (under the keys it reads), why they
    are not exact, and the dtypes they came back in."""
    names = names or {"running_mean": "running_mean", "running_var": "running_var"}
    keys = param.keys or ()
    missing = [names[k] for k in ("running_mean", "running_var") if names[k] not in keys]
    if param.t != "dict" or missing or param.items is None:
        raise UserFailure(
            "running",
            f"{who} removed {' and '.join(missing) or 'the running statistics'} from bn_param; "
            "keep the running statistics in bn_param (updated in training mode, read in test "
            "mode)",
        )
    out, reasons, dtypes = {}, [], {}
    for key in ("running_mean", "running_var"):
        raw = param.items[keys.index(names[key])]
        values, dtype, reason = to_array(who, f"bn_param['{names[key]}']", raw, channels, kind)
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
            square = len(shape) == 1 and got == (shape[0], shape[0]) and shape[0] > 1
            raise UserFailure(
                "shape",
                f"{who} returned {name} with shape {got}; expected {shape}"
                + (" (one value per feature/channel)" if len(shape) == 1 else " (the shape of x)")
                + (
                    f": a ({shape[0]}, {shape[0]}) matrix, as an outer product such as "
                    "dout.T @ x_hat gives; the gradient is its diagonal, one sum over the batch "
                    "per feature (np.sum(dout * x_hat, axis=0))"
                    if square and name == "dgamma"
                    else f": a ({shape[0]}, {shape[0]}) matrix; one sum over the batch per "
                    "feature is wanted (np.sum(..., axis=0))"
                    if square
                    else ""
                ),
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
