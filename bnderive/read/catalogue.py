"""Every form bnderive can name: the published ones, the shipped LaTeX derivations, the corpus.

``find_form`` takes a name or a path, the way the command line does: a built-in form
(``staged``), a shipped LaTeX derivation by its front-matter name (``staged-latex``), a mutant
(``compact/gamma-missing``) or rewrite (``caffe``) of the corpus, or the path of a form file
(``.toml``) or a derivation (``.md``, ``.tex``).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from bnderive.errors import FormError
from bnderive.read.derivations import builtin_document_paths, builtin_forms
from bnderive.read.forms import Form, load_form

#: A derivation document's suffixes: ``read.documents.SUFFIXES`` (not imported here: building
#: the LaTeX reader's grammar costs every command start-up time).
DOCUMENT_SUFFIXES = (".md", ".markdown", ".tex", ".ipynb")


@cache
def builtin_documents() -> tuple[Form, ...]:
    """The shipped LaTeX derivations, read (``derivations/latex``)."""
    from bnderive.read.documents import load_document  # builds the LaTeX grammar

    return tuple(load_document(path) for path in builtin_document_paths())


def find_form(name_or_path: str, preamble: Any = None) -> Form:
    """A form by name (built-in, shipped derivation, corpus mutant or rewrite) or by path;
    ``preamble`` (``documents.load_preamble``): macros a derivation given by path uses."""
    for form in builtin_forms():
        if form.name == name_or_path:
            return form
    path = Path(name_or_path)
    if path.suffix.lower() in DOCUMENT_SUFFIXES:  # a derivation as a post or notebook writes it
        from bnderive.read.documents import load_document

        return load_document(path, preamble=preamble)
    if path.suffix.lower() == ".toml" or path.exists():
        return load_form(path)
    for form in builtin_documents():
        if form.name == name_or_path:
            return form
    from bnderive.read.corpus import corpus

    entry = corpus().find(name_or_path)
    if entry is not None:
        return entry.form
    raise FormError(
        f"No form named {name_or_path!r}. Give one of the built-in forms "
        f"({', '.join(f.name for f in builtin_forms())}), a shipped LaTeX derivation "
        f"({', '.join(f.name for f in builtin_documents())}), a mutant or rewrite of the corpus "
        "(`bnderive mutants`, `bnderive mutants --rewrites`), or the path of a form file "
        "(.toml) or a derivation (.md, .tex, .ipynb); `bnderive forms` lists them."
    )
