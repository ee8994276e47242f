"""The stability study: how far float results of the backward pass are from the exact one.

For each float dtype asked for, the inputs of one reduction set are drawn (seeded) as
x = mean + spread·z with z standard normal, g standard normal, γ and ε fixed, and rounded to the
dtype; every candidate (``floats``) computes ∂L/∂x from them in the dtype and is compared with
the exact ∂L/∂x at the same rounded inputs (``exact``): the relative error
max|dx − dx*| / max|dx*|.  Two sweeps:

* ``mean``: the mean from 0 to 1e6 at a fixed spread and M (large means: μ and σ² lose digits);
* ``M``: the size of the reduction set from 4 up at a fixed mean.

At every point the variance is also computed two ways (two-pass and one-pass E[x²] − μ²) and
compared with the exact σ².  Nothing is assumed: the numbers are measured each run (the inputs
are seeded, so each run measures the same numbers on the same NumPy).
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bnderive.stability.exact import exact_dx, exact_statistics, relative_error
from bnderive.stability.floats import (
    form_dx,
    forward,
    kernel_dx,
    one_pass_variance,
    two_pass_variance,
)

#: The published closed forms (derivations/), each evaluated as written (``written``).
FORMS = ("staged", "kronecker", "compact")
#: The form ``bnderive emit`` writes by default, whose verified kernels are studied.
KERNEL_FORM = "compact"
EMITTED_NUMPY = "emitted numpy"
EMITTED_NUMBA = "emitted numba"
ONE_PASS = "one-pass σ²"
TWO_PASS = "two-pass σ²"
#: The dtypes the study knows (NumPy's float types).
DTYPES = ("float16", "float32", "float64")
#: The means of the mean sweep: 0, then 1 to 1e6 by decades.
MEANS = (0.0, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6)
#: γ and ε of every point (γ ≠ 1 so that a lost γ would show; ε as PyTorch's default).
GAMMA = 1.5
EPS = 1e-5


@dataclass(frozen=True)
class Row:
    """One measurement: ``candidate``'s relative error in ``quantity`` at one point.

    ``sweep`` is "mean" or "M" (which sweep the point belongs to); ``mean`` and ``m`` give the
    point (input mean, size M of the reduction set); ``quantity`` is "dx" (∂L/∂x, error
    max|dx − dx*| / max|dx*|) or "var" (σ², error |σ² − σ²*| / σ²*).  ``error`` is ``math.inf``
    when the candidate's result overflowed or is NaN, ``math.nan`` when the inputs themselves
    cannot be held in the dtype (``note`` says which).  With several draws per point
    (``study(trials=N)``) ``error`` is their median and ``low``, ``high`` the smallest and the
    largest; with one draw they are None."""

    sweep: str
    dtype: str
    mean: float
    m: int
    candidate: str
    quantity: str
    error: float
    note: str = ""
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class StabilityStudy:
    """The result of ``study()``: every measured row, and the settings that reproduce it.

    ``rows`` holds one ``Row`` per (sweep, dtype, point, candidate); ``candidates`` lists the
    candidates in the order they are shown (the published forms, the emitted kernels, then the
    two variances); ``means`` and ``sizes`` are the points of the two sweeps, ``m`` the M of
    the mean sweep and ``size_mean`` the mean of the M sweep.  ``series`` gives one candidate's
    errors along a sweep, which is what a table or a figure shows."""

    dtypes: tuple[str, ...]
    candidates: tuple[str, ...]
    means: tuple[float, ...]
    sizes: tuple[int, ...]
    m: int
    size_mean: float
    spread: float
    gamma: float
    eps: float
    seed: int
    rows: tuple[Row, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)
    trials: int = 1  # draws of the inputs per point (seeds seed, seed + 1, …)

    @property
    def dx_candidates(self) -> tuple[str, ...]:
        return tuple(c for c in self.candidates if c not in (ONE_PASS, TWO_PASS))

    def series(self, sweep: str, dtype: str, candidate: str) -> list[tuple[float, float]]:
        """(point, error) along ``sweep`` ("mean": the mean; "M": M) for one candidate."""
        return [
            (r.mean if sweep == "mean" else float(r.m), r.error)
            for r in self.rows
            if r.sweep == sweep and r.dtype == dtype and r.candidate == candidate
        ]

    def ranges(
        self, sweep: str, dtype: str, candidate: str
    ) -> list[tuple[float, float | None, float | None]]:
        """(point, smallest, largest error over the draws) along ``sweep``; None, None with
        one draw per point."""
        return [
            (r.mean if sweep == "mean" else float(r.m), r.low, r.high)
            for r in self.rows
            if r.sweep == sweep and r.dtype == dtype and r.candidate == candidate
        ]

    def error(self, sweep: str, dtype: str, candidate: str, at: float) -> float:
        """The error of ``candidate`` at the point ``at`` (a mean or an M) of ``sweep``."""
        for point, value in self.series(sweep, dtype, candidate):
            if point == at:
                return value
        raise KeyError((sweep, dtype, candidate, at))

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON data (a non-finite error is null, with its note)."""
        return {
            "dtypes": list(self.dtypes),
            "candidates": list(self.candidates),
            "means": list(self.means),
            "sizes": list(self.sizes),
            "m": self.m,
            "size_mean": self.size_mean,
            "spread": self.spread,
            "gamma": self.gamma,
            "eps": self.eps,
            "seed": self.seed,
            "trials": self.trials,
            "error": "max|got − exact| / max|exact|, at the same float inputs"
            + (
                f"; the median of {self.trials} draws (seeds {self.seed} to "
                f"{self.seed + self.trials - 1}), low and high the smallest and largest"
                if self.trials > 1
                else ""
            ),
            "rows": [
                {
                    "sweep": r.sweep,
                    "dtype": r.dtype,
                    "mean": r.mean,
                    "m": r.m,
                    "candidate": r.candidate,
                    "quantity": r.quantity,
                    "error": r.error if math.isfinite(r.error) else None,
                    "note": r.note or _default_note(r.error),
                }
                | (
                    {"low": _finite_or_none(r.low), "high": _finite_or_none(r.high)}
                    if self.trials > 1
                    else {}
                )
                for r in self.rows
            ],
            "notes": list(self.notes),
        }


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _default_note(error: float) -> str:
    if math.isnan(error):
        return "inputs not representable"
    if math.isinf(error):
        return "overflow or NaN"
    return ""


def sizes_up_to(largest: int) -> tuple[int, ...]:
    """4, 16, 64, … (powers of 4) up to ``largest``, and ``largest`` itself."""
    out, m = [], 4
    while m <= largest:
        out.append(m)
        m *= 4
    if not out or out[-1] != largest:
        out.append(largest)
    return tuple(sorted(set(out)))


@functools.cache
def _forms() -> tuple[Any, ...]:
    from bnderive.read.catalogue import find_form

    return tuple(find_form(name) for name in FORMS)


@functools.cache
def emitted_backward(target: str) -> Callable[..., Any]:
    """The verified kernel ``bnderive emit`` writes from the compact form (PER_ACTIVATION),
    loaded: its ``backward(dout, x, gamma, eps)``."""
    from bnderive.core.spec import Mode
    from bnderive.emit.emitter import emit
    from bnderive.emit.verification import load_module
    from bnderive.read.catalogue import find_form

    emitted = emit(find_form(KERNEL_FORM), Mode.PER_ACTIVATION, target=target)
    return load_module(emitted.source, f"bnderive_stability_{target}")["backward"]


def _inputs(
    dtype: str, mean: float, m: int, spread: float, seed: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """x = mean + spread·z and g, rounded to ``dtype`` (None when x does not fit in it)."""
    rng = np.random.default_rng([seed, m])  # the same z at every mean: only the mean moves
    z = rng.standard_normal(m)
    g = rng.standard_normal(m)
    with np.errstate(over="ignore"):
        x = (mean + spread * z).astype(dtype)
    if not np.all(np.isfinite(x)):
        return None
    return x, g.astype(dtype)


def measure_point(
    sweep: str,
    dtype: str,
    mean: float,
    m: int,
    spread: float,
    seed: int,
    kernels: Sequence[str] = ("numpy",),
    trials: int = 1,
) -> list[Row]:
    """Every candidate's rows at one point (mean, M) in one dtype: one draw of the inputs
    (``seed``), or the median of ``trials`` draws (seeds ``seed`` … ``seed + trials − 1``)
    with the smallest and largest error."""
    draws = [_measure_draw(sweep, dtype, mean, m, spread, seed + t, kernels) for t in range(trials)]
    if trials == 1:
        return draws[0]
    return [_median_row([draw[k] for draw in draws]) for k in range(len(draws[0]))]


def _median_row(rows: Sequence[Row]) -> Row:
    """One candidate's draws at one point as one row: the median error, its range.  A draw
    whose inputs do not fit the dtype (NaN) makes the point not measured."""
    errors = [r.error for r in rows]
    first = rows[0]
    if any(math.isnan(e) for e in errors):
        note = next(r.note for r in rows if math.isnan(r.error))
        return Row(first.sweep, first.dtype, first.mean, first.m, first.candidate,
                   first.quantity, math.nan, note, math.nan, math.nan)  # fmt: skip
    median = statistics.median(sorted(errors))  # an overflow (inf) counts as the largest
    notes = sorted({r.note for r in rows if r.note})
    note = ", ".join(f"{n} in {sum(r.note == n for r in rows)} of {len(rows)} draws" for n in notes)
    return Row(first.sweep, first.dtype, first.mean, first.m, first.candidate, first.quantity,
               median, note, min(errors), max(errors))  # fmt: skip


def _measure_draw(
    sweep: str,
    dtype: str,
    mean: float,
    m: int,
    spread: float,
    seed: int,
    kernels: Sequence[str] = ("numpy",),
) -> list[Row]:
    """Every candidate's rows at one point (mean, M) in one dtype, one draw of the inputs."""
    names = [*FORMS, *(f"emitted {k}" for k in kernels), ONE_PASS, TWO_PASS]
    quantity = {ONE_PASS: "var", TWO_PASS: "var"}
    drawn = _inputs(dtype, mean, m, spread, seed)
    if drawn is None:
        note = f"x = {mean:g} ± {spread:g} overflows {dtype}"
        return [Row(sweep, dtype, mean, m, n, quantity.get(n, "dx"), math.nan, note) for n in names]
    x, g = drawn
    kind = np.dtype(dtype).type
    gamma, eps = kind(GAMMA), kind(EPS)
    reference = exact_dx(x, g, gamma, eps)
    ev = forward(x, g, gamma, eps, dtype)
    rows = [
        Row(sweep, dtype, mean, m, form.name, "dx", relative_error(form_dx(form, ev), reference))
        for form in _forms()
    ]
    for target in kernels:
        name = f"emitted {target}"
        if target == "numba" and dtype == "float16":
            rows.append(Row(sweep, dtype, mean, m, name, "dx", math.nan, "numba has no float16"))
            continue
        got = kernel_dx(emitted_backward(target), x, g, gamma, eps, np.dtype(dtype))
        rows.append(Row(sweep, dtype, mean, m, name, "dx", relative_error(got, reference)))
    _, var = exact_statistics(x)
    exact_var = float(var)
    for name, method in ((ONE_PASS, one_pass_variance), (TWO_PASS, two_pass_variance)):
        got = float(method(x))
        if not math.isfinite(got):
            error = math.inf
        elif exact_var == 0:
            error = 0.0 if got == 0 else math.inf
        else:
            error = abs(got - exact_var) / exact_var
        note = "negative" if got < 0 else ""
        rows.append(Row(sweep, dtype, mean, m, name, "var", error, note))
    return rows


def study(
    dtypes: Sequence[str] = ("float32",),
    *,
    m: int = 256,
    max_m: int = 4096,
    size_mean: float = 1e3,
    spread: float = 1.0,
    seed: int = 0,
    numba: bool = False,
    means: Sequence[float] = MEANS,
    trials: int = 1,
) -> StabilityStudy:
    """Measure the study: the mean sweep at M = ``m``, the M sweep (4, 16, … ``max_m``) at mean
    ``size_mean``, in each of ``dtypes``; ``numba`` adds the emitted numba kernel (compiling
    it takes tens of seconds).  Each point is one draw of the inputs (``seed``), or with
    ``trials`` N the median of N draws (seeds ``seed`` … ``seed + N − 1``; each row keeps the
    range): the ratios between candidates change from draw to draw.  The caps on ``m`` and
    ``max_m`` are the caller's (``core.limits.STABILITY_M``)."""
    for dtype in dtypes:
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}: one of {', '.join(DTYPES)}")
    if trials < 1:
        raise ValueError("trials must be at least 1")
    kernels = ("numpy", "numba") if numba else ("numpy",)
    sizes = sizes_up_to(max_m)
    rows: list[Row] = []
    for dtype in dtypes:
        for mean in means:
            rows += measure_point("mean", dtype, float(mean), m, spread, seed, kernels, trials)
        for size in sizes:
            rows += measure_point("M", dtype, float(size_mean), size, spread, seed, kernels, trials)
    candidates = (*FORMS, *(f"emitted {k}" for k in kernels), ONE_PASS, TWO_PASS)
    draws = (
        f"each point is one draw of the inputs (seed {seed}): the errors, and which candidate "
        "is the most accurate, change from draw to draw (bnderive stability --trials N: the "
        "median of N draws)"
        if trials == 1
        else f"each point is the median of {trials} draws of the inputs (seeds {seed} to "
        f"{seed + trials - 1}); the smallest and largest error of each point are in the JSON"
    )
    notes = (
        "inputs x = mean + spread·z, g: standard normal (seeded), rounded to the dtype; "
        f"γ = {GAMMA:g}, ε = {EPS:g} in the dtype",
        draws,
        "reference: the exact ∂L/∂x and σ² at the same rounded inputs (rationals; 1/√(σ²+ε) "
        "to 128 bits)",
        "NumPy computes in the dtype (its sums are pairwise); the emitted kernels are those "
        f"bnderive emit writes from the {KERNEL_FORM} form, verified",
    )
    return StabilityStudy(
        tuple(dtypes),
        candidates,
        tuple(float(v) for v in means),
        sizes,
        m,
        float(size_mean),
        float(spread),
        GAMMA,
        EPS,
        seed,
        tuple(rows),
        notes,
        trials,
    )
