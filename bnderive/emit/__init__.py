"""Proven code: a form printed as a NumPy or numba module, verified before it is written.

``numpy_module`` and ``numba_module`` are the printers, ``verification`` compares a module with
the ground truth, ``emitter`` puts them together (``bnderive emit``), ``bench`` times the result.
"""
