"""Imports a user's file makes that cannot be satisfied here, decided before anything runs.

Code copied out of a course or a book keeps its package's imports: ``from .layers import
affine_forward`` (package-relative), ``from common.functions import *`` and ``from common.util
import im2col`` ("Deep Learning from Scratch" run outside the book's folders).  Importing the
file then fails before its BatchNorm code is reached.  The parent finds such imports here, from
the syntax tree and the import system's *finders* (which locate a top-level module without
running it), and has the child put a stand-in module in their place whose functions raise when
called, **provided the BatchNorm code does not use what they bring**; the report says so in a
note.  When it does use it, the file cannot be checked as it is, and the message says which name,
where, and what to do.
"""

from __future__ import annotations

import ast
import builtins
import importlib.machinery
import importlib.util
from dataclasses import dataclass, field

from bnderive.usercode.layout import ImplementationError, Source

#: The stand-in package of a file with relative imports (``child.PACKAGE``; the child imports
#: nothing of bnderive, so the name is written in both places).
PACKAGE = "bnderive_user_package"


@dataclass
class Stubs:
    """The modules to stand in for (the child's ``stubs``), and the notes saying so."""

    modules: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _findable(top: str, folder: str) -> bool:
    """Whether a top-level module exists, without importing it (finders only)."""
    if top in ("numpy", "math", "copy", "functools", "itertools", "typing", "collections"):
        return True
    try:
        if importlib.machinery.PathFinder.find_spec(top, [folder]) is not None:
            return True
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def _free_names(nodes: list[ast.AST]) -> dict[str, int]:
    """Names the nodes read that nothing in them binds (their first line each)."""
    bound: set[str] = set(dir(builtins))
    read: dict[str, int] = {}
    for node in nodes:
        for n in ast.walk(node):
            if isinstance(n, ast.Name):
                if isinstance(n.ctx, ast.Load):
                    read.setdefault(n.id, n.lineno)
                else:
                    bound.add(n.id)
            elif isinstance(n, ast.arg):
                bound.add(n.arg)
            elif isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                bound.add(n.name)
    return {k: v for k, v in read.items() if k not in bound}


def stub_imports(source: Source, used: list[str]) -> Stubs:
    """The stand-ins the file needs, given the names of the functions and classes that will be
    called (``used``); an ImplementationError when the BatchNorm code uses a missing import."""
    out = Stubs()
    missing, star = _missing_imports(source, out)
    if not out.modules:
        return out
    uses = _uses_of_missing(source, used, missing, star)
    if uses:
        name, line = next(iter(uses.items()))
        where = missing.get(name) or ", ".join(star)
        what = name if where == name else f"{name} from {where}"
        raise ImplementationError(
            f"{source.name} imports {what}, which cannot be found here, and its "
            f"BatchNorm code uses it (line {line}): put that module beside the file (or on "
            "PYTHONPATH), or copy what the BatchNorm code needs from it into the file."
        )
    shown_modules = sorted(
        {m for m in missing.values()} | set(star), key=lambda m: (m.startswith("."), m)
    )
    out.notes.append(
        f"{source.name} imports {', '.join(shown_modules)}, which cannot be found here (a file "
        "copied out of its package); its BatchNorm code does not use them, so they were replaced "
        "by empty stand-ins"
    )
    return out


def _missing_imports(source: Source, out: Stubs) -> tuple[dict[str, str], list[str]]:
    """The imports that cannot be found beside the file (or on the path), each module added
    to ``out`` to be stood in for (relative imports under a package of stand-ins as deep as
    the deepest ``from ..``); returns the names they bind (name → the module it is from, as
    written) and the modules imported with ``*``."""
    folder = str(source.path.resolve().parent)
    missing: dict[str, str] = {}  # name bound → the module it is from
    star: list[str] = []
    depth = max(
        (n.level for n in ast.walk(source.tree) if isinstance(n, ast.ImportFrom)), default=0
    )
    package = PACKAGE + "".join(f".up{k}" for k in range(max(depth - 1, 0)))
    for node in ast.walk(source.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not _findable(alias.name.split(".")[0], folder):
                    _add(out, alias.name)
                    missing[(alias.asname or alias.name).split(".")[0]] = alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                module = base + (f".{node.module}" if node.module else "")
                shown = "." * node.level + (node.module or "")
                if not out.modules or not out.modules[0] == package:
                    out.modules.insert(0, package)
                    _add(out, package)
                _add(out, module)
            elif not _findable((node.module or "").split(".")[0], folder):
                module = shown = node.module or ""
                _add(out, module)
            else:
                continue
            for alias in node.names:
                if alias.name == "*":
                    star.append(shown)
                else:
                    missing[alias.asname or alias.name] = shown
    return missing, star


def _uses_of_missing(
    source: Source, used: list[str], missing: dict[str, str], star: list[str]
) -> dict[str, int]:
    """The names from missing imports that the code which runs uses (the module's top level
    and the functions and classes in ``used``), with the line of the first use; with nothing
    else to go by, a name nothing binds may come from a star import."""
    nodes: list[ast.AST] = []
    for node in source.tree.body:
        name = getattr(node, "name", None)
        if name in used or not isinstance(
            node,
            ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Import | ast.ImportFrom,
        ):
            nodes.append(node)
    defined = set(source.functions) | set(source.classes)
    imported = {
        (alias.asname or alias.name).split(".")[0]
        for n in ast.walk(source.tree)
        if isinstance(n, ast.Import | ast.ImportFrom)
        for alias in n.names
    }
    free = {k: v for k, v in _free_names(nodes).items() if k not in defined}
    uses = {k: v for k, v in free.items() if k in missing}
    if not uses and star:
        # a name nothing else binds may come from the star import
        uses = {k: v for k, v in free.items() if k not in imported and k not in ("np", "numpy")}
    return uses


def _add(out: Stubs, module: str) -> None:
    parts = module.split(".")
    for k in range(1, len(parts) + 1):
        name = ".".join(parts[:k])
        if name and name not in out.modules:
            out.modules.append(name)
