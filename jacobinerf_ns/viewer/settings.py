"""The viewer panel's settings, shared by the parts of a :class:`~.session.ViewerSession`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class ViewerSettings:
    """What the panel's sliders and dropdown set (the panel's defaults)."""

    sigma: float = 0.1
    """Perturbation σ of every probe the viewer renders."""
    threshold: float = 0.8
    """Selection with propagation ``nearest``: ``|cos(J_p, J_k)|`` between a pixel's Jacobian and the clicked one's
    above which the pixel belongs to the selected entity."""
    space: Literal["2d", "3d"] = "3d"
    """Which responses are shown and judged."""
    recolor_strength: float = 1.0
    """Multiplies the recolour perturbation."""
    propagation: Literal["nearest", "surface"] = "surface"
    """How the label clicks' classes and the selected entity reach pixels, as ``jacobinerf-label --propagation``
    (``surface``: over the training frames' surfaces and masks; ``nearest``: by the Jacobians alone, the selection by
    :attr:`threshold`)."""
