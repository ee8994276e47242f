"""Reading derivations as posts write them: LaTeX to bnderive's index notation.

``latex.lark`` is the syntax (an unambiguous LALR(1) grammar); a lark ``Transformer`` turns its
tree into a small syntax tree, and ``_Meaning`` gives that tree its mathematical meaning in the
notation of ``notation.py``.  Nothing is dropped: an unknown macro, a letter that means nothing
here, a sum over part of the reduction set are ``LatexError`` naming the token, its line and
column and what was expected.  (SymPy's ``parse_latex`` reads ``\\hat{x}_i`` as ``hat*x`` and
``g_k(x_k-\\mu)`` as a function call; see DESIGN.md §7.)

The reader's parts, by concern: ``latex_syntax`` (the grammar's tree as a small syntax tree;
lark's errors in words), ``latex_vocabulary`` (what the letters and words mean; the pieces a
product is read into), ``latex_meaning`` (``_Meaning``, with its parts ``latex_factors``,
``latex_names``, ``latex_indices``, ``latex_sums`` and ``latex_derivatives``) and
``latex_results`` (what a line gives, ``LineRead``, and the errors).  This module reads one line
(``parse_equation_line``: once per reading of an open scope, its left side, then its right) or
one expression (``parse_latex``).

What the notation means (one reduction set at a time, DESIGN.md §1):

* ``x_i``, ``h_i``, ``x[i]``, ``x_{ij}``, ``h_{kj}``, ``x[n][c][h][w]`` are input elements: ``x[i]``.
  With two indices the second is the feature (PER_ACTIVATION, ``x_{ij}``: sample i, feature j);
  with four the second is the channel (SPATIAL, NCHW) and the element of the reduction set is the
  triple (n, h, w).  Features never mix (μ_j, σ_j², γ_j belong to feature j alone), so the
  feature index is dropped, consistently: ``x_{ij}`` → ``x[i]``, ``\\gamma_j`` → ``gamma``, and a
  sum over a feature index l is the term at l = j, which needs δ_jl in every term of the summand
  (otherwise the line would mix features, an error).
* ``y_i`` is the output; ``\\hat{x}_i`` (``\\widehat``, ``\\hat{h}``) is ``xhat[i]``; a bare ``x``
  or ``\\hat{x}`` is the element the line is about, or inside a sum the summed element.
* ``\\mu``, ``\\mu_B``, ``\\mu_\\mathcal{B}``, ``\\mu_j``, ``\\mu[C]`` are ``mu``; ``\\sigma^2`` (with the
  same subscripts) is ``var``; a bare ``\\sigma`` must be declared (``sigma="std"``: σ = √σ²,
  ``sigma="var"``: σ is the variance, as some posts write it); ``\\epsilon``, ``\\varepsilon`` are
  ``eps``; ``\\gamma``, ``\\beta`` the parameters.
* ``N``, ``m``, ``M``, ``NHW`` (also ``N H W``, ``N\\cdot H\\cdot W``) are the size M of the
  reduction set: in PER_ACTIVATION M = N; in SPATIAL M = N·H·W, so with ``spatial=True`` a lone
  ``N`` (the batch size) is refused.
* Gradients: ``\\frac{\\partial L}{\\partial y_i}`` (also ``\\ell``, ``\\mathcal{L}``, ``d`` for
  ``\\partial``, ``dL/dy``), ``\\delta y``, ``dy``, ``dout`` are ``g[i]``; ∂L/∂x̂_i, ∂L/∂σ², ∂L/∂μ,
  ∂L/∂x_i, ∂L/∂γ, ∂L/∂β (and ``\\delta\\beta``, ``dgamma``, ...) are the adjoints ``dxhat[i]``,
  ``dvar``, ``dmu``, ``dx[i]``, ``dgamma``, ``dbeta``.  A derivative of something other than the
  loss (∂σ²/∂x_i) is understood but not checkable: ``NotCheckable``.
* ``\\sum_{i=1}^{N}``, ``\\sum_i``, ``\\sum_{n,h,w}``, ``\\sum_{n=1,h=1,w=1}^{N,H,W}`` are Σ over the
  reduction set, over a fresh index; the body is the rest of the product (``\\sum_i a_i b_i + c``
  is (Σ a b) + c); so is ``\\sum_{i \\in B}`` (``\\mathcal{B}``: the batch).  ``\\delta_{ik}`` is
  δ_ik; ``\\delta^{n,h,w}_{N,H,W}`` is δ over the spatial elements (n,h,w) and (N,H,W).  A primed
  letter (``n'``) is an index of its own.  ``^{-3/2}`` and ``^{-1.5}`` are the same exact power.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

import sympy as sp

from bnderive.core import notation as N
from bnderive.core.limits import expression_problem
from bnderive.read.latex_derivatives import _SCALAR_ADJOINT
from bnderive.read.latex_meaning import _Meaning
from bnderive.read.latex_results import (
    Ambiguity,
    Ambiguous,
    LatexError,
    LineRead,
    NotCheckable,
    Pos,
    Readings,
)
from bnderive.read.latex_syntax import (
    Hat,
    Letter,
    LineNode,
    Macro,
    Node,
    Product,
    ScriptArg,
    Scripted,
    _index_counts,
    _render,
    _tree,
    _uses_index,
    line_tree,
)
from bnderive.read.latex_vocabulary import (
    _AFFINE,
    _ARRAY_LETTERS,
    _BARE,
    _RESERVED,
    BATCH,
    Dotted,
    Family,
    _function_name,
    _vanishes,
    undot,
)


def _columns(tree: Node) -> set[str]:
    """The letters j of a line that writes a statistic μ_j, σ_j², γ_j, β_j of feature j and an
    array with j as its only index (x_j, \\hat{x}_j, y_j: the column of feature j, as a post writes
    "for each feature x_j"), when no array of the line has an element index of its own: there
    j can only be the feature (a statistic has no element), and the arrays are whole columns,
    read elementwise."""
    stats: set[str] = set()
    arrays: list[tuple[str, ...]] = []

    def single(sub: ScriptArg | None) -> tuple[str, ...]:
        """The index letters of a subscript: {ij} and {i,j} are two, j one."""
        if sub is None:
            return ()
        out: list[str] = []
        for item, _ in sub.items:
            parts = item.items if isinstance(item, Product) else (item,)
            out += [_render(part) for part in parts]
        return tuple(out)

    def walk(node: Any, outer: ScriptArg | None = None) -> None:
        if isinstance(node, Scripted):
            base = node.base
            if isinstance(base, Macro) and base.name in ("mu", "sigma", "gamma", "beta"):
                stats.update(single(node.sub))
            elif isinstance(base, Letter) and base.name in _ARRAY_LETTERS and not base.font:
                arrays.append(single(node.sub))
            elif isinstance(base, Hat):
                walk(base.arg, node.sub)
                return
        elif isinstance(node, Letter) and node.name in _ARRAY_LETTERS and not node.font:
            arrays.append(single(outer))
            return
        if isinstance(node, Node) or isinstance(node, tuple | list):
            children = node if isinstance(node, tuple | list) else vars(node).values()
            for child in children:
                if isinstance(child, Node | tuple | list):
                    walk(child)

    walk(tree)
    indexed = [a for a in arrays if a]
    if not arrays or any(len(a) != 1 or a[0] not in stats for a in indexed):
        return set()  # an array with an element index of its own (x_i beside x_j, μ_j)
    return {a[0] for a in indexed}


def _bounded_value(meaning: Any, expr: sp.Expr, pos: Pos) -> sp.Expr:
    """A finished side within the caps on numbers, sums and degree (``limits``)."""
    problem = expression_problem(expr)
    if problem:
        raise meaning.error(f"this cannot be checked: {problem.rstrip('.')}", pos)
    return expr


# -- the public interface -----------------------------------------------------------------------------
def parse_latex(
    text: str,
    *,
    sigma: str | None = None,
    spatial: bool = False,
    line: int = 1,
    column: int = 1,
) -> sp.Expr:
    """One LaTeX expression in bnderive's index notation (see the module docstring).

    ``sigma`` declares a bare σ (``"std"`` or ``"var"``); ``spatial`` refuses a lone N (the
    batch size is not M in SPATIAL mode); ``line``/``column`` place the text in its file, for
    the error messages.  A free element index keeps its name (``x_j`` → ``x[j]``); a bare array
    is element i; an element (n, h, w) is named n.
    """
    tree = _tree(text, "expression", line, column)
    meaning = _Meaning(sigma, spatial, line, column)
    meaning.size_n = not _uses_index(tree, "n")
    expr = meaning.value(tree)
    rename = {s: sp.Symbol(parts[0], integer=True) for s, parts in meaning.composites.items()}
    rename[_BARE] = N.i
    expr = expr.xreplace(rename)
    return _bounded_value(meaning, meaning.finish(expr, tree.pos), tree.pos)


_QUANTITY_OF_BASE = {"dx": "dx", "dxhat": "dxhat", "g": "dy", "dgamma": "dgamma", "dbeta": "dbeta"}
_FORWARD_BASE = {"xhat": "xhat", "y": "y"}


def parse_equation_line(
    text: str,
    *,
    sigma: str | None = None,
    spatial: bool = False,
    line: int = 1,
    column: int = 1,
    continues: tuple | None = None,
    names: dict[str, bool] | None = None,
    family: Family = BATCH,
    aliases: dict[str, str] | None = None,
) -> LineRead:
    """One line of an align block: ``LHS = RHS [= RHS ...]`` or ``= RHS`` (an ``&=``
    continuation: ``continues`` is ``LineRead.continues`` of the line before; the older pair
    (quantity, element index) is accepted too).  ``names`` are the names earlier lines defined
    (name → elementwise); ``family`` how the normalization reads the notation (``Family``).

    The left side decides the kind of line (see ``LineRead``) and its element index is renamed
    i.  Two-index local derivatives (∂y_k/∂x_i: a Jacobian) are contracted with the upstream
    gradient: Σ_k g_k ∂y_k/∂x_i = Σ_k g_k (right side).  Since g is free, the contracted sides
    are equal for every g exactly when the Jacobians are equal entry by entry.  Anything not
    understood raises ``LatexError``; something understood but not checkable (∂L/∂(γx̂_i), a
    derivative with respect to a name bnderive does not know) leaves ``reason`` set; a member
    of the right side that cannot be read or checked is None, with its reason.

    A scope the notation leaves open (``Ambiguity``: the Σ's body, braces around a sum, what
    ∂/∂x_i applies to) is read every way: a member whose value differs between the readings
    holds each of them (``LineRead.readings``), to be checked each, and the line holds only if
    every reading does.
    """
    options = dict(
        sigma=sigma, spatial=spatial, line=line, column=column, continues=continues,
        names=names, family=family, aliases=aliases,
    )  # fmt: skip
    try:
        return _parse_line(text, {}, **options)
    except Ambiguous as exc:
        return _read_every_way(text, exc, options)


def _parse_line(
    text: str,
    choices: dict[tuple[str, Pos], int],
    *,
    sigma: str | None,
    spatial: bool,
    line: int,
    column: int,
    continues: tuple | None,
    names: dict[str, bool] | None,
    family: Family,
    aliases: dict[str, str] | None,
) -> LineRead:
    """One reading of a line (``parse_equation_line``), the open scopes met taken as
    ``choices`` says; one it does not say is ``Ambiguous``."""
    tree = line_tree(text, line, column)
    assert isinstance(tree, LineNode)
    if not tree.sides:
        return LineRead((), None, None, None, "prose, not an equation", "prose")
    if len(tree.sides) == 1:
        return LineRead(
            (), None, None, None, "an expression without '=': it states no value", "prose"
        )
    meaning = _Meaning(sigma, spatial, line, column, names, family, aliases)
    meaning.choices = choices
    meaning.size_n = not _uses_index(tree, "n")
    if not family.layer:
        meaning.columns = _columns(tree)
    state = _LineState(tree, list(tree.sides[1:]))
    _read_left(state, meaning, continues, line, column)
    unread = _read_right(state, meaning)
    _sizes_only(state)
    _element_index(state, meaning)
    _no_other_free_index(state, meaning)
    _index_ranges(state, meaning)
    _contract_jacobian(state, meaning)
    read = state.result(meaning)
    if unread is not None:
        unread.partial = read  # what the left side says: the rows that continue it
        raise unread
    return read


#: At most this many readings of one line; a line with more is not read, with the first
#: scope's question.
_MOST_READINGS = 6


def _read_every_way(text: str, first: Ambiguous, options: dict[str, Any]) -> LineRead:
    """The line read once per reading of each open scope it has (nested ones too), merged into
    one ``LineRead`` (``_merged``)."""
    done: list[tuple[tuple[str, ...], LineRead | LatexError]] = []
    met = [first.ambiguity]
    pending: list[tuple[str, dict, tuple[str, ...], Ambiguity]] = [(text, {}, (), first.ambiguity)]
    while pending:
        source, choices, labels, ambiguity = pending.pop(0)
        for k, label in enumerate(ambiguity.labels):
            blanks = ambiguity.blanks[k] if ambiguity.blanks else ()
            chosen = dict(choices)
            if blanks:
                variant = _blanked(source, blanks)
            else:
                variant = source
                chosen[(ambiguity.kind, ambiguity.pos)] = k
            try:
                read: LineRead | LatexError = _parse_line(variant, chosen, **options)
            except Ambiguous as nested:
                pending.append((variant, chosen, (*labels, label), nested.ambiguity))
                met.append(nested.ambiguity)
                continue
            except LatexError as exc:
                read = exc
            done.append(((*labels, label), read))
        if len(done) + 2 * len(pending) > _MOST_READINGS:
            raise LatexError(first.reason, first.line, first.column) from None
    return _merged(done, first, met)


def _blanked(text: str, places: tuple[Pos, ...]) -> str:
    """``text`` with the one character at each (line, column) replaced by a space (a reading
    without those braces; every other position stays where it was)."""
    lines = text.split("\n")
    for row, column in places:
        chars = lines[row - 1]
        lines[row - 1] = chars[: column - 1] + " " + chars[column:]
    return "\n".join(lines)


def _line_shape(read: LineRead) -> tuple:
    """What a line is apart from its members: readings of a line must agree on it."""
    return (
        read.lhs, read.defines, read.index, read.source_index, read.reason, read.kind,
        read.per_element, read.contracted, read.cross, read.contract_over, read.keep,
        len(read.rhs),
    )  # fmt: skip


def _merged(
    done: list[tuple[tuple[str, ...], LineRead | LatexError]],
    first: Ambiguous,
    met: list[Ambiguity],
) -> LineRead:
    """One ``LineRead`` of the readings of a line: each member the same in every reading is
    that value; one that differs is its ``Readings``.  A line that no reading reads, or whose
    readings differ in what the line is (its left side, its kind), is not read: the first
    scope's question (or the one reason every reading gives)."""
    errors = [r for _, r in done if isinstance(r, LatexError)]
    if len(errors) == len(done) and len({e.reason for e in errors}) == 1:
        raise errors[0]  # not read, whichever way the scope is read
    question = "; ".join(dict.fromkeys(a.question for a in met))
    fix = " ".join(dict.fromkeys(a.fix for a in met))
    unread = LatexError(f"{question}? {fix}", first.line, first.column)
    reads = [r if isinstance(r, LineRead) else r.partial for _, r in done]
    known = [r for r in reads if r is not None]
    if not known or any(_line_shape(r) != _line_shape(known[0]) for r in known):
        raise unread
    if len(errors) == len(done):
        unread.partial = known[0]
        raise unread
    base = known[0]
    sides: list[sp.Expr | None] = [base.lhs]
    member_errors: list[str] = []
    readings: list[Readings | None] = []
    for k in range(len(base.rhs)):
        values: list[sp.Expr | None] = []
        why: list[str] = []
        for r, (_, raw) in zip(reads, done, strict=True):
            values.append(r.rhs[k] if r is not None else None)
            error = r.member_errors[k] if r is not None and k < len(r.member_errors) else ""
            why.append(error or (str(raw) if isinstance(raw, LatexError) else ""))
        if all(v is None for v in values):
            sides.append(None)
            member_errors.append(next((w for w in why if w), unread.reason))
            readings.append(None)
        elif all(v is not None for v in values) and all(v == values[0] for v in values):
            sides.append(values[0])
            member_errors.append("")
            readings.append(None)
        else:
            words = tuple("; ".join(labels) for labels, _ in done)
            sides.append(next(v for v in values if v is not None))
            member_errors.append("")
            readings.append(Readings(question, words, tuple(values), tuple(why), fix))
    notes = [n for r in known for n in r.notes]
    if not any(readings):
        notes.append(f"{question}: read each way, the line says the same")
    return replace(
        base,
        sides=tuple(sides),
        member_errors=tuple(member_errors),
        notes=tuple(dict.fromkeys(notes)),
        readings=tuple(readings) if any(readings) else (),
    )


@dataclass
class _LineState:
    """One line while ``parse_equation_line`` reads it, step by step."""

    tree: LineNode
    rhs_nodes: list[Node]
    lhs_node: Node | None = None
    kind: str = "none"
    defines: str | None = None
    source: sp.Expr | None = None  # the left side's element index as written
    reason: str = ""
    cross: tuple[str, str] | None = None  # ∂y_{kl}/∂h_{ij}: the two features l, j
    contract_over: sp.Expr | None = None  # ∂y_k/∂x_i: k, as written
    sides: list[sp.Expr | None] = field(default_factory=list)
    member_errors: list[str] = field(default_factory=list)
    index: sp.Symbol | None = None
    per_element: bool = False
    contracted: bool = False
    elementwise: bool = False
    rename: dict[sp.Expr, sp.Expr] = field(default_factory=dict)
    keep: tuple[str, ...] = ()  # Einstein's convention: the left side's free indices

    def result(self, meaning: _Meaning) -> LineRead:
        pos = self.tree.pos
        sides = [meaning.finish(s, pos) if s is not None else None for s in self.sides]
        sides = [_bounded_value(meaning, s, pos) if s is not None else None for s in sides]
        if self.kind == "none" and not self.reason:
            self.reason = "the left side is not something bnderive checks"
        return LineRead(
            tuple(sides),
            self.defines,
            self.index,
            self.source,
            self.reason,
            self.kind,
            self.per_element,
            self.contracted,
            tuple(self.member_errors),
            self.cross,
            self.contract_over if self.contracted else None,
            notes=tuple(dict.fromkeys(meaning.notes)),
            keep=self.keep,
        )


def _read_left(
    state: _LineState, meaning: _Meaning, continues: tuple | None, line: int, column: int
) -> None:
    """The left side (or, for an `&= …` row, what the line before said): the kind of line,
    the quantity, its element index."""
    tree = state.tree
    lhs_node = tree.sides[0]
    lhs: sp.Expr | None = None
    if lhs_node is None:
        if continues is None:
            raise LatexError("a line that starts with '=' continues nothing", line, column)
        if len(continues) == 2:  # (quantity, element index), as older callers pass it
            quantity, source = continues
            continued = "adjoint" if quantity in N.QUANTITIES else "none"
            continues = (continued, quantity, source)
        state.kind, state.defines, state.source = continues[:3]
        state.cross = continues[3] if len(continues) > 3 else None
        state.contract_over = continues[4] if len(continues) > 4 else None
        meaning.keep = set(continues[5]) if len(continues) > 5 else set()
        if state.cross is not None:
            for name in state.cross:
                meaning.feature(name, tree.pos)
        if state.kind == "none":
            state.reason = "continues a line that defines nothing bnderive checks"
    elif (
        len(state.rhs_nodes) == 1
        and _new_name_node(state.rhs_nodes[0], meaning.names)
        and not _new_name_node(lhs_node, meaning.names)
    ):
        # \frac{1}{\sqrt{\sigma^2+\epsilon}} = t: a name defined the other way round
        lhs_node, state.rhs_nodes = state.rhs_nodes[0], [lhs_node]
    if lhs_node is not None:
        lhs_node = meaning.output_side(lhs_node)
    state.lhs_node = lhs_node
    if lhs_node is not None:
        # a name is defined by a left side that is a lone symbol (t, R_i, σ), never by a symbol
        # inside an expression (∂((x − μ)/σ)/∂x_j uses σ, it does not define it)
        base = lhs_node.base if isinstance(lhs_node, Scripted) else lhs_node
        meaning.define_ok = isinstance(base, Letter | Macro) or (
            isinstance(lhs_node, Product)
            and len(lhs_node.items) == 2
            and _function_name(*lhs_node.items) is not None
        )
        try:
            lhs = meaning.side_value(lhs_node)
        except NotCheckable as exc:
            state.reason = exc.reason
        else:
            lhs, state.cross = _features_apart(lhs, meaning, lhs_node.pos)
            state.kind, state.defines, state.source, state.reason = _classify(lhs, meaning)
        meaning.define_ok = False
    meaning.batch_sum_ok = meaning.family.layer and state.defines in ("dgamma", "dbeta")
    if lhs_node is not None:  # Einstein's convention: the indices free on the left side
        meaning.keep = {n for n, c in _index_counts(lhs_node).items() if c == 1}
    state.keep = tuple(sorted(meaning.keep))
    source = state.source
    if isinstance(source, sp.Symbol) and source != _BARE and state.kind in ("adjoint", "forward"):
        meaning.line_element = source.name
    state.sides = [lhs]


def _read_right(state: _LineState, meaning: _Meaning) -> LatexError | None:
    """Each member of the right side; one not read (or not checkable) is None with its reason
    and the others are read.  A line whose only member is not read is not read (the error,
    returned: raised once the left side is known)."""
    for k, node in enumerate(state.rhs_nodes, start=1):
        if (meaning.line0, k) in meaning.family.named:
            # \hat{y} = BN(y) = …: the function's name for the output, nothing to check
            state.sides.append(None)
            state.member_errors.append(
                f"{_render(node)} names the layer's output as a function of its input: another "
                "name of the left side, not a value"
            )
            continue
        try:
            meaning.bare_jacobians = []
            value = meaning.side_value(node)
            _no_bare_jacobian(value, meaning, node.pos)
            if state.cross is not None:
                value = _same_feature(value, state.cross, meaning, node.pos)
            state.sides.append(value)
            state.member_errors.append("")
        except Ambiguous:
            raise  # the line is read once per reading (``parse_equation_line``)
        except LatexError as exc:
            state.sides.append(None)
            state.member_errors.append(
                str(exc) if not isinstance(exc, NotCheckable) else exc.reason
            )
    rhs = state.sides[1:]
    if rhs and all(r is None for r in rhs) and len(rhs) == 1:
        first = _first_error(state.rhs_nodes, meaning)
        if first is not None and not isinstance(first, NotCheckable):
            return first
    return None


def _no_bare_jacobian(value: sp.Expr, meaning: _Meaning, pos: Pos) -> None:
    """A member that writes ∂x̂/∂x (or ∂y/∂x) between arrays without an index and no path
    through σ² or μ beside it (Sinai's ∂z/∂x ∂L/∂z): the Jacobian times a vector, or each
    element's own partial?  The two differ, so it is not checked.  Beside ∂σ²/∂x or ∂μ/∂x the
    post sums the paths of its graph, and ∂x̂/∂x is each element's own partial."""
    if not meaning.bare_jacobians:
        return
    paths = {
        p.args[0]
        for p in value.atoms(N.Partial)
        if isinstance(p.args[1], sp.Indexed) and p.args[1].base == N.x
    }
    if paths & {N.var, N.mu}:
        return
    raise meaning.error(
        f"{meaning.bare_jacobians[0]} between arrays written without an index, and no path "
        "through σ² or μ beside it: the Jacobian (a matrix, ∂·_k/∂x_i) or each element's own "
        "derivative ∂·_i/∂x_i? The two differ; write the indices",
        pos,
        NotCheckable,
    )


def _sizes_only(state: _LineState) -> None:
    """N_i = N_s × N_k: every side read as the set's size M.  The line says how the post counts
    the set, which is what the reading of its sizes assumed: nothing to check."""
    if state.kind == "identity" and len(state.sides) > 1 and all(s == N.M for s in state.sides):
        state.kind = "none"
        state.reason = state.reason or (
            "every side is read as the set's size M: the line says how the post counts the set, "
            "which the reading of its sizes assumes, not a value to check"
        )


def _element_index(state: _LineState, meaning: _Meaning) -> None:
    """The line's element: the left side's index becomes i (a Jacobian's two indices: the
    line is contracted over the first); a scalar quantity with an indexed right side is a claim
    for every i; a member that is a vector written bare on a scalar line is not checked."""
    lhs = state.sides[0]
    rename = state.rename
    rename.update({s: sp.Symbol(parts[0], integer=True) for s, parts in meaning.composites.items()})
    state.elementwise = state.source is not None
    if state.kind == "local" and lhs is not None:
        of_index, wrt_index = _local_indices(lhs, meaning)
        if of_index is not None and wrt_index is not None and of_index != wrt_index:
            state.contracted = True  # ∂y_k/∂x_i: Σ_k g_k (…), the line's element i
            state.source, state.contract_over = wrt_index, of_index
        else:
            state.source = of_index if of_index is not None else wrt_index
        state.elementwise = state.source is not None
    elif state.kind in ("local", "identity") and state.contract_over is not None:
        state.contracted = True  # the continuation of a Jacobian's (a two-index) line
    if state.kind == "identity" and lhs is not None:
        free = sorted(meaning.element_indices(lhs), key=str)
        if len(free) == 2:
            # δ_ij − 1/n = …: two free indices, a matrix entry; contracted over the first as a
            # Jacobian's line is (equal for every g exactly when equal entry by entry)
            state.contracted = True
            state.contract_over, free = free[0], free[1:]
        if len(free) > 1:
            state.kind = "none"
            state.reason = state.reason or (
                f"the left side has the free indices {', '.join(map(str, free))}: a matrix "
                "identity, which bnderive does not check"
            )
        state.source = free[0] if free else None
        state.elementwise = state.source is not None
    if state.elementwise and not isinstance(state.source, sp.Symbol):
        _numbered_entry(state, meaning)
    if state.elementwise and not isinstance(state.source, sp.Symbol):
        state.kind = "none"
        state.reason = state.reason or "the left side names one entry by number; write x_i"
        state.elementwise = False
    if state.elementwise:
        if meaning.family.layer and state.source != _BARE:
            # LayerNorm's y_i = γ x̂_i + β: a bare γ or β (outside a sum) is the line's element's
            bare = {sp.IndexedBase(a)[_BARE]: sp.IndexedBase(a)[state.source] for a in _AFFINE}
            state.sides = [s.xreplace(bare) if s is not None else None for s in state.sides]
        # x_j on the left: j becomes i everywhere, and an i elsewhere becomes j (a swap renames
        # without capture).
        if state.source == _BARE:
            rename[_BARE] = N.i
        elif state.source != N.i:
            rename.update({state.source: N.i, N.i: state.source})
        state.index = N.i
    else:
        _scalar_line(state, meaning)
        rename[_BARE] = N.i
    state.sides = [undot(s).xreplace(rename) if s is not None else None for s in state.sides]


def _numbered_entry(state: _LineState, meaning: _Meaning) -> None:
    """``z_1 = (x_1 − μ)/(σ + ε)``: a line about one entry named by its number, and no other
    entry: by permutation symmetry it says the same of every entry.  The layer treats its
    elements alike (μ and σ² are symmetric in them, and each output is the same function of its
    own input and of them), so swapping entry 1 with entry i maps the line's claim for entry 1
    onto the claim for entry i, and the number is read as the element index i.  Not when the
    line names two entries (x_1 and x_2, or x_1 beside x_i), a Kronecker δ holds a number, or
    an entry sits under a sum: those claims are about particular entries, left as they were."""
    number = state.source
    sides = [s for s in state.sides if s is not None]
    numbers = {
        index
        for side in sides
        for entry in side.atoms(sp.Indexed)
        for index in entry.indices
        if index.is_number
    }
    if (
        numbers != {number}
        or any(a.is_number for side in sides for d in side.atoms(sp.KroneckerDelta) for a in d.args)
        or any(meaning.element_indices(side) for side in sides)
        or any(
            number in entry.indices
            for side in sides
            for total in side.atoms(sp.Sum)
            for entry in total.function.atoms(sp.Indexed)
        )
    ):
        return

    def entry_i(entry: sp.Indexed) -> sp.Indexed:
        return sp.Indexed(entry.base, *(N.i if k == number else k for k in entry.indices))

    state.sides = [
        s.replace(lambda e: isinstance(e, sp.Indexed), entry_i) if s is not None else None
        for s in state.sides
    ]
    state.source = N.i
    meaning.notes.append(
        f"entry {number} read as every entry i: the line names no other entry, and the layer "
        "treats its elements alike (permutation symmetry), so what holds of one holds of each"
    )


def _scalar_line(state: _LineState, meaning: _Meaning) -> None:
    """A line about one number per set (∂L/∂σ², μ, a scalar local derivative): a member that is
    a vector written without an index (∂L/∂y · ∂y/∂σ²: is the Σ_i missing, or implied?) is not
    checked; an indexed member makes the line a claim for every i (∂L/∂γ = ∂L/∂y_i ∂y_i/∂γ: a
    Σ_i missing is refuted)."""
    kind = state.kind
    if kind not in ("adjoint", "forward", "local", "name", "identity") or state.reason:
        return
    if kind in ("adjoint", "local", "forward"):
        per_set = "sample" if meaning.family.layer else "channel"
        _dot_products(state, meaning, per_set)
        for k, s in enumerate(state.sides[1:], start=1):
            if s is not None and _BARE in meaning.element_indices(s):
                state.sides[k] = None
                state.member_errors[k - 1] = (
                    f"{_what(kind, state.defines)} is one number per {per_set}, but this is a "
                    "per-element vector written without an index: is it a sum Σ_i (a dot "
                    "product) or is the sum missing? Write Σ_i, or the index"
                )
        if all(s is None for s in state.sides[1:]):
            return  # each member says why; the rows that continue the line still can be checked
    free_rhs = set().union(*(meaning.element_indices(s) for s in state.sides[1:] if s is not None))
    if free_rhs:
        state.per_element = True  # a claim for every i
        state.index = N.i


def _dot_products(state: _LineState, meaning: _Meaning, per_set: str) -> None:
    """On a line about one number per set, a member whose vectors written without an index are
    all in dot products (∂L/∂x̂ · ∂x̂/∂μ, ``_Meaning.dot_product``) is read with them summed,
    and says so; a member with any other such vector keeps them all elementwise (and is not
    checked: ``_scalar_line``)."""
    for k, s in enumerate(state.sides[1:], start=1):
        if s is None or not s.has(Dotted):
            continue
        summed = undot(s, summed=True)
        if _BARE in meaning.element_indices(summed):
            continue
        state.sides[k] = summed
        for dotted in sorted(s.atoms(Dotted), key=str):
            written = meaning.dot_texts.get(dotted, "a · b")
            meaning.notes.append(
                f"{written} read as a dot product Σ_i: · between two per-element vectors "
                f"written without an index, on a line about one number per {per_set}"
            )


_WHOLE_RANGE = re.compile(
    r"(?:1,(?:2,)?(?:DOTS),(?P<top>[A-Za-z]+)|0,(?:1,)?(?:DOTS),(?P<last>[A-Za-z]+)-1)".replace(
        "DOTS", r"\\[lc]?dots|\.\.\.|…"
    )
)


def _index_ranges(state: _LineState, meaning: _Meaning) -> None:
    """``, k \\in \\{1,\\dots,D\\}`` after the equation.  The whole range of an index, as the
    check reads it, is said with a note: an element index over the set's size (N, m, M), or
    a feature (a sample in LayerNorm) over a size that is not the set's.  Any other range
    (``\\{1,\\dots,i-1\\}``, ``\\{2,\\dots,N\\}``, ``\\{1, 2\\}``) says the line holds for part
    of the index's values only, which the check does not model: the line is not checked,
    and says why (dropped, a wrong line true only there would be refuted for the rest).  A
    letter the line does not use restricts nothing: a note.  A ``\\text{…}`` with the equation
    that states a relation (``\\text{for $k \\neq i$}``) is a condition of the same kind: not
    checked, with the text."""
    for text in state.tree.conditions:
        if not state.reason:
            state.reason = (
                f"{text}: a condition written with the equation, which the check does not "
                "model (it reads the line for every value of its indices)"
            )
    for written in state.tree.ranges:
        letter, body = written.letter, written.body.strip()
        text = re.sub(r"\\[,;:! ]|\s|~", "", body)
        whole = _WHOLE_RANGE.fullmatch(text)
        size = (whole.group("top") or whole.group("last")) if whole else None
        role = meaning.roles.get(letter, ("",))[0]
        the_set = size in meaning.family.sizes
        if not role and letter not in meaning.family.samples:
            meaning.notes.append(f"{letter} ∈ {{{body}}}: {letter} is in none of its members")
        elif size is not None and role == "element" and the_set:
            meaning.notes.append(f"{letter} ∈ {{{body}}}: the whole set, as {letter} is read")
        elif size is not None and role != "element" and not the_set:
            meaning.notes.append(
                f"{letter} ∈ {{{body}}}: every {letter} up to {size}, each checked apart"
            )
        elif not state.reason:
            state.reason = (
                f"{letter} ∈ {{{body}}}: the line is said for these values of {letter} only, "
                f"which the check does not model (it reads {letter} over its whole range)"
            )


def _no_other_free_index(state: _LineState, meaning: _Meaning) -> None:
    """An elementwise line's members have no free index but i (and a Jacobian's k)."""
    if not (state.elementwise or state.per_element) or state.kind == "none":
        return
    members = list(zip(state.rhs_nodes, state.sides[1:], strict=True))
    written = {v: k for k, v in state.rename.items()}  # the indices as the line writes them
    line_index = written.get(N.i, N.i)
    for k, (node, s) in enumerate(members, start=1):
        extra = meaning.element_indices(s) - {N.i} if s is not None else set()
        if state.contracted and state.contract_over is not None:
            extra -= {state.rename.get(state.contract_over, state.contract_over)}
        if extra:
            # which array an element written without index is of (a bare s^2 of a name that
            # its definition made one per element: s^2 = (1/N) Σ_k (x_i − x̄)²)
            bare = sorted({str(a.base.label) for a in s.atoms(sp.Indexed) if _BARE in a.indices})
            without = "(an element written without index" + (
                f": {', '.join(bare)})" if bare else ")"
            )
            names_text = ", ".join(
                sorted(without if e == _BARE else str(written.get(e, e)) for e in extra)
            )
            shown = "i" if line_index == _BARE else str(line_index)
            error = meaning.error(
                f"the free index {names_text} on the right side: the left side has only "
                f"the element index {shown}",
                node.pos,
            )
            if len(members) == 1:
                raise error
            # one member of a chain with a stray index (a sum's index left dangling after
            # it): that member is not read, the others are
            state.sides[k] = None
            state.member_errors[k - 1] = str(error)


def _contract_jacobian(state: _LineState, meaning: _Meaning) -> None:
    """∂y_k/∂x_i = …: every side contracted with g over k (``_contract``)."""
    if not state.contracted:
        return
    assert state.contract_over is not None
    over = state.rename.get(state.contract_over, state.contract_over)
    written = (str(state.contract_over), str(state.source))
    if written in meaning.family.apart and state.source is not None:
        # the post sums ∂y_k/∂x_i over k ≠ i only (Σ_{k≠i}, the diagonal apart): its k ≠ i
        # entries are what it states, so they are compared, and the line says so
        element = state.rename.get(state.source, state.source)
        state.sides = [
            (1 - sp.KroneckerDelta(over, element)) * s if s is not None else None
            for s in state.sides
        ]
        meaning.notes.append(
            f"read for {written[0]} ≠ {written[1]} only: the post sums this Jacobian over "
            f"{written[0]} ≠ {written[1]} (Σ_{{{written[0]}≠{written[1]}}}) and its diagonal apart"
        )
    sides = _contract(state.sides, meaning, over)
    if isinstance(sides, str):
        state.kind, state.reason = "none", sides
        state.sides = [None] * len(state.sides)
    else:
        state.sides = sides


def _features_apart(
    lhs: sp.Expr, meaning: _Meaning, pos: Pos
) -> tuple[sp.Expr, tuple[str, str] | None]:
    """∂ĥ_{kl}/∂h_{ij} is δ_lj·(∂ĥ_k/∂h_i): a line about two features l and j.  Features never
    mix, so such a line says something only for l = j: the left side without δ, and the two
    features (each right side must vanish for l ≠ j, ``_same_feature``)."""
    deltas = [
        d
        for d in lhs.atoms(sp.KroneckerDelta)
        if all(meaning.roles.get(str(a), ("",))[0] == "feature" for a in d.args)
        and d.args[0] != d.args[1]
    ]
    if not deltas or not isinstance(lhs, sp.Mul):
        return lhs, None
    if len(deltas) > 1:  # pragma: no cover - a left side names two features at most
        raise meaning.error("a left side about more than two features", pos)
    d = deltas[0]
    return lhs.xreplace({d: sp.Integer(1)}), (str(d.args[0]), str(d.args[1]))


def _same_feature(value: sp.Expr, cross: tuple[str, str], meaning: _Meaning, pos: Pos) -> sp.Expr:
    """A right side of a two-feature line: zero for l ≠ j (every term carries δ_lj), then read
    at l = j."""
    a, b = (sp.Symbol(n, integer=True) for n in cross)
    deltas = [d for d in value.atoms(sp.KroneckerDelta) if set(d.args) == {a, b}]
    if not _vanishes(value.xreplace({d: sp.Integer(0) for d in deltas})):
        raise meaning.error(
            f"the right side is not zero for {cross[0]} ≠ {cross[1]} (a term without "
            f"δ_{cross[0]}{cross[1]}): features never mix, which BatchNorm's derivative says",
            pos,
        )
    return value.xreplace({d: sp.Integer(1) for d in deltas})


def _first_error(nodes: list[Node], meaning: _Meaning) -> LatexError | None:
    try:
        meaning.side_value(nodes[0])
    except LatexError as exc:
        return exc
    return None


_WRITTEN = {"dvar": "σ²", "dmu": "μ", "dgamma": "γ", "dbeta": "β", "dx": "x_i", "dxhat": "x̂_i"}


def _what(kind: str, defines: str | None) -> str:
    """A quantity as a post writes it, for messages (∂L/∂σ², not ∂L/∂dvar)."""
    if kind == "adjoint" and defines is not None:
        return f"∂L/∂{_WRITTEN.get(defines, defines)}"
    return defines or "the left side"


def _new_name_node(node: Node | None, names: dict[str, bool]) -> bool:
    """A lone letter that means nothing yet: the name a line defines (t, v)."""
    return (
        isinstance(node, Letter)
        and not node.font
        and node.name not in _RESERVED
        and node.name not in names
    )


def _classify(lhs: sp.Expr, meaning: _Meaning) -> tuple[str, str | None, sp.Expr | None, str]:
    """(kind, quantity, element index, reason) of a line from its left side."""
    if isinstance(lhs, sp.Indexed) and str(lhs.base.label) in _QUANTITY_OF_BASE:
        return "adjoint", _QUANTITY_OF_BASE[str(lhs.base.label)], lhs.indices[0], ""
    if isinstance(lhs, sp.Symbol) and lhs.name in _SCALAR_ADJOINT.values():
        return "adjoint", lhs.name, None, ""
    if isinstance(lhs, N.Partial):
        return "local", _local_name(lhs), None, ""
    if lhs in (N.mu, N.var):
        return "forward", lhs.name, None, ""
    if isinstance(lhs, sp.Indexed) and str(lhs.base.label) in _FORWARD_BASE:
        return "forward", str(lhs.base.label), lhs.indices[0], ""
    if meaning.new_name is not None:
        name, index = meaning.new_name
        if lhs == (sp.IndexedBase(name)[index] if index is not None else sp.Symbol(name)):
            return "name", name, index, ""
    if isinstance(lhs, sp.Indexed) and str(lhs.base.label) == "x":
        return "none", None, None, "the left side is an input x_i: it has no value to check"
    if (
        lhs.has(N.Partial)
        or any(isinstance(a, sp.Symbol) and a.name in N.QUANTITIES for a in lhs.free_symbols)
        or lhs.atoms(sp.Indexed)
        or lhs.free_symbols
    ):
        return "identity", None, None, ""
    return "identity", None, None, ""


def _local_name(p: N.Partial) -> str:
    """dxhat_dvar, dvar_dx, dy_dx, ...: the quantity a local derivative line defines."""

    def node(expr: sp.Expr) -> str:
        if isinstance(expr, sp.Indexed):
            return str(expr.base.label)
        if isinstance(expr, sp.Symbol):
            return expr.name
        return "(expr)"

    return f"d{node(p.of)}_d{node(p.wrt)}"


def _local_indices(p: sp.Expr, meaning: _Meaning) -> tuple[sp.Expr | None, sp.Expr | None]:
    """The element indices of ∂A/∂B: A's (the free ones of an expression) and B's."""
    assert isinstance(p, N.Partial)
    wrt = p.wrt.indices[0] if isinstance(p.wrt, sp.Indexed) else None
    free = sorted(meaning.element_indices(p.of), key=str)
    if isinstance(p.of, sp.Indexed):
        of = p.of.indices[0]
    elif len(free) == 1:
        of = free[0]
    elif not free:
        of = None
    else:
        raise meaning.error("a local derivative of an expression with several free indices", (1, 1))
    return of, wrt


def _contract(sides: list[sp.Expr | None], meaning: _Meaning, k: sp.Expr) -> list | str:
    """Σ_k g_k·(side) for a two-index line (∂y_k/∂x_i = …, k the first index): equal for every
    g exactly when equal entry by entry, since g is free.  A side that has g or an adjoint in it
    (then the contraction could hide a difference) is not contracted: the reason why."""
    for s in sides:
        if s is None:
            continue
        if (
            s.atoms(sp.Indexed)
            and any(str(a.base.label) in ("g", "dx", "dxhat") for a in s.atoms(sp.Indexed))
            or any(a.name in N.QUANTITIES for a in s.free_symbols if isinstance(a, sp.Symbol))
        ):
            return (
                "a two-index quantity (a Jacobian) written with the upstream gradient or an "
                "adjoint in it: bnderive checks Jacobians through Σ_k g_k (…), which needs "
                "them free of g"
            )
    meaning.fresh += 1
    bound = sp.Symbol(f"_b{meaning.fresh}", integer=True)
    return [
        N.reduce_sum((N.g[bound] * s.xreplace({k: bound})), bound) if s is not None else None
        for s in sides
    ]


__all__ = [
    "parse_equation_line",
    "parse_latex",
]
