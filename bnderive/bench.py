"""Timing the emitted BatchNorm backward against hand-written NumPy, numba and PyTorch CPU.

Used by ``bnderive bench`` and ``benchmarks/bench_emit.py``. Everything is timed in one process,
interleaved round by round in a rotating order (the machine is shared and noisy); medians are
reported with ratios to the memory-bandwidth bound measured in the same run (3 passes over the
array: read dout, read x, write dx, at the bandwidth of a preallocated copy, which moves 2 arrays:
bound = 1.5 × copy) and to PyTorch.

Allocation: every candidate allocates its outputs and temporaries on each call, as a framework
call would. Arrays above glibc's mmap threshold come back from the kernel on every call and
page-fault on first touch; the run measures that tax (a fresh ``np.empty`` + fill against a fill
of a preallocated array) so that the ratios can be read with it in mind.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .emit import emit, load_module
from .forms import find_form
from .spec import Mode

DEFAULT_SHAPES: tuple[tuple[int, ...], ...] = ((32, 64, 56, 56), (256, 256, 14, 14), (4096, 1024))
COPY = "copy (preallocated)"
FRESH = "fresh array + fill"
FILL = "preallocated fill"


def torch_module() -> Any:
    try:
        import torch
    except ImportError:  # PyTorch is optional
        return None
    return torch


def mode_of(shape: tuple[int, ...]) -> Mode:
    if len(shape) == 2:
        return Mode.PER_ACTIVATION
    if len(shape) == 4:
        return Mode.SPATIAL
    raise ValueError(f"a shape has 2 (N,D) or 4 (N,C,H,W) sizes, not {len(shape)}")


def axes_of(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (0,) if len(shape) == 2 else (0, 2, 3)


def channel_view(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (1, -1) if len(shape) == 2 else (1, -1, 1, 1)


# -- hand-written NumPy, from the same cache ----------------------------------------------------
def staged_hand(dout, x, xmu, mu, inv_std, gamma):
    """CS231n's batchnorm_backward, step by step through the graph."""
    axes = axes_of(x.shape)
    m = x.size // gamma.size
    g = gamma.reshape(channel_view(x.shape))
    xhat = xmu * inv_std
    dxhat = dout * g
    dvar = np.sum(dxhat * xmu, axis=axes, keepdims=True) * -0.5 * inv_std**3
    dmu = np.sum(-dxhat * inv_std, axis=axes, keepdims=True) + dvar * np.mean(
        -2 * xmu, axis=axes, keepdims=True
    )
    dx = dxhat * inv_std + dvar * 2 * xmu / m + dmu / m
    dgamma = np.sum(dout * xhat, axis=axes)
    dbeta = np.sum(dout, axis=axes)
    return dx, dgamma, dbeta


def compact_hand(dout, x, xmu, mu, inv_std, gamma):
    """Two reductions, then dx = γ·inv_std·(dout − (dβ + x̂·dγ)/M)."""
    axes = axes_of(x.shape)
    m = x.size // gamma.size
    g = gamma.reshape(channel_view(x.shape))
    xhat = xmu * inv_std
    dbeta = np.sum(dout, axis=axes, keepdims=True)
    dgamma = np.sum(dout * xhat, axis=axes, keepdims=True)
    dx = g * inv_std * (dout - (dbeta + xhat * dgamma) / m)
    return dx, dgamma.reshape(-1), dbeta.reshape(-1)


def best_hand(dout, x, xmu, mu, inv_std, gamma):
    """Per-channel coefficients with einsum reductions over dout and x (not x − μ)."""
    view = channel_view(x.shape)
    m = x.size // gamma.size
    spec = "nd,nd->d" if x.ndim == 2 else "nchw,nchw->c"
    one = "nd->d" if x.ndim == 2 else "nchw->c"
    s = inv_std.reshape(-1)
    m_ = mu.reshape(-1)
    dbeta = np.einsum(one, dout)
    dgamma = (np.einsum(spec, dout, x) - m_ * dbeta) * s
    c1 = gamma * s
    c2 = -c1 * s * dgamma / m
    c3 = -c1 * dbeta / m - c2 * m_
    dx = dout * c1.reshape(view)
    dx += x * c2.reshape(view)
    dx += c3.reshape(view)
    return dx, dgamma, dbeta


def torch_backward(torch: Any, tensors: dict[str, Any]) -> Callable[[], Any]:
    op = torch.ops.aten.native_batch_norm_backward

    def run():
        return op(
            tensors["dout"],
            tensors["x"],
            tensors["gamma"],
            None,
            None,
            tensors["mu"],
            tensors["inv_std"],
            True,
            1e-5,
            [True, True, True],
        )

    return run


# -- timing ---------------------------------------------------------------------------------------
def interleaved(
    candidates: dict[str, Callable[[], Any]],
    rounds: int,
    tick: Callable[[], None] | None = None,
) -> dict[str, float]:
    """Median seconds per candidate; the order rotates every round."""
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for fn in candidates.values():  # warm-up
        fn()
    names = list(candidates)
    for r in range(rounds):
        # Rotate the order every round: no candidate always runs first, or after the same one.
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            candidates[name]()
            times[name].append(time.perf_counter() - t0)
        if tick is not None:
            tick()
    return {name: statistics.median(t) for name, t in times.items()}


@dataclass
class Row:
    name: str
    seconds: float
    dx_error: float
    dgamma_error: float

    @property
    def ok(self) -> bool:
        return self.dx_error < 1e-2 and self.dgamma_error < 1e-2


@dataclass
class ShapeResult:
    shape: tuple[int, ...]
    dtype: str
    mode: Mode
    rounds: int
    rows: list[Row]
    bound: float  # seconds: 1.5 × a preallocated copy
    allocator_tax: float  # seconds: fresh array + fill − preallocated fill
    notes: list[str] = field(default_factory=list)

    @property
    def mib(self) -> float:
        return float(np.prod(self.shape)) * np.dtype(self.dtype).itemsize / 2**20

    @property
    def ok(self) -> bool:
        return all(row.ok for row in self.rows)

    def seconds(self, name: str) -> float | None:
        return next((row.seconds for row in self.rows if row.name == name), None)


TORCH = "PyTorch CPU"
NUMBA = "emitted numba"
EMITTED = "emitted compact, cached"


def numba_backward(mode: Mode) -> Callable[..., Any] | None:
    """The verified numba kernel's ``backward_cached`` for ``mode``, or None without numba."""
    from .emit_numba import numba_available

    if not numba_available():
        return None
    module = load_module(emit(find_form("compact"), mode, target="numba").source, "bn_numba")
    return module["backward_cached"]


def candidates_for(
    shape: tuple[int, ...], dtype: str = "float32", seed: int = 0
) -> tuple[dict[str, Callable[[], Any]], Callable[[], tuple[Any, Any, Any]], list[str]]:
    """The timed candidates, a float64 reference, and notes on what was left out."""
    mode = mode_of(shape)
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = (5 + 2 * rng.standard_normal(shape)).astype(dtype)
    dout = rng.standard_normal(shape).astype(dtype)
    gamma = rng.uniform(0.5, 2.0, c).astype(dtype)
    beta = rng.standard_normal(c).astype(dtype)
    eps = 1e-5
    compact = load_module(emit(find_form("compact"), mode).source)
    staged = load_module(emit(find_form("staged"), mode).source)
    _, cache = compact["forward"](x, gamma, beta, eps)
    xmu, mu, inv_std = cache
    args = (dout, x, xmu, mu, inv_std, gamma)
    notes: list[str] = []
    candidates: dict[str, Callable[[], Any]] = {
        EMITTED: lambda: compact["backward_cached"](dout, cache, gamma),
        "emitted staged, cached": lambda: staged["backward_cached"](dout, cache, gamma),
        "emitted compact, from x": lambda: compact["backward"](dout, x, gamma, eps),
        "staged hand": lambda: staged_hand(*args),
        "compact hand": lambda: compact_hand(*args),
        "best hand": lambda: best_hand(*args),
    }
    kernel = numba_backward(mode)
    if kernel is None:
        notes.append("no numba row: numba is not installed (pip install 'bnderive[numba]')")
    else:
        kernel(dout, cache, gamma)  # compile for this dtype outside the timing
        candidates[NUMBA] = lambda: kernel(dout, cache, gamma)
    torch = torch_module()
    if torch is None:
        notes.append("PyTorch is not installed: no PyTorch row and no × PyTorch column")
    else:
        tensors = {
            "dout": torch.from_numpy(dout),
            "x": torch.from_numpy(x),
            "gamma": torch.from_numpy(gamma),
            "mu": torch.from_numpy(mu.reshape(-1).copy()),
            "inv_std": torch.from_numpy(inv_std.reshape(-1).copy()),
        }
        candidates[TORCH] = torch_backward(torch, tensors)
        if NUMBA in candidates:
            notes.append(
                "numba's and PyTorch's thread pools share the cores in one process: PyTorch's "
                "time is inflated in runs that include the numba kernel (on 2 cores, "
                "(32,64,56,56): 4.3 ms alone, 12-33 ms next to numba); read × PyTorch with that "
                "in mind"
            )

    def reference() -> tuple[Any, Any, Any]:
        return compact["backward"](
            dout.astype(np.float64), x.astype(np.float64), gamma.astype(np.float64), eps
        )

    out = np.empty_like(x)
    candidates[COPY] = lambda: np.copyto(out, x)

    def fresh_fill() -> None:
        np.empty_like(x).fill(1)

    candidates[FRESH] = fresh_fill
    candidates[FILL] = lambda: out.fill(1)
    return candidates, reference, notes


def bench_shape(
    shape: tuple[int, ...],
    dtype: str = "float32",
    rounds: int = 25,
    tick: Callable[[], None] | None = None,
) -> ShapeResult:
    """Time every candidate on ``shape`` (and check its dx and dγ against float64)."""
    candidates, reference, notes = candidates_for(shape, dtype)
    ref_dx, ref_dgamma, _ = reference()
    errors: dict[str, tuple[float, float]] = {}
    for name, fn in candidates.items():
        if name in (COPY, FRESH, FILL):
            continue
        dx, dgamma, _ = (np.asarray(v) for v in fn())
        scale_dx = max(float(np.max(np.abs(ref_dx))), np.finfo(np.float64).tiny)
        scale_dg = max(float(np.max(np.abs(ref_dgamma))), np.finfo(np.float64).tiny)
        errors[name] = (
            float(np.max(np.abs(dx - ref_dx)) / scale_dx),
            float(np.max(np.abs(dgamma.reshape(-1) - ref_dgamma)) / scale_dg),
        )
    t = interleaved(candidates, rounds, tick)
    rows = [Row(name, t[name], *errors[name]) for name in errors]
    return ShapeResult(
        shape=tuple(shape),
        dtype=dtype,
        mode=mode_of(shape),
        rounds=rounds,
        rows=rows,
        bound=1.5 * t[COPY],
        allocator_tax=t[FRESH] - t[FILL],
        notes=notes,
    )


def bench(
    shapes: Iterable[tuple[int, ...]] = DEFAULT_SHAPES,
    dtype: str = "float32",
    rounds: int = 25,
    tick: Callable[[], None] | None = None,
) -> list[ShapeResult]:
    return [bench_shape(shape, dtype, rounds, tick) for shape in shapes]


def parse_bench_shape(text: str) -> tuple[int, ...]:
    """'4096,1024' → (4096, 1024) PER_ACTIVATION; '32,64,56,56' → SPATIAL (N, C, H, W)."""
    from .errors import BnderiveError

    try:
        dims = tuple(int(v) for v in str(text).replace("x", ",").replace("×", ",").split(","))
    except ValueError:
        raise BnderiveError(
            f"Cannot read the shape {text!r}: write N,D or N,C,H,W, e.g. 32,64,56,56."
        ) from None
    if len(dims) not in (2, 4):
        raise BnderiveError(
            f"The shape {text!r} has {len(dims)} dimensions: give N,D (PER_ACTIVATION) or "
            "N,C,H,W (SPATIAL)."
        )
    per_channel = dims[0] * (dims[2] * dims[3] if len(dims) == 4 else 1)
    if min(dims) < 1 or per_channel < 2:
        raise BnderiveError(
            f"The shape {text!r} needs positive sizes and at least 2 elements per channel."
        )
    return dims
