"""The numba target of ``bnderive emit``: a fused two-pass kernel, printed from the same plan.

The backward is one ``@numba.njit(parallel=True)`` kernel over (N, C, S) views of the arrays
(SPATIAL: S = H·W) or (N, D) (PER_ACTIVATION). Rows (images or samples) are cut into chunks that
run in parallel, every access in storage order. Pass 1: each chunk accumulates the form's
reductions into its own partial sums; then per channel the chunks' sums are added and the
coefficients computed; pass 2 writes dx = c1·dout + c2·(x − μ) + c3. Accumulators have the dtype
``np.result_type(dout.dtype, np.float64)``: float64 for float32 and float64 input, ``object``
for exact rationals, so that the same source runs exactly in plain Python (numba's ``njit``
replaced by the identity and ``prange`` by ``range``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import sympy as sp

from bnderive.core.spec import Mode
from bnderive.emit.child import load_source
from bnderive.emit.numpy_module import (
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
    UserText,
    _Plan,
    build_module,
    plan_backward,
)
from bnderive.errors import BnderiveError
from bnderive.read.forms import Form


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
    """A function compiled by ``numba.njit(parallel=True)``, with LLVM's ``fastmath`` flags."""

    function: FunctionDef
    fastmath: tuple[str, ...] = ()


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
        return self._comment(f"{target} {node.op}= {self._print(node.value)}", node.comment)

    def _print_For(self, node: For) -> str:
        loop = "numba.prange" if node.parallel else "range"
        start = "" if node.start == 0 else f"{self._print(node.start)}, "
        head = f"for {node.index} in {loop}({start}{self._print(node.stop)}):"
        head = self._comment(head, node.comment)
        body = "\n".join(self._print(stmt) for stmt in node.body)
        return head + "\n" + "\n".join(f"    {line}" for line in body.splitlines())

    def _print_FunctionDef(self, node: FunctionDef) -> str:
        text = super()._print_FunctionDef(node)
        # Statements print on one or more lines (loops): indent every line of the body.
        head, _, _ = text.partition("\n    " + self._print(node.body[0]).splitlines()[0])
        body = "\n".join(self._print(stmt) for stmt in node.body)
        return head + "\n" + "\n".join(f"    {line}" for line in body.splitlines())

    def _print_Kernel(self, node: Kernel) -> str:
        flags = ", ".join(f'"{f}"' for f in node.fastmath)
        head = (
            f"@numba.njit(parallel=True, fastmath={{{flags}}}, cache=False)"
            if flags
            else ("@numba.njit(parallel=True, cache=False)")
        )
        return head + "\n" + self._print(node.function)

    def _print_Call(self, node: Call) -> str:
        return f"{node.function}({', '.join(self._print(a) for a in node.args)})"

    def _print_Raw(self, node: Raw) -> str:
        return node.text


# -- from the plan to the kernel --------------------------------------------------------------------
#: Elements of one row chunk, the unit of parallel work: 2¹⁸ (1 MiB of float32 per array).
CHUNK_ELEMENTS = 2**18
#: LLVM may reorder sums (so that the reductions vectorize) and fuse a·b + c; no finite-math,
#: no reciprocal approximations. The compiled kernel is checked in float64 after compilation.
FASTMATH = ("contract", "reassoc")


#: Loop bounds and sizes inside the kernel: chunks, rows per chunk, the array's extents.
_Q, _B, _ROWS, _CHUNKS, _N, _S = sp.symbols("q b rows chunks n s", integer=True, nonnegative=True)


def _rows_of_chunk(q: sp.Symbol) -> For:
    """``for i in range(q*rows, min(n, q*rows + rows))``: the rows of chunk ``q``."""
    return For("i", q * _ROWS, sp.Min(q * _ROWS + _ROWS, _N), ())


def _with_body(loop: For, body: tuple[Any, ...], comment: str = "") -> For:
    return For(loop.index, loop.start, loop.stop, body, loop.parallel, comment or loop.comment)


def _kernel(plan: _Plan, mode: Mode, divisor: sp.Expr) -> tuple[Kernel, int]:
    """The fused kernel and the number of partial sums per channel it accumulates.

    Rows (images in SPATIAL, samples in PER_ACTIVATION) are cut into chunks of ``rows`` rows;
    chunks run in parallel and every memory access walks the arrays in their storage order.
    Pass 1 (``_pass1``): each chunk accumulates the form's reductions into its own row of
    ``partial`` (no sharing between threads; the chunking depends on the shape only, so the
    result does not depend on the number of threads). Then, per channel (``_per_channel``), the
    chunks' partial sums are added and the coefficients c1, c2, c3, dγ, dβ computed. Pass 2
    (``_pass2``): dx = c1·dout + c2·(x − μ) + c3, chunk by chunk, last chunk first (pass 1 read
    it last: it is the likeliest still cached).
    """
    if plan.coefficients is None:
        raise EmitVerificationError("the numba target needs dx = c1·dout + c2·(x − μ) + c3")
    sums = list(plan.reductions.items())
    if plan.needs_var:
        sums.append((sp.Symbol("sum_xmu2"), XMU**2))
    spatial = mode is Mode.SPATIAL
    shape = ("n", "c", "s") if spatial else ("n", "c")
    head = (
        Assign(tuple(sp.symbols(shape)), Raw("dout.shape")),
        Assign(M_SYM, _N * _S if spatial else _N, "M: elements per channel"),
        Assign(sp.Symbol("chunks"), Raw("partial.shape[0]")),
    )
    params = ("dout", "xmu", "gamma", "inv_std", "rows", "partial", "coef", "dx", "dgamma", "dbeta")
    layout = "(N, C, H·W) views (SPATIAL)" if spatial else "(N, D) (PER_ACTIVATION)"
    doc = (
        "Fused backward, in place: pass 1 reduces, pass 2 writes dx.\n\n"
        f"dout, xmu, dx: {layout}; rows: rows per chunk; partial: zeros\n"
        "(chunks, sums, C) of the accumulator dtype (float64, or object for exact rationals);\n"
        "coef: (3, C) of dout's dtype, for c1, c2, c3."
    )
    body = (*head, _pass1(sums, spatial), _per_channel(plan, sums, divisor), _pass2(spatial))
    return Kernel(FunctionDef("_backward_kernel", params, doc, body), FASTMATH), len(sums)


#: One element's upstream gradient and centred input, loaded once per element in each pass.
_DOUT_E, _XMU_E = sp.symbols("dout_e xmu_e")


def _loads(spatial: bool) -> tuple[Any, ...]:
    at = ("i", "ch", "k") if spatial else ("i", "ch")
    return (Assign(_DOUT_E, Load("dout", at)), Assign(_XMU_E, Load("xmu", at)))


def _pass1(sums: list[tuple[sp.Symbol, sp.Expr]], spatial: bool) -> For:
    """Σ over each chunk's rows of every reduction's summand, into ``partial[q, r, ch]``."""
    element = {DOUT: _DOUT_E, XMU: _XMU_E}
    loads = _loads(spatial)
    if spatial:
        # A channel's H·W plane of row i is contiguous: scalar accumulators over it (a vector
        # reduction), added to the chunk's partial sums once per plane.
        running = tuple(
            Assign(name, Load("partial", ("q", r, "ch"))) for r, (name, _) in enumerate(sums)
        )
        add = tuple(Update(name, "+", value.xreplace(element)) for name, value in sums)
        back = tuple(Store("partial", ("q", r, "ch"), name) for r, (name, _) in enumerate(sums))
        per_row: tuple[Any, ...] = (
            For("ch", 0, "c", (*running, For("k", 0, "s", loads + add), *back)),
        )
    else:
        # A row is contiguous over the features: one accumulator per feature (independent
        # lanes, a vector loop without reordering any sum).
        add = tuple(
            Store("partial", ("q", r, "ch"), value.xreplace(element), "+", str(name))
            for r, (name, value) in enumerate(sums)
        )
        per_row = (For("ch", 0, "c", loads + add),)
    return For(
        "q",
        0,
        "chunks",
        (_with_body(_rows_of_chunk(_Q), per_row),),
        parallel=True,
        comment="pass 1: every chunk of rows reduces into its own partial sums",
    )


def _per_channel(plan: _Plan, sums: list[tuple[sp.Symbol, sp.Expr]], divisor: sp.Expr) -> For:
    """Per channel: each reduction = Σ over chunks p of partial[p, r, ch] (in chunk order, so
    the sum does not depend on the threads); σ² = Σ xmu²/divisor where the form uses it; the
    plan's per-channel temporaries; c1, c2, c3 into ``coef`` and dγ, dβ."""
    gamma_c, inv_std_c = sp.symbols("gamma_c inv_std_c")
    scalar = {GAMMA: gamma_c, INV_STD: inv_std_c}
    assert plan.coefficients is not None
    channel: list[Any] = [
        Assign(name, Load("partial", (0, r, "ch")), "the chunks' partial sums" if r == 0 else "")
        for r, (name, _) in enumerate(sums)
    ]
    channel.append(
        For(
            "p",
            1,
            "chunks",
            tuple(Update(n, "+", Load("partial", ("p", r, "ch"))) for r, (n, _) in enumerate(sums)),
        )
    )
    channel += [
        Assign(gamma_c, Load("gamma", ("ch",))),
        Assign(inv_std_c, Load("inv_std", ("ch",))),
    ]
    if plan.needs_var:
        channel.append(Assign(VAR, sp.Symbol("sum_xmu2") / divisor))
    channel += [Assign(name, value.xreplace(scalar)) for name, value in plan.per_channel]
    for row, (name, value) in enumerate(zip((C1, C2, C3), plan.coefficients, strict=True)):
        channel.append(Store("coef", (row, "ch"), value.xreplace(scalar), comment=str(name)))
    channel.append(Store("dgamma", ("ch",), plan.dgamma.xreplace(scalar)))
    channel.append(Store("dbeta", ("ch",), plan.dbeta.xreplace(scalar)))
    return For("ch", 0, "c", tuple(channel), comment="per channel: c1, c2, c3, dγ, dβ")


def _pass2(spatial: bool) -> For:
    """dx = c1·dout + c2·xmu + c3 per element, the chunks taken last first."""
    at = ("i", "ch", "k") if spatial else ("i", "ch")
    loads = _loads(spatial)
    take = tuple(Assign(name, Load("coef", (row, "ch"))) for row, name in enumerate((C1, C2, C3)))
    write = Store("dx", at, C1 * _DOUT_E + C2 * _XMU_E + C3)
    if spatial:
        per_row: tuple[Any, ...] = (For("ch", 0, "c", (*take, For("k", 0, "s", (*loads, write)))),)
    else:
        per_row = (For("ch", 0, "c", (*take, *loads, write)),)
    return For(
        "q",
        0,
        "chunks",
        (
            Assign(_B, _CHUNKS - 1 - _Q, "last chunk first: still in cache"),
            _with_body(_rows_of_chunk(_B), per_row),
        ),
        parallel=True,
        comment="pass 2: dx = c1·dout + c2·(x − μ) + c3",
    )


def _view(mode: Mode, name: str) -> Raw:
    if mode is Mode.PER_ACTIVATION:
        return Raw(name)
    return Raw(f"{name}.reshape({name}.shape[0], {name}.shape[1], -1)")


def build_numba_module(form: Form, mode: Mode, version: str) -> Module:
    plan = plan_backward(form, mode)
    divisor = M_SYM - 1 if form.unbiased else M_SYM
    kernel, sums = _kernel(plan, mode, divisor)
    numpy_module = build_module(form, mode, version)
    forward = numpy_module.functions[0]
    cached = _cached_by_kernel(mode, sums)
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
    first = header[0]
    assert isinstance(first, UserText)  # bnderive's words around the form's name
    fused = first.prefix.replace("BatchNorm backward,", "BatchNorm backward (fused numba kernel),")
    header[0] = dataclasses.replace(first, prefix=fused)
    return Module(tuple(header), (forward, kernel, cached, backward_from_x), ("numba", "numpy"))


def _cached_by_kernel(mode: Mode, sums: int) -> FunctionDef:
    """backward_cached: the outputs and the kernel's scratch (``partial``: one row of the
    ``sums`` partial sums per chunk, in float64 or wider; ``coef``: c1, c2, c3) allocated, then
    one call of the fused kernel on (N, C, H·W) views (SPATIAL) or (N, D)."""
    acc = "np.result_type(dout.dtype, np.float64)"
    cached_body = (
        Assign((XMU, MU, INV_STD), sp.Symbol("cache"), "from forward"),
        Assign(sp.Symbol("n"), Raw("dout.shape[0]")),
        Assign(sp.Symbol("c"), Raw("gamma.shape[0]")),
        Assign(
            sp.Symbol("rows"),
            Raw(f"max(1, {CHUNK_ELEMENTS} * n // max(1, dout.size)) if rows is None else rows"),
            f"rows per parallel chunk, about {CHUNK_ELEMENTS} elements",
        ),
        Assign(sp.Symbol("chunks"), Raw("(n + rows - 1) // rows")),
        Assign(DX, Raw("np.empty_like(dout)")),
        Assign(DGAMMA, Raw("np.empty(c, dtype=dout.dtype)")),
        Assign(DBETA, Raw("np.empty(c, dtype=dout.dtype)")),
        Assign(sp.Symbol("partial"), Raw(f"np.zeros((chunks, {sums}, c), dtype={acc})")),
        Assign(sp.Symbol("coef"), Raw("np.empty((3, c), dtype=dout.dtype)")),
        Call(
            "_backward_kernel",
            (
                _view(mode, "dout"),
                _view(mode, "xmu"),
                GAMMA,
                Raw("inv_std.reshape(-1)"),
                sp.Symbol("rows"),
                sp.Symbol("partial"),
                sp.Symbol("coef"),
                _view(mode, "dx"),
                DGAMMA,
                DBETA,
            ),
        ),
        Return((DX, DGAMMA, DBETA)),
    )
    return FunctionDef(
        "backward_cached",
        ("dout", "cache", "gamma", "rows=None"),
        "The gradients from forward's cache (x − μ, μ, inv_std), by the fused numba kernel.\n\n"
        "rows: rows (samples or images) per parallel chunk; by default chunks of about\n"
        f"{CHUNK_ELEMENTS} elements. The result does not depend on the number of threads.",
        cached_body,
    )


def render_numba(form: Form, mode: Mode, version: str) -> str:
    """The numba module's source, not yet verified (see ``emit``)."""
    return NumbaEmitter({"mode": mode}).print_module(build_numba_module(form, mode, version))


def load_plain(source: str, name: str = "emitted") -> dict[str, Any]:
    """The module's source run as plain Python in *this* process (numba's ``njit`` the identity):
    for tests of bnderive's own printed kernels.  ``emit`` verifies in a child process."""
    return load_source(source, name, plain=True)
