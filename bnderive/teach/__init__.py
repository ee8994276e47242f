"""Teaching: the backward pass of BatchNorm (and of its relatives, one set) on a tiny batch, every number exact.

* ``batch``: a tiny batch of small rationals chosen so that √(σ²+ε) is rational;
* ``lesson``: the forward pass, the backward pass (each adjoint with its chain-rule product), the
  three published closed forms and the traps, all computed with bnderive's own graph, ground
  truth and exact evaluation at that batch;
* ``graph_view``: the forward graph (``core.graph``'s stages) drawn with box-drawing characters;
* ``walkthrough``: the lesson in the terminal (rich);
* ``notebook``: the same lesson as a Jupyter notebook (nbformat) with an exercise and a check cell;
  ``exercise``: that exercise's template and the check cell's verdict text;
* ``quiz``: "find the wrong line" in a derivation with one known mistake of the corpus put in,
  the answer decided by the exact checker; ``quiz_view``: the quiz in the terminal.
"""
