"""The published derivations, installed as the package data ``bnderive.derivations``.

This folder holds data, not code: one TOML file per published closed form and, in ``latex/``,
derivations as posts and notes write them.  See docs/adding-a-form.md.
"""
