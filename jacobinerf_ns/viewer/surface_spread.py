"""The viewer's labels spread over the surfaces (``jacobinerf-label --propagation surface``): the training frames'
graph nodes, rendered once, and the spread of the current label clicks, redone only when the clicks change."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, Optional, Tuple

from torch import Tensor

from jacobinerf_ns.errors import JacobiNerfError
from jacobinerf_ns.propagation.surface_labelling import SurfaceLabelling, render_nodes
from jacobinerf_ns.scene import Scene
from jacobinerf_ns.viewer.labels import LabelClicks

if TYPE_CHECKING:
    from jacobinerf_ns.model import JacobiNerfModel


class SurfaceSpread:
    """Nodes of the run's training frames and the spread of ``labels``' clicks over them."""

    def __init__(self, model: JacobiNerfModel, scene: Callable[[], Optional[Scene]], labels: LabelClicks) -> None:
        self.model, self.scene, self.labels = model, scene, labels
        self.nodes: Optional[Tuple[Tensor, Tensor]] = None
        self._spread: Optional[Tuple[tuple, SurfaceLabelling]] = None
        self.seconds = 0.0
        """How long the last :meth:`current` that computed something took."""

    def current(self) -> SurfaceLabelling:
        """The spread of the current label clicks (the nodes are rendered on first use)."""
        began = time.perf_counter()
        if self.nodes is None:
            scene = self.scene()
            if scene is None:
                raise JacobiNerfError("Labels spread over the surfaces need the run's training frames: no dataset.")
            frames = [frame for frame in scene.frames if frame.split == "train"] or list(scene.frames)
            self.nodes = render_nodes(self.model, (frame.camera for frame in frames))
        key = (tuple(self.labels.classes), tuple(id(click) for click in self.labels.clicks))
        if self._spread is None or self._spread[0] != key:
            self._spread = (key, SurfaceLabelling.spread(self.nodes, self.labels.resolved()))
            self.seconds = time.perf_counter() - began
        return self._spread[1]
