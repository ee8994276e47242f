"""bnderive report: the model, the Markdown and LaTeX printers, the PDF, the CLI, the notebook views.

Golden files (tests/golden/report_*.md, .tex) are the reports of the built-in forms, of a
derivation whose middle line is wrong (examples/post.md: ∂ℓ/∂σ² lost its −½, ∂ℓ/∂x inherits it)
and of an implementation with a named mistake (examples/layers_nogamma.py: γ missing).  Update
them with BNDERIVE_UPDATE_GOLDEN=1 after a deliberate change, and read the diff.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from bnderive.cli import main
from bnderive.core.spec import Norm
from bnderive.read.derivations import builtin_forms
from bnderive.read.documents import load_document
from bnderive.report.build import build_report
from bnderive.report.latex import latex, latex_text
from bnderive.report.markdown import markdown, markdown_text
from bnderive.report.mathtex import unsafe_reason

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
UPDATE = os.environ.get("BNDERIVE_UPDATE_GOLDEN") == "1"
HAVE_TEX = shutil.which("pdflatex") is not None and shutil.which("pdftotext") is not None
NO_TEX = "no TeX engine (pdflatex) or pdftotext on PATH: apt-get install texlive-latex-base " \
    "texlive-latex-recommended texlive-pictures poppler-utils"  # fmt: skip


def test_ci_has_a_tex_engine():
    """CI installs TeX Live (.ci/run): there the PDF tests must run, not skip."""
    if os.environ.get("CI") != "true":
        pytest.skip("not in CI: the PDF tests skip only without a TeX engine")
    assert HAVE_TEX, NO_TEX


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE or not path.exists():
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{name} changed (BNDERIVE_UPDATE_GOLDEN=1)"


def with_command(report, command: str):
    return dataclasses.replace(report, summary=dataclasses.replace(report.summary, command=command))


@pytest.fixture(scope="module", autouse=True)
def in_the_checkout():
    """Paths as a reader types them (examples/post.md), no SOURCE_DATE_EPOCH of the caller."""
    saved = os.environ.pop("SOURCE_DATE_EPOCH", None)
    here = os.getcwd()
    os.chdir(ROOT)
    yield
    os.chdir(here)
    if saved is not None:
        os.environ["SOURCE_DATE_EPOCH"] = saved


@pytest.fixture(scope="module")
def builtin_report():
    forms = [f for f in builtin_forms() if f.order == 1 and f.norm is Norm.BATCH]
    return build_report(forms, jobs=2)


@pytest.fixture(scope="module")
def post_report():
    return build_report([load_document("examples/post.md")], jobs=2)


@pytest.fixture(scope="module")
def impl_report():
    return build_report([], ["examples/layers_nogamma.py"], truth=True)


def pdf_text(tex: str) -> str:
    from bnderive.report.pdf import compile_pdf

    pdf = compile_pdf(tex)
    assert pdf.startswith(b"%PDF-")
    done = subprocess.run(
        ["pdftotext", "-layout", "-", "-"], input=pdf, capture_output=True, check=True
    )
    return " ".join(done.stdout.decode("utf-8").split())


# -- golden files ------------------------------------------------------------------------------------
def test_builtin_forms_golden(builtin_report):
    md = markdown(with_command(builtin_report, "bnderive report --format md"))
    tex = latex(with_command(builtin_report, "bnderive report --format tex"))
    golden("report_builtin.md", md)
    golden("report_builtin.tex", tex)
    assert builtin_report.exit_code == 0
    assert "**Verdict: ✓ holds.**" in md
    # every built-in form is a section, and the three published forms are proven for every M
    for name in ("staged", "kronecker", "compact", "pytorch", "eval"):
        assert f"## Built-in form: {name}" in md
    proven = md.split("### The published forms, proven for every M", 1)[1].split("\n## ", 1)[0]
    for name in ("staged", "kronecker", "compact"):
        assert re.search(rf"\| {name} \| .* \| ✓ holds for every M \|", proven), name
    assert "```mermaid\nflowchart LR" in md
    assert "\\begin{tikzpicture}" in tex


def test_wrong_middle_line_golden(post_report):
    md = markdown(with_command(post_report, "bnderive report examples/post.md --format md"))
    tex = latex(with_command(post_report, "bnderive report examples/post.md --format tex"))
    golden("report_post.md", md)
    golden("report_post.tex", tex)
    assert post_report.exit_code == 1
    (form,) = post_report.forms
    status = {e.place: e.status for e in form.lines}
    assert status == {
        "line 9": "holds",
        "line 10": "refuted",
        "line 11": "holds",
        "line 12": "refuted",
        "line 19": "holds",
        "line 20": "holds",
    }
    wrong = next(e for e in form.lines if e.place == "line 10")
    assert [m.name for m in wrong.mistakes] == ["half-lost"]
    assert wrong.counterexamples and wrong.counterexamples[0].reference == "truth"
    # the counterexample's two values differ (they are the check's, not made up here)
    c = wrong.counterexamples[0]
    assert c.reference_value != c.value
    assert form.comes_in == (
        "the mistake comes in at line 10; line 12 uses its value (right given it, wrong "
        "because it is)",
    )
    assert "the factor −½ of dσ² lost" in md and "half\\-lost" not in md
    assert "$$\n\\frac{\\partial L}{\\partial \\sigma^{2}} = " in md


#: A derivation whose line 9 has a member that cannot be checked on principle: a free index k on
#: the right side where the left side has only i (which element is meant, the notation does not say).
MEMBER_NOT_CHECKED = r"""# A derivation

$$\mu = \frac{1}{m}\sum_{i=1}^m x_i$$

$$\sigma^2 = \frac{1}{m}\sum_{i=1}^m (x_i-\mu)^2$$

$$\hat{x}_i = \frac{x_i-\mu}{\sqrt{\sigma^2+\epsilon}}$$

$$y_i = \gamma \hat{x}_i + \beta = \gamma \hat{x}_k + \beta$$

$$\frac{\partial L}{\partial \beta} = \sum_{i=1}^m \frac{\partial L}{\partial y_i}$$
"""


def _notebook(markdown_text: str) -> str:
    """A Jupyter notebook (nbformat 4) with the text as one Markdown cell after a code cell."""
    cells = [
        {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
         "source": ["import numpy as np\n"]},
        {"cell_type": "markdown", "metadata": {}, "source": markdown_text.splitlines(True)},
    ]  # fmt: skip
    return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


def test_a_line_with_a_member_not_checked_says_so(tmp_path: Path):
    """y_i = γx̂_i + β = (a member not checked): the checked member holds; the verdict beside
    the line and the summary say the other was not checked.  And a line not checked
    (costa's ∂l/∂xsquarred, line 62: a node only of the post's graph image) says why once
    (not again as a note)."""
    import bnderive

    path = tmp_path / "post.md"
    path.write_text(MEMBER_NOT_CHECKED, encoding="utf-8")
    result = bnderive.check(str(path), methods=["exact"], modes=["per-activation"])
    report = build_report(check_result=result, truth=False)
    (form,) = report.forms
    line = next(e for e in form.lines if e.place.startswith("line 9"))
    assert line.status == "holds" and line.unchecked == (2,)
    assert line.verdict.endswith("; member 2 not checked (not covered by the verdict)")
    assert "1 with a member not checked" in report.summary.verdict
    md = markdown(report)
    assert "member 2 not checked (not covered by the verdict) |" in md

    path = "tests/derivations_real/costa_2016_graph.md"
    result = bnderive.check(path, methods=["exact"], modes=["per-activation"])
    report = build_report(check_result=result, truth=False)
    (form,) = report.forms
    md = markdown(report)
    unchecked = next(e for e in form.lines if e.place.startswith("line 62"))
    assert unchecked.status == "not checked" and unchecked.reason
    assert unchecked.reason not in unchecked.notes
    assert md.count(markdown_text(unchecked.reason)) == 1


def test_check_reads_a_notebook_as_report_does(tmp_path: Path):
    """A notebook's Markdown cells are read; a line with a member not checked is said beside
    the line and in the summary, and --strict makes it exit code 3 (not shown to hold)."""
    from bnderive.cli import main as cli

    path = tmp_path / "post.ipynb"
    path.write_text(_notebook(MEMBER_NOT_CHECKED), encoding="utf-8")
    args = ["check", str(path), "--method", "exact", "--no-timing"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output  # everything checked holds
    assert "not valid TOML" not in result.output
    assert "line 9 (cell 2, line 9) (y[i]): member 2 not checked" in result.output
    assert "1 with a member not checked, not covered by the verdict (line 9: member 2" in (
        " ".join(result.output.split())
    )
    strict = CliRunner().invoke(cli, [*args, "--strict"])
    assert strict.exit_code == 3, strict.output
    result = CliRunner().invoke(
        cli, ["check", "tests/derivations_real/costa_2016_graph.md", "--method",
              "exact", "--no-timing"]
    )  # fmt: skip
    assert result.exit_code in (0, 1), result.output  # a verdict on a real notebook's lines
    from bnderive.read import catalogue, documents

    assert catalogue.DOCUMENT_SUFFIXES == documents.SUFFIXES


def test_a_long_counterexample_value_is_shortened():
    from bnderive.report.model import SHOWN, shorten

    value = "[" + ", ".join(str(k) for k in range(4096)) + "]"
    short = shorten(value)
    assert short.startswith(value[:SHOWN]) and len(short) < SHOWN + 60
    assert f"({len(value)} characters in all" in short
    assert shorten("[1, 2]") == "[1, 2]"


def test_named_mistake_in_an_implementation_golden(impl_report):
    md = markdown(
        with_command(impl_report, "bnderive report examples/layers_nogamma.py --format md")
    )
    tex = latex(
        with_command(impl_report, "bnderive report examples/layers_nogamma.py --format tex")
    )
    golden("report_layers_nogamma.md", md)
    golden("report_layers_nogamma.tex", tex)
    assert impl_report.exit_code == 1
    (impl,) = impl_report.implementations
    refuted = [(r.function, r.quantity) for r in impl.rows if r.status == "refuted"]
    assert refuted == [("batchnorm_backward", "dx")]
    (finding,) = impl.findings
    assert [m.name for m in finding.mistakes] == ["gamma-missing"]
    assert finding.counterexample is not None
    assert finding.counterexample.reference_value != finding.counterexample.value


# -- the command line ----------------------------------------------------------------------------------
def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, ["report", *args], env=env, catch_exceptions=False)


def test_cli_markdown_is_the_golden_and_byte_identical():
    first = run("examples/post.md")
    second = run("examples/post.md", "--format", "md")
    assert first.exit_code == 1 and second.exit_code == 1
    assert first.stdout == second.stdout == (GOLDEN / "report_post.md").read_text("utf-8")


def test_source_date_epoch_sets_the_date(tmp_path):
    out = tmp_path / "r.tex"
    result = run("examples/layers.py", "-o", str(out), env={"SOURCE_DATE_EPOCH": "1700000000"})
    assert result.exit_code == 0, result.output
    text = out.read_text("ascii")
    assert "\\date{2023-{}11-{}14}" in text
    assert re.search(r"\d{2}:\d{2}", text) is None  # no clock time anywhere


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "pdf"], "--format pdf writes a file"),
        (["-o", "x.md", "--format", "tex"], "contradicts"),
        (["nonexistent-form"], "nonexistent-form"),
        (["--groups", "2"], "--groups 2 belongs to GroupNorm"),
    ],
)
def test_bad_usage_is_exit_2(args, message):
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_missing_tex_engine_names_the_apt_get_line(monkeypatch, tmp_path):
    from bnderive.report import pdf

    monkeypatch.setattr(pdf.shutil, "which", lambda name: None)
    result = run("staged", "-o", str(tmp_path / "r.pdf"))
    assert result.exit_code == 2
    assert (
        "sudo apt-get install -y --no-install-recommends texlive-latex-base "
        "texlive-latex-recommended texlive-pictures;" in " ".join(result.output.split())
    )
    assert not (tmp_path / "r.pdf").exists()


def test_layer_norm_family_report():
    result = run("--norm", "layer", "--mode", "per-activation")
    assert result.exit_code == 0, result.output
    assert "LayerNorm" in result.stdout
    assert "## Built-in form: layernorm-pytorch" in result.stdout


# -- PDF ----------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not HAVE_TEX, reason=NO_TEX)
def test_pdf_of_the_builtin_forms_reads_back(builtin_report):
    text = pdf_text(latex(builtin_report))
    for title in (
        "1 Summary",
        "2 The forward graph",
        "3 Ground truth, stage by stage",
        "The published forms, proven for every M",
        "Built-in form: staged",
    ):
        assert title in text, title
    assert "Verdict: × holds" not in text and "holds for every M" in text


@pytest.mark.skipif(not HAVE_TEX, reason=NO_TEX)
def test_pdf_of_a_wrong_derivation_and_a_wrong_implementation_reads_back(post_report, impl_report):
    text = pdf_text(latex(post_report))
    assert "Derivation document: post" in text
    assert "refuted" in text
    assert "Known mistake: the factor −1/2 of dσ 2 lost (half-lost)" in text
    assert "the mistake comes in at line 10" in text
    text = pdf_text(latex(impl_report))
    assert "Implementation: examples/layers_nogamma.py" in text
    assert "Known mistake: γ missing (gamma-missing)" in text


@pytest.mark.skipif(not HAVE_TEX, reason=NO_TEX)
def test_pdf_is_byte_identical():
    from bnderive.report.pdf import compile_pdf

    tex = (GOLDEN / "report_post.tex").read_text("ascii")
    assert compile_pdf(tex) == compile_pdf(tex)  # no date, no trailer ID


# -- emitted code --------------------------------------------------------------------------------------
def test_code_section_lists_the_default_form_and_says_why():
    """No form that can be emitted was given (a derivation document is checked, not emitted):
    the report lists what `bnderive emit` writes without --form, and says so."""
    import importlib.util

    from bnderive.core.spec import Mode

    post = load_document("examples/post.md")
    report = build_report(
        [post], modes=[Mode.PER_ACTIVATION], code=True, code_forms=[post], truth=False
    )
    targets = ["numpy"] + (["numba"] if importlib.util.find_spec("numba") else [])
    assert [(c.form, c.mode, c.target) for c in report.code] == [
        ("compact", "per-activation", t) for t in targets
    ]
    for section in report.code:
        assert "def backward(dout, x, gamma, eps):" in section.source
        assert any(v.startswith("exact rationals") for v in section.verified)
    head, *rest = report.code_notes
    assert head.startswith(
        "Listed: what bnderive emit writes without --form for BatchNorm, from the compact form, "
        f"one of the published forms proven above ({' and '.join(targets)}; per-activation)"
    )
    assert "no form given could be emitted" in head
    assert rest[0] == (
        "post is not listed: a derivation document is checked, not emitted (write it as a form "
        "file)."
    )
    md = markdown(report)
    assert "## Emitted code" in md and "```python\n" in md
    assert "- Listed: what bnderive emit writes without --form for BatchNorm" in md
    tex = latex(report)
    assert "\\section{Emitted code}" in tex
    if HAVE_TEX:
        text = pdf_text(tex)
        assert "def backward(dout, x, gamma, eps):" in text
        assert "Verified before it was listed" in text
        assert "Listed: what bnderive emit writes without --form for BatchNorm" in text


def test_code_section_lists_the_forms_given_that_hold():
    """`report staged examples/nogamma.toml --code`: staged's module is listed, the refuted
    form file is not (and the report says why)."""
    from bnderive.core.spec import Mode
    from bnderive.read.catalogue import find_form
    from bnderive.read.forms import load_form

    forms = [find_form("staged"), load_form("examples/nogamma.toml")]
    report = build_report(
        forms, modes=[Mode.PER_ACTIVATION], code=True, code_forms=forms, truth=False
    )
    assert {c.form for c in report.code} == {"staged"}
    assert all("from the form 'staged'" in c.source for c in report.code)
    assert report.code_notes[0].startswith("Listed: what bnderive emit --form staged writes (")
    nogamma = next(f for f in report.forms if f.path == "examples/nogamma.toml")
    assert nogamma.status == "refuted"
    assert (
        f"{nogamma.name} is not listed: it does not hold (refuted); only a proven form is "
        "emitted." in report.code_notes
    )


# -- the stability study ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class FakeStudy:
    """The shape of ``bnderive.stability.StabilityStudy`` that the report reads, with made-up
    numbers: the printers are tested here; the study's own numbers by its tests."""

    dtypes: tuple = ("float32",)
    candidates: tuple = ("staged", "compact", "one-pass σ²", "two-pass σ²")
    means: tuple = (0.0, 1.0, 1e3, 1e6)
    sizes: tuple = (4, 64, 4096)
    m: int = 256
    size_mean: float = 1e3
    spread: float = 1.0
    notes: tuple = ("inputs x = mean + spread·z <script>", "reference: exact $x$")

    def series(self, sweep, dtype, candidate):
        points = self.means if sweep == "mean" else self.sizes
        k = self.candidates.index(candidate)
        out = []
        for n, p in enumerate(points):
            error = (k + 1) * 10.0 ** (n - 8)
            if candidate == "one-pass σ²" and n == len(points) - 1:
                error = float("inf")
            if candidate == "staged" and n == 0:
                error = 0.0
            out.append((float(p), error))
        return out


def test_stability_section_tables_and_figure():
    from bnderive.report.model import stability_section

    section = stability_section(FakeStudy())
    assert [(t.dtype, t.sweep) for t in section.tables] == [("float32", "mean"), ("float32", "M")]
    mean = section.tables[0]
    assert mean.errors[0][0] == 0.0 and mean.errors[-1][2] == float("inf")
    report = dataclasses.replace(build_report([], [], truth=False), stability=(section,))
    md = markdown(report)
    assert "## Stability: the relative error in floating point" in md
    assert "| 1e+06 | 1.0e-05 | 2.0e-05 | overflow/NaN | 4.0e-05 |" in md
    assert report.exit_code == 3 and "nothing was checked" in md  # a study is no verdict
    assert "\\<script\\>" in md and "\\$x\\$" in md
    tex = latex(report)
    assert "\\usepackage{pgfplots}" in tex and "\\begin{loglogaxis}" in tex
    # a log axis cannot show mean 0, error 0 or an overflow: those points are left out
    assert "(0," not in tex.split("\\begin{loglogaxis}", 1)[1].split("\\end{loglogaxis}")[0]
    if HAVE_TEX:
        text = pdf_text(tex)
        assert "Stability: the relative error in floating point" in text
        assert "overflow/NaN" in text


@pytest.fixture(scope="module")
def small_study():
    """The real study with small, fast settings (M = 64, M sweep to 16, three means)."""
    from bnderive.stability import study

    return study(("float32",), m=64, max_m=16, means=(0.0, 1e3, 1e6))


def test_the_real_study_in_the_report(small_study):
    """The section's tables and the LaTeX figure's coordinates are the study's own numbers,
    read back from the Markdown table and the pgfplots coordinates; the PDF shows them."""
    from bnderive.report.model import error_text, stability_section

    section = stability_section(small_study)
    report = dataclasses.replace(build_report([], [], truth=False), stability=(section,))
    md = markdown(report)
    assert "one draw of the inputs (seed 0)" in md
    tex = latex(report)
    plots = tex.count("\\begin{loglogaxis}")
    assert plots == 2  # one per sweep
    for sweep, title, points in (
        ("mean", "### float32: as the input mean grows (M = 64, spread 1)", small_study.means),
        ("M", "### float32: as M grows (input mean 1000)", small_study.sizes),
    ):
        table = md.split(title, 1)[1].split("\n\n", 2)[1]
        rows = [line.strip("|").split("|") for line in table.splitlines()[2:]]
        assert [float(r[0]) for r in rows] == [float(p) for p in points]
        for k, candidate in enumerate(small_study.candidates, 1):
            want = [error_text(e) for _, e in small_study.series(sweep, "float32", candidate)]
            assert [markdown_text(w) for w in want] == [r[k].strip() for r in rows], candidate
    figures = tex.split("\\begin{loglogaxis}")[1:]
    for figure, sweep in zip(figures, ("mean", "M"), strict=True):
        body = figure.split("\\end{loglogaxis}")[0]
        for candidate in small_study.candidates:
            drawn = [
                (p, e)
                for p, e in small_study.series(sweep, "float32", candidate)
                if p > 0 and math.isfinite(e) and e > 0
            ]
            coords = "".join(f"({p:.6g},{e:.6g})" for p, e in drawn).replace(")(", ") (")
            assert f"coordinates {{{coords}}};" in body, (sweep, candidate)
    if HAVE_TEX:
        text = pdf_text(tex)
        assert "Stability: the relative error in floating point" in text
        assert "float32: as the input mean grows (M = 64, spread 1)" in text
        compact = small_study.error("mean", "float32", "compact", 1e6)
        assert error_text(compact) in text


def test_markdown_report_links_the_stability_figure(tmp_path):
    """-o FILE.md --stability writes FILE.stability.png beside it and links it; the PNG is the
    study's figure (the same bytes as the figure drawn here from the same study)."""
    pytest.importorskip("matplotlib")
    from bnderive.emit.numba_module import numba_available
    from bnderive.stability import study
    from bnderive.stability.figure import save_figure

    out = tmp_path / "post report.md"
    result = run("staged", "--mode", "per-activation", "--stability", "-o", str(out))
    assert result.exit_code == 0, result.output
    png = tmp_path / "post report.stability.png"
    md = out.read_text("utf-8")
    assert "](post%20report.stability.png)" in md
    assert md.count("![The stability study") == 1
    save_figure(study(numba=numba_available()), str(tmp_path / "again.png"))
    assert png.read_bytes() == (tmp_path / "again.png").read_bytes()
    if numba_available():
        assert "| emitted numpy | emitted numba |" in md
    else:
        assert "the emitted numba kernel is not studied: numba is not installed" in md


def test_cli_stability():
    import importlib.util

    result = run("staged", "--stability", "--mode", "per-activation")
    if importlib.util.find_spec("bnderive.stability") is None:
        assert result.exit_code == 2 and "--stability is not available" in result.output
        return
    assert result.exit_code == 0, result.output
    assert "## Stability: the relative error in floating point" in result.stdout
    # printed, the Markdown has no file beside it for the PNG: it says so, and how to get one
    assert "No figure: a Markdown report printed on the terminal has no file beside it" in (
        result.stdout
    )


# -- hostile strings -----------------------------------------------------------------------------------
HOSTILE = [
    r"\input{/etc/passwd}",
    r"\write18{touch pwned}",
    r"\immediate\openout5=pwned.tex",
    r"\catcode`\^^M=13",
    r"\csname end\endcsname",
    "$x$ & # % _ ^ ~ { } | < > \" '",
    "<script>alert(1)</script> [a](javascript:alert(1)) ![i](x) **b** `c` | d",
    "bidi \u202eevil\u202c and a\x1b[31m escape",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_latex_text_leaves_no_command_of_the_input(value):
    out = latex_text(value)
    assert out.isascii()
    # every backslash starts a command of the escaping itself
    commands = set(re.findall(r"\\([A-Za-z]+|.)", out))
    assert commands <= {
        "textbackslash", "{", "}", "$", "&", "#", "%", "ttfamily", "char", "textless",
        "textgreater", "textbar", "allowbreak", "texttt",
    }, commands  # fmt: skip
    depth = 0
    for ch in re.sub(r"\\[{}]", "", out):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0


@pytest.mark.parametrize("value", HOSTILE)
def test_markdown_text_starts_no_markup(value):
    """A CommonMark parser (markdown-it-py, rich's) reads the escaped text back as the literal
    characters in one paragraph: no tag, link, emphasis, code or entity; in a table cell too."""
    import html

    from markdown_it import MarkdownIt

    out = markdown_text(value)
    shown = " ".join(re.sub(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]", " ", value).split())
    literal = html.escape(shown, quote=False).replace('"', "&quot;")
    parser = MarkdownIt("commonmark").enable("table")
    assert parser.render(out) == f"<p>{literal}</p>\n"
    cell = parser.render(f"| a |\n|---|\n| {out} |\n")
    assert cell.count("<td>") == 1 and literal in cell


@pytest.mark.parametrize(
    "tex", [r"\input{x}", r"\write18{ls}", r"\catcode", "a}{", "x\\", r"\def\a{b}", "#1", "%"]
)
def test_unsafe_math_is_refused(tex):
    assert unsafe_reason(tex) is not None


def hostile_document(folder: Path) -> Path:
    """A derivation whose file name, title, sources and an unreadable line are hostile."""
    name = folder / "evil_$x$_#%&{}~^.md"
    name.write_text(
        "---\n"
        'title: "\\write18{touch pwned} \\catcode`\\^^M=13 <b>bold</b> $x$"\n'
        "sources:\n"
        "  - \\input{/etc/passwd} and \\openout5=pwned.tex\n"
        "---\n"
        "A derivation (written for this test) whose second line cannot be read.\n\n"
        "$$\n"
        "\\begin{aligned}\n"
        "\\frac{\\partial L}{\\partial \\beta} &= \\sum_{i=1}^{m} \\frac{\\partial L}{\\partial y_i} \\\\\n"
        "\\frac{\\partial L}{\\partial \\gamma} &= \\input{/etc/passwd} \\write18{touch pwned}\n"
        "\\end{aligned}\n"
        "$$\n",
        encoding="utf-8",
    )
    return name


def test_hostile_document_report(tmp_path):
    doc = hostile_document(tmp_path)
    report = build_report([load_document(str(doc))], truth=False, command=f"bnderive report {doc}")
    tex = latex(report)
    md = markdown(report)
    assert tex.isascii()
    for word in ("input", "write", "openout", "catcode", "csname", "immediate"):
        # only ever as text after \textbackslash{}
        for m in re.finditer(rf"\\{word}\b", tex):
            pytest.fail(f"\\{word} reached the LaTeX: …{tex[m.start() - 40 : m.end() + 40]}…")
    assert "<b>" not in md and "\\<b\\>bold" in md
    prose = re.sub(r"(`+).*?\1", "", md)  # code spans are literal (the reproducing command)
    assert "$x$" not in prose.replace("\\$x\\$", "")
    statuses = [e.status for e in report.forms[0].lines]
    assert statuses == ["holds", "not read"]
    if HAVE_TEX:
        text = pdf_text(tex)
        assert "\\write18{touch pwned}" in text
        assert "\\input{/etc/passwd}" in text
        assert "\\openout5=pwned.tex" in text
        assert "evil_$x$_#%&{}" in text
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_hostile_figure_file_name_stays_a_link_target():
    """The PNG's name comes from -o: percent-encoded in the link, it cannot end the link or
    start markup."""
    from bnderive.report.model import StabilitySection

    name = "a)](javascript:alert(1)) <b> `x` $y$.stability.png"
    md = markdown(
        dataclasses.replace(
            build_report([], [], truth=False), stability=(StabilitySection((), (), figure=name),)
        )
    )
    link = next(line for line in md.splitlines() if line.startswith("!["))
    target = link.split("](", 1)[1]
    assert target == (
        "a%29%5D%28javascript%3Aalert%281%29%29%20%3Cb%3E%20%60x%60%20%24y%24.stability.png)"
    )


def test_hostile_implementation_file_name(tmp_path):
    evil = tmp_path / "a_$b$_\\input{x}_%.py"
    shutil.copy(ROOT / "examples" / "layers_nogamma.py", evil)
    report = build_report([], [str(evil)], truth=False)
    tex = latex(report)
    assert tex.isascii() and "\\input{x}" not in tex
    assert "\\textbackslash{}input\\{x\\}" in tex
    if HAVE_TEX:
        assert "a_$b$_\\input{x}_%.py" in pdf_text(tex)


# -- the notebook views ---------------------------------------------------------------------------------
def test_check_result_renders_in_jupyter():
    import bnderive
    from bnderive.verify.check import CheckResult

    result = bnderive.check("examples/post.md", methods=["exact"], modes=["per-activation"])
    assert isinstance(result, CheckResult) and result.exit_code == 1
    md = result._repr_markdown_()
    assert md.startswith("# bnderive report: examples/post.md")
    assert "`bnderive check examples/post.md --method exact`" in md
    assert "| line 10 | dvar | ✗ refuted" in md
    tex = result._repr_latex_()
    assert tex.startswith("\\section{Summary}") and "\\documentclass" not in tex


def test_check_impl_result_renders_in_jupyter():
    import bnderive
    from bnderive.usercode.check_impl import Report

    result = bnderive.check_impl("examples/layers_nogamma.py", training=True)
    assert isinstance(result, Report) and result.exit_code == 1
    md = result._repr_markdown_()
    assert "## Implementation: examples/layers\\_nogamma.py" in md
    assert "**Known mistake: γ missing** (gamma-missing)" in md
