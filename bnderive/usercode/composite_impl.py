"""check-impl on CS231n's ``affine_bn_relu_forward/backward`` (issue 16 item 2): the pair

    affine_bn_relu_forward(x, w, b, gamma, beta, bn_param) -> (out, cache)
    affine_bn_relu_backward(dout, cache) -> (dx, dw, db, dgamma, dbeta)

is checked against the exact gradient of Linear → BatchNorm (training) → ReLU
(``core.composite.affine_bn_relu_truth``), ∂L/∂b ≡ 0 included (b is cancelled by μ).

The inputs are built so that everything is rational: h = xW + b is ``core.layer.exact_point``'s
BatchNorm input (every √(σ²+ε) rational); W is an integer matrix whose first D rows form a
unimodular block, so x = [(h − b − z·r)·A⁻¹, z] is integer; ReLU lets some entries through and
blocks others, and no BatchNorm output is exactly 0 (where ReLU's derivative is a convention).
As for the other families, a result that cannot be computed exactly is reported, not decided.
"""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path
from random import Random
from typing import Any

import numpy as np

from bnderive.core.composite import affine_bn_relu_truth
from bnderive.core.layer import exact_point
from bnderive.core.spec import Mode, Spec
from bnderive.usercode.layout import ImplementationError, Source
from bnderive.usercode.run import (
    COMPOSITE,
    Caller,
    Calls,
    UserFailure,
    _array_step,
    _scalar_step,
    exact_text,
    nested_text,
    to_array,
    unpack,
)
from bnderive.usercode.sandbox import Sandbox, SandboxFailure
from bnderive.verify.verdict import Counterexample, Status, Verdict

GRADS = ("dx", "dw", "db", "dgamma", "dbeta")


def composite_pair(source: Source) -> tuple[str, str] | None:
    """The file's affine_bn_relu forward and backward, by name (both, or None)."""
    found: dict[str, str] = {}
    for name in source.functions:
        m = COMPOSITE.match(name.lower())
        if m:
            found.setdefault(m.group(3), name)
    if "forward" in found and "backward" in found:
        return found["forward"], found["backward"]
    return None


def composite_case(n: int, d: int, seed: int) -> dict[str, Any]:
    """Exact inputs of Linear → BN → ReLU with h = xW + b of rational roots (module docstring)."""
    rng = Random(seed)
    for attempt in range(50):
        spec = Spec(Mode.PER_ACTIVATION, n=n, c=d)
        p = exact_point(spec, seed=seed * 101 + attempt)
        h, gamma, eps = p["x"], p["gamma"], p["eps"]
        beta = np.array([Fraction(rng.choice([-1, 1])) for _ in range(d)], dtype=object)
        a = np.eye(d, dtype=object) * Fraction(1)
        for i in range(d):
            for j in range(i + 1, d):
                a[i, j] = Fraction(rng.randint(-2, 2))  # unit upper triangular: unimodular
        r = np.array([[Fraction(rng.randint(-2, 2)) for _ in range(d)]], dtype=object)
        w = np.vstack([a, r])
        b = np.array([Fraction(rng.randint(-4, 4)) for _ in range(d)], dtype=object)
        z = np.array([[Fraction(rng.randint(-3, 3))] for _ in range(n)], dtype=object)
        rhs = h - b - z.dot(r)
        y = _solve_upper(a, rhs)  # y·A = rhs
        x = np.hstack([y, z])
        truth = affine_bn_relu_truth(x, w, b, gamma, beta, p["g"], eps, backend="rational")
        bn = truth["y"]
        if any(v == 0 for v in bn.flat):
            continue
        positive = sum(1 for v in bn.flat if v > 0)
        if 0 < positive < bn.size:
            root = p["r"]
            return {"x": x, "w": w, "b": b, "gamma": gamma, "beta": beta, "dout": p["g"],
                    "eps": eps, "root": root, "truth": truth}  # fmt: skip
    raise AssertionError("no composite case found")  # pragma: no cover


def _solve_upper(a: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """y with y·A = rhs for a unit upper-triangular A (forward substitution, exact)."""
    n, d = rhs.shape
    y = np.empty((n, d), dtype=object)
    for j in range(d):
        y[:, j] = rhs[:, j] - sum((y[:, i] * a[i, j] for i in range(j)), np.zeros(n, dtype=object))
    return y


def _run(caller: Caller, forward: str, backward: str, case: dict[str, Any], kind: str) -> dict:
    """Forward then backward on the forward's cache, in ``kind`` numbers; the results as
    arrays (or why they are not exact)."""
    caller.conversions = {}
    steps = [{"op": "reset"}, {"op": "numpy", "exact": kind == "exact"}]
    for name in ("x", "w", "b", "gamma", "beta", "dout"):
        steps.append(_array_step(name, case[name], kind))
    steps.append(_scalar_step("eps", case["eps"], kind))
    # CS231n's momentum given exactly (its default 0.9 in floats makes 1 − 0.9 inexact, which
    # would leave every exact disagreement undecided); the running statistics are not checked
    steps.append(_scalar_step("momentum", Fraction(9, 10), kind))
    param = {"mode": {"lit": "train"}, "eps": {"var": "eps"}, "momentum": {"var": "momentum"}}
    steps.append({"op": "let", "name": "param", "value": {"dict": param}})
    caller.request(steps, [])
    who = f"{forward}(x, w, b, gamma, beta, bn_param)"
    args = [{"copy": {"var": n}} for n in ("x", "w", "b", "gamma", "beta")] + [{"var": "param"}]
    got = caller.request(
        [{"op": "call", "fn": {"global": forward}, "args": args, "to": "forward", "what": who},
         {"op": "send", "label": "forward", "value": {"var": "forward"}, "what": who}],
        ["forward"],
    )["forward"]  # fmt: skip
    out_raw, _cache = unpack(forward, got, ("out", "cache"))
    n, d = case["dout"].shape
    shapes = {"out": (n, d), "dx": case["x"].shape, "dw": case["w"].shape,
              "db": (d,), "dgamma": (d,), "dbeta": (d,)}  # fmt: skip
    values: dict[str, Any] = {}
    reasons: list[str] = []
    arr, _dtype, reason = to_array(forward, "out", out_raw, shapes["out"], kind)
    values[(forward, "out")] = arr
    reasons += [reason] if reason else []
    bwho = f"{backward}(dout, cache)"
    got = caller.request(
        [{"op": "call", "fn": {"global": backward},
          "args": [{"copy": {"var": "dout"}}, {"item": [{"var": "forward"}, 1]}],
          "to": "backward", "what": bwho},
         {"op": "send", "label": "backward", "value": {"var": "backward"}, "what": bwho}],
        ["backward"],
    )["backward"]  # fmt: skip
    for q, raw in zip(GRADS, unpack(backward, got, GRADS), strict=True):
        arr, _dtype, reason = to_array(backward, q, raw, shapes[q], kind)
        values[(backward, q)] = arr
        reasons += [reason] if reason else []
    binary = any(how not in ("fraction", "decimal") for _v, how in caller.conversions.values())
    return {"values": values, "why": "; ".join(reasons) or None, "binary": binary}


def check_composite_impl(
    source: Source, pair: tuple[str, str], timeout: float, memory_mb: int, seed: int = 0
) -> Any:
    """The pair checked at two shapes; a ``check_impl.Report`` of its own (six rows)."""
    from bnderive.usercode.check_impl import Failure, Report, _failure_message
    from bnderive.usercode.imports import stub_imports
    from bnderive.usercode.run import load

    forward, backward = pair
    shapes = [(4, 2), (5, 3)]
    cases = [composite_case(n, d, seed * 7919 + k + 1) for k, (n, d) in enumerate(shapes)]
    stubs = stub_imports(source, [forward, backward])
    label = "affine-bn-relu training"
    started = time.perf_counter()
    rows = [(forward, "out")] + [(backward, q) for q in GRADS]
    results: list[tuple[dict, dict | None]] = []
    try:
        with Sandbox(timeout, memory_mb) as box:
            load(box, source, stubs=stubs.modules)
            caller = Caller(box, Calls("composite", forward, [backward]), "per-activation")
            for case in cases:
                floats = _run(caller, forward, backward, case, "float")
                try:
                    exact = _run(caller, forward, backward, case, "exact")
                except UserFailure as exc:
                    exact = {"values": {}, "why": exc.message, "binary": False}
                results.append((floats, exact))
    except (SandboxFailure, UserFailure) as exc:
        message = _failure_message(source.path, exc.message, getattr(exc, "trace", ""),
                                   getattr(exc, "output", ""))  # fmt: skip
        return Report(str(source.path), "composite", [forward, backward], [], [], 0.0, "",
                      failures=[Failure(forward, ("out",), label, message),
                                Failure(backward, GRADS, label, message)])  # fmt: skip
    verdicts = [_verdict(who, q, cases, results) for who, q in rows]
    report = Report(str(source.path), "composite", [forward, backward], verdicts, stubs.notes)
    report.sections = [label] * len(verdicts)
    report.calls = [
        f"{forward}(x, w, b, gamma, beta, bn_param) -> (out, cache); bn_param holds mode "
        "('train'), eps, momentum [affine-bn-relu, training]",
        f"{backward}(dout, cache) -> (dx, dw, db, dgamma, dbeta) [affine-bn-relu, training]",
    ]
    report.notes.append(
        f"{forward}/{backward} checked as Linear → BatchNorm (training) → ReLU against the exact "
        "composite gradient (core.composite), at N×D_in×D = "
        + ", ".join(f"{n}×{d + 1}×{d}" for n, d in shapes)
        + "; db is exactly 0 there (b is cancelled by the batch mean)"
    )
    report.seconds = time.perf_counter() - started
    return report


def _verdict(who: str, q: str, cases: list[dict], results: list[tuple[dict, dict]]) -> Verdict:
    scope = ", ".join(f"{c['dout'].shape[0]}×{c['x'].shape[1]}×{c['dout'].shape[1]}" for c in cases)
    inexact: list[str] = []
    worst = 0.0
    for case, (floats, exact) in zip(cases, results, strict=True):
        truth = case["truth"][q]
        mine = exact["values"].get((who, q)) if exact["why"] is None else None
        if mine is not None:
            diff = [k for k, (m, t) in enumerate(zip(mine.flat, truth.flat, strict=True))
                    if Fraction(m) != Fraction(t)]  # fmt: skip
            if not diff:
                continue
            if not exact["binary"]:
                at = tuple(int(i) for i in np.unravel_index(diff[0], truth.shape))
                inputs = {k: nested_text(case[k]) for k in ("x", "w", "b", "gamma", "beta", "dout")}
                inputs["ε"], inputs["√(σ²+ε) of h = xW + b"] = (
                    exact_text(case["eps"]),
                    exact_text(case["root"]),
                )
                n, d = case["dout"].shape
                spec = Spec(Mode.PER_ACTIVATION, n=n, c=d)
                why = (" (∂L/∂b is exactly 0 in training mode: b is cancelled by the batch mean)"
                       if q == "db" else "")  # fmt: skip
                return Verdict(
                    who, q, None, Status.REFUTED, "exact", f"{n}×{case['x'].shape[1]}×{d} exact",
                    "differs from the exact gradient of Linear → BatchNorm → ReLU in exact "
                    f"rational arithmetic{why}",
                    Counterexample(spec, 0, f"{q}[{', '.join(map(str, at))}]", inputs,
                                   exact_text(truth[at]), exact_text(mine[at])),
                    mode=Mode.PER_ACTIVATION,
                )  # fmt: skip
            inexact.append("a float constant was read at its binary value")
            continue
        inexact.append(exact["why"] or "no exact run")
        f = floats["values"].get((who, q))
        if f is not None:
            ref = truth.astype(float)
            scale = max(1.0, float(np.max(np.abs(ref))))
            worst = max(worst, float(np.max(np.abs(np.asarray(f, dtype=float) - ref))) / scale)
    if not inexact:
        return Verdict(who, q, None, Status.HOLDS, "exact", f"{scope} exact",
                       "equal to the exact gradient in rational arithmetic at every shape",
                       mode=Mode.PER_ACTIVATION)  # fmt: skip
    return Verdict(
        who, q, None, Status.UNDECIDED, "numeric", f"{scope} numeric",
        f"no exact run ({inexact[0]}); the float64 results differ from the exact value by at "
        f"most {worst:.2g} of its scale, but the composite has no derived rounding bound yet: "
        "not decided",
        mode=Mode.PER_ACTIVATION,
    )  # fmt: skip


def check_file(path: str | Path, timeout: float, memory_mb: int, seed: int = 0) -> Any:
    """The composite pair of the file at ``path`` (an ImplementationError when it has none)."""
    from bnderive.usercode.layout import read_source

    source = read_source(path)
    pair = composite_pair(source)
    if pair is None:
        raise ImplementationError(f"{source.name} defines no affine_bn_relu_forward/backward pair.")
    return check_composite_impl(source, pair, timeout, memory_mb, seed)
