"""Timing the emitted BatchNorm backward against hand-written NumPy, numba and PyTorch CPU.

Used by ``bnderive bench`` and ``benchmarks/bench_emit.py``. Everything is timed in one run,
interleaved round by round in a rotating order (the machine is shared and noisy); medians are
reported with ratios to the memory-bandwidth bound measured in the same run (3 passes over the
array: read dout, read x, write dx, at the bandwidth of a preallocated copy, which moves 2 arrays:
bound = 1.5 × copy) and to PyTorch.

PyTorch runs in a child process (:class:`TorchChild`): its OpenMP pool and numba's would share
the cores in one process and each inflates the other's time. The child builds the same inputs
from the same seed and dtype, takes μ and 1/√(σ²+ε) from the parent, checks its dx and dγ against
the same float64 reference, and times one call per round when the parent asks, so that its row
is interleaved with the others and follows the same median protocol; the parent is idle (blocked
on the pipe) while the child's call runs. PyTorch stays optional: without it there is no child.

Allocation: every candidate allocates its outputs and temporaries on each call, as a framework
call would. Arrays above glibc's mmap threshold come back from the kernel on every call and
page-fault on first touch; the run measures that tax (a fresh ``np.empty`` + fill against a fill
of a preallocated array) so that the ratios can be read with it in mind.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from bnderive.core.spec import Mode
from bnderive.emit.emitter import emit
from bnderive.emit.verification import load_module
from bnderive.read.catalogue import find_form

DEFAULT_SHAPES: tuple[tuple[int, ...], ...] = ((32, 64, 56, 56), (256, 256, 14, 14), (4096, 1024))
COPY = "copy (preallocated)"
FRESH = "fresh array + fill"
FILL = "preallocated fill"


def torch_installed() -> bool:
    """Is PyTorch importable? (Without importing it here: it runs in a child process.)"""
    return importlib.util.find_spec("torch") is not None


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
class SelfTimed:
    """A candidate timed elsewhere (in a child process): calling it returns the seconds of one
    call, measured there around the call alone, as the parent measures its own candidates."""

    def __init__(self, run: Callable[[], float]) -> None:
        self.run = run

    def __call__(self) -> float:
        return self.run()


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
            fn = candidates[name]
            if isinstance(fn, SelfTimed):
                times[name].append(fn())
                continue
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
        if tick is not None:
            tick()
    return {name: statistics.median(t) for name, t in times.items()}


# -- the inputs, the same in the parent and in the PyTorch child -----------------------------------
@dataclass(frozen=True)
class Inputs:
    x: np.ndarray
    dout: np.ndarray
    gamma: np.ndarray
    beta: np.ndarray
    eps: float = 1e-5


def make_inputs(shape: tuple[int, ...], dtype: str = "float32", seed: int = 0) -> Inputs:
    """x with mean 5 and scale 2, a non-uniform dout, γ ≠ 1: deterministic in the seed."""
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = (5 + 2 * rng.standard_normal(shape)).astype(dtype)
    dout = rng.standard_normal(shape).astype(dtype)
    gamma = rng.uniform(0.5, 2.0, c).astype(dtype)
    beta = rng.standard_normal(c).astype(dtype)
    return Inputs(x, dout, gamma, beta)


def reference(inputs: Inputs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dx, dγ, dβ in float64 by the verified module emitted from the compact form."""
    module = load_module(emit(find_form("compact"), mode_of(inputs.x.shape)).source)
    return module["backward"](
        inputs.dout.astype(np.float64),
        inputs.x.astype(np.float64),
        inputs.gamma.astype(np.float64),
        inputs.eps,
    )


def relative_errors(
    got: tuple[Any, Any, Any], want: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> tuple[float, float]:
    """max |dx − ref| / max |ref| and the same for dγ."""
    errors = []
    for value, ref in ((got[0], want[0]), (got[1], want[1])):
        scale = max(float(np.max(np.abs(ref))), np.finfo(np.float64).tiny)
        value = np.asarray(value, dtype=np.float64).reshape(ref.shape)
        errors.append(float(np.max(np.abs(value - ref)) / scale))
    return errors[0], errors[1]


# -- PyTorch in a child process -----------------------------------------------------------------------
class TorchChildError(RuntimeError):
    """The PyTorch child could not start or answer."""


class TorchChild:
    """PyTorch CPU's backward timed in a child process, one call per request.

    The protocol is one JSON object per line: the child says hello (torch version, threads),
    then answers ``threads`` (torch.set_num_threads; replies with the count), ``setup`` (inputs from shape, dtype and seed, with the parent's μ and inv_std;
    replies with the dx and dγ errors against the float64 reference) and ``time`` (the seconds
    of one call); ``quit`` or end of input ends it.
    """

    #: The child's command after the interpreter (it imports this bnderive: see PYTHONPATH).
    COMMAND = ("-c", "from bnderive.emit.bench import torch_child_main; torch_child_main()")

    def __init__(self, command: list[str] | None = None, threads: int | None = None) -> None:
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self._stderr = tempfile.TemporaryFile()
        self._process = subprocess.Popen(
            command or [sys.executable, *self.COMMAND],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=env,
        )
        try:
            hello = self._receive()
            self.version: str = hello["torch"]
            self.threads: int = hello["threads"]
            if threads is not None:
                self.threads = self._ask(cmd="threads", n=threads)["threads"]
        except Exception:
            self.close()
            raise

    #: Seconds to wait for one answer (importing torch, setting up a large shape) before
    #: the child is given up on: a hung child must not hang the benchmark.
    TIMEOUT = 600.0

    def _receive(self) -> dict[str, Any]:
        assert self._process.stdout is not None
        # One request is answered by one line, flushed: select on the pipe sees it arrive.
        ready, _, _ = select.select([self._process.stdout], [], [], self.TIMEOUT)
        if not ready:
            self._process.kill()
            self._process.wait()
            raise TorchChildError(f"the PyTorch child did not answer within {self.TIMEOUT:g} s")
        line = self._process.stdout.readline()
        if not line:
            self._process.wait()
            self._stderr.seek(0)
            detail = self._stderr.read().decode(errors="replace").strip().splitlines()
            raise TorchChildError(
                f"the PyTorch child exited ({self._process.returncode}): "
                + (detail[-1] if detail else "no message")
            )
        reply = json.loads(line)
        if "error" in reply:
            raise TorchChildError(f"the PyTorch child failed: {reply['error']}")
        return reply

    def _ask(self, **request: Any) -> dict[str, Any]:
        assert self._process.stdin is not None
        try:
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.flush()
        except BrokenPipeError:
            pass  # _receive reports why
        return self._receive()

    def setup(
        self, shape: tuple[int, ...], dtype: str, seed: int, mu: np.ndarray, inv_std: np.ndarray
    ) -> tuple[float, float]:
        reply = self._ask(
            cmd="setup",
            shape=list(shape),
            dtype=dtype,
            seed=seed,
            mu=[float(v) for v in mu.reshape(-1)],
            inv_std=[float(v) for v in inv_std.reshape(-1)],
        )
        return reply["dx_error"], reply["dgamma_error"]

    def time_one(self) -> float:
        return float(self._ask(cmd="time")["seconds"])

    def close(self) -> None:
        """Ask the child to quit and wait for it (kill it if it does not)."""
        if self._process.poll() is None:
            assert self._process.stdin is not None
            try:
                self._process.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self._process.stdin.close()
            except BrokenPipeError:
                pass
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        for stream in (self._process.stdin, self._process.stdout, self._stderr):
            if stream is not None and not stream.closed:
                stream.close()

    def __enter__(self) -> TorchChild:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def torch_child_main(stdin: IO[str] | None = None, stdout: IO[str] | None = None) -> None:
    """The child's loop (see :class:`TorchChild`). Nothing else may write to stdout."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout

    def send(**reply: Any) -> None:
        stdout.write(json.dumps(reply) + "\n")
        stdout.flush()

    try:
        import torch
    except ImportError as exc:
        send(error=f"cannot import torch: {exc}")
        return
    send(torch=torch.__version__, threads=torch.get_num_threads())
    run: Callable[[], Any] | None = None
    for line in stdin:
        request = json.loads(line)
        try:
            if request["cmd"] == "quit":
                return
            if request["cmd"] == "threads":
                torch.set_num_threads(int(request["n"]))
                send(threads=torch.get_num_threads())
            elif request["cmd"] == "setup":
                shape = tuple(request["shape"])
                inputs = make_inputs(shape, request["dtype"], request["seed"])
                dtype = inputs.x.dtype
                tensors = {
                    "dout": torch.from_numpy(inputs.dout),
                    "x": torch.from_numpy(inputs.x),
                    "gamma": torch.from_numpy(inputs.gamma),
                    "mu": torch.from_numpy(np.array(request["mu"], dtype=dtype)),
                    "inv_std": torch.from_numpy(np.array(request["inv_std"], dtype=dtype)),
                }
                run = torch_backward(torch, tensors)
                got = tuple(t.numpy() for t in run())
                dx_error, dgamma_error = relative_errors(got, reference(inputs))
                run()  # warm-up
                send(dx_error=dx_error, dgamma_error=dgamma_error)
            elif request["cmd"] == "time":
                if run is None:
                    raise RuntimeError("time before setup")
                t0 = time.perf_counter()
                run()
                send(seconds=time.perf_counter() - t0)
            else:
                raise RuntimeError(f"unknown request {request['cmd']!r}")
        except Exception as exc:  # reported to the parent, which raises TorchChildError
            send(error=f"{type(exc).__name__}: {exc}")


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


@functools.cache
def numba_backward(mode: Mode) -> Callable[..., Any] | None:
    """The verified numba kernel's ``backward_cached`` for ``mode``, or None without numba
    (emitted, verified and compiled once per process: every shape of the mode shares it)."""
    from bnderive.emit.numba_module import numba_available

    if not numba_available():
        return None
    module = load_module(emit(find_form("compact"), mode, target="numba").source, "bn_numba")
    return module["backward_cached"]


@dataclass
class Candidates:
    """What one shape times: the candidates, the inputs they share, errors already known (the
    PyTorch child checks its own), and notes on what was left out or how it was timed."""

    timed: dict[str, Callable[[], Any]]
    inputs: Inputs
    known_errors: dict[str, tuple[float, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def torch_note(child: TorchChild) -> str:
    return (
        f"PyTorch {child.version} is timed in a child process with its own thread pool "
        f"({child.threads} thread{'' if child.threads == 1 else 's'}), one call per round "
        "interleaved with the other candidates "
        "(this process idles meanwhile): numba's and PyTorch's pools never share the cores"
    )


def numba_info() -> str:
    """numba's version, threads and threading layer (once a parallel kernel has run)."""
    try:
        import numba
    except ImportError:
        return "numba is not installed"
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        layer = "not chosen yet"
    return f"numba {numba.__version__}, {numba.get_num_threads()} threads, threading layer {layer}"


def candidates_for(
    shape: tuple[int, ...],
    dtype: str = "float32",
    seed: int = 0,
    torch_child: TorchChild | None = None,
) -> Candidates:
    """The timed candidates on ``shape``; PyTorch's through ``torch_child`` when given."""
    mode = mode_of(shape)
    inputs = make_inputs(shape, dtype, seed)
    x, dout, gamma, eps = inputs.x, inputs.dout, inputs.gamma, inputs.eps
    compact = load_module(emit(find_form("compact"), mode).source)
    staged = load_module(emit(find_form("staged"), mode).source)
    _, cache = compact["forward"](x, gamma, inputs.beta, eps)
    xmu, mu, inv_std = cache
    args = (dout, x, xmu, mu, inv_std, gamma)
    result = Candidates(
        {
            EMITTED: lambda: compact["backward_cached"](dout, cache, gamma),
            "emitted staged, cached": lambda: staged["backward_cached"](dout, cache, gamma),
            "emitted compact, from x": lambda: compact["backward"](dout, x, gamma, eps),
            "staged hand": lambda: staged_hand(*args),
            "compact hand": lambda: compact_hand(*args),
            "best hand": lambda: best_hand(*args),
        },
        inputs,
    )
    kernel = numba_backward(mode)
    if kernel is None:
        result.notes.append("no numba row: numba is not installed (pip install 'bnderive[numba]')")
    else:
        kernel(dout, cache, gamma)  # compile for this dtype outside the timing
        result.timed[NUMBA] = lambda: kernel(dout, cache, gamma)
        result.notes.append(f"{numba_info()} (NUMBA_THREADING_LAYER chooses)")
    if torch_child is not None:
        try:
            result.known_errors[TORCH] = torch_child.setup(shape, dtype, seed, mu, inv_std)
        except TorchChildError as exc:  # e.g. the child died on an earlier shape
            result.notes.append(f"no PyTorch row: {exc}")
        else:
            result.timed[TORCH] = SelfTimed(torch_child.time_one)
            result.notes.append(torch_note(torch_child))

    out = np.empty_like(x)
    result.timed[COPY] = lambda: np.copyto(out, x)

    def fresh_fill() -> None:
        np.empty_like(x).fill(1)

    result.timed[FRESH] = fresh_fill
    result.timed[FILL] = lambda: out.fill(1)
    return result


def start_torch_child(threads: int | None = None) -> tuple[TorchChild | None, str]:
    """A PyTorch child (with ``threads`` intra-op threads, default PyTorch's own choice), or None
    and the reason (PyTorch missing, or it failed to start)."""
    if not torch_installed():
        return None, "PyTorch is not installed: no PyTorch row and no × PyTorch column"
    try:
        return TorchChild(threads=threads), ""
    except (TorchChildError, OSError) as exc:
        return None, f"no PyTorch row: {exc}"


def bench_shape(
    shape: tuple[int, ...],
    dtype: str = "float32",
    rounds: int = 25,
    tick: Callable[[], None] | None = None,
    torch_child: TorchChild | None | bool = True,
) -> ShapeResult:
    """Time every candidate on ``shape`` (and check its dx and dγ against float64).

    ``torch_child``: a running :class:`TorchChild` to time PyTorch in; True starts one for this
    shape (when PyTorch is installed) and stops it after; False or None leaves PyTorch out.
    """
    if torch_child is True:
        child, why = start_torch_child()
        try:
            result = bench_shape(shape, dtype, rounds, tick, child)
        finally:
            if child is not None:
                child.close()
        if why:
            result.notes.append(why)
        return result
    child = torch_child if isinstance(torch_child, TorchChild) else None
    candidates = candidates_for(shape, dtype, torch_child=child)
    want = reference(candidates.inputs)
    errors = dict(candidates.known_errors)
    for name, fn in candidates.timed.items():
        if name in (COPY, FRESH, FILL) or name in errors:
            continue
        errors[name] = relative_errors(fn(), want)
    try:
        t = interleaved(candidates.timed, rounds, tick)
    except TorchChildError as exc:  # the child died or hung mid-run: time the rest again
        del candidates.timed[TORCH], errors[TORCH]
        candidates.notes[:] = [n for n in candidates.notes if not n.startswith("PyTorch ")]
        candidates.notes.append(f"no PyTorch row: {exc}")
        t = interleaved(candidates.timed, rounds, tick)
    rows = [Row(name, t[name], *errors[name]) for name in candidates.timed if name in errors]
    return ShapeResult(
        shape=tuple(shape),
        dtype=dtype,
        mode=mode_of(shape),
        rounds=rounds,
        rows=rows,
        bound=1.5 * t[COPY],
        allocator_tax=t[FRESH] - t[FILL],
        notes=candidates.notes,
    )


def bench(
    shapes: Iterable[tuple[int, ...]] = DEFAULT_SHAPES,
    dtype: str = "float32",
    rounds: int = 25,
    tick_for: Callable[[tuple[int, ...]], Callable[[], None] | None] | None = None,
    torch: bool = True,
    torch_threads: int | None = None,
) -> list[ShapeResult]:
    """Every shape, with one PyTorch child for all of them (when ``torch`` and installed);
    ``tick_for(shape)`` gives the callback to advance once per round of that shape."""
    child, why = start_torch_child(torch_threads) if torch else (None, "")
    try:
        results = [
            bench_shape(shape, dtype, rounds, tick_for(shape) if tick_for else None, child)
            for shape in shapes
        ]
    finally:
        if child is not None:
            child.close()
    if why:
        for result in results:
            result.notes.append(why)
    return results


def parse_bench_shape(text: str) -> tuple[int, ...]:
    """'4096,1024' → (4096, 1024) PER_ACTIVATION; '32,64,56,56' → SPATIAL (N, C, H, W)."""
    from bnderive.errors import BnderiveError

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
