"""How fast is the code ``bnderive emit`` writes, next to hand-written NumPy and PyTorch?

    python benchmarks/bench_emit.py            # (32,64,56,56) and (4096,1024) float32, ~1 min
    python benchmarks/bench_emit.py --quick    # small shapes (CI smoke run)

Timed in one process, interleaved round by round in a rotating order (the machine is shared
and noisy), medians:

* emitted: ``backward_cached`` of the module emitted from the compact form (and from the staged
  form), from the cache (x − μ, μ, inv_std) that its ``forward`` returns; and ``backward`` from
  x, which recomputes μ, x − μ and σ² first;
* staged hand NumPy (CS231n's batchnorm_backward: dx̂, dσ², dμ, dx) from the same cache;
* compact hand NumPy (dβ, dγ, then dx = γ·inv_std·(dout − (dβ + x̂·dγ)/M));
* best hand NumPy: per-channel coefficients dx = c1·dout + c2·x + c3 with einsum reductions,
  Σ dout·(x − μ) taken as Σ dout·x − μ·Σ dout (no centred pass; less accurate at large means);
* PyTorch CPU backward, ``torch.ops.aten.native_batch_norm_backward`` (when installed; it uses
  torch's own thread pool, NumPy here runs on one thread);
* the memory-bandwidth bound: 3 passes over the array (read dout, read x, write dx) at the copy
  bandwidth measured in the same run (a preallocated copy moves 2 arrays: bound = 1.5 × copy).

Allocation: every candidate allocates its outputs and temporaries on each call, as a framework
call would. Arrays above glibc's mmap threshold come back from the kernel on every call and
page-fault on first touch; the run measures that tax (a fresh ``np.empty`` + fill against a fill
of a preallocated array) and prints it, so that the ratios can be read with it in mind.

Each candidate's float32 dx and dγ are compared with a float64 reference; the script exits 1 only
if one is wrong (relative error above 1e-2), never because of timing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bnderive.emit import emit, load_module
from bnderive.forms import find_form
from bnderive.spec import Mode

try:
    import torch
except ImportError:  # PyTorch is optional
    torch = None

TARGET_BEST = 1.3  # emitted ≤ 1.3 × best hand NumPy
TARGET_STAGED = 2.5  # emitted ≥ 2.5 × faster than the staged form


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


def torch_backward(tensors: dict[str, Any]) -> Callable[[], Any]:
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
def interleaved(candidates: dict[str, Callable[[], Any]], rounds: int) -> dict[str, float]:
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
    return {name: statistics.median(t) for name, t in times.items()}


def bench_shape(shape: tuple[int, ...], rounds: int) -> bool:
    mode = Mode.PER_ACTIVATION if len(shape) == 2 else Mode.SPATIAL
    rng = np.random.default_rng(0)
    c = shape[1]
    x = (5 + 2 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)
    dout = rng.standard_normal(shape, dtype=np.float32)
    gamma = rng.uniform(0.5, 2.0, c).astype(np.float32)
    beta = rng.standard_normal(c).astype(np.float32)
    eps = 1e-5
    compact = load_module(emit(find_form("compact"), mode).source)
    staged = load_module(emit(find_form("staged"), mode).source)
    _, cache = compact["forward"](x, gamma, beta, eps)
    xmu, mu, inv_std = cache
    args = (dout, x, xmu, mu, inv_std, gamma)

    candidates: dict[str, Callable[[], Any]] = {
        "emitted compact, cached": lambda: compact["backward_cached"](dout, cache, gamma),
        "emitted staged, cached": lambda: staged["backward_cached"](dout, cache, gamma),
        "emitted compact, from x": lambda: compact["backward"](dout, x, gamma, eps),
        "staged hand": lambda: staged_hand(*args),
        "compact hand": lambda: compact_hand(*args),
        "best hand": lambda: best_hand(*args),
    }
    if torch is not None:
        tensors = {
            "dout": torch.from_numpy(dout),
            "x": torch.from_numpy(x),
            "gamma": torch.from_numpy(gamma),
            "mu": torch.from_numpy(mu.reshape(-1).copy()),
            "inv_std": torch.from_numpy(inv_std.reshape(-1).copy()),
        }
        candidates["PyTorch CPU"] = torch_backward(tensors)

    # Accuracy against float64 (the emitted compact module in float64 is proven code).
    x64, dout64 = x.astype(np.float64), dout.astype(np.float64)
    ref_dx, ref_dgamma, _ = compact["backward"](dout64, x64, gamma.astype(np.float64), eps)
    ok = True
    errors: dict[str, tuple[float, float]] = {}
    for name, fn in candidates.items():
        dx, dgamma, _ = (np.asarray(v) for v in fn())
        e_dx = float(np.max(np.abs(dx - ref_dx)) / np.max(np.abs(ref_dx)))
        e_dg = float(np.max(np.abs(dgamma.reshape(-1) - ref_dgamma)) / np.max(np.abs(ref_dgamma)))
        errors[name] = (e_dx, e_dg)
        if not (e_dx < 1e-2 and e_dg < 1e-2):
            ok = False

    # The bound and the allocator's tax, in the same rounds.
    out = np.empty_like(x)
    candidates["copy (preallocated)"] = lambda: np.copyto(out, x)

    def fresh_fill() -> None:
        np.empty_like(x).fill(1)

    candidates["fresh array + fill"] = fresh_fill
    candidates["preallocated fill"] = lambda: out.fill(1)
    t = interleaved(candidates, rounds)
    bound = 1.5 * t["copy (preallocated)"]

    mib = x.nbytes / 2**20
    print(f"\n{mode.value} {shape} float32 ({mib:.0f} MiB per array), {rounds} rounds, medians")
    print(
        f"{'candidate':28} {'ms':>8} {'× bound':>8} {'× best':>8} {'× torch':>8}  dx err   dγ err"
    )
    best = t["best hand"]
    ref_torch = t.get("PyTorch CPU")
    for name in list(errors):
        ms = t[name] * 1e3
        vs_torch = f"{t[name] / ref_torch:8.2f}" if ref_torch else f"{'-':>8}"
        e_dx, e_dg = errors[name]
        print(
            f"{name:28} {ms:8.2f} {t[name] / bound:8.2f} {t[name] / best:8.2f} {vs_torch}"
            f"  {e_dx:.1e}  {e_dg:.1e}"
        )
    print(f"{'3-pass bound':28} {bound * 1e3:8.2f} {1:8.2f} {bound / best:8.2f}")
    tax = t["fresh array + fill"] - t["preallocated fill"]
    print(
        f"allocator: a fresh {mib:.0f} MiB array costs {tax * 1e3:.2f} ms more than a "
        f"preallocated one (page faults); every candidate allocates dx and its temporaries."
    )
    emitted = t["emitted compact, cached"]
    print(
        f"targets: emitted/best hand = {emitted / best:.2f} (≤ {TARGET_BEST}: "
        f"{'met' if emitted / best <= TARGET_BEST else 'MISSED'}); "
        f"staged hand/emitted = {t['staged hand'] / emitted:.2f} (≥ {TARGET_STAGED}: "
        f"{'met' if t['staged hand'] / emitted >= TARGET_STAGED else 'MISSED'})"
    )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, few rounds")
    parser.add_argument("--rounds", type=int, default=None, help="timing rounds (default 25)")
    args = parser.parse_args()
    shapes = [(4, 8, 16, 16), (256, 64)] if args.quick else [(32, 64, 56, 56), (4096, 1024)]
    rounds = args.rounds or (5 if args.quick else 25)
    if torch is None:
        print("PyTorch is not installed: its column is left out.")
    else:
        print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads; NumPy 1 thread")
    ok = all([bench_shape(s, rounds) for s in shapes])
    if not ok:
        print("a candidate's dx or dγ is wrong (relative error ≥ 1e-2)", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
