"""check-impl --norm layer|instance|group|rms: a user's LayerNorm, InstanceNorm, GroupNorm or
RMSNorm implementation checked against the family's exact truth.

The family is core/spec's (statistics over a reduction set, γ and β indexed as the family
indexes them); the truth of the whole layer at explicit inputs is ``core.layer.layer_truth`` and
the inputs ``core.layer.exact_point``: one ε for the layer with every √(σ²+ε) rational, so the
code, run on exact rationals in the child (as for BatchNorm), is compared with the truth
exactly.  The functions are found by name (CS231n's ``layernorm_forward(x, gamma, beta,
ln_param)``/``layernorm_backward(dout, cache)``, ``spatial_groupnorm_forward(x, gamma, beta, G,
gn_param)``, other names with the family's word in them) or a functional backward
``f(x, gamma, beta, dout, eps)`` (RMSNorm: ``f(x, gamma, dout, eps)``).  The family keeps no
running statistics: training mode only.

Where the code cannot run exactly, its float results are compared with the truth within the
family's derived rounding bound (``precision.layer_bounds``: BatchNorm's chain with dx̂ = γ ⊙ dy,
without the mean for RMSNorm, and dγ, dβ summed across the sets that share γ), as check-impl
compares BatchNorm's: within it, with every known mistake of the family farther than twice the
bound, the row holds numerically ("evidence, not a proof"); beyond float32's bound it is
refuted; in between it is undecided with its largest relative error, never "holds".
"""

from __future__ import annotations

import ast
import re
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from bnderive.core.layer import exact_point, layer_truth
from bnderive.core.spec import Mode, Norm, Spec
from bnderive.usercode.layout import ImplementationError, Source, read_source
from bnderive.usercode.run import Caller, Calls, UserFailure, exact_text, load, nested_text
from bnderive.usercode.sandbox import Sandbox, SandboxFailure, check_limits
from bnderive.verify.verdict import Counterexample, Status, Verdict

#: The words a family's function names carry.
WORDS = {
    Norm.LAYER: r"layer_?norm|(^|_)ln(_|$)",
    Norm.INSTANCE: r"instance_?norm|(^|_)in(_|$)",
    Norm.GROUP: r"group_?norm|(^|_)gn(_|$)",
    Norm.RMS: r"rms_?norm|(^|_)rms(_|$)",
}
GROUPS = ("G", "groups", "num_groups", "n_groups", "group", "ngroups")
EPS = ("eps", "epsilon")


@dataclass(frozen=True)
class FamilyCase:
    """One exact input point of a family's layer (``exact_point``), as ``run.Caller`` reads it:
    γ and β shaped like the family's affine (``Spec.affine_shape``); no running statistics."""

    spec: Spec
    x: np.ndarray
    g: np.ndarray
    gamma: np.ndarray
    beta: np.ndarray
    eps: Fraction
    root: Fraction
    running_mean: tuple = ()
    running_var: tuple = ()
    affine: tuple[int, ...] = ()

    def inputs(self) -> dict[str, str]:
        out = {"x": nested_text(self.x), "dout": nested_text(self.g), "γ": nested_text(self.gamma)}
        if self.spec.norm.has_beta:
            out["β"] = nested_text(self.beta)
        out["ε"] = exact_text(self.eps)
        out["√(σ²+ε)" if self.spec.norm.centred else "√(mean(x²)+ε)"] = exact_text(self.root)
        return out


def family_specs(norm: Norm, mode: Mode, groups: int) -> list[Spec]:
    """The shapes checked: two or three, one with several sets and channels so that a mix-up
    between them shows."""
    if mode is Mode.PER_ACTIVATION:
        sizes = [(3, 4), (2, 5), (4, 3)]
        return [Spec(mode, n=n, c=c, norm=norm) for n, c in sizes]
    if norm is Norm.GROUP:
        sizes = [(2, 2 * groups, 1, 2), (1, groups, 2, 2), (2, 2 * groups, 2, 1)]
        return [Spec(mode, n=n, c=c, h=h, w=w, norm=norm, groups=groups) for n, c, h, w in sizes]
    sizes = [(2, 2, 2, 2), (1, 3, 1, 3), (3, 2, 2, 1)]
    return [Spec(mode, n=n, c=c, h=h, w=w, norm=norm) for n, c, h, w in sizes]


def make_family_case(spec: Spec, seed: int) -> FamilyCase:
    p = exact_point(spec, seed, root_too=True)  # ε outside the root runs exactly too
    beta = p["beta"] if p["beta"] is not None else np.zeros(spec.affine_shape, dtype=object)
    return FamilyCase(spec, p["x"], p["g"], p["gamma"], beta, p["eps"], p["r"],
                      affine=tuple(spec.affine_shape))  # fmt: skip


# -- which functions, and how they are called --------------------------------------------------------
def _bind(f: Any, norm: Norm) -> tuple[str, ...] | None:
    """What each parameter of a family forward gets, by name, then by place for γ and β."""
    out: list[str] = []
    for k, name in enumerate(f.params):
        low = name.lower()
        if k == 0:
            out.append("x")
        elif name in GROUPS or low in ("groups", "num_groups", "n_groups", "ngroups"):
            out.append("groups")
        elif low in EPS:
            out.append("eps")
        elif "param" in low:
            out.append("param")
        elif low in ("gamma", "g", "weight", "w", "scale") or (k == 1 and "gamma" not in out):
            out.append("gamma")
        elif norm.has_beta and (low in ("beta", "b", "bias", "shift") or k == 2):
            out.append("beta")
        elif k >= f.required:
            out.append("default")
        else:
            return None
    return tuple(out)


def _reshapes(source: Source, name: str) -> bool:
    node = next(
        (n for n in ast.walk(source.tree) if isinstance(n, ast.FunctionDef) and n.name == name),
        None,
    )
    if node is None:
        return True
    text = ast.unparse(node)
    return bool(re.search(r"gamma\s*(\.reshape|\[\s*(None|np\.newaxis|:))", text))


def resolve_family(source: Source, norm: Norm, mode: Mode, function: str | None) -> Calls:
    """A forward/backward pair with the family's word in their names, or a functional
    backward f(x, gamma, beta, dout, eps) (RMSNorm: f(x, gamma, dout, eps))."""
    from bnderive.usercode.run import bind_backward, param_keys

    grads = ("dx", "dgamma", "dbeta") if norm.has_beta else ("dx", "dgamma")
    functions = {n: f for n, f in source.functions.items() if not n.startswith("_")}
    if function is not None:
        if function not in functions:
            raise ImplementationError(
                f"{source.name}: the file defines no function {function!r} (functions found: "
                f"{source.listing()})."
            )
        return Calls("functional", None, [function], grads=grads)
    word = re.compile(WORDS[norm])
    named = [f for f in functions.values() if word.search(f.name.lower())]
    backwards = [f for f in named if re.search(r"backward|_bwd|grad", f.name.lower())]
    forwards = [f for f in named if f not in backwards]
    for b in backwards:
        if b.params and b.params[0].lower() in ("x", "inputs", "z"):
            return Calls("functional", None, [b.name], grads=grads)
        for f in forwards:
            args = _bind(f, norm)
            if args is None:
                continue
            spatial = mode is Mode.SPATIAL
            return Calls(
                "cs231n", f.name, [b.name], "eps" in args and "param" not in args, args,
                param_keys(source, f.name), {b.name: bind_backward(source, f.name, b)},
                spatial and not _reshapes(source, f.name), grads=grads,
            )  # fmt: skip
    listing = source.listing()
    raise ImplementationError(
        f"{source.name}: no {norm.title} functions found: check-impl --norm {norm.value} looks "
        f"for a forward/backward pair whose names say {norm.value}norm (CS231n's "
        f"{'spatial_groupnorm' if norm is Norm.GROUP else norm.value + 'norm'}_forward/_backward), "
        f"or a functional backward given with --function NAME (functions found: {listing})."
    )


# -- comparing ----------------------------------------------------------------------------------------
@dataclass
class _Row:
    who: str
    quantity: str
    exact: int = 0
    inexact: list[str] = field(default_factory=list)
    worst: float = 0.0
    refuted: Verdict | None = None
    numeric: int = 0  # shapes decided in float64 within the family's derived rounding bound
    dtypes: set[str] = field(default_factory=set)


@dataclass
class _Bounds:
    """``precision.layer_bounds`` at one case, each dtype's worked out once: every row of the
    case asks for its dtype's, float64's and float32's."""

    case: FamilyCase
    found: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def __call__(self, dtype: str) -> dict[str, np.ndarray]:
        from bnderive.usercode.precision import layer_bounds

        if dtype not in self.found:
            c = self.case
            beta = c.beta if c.spec.norm.has_beta else None
            self.found[dtype] = layer_bounds(c.spec, c.x, c.g, c.gamma, beta, float(c.eps), dtype)
        return self.found[dtype]


def _compare(rows: dict[tuple[str, str], _Row], case: FamilyCase, run: dict[str, Any]) -> None:
    bounds = _Bounds(case)
    truth = layer_truth(case.spec, case.x, case.g, case.gamma,
                       case.beta if case.spec.norm.has_beta else None, case.eps)  # fmt: skip
    for (who, quantity), row in rows.items():
        if row.refuted is not None:
            continue
        want = truth[quantity]
        exact = run["exact"]
        if exact is not None and who in exact and quantity in exact[who]:
            mine = np.asarray(exact[who][quantity], dtype=object).reshape(want.shape)
            diff = [(i, m, t) for i, (m, t) in enumerate(zip(mine.flat, want.flat, strict=True))
                    if Fraction(m) != Fraction(t)]  # fmt: skip
            if not diff:
                row.exact += 1
                continue
            if run["binary"]:
                why = "a float constant was read at its binary value"
                _note_worst(row, quantity, want, run)
                if not _bounded(row, bounds, quantity, want, run, why):
                    row.inexact.append(f"{_shape(case)}: {why}")
                continue
            at, m, t = diff[0]
            where = tuple(int(i) for i in np.unravel_index(at, want.shape))
            row.refuted = Verdict(
                who, quantity, None, Status.REFUTED, "exact", f"{_shape(case)} exact",
                f"differs from {case.spec.norm.title}'s truth at {_shape(case)} in exact rational "
                "arithmetic",
                Counterexample(case.spec, 0, f"{quantity}[{', '.join(map(str, where))}]",
                               case.inputs(), exact_text(t), exact_text(m)),
                mode=case.spec.mode,
            )  # fmt: skip
            continue
        if run["float"].get(who, {}).get(quantity) is None:
            continue
        _note_worst(row, quantity, want, run)
        why = run["why"] or "no exact run"
        if not _bounded(row, bounds, quantity, want, run, why):
            row.inexact.append(f"{_shape(case)}: {why}")


def _note_worst(row: _Row, quantity: str, want: np.ndarray, run: dict[str, Any]) -> None:
    """The largest error of the float result, as a share of max(1, the truth's largest entry)."""
    arr = np.asarray(run["float"][row.who][quantity], dtype=float).reshape(want.shape)
    ref = want.astype(float)
    scale = max(1.0, float(np.max(np.abs(ref))))
    row.worst = max(row.worst, float(np.max(np.abs(arr - ref))) / scale)


def _bounded(
    row: _Row, bounds: _Bounds, quantity: str, want: np.ndarray, run: dict[str, Any], why: str
) -> bool:
    """A float result decided by the family's derived rounding bound (``precision.layer_bounds``):
    within it, and every known mistake
    farther than twice the bound somewhere, counts as agreeing (numeric); beyond float32's bound
    (which covers code that computes in float32 inside) it is refuted.  False when undecided (a
    mistake as near as rounding, or an error between float64's and float32's bound)."""
    floats = run["float"].get(row.who, {}).get(quantity)
    dtype = run.get("dtypes", {}).get(f"{row.who}/{quantity}", "float64")
    case, spec = bounds.case, bounds.case.spec
    if floats is None:
        return False
    arr = np.asarray(floats, dtype=float).reshape(want.shape)
    truth = want.astype(float)
    bound = bounds(dtype)[quantity].reshape(want.shape)
    error = np.abs(arr - truth)
    if np.all(error <= bound):
        visible = bounds("float64")[quantity].reshape(want.shape)
        if _mistake_within(case, quantity, truth, bound, visible):
            return False
        row.numeric += 1
        row.dtypes.add(dtype)
        return True
    loose = bounds("float32")
    inside = np.maximum(loose[quantity].reshape(want.shape), bound)
    if np.all(error <= inside):
        return False  # beyond float64's rounding, within float32's: not decided
    share = np.divide(error, inside, out=np.full(error.shape, np.inf), where=inside > 0)
    where = tuple(int(i) for i in np.unravel_index(int(np.argmax(share)), share.shape))
    row.refuted = Verdict(
        row.who, quantity, None, Status.REFUTED, "numeric", f"{_shape(case)} numeric",
        f"differs from {spec.norm.title}'s truth at {_shape(case)} in {dtype} beyond the derived "
        f"rounding bound of float32 (off by {float(error[where]):.3g} where rounding can reach at "
        f"most {float(inside[where]):.3g}; {why})",
        Counterexample(spec, 0, f"{quantity}[{', '.join(map(str, where))}]", case.inputs(),
                       exact_text(want[where]), repr(float(arr[where]))),
        mode=spec.mode,
    )  # fmt: skip
    return True


def _mistake_within(
    case: FamilyCase, quantity: str, truth: np.ndarray, bound: np.ndarray, visible: np.ndarray
) -> bool:
    """Whether a known mistake of the family (a mutant of its per-set mathematics, or for out a
    forward slip) lies within twice ``bound`` of the truth at every entry: then a result within
    rounding of the truth could be that mistake, and agreeing does not decide.  As for BatchNorm
    (``check_impl.mistake_values``), a mistake within float64's bound of the truth everywhere
    (``visible``) is that truth at this shape (dβ does not depend on ε) and is left out here
    (``precision.visible_mistake``)."""
    from dataclasses import replace

    from bnderive.usercode.precision import visible_mistake
    from bnderive.verify.diagnose import _layer_value, candidates

    values: list[np.ndarray] = []
    spec = case.spec
    beta = case.beta if spec.norm.has_beta else None
    if quantity == "out":
        ones = np.full(spec.affine_shape, Fraction(1), dtype=object)
        zeros = np.full(spec.affine_shape, Fraction(0), dtype=object)
        for s, eps, gamma, b in (
            (replace(spec, eps_inside=False), case.eps, case.gamma, beta),
            (spec, Fraction(0), case.gamma, beta),
            (spec, case.eps, ones, beta),
            (spec, case.eps, case.gamma, zeros if beta is not None else None),
        ):
            values.append(layer_truth(s, case.x, case.g, gamma, b, eps, "float")["out"])
    else:
        for cand in candidates(quantity, 1, spec):
            value = _layer_value(quantity, case, cand.definitions, cand.spec_of(spec), cand.pick)
            if value is not None:
                values.append(value.floats())
    shown = [visible_mistake(v, truth, visible) for v in values]
    return any(v is not None and np.all(np.abs(v - truth) <= 2 * bound) for v in shown)


def _shape(case: FamilyCase) -> str:
    return "×".join(map(str, case.spec.shape))


def _verdict(row: _Row, specs: list[Spec]) -> Verdict:
    if row.refuted is not None:
        return row.refuted
    scope = ", ".join("×".join(map(str, s.shape)) for s in specs)
    mode = specs[0].mode
    missing = len(specs) - row.exact - row.numeric - len(row.inexact)
    if missing > 0:  # no result to compare at some shape: never "holds" for what was not seen
        return Verdict(
            row.who, row.quantity, None, Status.UNDECIDED, "exact", f"{scope} exact",
            f"no result to compare at {missing} of {len(specs)} shapes", mode=mode,
        )  # fmt: skip
    if not row.inexact and not row.numeric:
        return Verdict(row.who, row.quantity, None, Status.HOLDS, "exact", f"{scope} exact",
                       "equal to the truth in exact rational arithmetic at every shape",
                       mode=mode)  # fmt: skip
    if not row.inexact:
        dtypes = ", ".join(sorted(row.dtypes))
        return Verdict(
            row.who, row.quantity, None, Status.HOLDS, "numeric", f"{scope} numeric",
            f"{dtypes} agrees with the exact truth within the derived rounding bound of "
            f"{specs[0].norm.title} at {row.numeric} of {len(specs)} shapes, where the code did "
            "not run exactly (every known mistake lies beyond twice the bound there)"
            + (f"; exactly equal at the other {row.exact}" if row.exact else "")
            + ": evidence, not a proof",
            mode=mode,
        )  # fmt: skip
    reason = (
        "it is within rounding of a known mistake too, or beyond float64's rounding bound but "
        "within float32's"
    )
    return Verdict(
        row.who, row.quantity, None, Status.UNDECIDED, "numeric", f"{scope} numeric",
        f"no exact run at {len(row.inexact)} of {len(specs)} shapes ({row.inexact[0]}); the "
        f"float64 results differ from the exact truth by at most {row.worst:.2g} of its scale, "
        f"but {reason}, so this is not decided: let the code run on exact numbers (no "
        "astype(float), math.sqrt or float constants that are no short decimal)",
        mode=mode,
    )  # fmt: skip


def _run(caller: Caller, case: FamilyCase) -> dict[str, Any]:
    floats = caller.run(case, "float", None)
    try:
        exact = caller.run(case, "exact", None)
        why = "; ".join(exact.reasons + [e.message for e in exact.failures.values()]) or None
        binary = any(
            how != "fraction" and how != "decimal" for _v, how in exact.conversions.values()
        )
    except UserFailure as exc:
        exact, why, binary = None, exc.message, False
    return {
        "float": floats.values,
        "dtypes": dict(floats.dtypes),
        "exact": exact.values if exact is not None and why is None else None,
        "why": why,
        "binary": binary,
        "failures": floats.failures,
        "quantity_failures": floats.quantity_failures,
    }


def check_norm_impl(
    path: str | Path,
    norm: Norm | str,
    groups: int | None = None,
    function: str | None = None,
    mode: Mode | str | None = None,
    timeout: float = 20.0,
    memory_mb: int = 2048,
    seed: int = 0,
) -> Any:
    """Check a LayerNorm, InstanceNorm, GroupNorm or RMSNorm implementation (module docstring);
    a ``check_impl.Report``."""
    from bnderive.usercode.imports import stub_imports

    timeout, memory_mb = check_limits(timeout, memory_mb)
    family, chosen = _family_and_mode(norm, groups, mode)
    source = read_source(path)
    calls = resolve_family(source, family, chosen, function)
    calls.groups = groups or 0
    names = ([calls.forward] if calls.forward else []) + list(calls.backward)
    stubs = stub_imports(source, names)
    specs = family_specs(family, chosen, groups or 1)
    cases = [make_family_case(s, seed * 7919 + k + 1) for k, s in enumerate(specs)]
    label = f"{chosen.value} training"
    started = time.perf_counter()
    runs = _run_in_child(source, calls, stubs.modules, chosen, cases, timeout, memory_mb)
    failures, failed = _run_failures(source, calls, label, runs)
    rows = _rows_to_compare(calls, runs, failed)
    for case, run in zip(cases, runs, strict=True):
        _compare(rows, case, run)
    verdicts = [_verdict(row, specs) for row in rows.values()]
    report = _family_report(path, calls, names, verdicts, stubs.notes, label, cases, runs)
    report.failures = failures
    report.calls = _describe(calls, family, chosen)
    report.notes.append(
        f"checked as {family.title}"
        + (f" with G = {groups}" if family is Norm.GROUP else "")
        + " (no running statistics: training mode only), against core.layer's truth at "
        + ", ".join("×".join(map(str, s.shape)) for s in specs)
    )
    report.seconds = time.perf_counter() - started
    if failures and not verdicts:
        raise ImplementationError("\n".join(dict.fromkeys(f.message for f in failures)))
    return report


def _family_and_mode(
    norm: Norm | str, groups: int | None, mode: Mode | str | None
) -> tuple[Norm, Mode]:
    """The family asked for and the mode it is checked in, or the error of options that do not
    fit it: GroupNorm needs G (and only it takes one); InstanceNorm and GroupNorm normalize over
    H·W, so they are SPATIAL only."""
    family = Norm.parse(norm)
    if family is Norm.BATCH:
        raise ImplementationError("check_norm_impl checks the other families; use check_impl.")
    if family is Norm.GROUP:
        if groups is None or groups < 1:
            raise ImplementationError(
                "--norm group needs the number of groups: give --groups G (a whole number of at "
                "least 1; the check's shapes have C a multiple of G)."
            )
    elif groups is not None:
        raise ImplementationError(f"--groups belongs to --norm group, not --norm {family.value}.")
    chosen = Mode.parse(mode) if mode is not None else None
    if family in (Norm.INSTANCE, Norm.GROUP):
        if chosen is Mode.PER_ACTIVATION:
            raise ImplementationError(
                f"{family.title} takes (N, C, H, W) input only: leave --mode out or use --mode "
                "spatial."
            )
        chosen = Mode.SPATIAL
    return family, chosen or Mode.PER_ACTIVATION


def _run_in_child(
    source: Source,
    calls: Calls,
    stubs: list[str],
    mode: Mode,
    cases: list[FamilyCase],
    timeout: float,
    memory_mb: int,
) -> list[dict[str, Any]]:
    """The file loaded in one guarded child and run at every case (``_run``); a child or an
    import that fails is one error for the whole file, as nothing of it could be checked."""
    from bnderive.usercode.check_impl import _failure_message

    runs = []
    try:
        with Sandbox(timeout, memory_mb) as box:
            load(box, source, stubs=stubs)
            caller = Caller(box, calls, mode.value)
            for case in cases:
                runs.append(_run(caller, case))
    except (SandboxFailure, UserFailure) as exc:
        trace = getattr(exc, "trace", "")
        raise ImplementationError(
            _failure_message(source.path, exc.message, trace, getattr(exc, "output", ""))
        ) from None
    return runs


def _run_failures(
    source: Source, calls: Calls, label: str, runs: list[dict[str, Any]]
) -> tuple[list[Any], set[str]]:
    """A row for each function that raised (once, at its first case) and each quantity it could
    not give; and what failed (a function's name, or ``name/quantity``), which gets no row."""
    from bnderive.usercode.check_impl import Failure, _failure_message

    failures: list[Failure] = []
    failed: set[str] = set()
    for run in runs:
        for name, exc in run["failures"].items():
            if name not in failed:
                failed.add(name)
                failures.append(Failure(name, calls.grads, label, _failure_message(
                    source.path, exc.message, exc.trace, exc.output)))  # fmt: skip
        for (name, q), exc in run["quantity_failures"].items():
            failures.append(Failure(name, (q,), label, _failure_message(
                source.path, exc.message, exc.trace, exc.output)))  # fmt: skip
            failed.add(f"{name}/{q}")
    return failures, failed


def _rows_to_compare(
    calls: Calls, runs: list[dict[str, Any]], failed: set[str]
) -> dict[tuple[str, str], _Row]:
    """One row for the forward's out and one per gradient of each backward that ran, and only
    for a gradient every case returned: a quantity not seen at some shape gets no verdict."""
    rows: dict[tuple[str, str], _Row] = {}
    if calls.forward:
        rows[(calls.forward, "out")] = _Row(calls.forward, "out")
    for b in calls.backward:
        if b in failed:
            continue
        for q in calls.grads:
            if f"{b}/{q}" not in failed and all(q in r["float"].get(b, {}) for r in runs):
                rows[(b, q)] = _Row(b, q)
    return rows


def _family_report(
    path: str | Path,
    calls: Calls,
    names: list[str],
    verdicts: list[Verdict],
    notes: list[str],
    label: str,
    cases: list[FamilyCase],
    runs: list[dict[str, Any]],
) -> Any:
    """The verdicts as a ``check_impl.Report``, with the known mistakes each refuted row equals:
    the backward's (``family_diagnoses``) and, for a refuted out, the forward's slips."""
    from bnderive.usercode.check_impl import Report

    diagnosed = family_diagnoses(verdicts, cases, runs)
    if calls.forward and any(
        v.form == calls.forward and v.quantity == "out" and v.status is Status.REFUTED
        for v in verdicts
    ):
        slips = family_forward_slips(calls.forward, cases, runs)
        if slips:
            diagnosed[(calls.forward, "out")] = slips
    report = Report(str(path), calls.api, names, verdicts, notes, 0.0, "")
    report.sections = [label] * len(verdicts)
    report.section_diagnoses = {("", *key): lines for key, lines in diagnosed.items()}
    return report


def family_diagnoses(
    verdicts: list[Verdict], cases: list[FamilyCase], runs: list[dict[str, Any]]
) -> dict[tuple[str, str], list[str]]:
    """For each refuted dx, dγ, dβ: the known mistake of the family's per-set mathematics
    (``verify.diagnose.diagnose_sets``) whose values equal the code's, exactly, at every case
    where it ran exactly (two at least: ε outside the root runs exactly only where the sets'
    √σ² is rational, and three centred values never have one);
    what is wrong, what is right and where the mistake was seen.  A refuted row whose values
    equal no mutant is left without a name."""
    from bnderive.verify.diagnose import Value, diagnose_sets

    found: dict[tuple[str, str], list[str]] = {}
    for v in verdicts:
        if v.status is not Status.REFUTED or v.quantity not in ("dx", "dgamma", "dbeta"):
            continue
        at, mine = [], []  # the cases where the code ran exactly (every one, as a rule)
        for case, run in zip(cases, runs, strict=True):
            exact = run["exact"]
            if exact is None or v.quantity not in exact.get(v.form, {}):
                continue
            shape = case.spec.shape if v.quantity == "dx" else case.spec.affine_shape
            data = np.asarray(exact[v.form][v.quantity], dtype=object).reshape(shape)
            at.append(case)
            mine.append(Value(np.vectorize(Fraction, otypes=[object])(data), True))
        if len(at) >= 2:
            matches = diagnose_sets(v.quantity, at, mine)
            if matches:
                found[(v.form, v.quantity)] = [
                    line
                    for m in matches
                    for line in [*m.lines(v.quantity), *(f"  seen in: {s}" for s in m.sources())]
                ]
    return found


def family_forward_slips(
    forward: str, cases: list[FamilyCase], runs: list[dict[str, Any]]
) -> list[str]:
    """A refuted forward named: the one known slip (check_impl's ``SLIPS``: ε outside the root or
    none, γ or β left out) whose output, ``core.layer``'s forward under that slip, equals the
    code's exactly at every shape where the code ran exactly (two at least); nothing when none
    or several do."""
    from dataclasses import replace

    from bnderive.errors import EvaluationError
    from bnderive.usercode.check_impl import SLIPS

    spec0 = cases[0].spec
    # (Bessel's variance is no slip here: core.derive writes the family with the biased σ² only)
    slips: list[tuple[str, str]] = [("eps", "outside"), ("eps", "none"), ("affine", "no_gamma")]
    if spec0.norm.has_beta:
        slips += [("affine", "no_beta"), ("affine", "none")]
    mine = [
        (case, np.vectorize(Fraction, otypes=[object])(
            np.asarray(run["exact"][forward]["out"], dtype=object).reshape(case.spec.shape)))
        for case, run in zip(cases, runs, strict=True)
        if run["exact"] is not None and "out" in run["exact"].get(forward, {})
    ]  # fmt: skip
    if len(mine) < 2:
        return []
    matched = []
    for kind, choice in slips:
        for case, out in mine:
            spec, eps = case.spec, case.eps
            gamma, beta = case.gamma, case.beta if case.spec.norm.has_beta else None
            if kind == "eps":
                spec = replace(spec, eps_inside=False) if choice == "outside" else spec
                eps = eps if choice == "outside" else Fraction(0)
            if kind == "affine" and choice in ("no_gamma", "none"):
                gamma = np.full(spec.affine_shape, Fraction(1), dtype=object)
            if kind == "affine" and choice in ("no_beta", "none"):
                beta = np.full(spec.affine_shape, Fraction(0), dtype=object)
            try:
                theirs = layer_truth(spec, case.x, case.g, gamma, beta, eps)["out"]
            except (EvaluationError, ArithmeticError):
                break
            if any(Fraction(a) != Fraction(b) for a, b in zip(out.flat, theirs.flat, strict=True)):
                break
        else:
            matched.append((kind, choice))
    if len(matched) != 1:
        return []
    kind, choice = matched[0]
    return [
        f"known mistake: {SLIPS[kind][choice]} ({kind}-{choice}); your out equals the forward "
        f"with it, exactly, at every shape where the code ran exactly ({len(mine)} of {len(cases)})"
    ]


def _describe(calls: Calls, norm: Norm, mode: Mode) -> list[str]:
    grads = ", ".join(calls.grads)
    if calls.api == "functional":
        beta = ", beta" if norm.has_beta else ""
        return [
            f"{calls.backward[0]}(x, gamma{beta}, dout, eps) -> ({grads}) [{mode.value}, training]"
        ]
    roles = ", ".join(r for r in calls.forward_args if r != "default")
    lines = [f"{calls.forward}({roles}) -> (out, cache) [{mode.value}, training]"]
    for b in calls.backward:
        args = ", ".join(calls.backward_args.get(b, ("cache",)))
        lines.append(f"{b}(dout, {args}) -> ({grads}) [{mode.value}, training]")
    return lines


def check_any(
    path: str | Path, norm: Norm | str = "batch", groups: int | None = None, **options: Any
) -> Any:
    """check-impl for any family: BatchNorm by ``check_impl.check_impl`` (every layout, the
    running statistics, eval mode), the others by ``check_norm_impl``."""

    family = Norm.parse(norm)
    if family is Norm.BATCH:
        if groups is not None:
            raise ImplementationError("--groups belongs to --norm group (GroupNorm's G).")
        return _batch(path, options)
    given = [
        name
        for name, value, default in (
            ("--api", options.get("api"), None),
            ("--class", options.get("layer_class"), None),
            ("--eval/--train", options.get("training"), None),
            ("--running", options.get("running", "auto"), "auto"),
        )
        if value != default
    ]
    if given:
        raise ImplementationError(
            f"{', '.join(given)} belong to BatchNorm's check; --norm {family.value} checks a "
            f"{family.title} forward/backward pair or functional backward in training mode "
            "(the family keeps no running statistics): leave them out."
        )
    return check_norm_impl(
        path, family, groups, options.get("function"), options.get("mode"),
        options.get("timeout", 20.0), options.get("memory_mb", 2048), options.get("seed", 0),
    )  # fmt: skip


def _batch(path: str | Path, options: dict[str, Any]) -> Any:
    """BatchNorm's check, and the file's affine_bn_relu pair when it has one (its rows after
    BatchNorm's; the pair alone when the file has no other BatchNorm code)."""
    from bnderive.usercode.check_impl import check_impl
    from bnderive.usercode.composite_impl import check_composite_impl, composite_pair

    chosen = {k: options.get(k) for k in ("api", "function", "layer_class")}
    source = read_source(path) if not any(chosen.values()) else None
    pair = composite_pair(source) if source is not None else None
    if pair is None:
        return check_impl(path, **options)
    skipped = options.get("training") is False or options.get("mode") not in (
        None, Mode.PER_ACTIVATION, "per-activation",
    )  # fmt: skip
    composite = None
    if not skipped:
        composite = check_composite_impl(
            source, pair, options.get("timeout", 20.0), options.get("memory_mb", 2048),
            options.get("seed", 0),
        )  # fmt: skip
    if not _has_batchnorm(source, set(pair)):
        if composite is None:
            raise ImplementationError(
                f"{source.name}: its {pair[0]}/{pair[1]} pair is checked in training mode on "
                "(N, D) input only: leave out --eval and --mode spatial."
            )
        return composite
    report = check_impl(path, **options)
    if composite is None:
        report.notes.append(
            f"{pair[0]}/{pair[1]} not checked: the pair is checked in training mode on (N, D) "
            "input only"
        )
        return report
    report.functions += [n for n in composite.functions if n not in report.functions]
    report.verdicts += composite.verdicts
    report.sections += composite.sections
    report.failures += composite.failures
    report.calls += composite.calls
    report.notes += composite.notes
    report.seconds += composite.seconds
    return report


def _has_batchnorm(source: Source, composite: set[str]) -> bool:
    """Whether the file has BatchNorm code of its own besides the composite pair: CS231n's
    names, a pair under other names, a functional backward or a layer class."""
    from bnderive.usercode.layer import layer_plans
    from bnderive.usercode.run import CS231N, find_pair

    names = {n for triple in CS231N.values() for n in triple if n}
    if names & set(source.functions):
        return True
    for mode in ("per-activation", "spatial"):
        pair = find_pair(source, mode)  # by names: affine_forward/affine_backward is not one
        if pair is not None and re.search(r"bn|batch_?norm", (pair.forward or "").lower()):
            return True
    if layer_plans(source):
        return True
    return any(
        len(f.params) >= 5 and f.params[0].lower() in ("x", "inputs")
        for n, f in source.functions.items()
        if n not in composite and not n.startswith("_")
    )
