"""A post's own letters for the layer's quantities, learned from its forward line (issue 12).

Real posts name the layer's roles with letters of their own: Sinai 2022 writes
``Z^l = a^{l}\\frac{X^{l}-\\mu^{l}}{\\sigma^{l}+\\epsilon} + b^{l}``, llm.c ``w \\odot \\frac{x -
\\mu}{\\sqrt{\\sigma^2 + \\epsilon}} + b``, Xiyun Song's 2020 post ``y_{c,i} = {w_c} \\cdot
\\frac{…}{…} + {\\beta _c}``.  The roles follow from the line's structure alone:

    OUT = P · (V − μ) / D + Q        (⊙, \\cdot or juxtaposition; P and Q in either order)
    OUT = (V − μ) / D                (no P, no Q: OUT is x̂)

where μ is written ``\\mu`` and D mentions σ (or a variance): V is the input x, P is γ, Q is β,
OUT is y (x̂ when there is neither P nor Q).  A letter is bound only when nothing else in the
maths uses it (an index, a line that defines it, a letter the reader already reads as another
quantity, two roles in one line, and for γ and β a letter also written with a number, b_1); a
refused binding is said in a note with the reason.  An output or input letter binds its other
case too (Z and z, as the reader reads X as x), when that letter is free.  A left side that
names a function of V by a word (``\\text{LayerNorm}(x)``, ``\\mathrm{LN}(x_i)``) is OUT on
that line (``Family.outputs``).

A letter a later forward line binds to another role (Sinai's z: y at line 26 in one section,
x̂ at line 59 in another) takes the new meaning from that line on when the line starts a new
section (a heading between them); in the same section it is ambiguous from there on, and a line
that uses it is not read, with the reason.  A letter rebound from y to x̂ (the post drops γ
and β) is x̂ only until a later line writes γ or β again (by any letter): from there on the
letter may mean y again, and which one is not said, so it is not read.

The result is ``latex_vocabulary.LetterRole`` entries, which ``_Meaning.item`` applies to each line
(and ``_Meaning.output_side`` the outputs).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields

from bnderive.read.latex_results import LatexError
from bnderive.read.latex_syntax import (
    BigSum,
    Frac,
    Group,
    Letter,
    LineNode,
    Macro,
    Node,
    Num,
    Op,
    Product,
    ScriptArg,
    Scripted,
    SumExpr,
    line_tree,
)
from bnderive.read.latex_vocabulary import _RESERVED, Family, LetterRole

#: How a role is said in a note.
#: The key of ``forward_roles`` for a left side F(V) that names the output as a function.
OUTPUT = "()"
ROLE_TEXT = {"gamma": "γ", "beta": "β", "y": "y", "xhat": "x̂", "x": "x"}
#: Letters the reader reads as an index wherever they stand (never a quantity of the post's own).
_INDEX_LETTERS = frozenset("ijknpqrstu")
#: A heading of a Markdown or LaTeX document: a new section starts there.
_HEADING = re.compile(
    r"^\s{0,3}#{1,6}\s|\\(?:part|chapter|section|subsection|subsubsection|paragraph)\*?\s*\{",
    re.M,
)


@dataclass(frozen=True)
class _Bound:
    """One binding a forward line makes: ``letter`` means ``role`` from ``line``."""

    letter: str
    role: str
    line: int
    written: str  # the forward line as the post writes it (for the note)
    partner: bool = False  # bound as the other case of the line's own letter (z for Z)


def headings(body: str) -> list[int]:
    """The lines where a section starts (a Markdown heading, \\section{…} and the like)."""
    return [body.count("\n", 0, m.start()) + 1 for m in _HEADING.finditer(body)]


@dataclass(frozen=True)
class Roles:
    """What ``letter_roles`` learned: the letters' meanings, the lines whose left side names the
    output as a function of the input (line, role), the members of a forward line's chain that
    name it so (line, member), and the notes."""

    letters: tuple[LetterRole, ...]
    outputs: tuple[tuple[int, str], ...]
    named: tuple[tuple[int, int], ...]
    notes: list[str]


def letter_roles(
    equations: Sequence[tuple[int, int, str]], family: Family, starts: Sequence[int]
) -> Roles:
    """The post's own letters for the layer's roles (``Roles``), from its equations ``(line,
    column, text)``; ``starts`` are the lines where a section starts (``headings``)."""
    trees: list[tuple[int, str, LineNode | None]] = []
    for line, column, text in equations:
        try:
            tree = line_tree(text, line, column)
        except LatexError:
            tree = None
        trees.append((line, text, tree if isinstance(tree, LineNode) else None))
    notes: list[str] = []
    bound: list[_Bound] = []
    forward = [
        (line, text, forward_roles(tree, family.labels, text)) for line, text, tree in trees if tree
    ]
    forward = [(line, text, found) for line, text, found in forward if found is not None]
    if not forward:
        return Roles((), (), (), [])
    outputs = tuple((line, found.pop(OUTPUT)) for line, _, found in forward if OUTPUT in found)
    output_of = dict(outputs)
    named = tuple(
        (line, k)
        for line, _, tree in trees
        if tree is not None and line in {at for at, _, _ in forward}
        for k in _named_members(tree, family.labels)
    )
    for line, text, _found in forward:
        if line in output_of:
            role = ROLE_TEXT[output_of[line]]
            notes.append(
                f"the left side of line {line} ({' '.join(text.split())}) read as {role}: "
                "it names a function of the input, and its right side is the layer's forward line"
            )
    uses = _uses(trees, family, {line for line, _, _ in forward})
    for line, text, found in forward:
        made, said = _admit(found, line, text, uses, family)
        bound += made
        notes += said
    roles = _scoped(bound, trees, starts, notes)
    return Roles(roles, outputs, named, notes)


def _named_members(tree: LineNode, labels: frozenset[str]) -> list[int]:
    """The members k ≥ 1 of a forward line's chain that name the output as a function of its
    input V, \\hat{y} = BN(y) = (y − μ)/σ: F(V) with F a word (``_function_of``)."""
    shapes = [(k, _shape(side, labels)) for k, side in enumerate(tree.sides) if k > 0 and side]
    value = next((shape[1] for _, shape in shapes if shape is not None), None)
    if value is None:
        return []
    return [
        k
        for k, side in enumerate(tree.sides)
        if k > 0 and side is not None and _function_of(side, "", labels) == value
    ]


def forward_roles(
    tree: LineNode, labels: frozenset[str] = frozenset(), text: str = ""
) -> dict[str, str] | None:
    """{letter: role} of a forward line OUT = P·(V − μ)/D + Q (or (V − μ)/D alone): the letters
    as written (a role written with its usual symbol, γ, β, x, y, is left out); None when the
    line has another shape, or gives one letter two roles.  A left side that names a function
    of V (llm.c's \\text{LayerNorm}(x), \\mathrm{LN}(x_i)) is the output: key ``OUTPUT``."""
    if len(tree.sides) < 2 or tree.sides[0] is None:
        return None
    for rhs in tree.sides[1:]:
        shape = _shape(rhs, labels)
        if shape is not None:
            break
    else:
        return None
    scale, value, shift = shape
    out_role = "y" if scale is not None or shift is not None else "xhat"
    pairs: list[tuple[str | None, str]] = [(scale, "gamma"), (shift, "beta"), (value, "x")]
    roles: dict[str, str] = {}
    if _function_of(tree.sides[0], text, labels) == value:
        roles[OUTPUT] = out_role
    else:
        pairs.append((_letter(tree.sides[0], labels), out_role))
    for letter, role in pairs:
        if letter is None or letter in ("\\gamma", "\\beta"):
            continue
        if roles.get(letter, role) != role:
            return None  # y = a·(x − μ)/σ + a: one letter, two roles
        roles[letter] = role
    usual = {"x": "x", "X": "x", "h": "x", "y": "y", "Y": "y"}
    return {k: v for k, v in roles.items() if usual.get(k) != v}


def _function_of(lhs: Node, text: str, labels: frozenset[str]) -> str | None:
    """V of a left side F(V) that names a function by a word: \\mathrm{LN}(x) (a word letter
    and its argument), BN(y) (capitals side by side), or \\text{LayerNorm}(x) (the grammar keeps no \\text{…}: the line's
    text starts with it, and its left side is the argument in parentheses)."""
    arg: Node | None = None
    if (
        isinstance(lhs, Product)
        and len(lhs.items) == 2
        and isinstance(lhs.items[0], Letter)
        and lhs.items[0].font in ("mathrm", "operatorname", "text")
        and len(lhs.items[0].name) > 1
    ):
        lhs, arg = lhs.items[1], None
    elif (
        isinstance(lhs, Product)
        and len(lhs.items) > 2
        and all(
            isinstance(n, Letter) and not n.font and n.name.isupper() and len(n.name) == 1
            for n in lhs.items[:-1]
        )
    ):
        # BN(y): a word in italic capitals before the input in parentheses, on a forward line
        # (a product B·N·y would be a number times the input, never the normalized input)
        lhs, arg = lhs.items[-1], None
    elif not re.match(
        r"\s*\\(text|mathrm|operatorname)\s*\{\s*[A-Za-z]{2,}\s*\}\s*(\\left)?\(", text
    ):
        return None
    if isinstance(lhs, Group) and lhs.kind == "paren":
        arg = lhs.inner
    return _letter(arg, labels) if arg is not None else None


def _shape(node: Node, labels: frozenset[str]) -> tuple[str | None, str, str | None] | None:
    """(P, V, Q) of P·(V − μ)/D + Q; P, Q None when absent."""
    node = _bare(node)
    terms = node.terms if isinstance(node, SumExpr) else (("+", node),)
    if any(sign != "+" for sign, _ in terms) or len(terms) > 2:
        return None
    for k, (_, term) in enumerate(terms):
        scaled = _scaled(term, labels)
        if scaled is None:
            continue
        scale, value = scaled
        shift = None
        if len(terms) == 2:
            shift = _letter(terms[1 - k][1], labels) or _macro(terms[1 - k][1], "beta")
            if shift is None:
                return None
        return scale, value, shift
    return None


def _scaled(node: Node, labels: frozenset[str]) -> tuple[str | None, str] | None:
    """(P, V) of P·(V − μ)/D, or (None, V) of (V − μ)/D."""
    node = _bare(node)
    items = node.items if isinstance(node, Product) else (node,)
    items = [_bare(n) for n in items if not (isinstance(n, Op) and n.op == "*")]
    fracs = [n for n in items if isinstance(n, Frac)]
    if len(fracs) != 1 or len(items) > 2:
        return None
    value = _centred(fracs[0], labels)
    if value is None:
        return None
    if len(items) == 1:
        return None, value
    other = items[1] if isinstance(items[0], Frac) else items[0]
    scale = _letter(other, labels) or _macro(other, "gamma")
    return (scale, value) if scale is not None else None


def _centred(frac: Frac, labels: frozenset[str]) -> str | None:
    """V of (V − μ)/D, D a spread (it writes σ, or a variance)."""
    num = _bare(frac.num)
    if not isinstance(num, SumExpr) or len(num.terms) != 2:
        return None
    (s1, v), (s2, mu) = num.terms
    if s1 != "+" or s2 != "-" or _macro(mu, "mu") is None:
        return None
    spread = any(isinstance(n, Macro) and n.name == "sigma" for n in _walk(frac.den))
    spread = (
        spread or "var" in "".join(n.name for n in _walk(frac.den) if isinstance(n, Letter)).lower()
    )
    return _letter(v, labels) if spread else None


def _bare(node: Node) -> Node:
    while isinstance(node, Group):
        node = node.inner
    return node


def _letter(node: Node | None, labels: frozenset[str]) -> str | None:
    """The letter of x, x_i, {w_c}, Z^l (a layer label): a plain letter with any subscript."""
    if node is None:
        return None
    node = _bare(node)
    if isinstance(node, Scripted):
        if node.sup is not None and not _is_label(node.sup, labels):
            return None
        node = _bare(node.base)
    if isinstance(node, Letter) and not node.font and len(node.name) == 1:
        return node.name
    return None


def _macro(node: Node, name: str) -> str | None:
    node = _bare(node)
    if isinstance(node, Scripted):
        node = _bare(node.base)
    return f"\\{name}" if isinstance(node, Macro) and node.name == name else None


def _is_label(sup: ScriptArg, labels: frozenset[str]) -> bool:
    if len(sup.items) != 1 or sup.items[0][1] is not None:
        return False
    mark = _bare(sup.items[0][0])
    return isinstance(mark, Letter) and mark.name in labels


def _walk(node: object) -> Iterator[Node]:
    """Every node under ``node`` (itself included), through every field."""
    if isinstance(node, Node):
        yield node
        for f in fields(node):
            yield from _walk(getattr(node, f.name))
    elif isinstance(node, tuple):
        for item in node:
            yield from _walk(item)


# -- which bindings are admitted ------------------------------------------------------------------
@dataclass
class _Uses:
    """What the maths makes of its letters besides a forward line, read once: the first line
    that writes each as an index, or defines it (its line's left side), and every letter
    written."""

    index: dict[str, int]
    defined: dict[str, int]
    written: set[str]
    #: letters written with a number for subscript outside the forward lines (b_1, b_2: a linear
    #: layer's biases beside BatchNorm's b in Ouroboros 2021), with the first line
    numbered: dict[str, int]
    #: the first line whose left side is each letter (y_i = …, forward lines included): the
    #: letter is an output there
    outputs: dict[str, int] = field(default_factory=dict)
    #: the first line that writes each letter as an index other than a statistic's one-letter
    #: subscript (μ_y, σ_y name the quantity whose statistics they are)
    indexes: dict[str, int] = field(default_factory=dict)


def _uses(
    trees: Sequence[tuple[int, str, LineNode | None]], family: Family, forward: set[int]
) -> _Uses:
    uses = _Uses({}, {}, set(), {})
    for at, text, tree in trees:
        if tree is None:  # a line not parsed: a letter alone in a subscript is an index
            for m in re.finditer(r"_\s*\{([^{}]*)\}|_\s*([A-Za-z])", text):
                for letter in re.findall(r"(?<![a-zA-Z\\])[A-Za-z](?![a-zA-Z])", m.group(0)[1:]):
                    uses.index.setdefault(letter, at)
            continue
        for n in _walk(tree):
            if isinstance(n, Letter) and not n.font:
                uses.written.add(n.name)
            for letter in _index_letters(n, family.sizes):
                uses.index.setdefault(letter, at)
                if letter != _statistic_of(n):
                    uses.indexes.setdefault(letter, at)
            if at not in forward and _numbered(n) is not None:
                uses.numbered.setdefault(_numbered(n), at)  # type: ignore[arg-type]
        lhs = tree.sides[0] if tree.sides else None
        written = _letter(lhs, family.labels)
        if written is not None and len(tree.sides) > 1:  # y alone (a heading's y) states nothing
            uses.outputs.setdefault(written, at)
        letter = written if at not in forward else None
        if letter is not None:
            uses.defined.setdefault(letter, at)
    return uses


def _admit(
    found: dict[str, str], line: int, text: str, uses: _Uses, family: Family
) -> tuple[list[_Bound], list[str]]:
    """The bindings of one forward line that clash with nothing, and the notes: what each letter
    is read as, and each refused binding with its reason."""
    written = " ".join(text.split())
    made: list[_Bound] = []
    notes: list[str] = []
    for letter, role in found.items():
        clash = (
            _input_y_clash(letter, uses) if _input_y(letter, role) else _clash(letter, uses, family)
        )
        if clash is None and role in ("gamma", "beta") and letter in uses.numbered:
            # γ and β are one number (per set or per feature): b_1 is something else
            clash = f"line {uses.numbered[letter]} writes {letter} with a number, {letter}_1"
        if clash is not None:
            notes.append(
                f"{letter} is not read as {ROLE_TEXT[role]} although line {line} ({written}) "
                f"has the shape of the layer's forward line: {clash}"
            )
            continue
        made.append(_Bound(letter, role, line, written))
        other = letter.swapcase()
        if role in ("y", "xhat", "x") and other != letter and other not in found:
            clash = (
                _input_y_clash(other, uses)
                if _input_y(other, role)
                else _clash(other, uses, family)
            )
            if clash is None and other in uses.written:
                made.append(_Bound(other, role, line, written, partner=True))
        if _input_y(letter, role):
            notes.append(
                f"y is the layer's input here, not its output: line {line} ({written}) "
                "normalizes y and no line writes y as an output, so y is read as x, ŷ as "
                "x̂, ∂L/∂y as ∂L/∂x"
            )
    return made, notes


def _input_y(letter: str, role: str) -> bool:
    """y (or Y) as the input of a forward line: (ŷ =) (y − μ)/σ, a layer that normalizes y."""
    return letter in ("y", "Y") and role == "x"


def _input_y_clash(letter: str, uses: _Uses) -> str | None:
    """Why y (Y) cannot be the input: a line that writes it as an output (its left side), where
    y means the layer's output as the reader reads it everywhere else; both meanings in one
    post would make every y ambiguous.  An index y is refused too."""
    if letter in uses.indexes:
        return f"line {uses.indexes[letter]} writes {letter} as an index"
    for other in (letter, letter.swapcase()):
        if other in uses.outputs:
            return f"line {uses.outputs[other]} writes {other} as an output ({other} = …)"
    return None


def _clash(letter: str, uses: _Uses, family: Family) -> str | None:
    """Why ``letter`` cannot be read as a role of the layer: what else the maths makes of it."""
    if letter in _RESERVED or letter in _INDEX_LETTERS or letter in ("e", "l", "D"):
        return f"the reader reads {letter} as another quantity or an index"
    if letter in family.sizes or letter == family.batch:
        return f"{letter} is a size of this post"
    if letter in family.samples | family.elements | family.channels:
        return f"{letter} is an index of this post (x_{letter})"
    if letter in family.labels:
        return f"{letter} is this post's layer label"
    if letter in uses.index:
        return f"line {uses.index[letter]} writes {letter} as an index"
    if letter in uses.defined:
        return f"line {uses.defined[letter]} defines {letter} as a quantity of its own"
    return None


def _numbered(node: Node) -> str | None:
    """The letter of b_1, b_{12}: a plain letter whose subscript is a number."""
    if not isinstance(node, Scripted) or node.sub is None or len(node.sub.items) != 1:
        return None
    base, mark = _bare(node.base), _bare(node.sub.items[0][0])
    if isinstance(base, Letter) and not base.font and isinstance(mark, Num):
        return base.name
    return None


def _statistic_of(node: Node) -> str | None:
    """y of μ_y, σ_y, σ^2_y: a statistic's subscript that is one letter."""
    if not isinstance(node, Scripted) or node.sub is None or len(node.sub.items) != 1:
        return None
    base, mark = _bare(node.base), _bare(node.sub.items[0][0])
    if isinstance(base, Macro) and base.name in ("mu", "sigma") and node.sub.items[0][1] is None:
        return mark.name if isinstance(mark, Letter) and not mark.font else None
    return None


def _index_letters(node: Node, sizes: frozenset[str]) -> set[str]:
    """The letters ``node`` puts in a subscript or a sum's limits (a size's subscript, N_{row}
    or N_i, names what it counts: no index of its own)."""
    args: list[ScriptArg | None] = []
    if isinstance(node, Scripted):
        base = _bare(node.base)
        if isinstance(base, Letter) and base.name in sizes | {"N", "M", "m", "n"}:
            return set()
        args = [node.sub]
    elif isinstance(node, BigSum):
        args = [node.sub, node.sup]
    return {
        n.name
        for arg in args
        if arg is not None
        for n in _walk(arg)
        if isinstance(n, Letter) and not n.font
    }


# -- where each meaning holds ---------------------------------------------------------------------
def _scoped(
    bound: list[_Bound],
    trees: Sequence[tuple[int, str, LineNode | None]],
    starts: Sequence[int],
    notes: list[str],
) -> tuple[LetterRole, ...]:
    """Each letter's meanings over the lines: the first from the document's start, a new one
    from a forward line in a later section; ambiguous (role None, with the reason) from a
    rebinding in the same section, or from a line that writes γ or β again after a letter was
    rebound from y to x̂."""
    out: list[LetterRole] = []
    for line, written in sorted({b.line: b.written for b in bound}.items()):
        said = [
            f"{_both(b, bound)} as {ROLE_TEXT[b.role]}"
            for k, b in enumerate(bound)
            if b.line == line
            and not b.partner
            and not any(p.letter == b.letter and p.role == b.role for p in bound[:k])
        ]
        if said:
            notes.append(
                f"read {', '.join(said)}: line {line} writes the layer's forward line "
                f"(y = γ·(x − μ)/σ + β, or x̂ = (x − μ)/σ) as {written}"
            )
    for letter in dict.fromkeys(b.letter for b in bound):
        mine = [b for b in bound if b.letter == letter]
        runs = [b for k, b in enumerate(mine) if k == 0 or b.role != mine[k - 1].role]
        out += _meanings(letter, runs, bound, trees, starts, notes)
    return tuple(out)


def _both(b: _Bound, bound: list[_Bound]) -> str:
    """ "Z and z": a letter with the other case bound with it."""
    other = [p.letter for p in bound if p.partner and p.line == b.line and p.role == b.role]
    return " and ".join([b.letter, *other])


def _meanings(
    letter: str,
    runs: list[_Bound],
    bound: list[_Bound],
    trees: Sequence[tuple[int, str, LineNode | None]],
    starts: Sequence[int],
    notes: list[str],
) -> list[LetterRole]:
    """One letter's meanings, in order of its forward lines (``_scoped``)."""
    out: list[LetterRole] = []
    for k, b in enumerate(runs):
        start = 0 if k == 0 else b.line
        end = runs[k + 1].line if k + 1 < len(runs) else None
        if k > 0:
            prev = runs[k - 1]
            if _section(b.line, starts) == _section(prev.line, starts):
                reason = (
                    f"{letter} is read as {ROLE_TEXT[prev.role]} from line {prev.line} "
                    f"({prev.written}) and as {ROLE_TEXT[b.role]} from line {b.line} "
                    f"({b.written}), in the same section: which one a line after that means "
                    "is not said"
                )
                if not b.partner:
                    notes.append(reason)
                return [*out, LetterRole(letter, None, b.line, None, reason)]
            notes += (
                []
                if b.partner
                else [
                    f"{_both(b, bound)} read as {ROLE_TEXT[b.role]} from line {b.line} ({b.written}), a "
                    f"forward line in a new section (before it, {ROLE_TEXT[prev.role]})"
                ]
            )
        guard = _affine_again(b, runs[:k], bound, trees, end)
        if guard is None:
            out.append(LetterRole(letter, b.role, start, end, "", b.line))
            continue
        at, what = guard
        reason = (
            f"{letter} is read as x̂ from line {b.line} ({b.written}, without γ and β), but "
            f"line {at} writes {what} again: {letter} may mean y there, as from line "
            f"{runs[k - 1].line}, and which one is not said"
        )
        if not b.partner:
            notes.append(reason)
        out.append(LetterRole(letter, b.role, start, at, "", b.line))
        out.append(LetterRole(letter, None, at, end, reason))
    return out


def _section(line: int, starts: Sequence[int]) -> int:
    return sum(1 for s in starts if s <= line)


def _affine_again(
    b: _Bound,
    before: list[_Bound],
    bound: list[_Bound],
    trees: Sequence[tuple[int, str, LineNode | None]],
    end: int | None,
) -> tuple[int, str] | None:
    """The first line after ``b`` (a rebinding to x̂ of a letter that meant y) that writes γ or
    β, by its symbol or the post's letter: (line, what it writes)."""
    if b.role != "xhat" or not any(p.role == "y" for p in before):
        return None
    affine = {p.letter: ROLE_TEXT[p.role] for p in bound if p.role in ("gamma", "beta")}
    for at, text, tree in trees:
        if at <= b.line or (end is not None and at >= end):
            continue
        for n in _walk(tree) if tree is not None else ():
            if isinstance(n, Macro) and n.name in ("gamma", "beta"):
                return at, f"\\{n.name}"
            if isinstance(n, Letter) and n.name in affine and not n.font:
                return at, f"{n.name} ({affine[n.name]})"
        if tree is None:
            for letter, role in affine.items():
                if re.search(rf"(?<![a-zA-Z\\]){letter}(?![a-zA-Z])", text):
                    return at, f"{letter} ({role})"
            if re.search(r"\\(gamma|beta)(?![a-zA-Z])", text):
                return at, "γ or β"
    return None
