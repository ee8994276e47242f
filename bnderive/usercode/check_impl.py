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
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from random import Random
from typing import Any

import numpy as np

from bnderive.core.derive import derive
from bnderive.core.evaluate import RATIONAL
from bnderive.core.points import point_env
from bnderive.core.spec import Mode, Spec
from bnderive.errors import BnderiveError
from bnderive.usercode.imports import stub_imports
from bnderive.usercode.layer import layer_plans
from bnderive.usercode.layout import ImplementationError, read_source
from bnderive.usercode.precision import rounding_bounds, running_bound, visible_mistake
from bnderive.usercode.run import (
    Caller,
    Run,
    UserFailure,
    exact_text,
    load,
    nested_text,
    pair_by_name,
    resolve_api,
)
from bnderive.usercode.sandbox import (
    DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT,
    Sandbox,
    SandboxFailure,
    check_limits,
)
from bnderive.verify.lines import run_lines
from bnderive.verify.verdict import Counterexample, Status, Verdict

#: The wider dtype a float64 result may have been computed in inside the code: a float64 result
#: off by more than float64 rounding but within float32's is undecided, not refuted.
INSIDE = "float32"

QUANTITIES = ("out", "dx", "dgamma", "dbeta")


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
            return np.vectorize(exact_text, otypes=[object])(
                np.asarray(values, dtype=object)
            ).tolist()

        job = {
            "shape": list(self.spec.shape),
            "x": text(self.x),
            "dout": text(self.g),
            "gamma": text(self.gamma),
            "beta": text(self.beta),
            "eps": exact_text(self.eps),
            "training": self.spec.training,
        }
        if self.running_mean:
            job["running_mean"] = text(self.running_mean)
            job["running_var"] = text(self.running_var)
        return job

    def point(self, channel: int, positions: list | None = None) -> dict[str, Any]:
        """The inputs of one reduction set (a channel's elements, or ``positions`` of it)."""
        where = self.spec.positions(channel) if positions is None else positions
        point: dict[str, Any] = {
            "x": [self.x[p] for p in where],
            "g": [self.g[p] for p in where],
            "ggI": [0] * len(where),
            "gamma": self.gamma[channel],
            "beta": self.beta[channel],
            "ggG": 0,
            "ggB": 0,
            "eps": self.eps,
        }
        if not self.spec.training:
            point["mu"] = self.running_mean[channel]
            point["var"] = self.running_var[channel]
        return point

    def inputs(self) -> dict[str, str]:
        out = {
            "x": nested_text(self.x),
            "dout": nested_text(self.g),
            "γ": nested_text(np.array(self.gamma, dtype=object)),
            "β": nested_text(np.array(self.beta, dtype=object)),
        }
        if not self.spec.training:
            out["running μ"] = nested_text(np.array(self.running_mean, dtype=object))
            out["running σ²"] = nested_text(np.array(self.running_var, dtype=object))
        out["ε"] = exact_text(self.eps)
        out["√(σ²+ε)"] = nested_text(np.array(self.roots, dtype=object))
        return out


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
        if c == 1:
            # One ε with both √(σ²+ε) and √(M/(M−1)·σ²+ε) rational: code with Bessel's variance
            # (a known mistake) then runs exactly too, and is refuted and named exactly.
            eps, (root, _) = common_eps([variances[0], variances[0] * m / (m - 1)], rng)
            roots: tuple[Fraction, ...] = (root,)
        else:
            eps, roots = common_eps(variances, rng)
        # Running statistics before the step, drawn last so that the other inputs do not depend
        # on them: a small non-zero mean far from the batch mean (|μ| ≥ 15), and a variance that
        # is neither σ² nor M/(M−1)·σ², so that "left unchanged", "replaced by the batch value"
        # and the two conventions' updates all differ.
        means = tuple(Fraction(rng.randint(1, 9) * rng.choice((-1, 1))) for _ in range(c))
        olds = []
        for v in variances:
            old = Fraction(rng.randint(1, spread * spread))
            while old in (v, v * m / max(m - 1, 1)):
                old += 1
            olds.append(old)
        return Case(spec, x, g, gammas, betas, eps, roots, means, tuple(olds))
    means = tuple(Fraction(rng.randint(20, 60)) for _ in range(c))
    running = [Fraction(rng.randint(1, spread * spread)) for _ in range(c)]
    eps, roots = common_eps(running, rng)
    return Case(spec, x, g, gammas, betas, eps, roots, means, tuple(running))


#: The truth at each case, computed once: the comparisons, the diagnosis and the wrong cache
#: order all read it, and in a folder every file meets the same cases.
_TRUTHS: dict[Any, dict[str, np.ndarray]] = {}


def truth_at(case: Case) -> dict[str, np.ndarray]:
    """out, dx (the input's shape), dγ, dβ (one per channel) at the case, exactly (a copy of
    the arrays: the caller may write to them)."""
    key = _case_key(case, "")
    if key not in _TRUTHS:
        if len(_TRUTHS) >= 4096:
            _TRUTHS.clear()
        _TRUTHS[key] = _truth(case)
    return {name: values.copy() for name, values in _TRUTHS[key].items()}


def _truth(case: Case) -> dict[str, np.ndarray]:
    spec = case.spec
    out = np.empty(spec.shape, dtype=object)
    dx = np.empty(spec.shape, dtype=object)
    dgamma = np.empty(spec.c, dtype=object)
    dbeta = np.empty(spec.c, dtype=object)
    definitions = derive(spec).definitions()
    for channel in range(spec.c):
        positions = spec.positions(channel)
        inst = point_env(spec, channel, case.point(channel), RATIONAL)
        values = run_lines(definitions, inst.env)
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
@dataclass(frozen=True)
class Failure:
    """A function that could not be checked in one section, and why (its own row, exit 2)."""

    function: str
    quantities: tuple[str, ...]
    section: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "quantities": list(self.quantities),
            "section": self.section,
            "status": "could not check",
            "message": self.message,
        }


@dataclass
class Report:
    """What check-impl found: the verdicts and how the code was called.

    ``sections`` gives each verdict's section ("per-activation training", "spatial eval", …);
    ``failures`` the functions that could not be checked, each with the reason."""

    file: str
    api: str
    functions: list[str]
    verdicts: list[Verdict]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    output: str = ""
    running: str | None = None  # the running-statistics convention the forward follows
    sections: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)  # how each function was called
    #: For each refuted (section, function, quantity): the known mistake it equals, or where it
    #: is wrong (a row of eval mode may have its own cause); section "" in a report whose
    #: diagnoses are kept without sections (the family's).
    section_diagnoses: dict[tuple[str, str, str], list[str]] = field(default_factory=dict)

    @property
    def diagnoses(self) -> dict[tuple[str, str], list[str]]:
        """The same per (function, quantity), in the first section that names one."""
        found: dict[tuple[str, str], list[str]] = {}
        for (_section, who, quantity), lines in self.section_diagnoses.items():
            found.setdefault((who, quantity), lines)
        return found

    def diagnosis(self, index: int) -> list[str]:
        """The diagnosis of verdict ``index``: its section's (never another section's: an eval
        row is not named by its training row's cause); a report kept without sections (the
        family's) by function and quantity."""
        v = self.verdicts[index]
        section = self.sections[index] if index < len(self.sections) else ""
        return self.section_diagnoses.get(
            (section, v.form, v.quantity)
        ) or self.section_diagnoses.get(("", v.form, v.quantity), [])

    @property
    def exit_code(self) -> int:
        """1 something refuted; 2 a function could not be checked; 3 undecided (or nothing
        checked); 0 everything checked holds."""
        statuses = {v.status for v in self.verdicts}
        if Status.REFUTED in statuses:
            return 1
        if self.failures:
            return 2
        if Status.UNDECIDED in statuses or Status.HOLDS not in statuses:
            return 3
        return 0

    @property
    def status(self) -> str:
        return {0: "holds", 1: "refuted", 2: "could not check", 3: "undecided"}[self.exit_code]

    def to_dict(self) -> dict[str, Any]:
        verdicts = []
        for k, v in enumerate(self.verdicts):
            entry = v.to_dict()
            if k < len(self.sections):
                entry["section"] = self.sections[k]
            verdicts.append(entry)
        return {
            "file": self.file,
            "api": self.api,
            "functions": self.functions,
            "calls": self.calls,
            "notes": self.notes,
            "verdicts": verdicts,
            "failures": [f.to_dict() for f in self.failures],
            "running_convention": self.running,
            "diagnoses": [
                {"function": who, "quantity": quantity}
                | ({"section": section} if section else {})
                | {"lines": lines}
                for (section, who, quantity), lines in self.section_diagnoses.items()
            ],
        }


@dataclass
class _Section:
    """One mode (PER_ACTIVATION or SPATIAL) in training or eval mode, checked."""

    label: str
    verdicts: list[Verdict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    running: str | None = None
    diagnoses: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    called: list[str] = field(default_factory=list)  # the functions called in this section


def _modes_of(source: Any, api: str | None, function: str | None) -> list[Mode]:
    """The modes a file implements: the CS231n forwards it defines (per-activation first)."""
    from bnderive.usercode.run import CS231N

    if function or api == "functional":
        return [Mode.PER_ACTIVATION]
    from bnderive.usercode.run import find_pair

    found = [
        Mode.parse(mode)
        for mode, (forward, backward, _alt) in CS231N.items()
        if forward in source.functions
        or backward in source.functions
        or find_pair(source, mode) is not None
    ]
    return found or [Mode.PER_ACTIVATION]


def check_impl(
    path: str | Path,
    api: str | None = None,
    function: str | None = None,
    mode: Mode | str | None = None,
    training: bool | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    memory_mb: int = DEFAULT_MEMORY_MB,
    seed: int = 0,
    running: str = "auto",
    layer_class: str | None = None,
) -> Report:
    """Run the implementation in ``path`` in a guarded child and compare it with the truth.

    By default everything the file implements is checked: each mode it has functions for
    (``mode`` chooses one), in training and in eval mode where its API has one (``training``
    True or False chooses one).  ``running`` is the running-statistics convention of the CS231n
    forward (``check_running``): ``cs231n`` or ``pytorch`` passes that convention's momentum in
    bn_param and expects its update; ``auto`` passes none and names the convention the code
    follows.  Layer classes (``layer``) are checked too; ``layer_class`` names the one to check
    (only it is then checked).
    """
    timeout, memory_mb = check_limits(timeout, memory_mb)
    _check_options(api, running)
    source = read_source(path)
    layers = [] if (api or function) else layer_plans(source, layer_class)
    if layer_class is not None and not layers:
        names = ", ".join(sorted(source.classes)) or "none"
        raise ImplementationError(
            f"{source.name}: no BatchNorm layer class {layer_class!r} (a class with a forward "
            f"method that computes batch statistics); classes found: {names}."
        )
    plans = _plans(source, api, function, mode, training, running, layers, layer_class)
    used = [n for _m, calls, _t in plans for n in _names(calls)]
    used += [calls.layer.cls for _m, calls, _t in plans if calls.layer is not None]
    stubs = stub_imports(source, [n.split(".")[0] for n in used])
    started = time.perf_counter()
    sections, provide = _run_sections(source, plans, stubs.modules, timeout, memory_mb,
                                      running, seed)  # fmt: skip
    report = _report(path, source, plans, sections, layers, stubs.notes, provide)
    report.seconds = time.perf_counter() - started
    if report.failures and not report.verdicts:
        # nothing could be checked: one error, as for a file that does not import
        messages = list(dict.fromkeys(f.message for f in report.failures))
        raise ImplementationError("\n".join(messages))
    return report


def _check_options(api: str | None, running: str) -> None:
    """The error of an unknown ``api`` or ``running``, or of a running-statistics convention
    declared for the functional API (whose backward keeps no running statistics to update)."""
    if api is not None and api not in ("cs231n", "functional"):
        raise ImplementationError(f"Unknown API {api!r}: use cs231n or functional.")
    if running not in RUNNING_CHOICES:
        raise ImplementationError(
            f"Unknown running-statistics convention {running!r}: use auto, cs231n or pytorch."
        )
    if api == "functional" and running != "auto":
        raise ImplementationError(_functional_running(running))


def _plans(
    source: Any,
    api: str | None,
    function: str | None,
    mode: Mode | str | None,
    training: bool | None,
    running: str,
    layers: list[Any],
    layer_class: str | None,
) -> list[Any]:
    """(mode, calls, training) for everything to check: each mode's functions (none when a
    layer class is named: only it is checked), then the layer classes; or the error that the
    file has nothing to check."""
    modes = [Mode.parse(mode)] if mode is not None else _modes_of(source, api, function)
    plans = []
    for m in modes if layer_class is None else []:
        plans += _mode_plans(source, api, function, m, training, running, bool(layers))
    plans += _layer_plans(layers, mode, training, running)
    if not plans:
        problems = [f"{p.cls}: {p.problem}" for p in layers if p.problem]
        raise ImplementationError(
            f"{source.name}: nothing to check: "
            + ("; ".join(problems) or "no BatchNorm code found")
            + "."
        )
    return plans


def _mode_plans(
    source: Any,
    api: str | None,
    function: str | None,
    mode: Mode,
    training: bool | None,
    running: str,
    has_layers: bool,
) -> list[Any]:
    """(mode, calls, training) for one mode's functions: the API's pair (or functional
    backward) in training and, where the API has one, eval mode.  A file without them may hold
    several functional backwards or a forward beside one (when no API or function was asked
    for); a file with layer classes may have only those (no plans: they are checked instead)."""
    try:
        calls = resolve_api(source, api, function, mode.value)
    except ImplementationError:
        several = _functional_plans(source, mode, training) if not (api or function) else []
        if not several and not (api or function):
            several = _forward_beside_functional(source, mode, training)
        if not several and not has_layers:
            raise
        return several  # none: the file's layer classes are what it implements
    if calls.api == "functional" and running != "auto":
        raise ImplementationError(_functional_running(running))
    if training is not None:
        trainings = [training]
    elif calls.api == "cs231n" and calls.has_eval:
        trainings = [True, False]
    elif calls.api == "functional" and _takes_running(source, calls):
        trainings = [True, False]
    else:
        trainings = [True]
    return [
        (mode, c, t)
        for c in pair_by_name(source, calls)
        for t in trainings
        if t or c.has_eval or training is False
    ]


def _run_sections(
    source: Any,
    plans: list[Any],
    stubs: list[str],
    timeout: float,
    memory_mb: int,
    running: str,
    seed: int,
) -> tuple[list[_Section], list[str]]:
    """Every plan checked in one guarded child (``_check_section``), and the names of numpy the
    child provided (``_unbound_numpy``).  A child that dies after some sections leaves those
    standing and the rest as failures; one that dies before any, or a file that does not
    import, is one error for the whole file."""
    sections: list[_Section] = []
    provide: list[str] = []
    try:
        with Sandbox(timeout, memory_mb) as box:
            provide = _unbound_numpy(source)
            load(box, source, stubs=stubs, provide=provide)
            fixed: dict[str, Fraction] = {}  # forward → the ε a code that takes none fixes
            for m, calls, t in plans:
                sections.append(
                    _check_section(box, source, calls, m, t, running, seed, len(plans), fixed)
                )
    except SandboxFailure as exc:
        message = _failure_message(source.path, exc.message, exc.trace, exc.output)
        if not sections:
            raise ImplementationError(message) from None
        # the child died in a later section: what was checked stands, the rest could not be
        for m, calls, t in plans[len(sections) :]:
            label = _label(m, t, len(plans))
            sections.append(_Section(label, failures=[
                Failure(name, _quantities(calls, name), label, message) for name in _names(calls)
            ]))  # fmt: skip
    except UserFailure as exc:  # importing the file failed
        raise ImplementationError(
            _failure_message(source.path, exc.message, exc.trace, exc.output)
        ) from None
    return sections, provide


def _report(
    path: str | Path,
    source: Any,
    plans: list[Any],
    sections: list[_Section],
    layers: list[Any],
    stub_notes: list[str],
    provide: list[str],
) -> Report:
    """The sections as one report: their rows in order, each note once, the first diagnosis of
    each row; the notes on what the child was given (stubs, numpy) and on the layer classes
    that were not called first."""
    first_calls = plans[0][1]
    functions: list[str] = []
    for _m, calls, _t in plans:
        functions += [n for n in _names(calls) if n not in functions]
    report = Report(
        str(path), first_calls.api, functions, [], [], 0.0, "",
        next((s.running for s in sections if s.running), None),
    )  # fmt: skip
    for section in sections:
        report.verdicts += section.verdicts
        report.sections += [section.label] * len(section.verdicts)
        report.notes += [n for n in section.notes if n not in report.notes]
        report.failures += section.failures
        for key, lines in section.diagnoses.items():
            report.section_diagnoses[(section.label, *key)] = lines
    report.calls = _describe_calls(plans, sections)
    report.notes[0:0] = stub_notes
    skipped_layers = [f"{p.cls}: {p.problem}" for p in layers if p.problem]
    if skipped_layers:
        report.notes.insert(0, "not called: " + "; ".join(skipped_layers))
    if provide:
        report.notes.insert(
            0,
            f"{source.name} uses {', '.join(provide)} without importing it (a snippet from a "
            "post): numpy was provided as " + ", ".join(provide),
        )
    return report


def _layer_plans(
    layers: list[Any], mode: Mode | str | None, training: bool | None, running: str
) -> list[Any]:
    """(mode, calls, training) for every layer class: each mode its code handles, training and
    (when its forward has a switch) eval mode; the backward in training only, as it reads what
    the training forward kept."""
    from bnderive.usercode.run import Calls

    plans = []
    for layer in layers:
        if layer.problem:
            continue
        modes = [Mode.parse(m) for m in layer.modes]
        if mode is not None:
            modes = [m for m in modes if m is Mode.parse(mode)]
        trainings = [True, False] if layer.flag is not None else [True]
        if training is not None:
            trainings = [t for t in trainings if t == training]
        for m in modes:
            for t in trainings:
                backward = [layer.backward_name] if layer.backward and t else []
                calls = Calls(
                    "class", layer.forward_name, backward, layer=layer,
                    layout=layer.layout if m is Mode.SPATIAL else "nchw",
                )  # fmt: skip
                plans.append((m, calls, t))
    return plans


def _functional_plans(source: Any, mode: Mode, training: bool | None) -> list[Any]:
    """Every functional backward of a file with several: f(x, γ, β, dout, eps) in training,
    f(x, γ, β, dout, eps, running_mean, running_var) in eval mode (and in training too when
    the last two have defaults)."""
    from bnderive.usercode.run import Calls

    plans = []
    for f in source.functions.values():
        if f.name.startswith("_") or len(f.params) < 5:
            continue
        modes = [True] if len(f.params) < 7 else ([False, True] if f.defaults >= 2 else [False])
        for t in modes:
            if training is None or training == t:
                plans.append((mode, Calls("functional", None, [f.name]), t))
    return plans if len({p[1].backward[0] for p in plans}) > 1 else []


def _forward_beside_functional(source: Any, mode: Mode, training: bool | None) -> list[Any]:
    """One functional backward f(x, gamma, beta, dout, eps) beside a forward f(x, gamma, beta,
    eps) -> out that keeps no cache (a helper such as bn_apply): both checked, the forward for
    its out, the backward as the functional API, in training mode."""
    from bnderive.usercode.run import Calls

    if mode is not Mode.PER_ACTIVATION or training is False:
        return []
    functions = [f for n, f in source.functions.items() if not n.startswith("_")]
    backwards = [
        f for f in functions if len(f.params) >= 5 and f.params[0].lower() in ("x", "inputs")
    ]
    forwards = [
        f for f in functions
        if f not in backwards and len(f.params) == 4 and f.params[3].lower() in ("eps", "epsilon")
        and f.params[0].lower() in ("x", "inputs", "z")
    ]  # fmt: skip
    if len(backwards) != 1 or len(forwards) != 1:
        return []
    forward = forwards[0].name
    return [
        (mode, Calls("cs231n", forward, [], True, ("x", "gamma", "beta", "eps")), True),
        (mode, Calls("functional", None, [backwards[0].name]), True),
    ]


def _unbound_numpy(source: Any) -> list[str]:
    """``np`` (or ``numpy``) used in the file but never imported or assigned: a snippet copied
    from a post, whose numpy the child provides (parsing only; nothing is run)."""
    import ast

    used = {n.id for n in ast.walk(source.tree) if isinstance(n, ast.Name)}
    bound = set(source.imported) | set(source.functions) | set(source.classes)
    for n in ast.walk(source.tree):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            bound.add(n.id)
        elif isinstance(n, ast.arg):
            bound.add(n.arg)
    return [name for name in ("np", "numpy") if name in used and name not in bound]


def _takes_running(source: Any, calls: Any) -> bool:
    """A functional backward with the running statistics: f(x, γ, β, dout, eps, rm, rv)."""
    f = source.functions.get(calls.backward[0])
    return f is not None and len(f.params) >= 7


def _names(calls: Any) -> list[str]:
    return ([calls.forward] if calls.forward else []) + list(calls.backward)


def _quantities(calls: Any, name: str) -> tuple[str, ...]:
    return ("out",) if name == calls.forward else ("dx", "dgamma", "dbeta")


def _label(mode: Mode, training: bool, count: int) -> str:
    return f"{mode.value} {'training' if training else 'eval'}"


def _describe_calls(plans: list[Any], sections: list[_Section]) -> list[str]:
    """How each function was called: one line per function and mode; where a mode has more
    than one backward, each says on which forward's cache it was called (``pair_by_name``).  A
    section that did not complete (its forward failed, or the child died or timed out in it or
    before it) lists what it would call, marked "(not completed)": its rows say why."""
    lines: dict[str, list[str]] = {}
    backwards: dict[Mode, set[str]] = {}
    for mode, calls, _training in plans:
        backwards.setdefault(mode, set()).update(calls.backward)
    for (mode, calls, training), section in zip(plans, sections, strict=False):
        when = "training" if training else "eval"
        if not section.called:  # the section failed or the child died: what it would call
            when += " (not completed)"
        if calls.api == "class":
            texts = calls.layer.describe()
            if not calls.backward:
                texts = [t for t in texts if not t.startswith(f".{calls.layer.backward}(")]
            if calls.layout == "nhwc":
                texts[-1] += "; x and dout given channel-last (N, H, W, C)"
            if calls.layout == "flat" and mode is Mode.SPATIAL:
                texts[-1] += (
                    "; x given as (N, C, H, W), which the layer flattens to (N, C·H·W): γ, β and "
                    "the running statistics given per activation (each channel's value at its "
                    "H·W positions), dγ and dβ summed per channel"
                )
        elif calls.api == "cs231n":
            forward = calls.forward
            roles = [r for r in calls.forward_args if r != "default"]
            shown = {"param": "bn_param", "running": "(running_mean, running_var)"}
            text = f"{forward}({', '.join(shown.get(r, r) for r in roles)})"
            text += (
                " -> (out, cache, running_mean, running_var)"
                if "running" in roles
                else " -> (out, cache)"
                if calls.backward
                else " -> out"
            )
            if "param" in roles:
                keys = calls.param_keys or {}
                named = [keys.get(k, k) for k in ("eps", "running_mean", "running_var")]
                text += f"; bn_param holds mode ('train' or 'test'), {', '.join(named)}"
            texts = [text]
            paired = f" on {forward}'s cache" if len(backwards[mode]) > 1 else ""
            texts += [
                f"{b}(dout, {', '.join(calls.backward_args.get(b, ('cache',)))}) -> "
                f"(dx, dgamma, dbeta){paired}"
                for b in calls.backward
                if b in section.called or not section.called
            ]
        else:
            extra = "" if training else ", running_mean, running_var"
            texts = [
                f"{calls.backward[0]}(x, gamma, beta, dout, eps{extra}) -> (dx, dgamma, dbeta)"
            ]
        for text in texts:
            lines.setdefault(f"{text} [{mode.value}", []).append(when)
    return [f"{text}, {' and '.join(dict.fromkeys(whens))}]" for text, whens in lines.items()]


def _check_section(
    box: Sandbox,
    source: Any,
    calls_: Any,
    mode: Mode,
    training: bool,
    running: str,
    seed: int,
    count: int,
    fixed: dict[str, Fraction] | None = None,
    at_eps: Fraction | None = None,
) -> _Section:
    """Every function of one mode, training or eval, at the default shapes.

    Code that takes no ε (a layer whose constructor has no eps, a forward without eps or
    bn_param['eps']) is BatchNorm at the ε it fixes itself: when its forward is refuted at the
    default shapes and normalizes with one ε everywhere (``detect_eps``, exactly), the whole
    section is checked again at that ε (``at_eps``, on ``eps_case`` inputs) and those rows are
    its verdicts; the ε found in training (``fixed``, by forward) is the one its eval mode must
    use too."""
    label = _label(mode, training, count)
    section = _Section(label)
    fixed = {} if fixed is None else fixed
    own = None if takes_eps(source, calls_) else calls_.forward
    inherited = own is not None and at_eps is None and own in fixed
    if inherited:
        at_eps = fixed[own]
    momentum, passed = _momentum_given(calls_.layer, running)
    cases = _with_unit_affine(calls_, _section_cases(mode, training, seed, at_eps), section.notes)
    caller = Caller(box, calls_, mode.value)
    runs = []
    try:
        for case in cases:
            runs.append(_run_case(caller, case, momentum))
    except UserFailure as exc:  # the forward failed: nothing of this section can be checked
        section.failures = _forward_failures(source, calls_, label, running, exc)
        return section
    calls = calls_.to_dict()
    failed = _record_run_failures(section, source, calls_, runs)
    calls["backward"] = [n for n in calls["backward"] if n not in failed]
    calls, skipped = _without_skipped_backward(calls, runs)
    section.called = ([calls["forward"]] if calls["forward"] else []) + list(calls["backward"])
    verdicts, notes, section.running = _section_verdicts(
        source, calls_, calls, cases, runs, running, passed, skipped
    )
    section.verdicts = verdicts
    section.notes = section.notes + notes
    section.diagnoses = diagnoses(verdicts, cases, runs)
    out_row = next((v for v in verdicts if v.quantity == "out"), None)
    if out_row is not None and out_row.status is Status.REFUTED:
        if own is not None and at_eps is None:
            eps = _one_eps(calls["forward"], cases, runs)
            if eps is not None:
                again = _check_section(
                    box, source, calls_, mode, training, running, seed, count, fixed, eps
                )
                if _holds(again, calls["forward"], "out"):
                    fixed[own] = eps
                    return again
        _own_eps(caller, section, calls, cases, runs, momentum, source, at_eps)
    if at_eps is not None:
        section.notes.insert(0, _fixed_note(calls_, source, at_eps, inherited))
    if calls_.layout == "flat" and mode is Mode.SPATIAL:
        section.notes.append(
            f"{calls_.forward} flattens (N, C, H, W) to (N, C·H·W) and keeps its running "
            "statistics per activation (C·H·W of them), not per channel: they were not compared"
        )
    _name_cache_order(section, caller, cases, momentum, source, calls_)
    return section


def _momentum_given(layer: Any, running: str) -> tuple[str | None, Fraction | None]:
    """The momentum the forward is given (exact text; None under ``auto``, so that the code's
    own default shows which convention it follows), and the one given to a layer's constructor
    under ``auto`` (None when there is none)."""
    momentum = None if running == "auto" else exact_text(RUNNING_CONVENTIONS[running].momentum)
    passed: Fraction | None = None  # the momentum given to a layer's constructor under auto
    if layer is not None and running == "auto" and any(r == "momentum" for _k, r in layer.init):
        # A momentum of our choosing, on the side of the constructor's default (weighing the old
        # value or the new one): a layer that ignores what it is given shows.
        default = layer.momentum_default
        passed = (
            Fraction(1, 5) if default is not None and default < Fraction(1, 2) else Fraction(4, 5)
        )
        momentum = exact_text(passed)
    return momentum, passed


def _section_cases(mode: Mode, training: bool, seed: int, at_eps: Fraction | None) -> list[Case]:
    """The section's exact inputs: one per default shape, or, at the ε a code that takes none
    fixes (``at_eps``), ``eps_case`` inputs on which √(σ²+ε) is rational at that ε."""
    cases = [
        make_case(spec, seed * 7919 + k + 1)
        for k, spec in enumerate(default_shapes(mode, training))
    ]
    if at_eps is not None:
        # σ² of a few ε at the last shape (every shape in eval mode, whose ε is the question):
        # a backward or an eval mode with another ε is then off by far more than rounding
        specs = eps_specs(mode, training)
        cases = [
            eps_case(spec, at_eps, seed * 7919 + 101 + k, small=not training or k == len(specs) - 1)
            for k, spec in enumerate(specs)
        ]
    return cases


def _with_unit_affine(calls: Any, cases: list[Case], notes: list[str]) -> list[Case]:
    """The cases, with γ = 1 and β = 0 when the code has no affine step (a CS231n forward
    without gamma, a layer without γ), and a note that says so."""
    layer = calls.layer
    no_affine = (calls.api == "cs231n" and "gamma" not in calls.forward_args) or (
        layer is not None and layer.gamma is None
    )
    if no_affine:
        # normalization without γ and β (affine=False): BatchNorm with γ = 1, β = 0
        from dataclasses import replace

        cases = [
            replace(c, gamma=(Fraction(1),) * c.spec.c, beta=(Fraction(0),) * c.spec.c)
            for c in cases
        ]
        notes.append(
            f"{calls.forward} takes no gamma and beta (no affine step): checked as BatchNorm "
            "with γ = 1 and β = 0"
        )
    return cases


def _forward_failures(
    source: Any, calls: Any, label: str, running: str, exc: UserFailure
) -> list[Failure]:
    """The forward failed at a case: every function of the section fails with its message
    (with the fix when --running auto's bn_param, which carries no momentum, was the cause)."""
    message = exc.message
    if running == "auto" and "KeyError: 'momentum'" in message:
        message += (
            " (with --running auto, bn_param carries no momentum so that the code's own "
            "default shows which convention it follows: read it with "
            "bn_param.get('momentum', 0.9), or declare --running cs231n or --running pytorch)"
        )
    text = _failure_message(source.path, message, exc.trace, exc.output)
    return [Failure(name, _quantities(calls, name), label, text) for name in _names(calls)]


def _record_run_failures(
    section: _Section, source: Any, calls: Any, runs: list[dict[str, Any]]
) -> dict[str, str]:
    """Into the section: a failure row for each function that failed at some case (the first
    message), and for each quantity a function could not give (whose float values are then
    dropped from every run: never compared where a case lacks them); a note for each result
    accepted as a vector from a keepdims shape.  Returns the failed functions' messages."""
    label = section.label
    failed: dict[str, str] = {}
    for run in runs:
        for name, exc in run.get("failures", {}).items():
            failed.setdefault(
                name, _failure_message(source.path, exc.message, exc.trace, exc.output)
            )
    for name, text in failed.items():
        section.failures.append(Failure(name, _quantities(calls, name), label, text))
    failed_q: dict[tuple[str, str], str] = {}
    for run in runs:
        for (name, q), exc in run.get("quantity_failures", {}).items():
            if name not in failed:
                failed_q.setdefault(
                    (name, q), _failure_message(source.path, exc.message, exc.trace, exc.output)
                )
    for (name, q), text in failed_q.items():
        section.failures.append(Failure(name, (q,), label, text))
        for run in runs:
            run["float"].get(name, {}).pop(q, None)
    reshaped: dict[tuple[str, str], tuple[int, ...]] = {}
    for run in runs:
        reshaped.update(run.get("reshaped", {}))
    for (name, q), shape in reshaped.items():
        section.notes.append(
            f"{name} returned {q} with shape {shape}, one value per feature/channel (as "
            "keepdims=True leaves it): accepted as a vector"
        )
    return failed


def _section_verdicts(
    source: Any,
    calls_: Any,
    calls: dict[str, Any],
    cases: list[Case],
    runs: list[dict[str, Any]],
    running: str,
    passed: Fraction | None,
    skipped: list[str],
) -> tuple[list[Verdict], list[str], str | None]:
    """The rows of the functions that ran (``_compare``) with the running statistics' rows
    right after the forward's out (``check_running``); the notes; and the running-statistics
    convention the forward follows (None without a forward)."""
    verdicts, notes = _compare(source.name, calls, cases, runs)
    convention = None
    if calls["forward"]:
        layer = calls_.layer
        extra, more_notes, convention = check_running(
            calls["forward"], cases, runs, running, passed,
            layer.momentum_default if layer is not None else None,
        )  # fmt: skip
        at = next((k + 1 for k, v in enumerate(verdicts) if v.quantity == "out"), 0)
        verdicts[at:at] = extra
        notes = more_notes + notes
    notes = skipped + notes
    if calls.get("forward_eps"):
        roles = ", ".join(r for r in calls_.forward_args if r != "default")
        notes.append(
            f"{calls['forward']} takes eps instead of CS231n's bn_param (as in posts that walk "
            f"the graph): it was called as {calls['forward']}({roles}), and it keeps no running "
            "statistics to check"
        )
    return verdicts, notes, convention


def _name_cache_order(
    section: _Section,
    caller: Caller,
    cases: list[Case],
    momentum: str | None,
    source: Any,
    calls: Any,
) -> None:
    """Every refuted dx, dγ, dβ of a backward that is right with two cache entries swapped gets
    that cause first (a mistake the wrong order happens to equal stays listed after it)."""
    refuted: dict[str, list[Verdict]] = {}
    for v in section.verdicts:
        if v.status is Status.REFUTED and v.quantity in ("dx", "dgamma", "dbeta"):
            refuted.setdefault(v.form, []).append(v)
    for name, rows in refuted.items():
        if name not in calls.backward:
            continue
        swapped = _cache_order(caller, name, cases, momentum, source, calls)
        for v in rows if swapped else []:
            key = (v.form, v.quantity)
            section.diagnoses[key] = [swapped, *section.diagnoses.get(key, [])]


def _cache_order(
    caller: Caller, name: str, cases: list[Case], momentum: str | None, source: Any, calls: Any
) -> str | None:
    """ "The cache unpacked in the wrong order": two entries of the forward's cache swapped make
    the backward's dx, dγ, dβ right at every case (exactly, or within float64 rounding)."""
    from itertools import combinations

    from bnderive.usercode.run import _cache_names

    if (
        calls.backward_args.get(name, ("cache",)) != ("cache",)
        or not 2 <= caller.cache_length <= 10
    ):
        return None
    truths = [truth_at(case) for case in cases]
    try:
        for pair in combinations(range(caller.cache_length), 2):
            caller.swap = pair
            if all(_right(caller.run(c, "float", momentum), name, c, t) for c, t in
                   zip(cases, truths, strict=True)):  # fmt: skip
                exact = _swapped_exactly(caller, name, cases, truths, momentum)
                if exact is None:
                    continue  # within rounding, but an exact run says otherwise
                names = _cache_names(source, calls.forward) or []
                i, j = pair
                what = f"{names[i]} and {names[j]}" if len(names) > max(pair) else f"{i} and {j}"
                how = (
                    "exactly" if exact == len(cases) else
                    "within float64's derived rounding bound at every shape" if exact == 0 else
                    f"exactly at {exact} of {len(cases)} shapes, within float64's derived "
                    "rounding bound at the others"
                )  # fmt: skip
                return (
                    f"the cache unpacked in the wrong order: with the forward's cache entries "
                    f"{what} (positions {i} and {j}) swapped, {name}'s dx, dγ and dβ are right "
                    f"at every shape ({how}); unpack the cache in the order the forward packs it"
                )
    except (UserFailure, SandboxFailure):
        return None
    finally:
        caller.swap = None
    return None


def _swapped_exactly(
    caller: Caller,
    name: str,
    cases: list[Case],
    truths: list[dict[str, np.ndarray]],
    momentum: str | None,
) -> int | None:
    """At how many cases the backward with the cache swapped (``caller.swap``) equals the truth
    in exact arithmetic; None when an exact run differs (the float agreement was rounding)."""
    exact = 0
    for case, truth in zip(cases, truths, strict=True):
        try:
            run = caller.run(case, "exact", momentum)
        except UserFailure:
            continue  # the exact number type failed here: float64 decided this case
        got = run.values.get(name, {})
        if run.reasons or run.failures or "dx" not in got:
            continue
        for q, values in got.items():
            want = truth[q].reshape(-1)
            mine = np.asarray(values, dtype=object).reshape(-1)
            if any(Fraction(a) != b for a, b in zip(mine, want, strict=True)):
                return None
        exact += 1
    return exact


def _right(run: Run, name: str, case: Case, truth: dict[str, np.ndarray]) -> bool:
    got = run.values.get(name, {})
    if set(got) != {"dx", "dgamma", "dbeta"} & set(got) or "dx" not in got:
        return False
    for q, values in got.items():
        bound = case_bounds(case, run.dtypes.get(f"{name}/{q}", "float64"))[q]
        want = truth[q].astype(float).reshape(bound.shape)
        if not np.all(np.abs(np.asarray(values, dtype=float).reshape(bound.shape) - want) <= bound):
            return False
    return True


def _running_bounds(case: Case, dtypes: dict[str, str]) -> dict[str, np.ndarray]:
    """The rounding bound of each running statistic per channel (``precision.running_bound``):
    the batch mean or either variance (biased, or M/(M−1) times it) with its own bound."""
    spec = case.spec
    means, variances = _batch_statistics(case) if spec.training else (
        list(case.running_mean), list(case.running_var)
    )  # fmt: skip
    factor = spec.m / (spec.m - 1) if spec.m > 1 else 1
    out = {}
    for name, old in (("running_mean", case.running_mean), ("running_var", case.running_var)):
        dtype = dtypes.get(name, "float64")
        b = case_bounds(case, dtype)
        values = []
        for c in range(spec.c):
            if name == "running_mean":
                batch, e_batch = float(means[c]), float(b["mean"][c])
            else:
                batch, e_batch = float(variances[c]) * factor, float(b["var"][c]) * factor
            values.append(running_bound(float(old[c]), batch, e_batch, dtype))
        out[name] = np.array(values)
    return out


def float_results(
    path: str | Path,
    case: Case,
    function: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    memory_mb: int = DEFAULT_MEMORY_MB,
) -> dict[str, np.ndarray]:
    """dx, dγ, dβ of the backward in ``path`` at ``case``, in float64 (for ``explain``, whose
    inputs have an irrational √(σ²+ε), so that no exact run is tried)."""
    source = read_source(path)
    calls = resolve_api(source, None, function, case.spec.mode.value)
    try:
        with Sandbox(timeout, memory_mb) as box:
            load(box, source)
            run = Caller(box, calls, case.spec.mode.value).run(case, "float", None)
    except SandboxFailure as exc:
        raise ImplementationError(
            _failure_message(source.path, exc.message, exc.trace, exc.output)
        ) from None
    except UserFailure as exc:
        raise ImplementationError(
            _failure_message(source.path, exc.message, exc.trace, exc.output)
        ) from None
    name = calls.backward[0]
    if name not in run.values:
        raise ImplementationError(
            f"{source.name}: {name} was not called (the test-mode forward returned no cache)"
        )
    return run.values[name]


#: Failures of the exact run that are the user's code's, not the exact number type's.
HARD_FAILURES = ("output", "exit", "memory")


def _run_case(caller: Caller, case: Case, momentum: str | None) -> dict[str, Any]:
    """One case through the child, in float64 and then in exact arithmetic, as the comparison
    reads it: float and exact values per function and quantity, why the exact run failed, the
    dtypes of the results narrower than float64, and the running statistics."""
    floats = caller.run(case, "float", momentum)
    try:
        exact: Run | None = caller.run(case, "exact", momentum)
        assert exact is not None
        failed = [
            exc.message for name, exc in exact.failures.items() if name not in floats.failures
        ]
        failed += [
            exc.message
            for key, exc in exact.quantity_failures.items()
            if key not in floats.quantity_failures
        ]
        reason = "; ".join(exact.reasons + failed) or None
        running_reason = "; ".join(exact.running_reasons) or None
    except UserFailure as exc:
        if exc.kind in HARD_FAILURES:
            raise
        # the float run worked: the exact number type is what failed
        exact, reason, running_reason = None, exc.message, exc.message
    conversions = dict(exact.conversions) if exact is not None else {}
    precision = {k: v for k, v in floats.dtypes.items() if v in ("float16", "float32")}
    running = None
    if floats.running is not None:
        running = {
            "float": floats.running,
            "exact": exact.running if exact is not None and running_reason is None else None,
            "why_not_exact": running_reason,
            "bound": _running_bounds(case, floats.running_dtypes),
            "dtypes": dict(floats.running_dtypes),
        }
    return {
        "float": floats.values,
        "exact": exact.values if exact is not None and reason is None else None,
        "why_not_exact": reason,
        "conversions": conversions,
        "precision": precision,
        "running": running,
        "backward_skipped": floats.skipped,
        "failures": floats.failures,
        "quantity_failures": floats.quantity_failures,
        "reshaped": floats.reshaped,
    }


def _functional_running(running: str) -> str:
    return (
        f"--running {running} checks the running statistics a CS231n forward keeps in bn_param; "
        "the functional API has no forward: leave --running out, or check a file with "
        "batchnorm_forward (--api cs231n)."
    )


def _without_skipped_backward(
    calls: dict[str, Any], runs: list[dict[str, Any]]
) -> tuple[dict[str, Any], list[str]]:
    """The calls whose results every case has, and a note on a backward that was not called:
    CS231n's backward is written for training mode, and a test-mode forward that returns no
    cache (cache None) says it has no eval-mode backward."""
    if not any(run.get("backward_skipped") for run in runs):
        return calls, []
    kept = [n for n in calls["backward"] if all(n in run["float"] for run in runs)]
    left = [n for n in calls["backward"] if n not in kept]
    were = "was" if len(left) == 1 else "were"
    note = (
        f"in eval mode {calls['forward']} returned cache None, so {', '.join(left)} {were} not "
        "called: CS231n's backward is for training mode; return a cache from test mode to have "
        "it checked against the eval-mode gradient dx = γ·dout/√(running_var + ε)"
    )
    return dict(calls, backward=kept), [note]


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


# -- naming the mistake ----------------------------------------------------------------------------
def diagnoses(
    verdicts: list[Verdict], cases: list[Case], runs: list[dict[str, Any]]
) -> dict[tuple[str, str], list[str]]:
    """For each refuted dx, dγ, dβ: the corpus mistake the code's values equal at every case,
    or else (dx, exact runs, training) the term of the staged chain that the error lies in."""
    from bnderive.verify.diagnose import Value, diagnose_layer

    found: dict[tuple[str, str], list[str]] = {}
    for v in verdicts:
        if v.status is Status.REFUTED and v.quantity == "out":
            named = forward_slips(v.form, cases, runs)
            if named:
                found[(v.form, "out")] = named
            continue
        if v.status is not Status.REFUTED or v.quantity not in ("dx", "dgamma", "dbeta"):
            continue
        mine = [
            _values_of(run, v.form, v.quantity, case) for case, run in zip(cases, runs, strict=True)
        ]
        if any(m is None for m in mine):
            continue
        # An inexact result is compared within its rounding bound (relative to its scale, as
        # the diagnosis reads it): float32's at least, since code may compute in float32 inside.
        values = [
            Value(data, exact, 0.0 if exact else _relative_bound(case, run, v, data))
            for (data, exact), case, run in zip(mine, cases, runs, strict=True)
        ]  # type: ignore[misc]
        matches = diagnose_layer(v.quantity, cases, values)
        if matches:
            found[(v.form, v.quantity)] = [t for m in matches for t in m.lines(v.quantity)]
            continue
        if v.quantity == "dx":
            # composite: γ missing AND another mistake — the values times γ (per channel) are
            # that other mistake's
            scaled = [
                Value(_times_gamma(case, val.data), val.exact, val.tol)
                for case, val in zip(cases, values, strict=True)
            ]
            composite = [m for m in diagnose_layer("dx", cases, scaled) if m.mistake.name]
            if composite:
                first = composite[0]
                lines = first.lines("dx")
                found[(v.form, v.quantity)] = [
                    f"known mistakes, two at once: γ missing (gamma-missing) AND "
                    f"{first.mistake.title} ({first.mistake.name}); your dx times γ equals the "
                    f"result with the second, {'exactly' if first.exact else 'in floating point'}",
                    "  what is wrong: dx lacks the factor γ, and " + lines[1].split(": ", 1)[1],
                    "  what is right: multiply by γ, and " + lines[2].split(": ", 1)[1],
                ]
                continue
        axes = _axes_slip(v.form, v.quantity, cases, runs)
        if axes is not None:
            found[(v.form, v.quantity)] = [
                f"known mistake: {SLIPS['axes'][axes]} (axes-{axes}); your {v.quantity} equals "
                "BatchNorm's backward over those sets at every shape (float64, within float32's "
                "rounding bound)"
            ]
            continue
        if v.quantity == "dx" and all(val.exact for val in values) and cases[0].spec.training:
            where = {  # M ≥ 4: below that, any residual fits the three terms
                _stage_of_error(case, val.data)
                for case, val in zip(cases, values, strict=True)
                if case.spec.m >= 4
            }
            if len(where) == 1 and None not in where:
                found[(v.form, v.quantity)] = [
                    f"no known mistake matches; at every shape with M ≥ 4, {where.pop()}"
                ]
    return found


# -- naming a wrong forward --------------------------------------------------------------------------
#: The forward's known slips, one choice per kind (the first of each is BatchNorm's own).
SLIPS: dict[str, dict[str, str]] = {
    "eps": {"outside": "ε outside the root (σ + ε)", "none": "no ε (√σ², or np.std)"},
    "var": {"bessel": "Bessel's variance (÷(M−1)) in the normalization"},
    "root": {"none": "σ² written for σ (the root dropped)"},
    "affine": {
        "no_gamma": "γ left out",
        "no_beta": "β left out",
        "none": "γ and β left out (x̂ returned)",
        "beta_inside": "β inside the scaling, γ(x − μ + β)/σ",
    },
    "paren": {"misplaced": "misplaced parentheses, x − μ/σ for (x − μ)/σ"},
    "twice": {"again": "x̂ normalized a second time, (x̂ − μ)/σ"},
    "stats": {
        "batch": "batch statistics in eval mode (the running ones ignored)",
        "zero": "the running statistics never reach test mode: it normalizes with μ = 0 and "
        "σ² = 0, the defaults of statistics it was not given",
        "unit": "the running variance never reaches test mode: it divides by 1, the default of a "
        "statistic bn_param does not hold",
    },
    "axes": {
        "position": "statistics per (c, h, w) over N, not per channel (a 4-D input flattened)",
        "no_transpose": "x reshaped to (N·H·W, C) without the transpose to channel-last",
    },
}


#: What is right, for each slip (``SLIPS``): one line a student reads.
SLIP_FIXES: dict[str, str] = {
    "eps-outside": "keep ε inside the root: divide by √(σ² + ε)",
    "eps-none": "add ε inside the root, √(σ² + ε) (np.std(x) has none: use np.sqrt(np.var(x) + eps))",
    "var-bessel": "normalize with the batch variance Σ(x − μ)²/M (np.var, ddof=0); Bessel's "
    "M/(M−1) belongs only in PyTorch's running_var",
    "root-none": "divide by the standard deviation √(σ² + ε), not by the variance",
    "affine-no_gamma": "scale by γ: out = γ·x̂ + β",
    "affine-no_beta": "shift by β: out = γ·x̂ + β",
    "affine-none": "scale and shift: out = γ·x̂ + β",
    "affine-beta_inside": "add β after the scaling: out = γ·(x − μ)/√(σ² + ε) + β",
    "paren-misplaced": "subtract the mean before dividing: x̂ = (x − μ)/√(σ² + ε)",
    "twice-again": "normalize once: x̂ = (x − μ)/√(σ² + ε), then out = γ·x̂ + β (not "
    "γ·(x̂ − μ)/√(σ² + ε) + β)",
    "stats-batch": "in eval (test) mode normalize with running_mean and running_var",
    "stats-zero": "in test mode read the running_mean and running_var the caller passes in "
    "bn_param (and keep updating those in training)",
    "stats-unit": "in test mode divide by √(running_var + ε), from the running_var bn_param holds",
    "axes-position": "normalize each channel over N, H and W: reduce over the axes (0, 2, 3)",
    "axes-no_transpose": "move the channels last before the reshape, x.transpose(0, 2, 3, "
    "1).reshape(-1, C), and transpose the result back",
}


def _slip_sets(case: Case, axes: str | None) -> list[tuple[list[tuple[int, ...]], int]]:
    """The reduction sets a forward with the ``axes`` slip normalizes over: (positions, the
    index of its γ, β and running statistics)."""
    spec = case.spec
    if axes is None or spec.mode is not Mode.SPATIAL:
        return [(spec.positions(c), c) for c in range(spec.c)]
    n, c, h, w = spec.shape
    if axes == "position":
        return [([(k, ch, a, b) for k in range(n)], ch)
                for ch in range(c) for a in range(h) for b in range(w)]  # fmt: skip
    everything = list(np.ndindex(*spec.shape))  # C order: x.reshape(-1, C) takes them in turn
    return [(everything[j::c], j) for j in range(c)]


def slipped_out(case: Case, slips: dict[str, str]) -> np.ndarray:
    """The forward's output (float64) with the given slips (``SLIPS``), at ``case``."""
    out = _slipped(case, slips, exact=False)
    assert out is not None  # float64 always has a value (inf where a root is zero)
    return out


def slipped_out_exact(case: Case, slips: dict[str, str]) -> np.ndarray | None:
    """The same output in exact rationals (Fraction objects), or None where a root the slips
    take is irrational (or zero) at ``case``."""
    return _slipped(case, slips, exact=True)


def _exact_root(value: Fraction) -> Fraction | None:
    """√value when it is rational, else None."""
    if value < 0:
        return None
    p, q = math.isqrt(value.numerator), math.isqrt(value.denominator)
    return Fraction(p, q) if p * p == value.numerator and q * q == value.denominator else None


def _slipped(case: Case, slips: dict[str, str], exact: bool) -> np.ndarray | None:
    """``slipped_out`` in float64, or in exact rationals (None when a root is irrational)."""
    spec = case.spec
    num: Callable[[Any], Any] = Fraction if exact else float
    out = np.empty(spec.shape, dtype=object) if exact else np.zeros(spec.shape)

    def root_of(value: Any) -> Any:
        return _exact_root(value) if exact else math.sqrt(value)

    for positions, k in _slip_sets(case, slips.get("axes")):
        xs = [num(case.x[p]) for p in positions]
        m = len(xs)
        if spec.training or slips.get("stats") == "batch":
            mu = sum(xs, num(0)) / m
            var = sum(((v - mu) ** 2 for v in xs), num(0)) / m
            if slips.get("var") == "bessel" and m > 1:
                var = var * m / (m - 1)
        elif slips.get("stats") == "zero":
            mu, var = num(0), num(0)
        else:
            mu, var = num(case.running_mean[k]), num(case.running_var[k])
        eps = num(case.eps)
        if slips.get("stats") == "unit" and not spec.training:
            root = num(1)  # divided by a default standard deviation of ones
        elif slips.get("root") == "none":
            root = var + (0 if slips.get("eps") == "none" else eps)
        elif slips.get("eps") in ("outside", "none"):
            root = root_of(var)
            if root is not None and slips.get("eps") == "outside":
                root = root + eps
        else:
            root = root_of(var + eps)
        if root is None or (exact and root == 0):
            return None
        if root == 0:
            return np.full(spec.shape, np.inf)
        affine = slips.get("affine")
        g = num(1) if affine in ("no_gamma", "none") else num(case.gamma[k])
        b = num(0) if affine in ("no_beta", "none") else num(case.beta[k])
        for p, v in zip(positions, xs, strict=True):
            # x̂, with the parentheses where the code put them, normalized once more or not
            xhat = v - mu / root if slips.get("paren") == "misplaced" else (v - mu) / root
            if slips.get("twice") == "again":
                xhat = (xhat - mu) / root
            if affine == "beta_inside" and not (slips.get("paren") or slips.get("twice")):
                out[p] = g * (v - mu + b) / root
            else:
                out[p] = g * xhat + b
    return out


def slipped_grads(case: Case, axes: str) -> dict[str, np.ndarray]:
    """dx, dγ, dβ (float64) of BatchNorm computed over the wrong sets of an ``axes`` slip
    (training mode): what a backward that reshapes without the transpose, or normalizes per
    position, returns."""
    spec = case.spec
    dx = np.zeros(spec.shape)
    dgamma, dbeta = np.zeros(spec.c), np.zeros(spec.c)
    for positions, k in _slip_sets(case, axes):
        xs = np.array([float(case.x[p]) for p in positions])
        gs = np.array([float(case.g[p]) for p in positions])
        r = math.sqrt(float(np.var(xs)) + float(case.eps))
        xhat = (xs - float(np.mean(xs))) / r
        gamma = float(case.gamma[k])
        values = gamma / r * (gs - gs.mean() - xhat * float(np.mean(gs * xhat)))
        for p, value in zip(positions, values, strict=True):
            dx[p] = value
        dgamma[k] += float(np.sum(gs * xhat))
        dbeta[k] += float(np.sum(gs))
    return {"dx": dx, "dgamma": dgamma, "dbeta": dbeta}


def _axes_slip(
    who: str, quantity: str, cases: list[Case], runs: list[dict[str, Any]]
) -> str | None:
    """The SPATIAL ``axes`` slip (``SLIPS``) whose backward equals the code's at every case, or
    None (training mode, SPATIAL only; exactly one slip must fit)."""
    if cases[0].spec.mode is not Mode.SPATIAL or not cases[0].spec.training:
        return None
    fits = []
    for axes in SLIPS["axes"]:
        ok = True
        for case, run in zip(cases, runs, strict=True):
            value = run["float"].get(who, {}).get(quantity)
            if value is None:
                return None
            want = slipped_grads(case, axes)[quantity]
            mine = np.asarray(value, dtype=float).reshape(want.shape)
            tol = 2 * case_bounds(case, INSIDE)[quantity].reshape(want.shape)
            if not np.all(np.abs(mine - want) <= tol + 1e-12 * np.abs(want)):
                ok = False
                break
        if ok:
            fits.append(axes)
    return fits[0] if len(fits) == 1 else None


def _slip_choices(case: Case) -> list[dict[str, str]]:
    """One, two or three slips of different kinds (those that can happen at this case)."""
    from itertools import combinations, product

    kinds = [k for k in SLIPS if not (k == "stats" and case.spec.training)]
    kinds = [k for k in kinds if not (k == "axes" and case.spec.mode is not Mode.SPATIAL)]
    return [
        dict(zip(chosen, values, strict=True))
        for size in (1, 2, 3)
        for chosen in combinations(kinds, size)
        for values in product(*(SLIPS[k] for k in chosen))
    ]


def forward_slips(forward: str, cases: list[Case], runs: list[dict[str, Any]]) -> list[str]:
    """A refuted forward named: the one, two or three known slips (``SLIPS``) whose output equals the
    code's at every case (a name, not a verdict: the row is refuted by the comparison with the
    truth): exactly where both the code's run and the slip's output are exact, else within
    float32's rounding bound of BatchNorm's output; an exact difference anywhere rules a slip
    out.  Fewer slips are preferred to more; nothing is named when the first size of matches is not
    one.  The lines say what is right."""
    mine = []
    for case, run in zip(cases, runs, strict=True):
        value = run["float"].get(forward, {}).get("out")
        if value is None:
            return []
        mine.append(np.asarray(value, dtype=float).reshape(case.spec.shape))
    tolerances = [2 * case_bounds(case, INSIDE)["out"] for case in cases]
    for size in (1, 2, 3):
        matches = []
        for choice in _slip_choices(cases[0]):
            if len(choice) != size:
                continue
            if all(
                np.all(np.isfinite(s := slipped_out(case, choice)))  # a zero root: no output
                and np.all(np.abs(m - s) <= tol + 1e-12 * np.abs(s))
                for case, m, tol in zip(cases, mine, tolerances, strict=True)
            ):
                exact = _exactly_slipped(forward, cases, runs, choice)
                if exact is not None:
                    matches.append((choice, exact))
        if len(matches) == 1:
            return _slip_lines(*matches[0], len(cases))
        if matches:
            return []  # several slips fit: none is named
    return []


def _exactly_slipped(
    forward: str, cases: list[Case], runs: list[dict[str, Any]], choice: dict[str, str]
) -> int | None:
    """At how many cases the code's exact out equals the slipped forward's exact output; None
    when they differ at one (the float agreement was rounding, or a neighbour of the slip)."""
    exact = 0
    for case, run in zip(cases, runs, strict=True):
        got = (run["exact"] or {}).get(forward, {}).get("out")
        want = slipped_out_exact(case, choice) if got is not None else None
        if want is None:
            continue
        mine = np.asarray(got, dtype=object).reshape(-1)
        if any(Fraction(a) != b for a, b in zip(mine, want.reshape(-1), strict=True)):
            return None
        exact += 1
    return exact


def _slip_lines(choice: dict[str, str], exact: int, count: int) -> list[str]:
    """The diagnosis of a forward slip (or two): what it is, how it was matched, the fix."""
    names = [SLIPS[k][v] for k, v in choice.items()]
    tags = [f"{k}-{v}" for k, v in choice.items()]
    if len(choice) == 1:
        head = f"known mistake: {names[0]} ({tags[0]})"
    else:
        count_word = {2: "two", 3: "three"}[len(choice)]
        head = f"known mistakes, {count_word} at once: {' AND '.join(names)} ({'+'.join(tags)})"
    if exact == count:
        how = "exactly, at every shape"
    elif exact:
        how = (
            f"at every shape (exactly at {exact} of {count}; float64 within float32's rounding "
            "bound at the others)"
        )
    else:
        how = "at every shape (float64, within float32's rounding bound)"
    fixes = "; and ".join(SLIP_FIXES[t] for t in tags)
    return [f"{head}; your out equals the forward with it {how}", f"  what is right: {fixes}"]


def _times_gamma(case: Case, data: Any) -> Any:
    """dx with each channel's entries multiplied by that channel's γ."""
    out = np.array(data, dtype=object if isinstance(np.asarray(data).flat[0], Fraction) else float)
    for channel in range(case.spec.c):
        for p in case.spec.positions(channel):
            out[p] = (
                out[p] * case.gamma[channel]
                if out.dtype == object
                else out[p] * float(case.gamma[channel])
            )
    return out


def _relative_bound(case: Case, run: dict[str, Any], v: Verdict, data: Any) -> float:
    """The rounding bound of a float result as a share of max(1, its largest value)."""
    # float32's bound: a float64 result may come from float32 inside; a narrower dtype's bound
    # admits many mistakes at once, and a label must name one.
    bound = float(np.max(case_bounds(case, INSIDE)[v.quantity]))
    return bound / max(1.0, float(np.max(np.abs(np.asarray(data, dtype=float)))))


def _values_of(run: dict[str, Any], who: str, quantity: str, case: Case) -> tuple[Any, bool] | None:
    shape = case.spec.shape if quantity == "dx" else (case.spec.c,)
    try:
        if run["exact"] is not None:
            data = np.array(run["exact"][who][quantity], dtype=object).reshape(shape)
            return np.vectorize(Fraction, otypes=[object])(data), True
        return np.array(run["float"][who][quantity], dtype=float).reshape(shape), False
    except (KeyError, ValueError, TypeError):
        return None


def _stage_of_error(case: Case, mine: np.ndarray) -> str | None:
    """The terms of the staged chain a wrong dx (exact) has wrong, the same in every channel."""
    from bnderive.verify.diagnose import localise

    truth = truth_at(case)["dx"]
    found = set()
    for channel in range(case.spec.c):
        positions = case.spec.positions(channel)
        xs = [case.x[p] for p in positions]
        mean = sum(xs, Fraction(0)) / len(xs)
        residual = [mine[p] - truth[p] for p in positions]
        if not any(residual):
            continue  # this channel is right
        found.add(localise(residual, [case.g[p] for p in positions], [x - mean for x in xs]))
    return found.pop() if len(found) == 1 else None


# -- the file's own ε ------------------------------------------------------------------------------
def detect_eps(case: Case, out: np.ndarray) -> Fraction | None:
    """The ε a training-mode forward normalized with, read from its output at ``case``: with
    out_i = γ(x_i − μ)/√(σ²+ε') + β, every entry with x_i ≠ μ gives σ² + ε' = (γ(x_i−μ)/(out_i−β))²;
    None unless every entry of every channel gives the same ε' (within float64 rounding) and it
    differs from the ε passed.  The value is the shortest decimal (1e-8, 10e-7, 0.01) within the
    spread of the estimates, or 0 for a forward without ε (np.std alone)."""
    spec = case.spec
    estimates = []
    for channel in range(spec.c):
        positions = spec.positions(channel)
        xs = [case.x[p] for p in positions]
        if spec.training:
            mu = sum(xs, Fraction(0)) / len(xs)
            var = sum(((v - mu) ** 2 for v in xs), Fraction(0)) / len(xs)
        else:
            mu, var = case.running_mean[channel], case.running_var[channel]
        gamma, beta = case.gamma[channel], case.beta[channel]
        for p, xv in zip(positions, xs, strict=True):
            if xv == mu:
                continue
            y = float(out[p]) - float(beta)
            if y == 0:
                return None
            r = float(gamma) * float(xv - mu) / y
            estimates.append(r * r - float(var))
    if not estimates:
        return None
    low, high = min(estimates), max(estimates)
    # float64 error of r² − σ²: a few units of rounding of r² (≈ σ² + ε')
    noise = 1e-13 * max(1.0, max(abs(e) for e in estimates) + float(case.eps))
    spread = max(high - low, noise)
    if high - low > 1e-6 * max(abs(low), abs(high)) + noise:
        return None  # not one ε: the forward is off in another way
    middle = (low + high) / 2
    if abs(middle) <= spread:
        value = Fraction(0)
    else:
        value = None
        for digits in range(1, 16):
            candidate = Fraction(f"{middle:.{digits}g}")
            if abs(float(candidate) - middle) <= spread:
                value = candidate
                break
        if value is None:
            return None
    return None if value == case.eps or value < 0 else value


#: A zero-mean pattern with variance 1 exactly (7² + 1² = 2·5² makes the rational point).
_PATTERN = (
    Fraction(7, 5),
    Fraction(1, 5),
    Fraction(-7, 5),
    Fraction(-1, 5),
    Fraction(1),
    Fraction(-1),
)


def eps_case(spec: Spec, eps: Fraction, seed: int, small: bool = False) -> Case:
    """Exact inputs at a given ε with √(σ²+ε) rational: x = μ + s·d with d of variance 1, and
    s, r rational with r² − s² = ε (r = (ε/t + t)/2, s = |ε/t − t|/2), so σ² + ε = s² + ε = r².
    M must be 4 or 6 (the pattern's lengths).  ``small``: s of the order of √ε (σ² a few ε),
    so that out depends on ε to first order and code that normalizes with another ε is off by
    far more than rounding (an eval mode with its own ε next to training's)."""
    rng = Random(seed)
    c, m = spec.c, spec.m
    if m not in (4, 6):
        raise ValueError("eps_case takes M = 4 or 6")
    pattern = _PATTERN[:m]
    x = np.empty(spec.shape, dtype=object)
    g = np.empty(spec.shape, dtype=object)
    roots, squares = [], []
    for channel in range(c):
        target = Fraction(rng.choice([3, 4, 5, 6]) + channel)  # s ≈ target/2
        unit = Fraction(f"{math.sqrt(eps):.1g}") if small and eps else Fraction(1)
        target *= unit  # the mean scaled alike: x − μ keeps its relative precision
        t = target if eps == 0 else eps / target
        r = (eps / t + t) / 2 if eps else target / 2
        s = abs(eps / t - t) / 2 if eps else target / 2
        roots.append(r)
        squares.append(s * s)  # eval mode: running_var = s², so running_var + ε = r² too
        offset = rng.randint(20, 60) * rng.choice((-1, 1)) * unit
        order = list(pattern)
        rng.shuffle(order)
        while True:
            gs = [rng.randint(-5, 5) for _ in range(m)]
            if len(set(gs)) > 1 and sum(gs) != 0:
                break
        for p, d, gv in zip(spec.positions(channel), order, gs, strict=True):
            x[p], g[p] = offset + s * d, Fraction(gv)
    gammas = tuple(Fraction(rng.choice([-5, -3, -2, 2, 3, 4, 5])) for _ in range(c))
    betas = tuple(Fraction(rng.randint(-5, 5)) for _ in range(c))
    means = tuple(Fraction(rng.randint(1, 9)) for _ in range(c))
    olds = (
        tuple(squares)
        if not spec.training
        else tuple(Fraction(rng.randint(1, 25)) for _ in range(c))
    )
    return Case(spec, x, g, gammas, betas, eps, tuple(roots), means, olds)


def eps_specs(mode: Mode, training: bool) -> list[Spec]:
    """Shapes with M = 4 or 6 (``eps_case``), one of them with two features or channels."""
    if mode is Mode.PER_ACTIVATION:
        return [Spec(mode, n=n, c=c, training=training) for n, c in [(4, 1), (6, 1), (4, 2)]]
    return [
        Spec(mode, n=n, c=c, h=h, w=w, training=training)
        for n, c, h, w in [(1, 2, 2, 2), (3, 1, 1, 2)]
    ]


def takes_eps(source: Any, calls: Any) -> bool:
    """Whether the caller can give the code its ε: a layer constructor's eps parameter, a
    forward's eps parameter, a bn_param whose eps key the forward reads, a functional backward's
    eps.  Read from the syntax tree (nothing runs)."""
    import ast

    if calls.api == "functional":
        return True
    if calls.api == "class":
        return any(role == "eps" for _k, role in calls.layer.init)
    if "eps" in calls.forward_args:
        return True
    if "param" not in calls.forward_args:
        return False
    f = next(
        (n for n in ast.walk(source.tree)
         if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == calls.forward),
        None,
    )  # fmt: skip
    if f is None:
        return True
    keys = {"eps", "epsilon", calls.param_keys.get("eps", "eps")}
    for n in ast.walk(f):
        if isinstance(n, ast.Subscript) and isinstance(n.slice, ast.Constant):
            if n.slice.value in keys:
                return True
        if isinstance(n, ast.Call) and getattr(n.func, "attr", "") in ("get", "setdefault", "pop"):
            if n.args and isinstance(n.args[0], ast.Constant) and n.args[0].value in keys:
                return True
    return False


def _shown(eps: Fraction) -> str:
    return "0" if eps == 0 else f"{float(eps):g}"


def _one_eps(forward: str, cases: list[Case], runs: list[dict[str, Any]]) -> Fraction | None:
    """The one ε the forward normalized with at every case (``detect_eps``), or None."""
    found: set[Fraction | None] = set()
    for case, run in zip(cases, runs, strict=True):
        out = run["float"].get(forward, {}).get("out")
        found.add(None if out is None else detect_eps(case, np.asarray(out, dtype=float)))
    if len(found) != 1 or None in found:
        return None
    return found.pop()


def _holds(section: _Section, forward: str, quantity: str) -> bool:
    row = next((v for v in section.verdicts if (v.form, v.quantity) == (forward, quantity)), None)
    return row is not None and row.status is Status.HOLDS


def _fixed_note(calls: Any, source: Any, eps: Fraction, inherited: bool) -> str:
    """What a section checked at the code's own ε says."""
    shown = _shown(eps)
    who = calls.layer.cls if calls.layer is not None else calls.forward
    how = (
        "its constructor has no eps parameter"
        if calls.layer is not None
        else "its forward has no eps parameter and reads no eps from bn_param"
    )
    zero = (
        " (ε = 0, or one below float64's resolution: a feature constant over the batch divides "
        "by zero)"
        if eps == 0
        else ""
    )
    if not inherited:
        return (
            f"{who} takes no ε ({how}): it normalizes with ε = {shown}{zero}, found exactly from "
            f"its output; every row of this section was checked at ε = {shown}, on inputs where "
            f"√(σ²+{shown}) is rational"
        )
    return (
        f"{who} takes no ε ({how}): it normalizes with ε = {shown}{zero} where it was first "
        "checked (training); every row of this section was checked at that ε"
    )


def _own_eps(
    caller: Caller,
    section: _Section,
    calls: dict[str, Any],
    cases: list[Case],
    runs: list[dict[str, Any]],
    momentum: str | None,
    source: Any,
    fixed: Fraction | None = None,
) -> None:
    """A forward refuted because it normalizes with its own ε: find that ε exactly, check the
    forward and every backward again at it, and say which case the file is (the forward is BN
    with a fixed ε and the backward its gradient, or the backward disagrees with its forward)."""
    forward = calls["forward"]
    eps = _one_eps(forward, cases, runs)
    if eps is None:
        return
    try:
        # the inputs the section is checked on again at a code's own ε (σ² of a few ε at the
        # last shape, at every shape in eval mode): "with ε = E the forward is BatchNorm" is
        # said of those, so it never contradicts that check
        own = _section_cases(cases[0].spec.mode, cases[0].spec.training, 0, eps)
        own_runs = [_run_case(caller, case, momentum) for case in own]
    except (UserFailure, SandboxFailure, ValueError):
        return
    checked = {
        **calls,
        "backward": [n for n in calls["backward"] if all(n in r["float"] for r in own_runs)],
    }
    verdicts, _ = _compare(source.name, checked, own, own_runs)
    at = {(v.form, v.quantity): v for v in verdicts}
    shown = _shown(eps)
    what = (
        "σ is taken without ε (np.std, or the eps it is given is never used)"
        if eps == 0
        else f"ε is fixed at {shown} inside the code (the eps it is given is never used)"
    )
    if fixed is not None:  # the code takes no ε: its training forward fixed one, this mode another
        what = (
            f"here it normalizes with ε = {shown}, its training forward with ε = "
            f"{_shown(fixed)} (the code takes no ε; every mode must use the same one)"
        )
    out = at.get((forward, "out"))
    if out is None or out.status is not Status.HOLDS:
        return
    how = f"{out.method} at {out.scope.rsplit(' ', 1)[0]}, inputs where √(σ²+{shown}) is rational"
    tail = "" if fixed is not None else "; it is wrong only where the caller's ε is not that"
    section.diagnoses[(forward, "out")] = [
        f"{what}: with ε = {shown} the forward is BatchNorm ({how}){tail}",
        *section.diagnoses.get((forward, "out"), []),
    ]
    for v in section.verdicts:
        if v.form == forward or v.status is not Status.REFUTED:
            continue
        mine = at.get((v.form, v.quantity))
        if mine is None:
            continue
        if mine.status is Status.HOLDS:
            line = (
                f"your {v.quantity} is the gradient of your own forward: it holds at ε = {shown} "
                f"({mine.method}); {what}, so backward and forward agree, and both miss BatchNorm "
                f"at the ε passed (the forward: {forward}, whose cache it was called on)"
            )
        else:
            line = (
                f"your {v.quantity} is not the gradient of your own forward either: at ε = "
                f"{shown}, where the forward is BatchNorm, it is {mine.status.value} too (backward "
                f"and forward disagree beyond the fixed ε; the forward: {forward}, whose cache it "
                "was called on)"
            )
        section.diagnoses[(v.form, v.quantity)] = [
            line,
            *section.diagnoses.get((v.form, v.quantity), []),
        ]


# -- comparing -------------------------------------------------------------------------------------
def case_bounds(case: Case, dtype: str) -> dict[str, np.ndarray]:
    """The derived rounding bound of every entry of out, dx, dγ, dβ at ``case`` for results
    computed in ``dtype`` (``precision.rounding_bounds`` per reduction set)."""
    spec = case.spec
    out = {
        "out": np.zeros(spec.shape),
        "dx": np.zeros(spec.shape),
        "dgamma": np.zeros(spec.c),
        "dbeta": np.zeros(spec.c),
        "mean": np.zeros(spec.c),
        "var": np.zeros(spec.c),
    }
    for channel in range(spec.c):
        positions = spec.positions(channel)
        bounds = rounding_bounds(
            np.array([float(case.x[p]) for p in positions]),
            np.array([float(case.g[p]) for p in positions]),
            float(case.gamma[channel]),
            float(case.beta[channel]),
            float(case.eps),
            dtype,
            training=spec.training,
            running_mean=float(case.running_mean[channel]) if case.running_mean else 0.0,
            running_var=float(case.running_var[channel]) if case.running_var else 1.0,
        )
        for k, p in enumerate(positions):
            out["out"][p] = bounds.out[k]
            out["dx"][p] = bounds.dx[k]
        out["dgamma"][channel] = bounds.dgamma
        out["dbeta"][channel] = bounds.dbeta
        out["mean"][channel] = bounds.mean
        out["var"][channel] = bounds.var
    return out


@dataclass
class _Tally:
    exact: int = 0
    numeric: int = 0
    #: the largest error met, as a share of the bound at that entry, and the dtypes allowed for
    worst: float = 0.0
    dtypes: set[str] = field(default_factory=set)
    #: float64 results off by more than float64 rounding but no more than float32 rounding:
    #: code that computes in float32 inside, or a mistake too small to tell; undecided.
    rounding: list[str] = field(default_factory=list)
    #: results within rounding of the truth whose rounding also admits a known mistake
    inseparable: list[str] = field(default_factory=list)
    refuted: Verdict | None = None
    reasons: list[str] = field(default_factory=list)


def _compare(
    filename: str, calls: dict[str, Any], cases: list[Case], runs: list[dict[str, Any]]
) -> tuple[list[Verdict], list[str]]:
    rows: list[tuple[str, str]] = []
    if calls["forward"]:
        rows.append((calls["forward"], "out"))
    for name in calls["backward"]:
        # a backward that returns dx alone (its dγ, dβ go elsewhere) has the row dx only
        returned = set.intersection(*(set(run["float"].get(name, {})) for run in runs))
        rows += [(name, q) for q in ("dx", "dgamma", "dbeta") if q in returned]
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
    dtype = run.get("precision", {}).get(f"{who}/{quantity}", "float64")
    bound = case_bounds(case, dtype)[quantity].reshape(truth.shape)
    error = np.abs(floats - truth_f)
    float_ok = bool(np.all(error <= bound))
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
                who, quantity, case, where, truth[where], exact_text(mine[where]), "exact"
            )
            return
        tally.reasons.append(
            f"{case.spec.describe()}: the exact run differs from the truth but float64 agrees "
            "within rounding, so a float constant of the code was not read exactly"
        )
    tally.numeric += 1
    tally.dtypes.add(dtype)
    # the error as a share of the bound; where the bound is 0 (the truth is exactly 0 there and
    # so is every rounding: dx where g = 0 in eval mode) any error at all is infinitely far out
    share = np.divide(error, bound, out=np.where(error > 0, np.inf, 0.0), where=bound > 0)
    tally.worst = max(tally.worst, float(np.max(share)))
    if float_ok:
        near = nearest_mistake(case, quantity, bound)
        if near is not None:
            label, distance = near
            tally.inseparable.append(
                f"at {case.spec.describe()} rounding in {dtype} may reach {float(np.max(bound)):.2g}"
                f" and the known mistake {label} differs from the truth by at most twice that "
                f"(largest difference {distance:.2g}), so agreeing with the truth within rounding "
                "does not rule it out"
            )
        return
    if dtype == "float64":
        inside = case_bounds(case, INSIDE)[quantity].reshape(truth.shape)
        if np.all(error <= inside):
            tally.rounding.append(
                f"{case.spec.describe()}: largest error {float(np.max(error)):.2g}, beyond float64 "
                f"rounding ({float(np.max(bound)):.2g}) but within float32 rounding "
                f"({float(np.max(inside)):.2g})"
            )
            return
    where = tuple(int(i) for i in np.unravel_index(int(np.argmax(share)), share.shape))
    tally.refuted = _refutation(
        who, quantity, case, where, truth[where], repr(float(floats[where])), "numeric",
        _bound_text(float(error[where]), float(bound[where]), dtype),
    )  # fmt: skip


def _bound_text(error: float, bound: float, dtype: str) -> str:
    return (
        f"the derived rounding bound of {dtype} (off by {error:.3g} where rounding can reach "
        f"at most {bound:.3g})"
    )


def _forward_mistakes(case: Case) -> list[tuple[str, np.ndarray]]:
    """What the known forward mistakes output at ``case``, in float64: ε outside the root, no ε,
    Bessel's variance, γ or β left out; eval mode: the batch statistics instead of the running
    ones; SPATIAL: statistics per (c, h, w)."""
    spec = case.spec
    found: dict[str, np.ndarray] = {}
    x = case.x.astype(float)
    for label in ("ε outside the root", "no ε", "Bessel's variance", "γ left out", "β left out",
                  "batch statistics in eval mode"):  # fmt: skip
        if label == "Bessel's variance" and spec.m < 2:
            continue
        if label == "batch statistics in eval mode" and spec.training:
            continue
        out = np.zeros(spec.shape)
        for c in range(spec.c):
            positions = spec.positions(c)
            xs = np.array([x[p] for p in positions])
            gamma, beta, eps = float(case.gamma[c]), float(case.beta[c]), float(case.eps)
            if spec.training or label == "batch statistics in eval mode":
                mu, var = float(np.mean(xs)), float(np.var(xs))
            else:
                mu, var = float(case.running_mean[c]), float(case.running_var[c])
            if label == "Bessel's variance" and spec.training:
                var = var * spec.m / (spec.m - 1)
            root = {"ε outside the root": math.sqrt(var) + eps, "no ε": math.sqrt(var)}.get(
                label, math.sqrt(var + eps)
            )
            xhat = (xs - mu) / root if root else np.full(len(xs), np.inf)
            y = {"γ left out": xhat + beta, "β left out": gamma * xhat}.get(
                label, gamma * xhat + beta
            )
            for k, p in enumerate(positions):
                out[p] = y[k]
        found[label] = out
    return list(found.items())


_MISTAKE_VALUES: dict[Any, list[tuple[str, np.ndarray]]] = {}


def _case_key(case: Case, quantity: str) -> Any:
    return (case.spec, quantity, case.eps, tuple(case.x.reshape(-1)), tuple(case.g.reshape(-1)),
            case.gamma, case.beta, case.running_mean, case.running_var)  # fmt: skip


def mistake_values(case: Case, quantity: str) -> list[tuple[str, np.ndarray]]:
    """Every known mistake's value of ``quantity`` at ``case`` (float64), the ones that differ
    from the truth there: the corpus (``bnderive mutants``) and the conventions swapped, as the
    diagnosis compares them, and for out the forward mistakes.  Cached: the cases are the same
    for every file."""
    key = _case_key(case, quantity)
    if key in _MISTAKE_VALUES:
        return _MISTAKE_VALUES[key]
    truth = truth_at(case)[quantity].astype(float)
    found: list[tuple[str, np.ndarray]] = []
    if quantity == "out":
        found = _forward_mistakes(case)
    else:
        from bnderive.verify.diagnose import candidate_values

        found = [(label, values) for label, values in candidate_values(quantity, case)]
    visible = case_bounds(case, "float64")[quantity].reshape(truth.shape)
    found = [
        (label, values)
        for label, v in found
        if (values := visible_mistake(v, truth, visible)) is not None
    ]
    _MISTAKE_VALUES[key] = found
    return found


def nearest_mistake(case: Case, quantity: str, bound: np.ndarray) -> tuple[str, float] | None:
    """A known mistake that a result within ``bound`` of the truth cannot be told from: its
    value lies within twice the bound of the truth at every entry (so one result could be within
    the bound of both).  None when every known mistake is farther away somewhere."""
    truth = truth_at(case)[quantity].astype(float)
    for label, values in mistake_values(case, quantity):
        gap = np.abs(values - truth)
        if np.all(gap <= 2 * bound):
            return label, float(np.max(gap))
    return None


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
    tolerance_text: str = "",
) -> Verdict:
    channel = where[1] if len(where) > 1 else where[0]
    truth_text = exact_text(truth) + ("" if method == "exact" else f" ≈ {float(truth)!r}")
    cex = Counterexample(
        case.spec, channel, _entry(quantity, where), case.inputs(), truth_text, mine
    )
    detail = (
        f"differs at {case.spec.describe()} in exact rational arithmetic"
        if method == "exact"
        else f"differs at {case.spec.describe()} in float64 beyond {tolerance_text}"
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
    if tally.rounding:
        return Verdict(
            who,
            quantity,
            None,
            Status.UNDECIDED,
            "numeric",
            _scope(specs, "numeric"),
            "float64 differs from the exact truth by more than float64 rounding can (the "
            f"derived bound, see README) but by no more than float32 rounding can: "
            f"{tally.rounding[0]}. Code that computes in float32 inside errs this much; a "
            "mistake does too only by chance. Return float32 arrays to have float32's bound "
            "applied, or compute in float64 to have it decided",
            mode=mode,
        )
    dtypes = ", ".join(sorted(tally.dtypes))
    if tally.inseparable:
        return Verdict(
            who,
            quantity,
            None,
            Status.UNDECIDED,
            "numeric",
            _scope(specs, "numeric"),
            f"the results in {dtypes} agree with the truth within rounding, but carry too little "
            f"precision to decide: {tally.inseparable[0]}. Return float32 or float64 arrays to "
            "have it decided",
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
        f"{dtypes} agrees with the exact truth within the derived rounding bound of {dtypes} "
        f"(the largest error is {tally.worst:.2g} of the bound at its entry; every known "
        f"mistake lies beyond twice the bound) at {tally.numeric} of {len(specs)} shapes: "
        f"evidence, not a proof ({why})",
        mode=mode,
    )


# -- running statistics ----------------------------------------------------------------------------
RUNNING_NAMES = ("running_mean", "running_var")
RUNNING_CHOICES = ("auto", "cs231n", "pytorch")


@dataclass(frozen=True)
class RunningConvention:
    """How a training-mode forward updates its running statistics.

    Both conventions keep an exponential moving average r ← (1 − w)·r + w·s of a batch statistic
    s, with w the weight of the new batch; they differ in what "momentum" names and in which
    variance running_var averages:

    - CS231n (and Keras): the momentum p weighs the OLD value, w = 1 − p, default p = 9/10, and
      running_var averages the biased batch variance σ² = (1/M) Σ (x − μ)², the one the forward
      normalizes with.
    - PyTorch: the momentum m weighs the NEW value, w = m, default m = 1/10, and running_var
      averages the unbiased variance M/(M−1)·σ² (Bessel), while the forward normalizes with σ².

    With the defaults both give w = 1/10, so running_mean cannot tell them apart; running_var
    can, since M/(M−1)·σ² ≠ σ² whenever σ² ≠ 0 (M = N per feature, N·H·W per channel).
    """

    name: str
    title: str
    momentum: Fraction
    momentum_weighs_old: bool
    unbiased: bool

    def weight(self, momentum: Fraction) -> Fraction:
        """w, the weight of the new batch statistic, for the momentum read this convention's way."""
        return 1 - momentum if self.momentum_weighs_old else momentum

    def describe(self, momentum: Fraction) -> str:
        w = self.weight(momentum)
        side = "old" if self.momentum_weighs_old else "new"
        var = "the unbiased M/(M−1)·σ²" if self.unbiased else "the biased σ²"
        return (
            f"{self.title}'s update running ← {exact_text(1 - w)}·running + {exact_text(w)}·batch "
            f"(momentum {exact_text(momentum)} on the {side} value; running_var from {var})"
        )

    def update(self, case: Case, momentum: Fraction) -> dict[str, np.ndarray]:
        """running_mean and running_var after one training step at ``case``, exactly."""
        w = self.weight(momentum)
        m = case.spec.m
        means, variances = _batch_statistics(case)
        stored = [v * m / (m - 1) for v in variances] if self.unbiased else variances
        return {
            "running_mean": _objects(
                (1 - w) * r + w * mu for r, mu in zip(case.running_mean, means, strict=True)
            ),
            "running_var": _objects(
                (1 - w) * r + w * s for r, s in zip(case.running_var, stored, strict=True)
            ),
        }


RUNNING_CONVENTIONS = {
    "cs231n": RunningConvention("cs231n", "CS231n", Fraction(9, 10), True, False),
    "pytorch": RunningConvention("pytorch", "PyTorch", Fraction(1, 10), False, True),
}


def _objects(values: Any) -> np.ndarray:
    out = list(values)
    arr = np.empty(len(out), dtype=object)
    arr[:] = out
    return arr


def _batch_statistics(case: Case, axes: str | None = None) -> tuple[list[Fraction], list[Fraction]]:
    """μ_c and the biased σ_c² of every feature/channel c at the case, exactly; with ``axes``
    (one set per channel: ``no_transpose``) over the sets of that SPATIAL slip instead."""
    means, variances = [], []
    for positions, _channel in _slip_sets(case, axes):
        xs = [case.x[p] for p in positions]
        mu = sum(xs, Fraction(0)) / len(xs)
        means.append(mu)
        variances.append(sum(((v - mu) ** 2 for v in xs), Fraction(0)) / len(xs))
    return means, variances


@dataclass(frozen=True)
class _Expected:
    """What the running statistics should be at every case under one hypothesis."""

    label: str
    values: list[dict[str, np.ndarray]]


def _agreement(want: Fraction, run: dict[str, Any], name: str, channel: int) -> str | None:
    """How the running statistic the forward stored for ``channel`` agrees with ``want``:
    "exact"; "numeric" (the float result within its derived rounding bound) when the run was
    not exact, or when its exact value differs while the float result agrees, as _compare_one
    does: a float constant of the code was not read exactly (1 − 0.9 in floats is
    0.09999999999999998, not 1/10); None when it differs."""
    stored = run["running"]
    if stored["exact"] is not None and Fraction(stored["exact"][name][channel]) == want:
        return "exact"
    got = float(stored["float"][name][channel])
    if abs(got - float(want)) <= float(stored["bound"][name][channel]):
        return "numeric"
    return None


def _stored_text(run: dict[str, Any], name: str, channel: int) -> tuple[str, str]:
    stored = run["running"]
    if stored["exact"] is not None:
        return exact_text(Fraction(stored["exact"][name][channel])), "exact"
    return repr(float(stored["float"][name][channel])), "numeric"


def _first_mismatch(
    expected: _Expected, runs: list[dict[str, Any]], name: str, *others: _Expected
) -> tuple[int, int, str, str] | None:
    """(case index, channel, stored value, method) of the first entry that differs from
    ``expected`` and from every one of ``others``; None when there is none."""
    for k, run in enumerate(runs):
        for channel in range(len(expected.values[k][name])):
            hypotheses = (expected, *others)
            if not any(
                _agreement(h.values[k][name][channel], run, name, channel) for h in hypotheses
            ):
                return (k, channel, *_stored_text(run, name, channel))
    return None


def _numeric_cases(expected: _Expected, runs: list[dict[str, Any]], name: str) -> int:
    """In how many cases float64 decided an agreement with ``expected``."""
    return sum(
        any(
            _agreement(want, run, name, channel) == "numeric"
            for channel, want in enumerate(expected.values[k][name])
        )
        for k, run in enumerate(runs)
    )


def _running_inputs(case: Case, momentum: Fraction | None) -> dict[str, str]:
    out = case.inputs()
    if case.spec.training:
        means, variances = _batch_statistics(case)
        out["running μ before"] = nested_text(np.array(case.running_mean, dtype=object))
        out["running σ² before"] = nested_text(np.array(case.running_var, dtype=object))
        out["batch μ"] = nested_text(_objects(means))
        out["batch σ²"] = nested_text(_objects(variances))
    out["bn_param['momentum']"] = (
        exact_text(momentum) if momentum is not None else "not given (the code's default)"
    )
    return out


def check_running(
    forward: str,
    cases: list[Case],
    runs: list[dict[str, Any]],
    running: str = "auto",
    passed: Fraction | None = None,
    default: Fraction | None = None,
) -> tuple[list[Verdict], list[str], str | None]:
    """Verdicts on the running statistics the CS231n forward left in bn_param, notes, and the
    convention the code follows (None when none was established).

    Training: ``running`` names the declared convention (its momentum was passed in bn_param),
    or ``auto``: no momentum was passed, so the code used its own default, and the convention
    whose update both statistics match is named.  Eval (test) mode normalizes with the running
    statistics and must leave them unchanged, whatever the convention.  ``passed``: under auto,
    the momentum a layer's constructor was given (each convention is then expected with it, read
    its own way); ``default``: the constructor's default momentum (a layer that ignores the one it
    is given uses it).
    """
    if not runs or any(run.get("running") is None for run in runs):
        return [], [], None
    given = passed if running == "auto" else RUNNING_CONVENTIONS[running].momentum
    check = _RunningCheck(forward, cases, runs, given, passed, default)
    if not cases[0].spec.training:
        return check.eval_rows(), [], None
    if running == "auto":
        return check.auto_rows()
    return check.declared_rows(RUNNING_CONVENTIONS[running])


#: Where a running statistic disagrees: (case index, channel, the stored value, method).
_Where = tuple[int, int, str, str]


@dataclass
class _RunningCheck:
    """The rows running_mean and running_var of one forward, under one hypothesis or another."""

    forward: str
    cases: list[Case]
    runs: list[dict[str, Any]]
    passed: Fraction | None  # the momentum given in bn_param, None when none was
    auto_momentum: Fraction | None = None  # under auto, the momentum given to the constructor
    default: Fraction | None = None  # the constructor's default momentum
    unchanged: _Expected = field(init=False)

    def __post_init__(self) -> None:
        self.unchanged = _Expected(
            "the running statistics left unchanged",
            [
                {"running_mean": _objects(c.running_mean), "running_var": _objects(c.running_var)}
                for c in self.cases
            ],
        )

    def expected(self, convention: RunningConvention, momentum: Fraction) -> _Expected:
        updates = [convention.update(case, momentum) for case in self.cases]
        return _Expected(convention.describe(momentum), updates)

    def matches(self, expected: _Expected, name: str) -> bool:
        return _first_mismatch(expected, self.runs, name) is None

    def _scope(self, numeric: int) -> str:
        how = {0: "exact", len(self.runs): "numeric"}.get(numeric, "exact/numeric")
        return _scope([case.spec for case in self.cases], how)

    def holds(self, name: str, detail: str, expected: _Expected) -> Verdict:
        numeric = _numeric_cases(expected, self.runs, name)
        if numeric:
            rival = self.rival(name, expected)
            dtypes = sorted({run["running"]["dtypes"].get(name, "float64") for run in self.runs})
            if rival is not None:
                return Verdict(
                    self.forward, name, None, Status.UNDECIDED, "numeric",
                    self._scope(numeric),
                    f"{detail}, but the values in {', '.join(dtypes)} agree within rounding with "
                    f"{rival.label} too: too little precision to tell them apart; return "
                    "float32 or float64 running statistics to have it decided",
                    mode=self.cases[0].spec.mode,
                )  # fmt: skip
            detail += (
                f"; {', '.join(dtypes)} within the derived rounding bound at {numeric} of "
                f"{len(self.runs)} shapes, where the run was not exact or a float constant of "
                "the code (such as its default momentum) was not read exactly: evidence, not a "
                "proof"
            )
        return Verdict(
            self.forward, name, None, Status.HOLDS, "numeric" if numeric else "exact",
            self._scope(numeric), detail, mode=self.cases[0].spec.mode,
        )  # fmt: skip

    def rival(self, name: str, expected: _Expected) -> _Expected | None:
        """Another hypothesis (unchanged, either convention at its default momentum) that
        differs from ``expected`` but that the stored values also agree with within rounding."""
        others = [self.unchanged] + [
            self.expected(c, c.momentum) for c in RUNNING_CONVENTIONS.values()
        ]
        for other in others:
            same = all(
                np.array_equal(a[name], b[name])
                for a, b in zip(other.values, expected.values, strict=True)
            )
            if not same and self.matches(other, name):
                return other
        return None

    def unchecked(self, name: str, detail: str) -> Verdict:
        return Verdict(
            self.forward, name, None, Status.UNCHECKED, "exact", self._scope(0), detail,
            mode=self.cases[0].spec.mode,
        )  # fmt: skip

    def refuted(self, name: str, where: _Where, truth: str, why: str, after: str = "") -> Verdict:
        k, channel, mine, how = where
        case = self.cases[k]
        arithmetic = (
            "in exact rational arithmetic"
            if how == "exact"
            else "in floating point beyond the derived rounding bound"
        )
        inputs = _running_inputs(case, self.passed)
        cex = Counterexample(case.spec, channel, f"{name}[{channel}]", inputs, truth, mine)
        detail = f"{why} at {case.spec.describe()} {arithmetic}" + (f"; {after}" if after else "")
        return Verdict(
            self.forward, name, None, Status.REFUTED, how, _scope([case.spec], how), detail, cex,
            mode=case.spec.mode,
        )  # fmt: skip

    @staticmethod
    def value(expected: _Expected, name: str, where: _Where) -> str:
        value = expected.values[where[0]][name][where[1]]
        return exact_text(value) + ("" if where[3] == "exact" else f" ≈ {float(value)!r}")

    def eval_rows(self) -> list[Verdict]:
        rows = []
        for name in RUNNING_NAMES:
            where = _first_mismatch(self.unchanged, self.runs, name)
            if where is None:
                detail = "eval mode leaves the running statistics unchanged"
                rows.append(self.holds(name, detail, self.unchanged))
                continue
            truth = self.value(self.unchanged, name, where)
            after = "eval mode normalizes with the running statistics and must leave them as "
            after += "they are (CS231n and PyTorch alike)"
            rows.append(self.refuted(name, where, truth, "changed in eval (test) mode", after))
        return rows

    def slip(self, name: str) -> str | None:
        """A common slip the stored values match exactly (or within rounding): running_var that
        averages σ² + ε or the standard deviation √(σ²+ε) instead of σ², the momentum applied
        to the new batch instead of the old value (inverted), or in SPATIAL mode the statistics
        of x reshaped to (N·H·W, C) without the transpose (the sets its forward normalized)."""
        Stat = Callable[[Fraction, Fraction, Fraction], Fraction]
        plain: Stat = lambda v, eps, r: v  # noqa: E731
        variants: list[tuple[str, Stat, str | None]] = [
            ("the momentum inverted (it weighs the new batch)", plain, None),
        ]
        if name == "running_var":
            variants += [
                ("running_var includes ε (it averages σ² + ε)", lambda v, eps, r: v + eps, None),
                ("running_var averages the standard deviation √(σ²+ε), not σ²",
                 lambda v, eps, r: r, None),
                # √σ² is irrational here: its double, compared within rounding
                ("running_var averages the standard deviation √σ² (np.std), not σ²",
                 lambda v, eps, r: Fraction(math.sqrt(float(v))), None),
            ]  # fmt: skip
        if self.cases[0].spec.mode is Mode.SPATIAL:
            variants.append((
                f"{SLIPS['axes']['no_transpose']}: the running statistics average the mean and "
                "variance of those sets, not of each channel over N, H and W",
                plain, "no_transpose",
            ))  # fmt: skip
        if self.default is not None and self.auto_momentum not in (None, self.default):
            variants.insert(0, (
                f"the momentum it is given is ignored (it uses its default {exact_text(self.default)})",
                plain, None,
            ))  # fmt: skip
        for text, stat, axes in variants:
            for convention in RUNNING_CONVENTIONS.values():
                momentum = self.auto_momentum or convention.momentum
                if text.startswith("the momentum it is given is ignored"):
                    momentum = self.default or momentum
                w = convention.weight(momentum)
                if text.startswith("the momentum inverted"):
                    w = 1 - w
                values = [
                    {name: self._slipped_update(name, case, convention, w, stat, axes)}
                    for case in self.cases
                ]
                hypothesis = _Expected(f"{convention.title}'s update with {text}", values)
                if self.matches(hypothesis, name):
                    numeric = _numeric_cases(hypothesis, self.runs, name)
                    how = "exactly" if not numeric else (
                        f"float64 within the derived rounding bound at {numeric} of "
                        f"{len(self.runs)} shapes, where the run was not exact or a float constant of "
                        "the code was not read exactly"
                    )  # fmt: skip
                    return f"{text}: it matches {convention.title}'s update with that slip ({how})"
        return None

    @staticmethod
    def _slipped_update(
        name: str,
        case: Case,
        convention: RunningConvention,
        w: Fraction,
        stat: Callable[[Fraction, Fraction, Fraction], Fraction],
        axes: str | None,
    ) -> np.ndarray:
        """One case's running statistic under a slip: the batch statistic through ``stat``
        (over the sets of the ``axes`` slip when one is given), averaged with weight ``w``."""
        m = case.spec.m
        means, variances = _batch_statistics(case, axes)
        if name == "running_mean":
            batch = means
        else:
            factor = Fraction(m, m - 1) if convention.unbiased else Fraction(1)
            batch = [
                stat(v * factor, case.eps, root)
                for v, root in zip(variances, case.roots, strict=True)
            ]
        old = case.running_mean if name == "running_mean" else case.running_var
        return _objects((1 - w) * o + w * b for o, b in zip(old, batch, strict=True))

    def declared_rows(
        self, declared: RunningConvention
    ) -> tuple[list[Verdict], list[str], str | None]:
        want = self.expected(declared, declared.momentum)
        # What the code may do instead: nothing, or the other convention, reading the momentum
        # bn_param gives with its own meaning, or ignoring it for its own default.
        others = [self.unchanged] + [
            self.expected(other, p)
            for other in RUNNING_CONVENTIONS.values()
            if other is not declared
            for p in dict.fromkeys((declared.momentum, other.momentum))
        ]
        rows = []
        for name in RUNNING_NAMES:
            where = _first_mismatch(want, self.runs, name)
            if where is None:
                rows.append(self.holds(name, f"equal to {want.label} at every shape", want))
                continue
            instead = next((e for e in others if self.matches(e, name)), None)
            after = ""
            if instead is self.unchanged:
                after = "the forward leaves it unchanged"
            elif instead is not None:
                after = f"it matches {instead.label} instead"
            elif (slip := self.slip(name)) is not None:
                after = slip
            truth = self.value(want, name, where)
            rows.append(self.refuted(name, where, truth, f"differs from {want.label}", after))
        found = declared.name if all(v.status is Status.HOLDS for v in rows) else None
        return rows, [], found

    def auto_rows(self) -> tuple[list[Verdict], list[str], str | None]:
        # no momentum was passed: each convention is expected with its own default
        hypotheses = {
            key: self.expected(convention, self.auto_momentum or convention.momentum)
            for key, convention in RUNNING_CONVENTIONS.items()
        }
        if all(self.matches(self.unchanged, name) for name in RUNNING_NAMES):
            detail = (
                "the training-mode forward left bn_param's running statistics unchanged: not "
                "checked (declare --running cs231n or --running pytorch to have this refuted)"
            )
            note = f"{self.forward} does not update the running statistics in training mode"
            return [self.unchecked(name, detail) for name in RUNNING_NAMES], [note], None
        for key, hypothesis in hypotheses.items():
            if all(self.matches(hypothesis, name) for name in RUNNING_NAMES):
                label = hypothesis.label
                rows = [self.holds(name, f"follows {label}", hypothesis) for name in RUNNING_NAMES]
                return rows, [f"the running statistics follow {label}"], key
        rows = []
        for name in RUNNING_NAMES:
            matching = [h for h in hypotheses.values() if self.matches(h, name)]
            if matching:
                labels = " and ".join(h.label for h in matching)
                rows.append(self.holds(name, f"equal to {labels}", matching[0]))
                continue
            cs231n, pytorch = hypotheses["cs231n"], hypotheses["pytorch"]
            # an entry that differs from both, when there is one
            where = _first_mismatch(cs231n, self.runs, name, pytorch) or _first_mismatch(
                cs231n, self.runs, name
            )
            assert where is not None  # the row matches neither hypothesis
            ours, theirs = self.value(cs231n, name, where), self.value(pytorch, name, where)
            truth = (
                f"{ours} (CS231n and PyTorch alike)"
                if ours == theirs
                else f"{ours} (CS231n) or {theirs} (PyTorch)"
            )
            after = "; ".join(h.label for h in hypotheses.values())
            if self.matches(self.unchanged, name):
                after = "the forward leaves it unchanged; " + after
            elif (slip := self.slip(name)) is not None:
                after = f"{slip}; " + after
            rows.append(self.refuted(name, where, truth, "matches neither convention", after))
        note = "the running statistics follow neither CS231n's nor PyTorch's convention"
        return rows, [note], None
