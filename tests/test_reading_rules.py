"""Every rule the reader learned for real posts (issue 12), each with a right line that holds and
a wrong line using the same notation that is refuted: a reading rule that could turn a wrong
line into "holds" is the worst bug there is.

Each case is a small document; ``verdicts`` checks it exactly (N = 3, 4 per activation) and for
every M, and gives each line of the file its verdict: refuted if any method refutes it, holds
if one holds and none refutes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bnderive.cli import main
from bnderive.core.spec import Mode
from bnderive.errors import FormError
from bnderive.read.documents import load_document, load_expression
from bnderive.read.latex_results import LatexError
from bnderive.verify.every_m import general_check
from bnderive.verify.exact import check_exact_mode
from bnderive.verify.verdict import Status


def verdicts(form) -> dict[int, str]:
    """The verdict of each line of the file (the lines with checked members)."""
    found: dict[int, set[Status]] = {}
    for v in check_exact_mode(form, Mode.PER_ACTIVATION, [3, 4]) + general_check(form):
        if v.follows is None and v.source_line is not None:
            found.setdefault(v.source_line, set()).add(v.status)
    out = {}
    for line, statuses in found.items():
        if Status.REFUTED in statuses:
            out[line] = "refuted"
        elif Status.HOLDS in statuses:
            out[line] = "holds"
        else:
            out[line] = "undecided"
    return out


def doc(tmp_path: Path, body: str, name: str = "post.md") -> object:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return load_document(path)


def lines(text: str) -> str:
    """One $$ block per line of ``text``, so that line k of the text is line 2k+1 of the file
    (a blank line between)."""
    return "\n".join(f"$$ {t} $$\n" for t in text.strip().split("\n"))


# (rule, right line, wrong line): each a line of a document that also writes ε
RULES = [
    (
        "Iverson [k = i] and 1(k == i) as Kronecker deltas",
        r"\frac{\partial y_k}{\partial x_i} = \frac{\gamma}{\sqrt{\sigma^2+\epsilon}}\left([k = i] - \frac{1}{N} - \frac{\hat{x}_k \hat{x}_i}{N}\right)",
        r"\frac{\partial y_k}{\partial x_i} = \frac{\gamma}{\sqrt{\sigma^2+\epsilon}}\left(1(k == i) - \frac{1}{N} + \frac{\hat{x}_k \hat{x}_i}{N}\right)",
    ),
    (
        "\\mathbb{1}[k=i] and \\delta(i=k)",
        r"\frac{\partial \hat{x}_k}{\partial x_i} = \frac{\mathbb{1}[k=i] - 1/N - \hat{x}_k\hat{x}_i/N}{\sqrt{\sigma^2+\epsilon}}",
        r"\frac{\partial \hat{x}_k}{\partial x_i} = \frac{\delta(i=k) - 1/N}{\sqrt{\sigma^2+\epsilon}}",
    ),
    (
        "a sum that leaves one element out",
        r"\frac{\partial \sigma^2}{\partial x_i} = \frac{1}{N}\left(\frac{-2}{N}\sum_{j=1, j \ne i}^{N}(x_j - \mu) + 2(x_i-\mu)\left(1-\frac{1}{N}\right)\right)",
        r"\frac{\partial \sigma^2}{\partial x_i} = \frac{1}{N}\left(\frac{-2}{N}\sum_{j \ne i}(x_j - \mu) + 2(x_i-\mu)\right)",
    ),
    (
        "E[x] and \\mathbb{E} as batch means",
        r"\sigma^2 = \mathbb{E}[(x - \mu)^2] = E[x^2] - \mu^2",
        r"\sigma^2 = \mathbb{E}[x^2]",
    ),
    (
        "\\operatorname{Var}[x], \\mathrm{Var}(x) as the set's variance, \\operatorname{E}[x]",
        r"\hat{x}_i = \frac{x_i - \operatorname{E}[x]}{\sqrt{\operatorname{Var}[x] + \epsilon}} = \frac{x_i - \mu}{\sqrt{\mathrm{Var}(x - \mu) + \epsilon}}",
        r"\hat{x}_i = \frac{x_i - \operatorname{E}[x]}{\sqrt{\operatorname{Var}[2x] + \epsilon}}",
    ),
    (
        "sums from 0 to N-1, \\Sigma as a sum",
        r"\frac{\partial L}{\partial \beta} = \sum_{i=0}^{N-1} \frac{\partial L}{\partial y_i} = \Sigma^N_{i=1} g_i",
        r"\frac{\partial L}{\partial \gamma} = \Sigma^{N}_{i=1} g_i x_i",
    ),
    (
        "a sum from 0 to N is over the whole set (an off-by-one limit of a 0-based index)",
        r"\sigma^2 = \frac{1}{N}\sum \limits_{i = 0}^{N}(x_i-\mu)^2 = \frac{1}{m}\sum_{i=0}^{m} x_i^2 - \mu^2",
        r"\sigma^2 = \frac{1}{N}\sum_{i = 0}^{N}(x_i-\mu)^2 + \frac{1}{N}\sum_{i=0}^{N} x_i^2",
    ),
    (
        "BN_{γ,β}(x_i) is the output y_i (Ioffe & Szegedy's name of the transform)",
        r"y_i = \gamma\hat{x}_i + \beta = BN_{\gamma, \beta}(x_i)",
        r"\mathrm{BN}_{\gamma,\beta}(x_i) = \gamma\hat{x}_i",
    ),
    (
        "x̄ in a derivative is μ, and a derivative of a sum is the sum's derivative",
        r"\frac{d\overline{x_k}}{dx_{lk}} = \frac{1}{N} = \frac{1}{N}\frac{\partial \sum_i x_i}{\partial x_l}",
        r"\frac{\partial \sigma^2}{\partial x_j} = \frac{1}{N}\frac{\partial \sum_{i=1}^{N}(x_i-\mu)^2}{\partial x_j} = \frac{1}{N}(x_j - \mu)",
    ),
    (
        "x_j next to μ_j with no other index: the column of feature j, read elementwise",
        r"\hat{x}_{j} = \frac{x_{j} - \mu_j}{\sqrt{\sigma_j^2 + \epsilon}}",
        r"\hat{x}_{j} = \frac{x_{j} - \mu_j}{\sigma_j^2 + \epsilon}",
    ),
    (
        "xi typed for x_i (an index is never a value)",
        r"\frac{\partial \hat{x}_i}{\partial \mu} = \frac{-1}{\sqrt{\sigma^2+\epsilon}} = \frac{\partial}{\partial \mu}\frac{xi - \mu}{\sqrt{\sigma^2+\epsilon}}",
        r"\frac{\partial \hat{x}_i}{\partial \sigma^2} = \frac{-(xi - \mu)}{\sqrt{\sigma^2+\epsilon}^3}",
    ),
    (
        "a sum over the first elements only is what it says",
        r"\frac{\partial L}{\partial \beta} = \sum_{i=1}^{N} g_i",
        r"\frac{\partial L}{\partial \beta} = \sum_{i=1}^{2} g_i",
    ),
    (
        "a chain rule with local derivatives, replaced by their true values",
        r"\frac{\partial L}{\partial x_i} = \frac{\partial L}{\partial \hat{x}_i}\frac{\partial \hat{x}_i}{\partial x_i} + \frac{\partial L}{\partial \sigma^2}\frac{\partial \sigma^2}{\partial x_i} + \frac{\partial L}{\partial \mu}\frac{\partial \mu}{\partial x_i}",
        r"\frac{\partial L}{\partial x_i} = \frac{\partial L}{\partial \hat{x}_i}\frac{\partial \hat{x}_i}{\partial x_i} + \frac{\partial L}{\partial \mu}\frac{\partial \mu}{\partial x_i}",
    ),
    (
        "a Jacobian ∂y_k/∂x_i in a chain rule is the full derivative",
        r"\frac{\partial L}{\partial x_i} = \sum_k \frac{\partial L}{\partial y_k}\frac{\partial y_k}{\partial x_i}",
        r"\frac{\partial L}{\partial x_i} = \sum_k \frac{\partial L}{\partial y_k}\frac{\partial y_k}{\partial \hat{x}_k}\frac{\partial \hat{x}_k}{\partial x_i} \frac{1}{N}",
    ),
    (
        "the operator \\frac{\\partial}{\\partial x}[...]",
        r"\frac{\partial \hat{x}_i}{\partial \sigma^2} = \frac{\partial}{\partial \sigma^2}\left[(x_i - \mu)(\sigma^2+\epsilon)^{-1/2}\right] = -\frac{1}{2}(x_i-\mu)(\sigma^2+\epsilon)^{-3/2}",
        r"\frac{\partial \hat{x}_i}{\partial \sigma^2} = \frac{\partial}{\partial \sigma^2}\left[(x_i - \mu)(\sigma^2+\epsilon)^{-1/2}\right] = -\frac{1}{2}(x_i-\mu)(\sigma^2+\epsilon)^{-1/2}",
    ),
    (
        "a derivative of an expression, ∂(γx̂ + β)/∂x̂_k",
        r"\frac{\partial y_k}{\partial \hat{x}_k} = \frac{\partial (\gamma \hat{x} + \beta)}{\partial \hat{x}_k} = \gamma",
        r"\frac{\partial y_k}{\partial \hat{x}_k} = \frac{\partial (\gamma \hat{x} + \beta)}{\partial \hat{x}_k} = \gamma + \beta",
    ),
    (
        "gradients no line defines stand for their true values",
        r"\frac{\partial L}{\partial x_i} = \frac{1}{N\sqrt{\sigma^2+\epsilon}}\left(N\gamma g_i - \gamma\,\delta\beta - \gamma \hat{x}_i\,\delta\gamma\right)",
        r"\frac{\partial L}{\partial x_i} = \frac{1}{N\sqrt{\sigma^2+\epsilon}}\left(N\gamma g_i - \delta\beta - \hat{x}_i\,\delta\gamma\right)",
    ),
    (
        "forward definitions against the forward graph",
        r"\hat{x}_i = \frac{x_i - \mu}{\sqrt{\sigma^2 + \epsilon}} = (x_i-\mu)(\sigma^2+\epsilon)^{-0.5}",
        r"\hat{x}_i = (x_i - \mu)(\sqrt{\sigma^2 + \epsilon})^{-0.5}",
    ),
    (
        "identities: any left side, each right side checked against it",
        r"\sum_i (x_i - \mu) = \sum_i x_i - N\mu = 0",
        r"\sum_i (x_i - \mu)^2 = \sum_i x_i^2 - \mu^2",
    ),
    (
        "a scalar gradient with a free index is a claim for every i",
        r"\frac{\partial L}{\partial \gamma} = \sum_i \frac{\partial L}{\partial y_i}\frac{\partial y_i}{\partial \gamma}",
        r"\frac{\partial L}{\partial \gamma} = \frac{\partial L}{\partial y_i}\frac{\partial y_i}{\partial \gamma}",
    ),
    (
        "x^{(k)} (the paper's feature index), \\overline{x}, μ(x), a lowercase n as the size",
        r"\hat{x}^{(k)} = \frac{x^{(k)} - \mu(x)}{\sqrt{\sigma^2 + \epsilon}} \quad\text{and}\quad \mu = \frac{1}{n}\sum_k x_k = \overline{x}",
        r"\hat{x}^{(k)} = \frac{x^{(k)} - \overline{x}}{\sqrt{\sigma^2}+\epsilon}",
    ),
    (
        "presentation: \\boxed, \\color, \\underbrace, \\tag, a trailing remark",
        r"\boxed{\color{red}{\frac{\partial L}{\partial \beta}} = \sum_i \underbrace{\frac{\partial L}{\partial y_i}}_{\text{upstream}}} \tag{3} \quad (\text{Because } \frac{\partial y_i}{\partial \beta} = 1)",
        r"\boxed{\frac{\partial L}{\partial \beta} = \sum_i \underbrace{\frac{\partial L}{\partial y_i}\gamma}_{\text{upstream}}}",
    ),
    (
        "matrix notation: a row vector times a column is the sum over the batch",
        r"\frac{\partial L}{\partial \gamma} = \hat{X}^T \frac{\partial L}{\partial Y} \quad\text{and}\quad \frac{\partial L}{\partial \beta} = \mathbf{1}_N^\top \frac{\partial L}{\partial Y}",
        r"\frac{\partial L}{\partial \gamma} = \frac{\partial L}{\partial Y}^T \frac{\partial L}{\partial Y}",
    ),
    (
        "matrix notation: I, the matrix of ones \\mathbf{1}, outer products u v^T",
        r"\frac{\partial L}{\partial X} = (\sigma^2 + \epsilon)^{-1/2} \left[-\frac{1}{N} \hat{X} \hat{X}^T + I - \frac{1}{N} \mathbf{1} \right] \frac{\partial L}{\partial \hat{X}}",
        r"\frac{\partial L}{\partial X} = (\sigma^2 + \epsilon)^{-1/2} \left[\frac{1}{N} \hat{X} \hat{X}^T + I - \frac{1}{N} \mathbf{1} \right] \frac{\partial L}{\partial \hat{X}}",
    ),
    (
        "matrix notation: (I - 1/N 1) X centres X, X^T X is a sum of squares",
        r"\sigma^2 = \frac{1}{N} \left(\left(I - \frac{1}{N}\mathbf{1}\right) X\right)^T \left(I - \frac{1}{N}\mathbf{1}\right) X",
        r"\sigma^2 = \frac{1}{N} X^T \left(I - \frac{1}{N}\mathbf{1}\right) X + \mu",
    ),
    (
        "∂L/∂σ with σ the standard deviation √σ² (Costa's graph node): 2σ ∂L/∂σ², its true value",
        r"\frac{\partial L}{\partial \sigma^2} = \frac{\partial L}{\partial \sigma} \cdot \frac{\partial \sigma}{\partial \sigma^2} = \frac{\partial L}{\partial \sigma} \cdot \frac{1}{2\sigma}",
        r"\frac{\partial L}{\partial \sigma^2} = \frac{\partial L}{\partial \sigma} \cdot \frac{1}{\sigma}",
    ),
    (
        # Xiyun Song's 2020 post (coolgpu), written in MathType: \mathop \sum \limits, and the
        # letter after each ∂ in braces of its own
        "MathType: \\mathop \\sum \\limits_{…}^{…}, \\partial {x_i} with its braces",
        r"\frac{ {\partial L} }{ {\partial \beta } } = \mathop \sum \limits_{i = 1}^{ N } \frac{ {\partial L} }{ {\partial {y_{i} } } }\frac{ {\partial {y_{i} } } }{ {\partial {\beta} } } = \mathop \sum \limits_{i = 1}^{ N } \frac{ {\partial L} }{ {\partial {y_{i} } } }",
        r"\frac{ {\partial L} }{ {\partial \beta } } = \frac{1}{N}\mathop \sum \limits_{i = 1}^{ N } \frac{ {\partial L} }{ {\partial {y_{i} } } }",
    ),
    (
        # the same post: γ written w_c (its forward line y = w_c·(x − μ_c)/σ_c + β_c), the
        # channel first (x_{c,i}: channel c of μ_c, element i), N_i the number of i, {\rm{i}}
        "a letter of the post's own for γ (w_c), x_{c,i} channel first, N_i, {\\rm{i}}",
        r"y_{c,i} = {w_c} \cdot \frac{ {x_{c,i}} - {\mu _c} }{\sqrt{\sigma _c^2 + \epsilon}} + {\beta _c} \quad\text{and}\quad \frac{\partial L}{\partial {w_c}} = \sum_{i=1}^{N_i} \frac{\partial L}{\partial y_{c,{\rm{i}}}} \frac{ y_{c,i} - \beta_c }{w_c}",
        r"\frac{\partial L}{\partial {w_c}} = \frac{1}{N_i}\sum_{i=1}^{N_i} \frac{\partial L}{\partial y_{c,i}} \frac{ y_{c,i} - \beta_c }{w_c}",
    ),
    (
        "x_{c,i} channel first in the statistics, summed up to N_i, {\\sigma ^2}_c",
        r"\mu_c = \frac{1}{N_i}\sum_{i=1}^{N_i} x_{c,i} \quad\text{and}\quad {\sigma ^2}_c = \frac{1}{N_i}\sum_{i=1}^{N_i} (x_{c,i} - \mu_c)^2",
        r"{\sigma ^2}_c = \frac{1}{N_i - 1}\sum_{i=1}^{N_i} (x_{c,i} - \mu_c)^2 + \epsilon",
    ),
    (
        # Sinai 2022 writes ^l (or ^{(l)}) on every symbol of its layer: a label, not a power
        "a layer label ^l, ^{(l)} on the layer's symbols",
        r"\frac{\partial L}{\partial \hat{x}_i^{(l)}} = \gamma^l \frac{\partial L}{\partial y_i^l} \quad\text{and}\quad \mu^l = \frac{1}{N}\sum_{k=1}^{N} x_k^l",
        r"\frac{\partial L}{\partial \gamma^{(l)}} = \sum_{i=1}^{N} \frac{\partial L}{\partial y_i^l} (x_i^l - \mu^l)",
    ),
    (
        # calvinfeng's notebook, zakka 2016, kaixih's README: ∂L/∂μ = ∂L/∂x̂ · ∂x̂/∂μ + …
        "a · b of two vectors written without an index, on a line about one number: Σ_i a_i b_i",
        r"\frac{\partial L}{\partial \mu} = \frac{\partial L}{\partial \hat{x}} \cdot \frac{\partial \hat{x}}{\partial \mu} + \frac{\partial L}{\partial \sigma^{2}} \cdot \frac{\partial \sigma^{2}}{\partial \mu}",
        r"\frac{\partial L}{\partial \sigma^2} = \frac{\partial L}{\partial \hat{x}} \cdot \frac{\partial \hat{x}}{\partial \mu}",
    ),
    (
        "a dot product in a forward line, a scalar factor before it",
        r"\sigma^2 = \frac{1}{m} (x - \mu) \cdot (x - \mu)",
        r"\sigma^2 = \frac{1}{m} (x - \mu) \cdot \hat{x}",
    ),
    (
        # a LayerNorm note (layernorm_backprop_note.md) writes the indicator as a subscripted 1
        "the indicator 1_{i = j}, \\mathbb{1}_{i=j} (and 1_{i \\ne j}) as Kronecker deltas",
        r"\frac{\partial \hat{x}_i}{\partial x_j} = \left( 1_{i = j} - \frac{1}{N} \right) \frac{1}{\sqrt{\sigma^2 + \epsilon}} - \frac{\hat{x}_i \hat{x}_j}{N\sqrt{\sigma^2 + \epsilon}} = \frac{\mathbb{1}_{i=j} - 1/N - \hat{x}_i\hat{x}_j/N}{\sqrt{\sigma^2 + \epsilon}}",
        r"\frac{\partial \hat{x}_i}{\partial x_j} = \left( 1_{i \ne j} - \frac{1}{N} \right) \frac{1}{\sqrt{\sigma^2 + \epsilon}} - \frac{\hat{x}_i \hat{x}_j}{N\sqrt{\sigma^2 + \epsilon}}",
    ),
    (
        # Cross Validated 218601 writes ∂\mathcal{l}/∂x̂_i beside ∂l/∂σ²: one loss, two fonts
        "the document's loss letter in another font (\\mathcal{l}, \\mathbf{l} beside ∂l)",
        r"\frac{\partial l}{\partial \beta} = \sum_i \frac{\partial \mathcal{l}}{\partial y_i}",
        r"\frac{\partial l}{\partial \gamma} = \sum_i \frac{\partial \mathbf{l}}{\partial y_i}",
    ),
    (
        "a sign right after \\cdot (a · −b)",
        r"\frac{\partial \hat{x}_i}{\partial \mu} = (\sigma^2+\epsilon)^{-1/2} \cdot -1",
        r"\frac{\partial \hat{x}_i}{\partial \mu} = (\sigma^2+\epsilon)^{-1/2} \cdot -2",
    ),
    (
        # Sinai (2022) writes "Consider z_1: z_1 = (x_1 − μ)/(σ + ε)" before the general z_k
        "one entry named by its number, and no other, as every entry (permutation symmetry)",
        r"\hat{x}_1 = \frac{x_1 - \mu}{\sqrt{\sigma^2 + \epsilon}} = \frac{x_1 - \frac{1}{N}\sum_r x_r}{\sqrt{\sigma^2 + \epsilon}}",
        r"\frac{\partial \hat{x}_1}{\partial x_1} = \frac{1}{\sqrt{\sigma^2 + \epsilon}}\left(1 - \frac{1}{N}\right)",
    ),
]


@pytest.mark.parametrize(("rule", "right", "wrong"), RULES, ids=[r[0] for r in RULES])
def test_a_reading_rule_never_excuses_a_wrong_line(tmp_path, rule, right, wrong):
    form = doc(tmp_path, lines(right + "\n" + wrong))
    got = verdicts(form)
    assert got.get(1) == "holds", (rule, got, [ln.reason for ln in form.lines])
    assert got.get(3) == "refuted", (rule, got, [ln.reason for ln in form.lines])


def test_a_sum_from_0_to_n_says_how_it_was_read(tmp_path):
    """Σ_{i=0}^{N} has N + 1 terms in a set of N: read over the whole set, and the line says so;
    a sum from 0 that stops earlier (N − 2) is still not read."""
    form = doc(
        tmp_path,
        lines(
            r"\mu = \frac{1}{N}\sum_{i = 0}^{N} x_i"
            + "\n"
            + r"\mu = \frac{1}{N}\sum_{i=0}^{N-2} x_i"
        ),
    )
    first, second = form.lines
    assert first.status == "checked"
    assert any("Σ from 0 to N read as the sum over the whole set" in n for n in first.notes)
    assert verdicts(form) == {1: "holds"}
    assert second.status == "not read" and "N-1 for a sum from 0" in second.reason


def test_a_name_defined_by_a_chain_checks_the_chain(tmp_path):
    """t = A = B: A defines t and B is compared with it (B was left undecided before)."""
    form = doc(
        tmp_path,
        lines(
            r"t = \frac{1}{\sqrt{\sigma^2+\epsilon}} = (\sigma^2+\epsilon)^{-1/2}"
            "\n"
            r"v = \frac{1}{\sqrt{\sigma^2+\epsilon}} = (\sigma^2+\epsilon)^{-3/2}"
        ),
    )
    assert [line.status for line in form.lines] == ["checked", "checked"]
    assert verdicts(form) == {1: "holds", 3: "refuted"}


def test_names_a_post_defines(tmp_path):
    body = lines(
        r"""
t = \frac{1}{\sqrt{\sigma^2 + \epsilon}}
\frac{\partial L}{\partial \mu} = -t\,\gamma \sum_i g_i
\frac{1}{N}\sum_i x_i = v
\frac{\partial L}{\partial \mu} = -t^2\,\gamma \sum_i g_i
\frac{\partial L}{\partial \beta} = N v
"""
    )
    form = doc(tmp_path, body)
    by_line = {ln.line: ln for ln in form.lines}
    assert by_line[1].status == "definition" and by_line[5].status == "definition"
    got = verdicts(form)
    assert got == {3: "holds", 7: "refuted", 9: "refuted"}


def test_a_wrong_forward_definition_is_refuted_and_never_used(tmp_path):
    body = lines(
        r"""
\mu = \frac{1}{N-1}\sum_i x_i
\frac{\partial L}{\partial \gamma} = \sum_i g_i \frac{x_i - \mu}{\sqrt{\sigma^2+\epsilon}}
"""
    )
    assert verdicts(doc(tmp_path, body)) == {1: "refuted", 3: "holds"}


def test_epsilon_zero_when_a_post_never_writes_it(tmp_path):
    body = lines(
        r"""
\frac{\partial L}{\partial x_i} = \frac{\gamma}{\sqrt{\sigma^2}}\left(g_i - \frac{1}{N}\sum_k g_k - \frac{(x_i-\mu)}{N\sigma^2}\sum_k g_k (x_k - \mu)\right)
\frac{\partial L}{\partial x_i} = \frac{\gamma}{\sigma^2}\left(g_i - \frac{1}{N}\sum_k g_k\right)
"""
    )
    form = doc(tmp_path, body)
    assert form.eps_zero and any("ε = 0" in n for n in form.notes)
    assert verdicts(form) == {1: "holds", 3: "refuted"}
    declared = doc(tmp_path, "---\nepsilon: inside\n---\n" + body, "declared.md")
    assert not declared.eps_zero  # ε inside: the first line lacks ε, so it is refuted
    assert verdicts(declared)[4] == "refuted"


def test_sigma_is_the_standard_deviation_when_both_are_written(tmp_path):
    body = lines(
        r"""
\sigma^2 = \frac{1}{N}\sum_i (x_i - \mu)^2
\hat{x}_i = \frac{x_i - \mu}{\sigma}
\hat{x}_i = \frac{x_i - \mu}{\sigma^2}
"""
    )
    form = doc(tmp_path, body)
    assert any("σ is the standard deviation" in n for n in form.notes)
    assert verdicts(form) == {1: "holds", 3: "holds", 5: "refuted"}  # ε = 0 here
    # a bare σ alone still needs the declaration: that line is not read, and says so
    alone = doc(
        tmp_path,
        lines(
            r"\hat{x}_i = \frac{x_i - \mu}{\sigma + \epsilon}" + "\n" + r"\delta\beta = \sum_i g_i"
        ),
        "alone.md",
    )
    assert alone.lines[0].status == "not read" and "sigma: std" in alone.lines[0].reason


def test_a_post_that_says_what_its_sigma_is(tmp_path):
    body = lines(
        r"""
\sigma^2 = \frac{1}{N}\sum_i (x_i - \mu)^2
\frac{\partial \hat{x}_i}{\partial x_i} = \frac{1}{\sigma} \quad \text{Let }~ \sigma = \sqrt{\sigma^2 + \epsilon}
\frac{\partial \hat{x}_i}{\partial \mu} = -\frac{1}{\sigma^2}
"""
    )
    got = verdicts(doc(tmp_path, body))
    assert got[3] == "holds" and got[5] == "refuted"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (r"\frac{\partial L}{\partial \beta} = \sum_i {g_i - \mu} x_i", "braces"),
        (
            r"\frac{\partial L}{\partial \beta} = \sum_k \mathbf{1} \frac{\partial L}{\partial y_k}",
            "vector of ones or the matrix",
        ),
        (r"\sigma^2 = \frac{1}{N} \sum_k x_k^T x_k - \mu^2", "transpose"),
        (r"\hat{x}_i = BN(x_i)", "unknown symbol B"),
        (
            r"\hat{x}_j = \frac{x_{ij} - \mu_j}{\sqrt{\sigma_j^2 + \epsilon}}",
            "used as feature here",
        ),
        (r"\frac{\partial L}{\partial \beta} = \sum_{i=0}^{N-2} g_i", "N-1 for a sum from 0"),
        (
            r"\frac{\partial \hat{x}_i}{\partial x_j} = (1_{N} - \frac{1}{N}) \frac{1}{\sqrt{\sigma^2 + \epsilon}}",
            "1 takes no subscript",
        ),
    ],
)
def test_what_cannot_be_read_one_way_is_not_read(tmp_path, text, message):
    """Notation with two readings that cannot both be checked (braces that do not print whose
    readings are not the same kind of line, \\mathbf{1} as vector or matrix) is "not read", with
    the reason: never guessed.  (Readings that can each be checked: ``test_reading_scopes``.)"""
    form = doc(tmp_path, lines(text + "\n" + r"\frac{\partial L}{\partial \beta} = \sum_i g_i"))
    first = form.lines[0]
    assert first.status == "not read" and message in first.reason, first.reason
    assert form.lines[1].status == "checked"


def test_a_scalar_equal_to_an_unindexed_vector_is_not_checked(tmp_path):
    """Side by side (or with *), two vectors written without an index on a line about one number
    are a dot product or a Σ forgotten: not checked.  With \\cdot they are the dot product (a
    note says so), but not inside a Σ, where they are the summed element's."""
    form = doc(
        tmp_path,
        lines(
            r"\frac{\partial L}{\partial \sigma^2} = \frac{\partial L}{\partial \hat{x}} \frac{\partial \hat{x}}{\partial \sigma^2}"
            "\n"
            r"\frac{\partial L}{\partial \sigma^2} = \frac{\partial L}{\partial \hat{x}} * \frac{\partial \hat{x}}{\partial \sigma^2}"
            "\n"
            r"\frac{\partial L}{\partial \sigma^2} = \frac{\partial L}{\partial \hat{x}} \cdot \frac{\partial \hat{x}}{\partial \sigma^2}"
            "\n"
            r"\frac{\partial L}{\partial \beta} = \sum_i \frac{\partial L}{\partial y} \cdot 1"
            "\n"
            r"\frac{\partial L}{\partial \gamma} = \sum_i \frac{\partial L}{\partial y} \cdot \hat{x}"
            "\n"
            r"\frac{\partial L}{\partial \gamma} = \frac{1}{m}\sum_i \frac{\partial L}{\partial y} \cdot \hat{x}"
        ),
    )
    first, second, third = form.lines[:3]
    for line in (first, second):
        assert line.status == "not checked" and "dot product" in line.reason
    assert third.status == "checked"
    assert any("read as a dot product Σ_i" in n for n in third.notes)
    assert verdicts(form) == {5: "holds", 7: "holds", 9: "holds", 11: "refuted"}
    assert not any("dot product" in n for line in form.lines[3:] for n in line.notes)


def test_layout_is_layout(tmp_path):
    """Remarks, annotation columns, "(Mean) \\space", continuation rows: none of it is maths,
    all of it is read around."""
    body = r"""
$$
(Mean) \space \mu = \frac {1}{N} {\sum_{j=1}^N {x_j}}
$$
$$
\begin{align}
\frac{\partial L}{\partial \gamma} &= \sum_{i=1}^{m} \frac{\partial L}{\partial y_i}\frac{\partial y_i}{\partial \gamma} &&&& (\text{Because gradients add at forks}) \\\\
&= \sum_{i=1}^{m} \frac{\partial L}{\partial y_i} \hat{x}_i &&&& \boldsymbol{(\text{Let } \frac{1}{\sqrt{\sigma^2 + \epsilon}} = t)} \\\\
\frac{\partial L}{\partial \mu} &= -\gamma t \sum_{i=1}^m g_i \\
&\bigg(\text{Because } \frac{\partial \hat{x}_i}{\partial \mu} = \frac{-1}{\sqrt{\sigma^2+\epsilon}}\bigg) \\
\frac{\partial L}{\partial \beta} &= \sum_i g_i \\
&+ 0 \\
\frac{\partial L}{\partial x_i} &= \frac{\gamma}{\sqrt{\sigma^2+\epsilon}} \Big( g_i - \frac{1}{N}\sum_k g_k \\
&- \frac{\hat{x}_i}{N}\sum_k g_k \hat{x}_k \Big) \nonumber \label{eq:dx} \\
\frac{\partial L}{\partial \beta} &= \sum_k g_k =\\
&= \sum_i \frac{\partial L}{\partial y_i}
\end{align}
$$
<!-- $$ \frac{\partial L}{\partial \beta} = 12 $$ in a comment is not maths -->
"""
    form = doc(tmp_path, body)
    statuses = [(ln.latex.split("=")[0].strip()[:25], ln.status) for ln in form.lines]
    assert all(s in ("checked", "definition") for _, s in statuses), statuses
    assert all(v == "holds" for v in verdicts(form).values())
    assert not any("12" in ln.latex for ln in form.lines)


def test_spacing_around_an_equals_sign_is_no_separator(tmp_path):
    """A \\;=\\; B \\;=\\; C (Koonce's blueprint) is one chain: the ';' of \\; is spacing, not a
    semicolon between two equations; a wrong member is refuted."""
    body = r"""
\[
\frac{\partial}{\partial x_i} \frac{1}{\sqrt{\sigma^2 + \varepsilon}}
\;=\; -\frac{1}{(\sigma^2 + \varepsilon)^{3/2}} \cdot \frac{x_i - \mu}{n}
\;=\; -\frac{1}{(\sigma^2 + \varepsilon)^{3/2}} \cdot \frac{x_i - \mu}{n^2}
\]
"""
    form = doc(tmp_path, body, "note.tex")
    (line,) = form.lines
    assert line.status == "checked" and len(line.equations) == 2
    assert verdicts(form) == {3: "refuted"}
    steps = {v.status.value for v in check_exact_mode(form, Mode.PER_ACTIVATION, [3])}
    assert steps == {"holds", "refuted"}


def test_remarks_in_the_middle_of_a_line_and_rows_that_only_remark(tmp_path):
    r"""``= x̂_i \text{ from } y_i = …`` states the line and, apart, the remark's equation; a row
    whose first column is empty and whose remark says ``\text{and } A = B`` is that remark only:
    each is checked, a wrong one refuted, and the chain around it goes on."""
    body = r"""
$$ \frac{\partial y_i}{\partial \gamma} = \hat{x}_i \text{ from } y_i = \gamma\hat{x}_i + \beta $$

$$ \frac{\partial y_i}{\partial \beta} = 1 \text{ from } y_i = \gamma\hat{x}_i - \beta $$

$$
\begin{align}
\frac{\partial L}{\partial \mu} &= \sum_{i=1}^{m} \frac{\partial L}{\partial \hat{x}_i}\frac{-1}{\sqrt{\sigma^2 + \epsilon}} &&&& (\text{Because } \frac{\partial \hat{x}_i}{\partial \mu} = \frac{-1}{\sqrt{\sigma^2 + \epsilon}}\\
&   &&&& \text{and }\frac{\partial \hat{x}_i}{\partial \sigma^2} = -\frac{1}{2}(x_i-\mu)(\sigma^2+\epsilon)^{-1/2})\\
&= -\frac{\gamma}{\sqrt{\sigma^2 + \epsilon}} \sum_{i=1}^{m} g_i
\end{align}
$$
"""
    form = doc(tmp_path, body)
    read = [(ln.line, ln.latex.split("=")[0].strip(), ln.status) for ln in form.lines]
    assert [(line, status) for line, _, status in read] == [(2, "checked")] * 2 + [
        (4, "checked")
    ] * 2 + [(8, "checked")] * 2 + [(9, "checked"), (10, "checked")], read
    assert read[0][1] == "y_i" and read[2][1] == "y_i"  # the remarks, read on their own
    # line 4's remark (y = γx̂ − β) is wrong; line 9's remark (the −1/2 power) is wrong; the
    # chain of line 8 goes on to line 10 past the row that only remarks
    assert verdicts(form) == {2: "holds", 4: "refuted", 8: "holds", 9: "refuted", 10: "holds"}


def test_a_chain_goes_on_past_a_row_that_is_not_read(tmp_path):
    """A row not read does not break its chain: the rows after it still say the line's value,
    and a wrong one is refuted; a first row whose right side is not read still gives the chain
    its left side."""
    body = r"""
$$
\begin{align}
\frac{\partial L}{\partial \beta} &= \sum_i g_i \\
&= \sum_k \alpha g_k \\
&= \sum_k \frac{\partial L}{\partial y_k} \\
&= \sum_k g_k x_k
\end{align}
$$
$$
\begin{align}
\frac{\partial L}{\partial \gamma} &= \sum_i \alpha g_i \hat{x}_i \\
&= \sum_i g_i \hat{x}_i \\
&= \sum_i g_i
\end{align}
$$
"""
    form = doc(tmp_path, body)
    status = [(ln.line, ln.status) for ln in form.lines]
    assert status == [
        (4, "checked"),
        (5, "not read"),
        (6, "checked"),
        (7, "checked"),
        (12, "not read"),
        (13, "checked"),
        (14, "checked"),
    ], [(ln.line, ln.status, ln.reason) for ln in form.lines]
    assert verdicts(form) == {4: "holds", 6: "holds", 7: "refuted", 13: "holds", 14: "refuted"}


def test_maths_in_a_script_tag_around_an_align_block_is_read_once(tmp_path):
    body = """<p><span class="MathJax_Preview">
<script type="math/tex;mode=display">
\\begin{align*}
\\frac{\\partial L}{\\partial \\beta} & = \\sum_i g_i
\\end{align*}
</script></span></p>
"""
    form = doc(tmp_path, body)
    assert [(ln.line, ln.status) for ln in form.lines] == [(4, "checked")]


def test_a_notebook_is_read_from_its_markdown_cells(tmp_path):
    cells = [
        {
            "cell_type": "markdown",
            "metadata": {},
            "source": ["# BN\n", "$$\\mu = \\frac{1}{m}\\sum_i x_i$$"],
        },
        {
            "cell_type": "code",
            "metadata": {},
            "source": ["mu = x.mean()  # $$ not maths $$"],
            "outputs": [],
            "execution_count": None,
        },
        {
            "cell_type": "markdown",
            "metadata": {},
            "source": "$$\\frac{\\partial L}{\\partial \\beta} = \\sum_i g_i x_i$$",
        },
    ]
    path = tmp_path / "bn.ipynb"
    path.write_text(
        json.dumps({"cells": cells, "nbformat": 4, "nbformat_minor": 5, "metadata": {}})
    )
    form = load_document(path)
    assert [ln.where for ln in form.lines] == ["cell 1, line 2", "cell 3, line 1"]
    got = verdicts(form)
    assert [got[line] for line in sorted(got)] == ["holds", "refuted"]


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("# GroupNorm\n\n$$ y_i = \\gamma \\hat{x}_i + \\beta $$\n", "Group Normalization"),
        ("---\nnorm: rms\n---\n$$ y_i = \\gamma \\hat{x}_i $$\n", "RMS Normalization"),
        ("# Instance normalization\n\n$$ y_i = \\gamma \\hat{x}_i $$\n", "Instance Normalization"),
    ],
)
def test_other_normalizations_are_refused_by_name(tmp_path, text, name):
    path = tmp_path / "gn.md"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(FormError, match=name):
        load_document(path)
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 2 and name in result.output and "does not model yet" in result.output


#: A LayerNorm post's lines (γ_i per feature, D features): each right one and a wrong one.
_LAYER_LINES = (
    "$$ \\mu = \\frac{1}{D} \\sum_{i=1}^{D} x_i $$\n\n"
    "$$ y_i = \\gamma_i \\hat{x}_i + \\beta_i $$\n\n"
    "$$ \\frac{\\partial L}{\\partial \\gamma_i} = \\sum_{b=1}^{N} \\frac{\\partial L}{\\partial y_{bi}} \\hat{x}_{bi} $$\n\n"
    "$$ \\frac{\\partial L}{\\partial \\hat{x}_i} = \\frac{\\partial L}{\\partial y_i} \\gamma_i $$\n\n"
    "$$ \\frac{\\partial L}{\\partial \\sigma^2} = \\sum_{j=1}^{D} \\frac{\\partial L}{\\partial y_j} \\gamma (x_j - \\mu)"
    " \\cdot -\\frac{1}{2} (\\sigma^2 + \\epsilon)^{-3/2} $$\n\n"
    # BatchNorm's γ outside the sum: wrong when γ is one per feature
    "$$ \\frac{\\partial L}{\\partial \\mu} = -\\frac{\\gamma_1}{\\sqrt{\\sigma^2 + \\epsilon}} \\sum_{j=1}^{D} \\frac{\\partial L}{\\partial y_j} $$\n"
)


@pytest.mark.parametrize(
    "head",
    ["---\nnorm: layer\n---\n", "# Layer Normalization backprop\n\n", "# Backprop by hand\n\n"],
    ids=["declared", "named", "from the maths (1/D)"],
)
def test_layer_normalization_is_read_and_checked(tmp_path, head):
    """LayerNorm posts are read (declared, named, or with sums over D features) and checked
    against LayerNorm's truth: γ_i per feature, ∂L/∂γ_i this sample's term of the sum over the
    batch N; a γ taken out of a sum over the features is refuted."""
    from bnderive.core.spec import Norm

    path = tmp_path / "ln.md"
    path.write_text(head + _LAYER_LINES, encoding="utf-8")
    form = load_document(path)
    assert form.norm is Norm.LAYER and form.modes == (Mode.PER_ACTIVATION,)
    assert any("Layer Normalization" in n for n in form.notes)
    got = verdicts(form)
    assert sorted(got.values()) == ["holds"] * 5 + ["refuted"], got
    assert got[max(got)] == "refuted"
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 1, result.output


def test_batchnorm_that_mentions_layernorm_is_read(tmp_path):
    text = (
        "# Batch Normalization\n\nUnlike layer normalization, it averages over the batch.\n\n"
        "$$ y_i = \\gamma \\hat{x}_i + \\beta $$\n"
    )
    assert doc(tmp_path, text).lines[0].status == "checked"


# -- the command line --------------------------------------------------------------------------------
def test_check_expr_and_stdin():
    ok = CliRunner().invoke(
        main,
        ["check", "--expr", r"\delta\beta = \sum_i \delta y_i", "--method", "exact", "--no-timing"],
    )
    assert ok.exit_code == 0, ok.output
    wrong = CliRunner().invoke(
        main,
        ["check", "--expr", "-", "--method", "exact", "--mode", "per-activation", "--no-timing"],
        input=r"\frac{\partial L}{\partial \gamma} = \sum_i g_i x_i",
    )
    assert wrong.exit_code == 1 and "first refuted: line 1 of --expr" in wrong.output
    sigma = CliRunner().invoke(
        main,
        ["check", "--expr", r"\hat{x}_i = \frac{x_i-\mu}{\sqrt{\sigma+\epsilon}}", "--sigma", "var",
         "--method", "exact", "--mode", "per-activation"],
    )  # fmt: skip
    assert sigma.exit_code == 0, sigma.output
    assert load_expression(r"\frac{\partial L}{\partial \beta} = \sum_i g_i").name == "expr"
    bad = CliRunner().invoke(main, ["check", "--sigma", "std"])
    assert bad.exit_code == 2 and "--sigma belongs to --expr" in bad.output


def test_the_summary_says_what_was_left_out_and_strict_makes_it_undecided(tmp_path):
    path = tmp_path / "partial.md"
    path.write_text(
        lines(
            r"""
\frac{\partial L}{\partial \beta} = \sum_i g_i
\frac{\partial L}{\partial \beta} = \alpha
\frac{\partial L}{\partial (\gamma x_i)} = g_i
"""
        ),
        encoding="utf-8",
    )
    args = ["check", str(path), "--method", "exact", "--mode", "per-activation", "--no-timing"]
    lenient = CliRunner().invoke(main, args)
    assert lenient.exit_code == 0, lenient.output
    assert "✓ holds" in lenient.output
    assert "not everything was checked: 1 line(s) not read (line 3:" in lenient.output
    assert "1 not checked (line 5:" in lenient.output and "--strict" in lenient.output
    strict = CliRunner().invoke(main, [*args, "--strict"])
    assert strict.exit_code == 3 and "? undecided" in strict.output
    payload = json.loads(CliRunner().invoke(main, [*args, "--json"]).output)
    (document,) = payload["documents"]
    assert document["counts"]["not read"] == 1 and document["counts"]["not checked"] == 1


def test_several_independent_mistakes_are_each_named(tmp_path):
    path = tmp_path / "three.md"
    path.write_text(
        lines(
            r"""
\frac{\partial L}{\partial \sigma^2} = -\frac{1}{2}\sum_i \frac{\partial L}{\partial \hat{x}_i}(x_i-\mu)(\sigma^2+\epsilon)^{-1/2}
\frac{\partial L}{\partial \mu} = -\sum_i \frac{\partial L}{\partial \hat{x}_i}\frac{1}{\sqrt{\sigma^2+\epsilon}} = \sum_i \frac{\partial L}{\partial \hat{x}_i}\frac{1}{\sqrt{\sigma^2+\epsilon}}
\frac{\partial L}{\partial \beta} = \sum_i g_i \gamma
"""
        ),
        encoding="utf-8",
    )
    result = CliRunner().invoke(
        main, ["check", str(path), "--method", "exact", "--mode", "per-activation", "--no-timing"]
    )
    assert result.exit_code == 1
    assert "3 independent mistakes, at line 1 (dvar), line 3 (dmu), line 5 (dbeta)" in result.output


def test_an_operator_differentiates_the_whole_product_after_it(tmp_path):
    # ∂/∂x_i (1/m) Σ_k x_k is 1/m: the operator acts on the product that follows, not on its
    # first factor alone (which made the right line ∂μ/∂x_i = ∂/∂x_i (1/m)Σ x_k read as 0)
    right = "\\frac{\\partial \\mu}{\\partial x_i} = \\frac{\\partial}{\\partial x_i} \\frac{1}{m}\\sum_{k=1}^{m} x_k"
    wrong = "\\frac{\\partial \\mu}{\\partial x_i} = \\frac{\\partial}{\\partial x_i} \\frac{2}{m}\\sum_{k=1}^{m} x_k"
    path = tmp_path / "op.md"
    path.write_text(f"$$ {right} $$\n\n$$ {wrong} $$\n", encoding="utf-8")
    got = verdicts(load_document(path))
    assert [got[line] for line in sorted(got)] == ["holds", "refuted"]


def test_inline_maths_within_a_paragraph_spans_lines(tmp_path):
    """$…$ in Markdown ends at its '$' within the paragraph (a line break inside is a space, as
    in a list item that continues on the next line); a blank line ends the paragraph."""
    body = (
        "1. Scale and shift: $y_i = \\gamma \\hat{x}_i + \\beta \\\\\n"
        "   y_i = \\gamma \\hat{x}_i + 2\\beta$\n\n"
        "It costs $5 = a\n\nprice$ here.\n\n$\\frac{\\partial L}{\\partial \\beta} = \\sum_i g_i$\n"
    )
    form = doc(tmp_path, body)
    assert [ln.line for ln in form.lines] == [1, 2, 8]
    assert verdicts(form) == {1: "holds", 2: "refuted", 8: "holds"}


def test_a_member_with_a_stray_index_is_not_read_and_the_others_are(tmp_path):
    """A chain member that leaves a sum's index dangling after it (Σ_i a_i δ_ij + b_i) is not
    read, with the index as written; the members around it are still checked, and a wrong one
    is refuted."""
    row = (
        r"\frac{\partial \sigma^2}{\partial x_j} = \frac{2}{N}\sum_{i=1}^{N}(x_i-\mu)\delta_{ij}"
        r" = \frac{2}{N}\sum_{i=1}^{N}(x_i-\mu)\delta_{ij} + \frac{2}{N}(x_i-\mu) = LAST"
    )
    form = doc(
        tmp_path,
        lines(
            row.replace("LAST", r"\frac{2}{N}(x_j-\mu)")
            + "\n"
            + row.replace("LAST", r"\frac{1}{N}(x_j-\mu)")
        ),
    )
    first = form.lines[0]
    assert first.status == "checked"
    assert any(
        "the free index i on the right side" in n and "element index j" in n for n in first.notes
    )
    assert verdicts(form) == {1: "holds", 3: "refuted"}


LABELLED = r"""
x^{\text{bn}}_{i} = \gamma \frac{x_{i}-\overline{x}}{\sqrt{\sigma^2 + \epsilon}} + \beta \quad , \quad i\in\{1,\dots,N\}
\frac{dout}{d\beta} = \sum_{j=1}^N \frac{dout}{dx^{\text{bn}}_{j}}
\frac{dout}{d\gamma} = \sum_{j=1}^N \frac{dout}{dx^{\text{bn}}_{j}} \frac{dx^{\text{bn}}_{j}}{d\gamma} = \sum_{j} \frac{dout}{dx^{\text{bn}}_{j}} (x_j - \mu)
"""


def test_a_labelled_letter_defined_as_the_output_is_the_output(tmp_path):
    """x^{\\text{bn}} is a name of the post's own; defined exactly as γx̂ + β (SymPy shows the
    difference is 0) it is y in later derivatives (∂L/∂x^{bn}_j is ∂L/∂y_j); an unindexed dout
    over a differential is the loss's (dout names ∂L/∂out); ", i \\in \\{1,…,N\\}" is an
    annotation.  A wrong member is refuted."""
    form = doc(tmp_path, lines(LABELLED))
    first = form.lines[0]
    assert first.status == "definition"
    assert any("x^bn is the output y" in n for n in first.notes), first.notes
    assert any("dout/d" in n and "read as ∂L/∂" in n for n in form.lines[1].notes)
    assert verdicts(form) == {3: "holds", 5: "refuted"}
    assert form.lines[2].members[0] is not None  # its first member holds, only the last is wrong


RANGED = r"""
\frac{\partial L}{\partial \hat{x}_{j}} = \frac{\partial L}{\partial y_{j}} \gamma \quad , \quad j\in\{1,\dots,N\}
\frac{\partial L}{\partial \hat{x}_{ik}} = \frac{\partial L}{\partial y_{ik}} \gamma_k , \quad k\in\{1,\dots,D\}
\frac{\partial L}{\partial \hat{x}_{i}} = \frac{\partial L}{\partial y_{i}} \gamma , \quad i\in\{0, \ldots, m-1\}
\frac{\partial L}{\partial \hat{x}_{i}} = \frac{\partial L}{\partial y_{i}} \gamma , \quad i\in\{2,\dots,N\}
\frac{\partial L}{\partial \hat{x}_{i}} = \frac{\partial L}{\partial y_{i}} , \quad i\in\{1,\dots,N-1\}
\frac{\partial L}{\partial \hat{x}_{ik}} = \frac{\partial L}{\partial y_{ik}} \gamma_k , \quad k\in\{1,\dots,N\}
\frac{\partial L}{\partial \beta} = \sum_{j=1}^N \frac{\partial L}{\partial y_j} \quad , \quad i\in\{2,\dots,N\}
"""


def test_a_range_after_an_equation_is_read_or_the_line_is_not_checked(tmp_path):
    """ ", k \\in \\{1,\\dots,D\\}" after an equation says where k runs.  The whole range as
    the check reads it (an element over the set's size, 1..N or 0..m−1; a feature over D) is
    said with a note and the line is checked; any other range (2..N, 1..N−1, a feature up to
    the set's size) restricts the claim in a way the check does not model: not checked, with
    the range named, never dropped (a wrong line true for those values only would be
    refuted, a right one said to hold for values the line does not speak of)."""
    form = doc(tmp_path, lines(RANGED))
    status = [(ln.status, ln.reason) for ln in form.lines]
    assert [s for s, _ in status] == ["checked"] * 3 + ["not checked"] * 3 + ["checked"], status
    assert any("j ∈ {1,\\dots,N}: the whole set" in n for n in form.lines[0].notes)
    assert any("k ∈ {1,\\dots,D}: every k up to D" in n for n in form.lines[1].notes)
    assert any("i ∈ {0, \\ldots, m-1}: the whole set" in n for n in form.lines[2].notes)
    written_ranges = ("i ∈ {2,\\dots,N}", "i ∈ {1,\\dots,N-1}", "k ∈ {1,")
    for line, written in zip(form.lines[3:6], written_ranges, strict=True):
        assert line.reason.startswith(written) and "does not model" in line.reason, line.reason
    # a letter the line does not use restricts nothing
    assert any("i ∈ {2,\\dots,N}: i is in none of its members" in n for n in form.lines[6].notes)
    assert verdicts(form) == {1: "holds", 3: "holds", 5: "holds", 13: "holds"}


def test_a_condition_written_in_text_with_the_equation_is_not_dropped(tmp_path):
    """\\text{for $k \\neq i$} after ∂y_k/∂x_i's off-diagonal value is a condition: read as a
    remark, the line was checked on the diagonal too and refuted though right there; it is
    not checked, with the text.  A \\text{…} without a relation stays a remark."""
    off = r"-\frac{\gamma}{N\sqrt{\sigma^2+\epsilon}}(1 + \hat{x}_k \hat{x}_i)"
    form = doc(
        tmp_path,
        lines(
            rf"\frac{{\partial y_k}}{{\partial x_i}} = {off} \quad \text{{for $k \neq i$}}"
            + "\n"
            + r"\frac{\partial L}{\partial \beta} = \sum_i g_i \quad \text{(the bias)}"
        ),
    )
    first, second = form.lines
    assert first.status == "not checked", (first.status, first.reason)
    assert first.reason.startswith(r"\text{for $k \neq i$}: a condition"), first.reason
    assert second.status == "checked" and verdicts(form) == {3: "holds"}


def test_a_relation_in_parentheses_after_an_expression_is_not_read(tmp_path):
    """``… (1 + x̂_k x̂_i) \\quad (k \\neq i)`` was read as the indicator [k ≠ i] times the value,
    so the right off-diagonal value was refuted on the diagonal (0 there); it may as well be the
    condition "for k ≠ i".  Not read, with both readings named; [k \\ne i], 1(k == i) and
    \\delta(i=k) stay the indicator."""
    off = r"-\frac{\gamma}{N\sqrt{\sigma^2+\epsilon}}(1 + \hat{x}_k \hat{x}_i)"
    form = doc(
        tmp_path,
        lines(
            rf"\frac{{\partial y_k}}{{\partial x_i}} = {off} \quad (k \neq i)"
            + "\n"
            + rf"\frac{{\partial y_k}}{{\partial x_i}} = {off} [k \ne i] + "
            + r"\frac{\gamma}{\sqrt{\sigma^2+\epsilon}}(1 - \frac{1}{N} - \frac{\hat{x}_i^2}{N})"
            + r" 1(k == i)"
        ),
    )
    first, second = form.lines
    assert first.status == "not read", (first.status, first.reason)
    assert "the indicator [k \\ne i] times it, or a condition of the line" in first.reason
    assert verdicts(form) == {3: "holds"}


def test_a_labelled_letter_defined_otherwise_is_a_name_only(tmp_path):
    wrong = LABELLED.replace(r"+ \beta \quad", r"+ 2\beta \quad")
    form = doc(tmp_path, lines(wrong + r"\frac{\partial L}{\partial \beta} = \sum_i g_i"))
    assert form.lines[0].status == "definition"
    assert not any("is the output y" in n for n in form.lines[0].notes)
    # ∂L/∂x^bn of the post's own name: nothing after it uses it, so its gradient is not said
    assert form.lines[1].status == "not checked" and "no later line" in form.lines[1].reason
    # defined as x̂ it is x̂: dout/dx^{bn} is ∂L/∂x̂, and Σ_j ∂L/∂x̂_j is not ∂L/∂β
    xhat = LABELLED.replace(r"\gamma \frac", r"\frac").replace(r"+ \beta \quad", r"\quad")
    form = doc(tmp_path, lines(xhat), "xhat.md")
    assert any("x^bn is x̂" in n for n in form.lines[0].notes)
    assert verdicts(form).get(3) == "refuted"


def test_a_name_written_as_a_word(tmp_path):
    """\\text{rstd} = … and \\mathrm{istd} = … define names of the post's own (then used as
    \\text{rstd}, \\mathrm{istd}); a word no line defined is not read, and says so."""
    body = lines(
        r"""
\text{rstd} = \frac{1}{\sqrt{\sigma^2 + \epsilon}}
\hat{x}_j = (x_j - \mu) \cdot \text{rstd}
\mathrm{istd} = (\sigma^2 + \epsilon)^{-1/2}
\frac{\partial L}{\partial \mu} = -\mathrm{istd} \, \gamma \sum_i g_i
\frac{\partial L}{\partial \mu} = -\mathrm{istd}^2 \, \gamma \sum_i g_i
\frac{\partial L}{\partial \beta} = \mathrm{scale} \sum_i g_i
"""
    )
    form = doc(tmp_path, body)
    status = [ln.status for ln in form.lines]
    assert status[:5] == ["definition", "checked", "definition", "checked", "checked"], status
    assert verdicts(form) == {3: "holds", 7: "holds", 9: "refuted"}
    last = form.lines[5]
    assert last.status == "not read" and "scale: a name written as a word" in last.reason
    # a word written as a function of the input: \mathrm{bn}(x) = γx̂ + β defines bn(x)
    func = doc(
        tmp_path,
        lines(
            r"\mathrm{bn}(x) = \gamma \hat{x} + \beta"
            + "\n"
            + r"\frac{\partial L}{\partial \beta} = \sum_i g_i"
        ),
        "func.md",
    )
    assert func.lines[0].status == "definition", func.lines[0].reason


def test_a_variance_named_with_its_exponent(tmp_path):
    """s^2 = (1/N) Σ (x_k − x̄)² defines the name s^2, one symbol for the whole power: later
    s^2 is that name (a right and a wrong line that use it get their verdicts, ∂L/∂s^2 in the
    post's own graph); a bare s (or s^3) is not √ of it: not read, with the reason."""
    body = lines(
        r"""
\overline{x} = \frac{1}{N}\sum_k x_k
s^2 = \frac{1}{N}\sum_k (x_k - \overline{x})^2
\hat{x}_i = \frac{x_i - \overline{x}}{\sqrt{s^2 + \epsilon}}
\frac{\partial \hat{x}_i}{\partial s^2} = -\frac{1}{2}(x_i - \mu)(s^2 + \epsilon)^{-3/2}
\frac{\partial L}{\partial s^2} = -\frac{1}{2}\sum_i \frac{\partial L}{\partial \hat{x}_i} (x_i - \mu)(s^2 + \epsilon)^{-1/2}
\hat{x}_i = \frac{x_i - \overline{x}}{s^2 + \epsilon}
\hat{x}_i = \frac{x_i - \overline{x}}{s}
\hat{x}_i = (x_i - \overline{x}) s^{-3}
"""
    )
    form = doc(tmp_path, body)
    by_line = {ln.line: ln for ln in form.lines}
    assert any("x̄ read as μ" in n for n in by_line[1].notes)
    assert by_line[3].status == "definition"
    assert verdicts(form) == {1: "holds", 5: "holds", 7: "holds", 9: "refuted", 11: "refuted"}
    for bare in (13, 15):
        assert by_line[bare].status == "not read"
        assert "defines s^2 (a name for the whole power), not s" in by_line[bare].reason
    # a name with another exponent, or a subscript, is still not a name a line can define
    with pytest.raises(LatexError, match="cannot be defined"):
        doc(tmp_path, lines(r"s^3 = \frac{1}{N}\sum_k x_k"), "cubed.md")


def test_a_loss_letter_in_another_font_only_beside_the_plain_one(tmp_path):
    """\\mathcal{l} is the loss when the document's derivatives write l plainly as the loss (a
    note says so); in a document whose loss is L, \\mathcal{l} (or \\mathbf{E}) is no loss."""
    form = doc(
        tmp_path,
        lines(
            r"\frac{\partial l}{\partial \beta} = \sum_i \frac{\partial \mathcal{l}}{\partial y_i}"
        ),
    )
    assert any("\\mathcal{l} read as the loss l" in n for n in form.lines[0].notes)
    for other in (r"\mathcal{l}", r"\mathbf{E}"):
        text = rf"\frac{{\partial L}}{{\partial \beta}} = \sum_i \frac{{\partial {other}}}{{\partial y_i}}"
        with pytest.raises(FormError, match="bnderive does not know"):
            doc(tmp_path, lines(text), "other.md")


def test_the_inverse_standard_deviation_by_its_conventional_name(tmp_path):
    """istd, rstd, invstd used and defined by no line: 1/√(σ²+ε) (the document's ε), a name
    of the post's graph, said in a note; right and wrong lines about it get their verdicts
    (∂istd/∂σ², ∂L/∂istd through the post's x̂ = (x − μ)·istd).  A post that defines the name
    keeps its own meaning; a word that is no such convention is still not read."""
    body = lines(
        r"""
\hat{x}_i = (x_i - \mu) \cdot \mathrm{istd}
\frac{\partial \mathrm{istd}}{\partial \sigma^2} = -\frac{1}{2} \mathrm{istd}^3
\frac{\partial \mathrm{istd}}{\partial \sigma^2} = -\frac{1}{2} \mathrm{istd}^2
\frac{\partial L}{\partial \mathrm{istd}} = \sum_i \frac{\partial L}{\partial \hat{x}_i} (x_i - \mu)
\frac{\partial L}{\partial \mathrm{istd}} = \sum_i \frac{\partial L}{\partial \hat{x}_i} \hat{x}_i
\frac{\partial L}{\partial \mu} = -\mathrm{istd} \sum_i \frac{\partial L}{\partial \hat{x}_i} + \epsilon - \epsilon
"""
    )
    form = doc(tmp_path, body)
    said = "istd read as 1/√(σ²+ε), the inverse standard deviation: no line defines it"
    assert any(said in n for n in form.notes), form.notes
    assert verdicts(form) == {
        1: "holds", 3: "holds", 5: "refuted", 7: "holds", 9: "refuted", 11: "holds"
    }  # fmt: skip
    # the document's ε convention: ε outside the root makes it 1/(√σ² + ε)
    outside = doc(tmp_path, "---\nepsilon: outside\n---\n" + body, "outside.md")
    assert any("rstd" not in n and "1/(√σ²+ε)" in n for n in outside.notes)
    # (the front matter's 3 lines shift the lines: x̂ holds, -½ istd³ is then not ∂istd/∂σ²)
    assert verdicts(outside)[4] == "holds" and verdicts(outside)[6] == "refuted"
    # the other names, and istd in italics (Costa 2016's \partial istd)
    for written in (r"\mathrm{rstd}", r"\mathrm{invstd}"):
        text = lines(
            rf"\hat{{x}}_i = (x_i - \mu) \cdot {written}"
            + "\n"
            + rf"\frac{{\partial L}}{{\partial {written}}} = "
            + r"\sum_i \frac{\partial L}{\partial \hat{x}_i} (x_i - \mu) + \epsilon"
        )
        assert verdicts(doc(tmp_path, text, "name.md")) == {1: "holds", 3: "refuted"}, written
    italic = lines(
        r"\frac{\partial istd}{\partial \sigma^2} = -\frac{1}{2}(\sigma^2 + \epsilon)^{-3/2}"
        + "\n"
        + r"\frac{\partial istd}{\partial \sigma^2} = -\frac{1}{2}(\sigma^2 + \epsilon)^{-1/2}"
    )
    assert verdicts(doc(tmp_path, italic, "italic.md")) == {1: "holds", 3: "refuted"}
    # the post's own definition is kept, wherever it is
    own = lines(
        r"""
\hat{x}_i = (x_i - \mu) \cdot \mathrm{istd}
\mathrm{istd} = \frac{1}{\sigma^2 + \epsilon}
\frac{\partial \mathrm{istd}}{\partial \sigma^2} = -(\sigma^2 + \epsilon)^{-2}
"""
    )
    mine = doc(tmp_path, own, "own.md")
    assert not any("inverse standard deviation" in n for n in mine.notes)
    assert mine.lines[0].status == "not read"
    assert "no earlier line defines" in mine.lines[0].reason
    assert verdicts(mine) == {5: "holds"}
    # a post that defines σ = √(σ²+ε): istd is 1/σ from there on, so ∂istd/∂σ is −1/σ² (a
    # right line holds, a wrong one is refuted); another σ leaves istd not read after it
    through = lines(
        r"""
\sigma = \sqrt{\sigma^2 + \epsilon}
\hat{x}_i = (x_i - \mu) \cdot \mathrm{istd}
\frac{\partial \mathrm{istd}}{\partial \sigma} = -\frac{1}{\sigma \cdot \sigma}
\frac{\partial \mathrm{istd}}{\partial \sigma} = -\frac{1}{\sigma}
"""
    )
    sigma = doc(tmp_path, through, "sigma.md")
    assert any("istd read as 1/σ from this line on" in n for n in sigma.lines[0].notes)
    assert verdicts(sigma) == {3: "holds", 5: "holds", 7: "refuted"}
    outside = through.replace(r"\sqrt{\sigma^2 + \epsilon}", r"\sqrt{\sigma^2} + \epsilon")
    other = doc(tmp_path, outside + lines(r"\mu = \frac{1}{N}\sum_i x_i"), "o.md")
    assert any("istd not read after this line" in n for n in other.lines[0].notes)
    assert [ln.status for ln in other.lines[1:4]] == ["not read", "not checked", "not checked"]
    # so is a definition in the prose (or code) the reader does not read as maths
    prose = "Here istd = 1/sigma, without epsilon.\n\n" + lines(
        r"\hat{x}_i = (x_i - \mu) \cdot \mathrm{istd}"
        + "\n"
        + r"\frac{\partial L}{\partial \beta} = \sum_i g_i"
    )
    told = doc(tmp_path, prose, "prose.md")
    assert not any("inverse standard deviation" in n for n in told.notes)
    assert told.lines[0].status == "not read"


def test_a_function_the_post_defines_with_its_argument(tmp_path):
    """Yeh's c(R) = (σ² + ε)^{-1/2}: a name written with its argument; later uses with the same
    argument are that name (a wrong power refuted); with another argument it is no such name."""
    form = doc(
        tmp_path,
        lines(
            r"""
R = X - \mu
c(R) = (\sigma^2 + \epsilon)^{-1/2} = \left(\frac{1}{N} R^T R + \epsilon\right)^{-1/2}
\hat{X} = c(R) \cdot R
\hat{X} = c(R)^2 \cdot R
\hat{X} = c(D) \cdot R
"""
        ),
    )
    status = {ln.line: (ln.status, ln.reason) for ln in form.lines}
    assert status[3][0] == "checked"
    assert verdicts(form) == {3: "holds", 5: "holds", 7: "refuted"}
    assert status[9][0] == "not read" and "the index c is used as a value" in status[9][1]


def test_a_name_whose_first_member_is_not_read_is_defined_by_the_next(tmp_path):
    """Koonce's s := istd(x, ε) = 1/√(σ²(x) + ε): istd(x, ε) (a function of two arguments) is
    not read, so the member after it says what s is; a wrong use of s is refuted."""
    form = doc(
        tmp_path,
        lines(
            r"""
s := \mathrm{istd}(x, \varepsilon) = 1/\sqrt{\sigma^2(x) + \varepsilon}
\hat{x}_i = (x_i - \mu) \cdot s
\hat{x}_i = (x_i - \mu) \cdot s^2
"""
        ),
    )
    first = form.lines[0]
    assert first.status == "definition", first
    assert any("s is defined by member 2" in n for n in first.notes)
    assert verdicts(form) == {3: "holds", 5: "refuted"}
    args = doc(
        tmp_path,
        lines(r"\mu = 2 (x, \varepsilon) \quad \text{and} \quad \mu = \frac{1}{N}\sum_i x_i"),
    )
    assert args.lines[0].status == "not read" and "several variables" in args.lines[0].reason


def test_an_identity_between_two_index_entries_is_checked_entry_by_entry(tmp_path):
    """δ_ij + (−1/n)·1 = δ_ij − 1/n (Koonce's proof step): two free indices, contracted with g
    over the first as a Jacobian's line is; a wrong entry is refuted; three indices are not
    checked."""
    form = doc(
        tmp_path,
        lines(
            r"""
\delta_{ij} + (-\tfrac{1}{n}) \cdot 1 = \delta_{ij} - 1/n
\hat{x}_i \hat{x}_j - \delta_{ij} = \hat{x}_j \hat{x}_i - \delta_{ji} + \delta_{ij}/n
\hat{x}_i \hat{x}_j \hat{x}_k = \hat{x}_k \hat{x}_j \hat{x}_i
"""
        ),
    )
    assert verdicts(form) == {1: "holds", 3: "refuted"}
    third = form.lines[2]
    assert third.status == "not checked" and "free indices" in third.reason


def test_a_row_that_is_an_expression_alone_is_the_left_side_of_the_rows_after_it(tmp_path):
    """ "& A \\ &= B \\ &= C": A (no '=') is the chain's left side; B and C are checked against
    it (a wrong one refuted); an expression alone that nothing continues is prose."""
    body = r"""
$$
\begin{align}
& \sum_i g_i (x_i - \mu) \cdot \frac{1}{\sigma^2+\epsilon} \\
&= \sum_i g_i \hat{x}_i \frac{1}{\sqrt{\sigma^2+\epsilon}} \\
&= \sum_i g_i \hat{x}_i \frac{1}{\sigma^2+\epsilon}
\end{align}
$$

$$ \sum_i g_i \hat{x}_i $$
"""
    form = doc(tmp_path, body)
    first, second, alone = form.lines
    assert first.read is not None and len(first.read.sides) == 2 and first.read.kind == "identity"
    assert alone.status == "prose"
    assert verdicts(form) == {4: "holds", 6: "refuted"}


def test_a_row_that_only_gives_epsilon_a_value_does_not_decide_where_it_is(tmp_path):
    # issue 12 (held-out post): the derivation writes √σ², the prose says the code adds ε
    lines_ = [
        r"$$y_i = \gamma \frac{x_i - \mu}{\sqrt{\sigma^2}} + \beta$$",
        r"$$\frac{\partial y_i}{\partial \gamma} = \frac{x_i-\mu}{\sqrt{\sigma^2}}$$",
    ]
    for value in (r"\epsilon = 1E-5", r"\epsilon = 10^{-5}", r"\varepsilon = 1\times 10^{-8}"):
        text = "\n".join([*lines_, f"The code adds ${value}$ to avoid dividing by zero."])
        form = doc(tmp_path, text)
        assert form.eps_zero, value
        assert any("only gives ε a value" in n and "ε = 0" in n for n in form.notes)
        assert verdicts(form) == {1: "holds", 2: "holds"}
    # a wrong line is still refuted under ε = 0
    wrong = doc(
        tmp_path,
        lines_[0]
        + "\n"
        + lines_[1].replace(r"{\sqrt{\sigma^2}}", r"{\sigma^2}")
        + "\nThe code adds $\\epsilon = 1E-5$.",
        "wrong.md",
    )
    assert verdicts(wrong) == {1: "holds", 2: "refuted"}
    # ε in a derivation line decides: ε inside, and an ε-free x̂ is refuted (with a note why)
    uses = doc(
        tmp_path,
        "\n".join(
            [
                r"$$\hat{x}_i = \frac{x_i - \mu}{\sqrt{\sigma^2 + \epsilon}}$$",
                r"$$\hat{x}_i = \frac{x_i - \mu}{\sqrt{\sigma^2}}$$",
                r"where $\epsilon = 10^{-5}$.",
            ]
        ),
        "uses.md",
    )
    assert not uses.eps_zero and uses.eps_inside
    assert any("ε inside the root" in n for n in uses.notes)
    assert verdicts(uses) == {1: "holds", 2: "refuted"}


def test_a_diagonal_derivative_is_read_as_the_total_or_the_partial_its_value_is(tmp_path):
    # issue 12: ∂y_i/∂x_i is written both for the Jacobian's diagonal (Xiyun Song 2020, eq. 20)
    # and for the partial with μ, σ² held (eq. 24); a value equal to neither is refuted
    total = r"\frac{(N-1)(\sigma^2+\epsilon) - (x_i-\mu)^2}{N(\sigma^2+\epsilon)^{3/2}}"
    body = lines(
        rf"""
y_i = \gamma \hat{{x}}_i + \beta
\frac{{\partial y_i}}{{\partial x_i}} = \gamma{total}
\frac{{\partial \hat{{x}}_i}}{{\partial x_i}} = \frac{{1}}{{\sqrt{{\sigma^2+\epsilon}}}}
\frac{{\partial y_i}}{{\partial x_i}} = \gamma{total.replace("(N-1)", "N")}
\frac{{\partial \hat{{x}}_i}}{{\partial x_i}} = \frac{{2}}{{\sqrt{{\sigma^2+\epsilon}}}}
"""
    )
    form = doc(tmp_path, body)
    assert verdicts(form) == {1: "holds", 3: "holds", 5: "holds", 7: "refuted", 9: "refuted"}
    said = {ln.line: ln for ln in form.lines}
    assert said[3].derivative == "total" and said[5].derivative == "held"
    assert any("total derivative" in n and "its value is that one" in n for n in said[3].notes)
    assert any("μ, σ² held" in n and "its value is that one" in n for n in said[5].notes)
    assert all(any("its value is neither" in n for n in said[k].notes) for k in (7, 9))


def test_a_bracket_group_right_after_an_operator_is_read_both_ways(tmp_path):
    # the quotient rule's f'g as dsse_bn_backprop_doubts writes it: ∂/∂x_i (x_i − μ) s is
    # (∂(x_i − μ)/∂x_i)·s, or ∂((x_i − μ) s)/∂x_i: right under the first reading only, so not
    # decided (read as the total derivative: its value is that one); with 2(x_i − μ) in the
    # second term it is right under the second reading only (∂(fg) − 2f∂g = f'g − f∂g)
    quotient = (
        r"\frac{\partial \hat{x}_i}{\partial x_i} = \frac{1}{\sigma^2+\epsilon}\left["
        r"\frac{\partial}{\partial x_i} (x_i-\mu)\sqrt{\sigma^2+\epsilon} - (x_i - \mu)"
        r"\frac{\partial}{\partial x_i} \sqrt{\sigma^2+\epsilon} \right]"
    )
    twice = quotient.replace("(x_i - \\mu)", "2(x_i - \\mu)")
    wrong = quotient.replace("- (x_i - \\mu)", "+ (x_i - \\mu)")
    form = doc(tmp_path, lines("\n".join([quotient, twice, wrong])))
    assert verdicts(form) == {1: "undecided", 3: "undecided", 5: "refuted"}
    assert form.lines[0].derivative == "total"


def test_a_letter_for_gamma_and_a_subscripted_size_need_the_post_to_say_so(tmp_path):
    """w is γ only when the post's forward line writes y = w·(x − μ)/σ + β (a note says so);
    N_s is the set's size only when s is an index of the arrays: otherwise neither is read."""
    said = doc(
        tmp_path,
        lines(
            r"y_i = w \cdot \frac{x_i - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta"
            "\n"
            r"\frac{\partial L}{\partial w} = \sum_{i=1}^{N_i} \frac{\partial L}{\partial y_i} \hat{x}_i"
        ),
    )
    assert [line.status for line in said.lines] == ["checked", "checked"]
    assert any("read w as γ" in n for n in said.notes)
    unsaid = doc(
        tmp_path,
        lines(
            r"\frac{\partial L}{\partial w} = \sum_{i=1}^{N} \frac{\partial L}{\partial y_i} \hat{x}_i"
            "\n"
            r"\mu = \frac{1}{N_s}\sum_{i=1}^{N} x_i"
            "\n"
            r"\mu = \frac{1}{N}\sum_{i=1}^{N} x_i"
        ),
        "other.md",
    )
    assert [line.status for line in unsaid.lines] == ["not checked", "not read", "checked"]
    assert "size N takes no subscript" in unsaid.lines[1].reason


def test_a_jacobian_the_post_sums_over_k_not_i_is_read_off_its_diagonal(tmp_path):
    """A post that writes Σ_{k≠i} ∂L/∂x̂_k ∂x̂_k/∂x_i (Xiyun Song 2020, with its diagonal term
    apart) states ∂x̂_k/∂x_i for k ≠ i: the off-diagonal value holds, a wrong one is refuted,
    and the line says how it was read.  Without such a sum the same value, missing δ_ki/σ,
    is refuted as the full Jacobian."""
    right = r"\frac{\partial \hat{x}_k}{\partial x_i} = -\frac{1 + \hat{x}_k \hat{x}_i}{N\sqrt{\sigma^2 + \epsilon}}"
    wrong = r"\frac{\partial \hat{x}_k}{\partial x_i} = -\frac{1 - \hat{x}_k \hat{x}_i}{N\sqrt{\sigma^2 + \epsilon}}"
    apart = (
        r"\frac{\partial L}{\partial x_i} = \frac{\partial L}{\partial \hat{x}_i}"
        r"\frac{\partial \hat{x}_i}{\partial x_i} + \sum_{k \ne i} \frac{\partial L}"
        r"{\partial \hat{x}_k}\frac{\partial \hat{x}_k}{\partial x_i}"
    )
    form = doc(tmp_path, lines("\n".join([apart, right, wrong])))
    got = verdicts(form)
    assert got.get(3) == "holds" and got.get(5) == "refuted", got
    assert any("read for k ≠ i only" in n for n in form.lines[1].notes)
    full = doc(tmp_path, lines(right), "full.md")
    assert verdicts(full) == {1: "refuted"}


def test_a_layer_label_is_read_only_where_it_cannot_be_a_power(tmp_path):
    """^l on the layer's symbols is dropped with a note; x^2 and σ^2 beside it stay powers (a
    wrong square is refuted), and a letter also used as an index or written once is no label."""
    body = lines(
        r"\mu^l = \frac{1}{N}\sum_{i=1}^{N} x_i^l" + "\n"
        r"\sigma^2 = \frac{1}{N}\sum_{i=1}^{N} (x_i^l - \mu^l)^2 + 0\epsilon" + "\n"
        r"\frac{\partial L}{\partial \beta} = \sum_{i=1}^{N} \frac{\partial L}{\partial y_i} x_i^2"
    )
    form = doc(tmp_path, body)
    assert any("^l read as a layer label" in n for n in form.lines[0].notes), form.lines[0].notes
    got = verdicts(form)
    assert got.get(3) == "holds" and got.get(5) == "refuted", got
    # l also an index (Σ_l): not a label, so x^l is not read
    used = lines(r"\mu^l = \frac{1}{N}\sum_{l=1}^{N} x_l^l" + "\n" + r"\beta^l = \sum_i g_i")
    with pytest.raises(LatexError, match="the index l is used as a value"):
        doc(tmp_path, used, "index.md")


def test_epsilon_added_to_the_standard_deviation_is_outside_the_root(tmp_path):
    """Sinai 2022 writes σ + ε (σ the standard deviation, σ² written too) and ε nowhere else: ε
    is outside the root, said in a note; (x − μ)/(σ + ε) holds and a wrong ∂σ/∂x_i is refuted.
    One √(σ² + ε) anywhere keeps ε inside (then the same line is refuted)."""
    right = (
        r"\frac{\partial L}{\partial \gamma} = \sum_{i=1}^{N} g_i \frac{x_i - \mu}{\sigma + \epsilon}"
        r" \quad\text{and}\quad \frac{\partial \sigma}{\partial x_i} = \frac{x_i - \mu}{N\sigma}"
    )
    wrong = r"\frac{\partial \sigma}{\partial x_i} = \frac{x_i - \mu}{N\sigma^2}"
    form = doc(tmp_path, lines(right + "\n" + wrong))
    assert any("ε outside the root" in n for n in form.notes), form.notes
    assert verdicts(form) == {1: "holds", 3: "refuted"}
    inside = r"\frac{\partial L}{\partial \beta} = \sum_{i=1}^{N} g_i \frac{1}{\sqrt{\sigma^2 + \epsilon}}"
    form = doc(tmp_path, lines(right + "\n" + inside), "inside.md")
    assert not any("ε outside the root" in n for n in form.notes)
    assert verdicts(form).get(1) == "refuted"


def test_a_column_index_beside_an_element_index_is_not_merged(tmp_path):
    """∂σ_j²/∂x_j = 2/m (x_i − μ_j): x_i has an element index of its own, so j is not read as
    the feature column (that reading made the line the right (x_j − μ_j) one)."""
    text = (
        "$$\\mu_j = \\frac{1}{m}\\sum_{i=1}^m x_{ij}$$\n\n"
        "$$\\sigma_j^2 = \\frac{1}{m}\\sum_{i=1}^m (x_{ij}-\\mu_j)^2$$\n\n"
        "$$\\frac{\\partial \\sigma_j^2}{\\partial x_j} = \\frac{2}{m}(x_i - \\mu_j)$$\n"
    )
    path = tmp_path / "post.md"
    path.write_text(text, encoding="utf-8")
    (line,) = [d for d in load_document(path).lines if "x_i - " in d.latex]
    assert line.status == "not read", line


def test_check_json_strict_status_is_not_holds_when_a_member_is_not_checked(tmp_path):
    text = (
        "$$\\mu = \\frac{1}{m}\\sum_{i=1}^m x_i$$\n\n"
        "$$y_i = \\gamma \\hat{x}_i + \\beta = \\gamma \\hat{x}_k + \\beta$$\n"
    )
    path = tmp_path / "post.md"
    path.write_text(text, encoding="utf-8")
    args = ["check", str(path), "--method", "exact", "--json"]
    plain = json.loads(CliRunner().invoke(main, args).output)
    strict = json.loads(CliRunner().invoke(main, [*args, "--strict"]).output)
    assert (plain["status"], plain["exit_code"]) == ("holds", 0)
    assert (strict["status"], strict["exit_code"]) == ("undecided", 3)


def test_a_sum_over_k_not_i_of_something_else_does_not_make_jacobians_off_diagonal(tmp_path):
    """Σ_{k≠i} over a variance's terms says nothing of the post's ∂x̂_k/∂x_i line: that line,
    missing δ_ki/σ, is compared on the diagonal too and refuted."""
    variance = (
        r"\frac{\partial \sigma^2}{\partial x_i} = \frac{1}{N}\left(\frac{-2}{N}"
        r"\sum_{k \ne i}(x_k - \mu) + 2(x_i-\mu)\left(1-\frac{1}{N}\right)\right)"
    )
    right = r"\frac{\partial \hat{x}_k}{\partial x_i} = -\frac{1 + \hat{x}_k \hat{x}_i}{N\sqrt{\sigma^2 + \epsilon}}"
    form = doc(tmp_path, lines("\n".join([variance, right])))
    assert verdicts(form).get(3) == "refuted", verdicts(form)


def test_an_element_of_two_letters_beside_a_channel(tmp_path):
    """x_{s,c,k} beside μ_c (Xiyun Song 2020, coolgpu.github.io): c the channel (the statistics'
    subscript), (s, k) the element; N_s × N_k is the set's size and Σ_{s=1}^{N_s} Σ_{k=1}^{N_k}
    the sum over it.  A wrong line in the notation is refuted; N_s alone, a sum over s alone
    or limits swapped are not read."""
    form = doc(
        tmp_path,
        lines(
            r"{y_{s,c,k} } = {w_c} \cdot \frac{ { {x_{s,c,k} } - {\mu _c} } }{ {\sqrt {\sigma _c^2 + \epsilon} } } + {\beta _c}"
            "\n"
            r"{\mu _c} = \frac{1}{ { {N_s} \times {N_k} } }\mathop \sum \limits_{s = 1}^{ {N_s} } \mathop \sum \limits_{k = 1}^{ {N_k} } {x_{s,c,k} }"
            "\n"
            r"\sigma _c^2 = \frac{1}{N_s N_k} \sum_{k=1}^{N_k} \sum_{s=1}^{N_s} (x_{s,c,k} - \mu_c)^2"
            "\n"
            r"\sigma _c^2 = \frac{1}{N_s \times N_k} \sum_{s=1}^{N_s} \sum_{k=1}^{N_k} x_{s,c,k}^2"
            "\n"
            r"\mu_c = \frac{1}{N_s}\sum_{s=1}^{N_s} \sum_{k=1}^{N_k} x_{s,c,k}"
            "\n"
            r"\mu_c = \frac{1}{N_s N_k}\sum_{s=1}^{N_s} x_{s,c,k}"
            "\n"
            r"\mu_c = \frac{1}{N_s N_k}\sum_{s=1}^{N_k} \sum_{k=1}^{N_s} x_{s,c,k}"
            "\n"
            r"N = {N_s} \times {N_k}"
        ),
    )
    assert [line.status for line in form.lines[:4]] == ["checked"] * 4, [
        line.reason for line in form.lines
    ]
    assert verdicts(form) == {1: "holds", 3: "holds", 5: "holds", 7: "refuted"}
    reasons = [line.reason for line in form.lines[4:7]]
    assert [line.status for line in form.lines[4:7]] == ["not read"] * 3, reasons
    assert "size N takes no subscript" in reasons[0] and "size N takes no subscript" in reasons[1]
    assert "from 1 to N_s only" in reasons[2]
    # N = N_s × N_k is what the reading assumed (M = M): said, not checked as a tautology
    sizes = form.lines[7]
    assert sizes.status == "not checked" and "the set's size M" in sizes.reason, sizes.reason
    # three indices with no channel the statistics name are not read
    other = doc(
        tmp_path,
        lines(
            r"\mu = \frac{1}{N}\sum_{i=1}^{N} x_{s,c,k}" "\n" r"\mu = \frac{1}{N}\sum_{i=1}^{N} x_i"
        ),
        "other.md",
    )
    assert other.lines[0].status == "not read" and "3 indices" in other.lines[0].reason


@pytest.mark.parametrize(
    "text",
    [
        # two entries named by number: a claim about particular entries (the off-diagonal ones)
        r"\frac{\partial \hat{x}_2}{\partial x_1} = \frac{-1}{N\sqrt{\sigma^2 + \epsilon}}",
        # entry 1 on the left, entry 2 on the right: not the same entry
        r"\hat{x}_1 = \frac{x_2 - \mu}{\sqrt{\sigma^2 + \epsilon}}",
        # entry 1 beside a symbolic index: which entries i are meant?
        r"\hat{x}_1 = \frac{x_1 - \mu}{\sqrt{\sigma^2 + \epsilon}} + \delta_{i1}",
    ],
)
def test_an_entry_named_by_number_beside_another_entry_is_not_checked(tmp_path, text):
    """Only a line about one numbered entry and no other says the same of every entry; a line
    that names two entries (or a number beside an index) is about those entries: not checked,
    with the reason, never read as the general element."""
    form = doc(tmp_path, lines(text + "\n" + r"\frac{\partial L}{\partial \beta} = \sum_i g_i"))
    first = form.lines[0]
    assert first.status == "not checked", (first.status, first.reason)
    assert "by number" in first.reason
    assert not any("read as every entry" in note for note in first.notes)


def test_a_numbered_entry_says_how_it_was_read(tmp_path):
    form = doc(tmp_path, lines(r"\hat{x}_1 = \frac{x_1 - \mu}{\sqrt{\sigma^2 + \epsilon}}"))
    assert verdicts(form) == {1: "holds"}
    assert any("entry 1 read as every entry i" in n for n in form.lines[0].notes), form.lines[0]
