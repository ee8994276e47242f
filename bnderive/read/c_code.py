"""C kernels in a post's ```c block, read as the lines of a derivation: each statement of a
small subset of C is translated into the NumPy form ``code_lines`` reads (never compiled or run).

Karpathy's llm.c writes the LayerNorm backward pass as a C kernel: loops over the samples (``b``,
``t``), a pointer to the sample's row (``float* dout_bt = dout + b * T * C + t * C;``), then loops
over the set ``for (int i = 0; i < C; i++)`` that accumulate (``dnorm_mean += dnorm_i;``) and
write each element (``dinp_bt[i] += dval;``).  The subset, one statement a line:

* a loop ``for (int v = 0; v < S; v++) {`` with no loop inside is a loop over the set (S its size);
  the loops around it run over the samples, and everything inside them is one sample's;
* ``float* p = a + off;`` in the sample loops, ``off`` the start of the sample's row (its index
  times a size), names that row: ``p[i]`` is ``a`` at element i; ``a[k]`` with ``k`` the sample's
  index is the sample's entry of a per-sample array (``mean[b * T + t]``);
* in a set loop, ``e[i]`` is element i; ``s += e;`` (``-=``) on a number declared outside the loop
  is a sum over the set (then ``s = s / C;`` after the loop is a mean); ``a[i] = e;`` and
  ``a[i] += e;`` state element i of ``a`` (a gradient buffer the kernel adds its part to);
* ``x op= e;`` elsewhere is ``x = x op (e)`` (``in_place``, which reads Python's ``dx *= rstd``
  too); ``0.0f`` is 0.0; ``sqrtf`` is np.sqrt;
* a number declared in the set loop with the loop's letter as suffix (``float dnorm_i``) is read
  without it (``dnorm``), the element's value, unless the kernel uses the bare name too.

Anything else (a branch, a loop in a set loop, other pointer arithmetic or indexing, C's integer
division, a cast) is a row "not read", with its reason.  Each row read is
``<python>  # read from C: <statement>``, so that the line shows the C as written.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

import sympy as sp

from bnderive.core import python_syntax

C_LANGUAGES = ("c", "cpp", "c++", "cuda", "cu")
READ_FROM = "  # read from C: "
_NOT_READ = re.compile(r"\s*/\* not read: (?P<why>.*) \*/$")
_LOOP = re.compile(
    r"^for\s*\(\s*int\s+(\w+)\s*=\s*0\s*;\s*\1\s*<\s*(\w+)\s*;\s*(?:\1\s*\+\+|\+\+\s*\1)\s*\)\s*\{$"
)
_STATEMENT = re.compile(
    r"^(?P<type>(?:const\s+)?(?:float|double|int)\b\s*(?P<pointer>\*)?\s*)?(?P<name>\w+)\s*"
    r"(?:\[\s*(?P<index>\w+)\s*\])?\s*(?P<op>[-+*/]?=)(?!=)\s*(?P<expr>[^;]+);$"
)
_BRANCH = re.compile(r"^(?:if|else|while|do|switch|for|goto|return)\b")
_FLOAT = re.compile(r"\b(\d+\.\d*|\.\d+|\d+\.?\d*[eE][-+]?\d+)[fF]\b")
_FUNCTIONS = {"sqrtf": "sqrt", "sqrt": "sqrt", "expf": "exp", "fabsf": "abs"}


def refusal(text: str) -> str | None:
    """Why a C row was not read (the row carries it), or None for a row read."""
    match = _NOT_READ.search(text)
    return match.group("why") if match else None


def c_targets(text: str) -> list[str]:
    """The names a statement not read may change (every name left of an =, +=, …)."""
    code = _NOT_READ.sub("", text)
    return re.findall(r"(\w+)\s*(?:\[[^\]]*\])?\s*[-+*/]?=(?!=)", code) or [text]


@dataclass
class _Frame:
    kind: str  # "set", "sample", "other" (function body), "refused"
    var: str = ""
    bound: str = ""
    declared: set[str] = field(default_factory=set)
    why: str = ""
    #: in the loop over the set: ``dnorm_i`` (declared here, i the loop's variable) → ``dnorm``
    renamed: dict[str, str] = field(default_factory=dict)


@dataclass
class CKernel:
    """One ```c block, statement by statement (``rows``)."""

    frames: list[_Frame] = field(default_factory=list)
    aliases: dict[str, tuple[str, sp.Expr]] = field(default_factory=dict)  # p → (a, its row size)
    ints: set[str] = field(default_factory=set)
    rows: list[tuple[int, str]] = field(default_factory=list)
    written: set[str] = field(default_factory=set)  # the element buffers a[i] written
    size: str | None = None  # the set's size: the bound of the first loop with no loop inside
    words: set[str] = field(default_factory=set)  # every name the kernel writes

    def sample_index(self) -> sp.Expr | None:
        """The index of the sample the sample loops are at: ((b·T) + t) for b < B, t < T."""
        loops = [f for f in self.frames if f.kind == "sample"]
        if not loops:
            return None
        index: sp.Expr = sp.Integer(0)
        for frame in loops:
            index = index * sp.Symbol(frame.bound) + sp.Symbol(frame.var)
        return index

    def set_loop(self) -> _Frame | None:
        return next((f for f in reversed(self.frames) if f.kind == "set"), None)

    def refused(self) -> str | None:
        return next((f.why for f in self.frames if f.kind == "refused"), None)


def c_rows(code: str, start: int) -> list[tuple[int, str]]:
    """(offset, row) of every statement of a C block (``start`` the block's offset)."""
    lines: list[tuple[int, str, str]] = []  # offset, as written, the code without comments
    offset = start
    for line in code.splitlines(keepends=True):
        stripped = line.strip()
        lines.append((offset + len(line) - len(line.lstrip()), stripped, _code(stripped)))
        offset += len(line)
    nested, size = _loops([c for _, _, c in lines])
    kernel = CKernel(size=size, words=set(re.findall(r"[A-Za-z_]\w*", _code(code))))
    for number, (at, written, text) in enumerate(lines):
        if not text:
            continue
        if not kernel.frames:
            kernel.ints |= set(re.findall(r"\bint\s+(\w+)", text))  # the signature's ints
        if text.endswith("{") or text == "}" or text.startswith("}"):
            _brace(kernel, text, number in nested)
            continue
        if not kernel.frames:
            continue  # the function's signature: no statement
        row = _statement(kernel, text)
        if row is None:
            continue
        kernel.rows.append((at, row + READ_FROM + written if refusal(row) is None else row))
    return kernel.rows


def _code(line: str) -> str:
    return re.sub(r"/\*.*?\*/", " ", line.split("//")[0]).strip()


def _loops(lines: list[str]) -> tuple[set[int], str | None]:
    """The lines opening a loop that has a loop inside it, and the set's size: the bound of
    the first loop with none inside."""
    open_loops: list[tuple[int, int]] = []  # (line, depth)
    depth = 0
    nested: set[int] = set()
    starts: dict[int, str] = {}
    for number, text in enumerate(lines):
        loop = _LOOP.match(text)
        if loop is not None:
            for line, _ in open_loops:
                nested.add(line)
            open_loops.append((number, depth))
            starts[number] = loop.group(2)
        depth += text.count("{") - text.count("}")
        open_loops = [(n, d) for n, d in open_loops if depth > d]
    inner = [bound for number, bound in sorted(starts.items()) if number not in nested]
    return nested, (inner[0] if inner else None)


def _brace(kernel: CKernel, text: str, nested: bool) -> None:
    closes = text.startswith("}")
    if closes and kernel.frames:
        kernel.frames.pop()
    if not text.endswith("{"):
        return
    loop = _LOOP.match(text)
    inside = kernel.set_loop() is not None
    if closes or (loop is None and _BRANCH.match(text)):
        kernel.frames.append(_Frame("refused", why="a branch or a loop of another form"))
    elif loop is None:
        kernel.frames.append(_Frame("other"))  # the function's body
    elif inside:
        kernel.frames.append(_Frame("refused", why="a loop inside the loop over the set"))
    else:
        var, bound = loop.groups()
        kernel.ints |= {var, bound}
        if bound == kernel.size:
            kernel.frames.append(_Frame("set", var, bound))
        elif nested:
            kernel.frames.append(_Frame("sample", var, bound))
        else:
            why = f"a loop over {bound}, not over the set ({kernel.size}), with no loop inside"
            kernel.frames.append(_Frame("refused", why=why))


def _not_read(text: str, why: str) -> str:
    return f"{text} /* not read: {why} */"


def _statement(kernel: CKernel, text: str) -> str | None:
    """The NumPy row of one statement, or the statement with why it is not read."""
    why = kernel.refused()
    if why is not None:
        return _not_read(text, why)
    match = _STATEMENT.match(text)
    if match is None:
        return _not_read(text, "not a C assignment of the subset read (name op= expression;)")
    name, op, index = match.group("name"), match.group("op"), match.group("index")
    if match.group("type"):
        kernel.frames[-1].declared.add(name)
        if "int" in match.group("type").split():
            kernel.ints.add(name)
        elif not match.group("pointer"):
            name = _element_name(kernel, name)
    name = _renamed(kernel, name)
    try:
        value = python_syntax.parse(_FLOAT.sub(r"\1", match.group("expr")), mode="eval").body
    except SyntaxError:
        return _not_read(text, "its right side is not C arithmetic of the subset (a cast?)")
    try:
        if match.group("pointer"):
            return _alias(kernel, text, name, value, op)
        expr = _Translate(kernel).visit(value)
    except _Refused as exc:
        return _not_read(text, str(exc))
    return _assignment(kernel, text, name, index, op, expr)


def _assignment(
    kernel: CKernel, text: str, name: str, index: str | None, op: str, expr: ast.expr
) -> str:
    loop = kernel.set_loop()
    rhs = ast.unparse(expr)
    if index is not None:
        if loop is None or index != loop.var or op not in ("=", "+="):
            return _not_read(
                text, "an element is written only as a[i] = e or a[i] += e in the loop over the set"
            )
        if op == "=" and name not in kernel.aliases and _in_sample_loops(kernel):
            return _not_read(
                text, f"{name}[i] = … inside the loops over the samples: each sample overwrites "
                "the last (a buffer the samples share takes +=)",
            )  # fmt: skip
        base = _base(kernel, name, loop)
        if base in kernel.written:
            return _not_read(text, f"a second write to {name}[i]: its value is the sum of parts")
        kernel.written.add(base)
        return f"{base} = {rhs}"
    outer = loop is not None and name not in kernel.frames[-1].declared
    if op == "=":
        if outer:
            return _not_read(text, f"{name} = … in the loop over the set, declared before it")
        return f"{name} = {rhs}"
    symbol = op[0]
    if (
        outer
        and _in_sample_loops(kernel)
        and not any(name in f.declared for f in kernel.frames if f.kind == "sample")
    ):
        return _not_read(
            text, f"{name} {op} … is declared outside the loops over the samples: it adds up "
            "every sample's terms, not this sample's",
        )  # fmt: skip
    if outer:
        if symbol not in "+-":
            return _not_read(
                text, f"{op} over the loop on a number: only += and -= (a sum) are read"
            )
        return f"{name} = {name} {symbol} np.sum({rhs}, axis=-1)"
    return in_place(name, symbol, rhs)


def in_place(name: str, op: str, rhs: str) -> str:
    """``x op= e`` (C's, or Python's ``dx *= rstd``) as the assignment of x's new value,
    ``x = x op (e)``: the right side in brackets, since ``x -= a + b`` subtracts all of a + b."""
    return f"{name} = {name} {op} ({rhs})"


def _element_name(kernel: CKernel, name: str) -> str:
    """``float dnorm_i = …;`` declared in the loop over i: the suffix _i says the value is element
    i's (as in ASCII maths, ``dx_i``), which every row read in the loop is, so the name is read
    without it (``dnorm``: by the d-prefix convention ∂L/∂norm, where the post has a norm).  Kept
    as written when the kernel uses the bare name too."""
    loop = kernel.set_loop()
    bare = name.removesuffix(f"_{loop.var}") if loop is not None else name
    if loop is None or kernel.frames[-1] is not loop or not bare or bare == name:
        return name
    if bare in kernel.words:
        return name
    loop.renamed[name] = bare
    loop.declared.add(bare)
    return bare


def _renamed(kernel: CKernel, name: str) -> str:
    loop = kernel.set_loop()
    return loop.renamed.get(name, name) if loop is not None else name


def _in_sample_loops(kernel: CKernel) -> bool:
    return any(f.kind == "sample" for f in kernel.frames)


def _base(kernel: CKernel, name: str, loop: _Frame) -> str:
    if name not in kernel.aliases:
        return name
    base, size = kernel.aliases[name]
    if size != sp.Symbol(loop.bound):
        raise _Refused(f"{name} is a row of {size} numbers, the loop runs over {loop.bound}")
    return base


def _alias(kernel: CKernel, text: str, name: str, value: ast.expr, op: str) -> str | None:
    """``float* dout_bt = dout + b * T * C + t * C;``: the sample's row of dout (no row)."""
    index = kernel.sample_index()
    if (
        op != "="
        or index is None
        or not isinstance(value, ast.BinOp)
        or not isinstance(value.op, ast.Add)
    ):
        raise _Refused("pointer arithmetic other than p = a + (the sample's row start)")
    base, offset = _split_base(value)
    size = sp.simplify(_integer(offset) / index)
    if base is None or not isinstance(size, sp.Symbol) or str(size) not in kernel.ints:
        raise _Refused("pointer arithmetic other than p = a + (the sample's index) · size")
    kernel.aliases[name] = (base, size)
    return None


def _split_base(value: ast.BinOp) -> tuple[str | None, ast.expr]:
    """``a + off`` (parsed ((a + t1) + t2)): the array a and the rest of the offset."""
    terms: list[ast.expr] = []
    node: ast.expr = value
    while isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        terms.insert(0, node.right)
        node = node.left
    if not isinstance(node, ast.Name) or not terms:
        return None, value
    offset = terms[0]
    for term in terms[1:]:
        offset = ast.BinOp(offset, ast.Add(), term)
    return node.id, offset


def _integer(node: ast.expr) -> sp.Expr:
    """An index expression of int names (+, *), as sympy."""
    if isinstance(node, ast.Name):
        return sp.Symbol(node.id)
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return sp.Integer(node.value)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mult):
        a, b = _integer(node.left), _integer(node.right)
        return a + b if isinstance(node.op, ast.Add) else a * b
    raise _Refused("an index other than sums and products of int names")


class _Refused(Exception):
    """The statement is outside the subset: why."""


class _Translate(ast.NodeTransformer):
    """A C right side as the NumPy expression ``code_lines`` reads at element i."""

    def __init__(self, kernel: CKernel) -> None:
        self.kernel = kernel

    def visit_Subscript(self, node: ast.Subscript) -> ast.expr:
        if not isinstance(node.value, ast.Name):
            raise _Refused("indexing other than a[i] or a per-sample array at the sample")
        name, loop = node.value.id, self.kernel.set_loop()
        if loop is not None and isinstance(node.slice, ast.Name) and node.slice.id == loop.var:
            return ast.Name(_base(self.kernel, name, loop), ast.Load())
        index = self.kernel.sample_index()
        if name not in self.kernel.aliases and index is not None:
            if sp.expand(_integer(node.slice) - index) == 0:
                return ast.Name(name, ast.Load())  # the sample's entry: mean[b * T + t]
        raise _Refused(f"{name}[…]: only [i] (the set's element) or the sample's entry is read")

    def visit_Name(self, node: ast.Name) -> ast.expr:
        if node.id in self.kernel.aliases:
            raise _Refused(f"{node.id} is a pointer: only its elements {node.id}[i] are read")
        return ast.Name(_renamed(self.kernel, node.id), ast.Load())

    def visit_BinOp(self, node: ast.BinOp) -> ast.expr:
        if isinstance(node.op, ast.Div) and self._int(node.left) and self._int(node.right):
            raise _Refused("a division of two ints, which C truncates")
        if not isinstance(node.op, ast.Add | ast.Sub | ast.Mult | ast.Div):
            raise _Refused("an operator other than + - * /")
        return self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> ast.expr:
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS or node.keywords:
            raise _Refused("a call other than sqrtf, expf, fabsf")
        func = ast.Attribute(ast.Name("np", ast.Load()), _FUNCTIONS[node.func.id], ast.Load())
        return ast.Call(func, [self.visit(a) for a in node.args], [])

    def generic_visit(self, node: ast.AST) -> ast.AST:
        allowed = ast.Expression | ast.BinOp | ast.UnaryOp | ast.Name | ast.Constant
        if not isinstance(node, allowed | ast.operator | ast.unaryop | ast.expr_context):
            raise _Refused(f"{type(node).__name__} is not C arithmetic of the subset")
        return super().generic_visit(node)

    def _int(self, node: ast.expr) -> bool:
        if isinstance(node, ast.Constant):
            return isinstance(node.value, int)
        return isinstance(node, ast.Name) and node.id in self.kernel.ints
