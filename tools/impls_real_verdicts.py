"""How check-impl does on tests/impls_real (issue 13): for each file, the overall verdict its
``# expected:`` lines imply (holds, refuted, could not check) against bnderive's, and for the
files with a real mistake whether every refuted row gets a named cause (a diagnosis line: a
known mistake, two at once, the cache order, the file's own ε, the stage of the chain; or a
running-statistics slip named in the row), each row with its own section's diagnosis (an eval
row is "(eval)" in the list).  Run from the repository root:

    python tools/impls_real_verdicts.py [--json OUT]

The default run is what is measured (no options); a file's expectations under a repaired load
("with U+3000 replaced", "with momentum injected") are not.  Slow: every file runs in its child.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from test_impl_corpus import FILES, TAKES_NO_EPS, expectations  # noqa: E402

from bnderive.usercode.check_impl import check_impl  # noqa: E402
from bnderive.usercode.layout import ImplementationError  # noqa: E402

#: Words of a running-statistics row that names its slip.
SLIP_WORDS = ("with that slip", "is ignored", "includes ε", "σ for σ²", "unchanged")


def wanted(path: Path) -> str:
    kinds = set()
    for e in expectations(path):
        if e.variant not in ("", "[4d]", "[nhwc]"):
            continue
        if e.condition and not ("stub package" in e.condition or "numpy injected" in e.condition):
            continue
        kind = e.kind
        if e.eps_fixed and path.name not in TAKES_NO_EPS and kind == "holds":
            kind = "refuted"  # the ε it is given is ignored
        kinds.add(kind)
    if kinds & {"refuted", "self-consistent"}:
        return "refuted"
    if kinds & {"raises", "returns-none", "parse-fails"} or kinds == {"import-fails"}:
        return "could not check"
    return "holds"


def measure(path: Path) -> dict:
    try:
        report = check_impl(path, timeout=60)
    except ImplementationError:
        return {"file": path.name, "want": wanted(path), "got": "could not check", "unnamed": []}
    unnamed = [
        f"{v.form}.{v.quantity}" + (" (eval)" if report.sections[k].endswith(" eval") else "")
        for k, v in enumerate(report.verdicts)
        if v.status.value == "refuted"
        and not report.diagnosis(k)
        and not any(w in v.detail for w in SLIP_WORDS)
    ]
    return {"file": path.name, "want": wanted(path), "got": report.status, "unnamed": unnamed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=None, help="write the rows as JSON")
    args = parser.parse_args()
    rows = []
    for path in FILES:
        row = measure(path)
        rows.append(row)
        print(f"{row['file']:36} want {row['want']:16} got {row['got']:16} "
              f"unnamed {', '.join(row['unnamed']) or '-'}", flush=True)  # fmt: skip
    right = sum(r["want"] == r["got"] for r in rows)
    wrong = [r for r in rows if r["want"] == "refuted"]
    named = [r for r in wrong if r["got"] == "refuted" and not r["unnamed"]]
    print(f"\nright overall verdict: {right} of {len(rows)} files; files with a real mistake: "
          f"{len(wrong)}, every refuted row with a named cause: {len(named)}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
