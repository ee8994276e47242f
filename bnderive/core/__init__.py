"""The mathematics: the layer's configuration, the forward graph, and the ground truth.

``spec`` (mode, sizes, conventions) → ``graph`` (μ, σ², x̂, y as named stages) → ``derive``
(every adjoint by the chain rule) and ``double_backward``; ``notation`` is the index notation
they share, ``evaluate``/``points``/``finite_field`` evaluate it at explicit sizes, ``sums``
rewrites reductions, ``printing`` shows it to people.  Nothing here knows about forms or verdicts.
"""
