"""A document's own macros (\\newcommand, \\renewcommand, \\providecommand, \\def,
\\DeclareMathOperator) expanded as data before the maths is read (issue 12): a line written with
them gets the verdict of the same line written out, a wrong one is refuted, and a macro that
cannot be expanded (it uses itself, it grows without end, it is defined elsewhere) leaves its
line not read with a reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from bnderive.read.documents import load_document
from bnderive.read.latex_results import LatexError
from bnderive.read.macros import MACRO_DEPTH, MacroError, expand, find_definitions
from tests.test_reading_rules import verdicts

DEFINITIONS = r"""$$\newcommand{\pd}[2]{\frac{\partial #1}{\partial #2}}
\renewcommand{\pd}[2]{\frac{\partial #1}{\partial #2}}
\providecommand{\pd}[2]{\mathrm{wrong}}
\def\istd{\ensuremath{(\sigma^2+\epsilon)^{-1/2}}}
\def\dy#1{\pd{L}{y_#1}}
\newcommand\grad[2][L]{\frac{\partial #1}{\partial #2}}
\DeclareMathOperator{\Var}{Var}$$
"""


def doc(tmp_path: Path, body: str) -> object:
    path = tmp_path / "post.md"
    path.write_text(DEFINITIONS + body, encoding="utf-8")
    return load_document(path)


def line_status(form) -> dict[int, tuple[str, str]]:
    return {d.line: (d.status, d.reason) for d in form.lines}


def test_a_line_written_with_the_posts_macros_is_checked(tmp_path):
    form = doc(
        tmp_path,
        "\n$$ \\pd{L}{\\hat{x}_i} = \\gamma \\dy{i} $$\n"  # line 9
        "\n$$ \\grad{\\beta} = \\sum_i \\grad[L]{y_i} $$\n"  # line 11
        "\n$$ \\pd{L}{\\gamma} = \\sum_i \\dy{i} (x_i-\\mu) \\istd $$\n",  # line 13
    )
    assert verdicts(form) == {9: "holds", 11: "holds", 13: "holds"}
    assert all(d.status != "not read" for d in form.lines)  # the definitions are no line


def test_a_wrong_line_written_with_the_posts_macros_is_refuted(tmp_path):
    form = doc(
        tmp_path,
        "\n$$ \\pd{L}{\\hat{x}_i} = \\dy{i} $$\n"  # γ forgotten
        "\n$$ \\pd{L}{\\gamma} = \\sum_i \\dy{i} (x_i-\\mu) \\istd^{2} $$\n".replace(
            "\\istd^{2}", "\\istd \\istd"
        ),
    )
    assert verdicts(form) == {9: "refuted", 11: "refuted"}


def test_the_line_keeps_its_text_as_written(tmp_path):
    form = doc(tmp_path, "\n$$ \\pd{L}{\\hat{x}_i} = \\gamma \\dy{i} $$\n")
    assert [d.latex for d in form.lines if d.line == 9] == [r"\pd{L}{\hat{x}_i} = \gamma \dy{i}"]


def test_a_macro_that_uses_itself_is_not_followed(tmp_path):
    path = tmp_path / "post.md"
    path.write_text(
        "$$\\newcommand{\\loop}{\\loop x}$$\n\n$$ \\mu = \\frac{1}{N}\\sum_i x_i $$\n\n"
        "$$ \\sigma^2 = \\loop $$\n",
        encoding="utf-8",
    )
    status = line_status(load_document(path))
    assert status[5][0] == "not read"
    assert f"more than {MACRO_DEPTH} levels deep" in status[5][1]
    assert status[3][0] == "checked"


def test_a_macro_that_doubles_at_each_level_is_refused():
    macros, _ = find_definitions(
        "".join(
            f"\\def\\m{c}{{\\m{chr(ord(c) + 1)}\\m{chr(ord(c) + 1)}}}" for c in "abcdefghijklmno"
        )
        + "\\def\\mp{xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx}"
    )
    with pytest.raises(MacroError, match="more than 20,000 characters"):
        expand(r"\ma", macros)


def test_expansion_is_substitution_only():
    macros, spans = find_definitions(
        r"\newcommand{\s}[1]{\sum_{#1}}\def\m{\mu}\newcommand{\hash}{##}"
        r"\DeclareMathOperator*{\E}{E}"
    )
    assert len(spans) == 4
    assert expand(r"\s{i} x_i - \m x", macros) == r"\sum_{i} x_i - \mu x"
    assert expand(r"\m_B", macros) == r"\mu_B"
    assert expand(r"\mx", macros) == r"\mx"  # a longer control word is another macro
    assert expand(r"\s i", macros) == r"\sum_{i}"
    assert expand(r"\E[x]", macros) == r"\mathrm{E}[x]"
    assert expand(r"\hash", macros) == "#"
    with pytest.raises(MacroError, match="missing an argument"):
        expand(r"\s", macros)


def test_a_control_word_never_runs_on_into_a_letter():
    """TeX ends a control word at the first non-letter when it reads a body, so \\partial#1
    used with x is \\partial then x, never \\partialx; joined as text, a space keeps them
    apart (and \\in + t must not become \\int)."""
    macros, _ = find_definitions(
        r"\newcommand{\pd}[1]{\partial#1}\newcommand{\after}[1]{#1t}\def\T{t}"
        r"\newcommand{\lit}[1]{\#1}"
    )
    assert expand(r"\pd{x}", macros) == r"\partial x"  # a body's word, then an argument
    assert expand(r"\after{\in}", macros) == r"\in t"  # an argument's word, then the body
    assert expand(r"\in\T", macros) == r"\in t"  # the text's word, then an expansion
    assert expand(r"\pd{\mu}x", macros) == r"\partial\mu x"  # an expansion, then the text
    assert expand(r"\\\T", macros) == r"\\t"  # \\ (a line break) is no control word
    assert expand(r"\lit{a}", macros) == r"\#1"  # \# is a control symbol: #1 is no parameter


def test_a_line_whose_macro_ends_in_a_control_word_before_a_letter_is_read(tmp_path):
    path = tmp_path / "post.md"
    path.write_text(
        "$$\\newcommand{\\pd}[1]{\\partial#1}$$\n\n"
        "$$ \\frac{\\pd L}{\\pd\\beta} = \\sum_i \\frac{\\pd L}{\\pd y_i} $$\n",
        encoding="utf-8",
    )
    assert verdicts(load_document(path)) == {3: "holds"}


def test_a_macro_defined_elsewhere_says_so(tmp_path):
    path = tmp_path / "post.md"
    path.write_text(
        "$$ \\mu = \\frac{1}{N}\\sum_i x_i $$\n\n$$ \\pdiv{L}{\\beta} = \\sum_i g_i $$\n",
        encoding="utf-8",
    )
    status, reason = line_status(load_document(path))[3]
    assert status == "not read"
    assert "unknown macro \\pdiv, and this file does not define it" in reason


def test_latex_own_macros_are_not_said_to_be_defined_elsewhere(tmp_path):
    path = tmp_path / "post.md"
    path.write_text(
        "$$ \\mu = \\frac{1}{N}\\sum_i x_i $$\n\n$$ \\frac{\\partial L}{\\partial \\beta} = \\alpha $$\n",
        encoding="utf-8",
    )
    status, reason = line_status(load_document(path))[3]
    assert status == "not read" and "unknown macro \\alpha: expected" in reason


def test_many_unclosed_definitions_are_read_quickly():
    """An unclosed \\def body is not scanned to the end of a large file, once per definition."""
    import time

    text = "\\def\\a{x " * 20_000
    start = time.perf_counter()
    macros, spans = find_definitions(text)
    assert macros == {} and spans == []
    assert time.perf_counter() - start < 5


def test_a_name_defined_twice_with_different_bodies_is_not_expanded(tmp_path):
    """\\renewcommand holds from its place on in TeX: with one table for the file, the line
    before it would have read the later body (σ for σ², a wrong line read as right)."""
    text = (
        "\\newcommand{\\s}{\\sigma^2}\n$$\\mu = \\frac{1}{m}\\sum_{i=1}^m x_i$$\n\n"
        "$$\\s = \\frac{1}{m}\\sum_{i=1}^m (x_i-\\mu)^2$$\n\n\\renewcommand{\\s}{\\sigma}\n"
    )
    path = tmp_path / "post.md"
    path.write_text(text, encoding="utf-8")
    (line,) = [d for d in load_document(path).lines if d.latex.startswith("\\s =")]
    assert line.status == "not read"
    assert "defined twice with different bodies" in line.reason
    macros, _ = find_definitions("\\newcommand{\\s}{x}\\renewcommand{\\s}{x}")
    assert macros["s"].conflict is None  # the same body again: no conflict


# -- --preamble: the post's macros kept in another file ------------------------------------------
PREAMBLE = r"""% a blueprint's macros file
\newcommand{\pdiv}[2]{\frac{\partial #1}{\partial #2}}
\def\eps{\epsilon}
\DeclareMathOperator{\Var}{Var}
"""
USES = (
    "$$ \\pdiv{L}{\\beta} = \\sum_i g_i $$\n\n"
    "$$ \\pdiv{L}{\\gamma} = \\sum_i g_i \\hat{x}_i + \\eps $$\n"
)


def _files(tmp_path: Path, preamble: str = PREAMBLE, body: str = USES) -> tuple[str, str]:
    (tmp_path / "macros.tex").write_text(preamble, encoding="utf-8")
    (tmp_path / "post.md").write_text(body, encoding="utf-8")
    return str(tmp_path / "post.md"), str(tmp_path / "macros.tex")


def test_a_preamble_is_read_as_the_documents_own_definitions(tmp_path):
    """check and parse --preamble FILE: the macros the post defines elsewhere expand as its own
    do (a right line holds, a wrong one is refuted), and a note says what was taken; without
    the preamble the same lines are not read."""
    from click.testing import CliRunner

    from bnderive.cli import main

    post, macros = _files(tmp_path)
    args = ["check", post, "--preamble", macros, "--method", "exact", "--mode", "per-activation"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert "1 hold, 1 refuted" in result.output
    assert "the document uses \\eps, \\pdiv" in result.output
    parsed = CliRunner().invoke(main, ["parse", post, "--preamble", macros])
    assert parsed.exit_code == 0, parsed.output
    assert "2 checked" in parsed.output and "read from the preamble" in parsed.output
    alone = CliRunner().invoke(main, ["parse", post])
    assert alone.exit_code == 2 and "unknown macro \\pdiv" in alone.output
    assert "--preamble FILE" in alone.output


def test_a_preamble_that_cannot_be_used_is_bad_input(tmp_path):
    """A missing file, a file with no definition, --preamble with no derivation or with --expr:
    exit code 2 and one paragraph."""
    from click.testing import CliRunner

    from bnderive.cli import main

    post, macros = _files(tmp_path)
    (tmp_path / "empty.tex").write_text("% nothing\n", encoding="utf-8")
    for args, said in (
        (["check", post, "--preamble", str(tmp_path / "none.tex")], "no such file"),
        (["parse", post, "--preamble", str(tmp_path / "empty.tex")], "no macro definition"),
        (["check", "staged", "--preamble", macros], "give the derivation"),
        (["parse", "--expr", "x_i", "--preamble", macros], "--expr reads one expression"),
        (["report", "staged", "--preamble", macros], "give the derivation"),
    ):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2, (args, result.output)
        assert said in result.output and "Traceback" not in result.output, result.output
        assert result.output.strip().count("\n\n") == 0, result.output  # one paragraph


def test_a_preamble_and_the_document_that_disagree_are_not_guessed(tmp_path):
    """A name the preamble and the document define with different bodies: a use is not read
    (which one it meant is not said); the same body twice is that macro.  The preamble's text
    is data: TeX commands in it are not run."""
    from bnderive.read.documents import load_preamble

    again = r"$$\newcommand{\pdiv}[2]{\frac{\partial #2}{\partial #1}}$$" + "\n\n" + USES
    post, macros = _files(tmp_path, body=again)
    with pytest.raises(LatexError, match="defined both in the preamble and in the document"):
        load_document(post, preamble=load_preamble(macros))
    same = r"$$\def\eps{\epsilon}$$" + "\n\n" + USES
    post, macros = _files(tmp_path, body=same)
    form = load_document(post, preamble=load_preamble(macros))
    assert verdicts(form) == {3: "holds", 5: "refuted"}
    hostile = PREAMBLE + "\\immediate\\write18{touch " + str(tmp_path / "ran") + "}\n"
    post, macros = _files(tmp_path, preamble=hostile)
    load_document(post, preamble=load_preamble(macros))
    assert not (tmp_path / "ran").exists()


def test_a_report_reads_the_preamble_and_says_how_to_reproduce_it(tmp_path):
    from click.testing import CliRunner

    from bnderive.cli import main

    post, macros = _files(tmp_path)
    args = ["report", post, "--preamble", macros, "--format", "md", "--mode", "per-activation"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert "1 of 2 lines hold, 1 refuted" in result.output
    assert f"--preamble {macros}" in result.output and "read from the preamble" in result.output
