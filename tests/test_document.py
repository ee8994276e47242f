"""LaTeX derivation documents: the shipped ones hold line by line, wrong lines are refuted and
named, lines that cannot be checked say why, and malformed files are exit code 2 with a location."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest
import sympy as sp
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bnderive import find_form
from bnderive.cli import main
from bnderive.core.spec import Mode, Spec
from bnderive.errors import FormError
from bnderive.read.documents import DocumentForm, line_notes, load_document
from bnderive.verify.every_m import general_check
from bnderive.verify.exact import check_exact_mode, exact_check
from bnderive.verify.verdict import Status

FOLDER = resources.files("bnderive.derivations.latex")
SHIPPED = sorted(Path(str(p)) for p in FOLDER.iterdir() if p.name.endswith((".md", ".tex")))
SMALL = {
    Mode.PER_ACTIVATION: [Spec(Mode.PER_ACTIVATION, n=3, c=1), Spec(Mode.PER_ACTIVATION, n=4, c=1)],
    Mode.SPATIAL: [Spec(Mode.SPATIAL, n=2, c=1, h=2, w=2)],
}

WRONG = r"""---
name: wrong-middle
---
A derivation with γ lost in the middle and found again in the last line.

$$
\begin{aligned}
\frac{\partial L}{\partial \beta} &= \sum_i \frac{\partial L}{\partial y_i} \\
\frac{\partial L}{\partial \gamma} &= \sum_i \frac{\partial L}{\partial y_i}\hat{x}_i \\
\frac{\partial \sigma^2}{\partial x_i} &= \frac{2(x_i-\mu)}{N} \\
\frac{\partial L}{\partial x_i} &= \frac{1}{\sqrt{\sigma^2+\epsilon}}\left(\frac{\partial L}{\partial y_i} - \frac{1}{N}\frac{\partial L}{\partial \beta} - \frac{\hat{x}_i}{N}\frac{\partial L}{\partial \gamma}\right) \\
&= \frac{\gamma}{\sqrt{\sigma^2+\epsilon}}\left(\frac{\partial L}{\partial y_i} - \frac{1}{N}\frac{\partial L}{\partial \beta} - \frac{\hat{x}_i}{N}\frac{\partial L}{\partial \gamma}\right)
\end{aligned}
$$
"""


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_the_seed_derivations_are_shipped():
    names = {p.name for p in SHIPPED}
    assert {"staged.md", "nchw.md", "thorey.tex"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_derivation_holds_line_by_line(path):
    form = load_document(path)
    assert isinstance(form, DocumentForm)
    assert all(line.checked for line in form.lines), line_notes(form)
    verdicts = general_check(form)
    lines = [v for v in verdicts if v.follows is None]
    assert [v.status for v in lines] == [Status.HOLDS] * len(form.equations)
    steps = [v for v in verdicts if v.follows is not None]
    assert len(steps) == len(form.steps)
    assert all(v.status is Status.HOLDS for v in steps), [v.equation for v in steps]
    assert [v.source_line for v in lines] == [form.line_of(e.number).line for e in form.equations]
    for mode in form.modes:
        verdicts = check_exact_mode(form, mode, shapes=SMALL[mode])
        assert [v.status for v in verdicts if not v.step] == [Status.HOLDS] * len(form.equations)
        assert [v.status for v in verdicts if v.step] == [Status.HOLDS] * len(form.steps), mode


def test_the_nchw_chain_ends_in_the_compact_form():
    form = load_document(FOLDER / "nchw.md")
    assert form.modes == (Mode.SPATIAL,)
    last = form.equations[-1]
    assert last.name == "dx" and "N H W" in last.latex
    compact = find_form("compact").equation("dx")
    assert sp.expand(last.expr - compact.expr) == 0


def test_staged_document_matches_the_staged_form():
    doc = load_document(FOLDER / "staged.md")
    toml = find_form("staged")
    assert [e.name for e in doc.equations] == [e.name for e in toml.equations]
    for mine, theirs in zip(doc.equations, toml.equations, strict=True):
        (verdict,) = [v for v in general_check(doc) if v.equation == mine.number]
        assert verdict.status is Status.HOLDS
        assert mine.index == theirs.index


def test_wrong_line_is_refuted_and_named(tmp_path):
    path = write(tmp_path, "wrong.md", WRONG)
    form = load_document(path)
    visible = [e.name for e in form.equations if e.kind != "reference"]
    assert visible == ["dbeta", "dgamma", "dvar_dx", "dx", "dx"]
    verdicts = exact_check(form, SMALL[Mode.PER_ACTIVATION])  # local derivatives: not here
    statuses = [v.status for v in verdicts]
    assert statuses == [Status.HOLDS, Status.HOLDS, Status.REFUTED, Status.HOLDS]
    assert verdicts[2].counterexample is not None
    wrong = verdicts[2].equation
    assert form.line_of(wrong).line == 11
    assert form.line_of(verdicts[2].equation - 0).defines == "dx[i]"
    local = [eq for eq in form.equations if eq.name == "dvar_dx" and eq.kind == "checked"]
    assert form.line_of(local[0].number).line == 10
    notes = "\n".join(line_notes(form, verdicts))
    assert "first refuted: line 11" in notes

    result = CliRunner().invoke(
        main, ["check", str(path), "--method", "exact", "--mode", "per-activation", "--no-timing"]
    )
    assert result.exit_code == 1, result.output
    assert "first refuted: line 11" in result.output
    assert "counterexample" in result.output


STEP = r"""---
name: wrong-step
mode: per-activation
---
$$
\begin{aligned}
\frac{\partial L}{\partial \beta} &= \sum_i \frac{\partial L}{\partial y_i} \\
\frac{\partial L}{\partial \gamma} &= \sum_i \frac{\partial L}{\partial y_i}(x_i-\mu) \\
&= \sum_i \frac{\partial L}{\partial y_i}x_i - \mu\sum_i \frac{\partial L}{\partial y_i}
\end{aligned}
$$
"""


def test_a_faithful_step_from_a_wrong_line_follows_from_it(tmp_path):
    """Line 8 (δγ without the 1/√(σ²+ε)) is wrong; line 9 is a correct algebra step from it:
    refuted against the truth, but it follows from the line before."""
    form = load_document(write(tmp_path, "step.md", STEP))
    assert form.steps == ((2, 3),)
    exact = check_exact_mode(form, Mode.PER_ACTIVATION, [3, 4])
    by_line = {(v.source_line, v.follows_line): v.status for v in exact}
    assert by_line == {
        (7, None): Status.HOLDS,
        (8, None): Status.REFUTED,
        (9, None): Status.REFUTED,
        (9, 8): Status.HOLDS,
    }
    general = {(v.source_line, v.follows_line): v.status for v in general_check(form)}
    assert general[(9, 8)] is Status.HOLDS and general[(8, None)] is Status.UNDECIDED
    result = CliRunner().invoke(main, ["check", "--form", str(form.path), "--no-timing"])
    assert result.exit_code == 1, result.output
    # one row per line; line 9's row says it follows from line 8 (while both are refuted)
    (row9,) = [row for row in result.output.splitlines() if row.startswith("9 ")]
    assert "✓ line 8" in row9 and row9.rstrip().endswith("✗ refuted"), row9
    assert "first refuted: line 8" in result.output
    assert "the mistake comes in at line 8; line(s) 9 follow from the line before" in result.output
    payload = json.loads(
        CliRunner().invoke(main, ["check", "--form", str(form.path), "--json"]).output
    )
    steps = [v for v in payload["verdicts"] if "follows" in v]
    assert {(v["method"], v["status"]) for v in steps} == {
        ("general", "holds"),
        ("exact", "holds"),
    }
    assert all(v["source_line"] == 9 and v["follows_line"] == 8 for v in steps)


def test_a_wrong_step_does_not_follow(tmp_path):
    """The WRONG document: line 11 loses γ, line 12 finds it again: line 12 holds against the
    truth but does not follow from line 11, with a counterexample."""
    form = load_document(write(tmp_path, "wrong.md", WRONG))
    (before, after) = form.steps[0]
    assert len(form.steps) == 1 and form.line_of(before).line == 11
    (step,) = [v for v in check_exact_mode(form, Mode.PER_ACTIVATION, [3]) if v.step]
    assert step.status is Status.REFUTED and step.counterexample is not None
    assert (step.source_line, step.follows, step.follows_line) == (12, before, 11)
    result = CliRunner().invoke(main, ["check", "--form", str(form.path), "--no-timing"])
    assert "line 12 does not follow from line 11" in result.output
    assert "first refuted: line 11" in result.output
    assert "the mistake comes in" not in result.output  # no refuted line follows from another


def test_check_reads_documents_by_suffix_and_with_form(tmp_path):
    path = FOLDER / "thorey.tex"
    assert isinstance(find_form(str(path)), DocumentForm)
    for args in (["check", str(path)], ["check", "--form", str(path)]):
        result = CliRunner().invoke(main, [*args, "--method", "general", "--no-timing"])
        assert result.exit_code == 0, result.output
        assert "thorey-chain" in result.output and "refuted" not in result.output


def test_lines_not_checked_say_why(tmp_path):
    text = r"""
\begin{align*}
\mu &= \frac{1}{m}\sum_i x_i \\
&= \frac{1}{m}\sum_k x_k \\
\text{(the mean)} \\
\frac{\partial L}{\partial \mu} &= \frac{\partial L}{\partial \sigma^2} \cdot \frac{2}{m} - \sum_i \frac{\partial L}{\partial \hat{x}_i} \frac{1}{\sqrt{\sigma^2+\epsilon}} \\
\frac{\partial L}{\partial \hat{x}_i} &= \gamma\, \frac{\partial L}{\partial y_i} \quad \text{(chain rule)} \\
\frac{\partial L}{\partial \beta} &= \sum_i \frac{\partial L}{\partial y_i}, \label{eq:beta}
\end{align*}
"""
    form = load_document(write(tmp_path, "mixed.tex", text))
    lines = {line.line: line for line in form.lines}
    # μ and its continuation: checked against the forward graph
    assert lines[3].status == lines[4].status == "checked" and lines[3].defines == "mu"
    assert lines[5].status == "prose"
    # ∂L/∂μ uses ∂L/∂σ² and ∂L/∂x̂, which no earlier line defines: their true values, said
    assert lines[6].status == "checked"
    assert "uses ∂L/∂σ², ∂L/∂x̂ as its true value" in " ".join(lines[6].notes)
    assert lines[7].status == lines[8].status == "checked"
    names = [e.name for e in form.equations if e.kind != "reference"]
    assert names == ["mu", "mu", "dmu", "dxhat", "dbeta"]


def test_front_matter_conventions_and_sigma(tmp_path):
    text = r"""---
name: cs231n-sigma
title: σ written for the variance, declared
sources:
  - a post
mode: per-activation
conventions:
  variance: biased
  epsilon: inside
sigma: var
---
\begin{eqnarray*}
\frac{\partial L}{\partial \hat{x}_i} &=& \gamma\, dout_i \\
\frac{\partial L}{\partial \sigma} &=& -\frac{1}{2}\sum_i \frac{\partial L}{\partial \hat{x}_i}(x_i-\mu)(\sigma+\epsilon)^{-1.5}
\end{eqnarray*}
"""
    form = load_document(write(tmp_path, "cs.md", text))
    assert form.name == "cs231n-sigma" and form.sources == ("a post",)
    assert form.modes == (Mode.PER_ACTIVATION,) and not form.unbiased and form.eps_inside
    assert [e.name for e in form.equations] == ["dxhat", "dvar"]
    assert all(v.status is Status.HOLDS for v in general_check(form))
    # The same text without the declaration: the line with a bare σ is not read, and its
    # reason says what to declare; the other line is still checked.
    undeclared = load_document(write(tmp_path, "cs2.md", text.replace("sigma: var\n", "")))
    (unread,) = [line for line in undeclared.lines if line.status == "not read"]
    assert unread.line == 13 and "sigma: std" in unread.reason
    assert [e.name for e in undeclared.equations] == ["dxhat"]


def test_tex_front_matter_one_line_form_and_spatial_n(tmp_path):
    body = r"""\begin{align}
\delta\beta &= \sum_{n,h,w} \delta y[n][c][h][w] \\
\delta x[n][c][h][w] &= \frac{\gamma}{\sqrt{\sigma^2+\epsilon}}\left(\delta y - \frac{\delta\beta}{N}\right)
\end{align}
"""
    text = "% bnderive: name: spatial-n\n% bnderive: mode: spatial\n" + body
    spatial = load_document(write(tmp_path, "s.tex", text))
    (unread,) = [line for line in spatial.lines if line.status == "not read"]
    assert unread.line == 5 and "column 100" in unread.reason and "lone N" in unread.reason
    form = load_document(write(tmp_path, "p.tex", text.replace("spatial\n", "per-activation\n")))
    assert form.name == "spatial-n" and form.modes == (Mode.PER_ACTIVATION,)


def test_markdown_code_fences_and_chains(tmp_path):
    text = r"""
```latex
\begin{align} \alpha = \beta \end{align}
```
$$
\frac{\partial L}{\partial \beta} = \sum_k g_k = \sum_i \frac{\partial L}{\partial y_i}
\\[2pt]
\frac{\partial L}{\partial x_j} = \frac{\gamma}{\sqrt{\sigma^2+\epsilon}} \left( g_j - \frac{1}{N}\frac{\partial L}{\partial \beta} \right) - \frac{\gamma}{N}\frac{\hat{x}_j}{\sqrt{\sigma^2+\epsilon}} \sum_i g_i \hat{x}_i
$$
"""
    form = load_document(write(tmp_path, "c.md", text))
    assert [e.name for e in form.equations] == ["dbeta", "dbeta", "dx"]
    assert form.lines[0].equations == (1, 2)
    assert all(v.status is Status.HOLDS for v in general_check(form))


MALFORMED = [
    (
        "braces.md",
        "$$\n\\frac{\\partial L}{\\partial \\beta} = \\sum_k {g_k\n$$\n",
        "line 2, column",
    ),
    (
        "macro.tex",
        "\\begin{align}\n  \\delta\\beta &= \\alpha\n\\end{align}\n",
        "line 2, column 18",
    ),
    ("noeq.md", "$$\n\\frac{\\partial L}{\\partial \\beta} \\sum_k g_k\n$$\n", "without '='"),
    ("empty.md", "", "line 1: no display math"),
    ("prose.md", "# Just prose\n\nNo math here.\n", "no display math"),
    ("binary.md", b"\x89PNG\r\n\x1a\n\x00\x00", "line 3: a binary file"),
    ("latin1.tex", "\\begin{align} x = 1 \\end{align} \xe9".encode("latin-1"), "not UTF-8"),
    ("unclosed.tex", "\n\\begin{align}\nx = y\n", "line 2: \\begin{align} is never closed"),
    ("dollars.md", "text\n$$\nx = y\n", "line 2: '$$' is never closed"),
    ("key.md", "---\nsigmaa: std\n---\n$$ x = y $$\n", "line 2: unknown front-matter key"),
    ("sigma.md", "---\nsigma: stdev\n---\n$$ x = y $$\n", "line 2: sigma: 'stdev'"),
    ("mode.md", "---\nmode: nchw\n---\n$$ x = y $$\n", "line 2: mode: 'nchw'"),
    ("nothing.md", "$$\n\\frac{\\partial u}{\\partial v} = 1\n$$\n", "nothing to check"),
    ("start.md", "$$\n&= x_i\n$$\n", "continues nothing"),
]


@pytest.mark.parametrize(("name", "text", "message"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_documents_are_exit_2_with_a_location(tmp_path, name, text, message):
    path = write(tmp_path, name, text)
    with pytest.raises(FormError) as info:
        load_document(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)
    for args in (["check", str(path)], ["parse", str(path)]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2, (args, result.output)
        assert "Error:" in result.output and "line " in result.output
        assert "Traceback" not in result.output


def test_parse_command_shows_each_line(tmp_path):
    result = CliRunner().invoke(main, ["parse", str(FOLDER / "nchw.md")])
    assert result.exit_code == 0, result.output
    assert "line 16" in result.output
    assert "∂L/∂x̂ᵢ = γ·gᵢ" in result.output
    assert r"\frac{\partial L}{\partial \hat{x}_{i}} = \gamma g_{i}" in result.output
    assert "checked as dxhat[i]: against the truth (equation 1)" in result.output
    wrong = CliRunner().invoke(main, ["parse", str(write(tmp_path, "w.md", WRONG))])
    assert wrong.exit_code == 0
    assert "checked as dvar_dx[i]: against the true ∂σ²/∂xᵢ" in wrong.output


def test_parse_command_expr_and_usage():
    result = CliRunner().invoke(main, ["parse", "--expr", r"\frac{\partial L}{\partial \mu_B}"])
    assert result.exit_code == 0 and "∂L/∂μ" in result.output
    bad = CliRunner().invoke(main, ["parse", "--expr", r"\sum_k g_k \beta_"])
    assert bad.exit_code == 2 and "line 1, column" in bad.output
    assert CliRunner().invoke(main, ["parse"]).exit_code == 2
    assert CliRunner().invoke(main, ["parse", "x.md", "--expr", "x"]).exit_code == 2
    assert CliRunner().invoke(main, ["parse", "x.toml"]).exit_code == 2
    assert CliRunner().invoke(main, ["parse", "--help"]).output.count("Examples") == 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.sampled_from(
            [
                "$$",
                "\\begin{align}",
                "\\end{align}",
                "\\\\",
                "&=",
                "---\n",
                "name: a\n",
                "\n",
                "x_i",
                "=",
                "\\frac{\\partial L}{\\partial x_i}",
                "\\delta\\beta",
                "\\sum_k g_k",
                "\\text{a}",
                "% bnderive: mode: spatial\n",
                "{",
                "}",
            ]
        ),
        max_size=14,
    ).map("".join)
)
@example(text="\\delta\\beta\\delta\\beta&=x_i\\\\&=\\delta\\beta")  # a continuation with no value
def test_document_reader_raises_nothing_but_form_errors(text):
    for suffix in ("md", "tex"):
        try:
            form = load_document(Path(f"fuzz.{suffix}"), text)
        except FormError as exc:
            assert str(exc).strip(), "a FormError must say what is wrong"
            continue
        # What was read is a form: numbered equations, steps between two of them.
        numbers = [eq.number for eq in form.equations]
        assert numbers == list(range(1, len(numbers) + 1))
        assert all(a in numbers and b in numbers and a < b for a, b in form.steps)


LOCALS = r"""---
name: locals
mode: per-activation
---
$$
\begin{aligned}
\frac{\partial \sigma^2}{\partial x_i} &= \frac{2(x_i-\mu)}{N} \\
&= \frac{2(x_i-\mu)}{N} - \frac{2}{N^2}\sum_k (x_k - \mu) \\
\frac{\partial \mu}{\partial x_j} &= \frac{1}{N} \\
\frac{\partial \hat{x}_i}{\partial \sigma^2} &= -\frac{1}{2}(x_i-\mu)(\sigma^2+\epsilon)^{-3/2} \\
\frac{\partial \hat{x}_i}{\partial \mu} &= \frac{-1}{\sqrt{\sigma^2+\epsilon}} \\
\frac{\partial \sigma^2}{\partial x_i} &= \frac{2(x_i-\mu)}{N-1} \\
\frac{\partial L}{\partial \beta} &= \sum_i \frac{\partial L}{\partial y_i}
\end{aligned}
$$
"""


def test_local_derivatives_are_checked_against_the_graph(tmp_path):
    """∂σ²/∂x_i, ∂μ/∂x_i, ∂x̂_i/∂σ², ∂x̂_i/∂μ: SymPy's diff of the graph stage (partials, other
    inputs fixed); for ∂σ²/∂x_i the total derivative (μ a function of x) is the same, since
    Σ_k (x_k − μ) = 0, so line 8 holds too; Bessel's 1/(N−1) in a biased file is refuted."""
    form = load_document(write(tmp_path, "locals.md", LOCALS))
    names = [e.name for e in form.equations if e.kind != "reference"]
    assert names == ["dvar_dx", "dvar_dx", "dmu_dx", "dxhat_dvar", "dxhat_dmu", "dvar_dx", "dbeta"]
    expected = {7: Status.HOLDS, 8: Status.HOLDS, 9: Status.HOLDS, 10: Status.HOLDS}
    expected |= {11: Status.HOLDS, 12: Status.REFUTED, 13: Status.HOLDS}
    exact = check_exact_mode(form, Mode.PER_ACTIVATION, [3, 4])
    assert {v.source_line: v.status for v in exact if not v.step} == expected
    assert [v.status for v in exact if v.step] == [Status.HOLDS]
    general = {v.source_line: v.status for v in general_check(form) if not v.step}
    assert general == {**expected, 12: Status.UNDECIDED}  # every-M: not proved, never refuted
    bessel = LOCALS.replace("mode: per-activation", "mode: per-activation\nvariance: unbiased")
    form = load_document(write(tmp_path, "bessel.md", bessel))
    exact = check_exact_mode(form, Mode.PER_ACTIVATION, [3])
    bessel_lines = {v.source_line: v.status for v in exact if not v.step}  # one line lower
    assert bessel_lines[13] is Status.HOLDS and bessel_lines[8] is Status.REFUTED
    result = CliRunner().invoke(main, ["check", str(tmp_path / "locals.md"), "--no-timing"])
    assert result.exit_code == 1, result.output
    assert "first refuted: line 12" in result.output
    assert "dvar_dx[1] at x[0, 0]" in result.output


def test_local_derivative_truth_is_the_graph_stage_diff():
    from bnderive.core import notation as N
    from bnderive.core.derive import local_truth

    x, mu, var, eps, M = N.x, N.mu, N.var, N.eps, N.M
    i = N.i
    assert sp.simplify(local_truth(Spec(), "dvar_dx") - 2 * (x[i] - mu) / M) == 0
    assert local_truth(Spec(), "dmu_dx") == 1 / M
    assert (
        sp.simplify(
            local_truth(Spec(), "dxhat_dvar") + (x[i] - mu) * (var + eps) ** sp.Rational(-3, 2) / 2
        )
        == 0
    )
    assert sp.simplify(local_truth(Spec(), "dxhat_dmu") + 1 / sp.sqrt(var + eps)) == 0
    assert sp.simplify(local_truth(Spec(unbiased=True), "dvar_dx") - 2 * (x[i] - mu) / (M - 1)) == 0
    assert local_truth(Spec(training=False), "dvar_dx") is None  # running statistics


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        (r"a = b, \qquad c = d", ["a = b", "c = d"]),
        (r"a = b; c = d", ["a = b", "c = d"]),
        (r"a = b \quad\text{and}\quad c = d", ["a = b", "c = d"]),
        (r"a = \sum_{i=1,j=1}^{m} b_i,", [r"a = \sum_{i=1,j=1}^{m} b_i,"]),  # commas inside {}
        (r"a = f(b, c = d)", [r"a = f(b, c = d)"]),  # inside ( )
        (r"a, b = c", [r"a, b = c"]),  # the left piece has no '='
    ],
)
def test_a_line_is_cut_into_its_equations_only_between_equations(text, pieces):
    from bnderive.read.documents import _equations

    got = _equations(text)
    assert [p for _, p, _ in got] == pieces
    assert all(text[offset:].startswith(p) for offset, p, _ in got)


def test_two_equations_on_one_line_are_both_checked(tmp_path):
    path = tmp_path / "post.md"
    path.write_text(
        "$$\\frac{\\partial L}{\\partial \\gamma} = \\sum_{i=1}^m \\frac{\\partial L}{\\partial y_i}"
        "\\hat{x}_i, \\qquad \\frac{\\partial L}{\\partial \\beta} = \\sum_{i=1}^m "
        "\\frac{\\partial L}{\\partial y_i} \\gamma$$\n",
        encoding="utf-8",
    )
    form = find_form(str(path))
    assert [eq.name for eq in form.equations] == ["dgamma", "dbeta"]
    result = CliRunner().invoke(
        main, ["check", str(path), "--method", "exact", "--mode", "per-activation", "--no-timing"]
    )
    assert result.exit_code == 1  # dβ has a stray γ: refuted, and on the same line as dγ
    assert "dbeta-times-gamma" in result.output
