"""The floating-point stability study (issue 14 item 4): the relative error of ∂L/∂x of the
published forms and the emitted kernels in float16/float32/float64 against the exact value, as
the input mean and M grow, and one-pass against two-pass variance.

``study`` measures (``study.StabilityStudy``, rows of ``study.Row``); ``figure.save_figure``
draws it; ``exact`` is the reference, ``floats`` the candidates in a float dtype.
"""

from __future__ import annotations

from bnderive.stability.study import Row, StabilityStudy, study

__all__ = ["Row", "StabilityStudy", "study"]
