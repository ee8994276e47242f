"""The unbiased variance in a derivation document: declared (`variance: unbiased`) or written in
its forward lines (σ² = Σ(x_k − μ)²/(m − 1)), the truth every line is checked against uses
1/(M − 1) in x̂; a line right for the other variance is refuted; a document that writes both
variances is read with the biased one and says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from bnderive.core.spec import Mode
from bnderive.read.documents import load_document
from bnderive.verify.exact import check_exact_mode
from bnderive.verify.verdict import Status

HEAD = "---\nmode: per-activation\n{declared}---\n$$\n\\begin{{aligned}}\n"
MU = r"\mu &= \frac{1}{m}\sum_{k=1}^m x_k \\" + "\n"
BIASED = r"\sigma^2 &= \frac{1}{m}\sum_{k=1}^m (x_k-\mu)^2 \\" + "\n"
BESSEL = r"\sigma^2 &= \frac{1}{m-1}\sum_{k=1}^m (x_k-\mu)^2 \\" + "\n"
XHAT = r"\hat{x}_i &= \frac{x_i-\mu}{\sqrt{\sigma^2+\epsilon}} \\" + "\n"
# x̂ with the unbiased variance written out: a forward line that says the convention too
XHAT_BESSEL = (
    r"\hat{x}_i &= \frac{x_i-\mu}{\sqrt{\frac{1}{m-1}\sum_{k=1}^m (x_k-\mu)^2+\epsilon}} \\" + "\n"
)
# dx for the biased variance (the x̂·Σ term over m) and for the unbiased one (over m − 1)
DX = (
    r"\frac{\partial L}{\partial x_i} &= \frac{1}{m\sqrt{\sigma^2+\epsilon}}\left("
    r"m\frac{\partial L}{\partial \hat{x}_i} - \sum_k \frac{\partial L}{\partial \hat{x}_k} - "
    r"{F}\hat{x}_i\sum_k \frac{\partial L}{\partial \hat{x}_k}\hat{x}_k\right)" + "\n"
)
DX_BIASED = DX.replace("{F}", "")
DX_BESSEL = DX.replace("{F}", r"\frac{m}{m-1}")
TAIL = "\\end{aligned}\n$$\n"


def document(tmp_path: Path, *rows: str, declared: str = "title: a post\n") -> Path:
    """The rows in a post whose front matter has one line more than its mode (so that the
    rows are on lines 7, 8, …)."""
    path = tmp_path / "post.md"
    path.write_text(HEAD.format(declared=declared) + "".join(rows) + TAIL, encoding="utf-8")
    return path


def verdicts(path: Path) -> tuple[bool, dict[int, Status], tuple[str, ...]]:
    form = load_document(path)
    exact = check_exact_mode(form, Mode.PER_ACTIVATION, [3, 4])
    lines: dict[int, Status] = {}
    for v in exact:
        if not v.step:
            # a line holds only when every size does
            lines[v.source_line] = max(lines.get(v.source_line, v.status), v.status, key=_rank)
    return form.unbiased, lines, form.notes


def _rank(status: Status) -> int:
    return (Status.HOLDS, Status.UNDECIDED, Status.REFUTED).index(status)


@pytest.mark.parametrize("declared", ["variance: unbiased\n", "title: a post\n"])
def test_the_unbiased_truth_refutes_the_biased_backward(tmp_path, declared):
    """Declared or written, the unbiased variance is the layer's: the biased dx is refuted, the
    unbiased dx holds, and the line that wrote 1/(m − 1) holds."""
    unbiased, lines, notes = verdicts(
        document(tmp_path, MU, BESSEL, XHAT, DX_BIASED, declared=declared)
    )
    assert unbiased
    assert lines == {7: Status.HOLDS, 8: Status.HOLDS, 9: Status.HOLDS, 10: Status.REFUTED}
    unbiased, lines, notes = verdicts(
        document(tmp_path, MU, BESSEL, XHAT, DX_BESSEL, declared=declared)
    )
    assert unbiased and set(lines.values()) == {Status.HOLDS}
    said = [n for n in notes if "unbiased variance σ² = Σ(x_k − μ)²/(M − 1)" in n]
    # the note says which line wrote it and how to declare otherwise; none when declared
    assert (
        (said == [])
        if "variance" in declared
        else ("line 8 writes it" in said[0] and "variance: biased" in said[0])
    )


def test_the_biased_truth_refutes_the_unbiased_backward(tmp_path):
    """The default (and declared) biased variance: the unbiased dx is refuted, and a 1/(m − 1)
    forward line under `variance: biased` is refuted, never read as the convention."""
    unbiased, lines, _ = verdicts(document(tmp_path, MU, BIASED, XHAT, DX_BESSEL))
    assert not unbiased
    assert lines == {7: Status.HOLDS, 8: Status.HOLDS, 9: Status.HOLDS, 10: Status.REFUTED}
    unbiased, lines, notes = verdicts(
        document(tmp_path, MU, BESSEL, XHAT, DX_BIASED, declared="variance: biased\n")
    )
    assert not unbiased and lines[8] is Status.REFUTED and lines[10] is Status.HOLDS
    assert not [n for n in notes if "unbiased" in n]


def test_an_xhat_line_with_the_unbiased_variance_written_out_sets_it(tmp_path):
    unbiased, lines, notes = verdicts(document(tmp_path, MU, XHAT_BESSEL, DX_BESSEL))
    assert unbiased and set(lines.values()) == {Status.HOLDS}
    assert any("line 8 writes it" in n for n in notes)


def test_both_variances_written_is_read_biased_with_the_unbiased_line_refuted(tmp_path):
    """1/m in one forward line, 1/(m − 1) in another: never silently one of them.  The biased
    default stays, the 1/(m − 1) line is refuted, and a note names both lines."""
    unbiased, lines, notes = verdicts(document(tmp_path, MU, BIASED, XHAT_BESSEL, DX_BIASED))
    assert not unbiased
    assert lines == {7: Status.HOLDS, 8: Status.HOLDS, 9: Status.REFUTED, 10: Status.HOLDS}
    said = [n for n in notes if "variance both ways" in n]
    assert len(said) == 1 and "(line 8)" in said[0] and "(line 9)" in said[0]


def test_a_line_that_writes_sigma_squared_by_its_symbol_decides_nothing(tmp_path):
    unbiased, _, notes = verdicts(document(tmp_path, MU, XHAT, DX_BIASED))
    assert not unbiased and not [n for n in notes if "variance" in n]


def test_a_layernorm_post_keeps_the_biased_variance(tmp_path):
    """LayerNorm is defined with the biased variance: a LayerNorm post is read (its nominal
    spec has one element per set, which the unbiased layer cannot have: every LayerNorm post
    was refused with "divides by M-1 = 0" when the detection ran on it), and a 1/(D − 1) forward
    line in it is refuted like any wrong line, not taken as the post's convention."""
    path = tmp_path / "post.md"
    path.write_text(
        "# Layer normalization\n\n$$\n\\begin{aligned}\n"
        r"\mu &= \frac{1}{D}\sum_{k=1}^D x_k \\" + "\n"
        r"\sigma^2 &= \frac{1}{D-1}\sum_{k=1}^D (x_k-\mu)^2 \\" + "\n"
        r"\hat{x}_i &= \frac{x_i-\mu}{\sqrt{\sigma^2+\epsilon}}" + "\n"
        "\\end{aligned}\n$$\n",
        encoding="utf-8",
    )
    form = load_document(path)
    assert not form.unbiased and any("Layer Normalization" in n for n in form.notes)
    verdicts = {
        v.source_line: v.status for v in check_exact_mode(form, Mode.PER_ACTIVATION, [3, 4])
    }
    assert verdicts[6] is Status.REFUTED and verdicts[5] is Status.HOLDS, verdicts
