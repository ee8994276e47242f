"""The package's folders are the architecture (docs/architecture.md): imports flow one way.

    core → read → verify → usercode, emit → stability → report, teach → cli

Every import between bnderive's modules is read from the source (module level and inside
functions alike), and two rules hold: no module imports a subpackage further along the flow than
its own, and the modules form no import cycle.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import bnderive

PACKAGE = Path(bnderive.__file__).resolve().parent

#: Each subpackage's place in the flow; a module may import from its own place or earlier ones.
RANK = {
    "errors": 0,
    "core": 1,
    "read": 2,
    "derivations": 2,
    "verify": 3,
    "usercode": 4,
    "emit": 4,
    "stability": 4.5,  # the float study: uses core, read and emit; the report shows it
    "report": 5,
    "teach": 5,
    "cli": 6,
    "__main__": 7,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """module → the bnderive modules it imports (anywhere in its source)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    out: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                    base = f"{base}.{node.module}" if node.module else base
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    found.add(full if full in modules else base)
            elif isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
        out[name] = {m for m in found if m in modules and m != name}
    return out


def place(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_subpackage_has_a_place_in_the_flow():
    places = {place(m) for m in imports()} - {"__init__"}
    assert places <= set(RANK), f"add {sorted(places - set(RANK))} to RANK and to the docs"


def test_no_import_against_the_flow():
    wrong = [
        f"{module} imports {target}"
        for module, targets in imports().items()
        if place(module) != "__init__"  # the package root re-exports the public API lazily
        for target in targets
        if place(target) != "__init__" and RANK[place(target)] > RANK[place(module)]
    ]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    graph = imports()
    cycles = []

    def visit(node: str, path: list[str], on_path: set[str], done: set[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt in on_path:
                cycles.append(" → ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in done:
                visit(nxt, [*path, nxt], on_path | {nxt}, done)
        done.add(node)

    done: set[str] = set()
    for start in sorted(graph):
        if start not in done:
            visit(start, [start], {start}, done)
    # the package root imports its API lazily and every module is inside it: not a cycle
    cycles = [c for c in cycles if not c.startswith("bnderive →") and "→ bnderive →" not in c]
    assert not cycles, "\n".join(cycles)


ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"


def folder_paragraphs() -> dict[str, str]:
    """docs/architecture.md's paragraphs that describe a folder: **`bnderive/FOLDER/`** …"""
    found = {}
    for paragraph in ARCHITECTURE.read_text(encoding="utf-8").split("\n\n"):
        head = re.match(r"\*\*`bnderive/([\w/]+)/`\*\*", paragraph)
        if head:
            found[head.group(1)] = paragraph
    return found


def test_the_architecture_page_describes_every_folder_and_module():
    """A new folder or module is described in docs/architecture.md, in its folder's paragraph
    (a sub-folder, like read/corpus, in its parent's), or this test fails."""
    paragraphs = folder_paragraphs()
    missing = []
    for folder in sorted({p.parent for p in PACKAGE.rglob("*.py")} - {PACKAGE}):
        name = folder.relative_to(PACKAGE).as_posix()
        paragraph = paragraphs.get(name) or paragraphs.get(name.split("/")[0])
        if paragraph is None:
            missing.append(f"bnderive/{name}/ has no paragraph **`bnderive/{name}/`**")
            continue
        if "/" in name and f"{name.split('/', 1)[1]}/" not in paragraph:
            missing.append(f"bnderive/{name}/ is not named in bnderive/{name.split('/')[0]}/'s")
        for module in sorted(folder.glob("*.py")):
            if module.stem != "__init__" and not re.search(rf"`{module.stem}[`+/ ]", paragraph):
                missing.append(f"bnderive/{name}/{module.name} is not named in its paragraph")
    text = ARCHITECTURE.read_text(encoding="utf-8")
    for module in sorted(PACKAGE.glob("*.py")):
        if f"`bnderive/{module.name}`" not in text:
            missing.append(f"bnderive/{module.name} is not named (as `bnderive/{module.name}`)")
    assert not missing, "docs/architecture.md:\n" + "\n".join(missing)


def test_every_place_in_the_flow_is_on_the_architecture_page():
    text = ARCHITECTURE.read_text(encoding="utf-8")
    names = {
        place: (f"`{place}`", f"`bnderive/{place}.py`", f"`bnderive/{place}/`") for place in RANK
    }
    absent = [place for place, spelled in names.items() if not any(s in text for s in spelled)]
    assert not absent, absent


def test_the_public_api_resolves_and_the_docs_use_only_it():
    """``from bnderive import …`` (item 9 of issue 11): every name of ``__all__`` resolves to
    an object of the module the lazy table names, and the README and docs import only those."""
    import importlib

    for name in bnderive.__all__:
        value = getattr(bnderive, name)
        if name in bnderive._API:
            assert value is getattr(importlib.import_module(bnderive._API[name]), name), name
    texts = [PACKAGE.parent / "README.md", *(PACKAGE.parent / "docs").glob("*.md")]
    imported = set()
    for path in texts:
        for names in re.findall(r"^from bnderive import (.+)$", path.read_text(), re.M):
            imported |= {n.strip() for n in names.split(",")}
    assert imported, "the README shows the API with `from bnderive import …`"
    assert imported <= set(bnderive.__all__), sorted(imported - set(bnderive.__all__))


def test_every_python_parse_takes_the_parse_lock():
    """``check-impl DIR`` checks files on threads, and CPython 3.11's AST constructor is not
    safe to run in two threads at once (python/cpython#106905: "SystemError: AST constructor
    recursion depth mismatch" lost files of a folder now and then): every ``ast.parse`` of
    the package goes through ``core.python_syntax.parse``, which holds one lock."""
    raw = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "python_syntax.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "parse"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "ast"
            ):
                raw.append(f"{module_name(path)}:{node.lineno}")
    assert raw == [], f"ast.parse outside core.python_syntax: {raw}"
