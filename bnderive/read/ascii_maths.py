"""Maths written in ASCII inside a code block: the rows of a post's code that are not Python but
a derivation typed with the keyboard (issue 12), read as data like the code around them (parsed
by Python's ``ast`` after the notation below is made explicit, never compiled or run).

Posts that derive the backward pass in plain text next to their NumPy code (the CS231n notes of
GitHub user zbgzbg2007, 2017) write it in the names of that code:

* a chain ``dx1 = dnorm/dx * dnorm = dnorm * (var + eps) ** (-0.5)``, broken across rows after
  a trailing ``=``: every member is read, and each must equal the left side;
* derivative quotients ``dA/dB`` of two names (``dnorm_ij/dvar_j``, ``dmu_j/dx_ij``): the local
  derivative of A with respect to B.  A layer node (``mu``, ``var``) is differentiated as the
  layer defines it; a node of the post's own graph (``norm = (x - mu) / np.sqrt(var + eps)``)
  as its line is written, the other names of that line held fixed, as a staged graph computes
  it; when one of those names depends on B too (``xn = cen * inv``, ``cen = x - avg``: dxn/dx),
  held fixed or through it is not said, and the quotient is not checked (the LaTeX reader's
  rule), unless the member writes the path through that name (``dout/dcen_ij * …``).  The upstream gradient's name without an index (``dout/dvar_j``) is the loss's
  differential: ``dout`` names ∂L/∂out, and ``out`` without an element is not one element of the
  output, so ``dout/dvar_j`` is ∂L/∂σ² (the line says so);
* index suffixes ``x_ij``, ``mu_j``, ``dout_ij``: i is the element of the line (or of the sum
  that binds it), j the feature, dropped as the LaTeX reader drops it;
* ``sum_i`` before a product: the sum over the elements i of the rest of the term
  (``sum_i a_i * b_i + c`` is (Σ a b) + c), as ``\\sum_i`` reads in LaTeX.

Anything else in such a row is not read, with the reason; a row not read leaves its name
unknown to the rows after it, as a code row does.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from dataclasses import dataclass, field

import sympy as sp

from bnderive.core import notation as N
from bnderive.core import python_syntax
from bnderive.read.c_code import READ_FROM, refusal
from bnderive.read.code_lines import (
    _NODES,
    FORWARD,
    MATHS_LEFT,
    UPSTREAM,
    CodeReader,
    _Expr,
    _local_name,
    _Node,
    _Unknown,
)
from bnderive.read.latex_results import LatexError, LineRead, NotCheckable
from bnderive.read.own_graph import hidden_path

_SUM = re.compile(r"\bsum_([a-z])\b")
_SUFFIX = re.compile(r"([A-Za-z][A-Za-z0-9]*?)_([a-z]{1,2})")
_SUFFIXED = re.compile(r"\b[A-Za-z][A-Za-z0-9]*_[ij]{1,2}\b")
#: The element letters of index suffixes (the row's element, or a sum's); j is the feature.
_ELEMENT = "iklmnpq"
_FEATURE = "j"
#: The suffixes that make a Python name ASCII maths (x_i, mu_j, x_ij); ``x_in`` is not one.
_ONE_INDEX = re.compile(r"[iklmnpq]j?|j")


def members(text: str) -> list[str]:
    """The members of a row, cut at each '=' outside brackets (not ==, <=, >=, !=)."""
    out, depth, start = [], 0, 0
    for k, c in enumerate(text):
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif (
            c == "="
            and depth == 0
            and text[k + 1 : k + 2] != "="
            and text[k - 1 : k] not in ("=", "<", ">", "!")
        ):
            out.append(text[start:k])
            start = k + 1
    out.append(text[start:])
    return [m.strip() for m in out]


def is_maths_row(text: str) -> bool:
    """A code row that is ASCII maths: a chain ``a = b = c`` that is not Python (Python's
    ``dW = db = 0`` is code: two names set to 0, no claim that they are equal) or a quotient on
    the left."""
    if MATHS_LEFT.match(text.strip()):
        return True
    if len(members(text)) <= 2:
        return False
    try:
        python_syntax.parse(text)
    except SyntaxError:
        return True
    return False


def read_row(code: CodeReader, text: str, line: int, column: int) -> LineRead:
    """One row of a code block: ASCII maths when it is a chain or states a quotient; else
    Python, and ASCII maths only when Python cannot read it and the row writes its notation
    (``dout/dmu_j * dmu_j/dx_ij``: two quotients, not a division of arrays; ``x_i``, ``sum_i``,
    ``^``).  A row can be both: ``var = 1/N * sum_i (x_i - mu)^2`` parses as Python (a call of
    ``sum_i``, ``^`` its XOR), but names no code line defines, in the index-suffix form, and
    ``^`` (no BatchNorm code means XOR) say it is maths; it is read so, with a note.  A row
    whose names the code defines is read as code, whatever they look like."""
    if is_maths_row(text) and refusal(text) is None and READ_FROM not in text:
        return AsciiReader(code).read(text, line, column)
    try:
        return code.read(text, line, column)
    except LatexError as exc:
        if refusal(text) is not None or READ_FROM in text:
            raise  # C, translated: never ASCII maths
        why = _python_but_maths(code, text)
        if not (why or _QUOTIENT.search(text) or _SUM.search(text) or _SUFFIXED.search(text)):
            raise
        code.unread.pop()  # the row is tried as ASCII maths, which says if it is not read
        try:
            read = AsciiReader(code).read(text, line, column)
        except LatexError:
            if why:  # maths by its names or ^: the ASCII reading says why it is not read
                raise
            raise exc from None
        return _with_notes(read, [why]) if why else read


def _python_but_maths(code: CodeReader, text: str) -> str | None:
    """The note for a row that parses as Python and was read as ASCII maths: what says so."""
    try:
        tree = python_syntax.parse(text)
    except SyntaxError:
        return None  # not Python: plainly maths, no note needed
    names = dict.fromkeys(
        node.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Name)
        and (_SUM.fullmatch(node.id) or _ONE_INDEX.fullmatch(_split(node.id, code)[1]))
    )
    reasons = []
    if names:
        reasons.append(
            f"{', '.join(names)}: no code line defines them, and they have the form of index "
            "suffixes (x_i) and sums (sum_i)"
        )
    if "^" in text:
        reasons.append(
            "^ is a power in ASCII maths (in Python it is XOR, which no BatchNorm code means)"
        )
    if not reasons:
        return None
    return "read as ASCII maths though it parses as Python: " + "; ".join(reasons)


def explicit_sums(text: str) -> str:
    """``sum_i a * b + c`` → ``sum_i(a * b) + c``: the body of ``sum_i`` is the rest of its
    term (up to a '+' or '−' between terms, or the bracket that closes around it)."""
    match = _SUM.search(text)
    if match is None:
        return text
    start = match.end()
    depth, k, end = 0, start, len(text)
    while k < len(text):
        c = text[k]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            if depth == 0:
                end = k
                break
            depth -= 1
        elif c in "+-" and depth == 0 and _binary(text, k, start):
            end = k
            break
        k += 1
    body = explicit_sums(text[start:end])
    return text[: match.end()] + "(" + body + ")" + explicit_sums(text[end:])


_QUOTIENT = re.compile(r"(?<![\w.])(d[A-Za-z_0-9]*)\s*/\s*(d[A-Za-z_0-9]*)\b")


def explicit_quotients(text: str) -> str:
    """``dout/dnorm_ij * dnorm_ij/dvar_j`` → ``(dout/dnorm_ij) * (dnorm_ij/dvar_j)``: a
    quotient of two d-names is one factor (Python would read ((a/b)·c)/d)."""

    def wrap(match: re.Match[str]) -> str:
        before = text[: match.start()].rstrip()
        if before.endswith("/"):  # a / dA / dB: left as Python reads it
            return match.group(0)
        return f"({match.group(1)}/{match.group(2)})"

    return _QUOTIENT.sub(wrap, text)


def _binary(text: str, k: int, start: int) -> bool:
    """Is the sign at ``k`` between two terms (not a sign, not an exponent's 1e-5)?"""
    before = text[start:k].rstrip()
    if not before:
        return False
    last = before[-1]
    if last in "*/(+-,":
        return False
    return not re.search(r"\d[eE]$", before)


@dataclass
class AsciiReader:
    """The ASCII maths rows of a document, read with its code's names (``CodeReader``)."""

    code: CodeReader
    notes: list[str] = field(default_factory=list)
    #: the post's nodes whose loss gradient the member being read spells out (dout/dxmu_ij)
    held: set[str] = field(default_factory=set)

    def read(self, text: str, line: int, column: int) -> LineRead:
        self.notes = []
        parts = members(text)
        try:
            read = self.read_members(parts, line, column)
        except LatexError:
            left = parts[0].split("/")[0].strip()
            self.code.unread.append((left, text, line))
            raise
        return _with_notes(read, self.notes)

    def read_members(self, parts: list[str], line: int, column: int) -> LineRead:
        """Each member of the row; one that is understood but not checkable (``NotCheckable``)
        is None with its reason, as in a LaTeX line, and the others are read."""
        values: list[tuple[sp.Expr, bool] | None] = []
        errors: list[str] = []
        for part in parts[1:]:
            if not part:
                raise LatexError("a member of the chain is empty", line, column)
            try:
                values.append(self.value(part, line, column))
                errors.append("")
            except NotCheckable as exc:
                values.append(None)
                errors.append(exc.reason)
        sides = [v[0] if v is not None else None for v in values]
        left = parts[0]
        if re.fullmatch(r"[A-Za-z_][A-Za-z_0-9]*", left):
            first = next((k for k, v in enumerate(values) if v is not None), None)
            if first is None:  # understood, but no member says what the name's value is
                self.code.not_read(_split(left, self.code)[0], " = ".join(parts), line)
                return LineRead((sp.Integer(0), sp.Integer(0)), None, None, None, errors[0], "none")
            value, per = values[first]  # type: ignore[misc]
            _no_shadowed_sum(per, parts, line, column)
            name = self.left_name(left, per, line, column)
            read = self.code.left(name, value, per, line, left + " = " + parts[1 + first])
            read = _replace_sides(read, [read.sides[0], *sides])
            return dataclasses.replace(read, member_errors=tuple(errors))
        quotient = self.expression(left, line, column)
        if not isinstance(quotient, ast.BinOp) or not isinstance(quotient.op, ast.Div):
            raise LatexError(
                "the left side of an ASCII maths row is a quotient dA/dB", line, column
            )
        self.held = set()
        try:
            read = self.quotient_line(quotient, sides, line, column)
        except NotCheckable as exc:  # the left side: understood, but which derivative?
            return LineRead((sp.Integer(0), sp.Integer(0)), None, None, None, exc.reason, "none")
        _no_shadowed_sum(read.index is not None, parts, line, column)
        return dataclasses.replace(read, member_errors=tuple(errors))

    def left_name(self, left: str, per: bool, line: int, column: int) -> str:
        """``xhat_i`` → xhat, ``dx_i`` → dx, ``dbeta_j`` → dbeta: a suffix on the left side is
        the row's element i (or the feature j), so the row states the quantity the name
        stands for; a name the code knows whole (``x_hat``) keeps its underscore."""
        base, letters = _split(left, self.code)
        element = [c for c in letters if c in _ELEMENT]
        if element and element != ["i"]:
            raise LatexError(
                f"{left}: the element index of a row's left side is i (the row's element)",
                line,
                column,
            )
        if element and not per and base not in _ADJOINT_OF.values():
            raise LatexError(
                f"{left}: one element, but its right side is one number per feature",
                line,
                column,
            )
        return base

    def expression(self, text: str, line: int, column: int) -> ast.expr:
        try:
            maths = explicit_quotients(explicit_sums(text.replace("^", "**")))
            tree = python_syntax.parse(maths, mode="eval")
        except SyntaxError as exc:
            raise LatexError(
                f"ASCII maths not read ({exc.msg}): expected NumPy arithmetic, dA/dB "
                "quotients, sum_i and index suffixes (x_ij)",
                line,
                column + max((exc.offset or 1) - 1, 0),
            ) from None
        return tree.body

    def value(self, text: str, line: int, column: int) -> tuple[sp.Expr, bool]:
        tree = self.expression(text, line, column)
        reader = _Ascii(self.code, line, column, self)
        self.held = reader.spelled_out(tree)
        return reader.read(tree)

    def quotient_line(
        self, quotient: ast.BinOp, values: list[sp.Expr], line: int, column: int
    ) -> LineRead:
        """``dout/dvar_j = …`` states ∂L/∂σ²; ``dnorm_ij/dvar_j = …`` a local derivative."""
        reader = _Ascii(self.code, line, column, self)
        num, den = reader.differential(quotient.left), reader.differential(quotient.right)
        if num is None or den is None:
            raise LatexError(
                "the left side of an ASCII maths row is a quotient dA/dB", line, column
            )
        value, per = reader.derivative(num, den, quotient)
        index = N.i if per else None
        if num.loss and den.layer and den.node in _ADJOINT_OF:
            name = _ADJOINT_OF[den.node]
            lhs = sp.IndexedBase(name)[N.i] if per else sp.Symbol(name)
            return LineRead((lhs, *values), name, index, index)
        if not num.loss and num.layer and den.layer:
            return LineRead(
                (value, *values), f"d{num.node}_d{den.node}", index, index, kind="local"
            )
        return LineRead((value, *values), None, index, index, kind="identity")


_ADJOINT_OF = {"x": "dx", "var": "dvar", "mu": "dmu", "gamma": "dgamma", "beta": "dbeta"}
_ADJOINT_OF["xhat"] = "dxhat"


@dataclass
class _Differential:
    """dA of a quotient: the loss (``dout``), a layer node or a node of the post's graph."""

    name: str  # as written, without its suffix
    node: str  # the layer's node (x, mu, var, xhat, y, gamma, beta) or the post's symbol
    layer: bool
    loss: bool
    value: sp.Expr | None
    per: bool


class _Ascii(_Expr):
    """One member of an ASCII maths row: NumPy arithmetic (``_Expr``) with suffixes, sums and
    quotients."""

    def __init__(self, code: CodeReader, line: int, column: int, owner: AsciiReader) -> None:
        super().__init__(code, line, column)
        self.owner = owner
        self.bound: dict[str, sp.Symbol] = {}  # a sum's letter → its element

    def element(self, letter: str | None) -> sp.Expr:
        """The element a suffix letter (or a bare name, None) stands for."""
        if letter is None:
            return list(self.bound.values())[-1] if self.bound else N.i
        if letter in self.bound:
            return self.bound[letter]
        if letter == "i":
            return N.i
        raise LatexError(f"the element index {letter} is bound by no sum", self.line, self.column)

    def name(self, node: ast.Name) -> tuple[sp.Expr, bool]:
        base, letters = _split(node.id, self.reader)
        plain = ast.Name(id=base, ctx=ast.Load())
        ast.copy_location(plain, node)
        value, per = super().name(plain)
        element = [c for c in letters if c in _ELEMENT]
        if per:
            if letters and not element:
                raise self.fail(
                    node, f"{node.id}: an array per element with the feature index alone"
                )
            value = value.xreplace({N.i: self.element(element[0] if element else None)})
        elif element:
            raise self.fail(node, f"{node.id}: one number per feature with an element index")
        return value, per

    def read(self, node: ast.AST) -> tuple[sp.Expr, bool]:
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            num, den = self.differential(node.left), self.differential(node.right)
            if num is not None and den is not None:
                return self.derivative(num, den, node)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if re.fullmatch(r"sum_[a-z]", node.func.id):
                return self.sum(node)
            if node.func.id == "sqrt" and len(node.args) == 1 and not node.keywords:
                value, per = self.read(node.args[0])  # sqrt(var + eps): √, as np.sqrt
                return sp.sqrt(value), per
        return super().read(node)

    def sum(self, node: ast.Call) -> tuple[sp.Expr, bool]:
        assert isinstance(node.func, ast.Name)
        letter = node.func.id[-1]
        if letter == _FEATURE or letter in self.bound or len(node.args) != 1:
            raise self.fail(node, f"sum_{letter}: a sum over the elements binds a new letter")
        k = sp.Dummy(letter, integer=True)
        self.bound[letter] = k
        try:
            body, per = self.read(node.args[0])
        finally:
            del self.bound[letter]
        if not per:
            raise self.fail(node, f"sum_{letter} of one number per feature")
        return N.reduce_sum(body, k), False

    # -- quotients ---------------------------------------------------------------------------
    def spelled_out(self, tree: ast.AST) -> set[str]:
        """The post's nodes Z whose loss gradient ``dout/dZ`` a member writes: it spells out
        the path through Z (``hidden_paths``)."""
        found: set[str] = set()
        for node in ast.walk(tree):
            if not (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)):
                continue
            try:
                num, den = self.differential(node.left), self.differential(node.right)
            except LatexError:
                continue  # an index bound by a sum around it: read (or refused) in place
            if num is not None and num.loss and den is not None and not den.layer:
                found.add(den.node)
        return found

    def differential(self, node: ast.AST) -> _Differential | None:
        if not isinstance(node, ast.Name) or not node.id.startswith("d") or len(node.id) < 2:
            return None
        base, letters = _split(node.id[1:], self.reader, quotient=True)
        element = [c for c in letters if c in _ELEMENT]
        if ("d" + base) in UPSTREAM and not letters:
            return _Differential(base, "loss", False, True, None, False)
        forward = {**FORWARD, "x": "x", "X": "x", "gamma": "gamma", "beta": "beta"}
        if base in self.reader.names:
            symbol, per = self.reader.names[base]
            if symbol not in self.reader.nodes:
                return None  # a name of the post's own that is no node of its forward graph
            value = sp.IndexedBase(symbol)[N.i] if per else sp.Symbol(symbol)
            return self._indexed(_Differential(base, symbol, False, False, value, per), element)
        if base in forward:
            node_name = forward[base]
            per = node_name in ("x", "xhat", "y")
            value = sp.IndexedBase(node_name)[N.i] if per else getattr(N, node_name)
            return self._indexed(_Differential(base, node_name, True, False, value, per), element)
        return None

    def _indexed(self, d: _Differential, element: list[str]) -> _Differential:
        if d.per and d.value is not None:
            d.value = d.value.xreplace({N.i: self.element(element[0] if element else None)})
        return d

    def derivative(
        self, num: _Differential, den: _Differential, node: ast.AST
    ) -> tuple[sp.Expr, bool]:
        if den.loss or den.value is None:
            raise self.fail(node, f"d{num.name}/d{den.name} is not a derivative bnderive knows")
        if num.loss:
            return self.loss_gradient(den, node)
        if num.per and den.per and num.value.indices != den.value.indices:  # type: ignore[union-attr]
            raise self.fail(
                node, f"d{num.name}/d{den.name} between two elements: a Jacobian is not read here"
            )
        per = num.per or den.per
        element = _element_of(num) if num.per else _element_of(den) if den.per else N.i
        assert num.value is not None
        of, wrt = _at(num.value, N.i), _at(den.value, N.i)
        if num.layer:
            if not den.layer:
                raise self.fail(
                    node, f"d{num.name}/d{den.name}: {den.name} is not a node of the layer"
                )
            return N.Partial(of, wrt, sp.Integer(0)).xreplace({N.i: element}), per
        # a node of the post's graph: its line as written, the other names held fixed, when
        # none of them depends on the denominator too (``hidden_paths``)
        expr = self.reader.nodes[num.node].expr
        self.hidden_paths(num, den, expr)
        value = sp.diff(expr, wrt)
        return value.xreplace({N.i: element}), per

    def hidden_paths(self, num: _Differential, den: _Differential, expr: sp.Expr) -> None:
        """``dxn/dx`` with ``xn = xmu * inv``: held fixed, xmu and inv (which depend on x too)
        give the local derivative of the post's graph; through them, the total one.  The
        notation does not say which, so it is not checked (the LaTeX reader's rule,
        ``documents._Builder.no_hidden_path``), unless the member spells out the path through
        each of them (``dout/dxmu_ij * dxn_ij/dx_ij + …``): then it is the local one."""
        nodes = self.reader.nodes
        through = [
            name
            for name in sorted(_names(expr) & set(nodes))
            if name != den.node and _depends(nodes, name, den.node, set())
        ]
        layer = sorted(_names(expr) & _DEPEND_ON.get(den.node, set()))
        if layer and not through:  # norm = (x - mu) / np.sqrt(var + eps): dnorm/dx, μ σ² held
            self.owner.notes.append(
                f"d{num.name}/d{den.name} with {', '.join(_LAYER_WORDS[n] for n in layer)} "
                f"held fixed: the local derivative of the post's graph ({num.name}'s line as "
                "written), not the total one"
            )
        if not through:
            return
        words = [_written(self.reader, name) for name in through]
        if not set(through) <= self.owner.held:
            raise NotCheckable(hidden_path(num.name, words, den.name), self.line, self.column)
        self.owner.notes.append(
            f"d{num.name}/d{den.name} with {', '.join(words)} held fixed: the row spells out "
            "the path through each (dout/d…)"
        )

    def loss_gradient(self, den: _Differential, node: ast.AST) -> tuple[sp.Expr, bool]:
        """``dout/dZ``: ∂L/∂Z (the line says it read dout so)."""
        self.owner.notes.append(
            f"dout/d{den.name} read as ∂L/∂{den.name}: dout names ∂L/∂out, and out without an "
            "element is not one element of the output"
        )
        if den.layer and den.node in _ADJOINT_OF:
            name = _ADJOINT_OF[den.node]
            if den.per:
                return sp.IndexedBase(name)[den.value.indices[0]], True  # type: ignore[union-attr]
            return sp.Symbol(name), False
        if den.layer:
            raise self.fail(
                node, f"dout/d{den.name}: ∂L/∂{den.name} is not a gradient bnderive checks"
            )
        try:
            true, _ = self.reader.adjoint_of(den.node, set())
        except _Unknown as exc:
            raise self.fail(node, f"dout/d{den.name}: ∂L/∂{den.name}: {exc}") from None
        if den.per:
            true = true.xreplace({N.i: den.value.indices[0]})  # type: ignore[union-attr]
        return true, den.per


def _no_shadowed_sum(per: bool, parts: list[str], line: int, column: int) -> None:
    """A row about element i with ``sum_i`` in it: is a factor after the sum's first that uses
    i inside the sum or the row's i?  The notation does not say (as for \\sum_i in LaTeX)."""
    if per and any(re.search(r"\bsum_i\b", part) for part in parts[1:]):
        raise LatexError(
            "sum_i on a row about element i: whether a factor after the sum's first is inside "
            "the sum or the row's i cannot be told; write the sum over another letter (sum_k)",
            line,
            column,
        )


def _element_of(d: _Differential) -> sp.Expr:
    assert isinstance(d.value, sp.Indexed)
    return d.value.indices[0]


def _at(value: sp.Expr, index: sp.Expr) -> sp.Expr:
    return value.xreplace({value.indices[0]: index}) if isinstance(value, sp.Indexed) else value


def _split(name: str, reader: CodeReader, quotient: bool = False) -> tuple[str, str]:
    """``x_ij`` → (x, ij), ``var_j`` → (var, j); a name the code knows as a whole (``x_hat``,
    ``dvar_dx``) keeps its underscore."""
    if _known(name, reader) or (not quotient and _local_name(name) is not None):
        return name, ""
    match = _SUFFIX.fullmatch(name)
    if match is None or not all(c in _ELEMENT + _FEATURE for c in match.group(2)):
        return name, ""
    return match.group(1), match.group(2)


def _known(name: str, reader: CodeReader) -> bool:
    return name in reader.names or name in FORWARD or name in _NODES or name in UPSTREAM


def _replace_sides(read: LineRead, sides: list[sp.Expr]) -> LineRead:
    return dataclasses.replace(read, sides=tuple(sides))


def _with_notes(read: LineRead, notes: list[str]) -> LineRead:
    return dataclasses.replace(read, notes=tuple(dict.fromkeys([*read.notes, *notes])))


_DEPEND_ON = {"x": {"mu", "var", "xhat", "y"}, "mu": {"xhat", "y"}, "var": {"xhat", "y"}}
_DEPEND_ON["xhat"] = {"y"}
"""The layer's nodes that depend on another of its nodes (a post's name using them does too)."""


_LAYER_WORDS = {"mu": "μ", "var": "σ²", "xhat": "x̂", "y": "y"}


def _names(expr: sp.Expr) -> set[str]:
    """The symbols and array bases ``expr`` names."""
    out = {s.name for s in expr.free_symbols if isinstance(s, sp.Symbol)}
    return out | {str(a.base.label) for a in expr.atoms(sp.Indexed)}


def _depends(nodes: dict[str, _Node], name: str, on: str, seen: set[str]) -> bool:
    """Whether the post's node ``name`` depends on the node ``on`` (a layer's node or the
    post's), through the lines that define it."""
    node = nodes.get(name)
    if node is None or name in seen:
        return False
    used = _names(node.expr)
    if on in used or used & _DEPEND_ON.get(on, set()):
        return True
    return any(_depends(nodes, other, on, seen | {name}) for other in used & set(nodes))


def _written(reader: CodeReader, symbol: str) -> str:
    """The name a post wrote for one of its nodes (a symbol may carry primes)."""
    return next((name for name, (s, _) in reader.names.items() if s == symbol), symbol)
