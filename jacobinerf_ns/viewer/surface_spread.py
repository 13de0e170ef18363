"""The viewer's labels spread over the surfaces (``jacobinerf-label --propagation surface``): the training frames'
graph, built once, and the spread of the current label clicks, redone when the clicks change from each seed's spread
(kept: a new click spreads once, a deleted one costs nothing)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, TypeVar

import numpy as np

from jacobinerf_ns.errors import JacobiNerfError
from jacobinerf_ns.propagation.surface_graph import SurfaceGraph
from jacobinerf_ns.propagation.surface_labelling import SurfaceLabelling, surface_graph
from jacobinerf_ns.scene import Frame, Scene
from jacobinerf_ns.viewer.labels import LabelClicks

if TYPE_CHECKING:
    from torch import Tensor

    from jacobinerf_ns.model import JacobiNerfModel

Item = TypeVar("Item")


class SurfaceSpread:
    """Nodes of the run's training frames (and their masks, where ``masks`` gives them) and the spread of ``labels``'
    clicks over them; ``progress`` is told, frame by frame, how rendering the nodes goes."""

    def __init__(
        self,
        model: JacobiNerfModel,
        scene: Callable[[], Optional[Scene]],
        labels: LabelClicks,
        masks: Optional[Callable[[Sequence[Frame]], Optional[List[Optional[Tensor]]]]] = None,
        progress: Optional[Callable[[str], None]] = None,
    ) -> None:
        self.model, self.scene, self.labels, self.masks, self.progress = model, scene, labels, masks, progress
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
            cameras = [frame.camera for frame in frames]
            if self.progress is not None:
                cameras = reporting(cameras, self.progress)
            self.graph = surface_graph(self.model, cameras, masks=masks)
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


def reporting(items: Sequence[Item], report: Callable[[str], None]) -> Iterator[Item]:
    """``items``, telling ``report`` before each how many are done and about how long the rest will take (the
    viewer's status: nerfstudio's viewer has no progress bar for a panel's work)."""
    began = time.perf_counter()
    for done, item in enumerate(items):
        left = "" if done == 0 else f", about {(time.perf_counter() - began) / done * (len(items) - done):.0f} s left"
        report(f"Rendering the training frames for the surface graph (once per run): {done} of {len(items)}{left}")
        yield item
