r"""A document's own macros: ``\newcommand``, ``\renewcommand``, ``\providecommand``, ``\def`` and
``\DeclareMathOperator`` definitions, read as data and expanded in the maths before it is read.

Posts and notes define shorthands (``\newcommand{\pdiv}[1]{\partial #1}``,
``\def\R{\mathbb{R}}``, ``\DeclareMathOperator{\istd}{istd}``), in a preamble or in a maths block
of their own (MathJax and KaTeX read ``$$\newcommand…$$``).  Expansion is what TeX does with
them, and only that: the body's text with ``#1`` … ``#9`` replaced by the arguments, read again
for further macros, a control word kept apart from a letter that follows it (TeX's tokens:
``\partial#1`` with ``x`` is ``\partial x``, not ``\partialx``).  Nothing is executed; the
expansion is bounded (``MACRO_DEPTH`` nested expansions, ``MACRO_OUTPUT`` characters), so a
macro that calls itself or doubles at each level is refused with a message, never followed.  A macro a file uses without defining it (defined in
a class or a separate macros file) reaches the reader as an unknown macro, which says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

#: nested expansions of one use (a macro whose body uses a macro whose body uses …)
MACRO_DEPTH = 16
#: characters one equation may grow to by expansion (a derivation's line is a few hundred)
MACRO_OUTPUT = 20_000
#: the longest definition body read (a shorthand is short; an unclosed brace is not scanned on)
MACRO_BODY = 2_000

_DEFINITION = re.compile(
    r"\\(?:(newcommand|renewcommand|providecommand)\*?|(DeclareMathOperator)\*?|(def))"
    r"(?![a-zA-Z])"
)
_NAME = re.compile(r"\s*(?:\{\s*(\\[a-zA-Z]+|\\.)\s*\}|(\\[a-zA-Z]+|\\.))")


@dataclass(frozen=True)
class Macro:
    """One definition: ``\\name`` takes ``params`` arguments (the first optional, with
    ``default``, when the definition gives one) and stands for ``body``."""

    name: str
    params: int
    body: str
    default: str | None = None
    #: why a use cannot be expanded (a name defined twice with different bodies), or None
    conflict: str | None = None


class MacroError(Exception):
    """A use of a macro that cannot be expanded (too deep, too large, an argument missing)."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


def _group(
    text: str, k: int, open_: str = "{", close: str = "}", limit: int | None = None
) -> int | None:
    """The index after the group that opens at ``text[k]`` (braces balanced, ``\\{`` skipped),
    or None when it does not close (within ``limit`` characters, when given)."""
    depth = 0
    end = len(text) if limit is None else min(len(text), k + limit)
    while k < end:
        c = text[k]
        if c == "\\":
            k += 2
            continue
        if c == open_:
            depth += 1
        elif c == close:
            depth -= 1
            if depth == 0:
                return k + 1
        k += 1
    return None


def _skip_space(text: str, k: int) -> int:
    while k < len(text) and text[k] in " \t\n":
        k += 1
    return k


def _closing(text: str) -> dict[int, int]:
    """For each '{' of ``text`` that closes, the index after its '}' (one pass: a file with many
    unclosed definitions is not scanned again for each)."""
    out: dict[int, int] = {}
    stack: list[int] = []
    k = 0
    while k < len(text):
        c = text[k]
        if c == "\\":
            k += 2
            continue
        if c == "{":
            stack.append(k)
        elif c == "}" and stack:
            out[stack.pop()] = k + 1
        k += 1
    return out


_PARAMS = re.compile(r"((?:#[1-9])*)\s*\{")


def _definition(text: str, match: re.Match, closing: dict[int, int]) -> tuple[Macro, int] | None:
    """The macro a definition at ``match`` defines and where the definition ends; None when it
    is not one bnderive can take as data (unbalanced, a delimited \\def)."""
    name = _NAME.match(text, match.end())
    if name is None:
        return None
    macro_name = (name.group(1) or name.group(2))[1:]
    k = name.end()
    if match.group(2):  # \DeclareMathOperator{\name}{text}: an upright operator name
        k = _skip_space(text, k)
        end = closing.get(k)
        if end is None:
            return None
        return Macro(macro_name, 0, "\\mathrm{" + text[k + 1 : end - 1].strip() + "}"), end
    params, default = 0, None
    if match.group(3):  # \def\name#1#2{body}: undelimited parameters only
        spec = _PARAMS.match(text, k)
        if spec is None:
            return None
        params = len(spec.group(1)) // 2
        k = spec.end() - 1
    else:
        k = _skip_space(text, k)
        if k < len(text) and text[k] == "[":
            end = text.find("]", k, k + 8)
            if end < 0 or not text[k + 1 : end].strip().isdigit():
                return None
            params, k = int(text[k + 1 : end]), _skip_space(text, end + 1)
            if k < len(text) and text[k] == "[":
                end = _group(text, k, "[", "]", MACRO_BODY)
                if end is None:
                    return None
                default, k = text[k + 1 : end - 1], _skip_space(text, end)
    if k >= len(text) or text[k] != "{":
        return None
    end = closing.get(k)
    if end is None or end - k > MACRO_BODY or not 0 <= params <= 9:
        return None
    return Macro(macro_name, params, text[k + 1 : end - 1], default), end


def find_definitions(text: str) -> tuple[dict[str, Macro], list[tuple[int, int]]]:
    """The macros ``text`` defines and the spans of the definitions (to blank: a definition is
    no equation).  A name defined again with the same body keeps it; with another body, a use
    is refused (``Macro.conflict``): in TeX a redefinition holds from its place on, and a line
    before it meant the first body."""
    macros: dict[str, Macro] = {}
    spans: list[tuple[int, int]] = []
    closing = _closing(text) if _DEFINITION.search(text) else {}
    for match in _DEFINITION.finditer(text):
        if spans and match.start() < spans[-1][1]:
            continue  # a definition inside another's body
        found = _definition(text, match, closing)
        if found is None:
            continue
        macro, end = found
        spans.append((match.start(), end))
        earlier = macros.get(macro.name)
        if match.group(1) == "providecommand" and earlier is not None:
            continue  # \providecommand defines only what is not defined
        if earlier is not None and (earlier.params, earlier.body) != (macro.params, macro.body):
            # TeX's meaning depends on where a use stands, which these maths-only pieces do
            # not keep: a use of either body would be a guess
            macro = replace(macro, conflict=(
                f"\\{macro.name} is defined twice with different bodies, so what a use means "
                "depends on where it stands; give the two definitions different names"
            ))  # fmt: skip
        macros[macro.name] = macro
    return macros, spans


@dataclass(frozen=True)
class Preamble:
    """Macro definitions a post makes in another file (a blueprint's macros file, a Jekyll
    site's include), given with ``--preamble FILE``: read as the document's own definitions
    are (data, never executed), before the document's."""

    where: str
    macros: dict[str, Macro]


def with_preamble(own: dict[str, Macro], preamble: dict[str, Macro]) -> dict[str, Macro]:
    """The document's macros with the preamble's before them: a name both define with the same
    body is that macro; with different bodies, a use is refused (``Macro.conflict``), as for a
    name one document defines twice (which one a use meant is not said)."""
    merged = dict(preamble)
    for name, macro in own.items():
        earlier = merged.get(name)
        if (
            earlier is not None
            and macro.conflict is None
            and (earlier.params, earlier.body) != (macro.params, macro.body)
        ):
            macro = replace(macro, conflict=(
                f"\\{name} is defined both in the preamble and in the document, with different "
                "bodies, so what a use means is not said; give the two definitions different "
                "names"
            ))  # fmt: skip
        merged[name] = macro
    return merged


def _argument(text: str, k: int, name: str, at: int) -> tuple[str, int]:
    """One undelimited argument at ``k``: a braced group (without its braces), a control
    sequence, or one character."""
    k = _skip_space(text, k)
    if k >= len(text):
        raise MacroError(f"\\{name} is missing an argument", at)
    if text[k] == "{":
        end = _group(text, k)
        if end is None:
            raise MacroError(f"\\{name}: an argument's brace is never closed", at)
        return text[k + 1 : end - 1], end
    word = re.match(r"\\([a-zA-Z]+|.)", text[k:])
    if word:
        return word.group(0), k + word.end()
    return text[k], k + 1


#: a control sequence of a body (kept whole: ``\\#1`` is ``\\#`` then 1), or a parameter
_BODY_TOKEN = re.compile(r"\\(?:[a-zA-Z]+|.)|#(#|[1-9])", re.S)
_CONTROL_WORD_END = re.compile(r"(\\+)[a-zA-Z]+$")


def _ends_in_control_word(text: str) -> bool:
    """``…\\mu``, not ``…\\\\mu`` (a line break, then the letters mu)."""
    match = _CONTROL_WORD_END.search(text)
    return match is not None and len(match.group(1)) % 2 == 1


def _glue(pieces: list[str]) -> str:
    """The pieces joined, a space put where a control word would run on into a letter that
    follows it (``\\partial`` then ``x``: ``\\partial x``, not ``\\partialx``): TeX reads a
    control word up to the first non-letter when the body is defined, so a use never glues
    it to what comes after; text joined as strings must keep them apart."""
    out: list[str] = []
    tail = ""
    for piece in pieces:
        if not piece:
            continue
        if piece[0].isalpha() and _ends_in_control_word(tail):
            out.append(" ")
        out.append(piece)
        tail = piece
    return "".join(out)


def _substitute(macro: Macro, args: list[str]) -> str:
    pieces, k, body = [], 0, macro.body
    for match in _BODY_TOKEN.finditer(body):
        pieces.append(body[k : match.start()])
        k = match.end()
        number = match.group(1)
        if number is None:  # a control sequence, whole
            pieces.append(match.group(0))
        elif number == "#":
            pieces.append("#")
        elif int(number) <= len(args):
            pieces.append(args[int(number) - 1])
        else:
            pieces.append(match.group(0))
    pieces.append(body[k:])
    return _glue(pieces)


def expand(text: str, macros: dict[str, Macro]) -> str:
    """``text`` with every use of ``macros`` expanded (recursively, within the bounds)."""
    if not macros or "\\" not in text:
        return text
    return _expand(text, macros, 0, [0], 0)


def _expand(text: str, macros: dict[str, Macro], depth: int, size: list[int], at: int) -> str:
    out: list[str] = []
    k = 0
    for match in re.finditer(r"\\([a-zA-Z]+|.)", text):
        if match.start() < k:
            continue
        macro = macros.get(match.group(1))
        if macro is None:
            continue
        where = at if depth else match.start()
        if macro.conflict is not None:
            raise MacroError(macro.conflict, where)
        if depth >= MACRO_DEPTH:
            raise MacroError(
                f"\\{macro.name} expands more than {MACRO_DEPTH} levels deep (a macro that "
                "uses itself?): not expanded",
                where,
            )
        out.append(text[k : match.start()])
        k = match.end()
        args: list[str] = []
        params = macro.params
        if macro.default is not None:
            j = _skip_space(text, k)
            if j < len(text) and text[j] == "[":
                end = _group(text, j, "[", "]")
                if end is None:
                    raise MacroError(
                        f"\\{macro.name}: its optional argument is never closed", where
                    )
                args.append(text[j + 1 : end - 1])
                k = end
            else:
                args.append(macro.default)
            params -= 1
        for _ in range(params):
            arg, k = _argument(text, k, macro.name, where)
            args.append(arg)
        replaced = _expand(_substitute(macro, args), macros, depth + 1, size, where)
        size[0] += len(replaced)
        if size[0] > MACRO_OUTPUT:
            raise MacroError(
                f"\\{macro.name} expands to more than {MACRO_OUTPUT:,} characters: not expanded",
                where,
            )
        out.append(replaced)
    out.append(text[k:])
    return _glue(out)  # a control word before or at the end of an expansion: apart
