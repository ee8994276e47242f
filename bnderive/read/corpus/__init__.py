"""The mutation corpus (DESIGN.md §5): known mistakes and equivalent rewrites, as data.

A *mistake* is a named error people make when they derive the backward pass (the path through μ
dropped, σ written for σ², γ forgotten, …).  A *mutant* is one correct built-in form with that
mistake put in: a few exact text edits of its lines, or its declared conventions changed (the
right formula used for a layer of another kind).  A *rewrite* is a form that looks different
from the published ones and is right.  ``mistakes.toml`` and ``rewrites.toml`` beside this file
hold them; every entry becomes an ordinary ``Form``, so ``bnderive check`` checks a mutant like
any derivation, and ``diagnose`` compares a wrong result with every mutant to name the mistake.
"""

from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from bnderive.errors import FormError
from bnderive.read.derivations import builtin_form_data
from bnderive.read.forms import Form, form_from_dict


@dataclass(frozen=True)
class Mistake:
    name: str
    title: str
    explanation: str  # what is wrong, one line
    fix: str  # what is right, one line
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class Mutant:
    """A correct form with one mistake put in."""

    id: str  # "<form>/<mistake>[#variant]"
    mistake: Mistake
    base: str  # the form (or rewrite) it was made from
    form: Form
    edited: frozenset[int]  # the numbers of the edited equations (none: conventions changed)
    sources: tuple[str, ...] = ()
    note: str = ""  # what is wrong in this mutant, where the mistake's explanation is general

    @property
    def explanation(self) -> str:
        return self.note or self.mistake.explanation

    def edited_line(self, quantity: str) -> int | None:
        """The first edited equation that defines ``quantity``, if any."""
        for eq in self.form.equations:
            if eq.number in self.edited and eq.name == quantity:
                return eq.number
        return None


@dataclass(frozen=True)
class Rewrite:
    """A right form that looks different from the published ones."""

    name: str
    explanation: str
    form: Form
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class Corpus:
    mistakes: tuple[Mistake, ...]
    mutants: tuple[Mutant, ...]
    rewrites: tuple[Rewrite, ...]

    def mistake(self, name: str) -> Mistake:
        for m in self.mistakes:
            if m.name == name:
                return m
        raise KeyError(name)

    def find(self, name: str) -> Mutant | Rewrite | None:
        """A mutant by id or a rewrite by name."""
        for entry in (*self.mutants, *self.rewrites):
            if getattr(entry, "id", None) == name or getattr(entry, "name", None) == name:
                return entry
        return None


def _read(file: str) -> dict[str, Any]:
    return tomllib.loads((resources.files("bnderive.read.corpus") / file).read_text("utf-8"))


def _line_numbers(data: dict[str, Any], line: str | int, where: str) -> int:
    """The 1-based number of the equation that ``line`` names (a quantity or a number)."""
    equations = data["equations"]
    if isinstance(line, int):
        if not 1 <= line <= len(equations):
            raise FormError(f"{where}: line {line} does not exist (the form has {len(equations)}).")
        return line
    found = [
        n
        for n, eq in enumerate(equations, start=1)
        if str(eq["defines"]).split("[")[0].strip() == line
    ]
    if len(found) != 1:
        raise FormError(f"{where}: {len(found)} lines define {line!r}; name the line by number.")
    return found[0]


def _variant(
    base: dict[str, Any], entry: dict[str, Any], name: str, title: str, where: str
) -> tuple[Form, frozenset[int]]:
    """``base`` with ``entry``'s edits and conventions applied, as a Form named ``name``."""
    data = copy.deepcopy(base)
    edited = set()
    for edit in entry.get("edits", []):
        number = _line_numbers(data, edit["line"], where)
        eq = data["equations"][number - 1]
        text = str(eq["expr"])
        if text.count(edit["old"]) != 1:
            raise FormError(
                f"{where}: {edit['old']!r} occurs {text.count(edit['old'])} times in line "
                f"{number} ({text!r}); an edit must match exactly once."
            )
        eq["expr"] = text.replace(edit["old"], edit["new"])
        eq.pop("latex", None)  # the published LaTeX no longer describes the line
        edited.add(number)
    if "conventions" in entry:
        data["conventions"] = {**data.get("conventions", {}), **entry["conventions"]}
    data.update(name=name, title=title, sources=list(entry.get("sources", [])))
    return form_from_dict(data, where), frozenset(edited)


@cache
def corpus() -> Corpus:
    """The shipped corpus, built once; a broken entry is a ``FormError`` naming it."""
    raw_mistakes, raw_rewrites = _read("mistakes.toml"), _read("rewrites.toml")
    mistakes = tuple(
        Mistake(m["name"], m["title"], m["explanation"], m["fix"], tuple(m.get("sources", [])))
        for m in raw_mistakes["mistake"]
    )
    by_name = {m.name: m for m in mistakes}
    rewrite_data: dict[str, dict[str, Any]] = {}
    rewrites = []
    for entry in raw_rewrites["rewrite"]:
        where = f"corpus rewrite {entry['name']}"
        if "form" in entry:
            base = builtin_form_data(entry["form"])
        else:
            base = {"equations": entry["equations"], "conventions": entry.get("conventions", {})}
            entry = {k: v for k, v in entry.items() if k not in ("equations", "conventions")}
        form, _ = _variant(base, entry, entry["name"], entry["explanation"], where)
        rewrite_data[entry["name"]] = {
            **base,
            "equations": [{"defines": e.label, "expr": e.text} for e in form.equations],
            "conventions": _conventions(form),
        }
        rewrites.append(
            Rewrite(entry["name"], entry["explanation"], form, tuple(entry.get("sources", [])))
        )
    mutants = []
    seen = set()
    for entry in raw_mistakes["mutant"]:
        mistake = by_name.get(entry["mistake"])
        ident = f"{entry['form']}/{entry['mistake']}" + (
            f"#{entry['variant']}" if "variant" in entry else ""
        )
        where = f"corpus mutant {ident}"
        if mistake is None or ident in seen:
            raise FormError(f"{where}: unknown mistake, or the id is not unique (add a variant).")
        seen.add(ident)
        base = rewrite_data.get(entry["form"]) or builtin_form_data(entry["form"])
        form, edited = _variant(base, entry, ident, mistake.title, where)
        mutants.append(
            Mutant(
                ident,
                mistake,
                entry["form"],
                form,
                edited,
                tuple(entry.get("sources", [])),
                str(entry.get("note", "")),
            )
        )
    return Corpus(mistakes, tuple(mutants), tuple(rewrites))


def _conventions(form: Form) -> dict[str, Any]:
    return {
        "variance": "unbiased" if form.unbiased else "biased",
        "epsilon": "inside" if form.eps_inside else "outside",
        "training": form.training,
    }


__all__ = ["Corpus", "Mistake", "Mutant", "Rewrite", "corpus"]
