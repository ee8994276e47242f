"""Derivations written as NumPy code in a post: the assignments of a fenced code block, read as
the lines of a derivation (data only: parsed by Python's ``ast`` and walked through an
allow-list, never compiled or run).

Many posts derive the backward pass as staged NumPy (Kratzert 2016, CS231n notes): ``mu =
1./N * np.sum(x, axis=0)``, ``xmu = x - mu``, ``dvar = 0.5 * 1. / np.sqrt(var + eps) * dsqrtvar``.
Each assignment ``name = expression`` is one line of the derivation, in the (N, D) layout of
the per-activation mode (``axis=0`` is the batch):

* the left side says what the line states, as the LaTeX reader's left sides do
  (``LineRead.kind``): a forward quantity (``mu``/``mean``, ``var``, ``xhat``/``x_norm``,
  ``out``/``y``), a gradient (``dx``, ``dgamma``, ``dbeta``, ``dxhat``, ``dvar``, ``dmu``; or
  ``grad_x``, … in a post that writes ``grad_``), a local derivative (``dvar_dx``, ``dxnorm_dmean``:
  ∂σ²/∂x_i, ∂x̂_i/∂μ), the gradient of a node of the post's own (``dsq`` after ``sq = xmu ** 2``:
  ``node``), or a name of the post's own (``xmu``, ``ivar``, ``dxmu1``: a definition);
* the right side is NumPy array arithmetic, read at element i: ``x`` is x_i, ``dout`` g_i,
  ``np.sum(e, axis=0)`` Σ_k e_k, ``np.mean``, ``np.sqrt``, ``np.ones((N, D))``, ``x.shape[0]`` M.

The gradient of a post's own node is worked out in the post's own graph (its forward lines, as
written): ∂L/∂v = Σ over the lines that use v of ∂L/∂(that line's node) · ∂(its right side)/∂v,
down to the layer's nodes x̂, y, σ², μ, whose gradients are the true ones.  A line that uses v but
could not be read leaves the gradient of v unknown: not checked, never guessed.

A block is read as a sequence (``_stages``): ``dx *= rstd`` after ``dx = …`` is dx's next value
(C's ``in_place``), the value it computes from a stage (a name of the post's own), and a forward
name computed again with the same value keeps its place in the graph (``CodeReader.again``).

Block comments in the style of the posts this reads (Kratzert's staged forward/backward, the
CS231n notes); the code here is bnderive's own.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import sympy as sp

from bnderive.core import notation as N
from bnderive.core import python_syntax
from bnderive.read.c_code import C_LANGUAGES, READ_FROM, c_rows, c_targets, in_place, refusal
from bnderive.read.latex_results import LatexError, LineRead

#: Forward quantities of the layer, by the names code gives them.
FORWARD = {
    "mu": "mu",
    "mean": "mu",
    "sample_mean": "mu",
    "batch_mean": "mu",
    "var": "var",
    "variance": "var",
    "sample_var": "var",
    "batch_var": "var",
    "xhat": "xhat",
    "x_hat": "xhat",
    "x_norm": "xhat",
    "xnorm": "xhat",
    "x_normalized": "xhat",
    "x_normed": "xhat",
    "out": "y",
    "y": "y",
}
#: The upstream gradient ∂L/∂y.
UPSTREAM = ("dout", "dy", "grad_y", "grad_out", "dldy", "upstream_grad")
#: The layer's nodes a gradient or a local derivative may be taken with respect to.
_NODES = {**FORWARD, "x": "x", "X": "x", "gamma": "gamma", "beta": "beta", "sigma2": "var"}
_ADJOINTS = {
    "x": "dx",
    "xhat": "dxhat",
    "var": "dvar",
    "mu": "dmu",
    "gamma": "dgamma",
    "beta": "dbeta",
}
_SIZES = ("N", "m", "M")
#: LayerNorm code's parameters by PyTorch's names (nn.LayerNorm.weight, .bias; w, b in llm.c).
_LAYER_PARAMETERS = {"weight": "gamma", "w": "gamma", "bias": "beta", "b": "beta", "inp": "x"}
#: (llm.c's C kernel names the input ``inp``, its gradient ``dinp``.)
_WORDS = {"mu": "μ", "var": "σ²", "xhat": "x̂", "y": "y"}
#: Names the index notation gives a meaning of its own: a post's name never takes one of them.
_RESERVED = {"x", "g", "y", "xhat", "mu", "var", "gamma", "beta", "eps", "M", "ms"} | set(
    N.QUANTITIES
)
_FENCE = re.compile(r"^[ \t]*(```|~~~)([^\n]*)\n(.*?)^[ \t]*\1[^\n]*$", re.M | re.S)
_LANGUAGES = ("", "python", "py", "python3", "ipython", "numpy", "text", "plain")


def code_rows(text: str) -> list[tuple[int, str]]:
    """(offset, line) of every assignment in the fenced code blocks of ``text`` that read as a
    derivation: a block counts when one of its assignments states a quantity of the layer (a
    forward quantity or a gradient), so that a post's unrelated code is left alone."""
    rows: list[tuple[int, str]] = []
    for match in _FENCE.finditer(text):
        if match.group(2).strip().lower() in C_LANGUAGES:
            block = c_rows(match.group(3), match.start(3))
            if any(_states_quantity(target(row)) for _, row in block if refusal(row) is None):
                rows.extend(_stages(block, [], text))  # a C row not read says so itself
            continue
        if match.group(2).strip().lower() not in _LANGUAGES:
            continue
        block, changes = _python_block(match.group(3), match.start(3))
        if any(_states_quantity(target(row)) for _, row in block):
            rows.extend(_stages(block, changes, text))
    return rows


def _python_block(
    code: str, start: int
) -> tuple[list[tuple[int, str]], list[tuple[int, str, str]]]:
    """The rows of one Python block, and the changes in place it makes that are not rows
    (``(position in the block, name, as written)``: ``dbeta[0] *= 2``, ``dx **= 2``, an
    accumulation ``dx += e`` inside a loop or a branch).  ``dx *= rstd`` after an assignment
    of dx in the same block, outside any loop or branch, is a row: ``dx = dx * (rstd)`` (the
    C reader's ``in_place``), marked ``FROM_PYTHON`` with the statement as written."""
    block: list[tuple[int, str]] = []
    changes: list[tuple[int, str, str]] = []
    headers: list[tuple[int, bool]] = []  # the compound statements open: (indent, def/class?)
    joined = False  # the row before ends with '=': this one continues it (ASCII maths)
    for line in code.splitlines(keepends=True):
        stripped = line.strip()
        start += len(line)
        if not stripped:
            joined = False  # a row broken after '=' continues on the next line only
            continue
        offset = start - len(line.lstrip())
        if joined:
            before = block[-1][1]
            block[-1] = (block[-1][0], f"{before} {stripped}")
            joined = block[-1][1].endswith("=")
            continue
        indent = len(line) - len(line.lstrip())
        while headers and indent <= headers[-1][0]:
            headers.pop()
        if _COMPOUND.match(stripped) and stripped.split("#")[0].rstrip().endswith(":"):
            headers.append((indent, stripped.startswith(("def ", "class ", "async def "))))
            continue
        augmented = _AUGMENTED.match(stripped)
        element = _ELEMENT_WRITES.match(stripped)
        if augmented is not None:
            name, op = augmented.groups()
            row = _augmented_row(stripped) if all(f for _, f in headers) else None
            if row is not None and any(target(r) == name for _, r in block):
                block.append((offset, row + FROM_PYTHON + stripped))
            else:
                changes.append((len(block), name, f"{name} {op}= …"))
            continue
        if element is not None:
            name, at, op = element.groups()
            changes.append((len(block), name, f"{name}[{at}] {op or ''}= …"))
            continue
        if (_ASSIGNMENT.match(stripped) or MATHS_LEFT.match(stripped)) and not _packing(stripped):
            block.append((offset, stripped))
            joined = stripped.endswith("=")
    return block, changes


def _augmented_row(text: str) -> str | None:
    """``dx *= rstd`` as ``dx = dx * (rstd)``, for + - * / (None for any other operator)."""
    try:
        tree = python_syntax.parse(text)
    except SyntaxError:
        return None
    statement = tree.body[0] if len(tree.body) == 1 else None
    if not isinstance(statement, ast.AugAssign) or not isinstance(statement.target, ast.Name):
        return None
    op = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}.get(type(statement.op))
    if op is None:
        return None
    return in_place(statement.target.id, op, ast.unparse(statement.value))


def _stages(
    block: list[tuple[int, str]], changes: list[tuple[int, str, str]], text: str
) -> list[tuple[int, str]]:
    """Each row of a block as the value its name holds there (``text``: the document, for line
    numbers).  A row whose name the next assignment of it computes from (``dx = dnorm - …``
    then ``dx = dx * (rstd)``, read from ``dx *= rstd``; llm.c's ``dval -= …``) holds a stage
    of it: marked ``STAGE`` (with the line of that assignment), it is read as a name of the
    post's own, and the last stage says what the name states (∂L/∂x).  A row whose name a
    Python line not read changes later (``dbeta[0] *= 2``, ``dx += e`` in a loop: ``changes``)
    holds no value that is said: marked ``IN_PLACE``, reported not read (checked as the
    quantity, its value would be compared with the final one; left out, it would vanish from
    the output and from the count of lines not checked).  A C statement not read is a row, not
    read with its reason, and the lines that use what it assigns are not checked."""
    out: list[tuple[int, str]] = []
    for position, (offset, row) in enumerate(block):
        name = target(row)
        if refusal(row) is not None:
            out.append((offset, row))
            continue
        later = [said for at, n, said in changes if n == name and at > position]
        after = next(((o, r) for o, r in block[position + 1 :] if name in _assigns(r)), None)
        if later:
            out.append((offset, row + IN_PLACE + later[0]))
        elif after is not None and refusal(after[1]) is None and _reads(after[1], name):
            out.append((offset, f"{row}{STAGE}{text.count(chr(10), 0, after[0]) + 1}"))
        else:
            out.append((offset, row))
    return out


def _assigns(row: str) -> list[str]:
    return c_targets(row) if refusal(row) is not None else [target(row)]


def _reads(row: str, name: str) -> bool:
    """Does the assignment ``row`` (code, translated C) use ``name`` on its right side?"""
    try:
        tree = python_syntax.parse(row.split(READ_FROM)[0].split(FROM_PYTHON)[0])
    except SyntaxError:
        return False
    statement = tree.body[0] if len(tree.body) == 1 else None
    if not isinstance(statement, ast.Assign):
        return False
    return any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(statement.value))


#: The marks ``_stages`` leaves on a row (Python comments: the row still parses).  ``IN_PLACE``:
#: its name is changed later in a way not read, so ``CodeReader.read`` reports it not read (never
#: skips it); ``STAGE``: the next assignment of its name computes from it, so it is read as a
#: name of the post's own.  ``FROM_PYTHON``: the row is read from ``x op= e``, written after it.
IN_PLACE = "  # changed in place later: "
STAGE = "  # a stage, its next value computed from it at line "
FROM_PYTHON = "  # read from: "
#: The name a C statement assigns, as written (``float dnorm_i = …;``: dnorm_i).
_C_NAME = re.compile(r"^(?:(?:const\s+)?(?:float|double|int)\b\s*\*?\s*)?([A-Za-z_]\w*)")
#: Every mark a code row may carry after its statement (C's included).
CODE_MARKS = (READ_FROM, FROM_PYTHON, STAGE, IN_PLACE)
_AUGMENTED = re.compile(r"^([A-Za-z_][A-Za-z_0-9]*)\s*(\*\*|//|>>|<<|[-+*/@%&|^])=(?!=)")
#: ``dbeta[0] *= 2``, ``dx[:, 0] = …``: a write into part of an array changes it in place too.
_ELEMENT_WRITES = re.compile(
    r"^([A-Za-z_][A-Za-z_0-9]*)\s*\[([^\]\n]*)\]\s*([-+*/@]|\*\*|//)?=(?!=)"
)
#: The compound statements: rows in a loop or a branch are not straight-line code.
_COMPOUND = re.compile(
    r"^(?:async\s+)?(?:def|class|for|while|if|elif|else|with|try|except|finally)\b"
)


_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z_0-9]*\s*=(?!=)")
#: ASCII maths: a row whose left side is a derivative quotient (``dnorm_ij/dvar_j = …``).
MATHS_LEFT = re.compile(r"^d[A-Za-z_0-9]*\s*/\s*d[A-Za-z_0-9]*\s*=(?!=)")


def _packing(line: str) -> bool:
    """``cache = (xhat, gamma, xmu)``: values packed for later, no arithmetic."""
    try:
        tree = python_syntax.parse(line)
    except SyntaxError:
        return False
    value = getattr(tree.body[0], "value", None) if len(tree.body) == 1 else None
    return isinstance(value, ast.Tuple | ast.List | ast.Dict)


def target(line: str) -> str:
    return line.split("=", 1)[0].strip()


def _states_quantity(name: str) -> bool:
    """``var``, ``dx``, ``grad_gamma``; in ASCII maths also with an index suffix (``var_j``,
    ``xhat_ij``, ``dx_i``: the element i, the feature j)."""
    suffixed = re.fullmatch(r"(\w+?)_[ij]{1,2}", name)
    if suffixed is not None and name not in FORWARD:
        name = suffixed.group(1)
    if name in FORWARD and name != "y":
        return True
    if name.startswith("d") and name[1:] in _LAYER_PARAMETERS and len(name) > 2:
        return True  # dweight, dbias, dinp (LayerNorm code's names)
    for prefix in ("d", "grad_"):
        if name.startswith(prefix) and name[len(prefix) :] in _NODES:
            return True
    return False


@dataclass
class _Node:
    """A node of the post's own forward graph: its internal name, per element or not, and its
    right side as written (the names it uses as symbols)."""

    name: str
    elementwise: bool
    expr: sp.Expr
    line: int


@dataclass
class CodeReader:
    """The assignments of one document, in order (names carry from line to line).

    ``truth`` gives the true gradient of a layer node (``dxhat``, ``dvar``, ``dmu``) at an
    index, for the gradients of the post's own nodes."""

    truth: Callable[[str, sp.Expr], sp.Expr]
    prefix: str = "d"
    names: dict[str, tuple[str, bool]] = field(
        default_factory=dict
    )  # post name → (symbol, per element)
    nodes: dict[str, _Node] = field(default_factory=dict)  # internal name → node
    layer: list[tuple[str, sp.Expr, int]] = field(default_factory=list)  # x̂, y, σ², μ lines
    unread: list[tuple[str, str, int]] = field(default_factory=list)  # (target, text, line)
    #: every symbol a name of the post's own was given: a new value never takes an old one's
    symbols: set[str] = field(default_factory=set)
    #: LayerNorm (``for_rows``): the set is the last axis, the letters of its size, γ_i, β_i
    per_feature: bool = False
    set_sizes: frozenset[str] = frozenset()

    @classmethod
    def for_rows(
        cls,
        rows: list[str],
        truth: Callable[[str, sp.Expr], sp.Expr],
        layer: bool = False,
        sizes: frozenset[str] = frozenset(),
    ) -> CodeReader:
        """A post that writes ``grad_x`` names its gradients ``grad_…``; its ``d…`` names are
        its own (Calvin Feng's ``dvar`` is ∂x̂/∂σ² next to ``grad_var``).  ``layer``: a
        LayerNorm post's code (``_Expr.reduction``; γ, β and their gradients per feature)."""
        grad = any(target(r).startswith("grad_") for r in rows)
        return cls(truth, "grad_" if grad else "d", per_feature=layer, set_sizes=sizes)

    def node_of(self, name: str) -> str | None:
        """The layer's node a code name stands for (``_NODES``); in LayerNorm code also
        PyTorch's names of its parameters, weight and bias (w, b), γ and β."""
        if self.per_feature and name in _LAYER_PARAMETERS:
            return _LAYER_PARAMETERS[name]
        return _NODES.get(name)

    def not_read(self, name: str, text: str, line: int) -> None:
        """A line assigning ``name`` was not read: later lines that use the name say so (its
        earlier value, or a size letter such as m, is no longer what it means)."""
        self.unread.append((name, text, line))
        self.names.pop(name, None)

    # -- one line ---------------------------------------------------------------------------------
    def read(self, text: str, line: int, column: int) -> LineRead:
        if IN_PLACE in text:
            code, later = text.split(IN_PLACE, 1)
            self.not_read(target(code), code, line)
            raise LatexError(
                f"{target(code)} is changed in place later in the block ({later}): the value "
                "assigned here is not its final one, so the line states no value to check",
                line,
                column,
            )
        stage = None
        if STAGE in text:
            text, stage = text.split(STAGE, 1)
        why = refusal(text)
        if why is not None:  # a C statement outside the subset c_code reads
            for name in c_targets(text):
                self.not_read(name, text, line)
            raise LatexError(f"C not read: {why}", line, column)
        try:
            tree = python_syntax.parse(text, mode="exec")
        except SyntaxError as exc:
            self.not_read(target(text), text, line)
            raise LatexError(
                f"not a Python assignment ({exc.msg}); code is read one assignment a line",
                line,
                column + max((exc.offset or 1) - 1, 0),
            ) from None
        statement = tree.body[0] if len(tree.body) == 1 else None
        if not isinstance(statement, ast.Assign) or len(statement.targets) != 1:
            self.not_read(target(text), text, line)
            raise LatexError("one assignment a line (name = expression) is read", line, column)
        name_node = statement.targets[0]
        assert isinstance(name_node, ast.Name)  # code_rows keeps `name = …` lines only
        name = name_node.id
        reader = _Expr(self, line, column)
        try:
            value, elementwise = reader.read(statement.value)
        except LatexError:
            self.not_read(name, text, line)
            raise
        if stage is not None:
            read = self.stage(name, value, elementwise, line, stage)
        else:
            read = self.left(name, value, elementwise, line, text)
        if reader.over_samples and read.defines not in ("dgamma", "dbeta"):
            self.not_read(name, text, line)
            raise LatexError(
                "a sum over the samples (axis 0, or (0, 1)) in LayerNorm code: only ∂L/∂γ and "
                "∂L/∂β sum over them; every other quantity is one sample's",
                line,
                column,
            )
        if (
            self.per_feature
            and read.defines in ("dgamma", "dbeta")
            and not reader.over_samples
            and READ_FROM not in text  # C: a[i] += e in the sample loops adds the samples up
        ):
            self.not_read(name, text, line)
            raise LatexError(
                f"{name} in LayerNorm code without a sum over the samples (dout.sum(0), "
                "sum((0, 1))): ∂L/∂γ and ∂L/∂β add up every sample's term, and one sample's "
                "term is not what the code's array holds",
                line,
                column,
            )
        if READ_FROM in text:
            python, statement = text.split(READ_FROM, 1)
            notes = [f"read from C as {python}"]
            written = _C_NAME.match(statement)
            if written is not None and written.group(1).startswith(f"{name}_"):
                suffix = written.group(1)[len(name) :]
                notes.append(
                    f"{written.group(1)} read as {name}: declared in the loop over the set, its "
                    f"suffix {suffix} says it is the element's value, as every line read there is"
                )
            read = dataclasses.replace(read, notes=(*read.notes, *notes))
        elif FROM_PYTHON in text:
            python, statement = text.split(FROM_PYTHON, 1)
            note = f"{statement} read as {python}: the value {name} holds after it"
            read = dataclasses.replace(read, notes=(*read.notes, note))
        return read

    def stage(
        self, name: str, value: sp.Expr, elementwise: bool, line: int, later: str
    ) -> LineRead:
        """A value of ``name`` that its next assignment computes from (``dx = dnorm - …``
        before ``dx *= rstd``): a stage, not what the name states, so a name of the post's own
        (a new symbol: dx'), which that assignment uses; the last stage states the quantity."""
        read = self.own(name, value, elementwise, line)
        if not self.states(name):
            return read  # a name of the post's own anyway (llm.c's dval): nothing to say
        note = (
            f"{name} here is a stage, read as a name of the post's own ({read.defines}): line "
            f"{later} computes {name}'s next value from it, and the last assignment of {name} "
            "says what it is"
        )
        return dataclasses.replace(read, notes=(*read.notes, note))

    def states(self, name: str) -> bool:
        """Does an assignment of ``name`` state a quantity (a forward one, a gradient, a local
        derivative, the gradient of a node of the post's own)?"""
        if name in FORWARD or _local_name(name) is not None:
            return True
        rest = name[len(self.prefix) :] if name.startswith(self.prefix) else None
        return rest is not None and (self.node_of(rest) in _ADJOINTS or rest in self.names)

    def left(self, name: str, value: sp.Expr, elementwise: bool, line: int, text: str) -> LineRead:
        index = N.i if elementwise else None
        if name in UPSTREAM:
            return _none(f"{name} is the upstream gradient ∂L/∂y, an input")
        if name in ("eps", "epsilon") and value.is_number:
            return _none(f"{name} = {value}: ε's value; the check keeps ε a symbol")
        node = _NODES.get(name)
        if name in FORWARD and node in ("mu", "var", "xhat", "y"):
            self.names.pop(name, None)  # its stages (mean = …; mean /= N) end here
            self.layer.append((node, value, line))
            lhs = getattr(N, node) if node in ("mu", "var") else sp.IndexedBase(node)[N.i]
            index = N.i if node in ("xhat", "y") else None
            return LineRead((lhs, value), node, index, index, kind="forward")
        local = _local_name(name)
        if local is not None:
            of, wrt = local
            read = self.local(name, of, wrt, value)
            own = self.own(name, value, read.index is not None, 0)  # later lines use it
            assert own.defines is not None
            self.nodes.pop(own.defines, None)
            return dataclasses.replace(read, stores=own.defines)
        if name.startswith(self.prefix):
            rest = name[len(self.prefix) :]
            node_name = self.node_of(rest)
            if node_name is not None and node_name in _ADJOINTS:
                canonical = _ADJOINTS[node_name]
                per = N.quantities(self.per_feature)[canonical]
                lhs = sp.IndexedBase(canonical)[N.i] if per else sp.Symbol(canonical)
                self.names.pop(name, None)  # its stages (dx = …; dx *= rstd) end here
                return LineRead((lhs, value), canonical, N.i if per else None, N.i if per else None)
            if rest in self.names or any(t == rest for t, _, _ in self.unread):
                return self.node_adjoint(name, rest, value, elementwise)
        return self.again(name, value, elementwise, line) or self.own(
            name, value, elementwise, line
        )

    def again(self, name: str, value: sp.Expr, elementwise: bool, line: int) -> LineRead | None:
        """A node of the post's forward graph assigned again (llm.c's backward recomputes
        ``norm = (x - mean) * rstd`` from the forward's cache).  The same value, once the post's
        forward names are written out (SymPy: the difference is 0), is the same node: the name
        keeps its place in the graph (``dnorm`` after it is ∂L/∂norm of the forward pass), and the
        line is checked against the first definition.  Another value is a new name of the
        post's own, as any reassignment, and a note says it does not take the first one's place.
        None: the name is no forward node, or the new value is computed from the old one (a
        new name, with nothing to say)."""
        known = self.names.get(name)
        node = self.nodes.get(known[0]) if known is not None else None
        if node is None or self.backward(value) or _uses(value, node.name):
            return None  # computed from its old value: its next stage (llm.c's s = s / C)
        if node.elementwise == elementwise and _same_value(
            self.written_out(node.expr), self.written_out(value)
        ):
            index = N.i if elementwise else None
            lhs = sp.IndexedBase(node.name)[N.i] if elementwise else sp.Symbol(node.name)
            note = (
                f"{name} is computed again with line {node.line}'s value (the same once the "
                f"post's names are written out): it keeps that line's place in the post's "
                f"graph, ∂L/∂{name} after it is that node's gradient, and this line is checked "
                f"against line {node.line}'s definition"
            )
            return LineRead((lhs, value), None, index, index, kind="identity", notes=(note,))
        read = self.own(name, value, elementwise, line)
        note = (
            f"{name} is assigned another value than line {node.line}'s: a new name of the post's "
            f"own here ({read.defines}), which does not take the place of line {node.line}'s "
            f"{name} in the post's graph"
        )
        return dataclasses.replace(read, notes=(*read.notes, note))

    def written_out(self, expr: sp.Expr) -> sp.Expr:
        """``expr`` with the post's forward names replaced by their right sides, down to the
        layer's names (x, μ, σ², γ, β, ε, M)."""
        for _ in range(len(self.nodes) + 1):
            swap: dict[sp.Expr, sp.Expr] = {}
            for atom in expr.atoms(sp.Indexed):
                node = self.nodes.get(str(atom.base.label))
                if node is not None:
                    swap[atom] = node.expr.xreplace({N.i: atom.indices[0]})
            for atom in expr.free_symbols:
                node = self.nodes.get(getattr(atom, "name", ""))
                if node is not None and not node.elementwise and isinstance(atom, sp.Symbol):
                    swap[atom] = node.expr
            if not swap:
                return expr
            expr = expr.xreplace(swap)
        return expr  # pragma: no cover - a forward graph has no cycle

    def local(self, name: str, of: str, wrt: str, value: sp.Expr) -> LineRead:
        """``dvar_dx``: ∂σ²/∂x_i; ``dxnorm_dmean``: ∂x̂_i/∂μ (x̂ and y at element i)."""
        if of in ("xhat", "y"):
            of_value: sp.Expr = sp.IndexedBase(of)[N.i]
        elif of in ("mu", "var"):
            of_value = getattr(N, of)
        else:
            return _none(f"{name}: a derivative of {of}, which is an input of the layer")
        wrt_value = N.x[N.i] if wrt == "x" else getattr(N, wrt)
        per = of in ("xhat", "y") or wrt == "x"
        index = N.i if per else None
        lhs = N.Partial(of_value, wrt_value, sp.Integer(0))
        return LineRead((lhs, value), f"d{of}_d{wrt}", index, index, kind="local")

    def own(self, name: str, value: sp.Expr, elementwise: bool, line: int) -> LineRead:
        """A name of the post's own: a definition (a new symbol each time it is assigned); a
        forward one is a node of the post's graph."""
        symbol = name
        while symbol in _RESERVED or symbol in self.symbols:
            symbol += "'"
        self.symbols.add(symbol)
        self.names[name] = (symbol, elementwise)
        if not self.backward(value):
            self.nodes[symbol] = _Node(symbol, elementwise, value, line)
        lhs = sp.IndexedBase(symbol)[N.i] if elementwise else sp.Symbol(symbol)
        index = N.i if elementwise else None
        return LineRead((lhs, value), symbol, index, index, kind="name")

    def backward(self, value: sp.Expr) -> bool:
        """Does a right side use a gradient: the upstream one, one of the layer's, or a value of
        the post's own that is no node of the forward graph (``dnorm`` after ``dnorm = dout * w``,
        a local derivative)?  Then the line is no forward node (``dx = dnorm - …`` is none)."""
        if _backward(value):
            return True
        symbols = {s for s, _ in self.names.values()} - set(self.nodes)
        labels = {str(a.base.label) for a in value.atoms(sp.Indexed)}
        return bool(symbols & (labels | {getattr(s, "name", "") for s in value.free_symbols}))

    # -- the gradient of a node of the post's own ---------------------------------------------------
    def node_adjoint(self, name: str, node: str, value: sp.Expr, elementwise: bool) -> LineRead:
        index = N.i if elementwise else None
        own = self.own(name, value, elementwise, 0)  # later lines use it as the post computed it
        lhs = own.lhs
        assert lhs is not None and own.defines is not None
        self.nodes.pop(own.defines, None)
        try:
            if node not in self.names or self.names[node][0] == own.defines:
                raise _Unknown(f"the line that defines {node} is not read")
            symbol, per = self.names[node]
            if symbol not in self.nodes:
                raise _Unknown(f"{node} is not a node of the forward pass")
            true, uses = self.adjoint_of(symbol, set())
        except _Unknown as exc:
            return LineRead((lhs, value), own.defines, index, index, f"∂L/∂{node}: {exc}", "node")
        if per != elementwise and not per:
            return LineRead(
                (lhs, value), own.defines, index, index,
                f"∂L/∂{node} is one number ({node} is), but this line computes one per element",
                "node",
            )  # fmt: skip
        index = N.i if per else None
        return LineRead(
            (lhs, value), own.defines, index, index, kind="node", value=true, uses=uses,
            stores=own.defines, node=node,
        )  # fmt: skip

    def adjoint_of(self, symbol: str, seen: set[str]) -> tuple[sp.Expr, tuple[int, ...]]:
        """∂L/∂symbol in the post's graph (at element i when it is per element), and the lines
        of the graph it was worked out through."""
        if symbol in seen:  # pragma: no cover - a forward graph has no cycle
            raise _Unknown("the post's graph has a cycle")
        node = self.nodes[symbol]
        post = [n for n in self.nodes.values() if n.line > node.line]
        layer = [(name, expr, line) for name, expr, line in self.layer if line > node.line]
        twice = {name for name, _, _ in layer if [n for n, _, _ in layer].count(name) > 1}
        if twice:
            which = ", ".join(sorted(_WORDS[n] for n in twice))
            raise _Unknown(
                f"{which} is computed more than once after it, so which one the gradient flows "
                "through is not said"
            )
        for target_name, text, line in self.unread:
            if line > node.line and re.search(rf"(?<![\w.]){re.escape(symbol)}(?!\w)", text):
                raise _Unknown(f"line {line} ({target_name} = …) uses it and could not be read")
        total = sp.Integer(0)
        lines: list[int] = []
        used = False
        for consumer in post:
            if not _uses(consumer.expr, symbol):
                continue
            outer, more = self.adjoint_of(consumer.name, seen | {symbol})
            total += _contribution(
                outer, consumer.expr, consumer.elementwise, symbol, node.elementwise
            )
            lines += [consumer.line, *more]
            used = True
        for name, expr, line in layer:
            if not _uses(expr, symbol):
                continue
            per = name in ("xhat", "y")
            outer = N.g[N.i] if name == "y" else self.truth("d" + name, N.i)
            total += _contribution(outer, expr, per, symbol, node.elementwise)
            lines.append(line)
            used = True
        if not used:
            later = [line for _, _, line in self.unread if line > node.line]
            if later:  # the line meant to use it may be the one not read (inv = 1/sqrt)
                raise _Unknown(
                    "no later line that was read uses it, and line "
                    f"{later[0]} after it could not be read, so its gradient is not said"
                )
            raise _Unknown("no later line of the forward pass uses it, so its gradient is not said")
        return total, tuple(sorted(set(lines)))


class _Unknown(Exception):
    """The gradient of a post's node cannot be worked out: why."""


def _none(reason: str) -> LineRead:
    return LineRead((sp.Integer(0), sp.Integer(0)), None, None, None, reason, kind="none")


def _local_name(name: str) -> tuple[str, str] | None:
    """``dvar_dx`` → (var, x), ``dxnorm_dmean`` → (xhat, mu): d<of>_d<wrt> of the layer's nodes."""
    match = re.fullmatch(r"d([A-Za-z_]+?)_d([A-Za-z_]+)", name)
    if match is None:
        return None
    of, wrt = _NODES.get(match.group(1)), _NODES.get(match.group(2))
    if of is None or wrt is None:
        return None
    return of, wrt


def _backward(expr: sp.Expr) -> bool:
    """Does a right side use the upstream gradient or a gradient (then it is no forward node)?"""
    labels = {str(a.base.label) for a in expr.atoms(sp.Indexed)}
    symbols = {s.name for s in expr.free_symbols if isinstance(s, sp.Symbol)}
    adjoints = set(_ADJOINTS.values())
    return bool(labels & (adjoints | {"g"}) or symbols & adjoints)


def _uses(expr: sp.Expr, symbol: str) -> bool:
    if any(str(a.base.label) == symbol for a in expr.atoms(sp.Indexed)):
        return True
    return any(isinstance(s, sp.Symbol) and s.name == symbol for s in expr.free_symbols)


def _contribution(
    outer: sp.Expr, expr: sp.Expr, consumer_per: bool, symbol: str, per: bool
) -> sp.Expr:
    """∂L/∂u · ∂u/∂v for one consumer u (right side ``expr`` at element i, ∂L/∂u ``outer``) of
    the node v: the chain rule in index notation, summed over u's elements when u is per
    element; for a per-element v, worked out at a fresh element j (the δ_jk of ∂v_k/∂v_j
    reduced) and written at element i."""
    s = sp.Dummy("s", integer=True)
    j = sp.Dummy("j", integer=True)
    if consumer_per:
        outer, expr = outer.xreplace({N.i: s}), expr.xreplace({N.i: s})
    wrt = sp.IndexedBase(symbol)[j] if per else sp.Symbol(symbol)
    term = outer * sp.diff(expr, wrt)
    if consumer_per:
        term = N.reduce_sum(term, s)
    return _reduce_deltas(term).xreplace({j: N.i})


def _same_value(a: sp.Expr, b: sp.Expr) -> bool:
    """Is ``a − b`` zero for SymPy, the letters of Σ renamed alike (Σ_k x_k is Σ_j x_j)?"""
    try:
        return sp.simplify(_bound_letters(a) - _bound_letters(b)) == 0
    except (TypeError, ValueError, RecursionError):  # pragma: no cover - SymPy gave up
        return False


def _bound_letters(expr: sp.Expr) -> sp.Expr:
    return _letters_by_height(expr)[0]


def _letters_by_height(expr: sp.Expr) -> tuple[sp.Expr, int]:
    """Each Σ's letter renamed by its height (1 + the most Σ nested in its body): two sums
    alike but for their letters become equal, and a Σ inside another never shares its letter."""
    if not expr.args:
        return expr, 0
    parts = [_letters_by_height(a) for a in expr.args]
    height = max(h for _, h in parts)
    if isinstance(expr, sp.Sum) and len(expr.limits) == 1:
        letter, low, high = expr.limits[0]
        named = sp.Symbol(f"_k{height}", integer=True)
        return sp.Sum(parts[0][0].xreplace({letter: named}), (named, low, high)), height + 1
    return expr.func(*[p for p, _ in parts]), height


def _reduce_deltas(expr: sp.Expr) -> sp.Expr:
    """Σ_k δ_jk f(k) → f(j) wherever a term of a sum's body is a delta times something
    (bottom up); any other term stays in the sum."""
    if isinstance(expr, sp.Sum) and len(expr.limits) == 1:
        body = _reduce_deltas(expr.function)
        (k, low, high) = expr.limits[0]
        out = sp.Integer(0)
        kept = sp.Integer(0)
        for term in sp.Add.make_args(sp.expand_mul(body)):
            factors = sp.Mul.make_args(term)
            delta = next(
                (
                    d
                    for d in factors
                    if isinstance(d, sp.KroneckerDelta)
                    and k in d.free_symbols
                    and len(d.free_symbols) == 2
                ),
                None,
            )
            if delta is None:
                kept += term
                continue
            other = next(iter(delta.free_symbols - {k}))
            rest = [f for f in factors if f is not delta]
            out += sp.Mul(*rest).xreplace({k: other})
        if kept != 0:
            out += sp.Sum(kept, (k, low, high))
        return out
    if not expr.args:
        return expr
    return expr.func(*[_reduce_deltas(a) for a in expr.args])


# -- the right side: NumPy arithmetic at element i -------------------------------------------------
_BINARY = {ast.Add: sp.Add, ast.Sub: None, ast.Mult: sp.Mul, ast.Div: None, ast.Pow: sp.Pow}


@dataclass
class _Expr:
    reader: CodeReader
    line: int
    column: int
    over_samples: bool = False  # LayerNorm: a sum over the samples was read (∂L/∂γ, ∂L/∂β)

    def fail(self, node: ast.AST, message: str) -> LatexError:
        return LatexError(message, self.line, self.column + getattr(node, "col_offset", 0))

    def read(self, node: ast.AST) -> tuple[sp.Expr, bool]:
        """(value at element i, is it one value per element)."""
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, int | float)
            and not isinstance(node.value, bool)
        ):
            return sp.Rational(repr(node.value)), False
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            value, per = self.read(node.operand)
            return (-value if isinstance(node.op, ast.USub) else value), per
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            (a, pa), (b, pb) = self.read(node.left), self.read(node.right)
            op = type(node.op)
            if op is ast.Pow and pb:
                raise self.fail(node, "a power with a per-element exponent is not read")
            value = {
                ast.Add: lambda: a + b,
                ast.Sub: lambda: a - b,
                ast.Mult: lambda: a * b,
                ast.Div: lambda: a / b,
                ast.Pow: lambda: a**b,
            }[op]()
            return value, pa or pb
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.Subscript):
            return self.subscript(node)
        raise self.fail(
            node,
            f"{_kind(node)} is not read in code (NumPy arithmetic, np.sum, np.mean, np.sqrt are)",
        )

    def name(self, node: ast.Name) -> tuple[sp.Expr, bool]:
        name = node.id
        reader = self.reader
        if name in reader.names:
            symbol, per = reader.names[name]
            return (sp.IndexedBase(symbol)[N.i] if per else sp.Symbol(symbol)), per
        unread = [line for target_name, _, line in reader.unread if target_name == name]
        if unread:  # before the fixed meanings: a post's m is its own, not the size
            raise self.fail(
                node, f"{name}: the line that defines it (line {unread[-1]}) is not read"
            )
        if name in UPSTREAM:
            return N.g[N.i], True
        if name in ("x", "X"):
            return N.x[N.i], True
        if name == "sigma2":
            return N.var, False
        if name in FORWARD:
            node_name = FORWARD[name]
            if node_name in ("mu", "var"):
                return getattr(N, node_name), False
            return sp.IndexedBase(node_name)[N.i], True
        node = reader.node_of(name)
        if node in ("gamma", "beta") and reader.per_feature:  # LayerNorm: one per feature
            return sp.IndexedBase(node)[N.i], True
        if node == "x":  # llm.c's inp
            return N.x[N.i], True
        if name in ("gamma", "beta"):
            return getattr(N, name), False
        if name in ("eps", "epsilon"):
            return N.eps, False
        if name in _SIZES or (reader.per_feature and name in reader.set_sizes):
            return N.M, False
        rest = (
            reader.node_of(name[len(reader.prefix) :]) if name.startswith(reader.prefix) else None
        )
        if rest is not None:
            canonical = _ADJOINTS.get(rest)
            if canonical is not None:
                per = N.quantities(reader.per_feature)[canonical]
                return (sp.IndexedBase(canonical)[N.i] if per else sp.Symbol(canonical)), per
        raise self.fail(node, f"unknown name {name}: no earlier line defines it")

    def call(self, node: ast.Call) -> tuple[sp.Expr, bool]:
        func = node.func
        if (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id in ("np", "numpy")
        ):
            name, args = func.attr, list(node.args)
        elif isinstance(func, ast.Attribute) and func.attr in ("sum", "mean"):
            name, args = func.attr, [func.value, *node.args]  # e.sum(axis=0)
        elif isinstance(func, ast.Name) and func.id == "len" and len(node.args) == 1:
            return N.M, False
        else:
            raise self.fail(
                node,
                "only NumPy's np.sum, np.mean, np.var, np.sqrt, np.square, np.ones are read in code",
            )
        keywords = {k.arg: k.value for k in node.keywords}
        if name in ("sum", "mean", "var"):
            return self.reduction(node, name, args, keywords)
        if name in ("sqrt", "square", "exp", "abs") and len(args) == 1 and not keywords:
            value, per = self.read(args[0])
            return {"sqrt": sp.sqrt, "square": lambda v: v**2, "exp": sp.exp, "abs": sp.Abs}[name](
                value
            ), per
        if name in ("ones", "ones_like"):
            return sp.Integer(1), True
        if name == "power" and len(args) == 2:
            (a, pa), (b, pb) = self.read(args[0]), self.read(args[1])
            if pb:
                raise self.fail(node, "a power with a per-element exponent is not read")
            return a**b, pa
        raise self.fail(node, f"np.{name} is not read in code")

    def reduction(
        self, node: ast.Call, name: str, args: list[ast.expr], keywords: dict
    ) -> tuple[sp.Expr, bool]:
        axis = keywords.pop("axis", keywords.pop("dim", args[1] if len(args) > 1 else None))
        keywords.pop("keepdims", None)
        keywords.pop("keepdim", None)  # PyTorch's
        if not args or keywords or len(args) > 2:
            raise self.fail(node, f"np.{name}(array, axis=0) is read")
        if self.reader.per_feature:
            return self.layer_reduction(node, name, args[0], axis)
        if not (isinstance(axis, ast.Constant) and axis.value == 0):
            raise self.fail(
                node,
                f"np.{name} over an axis other than 0: code is read in the (N, D) layout, the batch on axis 0",
            )
        value, per = self.read(args[0])
        if not per:
            raise self.fail(
                node, f"np.{name} of one number per feature: a sum over the batch needs an array"
            )
        k = sp.Dummy("k", integer=True)
        total = N.reduce_sum(value.xreplace({N.i: k}), k)
        if name == "sum":
            return total, False
        mean = total / N.M
        if name == "mean":
            return mean, False
        k2 = sp.Dummy("k", integer=True)
        return N.reduce_sum((value.xreplace({N.i: k2}) - mean) ** 2, k2) / N.M, False

    def layer_reduction(
        self, node: ast.Call, name: str, array: ast.expr, axis: ast.expr | None
    ) -> tuple[sp.Expr, bool]:
        """LayerNorm code (Karpathy's llm.c, B,T,C): the set is the last axis (-1), so
        ``x.sum(-1, keepdim=True)`` is Σ_k x_k; a sum over the leading axes (0, (0, 1)) runs
        over the samples, whose term for this sample is what ∂L/∂γ_i and ∂L/∂β_i add
        (``CodeReader.read`` refuses it anywhere else)."""
        value, per = self.read(array)
        if not per:
            raise self.fail(node, f"{name} of one number per sample: a sum needs an array")
        try:
            axes = ast.literal_eval(axis) if axis is not None else None
        except ValueError:
            axes = None
        leading = axes == 0 or (isinstance(axes, tuple) and axes == tuple(range(len(axes))))
        if leading and name == "sum":
            self.over_samples = True
            return value, True
        if axes != -1 or name == "var":
            raise self.fail(
                node,
                f"{name} over an axis other than -1 (the features) or the leading ones (the "
                "samples, for ∂L/∂γ and ∂L/∂β): LayerNorm code is read with the set last",
            )
        k = sp.Dummy("k", integer=True)
        total = N.reduce_sum(value.xreplace({N.i: k}), k)
        return (total if name == "sum" else total / N.M), False

    def subscript(self, node: ast.Subscript) -> tuple[sp.Expr, bool]:
        value = node.value
        if (
            isinstance(value, ast.Attribute)
            and value.attr == "shape"
            and isinstance(node.slice, ast.Constant)
            and node.slice.value == 0
        ):
            return N.M, False
        raise self.fail(node, "indexing is not read in code, except x.shape[0] (the batch size)")


def _kind(node: ast.AST) -> str:
    return {ast.Compare: "a comparison", ast.Tuple: "a tuple", ast.Lambda: "a lambda"}.get(
        type(node), f"a {type(node).__name__}"
    )
