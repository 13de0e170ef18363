"""*Suggest next click*: where in a view the labels cover the pixels least
(:func:`~jacobinerf_ns.propagation.labelling.weakest_region` of a guide: with nearest-click labels the clicks' own
resemblance, :func:`~jacobinerf_ns.propagation.labelling.explained`; with labels spread over the surfaces the best
class score, :meth:`~jacobinerf_ns.propagation.surface_labelling.SurfaceFrame.covered`, which places better clicks
under that spread: ``docs/propagation_levers.md``), which training view they cover least, and suggestions the user
had nothing to label at (*Skip suggestion*).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from jacobinerf_ns.clicks import Vector, vector
from jacobinerf_ns.propagation.labelling import (
    SUGGESTION_WINDOW,
    ResolvedClicks,
    label_frame,
    mean_over_hits,
    weakest_region,
)
from jacobinerf_ns.viewer.click_evaluation import MARKER_DEPTH, evaluate_click
from jacobinerf_ns.viewer.labels import LabelClicks
from jacobinerf_ns.viewer.settings import ViewerSettings

if TYPE_CHECKING:
    from nerfstudio.cameras.cameras import Cameras
    from nerfstudio.cameras.rays import RayBundle

    from jacobinerf_ns.model import JacobiNerfModel
    from jacobinerf_ns.propagation.surface_labelling import SurfaceLabelling


@dataclass(frozen=True)
class Suggestion:
    """Where in one view the next label click helps most: the region the labels cover least
    (:func:`~.labelling.weakest_region` of the guide, :data:`GUIDES`)."""

    pixel: Tuple[int, int]
    """``(y, x)`` in the render it was found in."""
    explained: float
    """The guide at that pixel: how well the labels cover it."""
    view_explained: float
    """The same, averaged over the view's pixels that hit a surface."""
    guide: str
    """What ``explained`` is, in words (:data:`GUIDES`)."""
    marker: Vector
    """Where its marker is drawn (nerfstudio's frame): on the pixel's ray, in front of every surface the marker
    covers on screen (the render's depth hides scene objects behind it; suggestions lie on object borders)."""
    marker_size: float
    """The marker's size (nerfstudio's units): it covers the ``SUGGESTION_WINDOW`` box on screen, near or far."""
    ray: RayBundle
    """The pixel's ray, a one-ray bundle of the judged camera (what :meth:`Suggestions.dismiss` evaluates)."""


@dataclass(frozen=True)
class ViewRanking:
    """The training view the clicks explain least, judged from low-resolution renders."""

    index: int
    mean_explained: Tuple[float, ...]
    """Per training view."""
    suggestion: Optional[Suggestion]
    """The least-explained region of that view (``None`` when its rays hit nothing)."""


def low_resolution(camera: Cameras, max_side: int) -> Cameras:
    """A copy of a one-camera ``camera`` rescaled so that its longer side is at most ``max_side`` pixels."""
    camera = camera[0:1]
    scale = min(1.0, max_side / max(int(camera.height), int(camera.width)))
    if scale < 1.0:
        camera.rescale_output_resolution(scale)  # replaces the copy's intrinsics; the original is untouched
    return camera


GUIDES = {"nearest": "best cosine", "surface": "best class score"}
"""The settings' propagation → the guide *Suggest next click* follows: the best ``|cos|`` to a click, or the best
class score of the labels spread over the surfaces."""


class Suggestions:
    """Suggestions for the label clicks of one model, judged with the settings' σ, space and propagation
    (``spread``: the current clicks spread over the surfaces)."""

    def __init__(
        self,
        model: JacobiNerfModel,
        settings: ViewerSettings,
        labels: LabelClicks,
        spread: Callable[[], SurfaceLabelling],
    ) -> None:
        self.model, self.settings, self.labels, self.spread = model, settings, labels, spread
        self.dismissed: List[Tensor] = []
        """Jacobians ``(1, 3, F[+1])`` of suggestions the user had nothing to label at (kept until *Clear labels*)."""

    def suggest(self, camera: Cameras) -> Optional[Suggestion]:
        """The region of ``camera``'s render the clicks explain least (``None`` when its rays hit nothing)."""
        return self._judge(camera, self.labels.resolved())[1]

    def dismiss(self, suggestion: Suggestion) -> str:
        """Nothing to label at ``suggestion`` (void, or not worth a class): what its pixel resembles counts as
        explained from now on, so suggestions move on; it labels nothing."""
        self.dismissed.append(evaluate_click(self.model, suggestion.ray).jacobian.cpu())
        return f"Skipped that suggestion ({len(self.dismissed)} skipped)"

    def least_explained_view(
        self, cameras: Cameras, max_side: int, progress: Callable[[int, int], None] = lambda done, total: None
    ) -> ViewRanking:
        """Renders every camera with its longer side at most ``max_side`` pixels and ranks them by how well the
        clicks explain them on average; ``progress(done, total)`` after each."""
        clicks = self.labels.resolved()
        means, suggestions = [], []
        for index in range(len(cameras)):
            mean, suggestion = self._judge(low_resolution(cameras[index : index + 1], max_side), clicks)
            means.append(mean)
            suggestions.append(suggestion)
            progress(index + 1, len(cameras))
        worst = int(np.argmin(means))
        return ViewRanking(index=worst, mean_explained=tuple(means), suggestion=suggestions[worst])

    def _judge(self, camera: Cameras, clicks: ResolvedClicks) -> Tuple[float, Optional[Suggestion]]:
        """How well the labels cover ``camera``'s render on average, and its least-covered region."""
        guide, hit, depth = self.guide(camera, clicks)
        view_explained = mean_over_hits(guide, hit)
        pixel = weakest_region(guide, hit)
        if pixel is None:
            return view_explained, None
        y, x = pixel
        ray = camera.generate_rays(camera_indices=0, keep_shape=True)[y, x]
        reach = SUGGESTION_WINDOW  # the marker's footprint on screen, with a margin of its own size
        nearest = float(depth[max(0, y - reach) : y + reach + 1, max(0, x - reach) : x + reach + 1].min())
        distance = MARKER_DEPTH * nearest
        marker = ray.origins.reshape(3).cpu() + distance * ray.directions.reshape(3).cpu()
        return view_explained, Suggestion(
            pixel=pixel,
            explained=float(guide[y, x]),
            view_explained=view_explained,
            guide=GUIDES[self.propagation()],
            marker=vector(marker),
            marker_size=distance * SUGGESTION_WINDOW / float(camera.fx[0, 0]),
            ray=ray.reshape((1,)),
        )

    def propagation(self) -> str:
        """The settings' propagation, ``nearest`` until a label is painted (nothing spreads before)."""
        return self.settings.propagation if self.labels.clicks else "nearest"

    def guide(self, camera: Cameras, clicks: ResolvedClicks) -> Tuple[Tensor, Tensor, Tensor]:
        """``(H, W)`` the guide (:data:`GUIDES`; 1 where the ray hits nothing), which pixels hit a surface, and the
        depth, from one render of ``camera``; skipped suggestions' look-alikes count as covered."""
        dismissed = torch.cat(self.dismissed) if self.dismissed else None
        if self.propagation() == "surface":
            frame = self.spread().frame_scores(self.model, camera, dismissed)
            return frame.covered(), frame.hit, frame.depth
        sigma, space = self.settings.sigma, self.settings.space
        labels = label_frame(self.model, camera, clicks, space, sigma=sigma, dismissed=dismissed)
        return labels.explained, labels.hit, labels.depth
