"""Proven code: a form printed as a NumPy or numba module, verified before it is written.

``numpy_module`` and ``numba_module`` are the printers (every user string a checked docstring
line, the printed module parsed back), ``verification`` compares a module's outputs with the
ground truth, ``runner`` runs the module in a child process (``child``, the script that runs
there) and validates what comes back, ``emitter`` puts them together (``bnderive emit``, the
output written atomically, never onto an input), ``bench`` times the result.
"""
