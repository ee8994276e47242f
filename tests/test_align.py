"""The align* printer behind `derive --latex` and the Kronecker chain's library call."""

from __future__ import annotations

import sympy as sp

from bnderive.core import notation as N
from bnderive.core.align import AlignBlock, AlignNote, AlignRow, align_latex
from bnderive.core.spec import Mode, Norm, Spec, layer_sizes
from bnderive.verify.chain import chain_applies, chain_for
from bnderive.verify.verdict import Status


def test_rows_continuations_and_notes_print_as_an_align_block():
    block = AlignBlock(
        "a title\nover two lines",
        (
            AlignRow(N.reduce_sum(N.x[N.k], N.k) / N.M, N.mu),
            AlignRow(sp.Integer(0)),
            AlignNote("line 2: holds for every M"),
            AlignRow(N.g[N.i], N.reference("dy", N.i)),
            AlignNote("a note after the last row"),
        ),
    )
    assert align_latex(block) == "\n".join(
        [
            "% a title over two lines",
            r"\begin{align*}",
            r"  \mu &= \frac{\sum_{k=1}^{M} x_{k}}{M} \\",
            r"  &= 0 \\",
            "  % line 2: holds for every M",
            r"  \frac{\partial L}{\partial y_{i}} &= g_{i}",
            "  % a note after the last row",
            r"\end{align*}",
        ]
    )


def test_the_chain_is_shown_only_for_its_conventions():
    assert chain_applies(Spec(Mode.PER_ACTIVATION))
    assert not chain_applies(Spec(Mode.PER_ACTIVATION, training=False))
    assert not chain_applies(Spec(Mode.PER_ACTIVATION, unbiased=True))
    assert not chain_applies(Spec(Mode.PER_ACTIVATION, eps_inside=False))
    assert not chain_applies(Spec(Mode.PER_ACTIVATION, n=1, c=3, norm=Norm.LAYER))
    assert chain_for(Spec(Mode.SPATIAL, training=False)) is None
    proof = chain_for(Spec(Mode.PER_ACTIVATION))
    assert proof is not None
    assert [v.status for v in proof.verdicts.values()] == [Status.HOLDS] * 4
    assert [found for found, _, _ in proof.rows()] == [
        f"line {k}: holds for every M" for k in range(1, 5)
    ]


def test_size_defaults_shared_by_derive_and_explain():
    assert layer_sizes(False) == (1, 1, 1)
    assert layer_sizes(True) == (1, 2, 2)
    assert layer_sizes(True, 3, 4, None) == (3, 4, 2)
    assert layer_sizes(False, None, 5, 5) == (1, 1, 1)
    assert layer_sizes(False, norm=Norm.LAYER) == (3, 1, 1)
    assert layer_sizes(True, norm=Norm.LAYER) == (1, 2, 2)
    assert layer_sizes(True, norm=Norm.GROUP, groups=3) == (6, 2, 2)
