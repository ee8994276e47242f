"""Scopes the notation leaves open, read every way (issue 12).

Three kinds: a Σ whose index is the line's own element with a later factor using it (inside
the sum, or the line's x_i?), braces around a sum next to a factor (braces do not print: the
braces' grouping, or the line as printed?), and \\frac{\\partial}{\\partial x_i} followed by a
group and more factors (the group alone, or the whole product?).  Each reading is checked; the
line holds only if every reading holds, is refuted only if every reading is refuted, and is
otherwise not decided, with the readings named and which of them holds.  Each kind: a right line
(not decided, both readings named; or holds under both), a wrong line (refuted under both), in
the library and through the command line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bnderive.cli import main
from bnderive.core.spec import Mode
from bnderive.read.documents import load_document
from bnderive.read.latex_reader import parse_equation_line
from bnderive.read.latex_results import LatexError
from bnderive.verify.check import check_forms
from bnderive.verify.every_m import general_check
from bnderive.verify.exact import check_exact_mode
from bnderive.verify.verdict import Status

#: ∂L/∂x_i with ∂L/∂σ²'s sum written out: Σ_i … (x_i − μ) · \frac{2}{m}(x_i − μ), the sum's
#: index the line's own i.  Right when the sum covers ∂L/∂x̂_i (x_i − μ) only.
SUM_RIGHT = (
    r"\frac{\partial L}{\partial x_i} = \frac{\partial L}{\partial \hat{x}_i}\frac{1}{\sqrt{\sigma^2+\epsilon}}"
    r" - \frac{1}{2}(\sigma^2+\epsilon)^{-3/2}\sum_{i=1}^m \frac{\partial L}{\partial \hat{x}_i}(x_i - \mu)"
    r" \cdot \frac{2}{m}(x_i - \mu) + \frac{\partial L}{\partial \mu}\frac{1}{m}"
)
#: the same with the sign of the σ² path flipped: wrong however the sum is read
SUM_WRONG = SUM_RIGHT.replace(r" - \frac{1}{2}", r" + \frac{1}{2}")
#: ∂L/∂β as printed: Σ g + 2 − 1·2 (right); as the braces group: 2(Σ g + 1) (wrong)
BRACES_RIGHT = r"\frac{\partial L}{\partial \beta} = {\sum_{i=1}^m \frac{\partial L}{\partial y_i} + 2 - 1} \cdot 2"
BRACES_WRONG = BRACES_RIGHT.replace(r"\cdot 2", r"\cdot 3")
#: the quotient rule's numerator, f'g with ∂/∂x_i (x_i − μ) s: right when the operator applies
#: to the group alone (the other reading adds (x_i − μ)∂s/∂x_i)
OPERATOR_RIGHT = (
    r"\frac{\partial \hat{x}_i}{\partial x_i} = \frac{1}{\sigma^2+\epsilon}\left["
    r"\frac{\partial}{\partial x_i} (x_i-\mu)\sqrt{\sigma^2+\epsilon} - (x_i - \mu)"
    r"\frac{\partial}{\partial x_i} \sqrt{\sigma^2+\epsilon} \right]"
)
OPERATOR_WRONG = OPERATOR_RIGHT.replace(r"\epsilon} - (x_i", r"\epsilon} + (x_i")
#: ∂/∂x_i (x̂_i) γ: the same under both readings (γ does not depend on x_i)
OPERATOR_BOTH = (
    r"\frac{\partial y_i}{\partial x_i} = \frac{\partial}{\partial x_i}(\hat{x}_i) \gamma"
)

KINDS = [
    ("sum", SUM_RIGHT, SUM_WRONG, "inside the sum or the line's i", "the sum covers"),
    ("braces", BRACES_RIGHT, BRACES_WRONG, "braces do not print", "as printed"),
    ("operator", OPERATOR_RIGHT, OPERATOR_WRONG, "the group alone or", "applies to"),
]


def post(tmp_path: Path, *rows: str, name: str = "post.md") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(f"$$\n{row}\n$$\n" for row in rows), encoding="utf-8")
    return path


def line_status(form, verdicts) -> dict[int, Status]:
    """Each line's verdict over the methods run (its own, not its steps)."""
    found: dict[int, set[Status]] = {}
    for v in verdicts:
        if v.follows is None and v.source_line is not None:
            found.setdefault(v.source_line, set()).add(v.status)
    out = {}
    for line, statuses in found.items():
        for status in (Status.REFUTED, Status.UNDECIDED, Status.HOLDS):
            if status in statuses:
                out[line] = status
                break
    return out


def run(form) -> list:
    return check_exact_mode(form, Mode.PER_ACTIVATION, [3, 4]) + general_check(form)


@pytest.mark.parametrize(("kind", "right", "wrong", "question", "label"), KINDS)
def test_each_reading_is_checked(tmp_path, kind, right, wrong, question, label):
    """A right line that holds under one reading only is not decided, the readings named with
    which holds; a wrong line refuted under every reading is refuted."""
    form = load_document(post(tmp_path, right, wrong))
    assert [line.status for line in form.lines] == ["checked", "checked"]
    assert len(form.readings) == 2  # one member each, read every way
    got = line_status(form, run(form))
    assert got == {2: Status.UNDECIDED, 6: Status.REFUTED}
    undecided = [v for v in check_exact_mode(form, Mode.PER_ACTIVATION, [3]) if v.source_line == 2]
    detail = undecided[0].detail
    assert question in detail and "holds if" in detail and "is refuted if" in detail, detail
    assert label in detail
    refuted = [v for v in check_exact_mode(form, Mode.PER_ACTIVATION, [3]) if v.source_line == 6]
    assert (
        refuted[0].status is Status.REFUTED and "refuted under every reading" in refuted[0].detail
    )
    assert refuted[0].counterexample is not None


def test_a_line_that_holds_under_every_reading_holds_and_says_so(tmp_path):
    form = load_document(post(tmp_path, OPERATOR_BOTH))
    verdicts = run(form)
    assert line_status(form, verdicts) == {2: Status.HOLDS}
    exact = next(v for v in verdicts if v.method == "exact")
    assert "every reading holds" in exact.detail and "applies to" in exact.detail


def test_readings_that_say_the_same_are_one_line_with_a_note(tmp_path):
    # {Σ g − 0}·1: as printed or grouped, the same value
    text = r"\frac{\partial L}{\partial \beta} = {\sum_{i=1}^m \frac{\partial L}{\partial y_i} - 0} \cdot 1"
    form = load_document(post(tmp_path, text))
    assert not form.readings
    assert line_status(form, run(form)) == {2: Status.HOLDS}
    assert any("read each way, the line says the same" in n for n in form.lines[0].notes)


def test_only_the_readings_verdict_is_reported(tmp_path):
    """Every method's verdicts on the readings come out as one verdict per line: no reading is
    a line of its own in the table, the JSON, or the exit code."""
    form = load_document(post(tmp_path, SUM_RIGHT))
    result = check_forms([form], methods=("exact", "general"))
    assert [line.line for line in result.lines] == [2]
    assert result.lines[0].status is Status.UNDECIDED and result.exit_code == 3
    numbers = {v.equation for v in result.verdicts}
    assert numbers == {form.readings[0].equations[0]}


def test_the_command_line_names_the_readings(tmp_path):
    path = post(tmp_path, SUM_RIGHT, SUM_WRONG)
    result = CliRunner().invoke(main, ["check", "--method", "exact", str(path)])
    assert result.exit_code == 1, result.output  # the wrong line is refuted
    assert "not decided" in result.output and "holds if the sum covers" in result.output
    assert "is read 4 ways" in result.output
    right = post(tmp_path, SUM_RIGHT, name="right.md")
    result = CliRunner().invoke(main, ["check", "--method", "exact", "--strict", str(right)])
    assert result.exit_code == 3, result.output  # not decided: never "holds"
    both = post(tmp_path, OPERATOR_BOTH, name="both.md")
    result = CliRunner().invoke(main, ["check", "--method", "exact", str(both)])
    assert result.exit_code == 0, result.output
    assert "holds under each of its 2 readings" in result.output


def test_the_json_has_one_verdict_per_line(tmp_path):
    path = post(tmp_path, BRACES_RIGHT)
    result = CliRunner().invoke(main, ["check", "--method", "exact", "--json", str(path)])
    data = json.loads(result.output)
    assert {v["status"] for v in data["verdicts"]} == {"undecided"}
    assert all("as printed" in v["detail"] for v in data["verdicts"])


def test_several_open_scopes_are_read_in_every_combination_up_to_a_bound():
    """Two open sums on a line are four readings (each member's value under each); a line with
    more readings than bnderive checks (three sums: eight) is not read, with the question."""
    open_sum = r"\sum_{i=1}^m g_i (x_i - \mu)"
    read = parse_equation_line(rf"\frac{{\partial L}}{{\partial x_i}} = {open_sum} + {open_sum}")
    (ways,) = [r for r in read.readings if r is not None]
    assert len(ways.values) == 4 and len(set(ways.values)) == 3  # Σ·(…) + Σ(…) twice alike
    assert all("; " in label for label in ways.labels)  # each names both sums' readings
    with pytest.raises(LatexError, match="inside the sum or the line's i"):
        parse_equation_line(
            rf"\frac{{\partial L}}{{\partial x_i}} = {open_sum} + {open_sum} + {open_sum}"
        )


def test_a_line_whose_readings_differ_in_kind_is_not_read():
    # Σ_i {g_i − μ} x_i for ∂L/∂β: as printed the x_i is outside the sum (a vector): the
    # readings are not the same kind of line, so it is not read, with the question
    with pytest.raises(LatexError, match="braces do not print"):
        parse_equation_line(r"\frac{\partial L}{\partial \beta} = \sum_i {g_i - \mu} x_i")


def test_parse_shows_the_value_of_each_reading(tmp_path):
    path = post(tmp_path, BRACES_RIGHT)
    result = CliRunner().invoke(main, ["parse", str(path)])
    assert result.exit_code == 0, result.output
    assert "the right side, each reading:" in result.output
    assert "(1) 2·Σₖ(gₖ) + 2" in result.output and "(2) Σₖ(gₖ)" in result.output


@pytest.mark.parametrize(("kind", "right", "wrong", "question", "label"), KINDS)
def test_the_command_line_on_each_kind(tmp_path, kind, right, wrong, question, label):
    """Through ``bnderive check``: the right line alone is not decided (exit 3, with or without
    --strict), with its readings; the wrong line alone is refuted (exit 1)."""
    path = post(tmp_path, right, name="right.md")
    result = CliRunner().invoke(main, ["check", "--method", "exact", "--strict", str(path)])
    assert result.exit_code == 3, result.output
    assert question in result.output and "holds if" in result.output and label in result.output
    path = post(tmp_path, wrong, name="wrong.md")
    result = CliRunner().invoke(main, ["check", "--method", "exact", str(path)])
    assert result.exit_code == 1, result.output
    assert "refuted" in result.output
