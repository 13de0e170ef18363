"""*Suggest next click*: where in a view the label clicks explain the pixels least
(:func:`~jacobinerf_ns.propagation.labelling.weakest_region` of
:func:`~jacobinerf_ns.propagation.labelling.explained`), which training view they explain least, and suggestions the
user had nothing to label at (*Skip suggestion*).
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


@dataclass(frozen=True)
class Suggestion:
    """Where in one view the next label click helps most: the region the clicks explain least
    (:func:`~.labelling.weakest_region` of :func:`~.labelling.explained`)."""

    pixel: Tuple[int, int]
    """``(y, x)`` in the render it was found in."""
    explained: float
    """How well the clicks explain that pixel (best |cos| to a click's Jacobian)."""
    view_explained: float
    """The same, averaged over the view's pixels that hit a surface."""
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


class Suggestions:
    """Suggestions for the label clicks of one model, judged with the settings' σ and space."""

    def __init__(self, model: JacobiNerfModel, settings: ViewerSettings, labels: LabelClicks) -> None:
        self.model, self.settings, self.labels = model, settings, labels
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
        """How well the clicks explain ``camera``'s render on average, and its least-explained region."""
        dismissed = torch.cat(self.dismissed) if self.dismissed else None
        sigma, space = self.settings.sigma, self.settings.space
        labels = label_frame(self.model, camera, clicks, space, sigma=sigma, dismissed=dismissed)
        view_explained = mean_over_hits(labels.explained, labels.hit)
        pixel = weakest_region(labels.explained, labels.hit)
        if pixel is None:
            return view_explained, None
        y, x = pixel
        ray = camera.generate_rays(camera_indices=0, keep_shape=True)[y, x]
        reach = SUGGESTION_WINDOW  # the marker's footprint on screen, with a margin of its own size
        nearest = float(labels.depth[max(0, y - reach) : y + reach + 1, max(0, x - reach) : x + reach + 1].min())
        distance = MARKER_DEPTH * nearest
        marker = ray.origins.reshape(3).cpu() + distance * ray.directions.reshape(3).cpu()
        return view_explained, Suggestion(
            pixel=pixel,
            explained=float(labels.explained[y, x]),
            view_explained=view_explained,
            marker=vector(marker),
            marker_size=distance * SUGGESTION_WINDOW / float(camera.fx[0, 0]),
            ray=ray.reshape((1,)),
        )
