"""Whether the training views agree on a viewer click's surface (:mod:`jacobinerf_ns.depth_consistency`), as
``jacobinerf-label`` checks its clicks: one eval pass of one ray per training view that has the surface point in its
image, from the view's centre through the point (its rendered depth along that exact line of sight)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

import torch

from jacobinerf_ns.depth_consistency import (
    DEPTH_TOLERANCE,
    MIN_AGREEING_VIEWS,
    MIN_TRIANGULATION_ANGLE,
    agreement,
    camera_centre,
    parallax,
    project,
    unconfirmed_message,
)
from jacobinerf_ns.propagation.labelling import MIN_ACCUMULATION
from jacobinerf_ns.propagation.rendering import eval_head_inputs
from jacobinerf_ns.scene import RAY_PIXEL_AREA, Scene

if TYPE_CHECKING:
    from jacobinerf_ns.model import JacobiNerfModel
    from jacobinerf_ns.viewer.click_evaluation import EvaluatedClick


class SurfaceCheck:
    """Checks clicks on one model against the training views of ``scene()`` (``None``: nothing to check against)."""

    def __init__(
        self,
        model: JacobiNerfModel,
        scene: Callable[[], Optional[Scene]],
        min_views: int = MIN_AGREEING_VIEWS,
        tolerance: float = DEPTH_TOLERANCE,
        min_angle: float = MIN_TRIANGULATION_ANGLE,
    ) -> None:
        self.model, self.scene, self.min_views, self.tolerance = model, scene, min_views, tolerance
        self.min_angle = min_angle

    def warning(self, click: EvaluatedClick) -> str:
        """``""`` when at least ``min_views`` training views with ``min_angle`` degrees of parallax on the click's
        surface (:func:`~jacobinerf_ns.depth_consistency.parallax`; its own viewpoint has none) render a surface
        there; else a sentence saying it may be a floater (to append to the status)."""
        from nerfstudio.cameras.cameras import CameraType
        from nerfstudio.cameras.rays import RayBundle

        scene = self.scene()
        cameras = [
            frame.camera
            for frame in (scene.frames if scene is not None else ())
            if frame.split == "train" and int(frame.camera.camera_type.flatten()[0]) == CameraType.PERSPECTIVE.value
        ]
        if not cameras:
            return ""
        origin, point = torch.tensor(click.origin), torch.tensor(click.surface)
        centres, distances = [], []
        for camera in cameras:
            _, distance, inside = project(point[None], camera)
            centre = camera_centre(camera).to(point)
            if bool(inside[0]) and bool(parallax(point[None], origin[None], centre, self.min_angle)[0]):
                centres.append(centre)
                distances.append(distance)
        agreeing = seeing = 0
        if centres:
            origins = torch.stack(centres)
            bundle = RayBundle(
                origins=origins,
                directions=torch.nn.functional.normalize(point - origins, dim=-1),
                pixel_area=torch.full((len(origins), 1), RAY_PIXEL_AREA),
                camera_indices=torch.zeros(len(origins), 1, dtype=torch.long),
            )
            outputs, _ = eval_head_inputs(self.model, bundle)
            hit = outputs["accumulation"].reshape(-1).cpu() >= MIN_ACCUMULATION
            depth = outputs["depth"].reshape(-1).cpu().to(point)
            rendered = torch.where(hit, depth, torch.full_like(depth, float("inf")))
            agrees, sees = agreement(torch.cat(distances), rendered, self.tolerance)
            agreeing, seeing = int(agrees.sum()), int(sees.sum())
        if agreeing >= self.min_views:
            return ""
        return f" Warning: {unconfirmed_message(agreeing, seeing, self.min_views)}"
