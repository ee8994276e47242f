"""Indices: the role of each index letter on a line (the element of the set, or a feature
that is dropped), an array's subscripts, the set's size (N, m, N_i, N_s × N_k); Einstein's
convention (an index repeated in a term and not free on the left side is summed), ones tensors
(1_h), Kronecker's δ and the indicator [k = i], and the conditions written after a value.
"""

from __future__ import annotations

import sympy as sp

from bnderive.core import notation as N
from bnderive.read.latex_results import Pos
from bnderive.read.latex_syntax import (
    Letter,
    Node,
    Num,
    Ones,
    Product,
    Relation,
    ScriptArg,
    Scripted,
    SumExpr,
    _describe,
    _index_counts,
    unbraced,
)
from bnderive.read.latex_vocabulary import _BARE, _ONES, _PLACEHOLDER, _is_ones, _Item, _part_size


class _IndexReading:
    """``_Meaning``'s reading of indices, Einstein's convention, ones and δ."""

    def role(self, name: str, role: str, pos: Pos) -> None:
        seen = self.roles.get(name)
        if seen is None:
            self.roles[name] = (role, pos)
        elif seen[0] != role:
            line, column = self.at(seen[1])
            raise self.error(
                f"the index {name} is used as {role} here but as {seen[0]} at line {line}, "
                f"column {column}; features never mix, so an index is one or the other",
                pos,
            )

    def element_symbol(self, names: list[str], pos: Pos) -> sp.Expr:
        if len(names) == 1:
            name = names[0]
            if name.isdigit():
                return sp.Integer(int(name))
            self.role(name, "element", pos)
            return sp.Symbol(name, integer=True)
        for name in names:
            if name.isdigit():
                raise self.error("an element (n, h, w) with a number in it is not understood", pos)
            self.role(name, "element", pos)
        sym = sp.Symbol("".join(names), integer=True)
        self.composites[sym] = tuple(names)
        return sym

    def index_names(self, arg: ScriptArg) -> list[tuple[str, Pos]]:
        """{ij}, {i,j}, i, 1, {n,h,w} → the index names in order."""
        out: list[tuple[str, Pos]] = []
        for node, eq in arg.items:
            if eq is not None:
                raise self.error("'=' in an index: only sums take i=1", eq.pos)
            parts = node.items if isinstance(node, Product) else (node,)
            for part in parts:
                part = unbraced(part)  # y_{c,{\rm{i}}}: MathType braces an upright index
                if isinstance(part, Letter) and not part.font:
                    out.append((part.name, part.pos))
                elif isinstance(part, Num) and part.text.isdigit():
                    out.append((part.text, part.pos))
                elif isinstance(part, Letter) and part.font == "mathcal" and part.name == "B":
                    out.append(("B", part.pos))
                else:
                    raise self.error(
                        f"{_describe(part)} is not an index: expected letters or a number, "
                        "as in x_i, x_{ij}, x[n][c][h][w]",
                        part.pos,
                    )
        return out

    def array_index(self, item: _Item) -> tuple[sp.Expr, str | None]:
        """The element (and the feature name, dropped) of x_i, x_{ij}, x[n][c][h][w], x."""
        names: list[tuple[str, Pos]] = []
        if item.sub is not None:
            names += self.index_names(item.sub)
        for b in item.brackets:
            names += self.index_names(ScriptArg(b.pos, ((b.inner, None),), True))
        if any(n == "B" for n, _ in names):
            raise self.error("the subscript B (the batch) belongs to μ_B and σ_B²", item.pos)
        if not names:
            return _BARE, None
        if len(names) == 1 and names[0][0] in self.family.vectors:
            # y_i where the document transposes y_i or indexes it again, (y_i)_t: the column
            # of feature i, its element the line's, written bare
            self.feature(*names[0])
            note = (
                f"{names[0][0]} read as the feature, {item.name}_{names[0][0]} as its column over "
                f"the batch: the post transposes it or indexes it again, and sums over no "
                f"{names[0][0]}"
            )
            if note not in self.notes:
                self.notes.append(note)
            return _BARE, names[0][0]
        if len(names) == 1 and names[0][0] in self.columns:
            # x_j next to μ_j on a line with no other index: the column of feature j (its
            # element is the line's, written bare)
            self.feature(*names[0])
            self.notes.append(
                f"{names[0][0]} read as the feature: an array with it as its only index is that "
                f"feature's column (a statistic subscripted {names[0][0]} has no element)"
            )
            return _BARE, names[0][0]
        if len(names) == 1:
            return self.element_symbol([names[0][0]], names[0][1]), None
        if len(names) == 2:  # x_{ij}: sample i, feature j (LayerNorm x_{bh}: sample b, feature h)
            (e, epos), (f, fpos) = names
            if self.family.layer or (e in self.family.channels and f not in self.family.channels):
                # LayerNorm's x_{bh}: sample b, feature h; a channel first, x_{c,i}: channel c
                (e, epos), (f, fpos) = (f, fpos), (e, epos)
            self.feature(f, fpos)
            return self.element_symbol([e], epos), f
        if len(names) == 3 and self.family.layer:  # dy_{b,s,i}: sample (b, s), feature i
            for name, pos in names[:2]:
                self.feature(name, pos)
            return self.element_symbol([names[2][0]], names[2][1]), names[0][0]
        if len(names) == 3 and not self.family.layer:
            # x_{s,c,k}: channel c (a statistic's subscript), element (s, k) (``Family.parts``)
            channel = [(n, p) for n, p in names if n in self.family.channels]
            rest = tuple(n for n, _ in names if n not in self.family.channels)
            if len(channel) == 1 and rest in self.family.parts:
                self.feature(*channel[0])
                return self.element_symbol(list(rest), names[0][1]), channel[0][0]
        if len(names) == 4:  # x[n][c][h][w]: element (n, h, w), channel c
            (n, npos), (c, cpos), (h, _), (w, _) = names
            self.feature(c, cpos)
            return self.element_symbol([n, h, w], npos), c
        raise self.error(
            f"{len(names)} indices: expected one (x_i), two (x_{{ij}}: sample, feature), four "
            "(x[n][c][h][w]) or three with a channel the statistics are subscripted with "
            "(x_{s,c,k} beside μ_c)",
            item.pos,
        )

    def sample_subscript(self, sub: ScriptArg) -> bool:
        """LayerNorm's m_b: the subscript is a letter the document writes as the sample of
        x_{bh} (``Family.samples``), so the name is one number per sample."""
        if not self.family.layer:
            return False
        names = self.index_names(sub)
        return len(names) == 1 and names[0][0] in self.family.samples

    def feature(self, name: str, pos: Pos) -> None:
        if name.isdigit():
            raise self.error("a feature or channel written as a number is not understood", pos)
        self.role(name, "feature", pos)

    def stat_subscripts(self, item: _Item) -> str | None:
        """μ_B, μ_\\mathcal{B}, μ_j, μ[C]: the batch marker or a feature, both dropped; the
        feature's name, if one is written."""
        names: list[tuple[str, Pos]] = []
        if item.sub is not None:
            names += self.index_names(item.sub)
        for b in item.brackets:
            names += self.index_names(ScriptArg(b.pos, ((b.inner, None),), True))
        feature = None
        for name, pos in names:
            if name != "B":
                self.feature(name, pos)
                feature = name
        return feature

    def side_value(self, node: Node) -> sp.Expr:
        """One side of an equation.  Under Einstein's convention (``Family.einstein``) each of its
        terms is summed over every index it writes twice or more that is not free on the left
        side (``keep``): an element index over the set, a sample index (LayerNorm's b of
        x_{bh}) by the δ that picks the sample; then the ones tensors 1_h are ones."""
        if not self.family.einstein:
            return self.value(node)
        terms = node.terms if isinstance(node, SumExpr) else (("+", node),)
        total = sp.Integer(0)
        for sign, term in terms:
            value = self.einstein_term(term, self.value(term))
            total = total + (-value if sign in ("-", "−") else value)
        return total.replace(_is_ones, lambda _: sp.Integer(1))

    def einstein_term(self, term: Node, value: sp.Expr) -> sp.Expr:
        counts = _index_counts(term)
        summed = []
        for name in sorted(counts):
            if counts[name] < 2 or name in self.keep or self.family.pairs and counts[name] != 2:
                continue
            role = self.roles.get(name, ("",))[0]
            symbol = sp.Symbol(name, integer=True)
            if role == "element" and symbol in value.free_symbols:
                value = self.sum_value(value, [(name, term.pos)], term.pos, [], None)
                summed.append(name)
            elif role == "feature" and self.family.layer:
                deltas = [d for d in value.atoms(sp.KroneckerDelta) if symbol in d.args]
                if deltas:
                    value = self.collapse_feature(value, name, term.pos)
                    summed.append(name)
            elif role == "feature":  # BatchNorm: Σ_j over features would mix them
                value = self.collapse_feature(value, name, term.pos)
                summed.append(name)
        if summed:
            self.notes.append(
                "repeated indices summed (Einstein's convention): "
                + ", ".join(f"Σ_{n}" for n in summed)
            )
        return value

    def iverson(self, node: Relation) -> sp.Expr:
        """[k = i], 1(k == i), \\mathbb{1}[k = i]: Kronecker's δ_ki; [k \\ne i]: 1 − δ_ki."""
        sides = []
        for part in (node.lhs, node.rhs):
            names = self.index_names(ScriptArg(part.pos, ((part, None),), True))
            if len(names) != 1 or names[0][0] == "B":
                raise self.error(
                    "a bracket [k = i] compares two indices: expected one index letter (or "
                    "number) on each side",
                    part.pos,
                )
            name, pos = names[0]
            sides.append(
                sp.Integer(int(name)) if name.isdigit() else self.element_symbol([name], pos)
            )
        delta = sp.KroneckerDelta(*sides)
        return delta if node.op == "eq" else 1 - delta

    def sizes(self, items: list[_Item]) -> list[_Item]:
        """N H W (with or without \\cdot) is M; so are N, m, M alone."""
        out: list[_Item] = []
        k = 0
        while k < len(items):
            it = items[k]
            got = self.part_sizes(items, k)
            if got is not None:
                out.append(got[0])
                k = got[1]
                continue
            if self.is_letter(it, "N"):
                seq = [it]
                j = k + 1
                for want in ("H", "W"):
                    if j < len(items) and items[j].kind == "op" and items[j].name == "*":
                        j += 1
                    if j < len(items) and self.is_letter(items[j], want):
                        seq.append(items[j])
                        j += 1
                    else:
                        break
                if len(seq) == 3:
                    out.append(_Item("size", it.pos, "NHW", seq[-1].node, seq[-1].sub, seq[-1].sup))
                    k = j
                    continue
            out.append(it)
            k += 1
        return out

    def part_sizes(self, items: list[_Item], k: int) -> tuple[_Item, int] | None:
        """N_s × N_k (or N_s N_k, N_s \\cdot N_k), each maybe in braces, for the two letters
        of an element (s, k) of x_{s,c,k} (``Family.parts``): the number of (s, k), the size
        of the set; the item, and where the items after it begin.  N_s alone is no size."""
        first = _part_size(items[k])
        if first is None or not self.family.parts:
            return None
        j = k + 1
        if j < len(items) and items[j].kind == "op" and items[j].name == "*":
            j += 1
        second = _part_size(items[j]) if j < len(items) else None
        if second is None or (first, second) not in self.family.parts | {
            (b, a) for a, b in self.family.parts
        }:
            return None
        return _Item("size", items[k].pos, f"N_{first} N_{second}", sup=items[j].sup), j + 1

    def kron_value(self, it: _Item) -> sp.Expr:
        """Kronecker's delta: two indices (\\delta_{ik}), or upper and lower ones comparing two
        elements (\\delta^{n,h,w}_{N,H,W}, \\delta^{i}_{k})."""
        if it.upper is not None:
            upper, lower = self.index_names(it.upper), self.index_names(it.sub)
            if (
                len(upper) != len(lower)
                or len(upper) not in (1, 3)
                or any(n == "B" or n.isdigit() for n, _ in upper + lower)
            ):
                raise self.error(
                    "a Kronecker delta with upper and lower indices compares two elements: "
                    "\\delta^{n,h,w}_{N,H,W} (or \\delta^{i}_{k}); for two indices write "
                    "\\delta_{ik}",
                    it.pos,
                )
            return sp.KroneckerDelta(
                self.element_symbol([n for n, _ in upper], upper[0][1]),
                self.element_symbol([n for n, _ in lower], lower[0][1]),
            )
        names = self.index_names(it.sub)
        if len(names) != 2 or any(n == "B" for n, _ in names):
            raise self.error("Kronecker's delta takes two indices, as in \\delta_{ik}", it.sub.pos)
        args = []
        for name, _ in names:
            if name.isdigit():
                args.append(sp.Integer(int(name)))
            else:
                args.append(sp.Symbol(name, integer=True))
        return self.power(sp.KroneckerDelta(*args), it)

    def counts_elements(self, sub: ScriptArg) -> bool:
        """N_i: a size subscripted with a letter the document writes as an element index
        (``Family.elements``) and that is no feature on this line."""
        if len(sub.items) != 1 or sub.items[0][1] is not None:
            return False
        node = sub.items[0][0]
        node = unbraced(node)
        if not isinstance(node, Letter) or node.font or node.name not in self.family.elements:
            return False
        return self.roles.get(node.name, ("element",))[0] == "element"

    def is_size(self, sub: ScriptArg) -> bool:
        return (
            len(sub.items) == 1
            and isinstance(sub.items[0][0], Letter)
            and not sub.items[0][0].font
            and (sub.items[0][0].name in ("N", "m", "M") or sub.items[0][0].name.isupper())
        )

    def einstein_ones(self, node: Scripted) -> bool:
        """\\mathbf{1}_h with an index under Einstein's convention (not \\mathbf{1}_N, a size)."""
        return (
            self.family.einstein
            and isinstance(node.base, Ones)
            and node.sub is not None
            and node.sup is None
            and not self.is_size(node.sub)
        )

    def ones_tensor(self, sub: ScriptArg) -> sp.Expr:
        """\\mathbf{1}_h in Einstein's notation: ones indexed by h, which broadcast (1_h m_b) or,
        with h repeated, sum (1_h x_{bh} = Σ_h x_{bh}); 1_b over LayerNorm's samples is 1."""
        names = self.index_names(sub)
        if len(names) != 1 or names[0][0] == "B" or names[0][0].isdigit():
            raise self.error("a ones tensor takes one index, as in \\mathbf{1}_h", sub.pos)
        name, pos = names[0]
        if self.family.layer and name in self.family.samples:
            self.feature(name, pos)
            return sp.Integer(1)
        return sp.IndexedBase(_ONES)[self.element_symbol([name], pos)]

    def size_subscript(self, sub: ScriptArg) -> None:
        """\\mathbf{1}_N: the subscript of a vector of ones is the size of the set."""
        if len(sub.items) == 1 and isinstance(sub.items[0][0], Letter):
            if sub.items[0][0].name in ("N", "m", "M") and not sub.items[0][0].font:
                return
        raise self.error("expected the size N (or m, M) under a vector of ones", sub.pos)

    def element_indices(self, expr: sp.Expr) -> set[sp.Symbol]:
        return {
            s
            for s in expr.free_symbols
            if isinstance(s, sp.Symbol)
            and s.is_integer
            and s != N.M
            and not _PLACEHOLDER.fullmatch(s.name)
        }
