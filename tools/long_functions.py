"""The functions of bnderive longer than a limit (issue 11: "functions over ~80 lines split where
a name can say what the part does"), longest first.  A function's length is counted from its
first statement after the docstring to its last line: a command's docstring is its --help, and
its decorators are its options, neither of which a split would shorten.

    python tools/long_functions.py [--limit 80] [FOLDER]

Exits 0 always: it is a list to read, not a rule (some long functions are one flat table).
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from the first statement after the docstring to the function's end."""
    first = node.body[0]
    has_docstring = (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
        and len(node.body) > 1
    )
    start = node.body[1].lineno if has_docstring else first.lineno
    return (node.end_lineno or node.lineno) - start + 1


def long_functions(folder: Path, limit: int) -> list[tuple[int, str]]:
    found = []
    for path in sorted(folder.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = body_lines(node)
                if length > limit:
                    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
                    found.append((length, f"{where}:{node.lineno} {node.name}"))
    return sorted(found, reverse=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=80)
    parser.add_argument("folder", nargs="?", default=str(ROOT / "bnderive"))
    args = parser.parse_args()
    for length, where in long_functions(Path(args.folder).resolve(), args.limit):
        print(f"{length:5}  {where}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
