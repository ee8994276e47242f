"""A user's Python implementation: run isolated in a child process, judged in the parent.

``sandbox`` runs the user's file in a limited child and returns raw values; ``check_impl``
compares them with the ground truth and decides; ``explain`` says why a gradient test can lie.
"""
