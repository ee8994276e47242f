"""check-impl on a real-world-style corpus (issue 13): implementations written by the project in
the layouts and with the mistakes found in public code (tests/impls_real/SURVEY.md names the
source of each style; no third-party code is copied), each with ``# expected:`` lines.

A catalogue: every ``tests/impls_real/*.py`` is a case, so adding a file adds its tests.

- The expectations are confirmed independently of bnderive by ``tests/impls_real/oracle.py``, a
  plain float64 checker (closed-form truth, finite differences of a separately written forward,
  each named mistake modelled as its own mutant).
- bnderive's verdict on each expectation it checks must agree: holds where the oracle says holds,
  refuted where it says refuted (a self-consistent backward of a wrong forward is refuted too, and
  a code that ignores the ε it is given, "holds (eps fixed at E)", is refuted at bnderive's ε),
  a failure row or a file-level error where the code raises, returns None or cannot be loaded.
  Never the contrary.  What bnderive cannot check yet (a layout it does not read) is listed in
  GAPS, exactly: a gap that opens or closes fails the test, so the table stays true.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from bnderive.usercode.check_impl import check_impl
from bnderive.usercode.layout import ImplementationError

REAL = Path(__file__).parent / "impls_real"
FILES = sorted(p for p in REAL.glob("*.py") if p.name != "oracle.py")


@dataclass(frozen=True)
class Expectation:
    text: str
    condition: str  # "with …:" prefix, "" when none
    function: str
    variant: str  # "[4d]", "[nhwc]", … or ""
    quantities: tuple[str, ...]
    kind: str  # holds, refuted, self-consistent, raises, returns-none, import-fails, parse-fails
    eps_fixed: bool


KINDS = (
    (r" holds\b", "holds"),
    (r" refuted\b", "refuted"),
    (r" self-consistent\b", "self-consistent"),
    (r" raises\b", "raises"),
    (r" returns None\b", "returns-none"),
)


def expectations(path: Path) -> list[Expectation]:
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.startswith("# expected:"):
            continue
        text = line.split("# expected:", 1)[1].strip()
        condition, body = "", text
        if body.startswith("with ") and ":" in body:
            condition, body = (part.strip() for part in body.split(":", 1))
        if body.startswith(("import fails", "module imports")):
            out.append(Expectation(text, condition, "", "", (), "import-fails", False))
            continue
        if body.startswith("file does not parse"):
            out.append(Expectation(text, condition, "", "", (), "parse-fails", False))
            continue
        kind, at = next(((k, m.start()) for p, k in KINDS if (m := re.search(p, body))), ("?", 0))
        head = body[:at].split(None, 1)
        function, rest = head[0], head[1] if len(head) > 1 else ""
        variant = ""
        if "[" in function:
            function, variant = function.split("[", 1)
            variant = "[" + variant
        quantities = tuple(q.strip() for q in rest.split(",") if q.strip())
        out.append(
            Expectation(text, condition, function, variant, quantities, kind, "eps fixed" in body)
        )
    return out


# -- the independent oracle ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def oracle():
    spec = importlib.util.spec_from_file_location("corpus_oracle", REAL / "oracle.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_corpus_has_at_least_twenty_implementations():
    assert len(FILES) >= 20
    assert all(expectations(p) for p in FILES), "every file says what is expected of it"
    for p in FILES:
        assert p.read_text(encoding="utf-8", errors="replace").startswith("# style of:"), p.name


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_the_oracle_confirms_every_expectation(path, oracle, capsys):
    confirmed, total = oracle.run_file(str(path))
    printed = capsys.readouterr().out
    assert confirmed == total, printed


# -- bnderive against the expectations ----------------------------------------------------------------
#: What bnderive does not check yet, per file: (function, quantity, section) triples of the
#: expectations without a "with …" condition.  Reason per file in the comment.
GAPS: dict[str, set[str]] = {}  # none: the alt pair is called by name (run.pair_by_name)

#: Files whose code takes no ε (no eps parameter in the constructor or the forward, no eps read
#: from bn_param): BatchNorm at the ε it fixes, so "holds (eps fixed at E)" is holds.  The others
#: with a fixed ε ignore the eps they are given: refuted at bnderive's ε.
TAKES_NO_EPS = {
    "cmu_mytorch.py",  # BatchNorm1d(num_features, alpha): self.eps = 1e-8
    "prml_style.py",  # the literal 1e-8
    "mlfromscratch_style.py",  # BatchNormalization(momentum): self.eps = 0.01
    "pydl_momentum_ignored.py",  # the literal 1e-32
    "dlfs_class.py",  # the literal 10e-7
    "cupy_style_eps_mismatch.py",  # the literals 1e-5 (training) and 10e-7 (inference)
    "hipster_style.py",  # the module constant EPS = 1e-8
}

AGREE = {
    "holds": {"holds"},
    "refuted": {"refuted"},
    "self-consistent": {"refuted"},  # the truth is BN's: a self-consistent backward is wrong
}


def _section(
    function: str, quantity: str, sections: set[str], variant: str = ""
) -> tuple[str, str]:
    """The bnderive row an expectation's quantity is: (section, quantity); a class's 4-D use
    ([4d], [nhwc]) is its SPATIAL section."""
    spatial = function.startswith("spatial") or variant in ("[4d]", "[nhwc]")
    mode = "spatial" if spatial else "per-activation"
    if not any(s.startswith(mode) for s in sections) and sections:
        mode = sorted(sections)[0].split()[0]
    if quantity == "eval_out":
        return f"{mode} eval", "out"
    return f"{mode} training", quantity


def outcome(path: Path) -> tuple[dict[tuple[str, str, str], str], dict[str, str], str | None]:
    """bnderive's rows (function, section, quantity) → status, its failures (function →
    message), and the file-level error."""
    try:
        report = check_impl(path, timeout=60)
    except ImplementationError as exc:
        return {}, {}, str(exc)
    rows = {
        (v.form, section, v.quantity): v.status.value
        for v, section in zip(report.verdicts, report.sections, strict=True)
    }
    failures = {f.function: f.message for f in report.failures}
    NOTES[path.name] = report.notes
    return rows, failures, None


#: The notes of each file's report (filled by ``outcome``).
NOTES: dict[str, list[str]] = {}


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_bnderive_never_contradicts_an_expectation(path):
    rows, failures, error = outcome(path)
    notes = NOTES.get(path.name, [])
    sections = {section for _, section, _ in rows}
    gaps: set[str] = set()
    stubbed = any("replaced by empty stand-ins" in n for n in notes)
    for e in expectations(path):
        if e.variant not in ("", "[4d]", "[nhwc]") or (
            e.condition and not (stubbed and "stub package" in e.condition)
        ):
            continue  # a repaired load or another call of a function: not bnderive's default run
        if e.kind in ("import-fails", "parse-fails"):
            if "np undefined" in e.text and any("numpy was provided" in n for n in notes):
                continue  # a snippet without `import numpy`: bnderive provides np, and says so
            if "ModuleNotFoundError" in e.text and stubbed:
                continue  # an unused missing package: bnderive stands in for it, and says so
            assert error is not None, f"{e.text}: bnderive checked the file anyway"
            continue
        if e.kind in ("raises", "returns-none"):
            assert error is not None or e.function in failures, (
                f"{e.text}: bnderive neither failed the file nor gave {e.function} a failure row"
            )
            continue
        for q in e.quantities:
            section, quantity = _section(e.function, q, sections, e.variant)
            status = rows.get((e.function, section, quantity))
            if status is None:
                if e.function in failures and "shape" in e.text and "shape" in failures[e.function]:
                    continue  # a (D, D) dγ: the failure row names the wrong shape
                gaps.add(f"{e.function}{e.variant} {q}")
                continue
            takes_eps = path.name not in TAKES_NO_EPS
            wanted = AGREE[e.kind] if not (e.eps_fixed and takes_eps) else {"refuted"}
            if e.eps_fixed and quantity in ("dbeta", "running_mean", "running_var"):
                wanted = AGREE[e.kind]  # Σ dout and the running averages do not involve ε
            if e.kind == "refuted" and e.text.endswith("refuted: unchanged"):
                wanted = {"refuted", "not checked"}  # --running auto does not check a no-op
            assert status in wanted, f"{e.text}: bnderive says {status} for {quantity} ({section})"
    assert gaps == GAPS.get(path.name, set())
