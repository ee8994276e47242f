"""How fast is the code ``bnderive emit`` writes, next to hand-written NumPy and PyTorch?

    python benchmarks/bench_emit.py                # the default shapes of `bnderive bench`, float32
    python benchmarks/bench_emit.py --dtype both   # float32, then float64, in one run
    python benchmarks/bench_emit.py --quick        # small shapes (CI smoke run)

Timed in one run, interleaved round by round in a rotating order (the machine is shared
and noisy), medians:

* emitted: ``backward_cached`` of the module emitted from the compact form (and from the staged
  form), from the cache (x − μ, μ, inv_std) that its ``forward`` returns; and ``backward`` from
  x, which recomputes μ, x − μ and σ² first;
* staged hand NumPy (CS231n's batchnorm_backward: dx̂, dσ², dμ, dx) from the same cache;
* compact hand NumPy (dβ, dγ, then dx = γ·inv_std·(dout − (dβ + x̂·dγ)/M));
* best hand NumPy: per-channel coefficients dx = c1·dout + c2·x + c3 with einsum reductions,
  Σ dout·(x − μ) taken as Σ dout·x − μ·Σ dout (no centred pass; less accurate at large means);
* the emitted numba kernel (``bnderive emit --target numba``) when numba is installed;
* PyTorch CPU backward, ``torch.ops.aten.native_batch_norm_backward`` (when installed), timed in
  a child process with its own thread pool, one call per round interleaved with the rest over a
  pipe, so that PyTorch's and numba's thread pools never share the cores (in one process each
  inflated the other); NumPy here runs on one thread;
* the memory-bandwidth bound: 3 passes over the array (read dout, read x, write dx) at the copy
  bandwidth measured in the same run (a preallocated copy moves 2 arrays: bound = 1.5 × copy).

Allocation: every candidate allocates its outputs and temporaries on each call, as a framework
call would. Arrays above glibc's mmap threshold come back from the kernel on every call and
page-fault on first touch; the run measures that tax (a fresh ``np.empty`` + fill against a fill
of a preallocated array) and prints it, so that the ratios can be read with it in mind.

The timing itself lives in ``bnderive.bench`` (also behind ``bnderive bench``); this script adds
the issue's targets. Each candidate's float32 dx and dγ are compared with a float64 reference; the script exits 1 only
if one is wrong (relative error above 1e-2), never because of timing.
"""

from __future__ import annotations

import argparse
import sys

from bnderive.emit.bench import (
    DEFAULT_SHAPES,
    EMITTED,
    NUMBA,
    TORCH,
    TorchChild,
    bench_shape,
    numba_info,
    start_torch_child,
)

TARGET_BEST = 1.3  # emitted ≤ 1.3 × best hand NumPy
TARGET_STAGED = 2.5  # emitted ≥ 2.5 × faster than the staged form
TARGET_NUMBA_TORCH = 1.0  # emitted numba ≤ 1.0 × PyTorch CPU
TARGET_NUMBA_BOUND = 2.0  # emitted numba ≤ 2 × the 3-pass bound


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def report(shape: tuple[int, ...], dtype: str, rounds: int, child: TorchChild | None) -> bool:
    result = bench_shape(shape, dtype, rounds, torch_child=child)
    print(
        f"\n{result.mode.value} {shape} {dtype} ({result.mib:.0f} MiB per array), "
        f"{rounds} rounds, medians"
    )
    print(
        f"{'candidate':28} {'ms':>8} {'× bound':>8} {'× best':>8} {'× torch':>8}  dx err   dγ err"
    )
    best = result.seconds("best hand")
    ref_torch = result.seconds(TORCH)
    for row in result.rows:
        vs_torch = f"{row.seconds / ref_torch:8.2f}" if ref_torch else f"{'-':>8}"
        print(
            f"{row.name:28} {row.seconds * 1e3:8.2f} {row.seconds / result.bound:8.2f} "
            f"{row.seconds / best:8.2f} {vs_torch}  {row.dx_error:.1e}  {row.dgamma_error:.1e}"
        )
    print(f"{'3-pass bound':28} {result.bound * 1e3:8.2f} {1:8.2f} {result.bound / best:8.2f}")
    print(
        f"allocator: a fresh {result.mib:.0f} MiB array costs {result.allocator_tax * 1e3:.2f} ms "
        "more than a preallocated one (page faults); every candidate allocates dx and its "
        "temporaries."
    )
    for note in result.notes:
        print(f"note: {note}")
    emitted = result.seconds(EMITTED)
    staged = result.seconds("staged hand")
    print(
        f"targets: emitted/best hand = {emitted / best:.2f} (≤ {TARGET_BEST}: "
        f"{verdict(emitted / best <= TARGET_BEST)}); staged hand/emitted = {staged / emitted:.2f} "
        f"(≥ {TARGET_STAGED}: {verdict(staged / emitted >= TARGET_STAGED)})"
    )
    kernel = result.seconds(NUMBA)
    if kernel is not None:
        line = (
            f"targets: numba/bound = {kernel / result.bound:.2f} (≤ {TARGET_NUMBA_BOUND}: "
            f"{verdict(kernel / result.bound <= TARGET_NUMBA_BOUND)})"
        )
        if ref_torch:
            line += (
                f"; numba/PyTorch = {kernel / ref_torch:.2f} (≤ {TARGET_NUMBA_TORCH}: "
                f"{verdict(kernel / ref_torch <= TARGET_NUMBA_TORCH)})"
            )
        print(line)
    return result.ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, few rounds")
    parser.add_argument("--rounds", type=int, default=None, help="timing rounds (default 25)")
    parser.add_argument(
        "--dtype", choices=["float32", "float64", "both"], default="float32", help="default float32"
    )
    parser.add_argument(
        "--torch-threads", type=int, default=None, help="PyTorch's threads (default: its own)"
    )
    args = parser.parse_args()
    shapes = [(4, 8, 16, 16), (256, 64)] if args.quick else list(DEFAULT_SHAPES)
    rounds = args.rounds or (5 if args.quick else 25)
    dtypes = ["float32", "float64"] if args.dtype == "both" else [args.dtype]
    child, why = start_torch_child(args.torch_threads)
    if child is None:
        print(f"{why}.")
    else:
        print(
            f"PyTorch {child.version}, {child.threads} thread(s), in a child process; "
            f"{numba_info()}; NumPy 1 thread"
        )
    try:
        ok = all([report(s, dtype, rounds, child) for dtype in dtypes for s in shapes])
    finally:
        if child is not None:
            child.close()
    if not ok:
        print("a candidate's dx or dγ is wrong (relative error ≥ 1e-2)", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
