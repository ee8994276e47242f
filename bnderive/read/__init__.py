"""Reading what people bring, as data: TOML forms, LaTeX derivations, the mutation corpus.

``forms`` (the ``Form`` every reader produces and the TOML reader), ``latex_reader`` (a lark
grammar, ``latex_grammar.lark``; the reader's parts by concern are the other ``latex_*``
modules), ``documents`` (Markdown/LaTeX files, line by line), ``derivations`` (the shipped
ones), ``corpus`` (known mistakes and equivalent rewrites), ``catalogue`` (every form by name).
Nothing read is ever executed.
"""
