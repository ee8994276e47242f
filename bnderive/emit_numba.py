"""The numba target of ``bnderive emit``: a fused two-pass kernel, printed from the same plan.

The backward is one ``@numba.njit(parallel=True)`` kernel over (N, C, S) views of the arrays
(SPATIAL: S = H·W, one channel per parallel task; PER_ACTIVATION: S = 1, blocks of features per
task so that every row is read contiguously). Pass 1 accumulates the form's per-channel
reductions; then the per-channel coefficients; pass 2 writes dx = c1·dout + c2·(x − μ) + c3.
Accumulators have the dtype ``np.result_type(dout.dtype, np.float64)``: float64 for float32 and
float64 input, ``object`` for exact rationals, so that the same source runs exactly in plain
Python (numba's ``njit`` replaced by the identity and ``prange`` by ``range``).
"""

from __future__ import annotations

import contextlib
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy as sp

from .emit import (
    C1,
    C2,
    C3,
    DBETA,
    DGAMMA,
    DOUT,
    DX,
    GAMMA,
    INV_STD,
    M_SYM,
    MU,
    VAR,
    XMU,
    Assign,
    EmitVerificationError,
    FunctionDef,
    Module,
    NumPyEmitter,
    Return,
    Update,
    _Plan,
    build_module,
    load_module,
    plan_backward,
)
from .errors import BnderiveError
from .forms import Form
from .spec import Mode

BLOCK = 256  # PER_ACTIVATION: features per parallel task


class NumbaMissingError(BnderiveError):
    """``--target numba`` without numba installed."""


def numba_available() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


# -- statement nodes of the kernel ----------------------------------------------------------------
@dataclass(frozen=True)
class Load:
    """``array[index]``."""

    array: str
    index: tuple[Any, ...]


@dataclass(frozen=True)
class Store:
    """``array[index] op= value`` (op "" for a plain store)."""

    array: str
    index: tuple[Any, ...]
    value: Any
    op: str = ""
    comment: str = ""


@dataclass(frozen=True)
class For:
    index: str
    start: Any
    stop: Any
    body: tuple[Any, ...]
    parallel: bool = False
    comment: str = ""


@dataclass(frozen=True)
class Kernel:
    """A function compiled by ``numba.njit(parallel=True)``."""

    function: FunctionDef


@dataclass(frozen=True)
class Call:
    function: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class Raw:
    """A Python expression the printer passes through (shapes, allocations)."""

    text: str


class NumbaEmitter(NumPyEmitter):
    """Prints the kernel nodes above; the arithmetic is NumPyEmitter's (exact, no floats)."""

    printmethod = "_bnderive_numba"

    def _print_Load(self, node: Load) -> str:
        return f"{node.array}[{', '.join(self._print(i) for i in node.index)}]"

    def _print_Store(self, node: Store) -> str:
        target = self._print(Load(node.array, node.index))
        line = f"{target} {node.op}= {self._print(node.value)}"
        return f"{line}  # {node.comment}" if node.comment else line

    def _print_For(self, node: For) -> str:
        loop = "numba.prange" if node.parallel else "range"
        start = "" if node.start == 0 else f"{self._print(node.start)}, "
        head = f"for {node.index} in {loop}({start}{self._print(node.stop)}):"
        if node.comment:
            head += f"  # {node.comment}"
        body = "\n".join(self._print(stmt) for stmt in node.body)
        return head + "\n" + "\n".join(f"    {line}" for line in body.splitlines())

    def _print_FunctionDef(self, node: FunctionDef) -> str:
        text = super()._print_FunctionDef(node)
        # Statements print on one or more lines (loops): indent every line of the body.
        head, _, _ = text.partition("\n    " + self._print(node.body[0]).splitlines()[0])
        body = "\n".join(self._print(stmt) for stmt in node.body)
        return head + "\n" + "\n".join(f"    {line}" for line in body.splitlines())

    def _print_Kernel(self, node: Kernel) -> str:
        return "@numba.njit(parallel=True, cache=False)\n" + self._print(node.function)

    def _print_Call(self, node: Call) -> str:
        return f"{node.function}({', '.join(self._print(a) for a in node.args)})"

    def _print_Raw(self, node: Raw) -> str:
        return node.text

    def _print_Module(self, node: Module) -> str:
        head = [f"# {line}".rstrip() for line in node.header]
        parts = ["\n".join(head), "import numba\nimport numpy as np"]
        parts += [self._print(f) for f in node.functions]
        return parts[0] + "\n\n" + "\n\n\n".join(parts[1:]) + "\n"


# -- from the plan to the kernel --------------------------------------------------------------------
def _kernel(plan: _Plan, mode: Mode, divisor: sp.Expr) -> tuple[Kernel, int]:
    """The fused kernel and the number of accumulator rows it needs."""
    dout_e, xmu_e = sp.symbols("dout_e xmu_e")
    at = ("i", "ch", "k")
    element = {DOUT: dout_e, XMU: xmu_e}
    sums = list(plan.reductions.items())
    if plan.needs_var:
        sums.append((sp.Symbol("sum_xmu2"), XMU**2))
    loads = [Assign(dout_e, Load("dout", at)), Assign(xmu_e, Load("xmu", at))]
    gamma_c, inv_std_c = sp.symbols("gamma_c inv_std_c")
    scalar = {GAMMA: gamma_c, INV_STD: inv_std_c}
    if plan.coefficients is None:
        raise EmitVerificationError("the numba target needs dx = c1·dout + c2·(x − μ) + c3")
    write = [*loads, Store("dx", at, C1 * dout_e + C2 * xmu_e + C3)]
    head = (
        Assign(tuple(sp.symbols("n c s")), Raw("dout.shape")),
        Assign(M_SYM, Raw("n * s"), "M: elements per channel"),
    )
    if mode is Mode.SPATIAL:
        # One channel per task, its H·W plane contiguous: scalar accumulators (registers).
        coefficients = [
            Assign(name, value.xreplace(scalar), "dx = c1·dout + c2·(x − μ) + c3" if i == 0 else "")
            for i, (name, value) in enumerate(zip((C1, C2, C3), plan.coefficients, strict=True))
        ]
        zero = [
            Assign(name, Load("sums", (r, "ch")), "0 in the accumulator dtype" if r == 0 else "")
            for r, (name, _) in enumerate(sums)
        ]
        add = [Update(name, "+", value.xreplace(element)) for name, value in sums]
        per_task = (
            *zero,
            For(
                "i",
                0,
                "n",
                (For("k", 0, "s", tuple(loads + add)),),
                comment="pass 1: the channel's reductions",
            ),
            Assign(gamma_c, Load("gamma", ("ch",))),
            Assign(inv_std_c, Load("inv_std", ("ch",))),
            *([Assign(VAR, sp.Symbol("sum_xmu2") / divisor)] if plan.needs_var else []),
            *(Assign(name, value.xreplace(scalar)) for name, value in plan.per_channel),
            *coefficients,
            Store("dgamma", ("ch",), plan.dgamma.xreplace(scalar)),
            Store("dbeta", ("ch",), plan.dbeta.xreplace(scalar)),
            For(
                "i",
                0,
                "n",
                (For("k", 0, "s", tuple(write)),),
                comment="pass 2: dx, elementwise",
            ),
        )
        body = (*head, For("ch", 0, "c", per_task, parallel=True, comment="channels in parallel"))
    else:
        body = (
            Assign(tuple(sp.symbols("n c")), Raw("dout.shape")),
            Assign(M_SYM, Raw("n"), "M: rows, elements per feature"),
            _feature_blocks(plan, sums, scalar, divisor),
        )
    params = ("dout", "xmu", "gamma", "inv_std", "block", "sums", "dx", "dgamma", "dbeta")
    doc = (
        "Fused backward, in place: pass 1 reduces, pass 2 writes dx.\n\n"
        "dout, xmu, dx: (N, C, H·W) views (SPATIAL) or (N, D) (PER_ACTIVATION); sums holds\n"
        "zeros of the accumulator dtype (float64, or object for exact rationals)."
    )
    return Kernel(FunctionDef("_backward_kernel", params, doc, body)), len(sums)


def _feature_blocks(
    plan: _Plan, sums: list[tuple[sp.Symbol, sp.Expr]], scalar: dict, divisor: sp.Expr
) -> For:
    """PER_ACTIVATION: blocks of features per task, every row read as a contiguous slice."""
    dout_e, xmu_e = sp.symbols("dout_e xmu_e")
    gamma_c, inv_std_c = scalar[GAMMA], scalar[INV_STD]
    element = {DOUT: dout_e, XMU: xmu_e}
    rows = (
        Assign(sp.Symbol("dout_r"), Load("dout", ("i", Raw("lo:hi")))),
        Assign(sp.Symbol("xmu_r"), Load("xmu", ("i", Raw("lo:hi")))),
    )
    elements = (
        Assign(dout_e, Load("dout_r", ("j",))),
        Assign(xmu_e, Load("xmu_r", ("j",))),
    )
    accumulate = tuple(
        Store("acc", (r, "j"), value.xreplace(element), "+", str(name))
        for r, (name, value) in enumerate(sums)
    )
    channel: list[Any] = [
        Assign(sp.Symbol("ch"), Raw("lo + j")),
        Assign(gamma_c, Load("gamma", ("ch",))),
        Assign(inv_std_c, Load("inv_std", ("ch",))),
    ]
    channel += [Assign(name, Load("acc", (r, "j"))) for r, (name, _) in enumerate(sums)]
    if plan.needs_var:
        channel.append(Assign(VAR, sp.Symbol("sum_xmu2") / divisor))
    channel += [Assign(name, value.xreplace(scalar)) for name, value in plan.per_channel]
    for row, (name, value) in enumerate(zip((C1, C2, C3), plan.coefficients, strict=True)):
        channel.append(Store("coef_b", (row, "j"), value.xreplace(scalar), comment=str(name)))
    channel.append(Store("dgamma", ("ch",), plan.dgamma.xreplace(scalar)))
    channel.append(Store("dbeta", ("ch",), plan.dbeta.xreplace(scalar)))
    dx_value = (
        sp.Symbol("coef_b[0, j]") * dout_e
        + sp.Symbol("coef_b[1, j]") * xmu_e
        + sp.Symbol("coef_b[2, j]")
    )
    return For(
        "b",
        0,
        Raw("(c + block - 1) // block"),
        (
            Assign(sp.Symbol("lo"), Raw("b * block")),
            Assign(sp.Symbol("hi"), Raw("min(lo + block, c)")),
            Assign(sp.Symbol("w"), Raw("hi - lo")),
            Assign(
                sp.Symbol("acc"),
                Raw(f"np.zeros(({len(sums)}, w), dtype=sums.dtype)"),
                "the block's accumulators",
            ),
            Assign(sp.Symbol("coef_b"), Raw("np.empty((3, w), dtype=dout.dtype)")),
            For(
                "i",
                0,
                "n",
                (*rows, For("j", 0, "w", elements + accumulate)),
                comment="pass 1: per-feature reductions, row by row",
            ),
            For("j", 0, "w", tuple(channel), comment="per-feature coefficients"),
            For(
                "i",
                0,
                "n",
                (
                    *rows,
                    Assign(sp.Symbol("dx_r"), Load("dx", ("i", Raw("lo:hi")))),
                    For("j", 0, "w", (*elements, Store("dx_r", ("j",), dx_value))),
                ),
                comment="pass 2: dx = c1·dout + c2·(x − μ) + c3, elementwise",
            ),
        ),
        parallel=True,
        comment="feature blocks in parallel",
    )


def _view(mode: Mode, name: str) -> Raw:
    if mode is Mode.PER_ACTIVATION:
        return Raw(name)
    return Raw(f"{name}.reshape({name}.shape[0], {name}.shape[1], -1)")


def build_numba_module(form: Form, mode: Mode, version: str) -> Module:
    plan = plan_backward(form, mode)
    divisor = M_SYM - 1 if form.unbiased else M_SYM
    kernel, rows = _kernel(plan, mode, divisor)
    numpy_module = build_module(form, mode, version)
    forward = numpy_module.functions[0]
    block = 1 if mode is Mode.SPATIAL else BLOCK
    acc = "np.result_type(dout.dtype, np.float64)"
    cached_body = (
        Assign((XMU, MU, INV_STD), sp.Symbol("cache"), "from forward"),
        Assign(sp.Symbol("c"), Raw("gamma.shape[0]")),
        Assign(DX, Raw("np.empty_like(dout)")),
        Assign(DGAMMA, Raw("np.empty(c, dtype=dout.dtype)")),
        Assign(DBETA, Raw("np.empty(c, dtype=dout.dtype)")),
        Assign(sp.Symbol("sums"), Raw(f"np.zeros(({rows}, c), dtype={acc})")),
        Call(
            "_backward_kernel",
            (
                _view(mode, "dout"),
                _view(mode, "xmu"),
                GAMMA,
                Raw("inv_std.reshape(-1)"),
                Raw(str(block)),
                sp.Symbol("sums"),
                _view(mode, "dx"),
                DGAMMA,
                DBETA,
            ),
        ),
        Return((DX, DGAMMA, DBETA)),
    )
    cached = FunctionDef(
        "backward_cached",
        ("dout", "cache", "gamma"),
        "The gradients from forward's cache (x − μ, μ, inv_std), by the fused numba kernel.",
        cached_body,
    )
    backward_from_x = FunctionDef(
        "backward",
        ("dout", "x", "gamma", "eps"),
        "∂L/∂x, ∂L/∂γ, ∂L/∂β from dout and x: NumPy statistics, then the numba kernel.",
        (
            Assign(
                (sp.Symbol("_"), sp.Symbol("cache")),
                Raw("forward(x, gamma, 0 * gamma, eps)"),
                "the statistics, by NumPy",
            ),
            Return((Call("backward_cached", (DOUT, sp.Symbol("cache"), GAMMA)),)),
        ),
    )
    header = list(numpy_module.header)
    header[0] = header[0].replace("BatchNorm backward,", "BatchNorm backward (fused numba kernel),")
    return Module(tuple(header), (forward, kernel, cached, backward_from_x))


def render_numba(form: Form, mode: Mode, version: str) -> str:
    """The numba module's source, not yet verified (see ``emit``)."""
    return NumbaEmitter({"mode": mode}).print_module(build_numba_module(form, mode, version))


@contextlib.contextmanager
def plain_python_numba() -> Iterator[None]:
    """``import numba`` gives a stand-in: ``njit`` the identity, ``prange`` = ``range``, so that
    the printed kernel runs as plain Python (exactly, on object arrays)."""
    stub = types.ModuleType("numba")

    def njit(*args: Any, **kwargs: Any) -> Any:
        if args and callable(args[0]):
            return args[0]
        return lambda function: function

    stub.njit = njit  # type: ignore[attr-defined]
    stub.prange = range  # type: ignore[attr-defined]
    saved = sys.modules.get("numba")
    sys.modules["numba"] = stub
    try:
        yield
    finally:
        if saved is None:
            del sys.modules["numba"]
        else:
            sys.modules["numba"] = saved


def load_plain(source: str, name: str = "emitted") -> dict[str, Any]:
    with plain_python_numba():
        return load_module(source, name)


def compiled_checks(source: str, form: Form, mode: Mode) -> list[str]:
    """The module under real numba: float64 at the adversarial inputs, float32 stays float32."""
    from .emit import _run_module, float_case

    where = f"the numba module emitted from {form.name!r} ({mode.value})"
    module = load_module(source, form.name)
    case = float_case(form, mode)
    try:
        results = _run_module(module, case)
    except Exception as exc:
        raise EmitVerificationError(
            f"{where} fails under numba: {type(exc).__name__}: {exc}"
        ) from exc
    for function in ("backward", "backward_cached"):
        for name, value in results[function].items():
            expected = case.truth[name]
            scale = np.max(np.abs(expected)) + 1e-300
            error = np.max(np.abs(np.asarray(value, dtype=np.float64) - expected)) / scale
            if value.shape != expected.shape or not error < 1e-9:
                raise EmitVerificationError(
                    f"{where}: float64 under numba: {function} gives a wrong {name}: "
                    f"relative error {error:.3g}"
                )
    x32, dout32 = case.x.astype(np.float32), case.dout.astype(np.float32)
    gamma32 = case.gamma.astype(np.float32)
    _, cache = module["forward"](x32, gamma32, case.beta.astype(np.float32), case.eps)
    dtypes = {str(v.dtype) for v in module["backward_cached"](dout32, cache, gamma32)}
    if dtypes != {"float32"}:
        raise EmitVerificationError(f"{where}: float32 inputs give {sorted(dtypes)} under numba")
    return [f"compiled by numba: float64 at {case.spec.describe()}, float32 stays float32"]
