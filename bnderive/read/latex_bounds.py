"""The resource bounds of the LaTeX reader, checked on lark's parse tree before anything is
built from it: a line of a derivation is small, and a hostile one must not make the reader
recurse out of the stack (200 nested parentheses, 20000 signs) or build huge numbers.

``tree_problem`` walks the tree without recursion and returns the first bound a line breaks,
with the token where it does (``latex_syntax._tree`` turns it into a ``LatexError`` with that
line and column).  Powers are bounded where they are built (``limits.power_problem``), and the
finished expression by ``limits.expression_problem``; the caps are in ``core/limits.py``.
"""

from __future__ import annotations

from lark import Token, Tree

from bnderive.core.limits import LATEX_DEPTH, LATEX_TOKENS, NUMBER_DIGITS


def _first_token(node: Tree | Token) -> Token | None:
    while isinstance(node, Tree):
        if not node.children:
            return None
        node = node.children[0]
    return node


def tree_problem(tree: Tree) -> tuple[str, Token | None] | None:
    """(what is wrong, the token where) for a parse tree beyond the caps, or None."""
    tokens = 0
    stack: list[tuple[Tree | Token, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > LATEX_DEPTH.limit:
            return LATEX_DEPTH.message(f"more than {LATEX_DEPTH.limit}"), _first_token(node)
        if isinstance(node, Token):
            tokens += 1
            if tokens > LATEX_TOKENS.limit:
                return LATEX_TOKENS.message(f"more than {LATEX_TOKENS.limit:,}"), node
            digits = sum(c.isdigit() for c in str(node))
            if node.type == "NUMBER" and digits > NUMBER_DIGITS.limit:
                return NUMBER_DIGITS.message(f"{digits:,} in {str(node)[:20]}…"), node
            continue
        stack.extend((child, depth + 1) for child in reversed(node.children))
    return None
