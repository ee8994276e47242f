"""What a user's Python file defines, found statically: the parent never imports the file.

The file is parsed with ``ast`` (parsing runs nothing) and its top-level functions, classes and
imports are listed with their parameters, so that the parent decides which functions exist and
how each is called before the child runs anything.  Reading the file here is also where a file
that is not Python source is refused (missing, a directory, too large, binary, not UTF-8, a
syntax error), with a message that says what to give instead.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

from bnderive.core import python_syntax
from bnderive.core.limits import SOURCE_BYTES
from bnderive.errors import BnderiveError, InputFileError, LimitError
from bnderive.read.files import read_bytes

#: The largest file check-impl reads: a BatchNorm layer is a few kilobytes.
MAX_SOURCE_BYTES = SOURCE_BYTES.limit
#: What to do about a file that is not Python source.
GIVE_PY = "give the path of the .py file that defines the BatchNorm functions"


class ImplementationError(BnderiveError):
    """The user's implementation could not be run or returned something unusable (exit 2)."""


@dataclass(frozen=True)
class Function:
    """A top-level function (or a method) as written: its positional parameters and the rest."""

    name: str
    params: tuple[str, ...]  # positional parameters, in order (self included for a method)
    defaults: int = 0  # how many of them have a default
    varargs: bool = False
    varkw: bool = False
    kwonly: tuple[str, ...] = ()
    line: int = 0

    @property
    def required(self) -> int:
        return len(self.params) - self.defaults


@dataclass(frozen=True)
class Class:
    name: str
    methods: dict[str, Function]
    line: int = 0


@dataclass
class Source:
    """A parsed user file: its functions, classes and imported module names."""

    path: Path
    text: str
    tree: ast.Module
    functions: dict[str, Function] = field(default_factory=dict)
    classes: dict[str, Class] = field(default_factory=dict)
    imported: dict[str, str] = field(default_factory=dict)  # name bound → the module it is from
    modules: list[str] = field(default_factory=list)  # every module imported (absolute)
    relative: list[str] = field(default_factory=list)  # "from .x import y" sources

    @property
    def name(self) -> str:
        return self.path.name

    def public(self) -> list[str]:
        """The functions and classes a message lists: the file's own, not private ones."""
        names = [n for n in (*self.functions, *self.classes) if not n.startswith("_")]
        return sorted(names)

    def listing(self) -> str:
        names = self.public()
        return ", ".join(names) if names else "none"


def _function(node: ast.FunctionDef | ast.AsyncFunctionDef) -> Function:
    a = node.args
    positional = [p.arg for p in (*a.posonlyargs, *a.args)]
    return Function(
        node.name,
        tuple(positional),
        len(a.defaults),
        a.vararg is not None,
        a.kwarg is not None,
        tuple(p.arg for p in a.kwonlyargs),
        node.lineno,
    )


def read_source(path: str | Path) -> Source:
    """Read and parse the file; an ImplementationError when it is not Python source."""
    file = Path(path)
    name = file.name
    if file.is_dir():
        raise ImplementationError(
            f"{path} is a directory; give the path of the Python file in it that defines the "
            "BatchNorm functions."
        )
    if not file.exists():
        raise ImplementationError(f"{path}: no such file; give the path of a Python file.")
    if file.suffix != ".py":
        raise ImplementationError(
            f"{name} is not a Python file: check-impl imports it as a module, which needs the "
            f"suffix .py; {GIVE_PY}."
        )
    try:
        # a regular file only, opened without blocking, at most the cap read (read/files.py)
        data = read_bytes(file, "the .py file that defines the BatchNorm functions", SOURCE_BYTES)
    except (InputFileError, LimitError) as exc:
        raise ImplementationError(str(exc)) from None
    if b"\0" in data:
        raise ImplementationError(f"{name} is a binary file (it has NUL bytes); {GIVE_PY}.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ImplementationError(
            f"{name} is not UTF-8 text (byte {exc.start} cannot be decoded: {exc.reason}), so not "
            f"Python source; {GIVE_PY}."
        ) from None
    try:
        tree = python_syntax.parse(text, filename=str(file))
    except SyntaxError as exc:
        where = f"line {exc.lineno}" + (f", column {exc.offset}" if exc.offset else "")
        line = (exc.text or "").rstrip("\n")
        caret = " " * max(0, (exc.offset or 1) - 1) + "^" if line else ""
        trace = f'  File "{file}", {where}\n    {line}\n    {caret}'.rstrip()
        raise ImplementationError(
            f"{name} has a syntax error at {where}: {exc.msg}.\n{trace}"
        ) from None
    except (RecursionError, MemoryError, ValueError) as exc:
        raise ImplementationError(
            f"{name} cannot be parsed ({type(exc).__name__}: nested too deep or too large); "
            f"{GIVE_PY}."
        ) from None
    source = Source(file, text, tree)
    for node in tree.body:
        _collect(source, node)
    return source


def _collect(source: Source, node: ast.stmt) -> None:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        source.functions[node.name] = _function(node)
    elif isinstance(node, ast.ClassDef):
        methods = {
            item.name: _function(item)
            for item in node.body
            if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        source.classes[node.name] = Class(node.name, methods, node.lineno)
    elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Name):
        # an alias: batchnorm_backward_alt = batchnorm_backward
        target = source.functions.get(node.value.id)
        for t in node.targets:
            if target is not None and isinstance(t, ast.Name):
                source.functions[t.id] = Function(
                    t.id, target.params, target.defaults, target.varargs, target.varkw,
                    target.kwonly, node.lineno,
                )  # fmt: skip
    elif isinstance(node, ast.Import):
        for alias in node.names:
            source.modules.append(alias.name)
            source.imported[alias.asname or alias.name.split(".")[0]] = alias.name
    elif isinstance(node, ast.ImportFrom):
        module = node.module or ""
        if node.level:
            source.relative.append("." * node.level + module)
        else:
            source.modules.append(module)
        for alias in node.names:
            source.imported[alias.asname or alias.name] = ("." * node.level) + module
    elif isinstance(node, ast.If | ast.Try):
        # definitions under `if`/`try` at the top level (a guarded import, a fallback)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                _collect(source, child)
