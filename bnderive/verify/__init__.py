"""Deciding: does a form agree with the ground truth, line by line? (DESIGN.md §4)

``verdict`` (what a method found), ``lines`` (a form's lines run in order), ``exact`` (explicit
sizes, decided by ``zero_test``), ``randomized`` (large M at random points, Schwartz–Zippel with
``degree_bound``), ``every_m`` (proofs for every M), ``witness`` (counterexamples), ``plan``
(forms × modes × methods, in parallel) and ``diagnose`` (naming the known mistake).
"""
