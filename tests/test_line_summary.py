"""One row per line (``verify/summary.py``): how the verdicts of every method and mode combine.

The table ``check`` prints, the per-line status of ``--json`` and the reports are built from these
rows; the exit code comes from ``verdict.overall`` alone.  The mutation run of issue 10 item 11
found most of the combination rules unexamined (the CLI tests see them only through whole
tables), so each rule is fixed here on verdicts written by hand: refuted in any mode is refuted,
undecided in any is undecided, a line holds only when nothing refuted it or left it open, a
helper line no method compares is "not checked", and a step follows when one method proves it.
"""

from __future__ import annotations

from bnderive.core.spec import Mode
from bnderive.verify.summary import LineResult, MethodResult, line_results, methods_run, scopes
from bnderive.verify.verdict import Status, Verdict

H, R, U, N = Status.HOLDS, Status.REFUTED, Status.UNDECIDED, Status.UNCHECKED
PA, SP = Mode.PER_ACTIVATION, Mode.SPATIAL


def v(status, method="exact", mode=PA, equation=1, follows=None, **more) -> Verdict:
    scope = more.pop("scope", "M ≤ 6")
    return Verdict(
        "f", "dx[i]", equation, status, method, scope, mode=mode, follows=follows, **more
    )


def test_a_method_combines_its_modes_worst_first():
    assert MethodResult("exact", (v(H), v(H, mode=SP))).status is H
    assert MethodResult("exact", (v(H), v(U, mode=SP))).status is U
    assert MethodResult("exact", (v(U), v(R, mode=SP))).status is R
    assert MethodResult("exact", (v(R), v(U, mode=SP))).status is R
    assert MethodResult("exact", (v(N), v(H, mode=SP))).status is H
    assert MethodResult("exact", (v(N),)).status is N
    assert MethodResult("exact", ()).status is N


def test_a_line_refuted_in_one_mode_only_says_which():
    mixed = MethodResult("exact", (v(H), v(R, mode=SP)))
    assert mixed.mixed and mixed.refuted_in == [SP]
    assert mixed.words() == "✗ refuted (spatial)"
    both = MethodResult("exact", (v(R), v(R, mode=SP)))
    assert not both.mixed and both.words() == "✗ refuted"
    assert not MethodResult("exact", (v(R), v(U, mode=SP))).mixed
    # the every-M proof runs once for both modes: no mode to name
    assert MethodResult("general", (v(R, "general", None),)).refuted_in == []


def test_the_words_of_each_cell():
    cell = {s: MethodResult("exact", (v(s),)) for s in (H, R, U, N)}
    assert [cell[s].words() for s in (H, R, U, N)] == [
        "✓ holds", "✗ refuted", "? undecided", "· not checked",
    ]  # fmt: skip
    assert [cell[s].words(step=True) for s in (H, R, U, N)] == [
        "✓ follows", "✗ does not follow", "? not shown", "·",
    ]  # fmt: skip
    general = {s: MethodResult("general", (v(s, "general", None),)) for s in (H, R, U, N)}
    assert [general[s].words() for s in (H, R, U, N)] == [
        "✓ proved", "✗ refuted", "not proven", "· not checked",
    ]  # fmt: skip


def line(*verdicts: Verdict) -> LineResult:
    (result,) = line_results(verdicts)
    return result


def test_a_line_holds_only_when_every_method_holds():
    assert line(v(H), v(H, "random"), v(H, "general", None)).status is H
    assert line(v(H), v(U, "random")).status is U
    assert line(v(H), v(R, "random"), v(U, "general", None)).status is R
    assert line(v(N), v(N, "random")).status is N  # a helper line: not checked
    assert line(v(N), v(H, "random")).status is H


def test_a_step_follows_when_one_method_proves_it_and_not_when_one_refutes_it():
    assert line(v(H)).step_status is None  # no step
    assert line(v(H), v(H, follows=1)).step_status is H
    assert line(v(H), v(U, "random", follows=1), v(H, "general", None, follows=1)).step_status is H
    assert line(v(H), v(H, follows=1), v(R, "random", follows=1)).step_status is R
    assert line(v(H), v(U, follows=1)).step_status is U
    assert line(v(H), v(N, follows=1)).step_status is N


def test_the_verdict_that_explains_a_status_is_exact_first():
    exact, general, random = v(R), v(R, "general", None), v(R, "random")
    row = line(random, general, exact)
    assert row.first(R) is exact and row.first(H) is None
    row = line(random, general)
    assert row.first(R) is general
    steps = line(v(H), v(R, "random", follows=1), v(R, follows=1))
    assert steps.first_step(R).method == "exact" and steps.first_step(H) is None


def test_rows_are_one_per_line_in_order_with_their_steps():
    first, second = v(H, equation=1), v(R, equation=3, source_line=12)
    step = v(H, equation=3, follows=2, follows_line=11, source_line=12)
    rows = line_results([second, first, step, v(U, "random", equation=3)])
    # the document's order, whichever verdict came first
    assert [(r.equation, r.status) for r in rows] == [(1, H), (3, R)]
    assert rows[1].line == 12 and rows[0].line == 1  # the file's line, else the equation
    assert {r.form for r in rows} == {"f"} and rows[1].quantity == "dx[i]"
    assert list(rows[1].methods) == ["exact", "random"] and list(rows[1].steps) == ["exact"]
    assert rows[1].follows_line == 11
    assert rows[1].verdicts() == [second, v(U, "random", equation=3), step]
    assert methods_run(rows) == ["exact", "random"]
    # a step verdict without the file's line names the equation it follows
    only_step = line_results([v(H, equation=2, follows=1)])
    assert only_step[0].follows_line == 1 and only_step[0].methods == {}
    # a verdict on no numbered equation is row 0
    assert [r.equation for r in line_results([v(H, equation=None)])] == [0]


def test_scopes_say_what_each_method_covered_without_the_steps():
    verdicts = [
        v(H, scope="M ≤ 6 exact"),
        v(H, mode=SP, scope="M ≤ 12 exact"),
        v(H, scope="M ≤ 6 exact", equation=2),
        v(H, "random", scope="M = 4096 randomized"),
        v(H, "general", None, scope="every M"),
        v(H, scope="ignored", follows=1),
    ]
    assert scopes(verdicts) == {
        "exact": ["per-activation M ≤ 6", "spatial M ≤ 12"],
        "random": ["per-activation M = 4096"],
        "general": ["every M"],
    }
