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

from bnderive.errors import FormError
from bnderive.read.forms import Form, load_form


def folder() -> Path:
    """Where the installed derivations are (``derivations/`` of a source checkout, when bnderive
    is imported from one without being installed)."""
    try:
        return Path(str(resources.files("bnderive.derivations")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / "derivations"


def builtin_forms() -> list[Form]:
    """The TOML forms of ``derivations/``, in file-name order."""
    return list(_builtin_forms())


@cache
def _builtin_forms() -> tuple[Form, ...]:
    return tuple(
        load_form(path, path.read_text(encoding="utf-8"))
        for path in sorted(folder().glob("*.toml"), key=lambda p: p.name)
    )


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
