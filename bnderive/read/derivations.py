"""The published derivations that ship with bnderive: ``derivations/`` at the repository's root.

The TOML forms (one per published closed form) and the LaTeX derivations (``derivations/latex``)
are installed as the package data ``bnderive.derivations`` (see pyproject.toml), so an installed
bnderive finds them wherever it runs.
"""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from pathlib import Path

from bnderive.core.spec import Norm
from bnderive.errors import FormError
from bnderive.read.forms import Form, load_form


def folder() -> Path:
    """Where the installed derivations are (``derivations/`` of a source checkout, when bnderive
    is imported from one without being installed)."""
    try:
        return Path(str(resources.files("bnderive.derivations")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / "derivations"


def builtin_forms(order: int | None = None, norm: Norm | None = None) -> list[Form]:
    """The TOML forms of ``derivations/``, in file-name order; with ``order`` and/or ``norm``,
    only the forms of that order and family, and only those are read (a form's equations are
    parsed and bounded as any user's form is, which costs more than reading its TOML: ``check``
    reads the 9 forms it checks, not all 18)."""
    return [
        _builtin_form(path)
        for path in _paths()
        if _may_be(_table(path), order, norm) and _is(_builtin_form(path), order, norm)
    ]


@cache
def _paths() -> tuple[Path, ...]:
    return tuple(sorted(folder().glob("*.toml"), key=lambda p: p.name))


@cache
def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


@cache
def _table(path: Path) -> dict:
    try:
        return tomllib.loads(_text(path))
    except tomllib.TOMLDecodeError:
        return {}  # _builtin_form reports it


@cache
def _builtin_form(path: Path) -> Form:
    return load_form(path, _text(path))


def _may_be(data: dict, order: int | None, norm: Norm | None) -> bool:
    """Whether a form's TOML table can describe a form of ``order`` and ``norm``; False only
    when its keys say otherwise (anything unreadable is read in full, to report it)."""
    try:
        found = Norm.parse(data.get("norm", "batch"))
    except Exception:  # noqa: BLE001 - load_form names the problem
        return True
    return (order is None or data.get("order", 1) == order) and (norm is None or found is norm)


def _is(form: Form, order: int | None, norm: Norm | None) -> bool:
    return (order is None or form.order == order) and (norm is None or form.norm is norm)


def builtin_document_paths() -> list[Path]:
    """The LaTeX derivations of ``derivations/latex``, in file-name order."""
    return sorted(
        (p for p in (folder() / "latex").iterdir() if p.suffix in (".md", ".tex")),
        key=lambda p: p.name,
    )


def builtin_form_data(name: str) -> dict:
    """The parsed TOML table of the built-in form ``name`` (to derive variants from it)."""
    for form in builtin_forms():
        if form.name == name:
            return tomllib.loads(Path(form.path).read_text(encoding="utf-8"))
    raise FormError(f"No built-in form named {name!r}.")
