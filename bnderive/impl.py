"""Check a user's NumPy implementation of BatchNorm against the ground truth, exactly.

The user's file runs in a guarded child process (``sandbox``) on inputs chosen like bnderive's
random points: integer x (with a large mean), non-uniform integer upstream gradients g,
γ ∉ {0, ±1}, and one ε for the layer chosen so that √(σ_c²+ε) is rational for every channel c.
Then the whole forward and backward pass is rational, and the user's code runs on object arrays
of exact rationals (``sandbox.Exact``): its out, dx, dγ, dβ are compared with the truth at the
same point exactly, at several shapes, one of them with two features or channels so that a
mix-up between them shows.  The same code also runs in float64 at the same points; where the
exact run is impossible (the code converts to float, calls np.exp, …) the float64 run is the
evidence, compared within a stated tolerance and reported as "numeric".  An exact disagreement is
confirmed in float64 as well: it may come from a float constant of the code that could not be
read exactly, and then only the numeric agreement is reported.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from random import Random
from typing import Any

import numpy as np

from .derive import derive
from .errors import BnderiveError
from .evaluate import RATIONAL
from .instances import point_env
from .sandbox import SandboxFailure, run_job
from .spec import Mode, Spec
from .verify import Counterexample, Status, Verdict, _run

#: Relative tolerance of the numeric method: |code − truth| ≤ TOL · max(1, max |truth|).
TOL = 1e-8
DEFAULT_TIMEOUT = 20.0
DEFAULT_MEMORY = 2 * 1024**3

QUANTITIES = ("out", "dx", "dgamma", "dbeta")


class ImplementationError(BnderiveError):
    """The user's implementation could not be run or returned something unusable (exit 2)."""


@dataclass(frozen=True)
class Case:
    """One exact input point: arrays in the user's layout, one ε for the layer."""

    spec: Spec
    x: np.ndarray  # object array of Fraction, shape spec.shape
    g: np.ndarray
    gamma: tuple[Fraction, ...]  # per feature/channel
    beta: tuple[Fraction, ...]
    eps: Fraction
    roots: tuple[Fraction, ...]  # √(σ_c² + ε) per channel, rational by construction
    running_mean: tuple[Fraction, ...] = ()
    running_var: tuple[Fraction, ...] = ()

    def to_job(self) -> dict[str, Any]:
        def text(values: Any) -> Any:
            return np.vectorize(_text, otypes=[object])(np.asarray(values, dtype=object)).tolist()

        job = {
            "shape": list(self.spec.shape),
            "x": text(self.x),
            "dout": text(self.g),
            "gamma": text(self.gamma),
            "beta": text(self.beta),
            "eps": _text(self.eps),
            "training": self.spec.training,
        }
        if not self.spec.training:
            job["running_mean"] = text(self.running_mean)
            job["running_var"] = text(self.running_var)
        return job

    def inputs(self) -> dict[str, str]:
        out = {
            "x": _nested(self.x),
            "dout": _nested(self.g),
            "γ": _nested(np.array(self.gamma, dtype=object)),
            "β": _nested(np.array(self.beta, dtype=object)),
        }
        if not self.spec.training:
            out["running μ"] = _nested(np.array(self.running_mean, dtype=object))
            out["running σ²"] = _nested(np.array(self.running_var, dtype=object))
        out["ε"] = _text(self.eps)
        out["√(σ²+ε)"] = _nested(np.array(self.roots, dtype=object))
        return out


def _text(value: Any) -> str:
    q = Fraction(value)
    return str(q.numerator) if q.denominator == 1 else f"{q.numerator}/{q.denominator}"


def _nested(arr: Any) -> str:
    if not isinstance(arr, np.ndarray):
        return _text(arr)
    return "[" + ", ".join(_nested(a) for a in arr) + "]"


def default_shapes(mode: Mode, training: bool = True) -> list[Spec]:
    """N = 3, 4, 5 with one feature and (3, 2) per activation; (2,2,2,2), (3,1,2,2) spatial."""
    if mode is Mode.PER_ACTIVATION:
        shapes = [(3, 1), (4, 1), (5, 1), (3, 2)]
        return [Spec(mode, n=n, c=c, training=training) for n, c in shapes]
    return [
        Spec(mode, n=n, c=c, h=h, w=w, training=training)
        for n, c, h, w in [(2, 2, 2, 2), (3, 1, 2, 2)]
    ]


def _variance(values: list[int]) -> Fraction:
    m = len(values)
    return Fraction(m * sum(v * v for v in values) - sum(values) ** 2, m * m)


def common_eps(variances: list[Fraction], rng: Random) -> tuple[Fraction, tuple[Fraction, ...]]:
    """One ε > 0 with every √(σ_c² + ε) rational, for one or two channels.

    One channel: r an integer above √σ², ε = r² − σ².  Two channels: a² − b² = σ₁² − σ₂² = d with
    a = (s + d/s)/2, b = (s − d/s)/2 for any rational s; an integer s large enough makes b > 0
    and ε = a² − σ₁² = b² − σ₂² > 0.
    """
    top = max(variances)
    base = math.isqrt(math.ceil(top)) + 1 + rng.randint(0, 3)
    if len(set(variances)) == 1:
        return base * base - variances[0], tuple(Fraction(base) for _ in variances)
    if len(variances) != 2:
        raise ValueError("a common rational ε is constructed for at most two channels")
    v1, v2 = variances
    d = v1 - v2
    s = Fraction(2 * base)
    while True:
        a, b = (s + d / s) / 2, (s - d / s) / 2
        eps = a * a - v1
        if a > 0 and b > 0 and eps > 0:
            return eps, (a, b)
        s += 1


def make_case(spec: Spec, seed: int, spread: int = 5) -> Case:
    """Adversarial exact inputs (DESIGN.md §4): integers, large mean, γ ∉ {0, ±1}, uneven g."""
    rng = Random(seed)
    c, m = spec.c, spec.m
    x = np.empty(spec.shape, dtype=object)
    g = np.empty(spec.shape, dtype=object)
    variances = []
    for channel in range(c):
        positions = spec.positions(channel)
        offset = rng.randint(20, 60) * rng.choice((-1, 1))
        while True:
            xs = [rng.randint(-spread, spread) for _ in range(m)]
            gs = [rng.randint(-spread, spread) for _ in range(m)]
            if len(set(xs)) > 1 and len(set(gs)) > 1 and sum(gs) != 0:
                break
        for p, xv, gv in zip(positions, xs, gs, strict=True):
            x[p], g[p] = Fraction(xv + offset), Fraction(gv)
        variances.append(_variance(xs))
    gammas = tuple(Fraction(rng.choice([-5, -3, -2, 2, 3, 4, 5])) for _ in range(c))
    betas = tuple(Fraction(rng.randint(-spread, spread)) for _ in range(c))
    if spec.training:
        eps, roots = common_eps(variances, rng)
        return Case(spec, x, g, gammas, betas, eps, roots)
    means = tuple(Fraction(rng.randint(20, 60)) for _ in range(c))
    running = [Fraction(rng.randint(1, spread * spread)) for _ in range(c)]
    eps, roots = common_eps(running, rng)
    return Case(spec, x, g, gammas, betas, eps, roots, means, tuple(running))


def truth_at(case: Case) -> dict[str, np.ndarray]:
    """out, dx (the input's shape), dγ, dβ (one per channel) at the case, exactly."""
    spec = case.spec
    out = np.empty(spec.shape, dtype=object)
    dx = np.empty(spec.shape, dtype=object)
    dgamma = np.empty(spec.c, dtype=object)
    dbeta = np.empty(spec.c, dtype=object)
    definitions = derive(spec).definitions()
    for channel in range(spec.c):
        positions = spec.positions(channel)
        point: dict[str, Any] = {
            "x": [case.x[p] for p in positions],
            "g": [case.g[p] for p in positions],
            "ggI": [0] * spec.m,
            "gamma": case.gamma[channel],
            "beta": case.beta[channel],
            "ggG": 0,
            "ggB": 0,
            "eps": case.eps,
        }
        if not spec.training:
            point["mu"] = case.running_mean[channel]
            point["var"] = case.running_var[channel]
        inst = point_env(spec, channel, point, RATIONAL)
        values = _run(definitions, inst.env)
        if values.errors:
            raise BnderiveError(f"the truth is undefined at {spec.describe()}: {values.errors}")
        for k, p in enumerate(positions):
            out[p] = _fraction(inst.env.arrays["y"][k])
            dx[p] = _fraction(values.values["dx"][k])
        dgamma[channel] = _fraction(values.values["dgamma"])
        dbeta[channel] = _fraction(values.values["dbeta"])
    return {"out": out, "dx": dx, "dgamma": dgamma, "dbeta": dbeta}


def _fraction(value: Any) -> Fraction:
    return Fraction(int(value.numerator), int(value.denominator))


# -- running the user's code -----------------------------------------------------------------------
@dataclass
class Report:
    """What check-impl found: the verdicts and how the code was called."""

    file: str
    api: str
    functions: list[str]
    verdicts: list[Verdict]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    output: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "api": self.api,
            "functions": self.functions,
            "notes": self.notes,
            "verdicts": [v.to_dict() for v in self.verdicts],
        }


def check_impl(
    path: str | Path,
    api: str | None = None,
    function: str | None = None,
    mode: Mode | str = Mode.PER_ACTIVATION,
    training: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    memory: int = DEFAULT_MEMORY,
    seed: int = 0,
) -> Report:
    """Run the implementation in ``path`` in a guarded child and compare it with the truth."""
    mode = Mode.parse(mode)
    file = Path(path)
    if not file.is_file():
        raise ImplementationError(f"{path}: no such file; give the path of a Python file.")
    if api is not None and api not in ("cs231n", "functional"):
        raise ImplementationError(f"Unknown API {api!r}: use cs231n or functional.")
    started = time.perf_counter()
    cases = [
        make_case(spec, seed * 7919 + k + 1)
        for k, spec in enumerate(default_shapes(mode, training))
    ]
    job = {
        "file": str(file.resolve()),
        "api": api,
        "function": function,
        "mode": mode.value,
        "cases": [c.to_job() for c in cases],
    }
    try:
        result = run_job(job, timeout, memory)
    except SandboxFailure as exc:
        raise ImplementationError(_failure_message(file, exc.message, "", exc.output)) from None
    if not result["ok"]:
        output = (result.get("stdout") or "") + (result.get("stderr") or "")
        raise ImplementationError(
            _failure_message(file, result["message"], result.get("trace", ""), output)
        )
    calls = result["calls"]
    verdicts, notes = _compare(file.name, calls, cases, result["cases"])
    functions = ([calls["forward"]] if calls["forward"] else []) + list(calls["backward"])
    return Report(
        str(path),
        calls["api"],
        functions,
        verdicts,
        notes,
        time.perf_counter() - started,
        (result.get("stdout") or "")[:500],
    )


def _failure_message(file: Path, message: str, trace: str, output: str) -> str:
    text = f"{file.name}: {message}."
    text = text.replace("..", ".")
    if trace:
        text += "\n" + trace
    if output.strip():
        shown = output.strip()
        if len(shown) > 120:
            shown = shown[:120] + " …"
        text += f"\n(its output began: {shown!r})"
    return text


# -- comparing -------------------------------------------------------------------------------------
@dataclass
class _Tally:
    exact: int = 0
    numeric: int = 0
    max_error: float = 0.0
    refuted: Verdict | None = None
    reasons: list[str] = field(default_factory=list)


def _compare(
    filename: str, calls: dict[str, Any], cases: list[Case], runs: list[dict[str, Any]]
) -> tuple[list[Verdict], list[str]]:
    rows: list[tuple[str, str]] = []
    if calls["forward"]:
        rows.append((calls["forward"], "out"))
    for name in calls["backward"]:
        rows += [(name, "dx"), (name, "dgamma"), (name, "dbeta")]
    tallies = {row: _Tally() for row in rows}
    notes: list[str] = []
    conversions: dict[str, tuple[str, str]] = {}
    inexact: list[str] = []
    for case, run in zip(cases, runs, strict=True):
        truth = truth_at(case)
        conversions.update({k: tuple(v) for k, v in run["conversions"].items()})
        if run["exact"] is None and run["why_not_exact"]:
            inexact.append(f"{'×'.join(map(str, case.spec.shape))}: {run['why_not_exact']}")
        for who, quantity in rows:
            tally = tallies[(who, quantity)]
            if tally.refuted is not None:
                continue
            _compare_one(tally, who, quantity, case, truth[quantity], run)
    if inexact:
        notes.append(
            f"no exact run at {len(inexact)} of {len(cases)} shapes, float64 used there; "
            f"first: {inexact[0]}"
        )
    for text, (value, how) in sorted(conversions.items()):
        if how == "fraction":
            notes.append(f"the float constant {text} was read as the fraction {value}")
        else:
            notes.append(
                f"the float constant {text} is no short decimal or simple fraction; its exact "
                "binary value was used"
            )
    specs = [c.spec for c in cases]
    verdicts = [_verdict(who, quantity, tallies[(who, quantity)], specs) for who, quantity in rows]
    return verdicts, notes


def _compare_one(
    tally: _Tally, who: str, quantity: str, case: Case, truth: np.ndarray, run: dict[str, Any]
) -> None:
    floats = np.array(run["float"][who][quantity], dtype=float).reshape(truth.shape)
    truth_f = truth.astype(float)
    scale = max(1.0, float(np.max(np.abs(truth_f))))
    error = float(np.max(np.abs(floats - truth_f))) / scale
    float_ok = error <= TOL
    if run["exact"] is not None:
        mine = np.vectorize(Fraction, otypes=[object])(
            np.array(run["exact"][who][quantity], dtype=object)
        ).reshape(truth.shape)
        differs = np.argwhere(mine != truth)
        if len(differs) == 0:
            tally.exact += 1
            return
        if not float_ok:
            where = tuple(int(i) for i in differs[0])
            tally.refuted = _refutation(
                who, quantity, case, where, truth[where], _text(mine[where]), "exact"
            )
            return
        tally.reasons.append(
            f"{case.spec.describe()}: the exact run differs from the truth but float64 agrees, "
            "so a float constant of the code was not read exactly"
        )
    tally.numeric += 1
    tally.max_error = max(tally.max_error, error)
    if not float_ok:
        where = tuple(int(i) for i in np.argwhere(np.abs(floats - truth_f) > TOL * scale)[0])
        tally.refuted = _refutation(
            who, quantity, case, where, truth[where], repr(float(floats[where])), "numeric"
        )


def _entry(quantity: str, where: tuple[int, ...]) -> str:
    return f"{quantity}[{', '.join(map(str, where))}]"


def _refutation(
    who: str,
    quantity: str,
    case: Case,
    where: tuple[int, ...],
    truth: Fraction,
    mine: str,
    method: str,
) -> Verdict:
    channel = where[1] if len(where) > 1 else where[0]
    truth_text = _text(truth) + ("" if method == "exact" else f" ≈ {float(truth)!r}")
    cex = Counterexample(
        case.spec, channel, _entry(quantity, where), case.inputs(), truth_text, mine
    )
    detail = (
        f"differs at {case.spec.describe()} in exact rational arithmetic"
        if method == "exact"
        else f"differs at {case.spec.describe()} in float64 beyond the relative tolerance {TOL:g}"
    )
    return Verdict(
        who, quantity, None, Status.REFUTED, method, _scope([case.spec], method), detail, cex,
        mode=case.spec.mode,
    )  # fmt: skip


def _scope(specs: list[Spec], method: str) -> str:
    shapes = ", ".join("×".join(map(str, s.shape)) for s in specs)
    if all(s.mode is Mode.PER_ACTIVATION and s.c == 1 for s in specs):
        shapes = "N = " + ", ".join(str(s.n) for s in specs)
    return f"{shapes} {method}"


def _verdict(who: str, quantity: str, tally: _Tally, specs: list[Spec]) -> Verdict:
    mode = specs[0].mode
    if tally.refuted is not None:
        return tally.refuted
    if tally.numeric == 0:
        return Verdict(
            who,
            quantity,
            None,
            Status.HOLDS,
            "exact",
            _scope(specs, "exact"),
            "equal to the truth in exact rational arithmetic at every shape",
            mode=mode,
        )
    why = "; ".join(tally.reasons) if tally.reasons else "exact evaluation was impossible"
    return Verdict(
        who,
        quantity,
        None,
        Status.HOLDS,
        "numeric",
        _scope(specs, "numeric" if tally.exact == 0 else "exact/numeric"),
        f"float64 agrees with the exact truth within the relative tolerance {TOL:g} "
        f"(largest relative error {tally.max_error:.1e}) at {tally.numeric} of {len(specs)} "
        f"shapes: evidence, not a proof ({why})",
        mode=mode,
    )
