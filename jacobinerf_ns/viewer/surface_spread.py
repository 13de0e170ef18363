"""The viewer's labels spread over the surfaces (``jacobinerf-label --propagation surface``): the training frames'
graph, built once, and the spread of the current label clicks, redone when the clicks change from each seed's spread
(kept: a new click spreads once, a deleted one costs nothing)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from jacobinerf_ns.errors import JacobiNerfError
from jacobinerf_ns.propagation.surface_graph import SurfaceGraph
from jacobinerf_ns.propagation.surface_labelling import SurfaceLabelling, surface_graph
from jacobinerf_ns.scene import Frame, Scene
from jacobinerf_ns.viewer.labels import LabelClicks

if TYPE_CHECKING:
    from torch import Tensor

    from jacobinerf_ns.model import JacobiNerfModel


class SurfaceSpread:
    """Nodes of the run's training frames (and their masks, where ``masks`` gives them) and the spread of ``labels``'
    clicks over them."""

    def __init__(
        self,
        model: JacobiNerfModel,
        scene: Callable[[], Optional[Scene]],
        labels: LabelClicks,
        masks: Optional[Callable[[Sequence[Frame]], Optional[List[Optional[Tensor]]]]] = None,
    ) -> None:
        self.model, self.scene, self.labels, self.masks = model, scene, labels, masks
        self.graph: Optional[SurfaceGraph] = None
        self.columns: Dict[int, np.ndarray] = {}
        """Each seeded node's spread: a new click costs one spread, a deleted one none."""
        self._spread: Optional[Tuple[tuple, SurfaceLabelling]] = None
        self.seconds = 0.0
        """How long the last :meth:`current` that computed something took."""

    def nodes(self) -> SurfaceGraph:
        """The graph of the run's training frames, rendered on first use (the selection spreads over it too)."""
        if self.graph is None:
            scene = self.scene()
            if scene is None:
                raise JacobiNerfError("Spreading over the surfaces needs the run's training frames: no dataset.")
            frames = scene.training_frames()
            masks = None if self.masks is None else self.masks(frames)
            self.graph = surface_graph(self.model, (frame.camera for frame in frames), masks=masks)
        return self.graph

    def current(self) -> SurfaceLabelling:
        """The spread of the current label clicks (the nodes are rendered on first use)."""
        began = time.perf_counter()
        graph = self.nodes()
        key = (tuple(self.labels.classes), tuple(id(click) for click in self.labels.clicks))
        if self._spread is None or self._spread[0] != key:
            self._spread = (key, SurfaceLabelling.spread(graph, self.labels.resolved(), self.columns))
            self.seconds = time.perf_counter() - began
        return self._spread[1]
