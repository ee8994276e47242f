"""Sums: Σ over the set with its limits checked (the whole set, or a part that is refused
or read as the post means it), over a feature (the term at the line's feature), over LayerNorm's
batch; the Σ's scope, when the notation leaves it open (an ``Ambiguity``); the mean and variance
written as E[x], Var[x] and x̄.
"""

from __future__ import annotations

import sympy as sp

from bnderive.core import notation as N
from bnderive.read.latex_results import Ambiguity, Pos
from bnderive.read.latex_syntax import (
    BigSum,
    Letter,
    Macro,
    Mean,
    Node,
    Num,
    Op,
    Product,
    Relation,
    ScriptArg,
    _describe,
    _is_member,
    _render,
    _short,
    _uses_index,
)
from bnderive.read.latex_vocabulary import _BARE, _OVER_BATCH, _Item, _part_size, _vanishes, undot


class _SumReading:
    """``_Meaning``'s reading of Σ, its limits and its scope; E[x], Var[x], x̄."""

    def overline_value(self, node: Mean) -> sp.Expr:
        """x̄: the mean of the set, μ (\\overline{x_k}: the mean of feature k)."""
        inner = self.item(node.arg)
        if inner.kind != "letter" or inner.name not in ("x", "h", "X") or inner.node.font:
            raise self.error(
                f"\\overline{{{_describe(node.arg)}}}: only x̄ (the mean of x) is understood",
                node.pos,
            )
        if inner.sub is not None:
            for name, pos in self.index_names(inner.sub):
                self.feature(name, pos)
        said = "x̄ read as μ, the mean of the set (1/M) Σ_k x_k"
        if said not in self.notes:
            self.notes.append(said)
        return N.mu

    def bigsum(self, node: BigSum) -> sp.Expr:
        narrow = self.sum_scope(node)
        if narrow is not None:  # the sum covers its first factor only: Σ(…) · the rest
            return self.value(narrow)
        self.in_sum += 1  # a sum's body is index notation: no matrix notation inside
        try:
            return self.bigsum_value(node)
        finally:
            self.in_sum -= 1

    def bigsum_value(self, node: BigSum) -> sp.Expr:
        both = self.part_sum(node)
        if both is not None:
            return both
        bound, excluded = self.sum_indices(node)
        explicit = self.check_limits(node)
        if explicit == _OVER_BATCH:
            return self.batch_sum(node, bound, excluded)
        body = self.value(node.body)
        return self.sum_value(body, bound, node.pos, excluded, explicit)

    def part_sum(self, node: BigSum) -> sp.Expr | None:
        """Σ_{s=1}^{N_s} Σ_{k=1}^{N_k} over the two letters of an element (s, k) of x_{s,c,k}
        (``Family.parts``): one sum over the set, each index up to its own N; None for any
        other sum."""
        inner = node.body
        if not self.family.parts or not isinstance(inner, BigSum):
            return None
        outer_bound, outer_out = self.sum_indices(node)
        inner_bound, inner_out = self.sum_indices(inner)
        if outer_out or inner_out or len(outer_bound) != 1 or len(inner_bound) != 1:
            return None
        pair = (outer_bound[0][0], inner_bound[0][0])
        if pair not in self.family.parts and pair[::-1] not in self.family.parts:
            return None
        for one, (letter, _) in ((node, outer_bound[0]), (inner, inner_bound[0])):
            top = one.sup.items[0][0] if one.sup is not None and len(one.sup.items) == 1 else None
            limit = _part_size(_Item("node", one.pos, node=top)) if top is not None else None
            if self.lower_limit(one) != 1 or limit != letter:
                raise self.error(
                    f"a sum over {letter}, a part of the element ({', '.join(pair)}), is "
                    f"understood from 1 to N_{letter} only (the number of values {letter} takes)",
                    one.pos,
                )
        body = self.value(inner.body)
        return self.sum_value(body, outer_bound + inner_bound, node.pos, [], None)

    def batch_sum(
        self, node: BigSum, bound: list[tuple[str, Pos]], excluded: list[sp.Expr]
    ) -> sp.Expr:
        """LayerNorm's Σ_{b=1}^{N} over the samples: its index names the sample (a set), and one
        set's view of ∂L/∂γ_i = Σ_b g_{bi} x̂_{bi} is its own term; any other quantity is one
        sample's, so the sum needs a δ that picks it (as a sum over BatchNorm's features)."""
        if excluded or len(bound) > 1:
            raise self.error("a sum over the batch leaves no sample out", node.pos)
        for name, pos in bound:
            self.feature(name, pos)
        body = undot(self.value(node.body))
        if self.batch_sum_ok:
            return body
        for name, _ in bound:
            body = self.collapse_feature(body, name, node.pos)
        return body

    def sum_scope(self, node: BigSum) -> Product | None:
        """\\sum_{i=1}^m (g_i (x_i - μ)) \\frac{2}{m}(x_i - μ) on a line about x_i: the sum's
        index is the line's own element, and a factor after the first uses it.  Whether that
        factor is inside the sum (as the notation reads: the body is the rest of the product)
        or is the line's x_i cannot be told: each is a reading (``Ambiguity``), the sum covering
        all of the product, or its factors up to one of them (each place after which a factor
        uses i).  A reading of the second kind is returned as the product Σ(first ones) · rest."""
        if (
            self.line_element is None
            or not isinstance(node.body, Product)
            or node.sub is None
            or node.scoped
        ):
            return None
        element = self.line_element
        if element not in {n for n, _ in self.sum_indices(node)[0]}:
            return None
        items = node.body.items
        factors = [k for k, n in enumerate(items) if not isinstance(n, Op)]
        cuts = [
            k
            for k in factors[1:]
            if any(_uses_index(n, element) for n in items[k:] if not isinstance(n, Op))
        ]
        if not cuts:
            return None
        labels = [f"the sum covers {_short(_render(node.body))} (its {element} throughout)"]
        for k in cuts:
            head = [n for n in items[:k] if not isinstance(n, Op) or n is not items[k - 1]]
            labels.append(
                f"the sum covers {_short(_render(Product(node.pos, tuple(head))))} only, and "
                f"{_short(_render(Product(items[k].pos, items[k:])))} after it is the line's "
                f"{element}"
            )
        ambiguity = Ambiguity(
            "sum",
            node.pos,
            f"the sum's index {element} is also the line's element {element}, and a factor "
            f"after the first uses it: is it inside the sum or the line's {element}",
            tuple(labels),
            "Rename the sum's index, or group its body",
        )
        chosen = self.choose(ambiguity)
        if chosen == 0:
            return None
        k = cuts[chosen - 1]
        if isinstance(items[k - 1], Op):
            k -= 1  # Σ a \\cdot b, Σ a / b: the operator joins the sum to what follows
        body = items[0] if k == 1 else Product(items[0].pos, items[:k])
        inner = BigSum(node.pos, node.sub, node.sup, body, scoped=True)
        return Product(node.pos, (inner, *items[k:]))

    def mean_value(self, it: _Item) -> sp.Expr:
        """E[x] over the batch: (1/M) Σ, the element inside written bare or with the index of
        E_i (E_B, E_{\\mathcal{B}} name the batch)."""
        bound: list[tuple[str, Pos]] = []
        if it.sub is not None:
            bound = [(n, p) for n, p in self.index_names(it.sub) if n != "B"]
        body = self.value(it.node.inner)
        return self.sum_value(body, bound, it.pos, [], None) / N.M

    def variance_value(self, it: _Item) -> sp.Expr:
        """Var[x] of the layer's input is σ², the variance of the document's convention; Var of
        another expression is the mean of its squared deviations from its mean, (1/M) Σ_k (f_k −
        E[f])² (the biased variance of the set's values; Var_i names the summed index as E_i
        does)."""
        bound: list[tuple[str, Pos]] = []
        if it.sub is not None:
            bound = [(n, p) for n, p in self.index_names(it.sub) if n != "B"]
        body = self.value(it.node.inner)
        if not bound and body == N.x[_BARE]:
            # Var[x], \text{var}(y) of the layer's input: the variance x̂ is normalized with,
            # σ² of the document's convention (1/M, or Bessel's 1/(M − 1) where it says so)
            self.notes.append(
                f"{it.name}[x] read as σ², the variance of the layer's input (as its convention "
                "defines it)"
            )
            return N.var
        mean = self.sum_value(body, bound, it.pos, [], None) / N.M
        return self.sum_value((body - mean) ** 2, bound, it.pos, [], None) / N.M

    def sum_value(
        self,
        body: sp.Expr,
        bound: list[tuple[str, Pos]],
        pos: Pos,
        excluded: list[sp.Expr],
        explicit: int | None,
    ) -> sp.Expr:
        """Σ over the reduction set of ``body``, over the ``bound`` indices (an element, or the
        spatial triple); ``excluded`` elements left out (Σ_{j≠i} f(j) = Σ_j f(j) − f(i));
        ``explicit``: the sum runs over the elements 1..explicit only, written out."""
        body = undot(body)  # Σ_i (a · b): a and b are the summed element's, not vectors
        features = [n for n, _ in bound if self.roles.get(n, ("",))[0] == "feature"]
        elements = [(n, p) for n, p in bound if n not in features]
        for name in features:
            body = self.collapse_feature(body, name, pos)
        if not elements:
            if features:
                return body
            free = sorted(self.element_indices(body) - {_BARE}, key=str)
            if _BARE not in body.free_symbols and len(free) == 1:
                index = free[0]  # \sum (x_i - \mu): no limits, the sum is over the index written
            else:
                index = _BARE  # \sum with no limits: the summed element is written bare
        elif len(elements) == 1:
            index = self.element_symbol([elements[0][0]], elements[0][1])
        else:
            names = tuple(n for n, _ in elements)
            match = [s for s, parts in self.composites.items() if set(parts) == set(names)]
            if not match and not any(
                sp.Symbol(name, integer=True) in body.free_symbols for name in names
            ):  # Σ_{n,h,w} δy: the summand names the element bare (or not at all)
                match = [self.element_symbol(list(names), pos)]
            if not match:
                raise self.error(
                    f"a sum over {', '.join(names)} of something not indexed by all of them "
                    "(write x[n][c][h][w] in a sum over n, h, w)",
                    pos,
                )
            index = match[0]
        if not isinstance(index, sp.Symbol):
            raise self.error("a sum over a number", pos)
        if index != _BARE and _BARE in body.free_symbols:
            body = body.xreplace({_BARE: index})  # \sum_{n,h,w} δy: the summed element
        for s, parts in self.composites.items():
            if s != index and s in body.free_symbols and set(parts) & {n for n, _ in elements}:
                raise self.error(
                    f"a sum over {', '.join(n for n, _ in elements)} covers only part of the "
                    f"element ({', '.join(parts)}): write \\sum_{{{','.join(parts)}}}",
                    pos,
                )
        if explicit is not None:
            # Σ_{i=1}^{2}: the elements 1 and 2 only, written out (elements by number)
            return sp.Add(*[body.xreplace({index: sp.Integer(k)}) for k in range(1, explicit + 1)])
        self.fresh += 1
        placeholder = sp.Symbol(f"_b{self.fresh}", integer=True)
        total = N.reduce_sum(body.xreplace({index: placeholder}), placeholder)
        for other in excluded:
            if other == index:
                raise self.error("a sum that leaves out its own index", pos)
            total -= body.xreplace({index: other})  # Σ_{j≠i} f(j) = Σ_j f(j) − f(i)
        return total

    def sum_indices(self, node: BigSum) -> tuple[list[tuple[str, Pos]], list[sp.Expr]]:
        """The indices a sum binds, and the elements it leaves out (\\sum_{j \\ne i})."""
        if node.sub is None:
            return [], []
        out: list[tuple[str, Pos]] = []
        excluded: list[tuple[str, str, Pos]] = []
        for lhs, rhs in node.sub.items:
            if isinstance(lhs, Relation):  # j \ne i: leave element i out
                if lhs.op != "ne":  # pragma: no cover - the grammar makes '=' an item pair
                    raise self.error("expected j \\ne i", lhs.pos)
                left = self.index_names(ScriptArg(lhs.pos, ((lhs.lhs, None),), True))
                right = self.index_names(ScriptArg(lhs.pos, ((lhs.rhs, None),), True))
                if len(left) != 1 or len(right) != 1:
                    raise self.error("a sum leaves out one element: write j \\ne i", lhs.pos)
                excluded.append((left[0][0], right[0][0], lhs.pos))
                if not any(n == left[0][0] for n, _ in out):
                    out += left
                continue
            if _is_member(lhs):  # \sum_{i \in B}: over the batch, the whole reduction set
                if len(node.sub.items) > 1 or node.sup is not None:
                    raise self.error(
                        "a sum over i \\in B takes no other limits: write \\sum_{i \\in B}",
                        node.pos,
                    )
                lhs = lhs.items[0]
            elif isinstance(lhs, Product) and any(
                isinstance(f, Macro) and f.name == "in" for f in lhs.items
            ):
                raise self.error(
                    "a sum over i \\in S is understood only for S = B or \\mathcal{B} (the "
                    "batch: the whole reduction set)",
                    lhs.pos,
                )
            names = self.index_names(ScriptArg(lhs.pos, ((lhs, None),), True))
            if rhs is not None and not (isinstance(rhs, Num) and rhs.text in ("0", "1")):
                raise self.error(
                    "a sum from anything but 1 (or 0, to N−1): only sums over the whole "
                    "reduction set are understood",
                    rhs.pos,
                )
            if any(n == name for name, _ in names for n, _ in out):
                continue  # \sum_{j=1, j \ne i}: j named twice
            out += names
        if any(n == "B" or n.isdigit() for n, _ in out):
            raise self.error("expected index letters under \\sum, as in \\sum_{i=1}^{N}", node.pos)
        bound = {n for n, _ in out}
        drop: list[sp.Expr] = []
        for name, other, pos in excluded:
            if name not in bound:  # pragma: no cover - added to out above
                raise self.error(f"{name} \\ne {other}: {name} is not the sum's index", pos)
            if other.isdigit():
                drop.append(sp.Integer(int(other)))
            else:
                drop.append(self.element_symbol([other], pos))
        return out, drop

    def check_limits(self, node: BigSum) -> int | None:
        """The upper limit is the size of the set (N, m, M, NHW or N,H,W; N−1 when the sum
        starts at 0): None.  A small number n (\\sum_{i=1}^{2}) is a sum over elements 1..n,
        written out: n."""
        lower = self.lower_limit(node)
        if node.sup is None:
            if lower == 0:
                raise self.error("a sum from 0 needs its upper limit (N-1)", node.pos)
            return None
        items = node.sup.items
        if len(items) == 3 and all(rhs is None for _, rhs in items) and lower == 1:
            letters = [lhs.name if isinstance(lhs, Letter) else "" for lhs, _ in items]
            if letters == ["N", "H", "W"]:
                return None
        if len(items) == 1 and items[0][1] is None:
            top = items[0][0]
            if (
                isinstance(top, Letter)
                and not top.font
                and top.name == self.family.batch
                and lower == 1
            ):
                return _OVER_BATCH
            if self.other_batch_size(top, lower):
                # Σ_{s=1}^{L} over a sequence (dy_{b,s,i}): another dimension of the samples
                self.notes.append(
                    f"Σ up to {top.name} read as a sum over the samples (the set's size is "
                    f"{', '.join(sorted(self.family.sizes - {'M'}))})"
                )
                return _OVER_BATCH
            upper = self.value(top)
            if upper == N.M - 1 + lower:
                return None
            if lower == 0 and upper == N.M:
                # Σ_{i=0}^{N}: N + 1 terms of a set of N; the post means the whole set (the
                # same sum with 1/N is its mean), so it is read so, and the line says it
                top_text = _render(top)
                self.notes.append(
                    f"Σ from 0 to {top_text} read as the sum over the whole set (a sum from 0 "
                    f"ends at {top_text}−1)"
                )
                return None
            if lower == 1 and upper.is_Integer and 1 <= int(upper) <= 8:
                return int(upper)
        raise self.error(
            "the upper limit of a sum must be the size of the reduction set (N, m, M, NHW, or "
            "N,H,W; N-1 for a sum from 0): only sums over the whole set are understood",
            node.sup.pos,
        )

    def other_batch_size(self, top: Node, lower: int) -> bool:
        """LayerNorm's Σ_{s=1}^{L} next to Σ_{b=1}^{N}: an upper-case letter that is no size
        of the set (the post writes its features' number otherwise, 1/D) is a dimension of the
        samples, as the batch is (a sequence's length L, time T); its index must then name the
        sample in what is summed (x_{b,s,i}: a role the reader checks)."""
        return (
            self.family.layer
            and lower == 1
            and isinstance(top, Letter)
            and not top.font
            and len(top.name) == 1
            and top.name.isupper()
            and top.name not in self.family.sizes
            and self.family.batch is not None
        )

    def lower_limit(self, node: BigSum) -> int:
        if node.sub is None:
            return 1
        for _, rhs in node.sub.items:
            if isinstance(rhs, Num) and rhs.text == "0":
                return 0
        return 1

    def collapse_feature(self, body: sp.Expr, name: str, pos: Pos) -> sp.Expr:
        """Σ_l over a feature l: features never mix, so each term must carry δ_jl; the sum is
        then the term at l = j, and with the feature index dropped that is the term with δ = 1."""
        l = sp.Symbol(name, integer=True)
        deltas = [d for d in body.atoms(sp.KroneckerDelta) if l in d.args]
        for d in deltas:
            for a in d.args:
                if a != l and isinstance(a, sp.Symbol):
                    self.feature(a.name, pos)
        without = body.xreplace({d: 0 for d in deltas})
        if not _vanishes(without) and self.family.layer:
            raise self.error(
                f"a sum over the samples ({name}) with a term that has no δ picking one sample: "
                "LayerNorm's quantities are one sample's (only ∂L/∂γ_i and ∂L/∂β_i sum over "
                "the batch)",
                pos,
            )
        if not _vanishes(without):
            raise self.error(
                f"a sum over the feature index {name} with a term that has no δ linking {name} "
                "to the line's feature: that would mix features, which BatchNorm never does "
                "(statistics over the features of one sample are Layer Normalization, which "
                "bnderive does not model yet)",
                pos,
            )
        out = body.xreplace({d: 1 for d in deltas})
        if l in out.free_symbols:  # pragma: no cover - features are dropped where they appear
            raise self.error(f"the feature index {name} is used outside δ", pos)
        return out
