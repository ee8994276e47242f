"""check-impl's own ε, its CLI and the naming of a mistake: the mutants no test killed.

``tools/mutate.py`` was run on the parts of check-impl that the comparison's run (2026-12-02,
docs/soundness.md) left out; every test here kills a mutant that survived the check-impl tests
of the time, and each says which.  Scores (killed of the mutants run, before → after): the own
ε, ``takes_eps`` and ``_check_section`` of usercode/check_impl.py 158 → 199 of 236;
cli/check_impl.py 22 of 101 → 99 of 123; verify/diagnose.py 204 → 265 of 407.  The survivors
that are equivalent or unreached, and the few left, are listed in docs/soundness.md
("check-impl's own ε, its CLI and the naming of a mistake").
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from bnderive.cli import main

IMPLS = Path(__file__).parent / "impls"
REAL = Path(__file__).parent / "impls_real"
ENV = {"COLUMNS": "200", "FORCE_COLOR": None, "TERM": "dumb", "NO_COLOR": "1"}


def run(*args: str):
    return CliRunner().invoke(main, ["check-impl", *args], env=ENV)


def rows(result) -> dict[tuple[str, str, str], str]:
    payload = json.loads(result.output)
    return {(v["form"], v["section"], v["quantity"]): v["status"] for v in payload["verdicts"]}


# -- takes_eps: code given an ε is never excused as code that fixes its own -----------------------
def test_a_forward_that_takes_eps_and_ignores_it_is_refuted_not_excused():
    """batchnorm_forward(x, gamma, beta, eps) normalizing with a literal 1e-5 is BatchNorm only
    at 1e-5: refuted at the ε passed.  Killed: ``if "eps" in calls.forward_args: return True``
    deleted (and ``in`` → ``not in``), which took it for code that takes no ε, checked it again
    at its own 1e-5 and said it holds (exit 0)."""
    result = run(str(IMPLS / "graph_walk_eps_ignored.py"), "--train", "--json")
    assert result.exit_code == 1, result.output
    found = rows(result)
    assert found[("batchnorm_forward", "per-activation training", "out")] == "refuted"
    assert found[("batchnorm_backward", "per-activation training", "dx")] == "refuted"
    notes = json.loads(result.output)["notes"]
    assert not any("takes no ε" in n for n in notes)


STAGED = IMPLS / "cs231n_staged.py"


def staged(tmp_path: Path, name: str, *edits: tuple[str, str]) -> Path:
    """tests/impls/cs231n_staged.py (a right CS231n pair) with ``edits`` made, each one a
    (text, replacement) that must be found."""
    text = STAGED.read_text(encoding="utf-8")
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


#: The CS231n forward's ε read from bn_param and its two uses (training, eval).
READ = 'eps = bn_param.get("eps", 1e-5)'
USES = (("np.sqrt(var + eps)", "np.sqrt(var + 1e-5)"),
        ("np.sqrt(running_var + eps)", "np.sqrt(running_var + 1e-5)"))  # fmt: skip


def test_a_forward_that_reads_bn_param_eps_by_subscript_and_ignores_it_is_not_excused(tmp_path):
    """``eps = bn_param["eps"]``, then a literal 1e-5: given an ε, so refuted at the ε passed.
    Killed: takes_eps's subscript test deleted, negated (``in`` → ``not in``), which took the
    forward for one that reads no ε and excused it (holds at its own 1e-5, exit 0)."""
    path = staged(tmp_path, "subscript_ignored.py", (READ, 'eps = bn_param["eps"]'), *USES)
    result = run(str(path), "--json")
    assert result.exit_code == 1, result.output
    found = rows(result)
    assert found[("batchnorm_forward", "per-activation training", "out")] == "refuted"
    assert found[("batchnorm_forward", "per-activation eval", "out")] == "refuted"
    assert not any("takes no ε" in n for n in json.loads(result.output)["notes"])


def test_a_forward_whose_bn_param_holds_no_eps_it_reads_is_checked_at_its_own(tmp_path):
    """A bn_param forward that reads mode and momentum (``bn_param["mode"]``, ``.get``) but no
    ε, and normalizes with a local 1e-5: it takes no ε, so it is BatchNorm at 1e-5 and holds.
    Killed: takes_eps's last ``return False`` made True, its subscript or ``.get`` test forced
    true or widened (``and`` → ``or``), ``f is None`` negated: each said it takes an ε and
    refuted a right forward."""
    path = staged(tmp_path, "no_eps_read.py", (READ, "eps = 1e-5"))
    result = run(str(path), "--json")
    assert result.exit_code == 0, result.output
    notes = json.loads(result.output)["notes"]
    assert any(n.startswith("batchnorm_forward takes no ε (its forward has no eps parameter and "
                            "reads no eps from bn_param): it normalizes with ε = 1e-05, found "
                            "exactly") for n in notes), notes  # fmt: skip


def test_a_forward_bound_by_assignment_is_taken_to_take_its_eps(tmp_path):
    """``batchnorm_forward = _forward``: no ``def`` of that name to read, so takes_eps cannot
    tell whether bn_param's ε is read and says it is (the file is then never excused); this one
    ignores it and is refuted.  Killed: ``if f is None: return True`` made False (excused: it
    held at its own 1e-5) or deleted (a crash)."""
    path = staged(
        tmp_path, "alias.py",
        ("def batchnorm_forward(x, gamma, beta, bn_param):", "def _forward(x, gamma, beta, bn_param):"),
        (READ, 'eps = bn_param["eps"]'), *USES,
    )  # fmt: skip
    path.write_text(path.read_text(encoding="utf-8") + "\n\nbatchnorm_forward = _forward\n")
    result = run(str(path), "--json")
    assert result.exit_code == 1, result.output
    assert rows(result)[("batchnorm_forward", "per-activation training", "out")] == "refuted"
    assert not any("takes no ε" in n for n in json.loads(result.output)["notes"])


# -- the file's own ε: what is said of it must be what was checked ----------------------------------
#: A variance floored at 1e-3 before its ε: BatchNorm at 1e-5 wherever σ² ≥ 1e-3 (every default
#: shape, whose x are integers), not where σ² is a few ε.
CLAMP = ("std = np.sqrt(var + eps)", "std = np.sqrt(np.maximum(var, 1e-3) + eps)")


def test_code_without_eps_that_is_not_batchnorm_at_the_eps_it_fixes_is_not_excused(tmp_path):
    """A forward with a local ε = 1e-5 and a floored variance: 1e-5 is found from its output, and
    the check again at 1e-5 (σ² of a few ε at one shape) refutes it, so the section stays at
    bnderive's ε, refuted, with no note that it takes no ε and no diagnosis that it is BatchNorm
    at 1e-5.  Killed: ``_holds`` widened (``and`` → ``or``, ``==`` → ``!=``) and
    ``if _holds(again, …)`` forced true, which returned the check at 1e-5 as the section's
    (with the note "it normalizes with ε = 1e-05, found exactly"); and, in ``_own_eps``, ``if out
    is None or out.status is not Status.HOLDS: return`` deleted or made ``and``."""
    path = staged(tmp_path, "floored_own.py", (READ, "eps = 1e-5"), CLAMP)
    result = run(str(path), "--train", "--json")
    assert result.exit_code == 1, result.output
    payload = json.loads(result.output)
    assert rows(result)[("batchnorm_forward", "per-activation training", "out")] == "refuted"
    assert not any("takes no ε" in n for n in payload["notes"])
    said = [line for d in payload["diagnoses"] for line in d["lines"]]
    assert not any("the forward is BatchNorm" in line for line in said), said


def test_code_that_ignores_its_eps_and_is_not_batchnorm_at_its_own_gets_no_fixed_eps_story(
    tmp_path,
):
    """The same floored variance in a forward that reads bn_param's ε and ignores it: refuted,
    and not told that it is BatchNorm at a fixed 1e-5 (it is not where σ² is a few ε).  Before,
    ``_own_eps`` checked its story on inputs with σ² of a few units, where the floor never acts,
    and said it."""
    path = staged(
        tmp_path, "floored_ignored.py",
        ("std = np.sqrt(var + eps)", "std = np.sqrt(np.maximum(var, 1e-3) + 1e-5)"),
    )  # fmt: skip
    result = run(str(path), "--train", "--json")
    assert result.exit_code == 1, result.output
    said = [line for d in json.loads(result.output)["diagnoses"] for line in d["lines"]]
    assert not any("ε is fixed at" in line or "your own forward" in line for line in said), said


def test_code_whose_eps_is_subtracted_is_refuted_not_a_crash(tmp_path):
    """√(σ² − 1e-5) in code that takes no ε: its output gives ε' = −1e-5, which is no ε (the
    check at a negative ε would take √ε); refuted, exit 1.  Killed: ``value < 0`` dropped from
    detect_eps's last line (``or`` → ``and``, ``0`` → ``-1``): a ValueError, no verdict."""
    path = staged(
        tmp_path, "minus_eps.py", (READ, "eps = 1e-5"),
        ("std = np.sqrt(var + eps)", "std = np.sqrt(var - eps)"),
    )  # fmt: skip
    result = run(str(path), "--train", "--json")
    assert result.exit_code == 1, result.output
    assert rows(result)[("batchnorm_forward", "per-activation training", "out")] == "refuted"


def test_a_forward_that_returns_beta_alone_is_refuted_not_a_crash(tmp_path):
    """An unfinished forward, out = 0 + β: out − β is 0 where x ≠ μ, so no ε can be read from
    it.  Killed: detect_eps's ``if y == 0: return None`` deleted (or 0 → ±1): a
    ZeroDivisionError, no verdict."""
    path = staged(
        tmp_path, "beta_only.py",
        ("out = gamma * xhat + beta\n        cache", "out = np.zeros_like(x) + beta\n        cache"),
    )  # fmt: skip
    result = run(str(path), "--train", "--json")
    assert result.exit_code == 1, result.output
    assert rows(result)[("batchnorm_forward", "per-activation training", "out")] == "refuted"
    assert rows(result)[("batchnorm_backward", "per-activation training", "dx")] == "holds"


def test_code_without_one_eps_is_not_excused_at_either(tmp_path):
    """A local ε that is 1e-3 for an even batch and 1e-5 for an odd one (a probe of the rule that
    code which takes no ε must normalize with one ε): read back as 1e-3 at the even default
    shape and 1e-5 at the odd ones, so no one ε, and the forward stays refuted.  The shapes of
    the check at a code's own ε (M = 4, 6 and 4×2) are all even: excused at 1e-3, this code
    would hold everywhere.  Killed: ``_one_eps``'s ``if len(found) != 1 or None in found:
    return None`` deleted or made ``and`` (which ε a set of two gives first is CPython's set
    order: 1e-3 here)."""
    path = staged(tmp_path, "parity_eps.py", (READ, "eps = 1e-3 if x.shape[0] % 2 == 0 else 1e-5"))
    result = run(str(path), "--train", "--json")
    assert result.exit_code == 1, result.output
    assert rows(result)[("batchnorm_forward", "per-activation training", "out")] == "refuted"
    assert not any("takes no ε" in n for n in json.loads(result.output)["notes"])


def test_code_without_eps_at_eps_zero_says_so_in_training_and_eval(tmp_path):
    """A local ε = 0: BatchNorm at ε = 0 in training, and its eval mode checked at that ε.  The
    training note says the ε was found from the output, with what ε = 0 means; the eval note
    that it is the training forward's.  Killed: ``if eps == 0`` of ``_fixed_note`` made 1 or −1
    (the meaning of ε = 0 lost) and ``if not inherited`` forced true or negated (one section's
    note said of the other)."""
    path = staged(tmp_path, "eps_zero.py", (READ, "eps = 0.0"))
    result = run(str(path), "--json")
    assert result.exit_code == 0, result.output
    notes = json.loads(result.output)["notes"]
    head = "batchnorm_forward takes no ε (its forward has no eps parameter and reads no eps from "
    head += "bn_param): it normalizes with ε = 0 (ε = 0, or one below float64's resolution: a "
    head += "feature constant over the batch divides by zero)"
    found = [n for n in notes if n.startswith(head + ", found exactly from its output")]
    inherited = [n for n in notes if n.startswith(head + " where it was first checked (training)")]
    assert len(found) == 1 and len(inherited) == 1, notes
    assert notes.index(found[0]) < notes.index(inherited[0])  # training's section comes first
    assert not any("flattens" in n for n in notes)  # a layout note only for a flattening layer


def test_an_eval_mode_with_its_own_eps_is_told_which_without_the_callers_eps(tmp_path):
    """Training at a local 1e-5, eval at a literal 1e-6: the eval out is refuted, and its
    diagnosis names both ε, says where the forward is BatchNorm at 1e-6 (the shapes, without
    the method's word), and does not add "wrong only where the caller's ε is not that" (the code
    takes no ε).  Killed: that tail's ``is not`` → ``is``, the scope's ``rsplit(' ', 1)[0]``
    made ``[0]`` of no split."""
    path = staged(
        tmp_path, "eval_eps.py", (READ, "eps = 1e-5"),
        ("np.sqrt(running_var + eps)", "np.sqrt(running_var + 1e-6)"),
    )  # fmt: skip
    result = run(str(path), "--json")
    assert result.exit_code == 1, result.output
    found = rows(result)
    assert found[("batchnorm_forward", "per-activation training", "out")] == "holds"
    assert found[("batchnorm_forward", "per-activation eval", "out")] == "refuted"
    diagnoses = json.loads(result.output)["diagnoses"]
    line = next(d["lines"][0] for d in diagnoses if d["section"] == "per-activation eval")
    assert line == (
        "here it normalizes with ε = 1e-06, its training forward with ε = 1e-05 (the code takes "
        "no ε; every mode must use the same one): with ε = 1e-06 the forward is BatchNorm (exact "
        "at 4×1, 6×1, 4×2, inputs where √(σ²+1e-06) is rational)"
    ), line


def test_a_spatial_file_that_keeps_its_layout_gets_no_flattening_note():
    """spatial_batchnorm_* on (N, C, H, W): its running statistics are per channel and compared,
    so no note says they were not.  Killed: the flattening note's ``and`` → ``or`` and
    ``==`` → ``!=`` (said of every SPATIAL section)."""
    result = run(str(IMPLS / "spatial.py"), "--train", "--json")
    assert result.exit_code == 0, result.output
    assert not any("flattens" in n for n in json.loads(result.output)["notes"])


# -- the CLI: what is printed, and the exit code ---------------------------------------------------
def test_an_undecided_file_prints_its_open_and_numeric_rows_and_exits_3():
    """float32 arithmetic inside a float64 result: dx undecided, dγ and dβ numeric holds.  The
    text output (every other exit-3 test reads --json) names the open row with "?", each
    numeric row with "~", and totals them.  Killed: the style table's key 3 changed (a
    KeyError at exit 3), the "~" and "?" branches deleted, forced or negated, the counts
    (``sum(1 …)``, ``is`` → ``is not``) and the statuses they count swapped."""
    result = run(str(IMPLS / "float32_inside.py"), "--train")
    assert result.exit_code == 3, result.output
    lines = result.output.splitlines()
    assert sum(line.startswith("? bn_backward: dx float64 differs") for line in lines) == 1
    assert sum(line.startswith("~ bn_backward: dgamma float32 agrees") for line in lines) == 1
    assert sum(line.startswith("~ bn_backward: dbeta float32 agrees") for line in lines) == 1
    assert not any(line.startswith(("✗", "? bn_backward: dgamma", "~ bn_backward: dx"))
                   for line in lines)  # fmt: skip
    assert lines[-1].startswith("? undecided: 2 hold, 1 undecided in "), lines[-1]


def test_a_refuted_file_totals_its_rows():
    """wrong_nogamma.py in both modes: eleven rows hold, dx is refuted.  Killed: the totals'
    statuses swapped (``Status.HOLDS`` / ``Status.REFUTED`` / ``Status.UNDECIDED``), the "?"
    line's ``elif v.status is Status.UNDECIDED`` forced true (every exact row listed as open)."""
    result = run(str(IMPLS / "wrong_nogamma.py"))
    assert result.exit_code == 1, result.output
    last = result.output.splitlines()[-1]
    assert last.startswith("✗ refuted: 11 hold, 1 refuted in "), last
    # under the table: the numeric rows (the running statistics) with "~", no open row
    lines = result.output.splitlines()
    assert not any(line.startswith("? ") for line in lines)
    assert [line.split(" (")[0] for line in lines if line.startswith("~ ")] == [
        "~ batchnorm_forward: running_mean",
        "~ batchnorm_forward: running_var",
    ]


def test_eval_and_train_together_are_refused():
    """--eval --train: each checks one mode, so both at once is an error (exit 2), not one of
    them silently.  Killed (with ``--reimport``: the command's body): the check deleted, forced
    or made ``or``."""
    result = run(str(IMPLS / "wrong_nogamma.py"), "--eval", "--train")
    assert result.exit_code == 2, result.output
    assert "--eval and --train each check one mode only" in result.output
    assert "Traceback" not in result.output


def test_one_file_with_csv_is_checked_as_a_folder(tmp_path):
    """--csv asks for the folder summary even for one file: the summary table and the CSV row,
    with the file's exit code.  Killed (``--reimport``): ``csv_path is not None`` negated or
    the ``or`` made ``and``."""
    out = tmp_path / "one.csv"
    result = run(str(IMPLS / "wrong_nogamma.py"), "--csv", str(out))
    assert result.exit_code == 1, result.output
    assert "1 files: 0 hold, 1 refuted, 0 undecided, 0 could not be checked" in result.output
    assert out.read_text(encoding="utf-8").splitlines()[1].split(",")[1:4] == ["refuted", "11", "1"]


# -- localise: the stage of a wrong dx that no known mistake names ---------------------------------
def test_localise_names_exactly_the_terms_the_residual_has():
    """Each term alone (coefficient 1, and 0 for the others) and all three: the stages named are
    exactly those.  Killed: ``if c != 0`` made ``c != ±1`` or forced true (the path through μ
    named for a residual without it, or dropped from one with it): the test of 2026-12-01 read
    only the text between the first two "σ²"."""
    from fractions import Fraction as F

    from bnderive.verify.diagnose import localise

    g = [F(v) for v in (3, -1, 2, 5, -4)]
    u = [F(v) for v in (2, -3, 1, 4, -4)]
    direct = "the direct term dx̂_i/√(σ²+ε) (the error is proportional to dy_i)"
    var = "the path through σ², dσ²·2(x_i−μ)/M (proportional to x_i − μ)"
    mean = "the path through μ, dμ/M (the same for every element)"
    assert localise(g, g, u) == f"the error lies in {direct}"
    assert localise(u, g, u) == f"the error lies in {var}"
    assert localise([F(1)] * 5, g, u) == f"the error lies in {mean}"
    assert localise([F(-1)] * 5, g, u) == f"the error lies in {mean}"
    both = [a + b for a, b in zip(g, u, strict=True)]
    assert localise(both, g, u) == f"the error lies in {direct}; and in {var}"
    every = [a + b + 1 for a, b in zip(g, u, strict=True)]
    assert localise(every, g, u) == f"the error lies in {direct}; and in {var}; and in {mean}"


# -- candidate_values: the known mistakes a float16 result cannot be told from ------------------------
#: A right functional backward computed in float16 (tests/test_impl_tolerance.py's HALVED16,
#: mended): its dx and dγ agree with the truth within float16 rounding, and so could a known
#: mistake of the corpus.
RIGHT16 = """
import numpy as np


def bn_backward(x, gamma, beta, dout, eps):
    x, dout, gamma = x.astype(np.float16), dout.astype(np.float16), gamma.astype(np.float16)
    m = np.float16(x.shape[0])
    inv = np.float16(1) / np.sqrt(x.var(0) + np.float16(eps))
    xhat = (x - x.mean(0)) * inv
    dgamma, dbeta = (dout * xhat).sum(0), dout.sum(0)
    dx = gamma * inv / m * (m * dout - dbeta - xhat * dgamma)
    return dx, dgamma, dbeta
"""


def test_a_float16_dgamma_near_a_mistake_of_the_corpus_is_undecided_and_names_it(tmp_path):
    """dγ in float16 is within twice its rounding of "dγ = Σ dy (x̂ forgotten)", a mutant of the
    corpus, and dx of "the path through σ² dropped": both undecided, naming them; dβ holds.
    Killed: ``candidates(quantity, 1, …)`` in ``candidate_values`` given order 0, 2 or 100 (no
    mutant of the corpus a candidate: dγ held), its ``if value is not None`` deleted or
    negated (every candidate dropped: dγ held)."""
    path = tmp_path / "right16.py"
    path.write_text(RIGHT16, encoding="utf-8")
    result = run(str(path), "--json")
    assert result.exit_code == 3, result.output
    verdicts = {v["quantity"]: v for v in json.loads(result.output)["verdicts"]}
    assert verdicts["dgamma"]["status"] == "undecided"
    assert "(dgamma-without-xhat)" in verdicts["dgamma"]["detail"]
    assert verdicts["dx"]["status"] == "undecided"
    assert "(variance-path-dropped)" in verdicts["dx"]["detail"]
    assert verdicts["dbeta"]["status"] == "holds"


def test_eval_checks_the_eval_sections_only():
    """--eval: every row is of an eval section.  Killed (``--reimport``): ``"training": False if
    eval_mode`` made True (--eval checked training)."""
    result = run(str(IMPLS / "wrong_nogamma.py"), "--eval", "--json")
    sections = {v["section"] for v in json.loads(result.output)["verdicts"]}
    assert sections == {"per-activation eval"}, sections


def test_two_files_are_checked_as_a_folder(tmp_path):
    """Two files: a summary row each (folder mode), the worst exit code.  Killed
    (``--reimport``): ``len(files) > 1`` made ``> 2`` or ``> 100`` (the second file dropped)."""
    result = run(str(IMPLS / "wrong_nogamma.py"), str(IMPLS / "spatial.py"), "--train")
    assert result.exit_code == 1, result.output
    assert "2 files: 1 hold, 1 refuted, 0 undecided, 0 could not be checked" in result.output


def test_check_impl_without_a_file_is_a_usage_error():
    """No FILE: click's usage error, exit 2.  Killed (``--reimport``): the argument's
    ``required=True`` made False (an IndexError on ``files[0]``)."""
    result = run()
    assert result.exit_code == 2
    assert "Missing argument" in result.output


def test_the_folder_summary_names_a_files_error_its_refuted_rows_and_its_progress():
    """Three files: one that cannot import (its row's last column: the error's first line, cut
    at 120 characters), one refuted with no known mistake (its refuted row named instead), one
    with a known mistake; a progress line per file on stderr.  Killed: the error column's
    ``if r.report is None and r.error`` deleted, negated or made ``or``, its line index and
    cut changed (``[0]`` → ``[1]``, 120 → 12000), the refuted rows' ``or`` made ``and``, the
    progress lines' ``if not as_json`` deleted."""
    files = [IMPLS / name for name in ("bad_import.py", "wrong_dmu_tripled.py", "wrong_nogamma.py")]
    result = run(*map(str, files), "--train")
    assert result.exit_code == 1, result.output
    table = result.stdout  # the summary; the progress lines go to stderr
    assert (
        "bad_import.py imports cs231n_layers_that_do_not_exist, which cannot be found here" in table
    )
    assert "put that module beside the file" not in table  # the error's first line, cut at 120
    row = next(
        line for line in table.splitlines() if "wrong_dmu_tripled.py" in line and "refuted" in line
    )
    assert row.rstrip().endswith("bn_backward.dx"), row
    assert "γ missing (gamma-missing)" in table
    assert "3 files: 0 hold, 2 refuted, 0 undecided, 1 could not be checked" in table
    assert "[3/3]" in result.stderr


def test_an_eval_mode_backward_is_diagnosed_at_the_running_statistics(tmp_path):
    """eval_backward.py with γ dropped from its eval-mode dx: named "γ missing" by the corpus's
    eval-mode mutant, evaluated at the case's running statistics.  Killed: diagnose.py's
    ``if "mu" in point: return point`` deleted (every candidate evaluated at the batch's
    statistics instead: nothing named)."""
    text = (IMPLS / "eval_backward.py").read_text(encoding="utf-8")
    path = tmp_path / "eval_nogamma.py"
    path.write_text(text.replace("return gamma * inv * dout,", "return inv * dout,"), "utf-8")
    result = run(str(path), "--eval", "--json")
    assert result.exit_code == 1, result.output
    (found,) = json.loads(result.output)["diagnoses"]
    assert (found["function"], found["quantity"], found["section"]) == (
        "batchnorm_backward", "dx", "per-activation eval",
    )  # fmt: skip
    assert found["lines"][0].startswith("known mistake: γ missing (gamma-missing); your dx equals")
