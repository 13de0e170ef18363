"""Multi-view depth consistency, the check of depth fusion (COLMAP's fusion, MVSNet's geometric filter): a 3D point is
confirmed by a view when the view renders a surface where the point is.

For a point X and a perspective view with centre c that has X inside its image and in front of it, ``r = |X − c|``
and D the distance the view renders at X's projection (its depth map sampled bilinearly, as MVSNet's filter does, or
one ray rendered through X), with a relative tolerance τ:

* the view **agrees** when ``|r − D| ≤ τ D``;
* X is **occluded** when ``r > D (1 + τ)``: the view shows a surface in front of X and cannot judge it;
* otherwise the view **sees past X** (X lies in space it renders empty, ``D = ∞`` where it renders nothing): it sees
  X and disagrees.

A point is confirmed when at least ``min_views`` views other than its own agree: a floater that one view renders is
seen past, or not seen, by the others. A view whose line of sight to X lies within a small angle of the ray X was
seen along has no parallax on X: it would render the same distance wherever X lies along that ray (a far shell of
"sky" that every view renders at about the same distance agrees with itself), so, as in multi-view stereo's
minimum triangulation angle, it does not judge X; its own viewpoint is the 0° case. Depths are nerfstudio's:
distances along unit ray directions, NaN where the ray hits nothing.

A pixel's own render must also place one surface on its ray before its point is fused: where the ray's weights
spread along it (a soft layer; part on a wall, the rest on a far shell behind it) its rendered depth ``m`` (where its
weight reaches a quantile, :mod:`jacobinerf_ns.surface_depth`) may fall where no surface is, and views may still agree
with it. The ray has **one surface** when most of its light stops within the depth tolerance of ``m``: its surface
share (:func:`jacobinerf_ns.surface_depth.surface_share`) is at least ``min_share`` (:func:`one_surface`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence, Tuple

import torch
from torch import Tensor

if TYPE_CHECKING:
    from nerfstudio.cameras.cameras import Cameras

DEPTH_TOLERANCE = 0.03
"""Default τ: 3% of the distance, between two pixel footprints (``2 / fx``) of the sample scene (fx = 46 px) and of
office_0 (fx = 150 px), and 5 cm at 1.7 m: the accuracy the fused point cloud aims at (docs/labelling.md)."""
MIN_AGREEING_VIEWS = 2
"""Default number of other views that must agree: one view's ray can meet another view's ray near a surface by
chance; two confirmations triangulate the point."""
MIN_TRIANGULATION_ANGLE = 2.0
"""Degrees between a point's own ray and a view's line of sight to it below which the view does not judge the point
(no parallax; COLMAP's stereo filter uses 1°). A far shell confirmed only by nearby viewpoints is rejected by it
(docs/labelling.md)."""
CAPTURE_TOLERANCE = 0.03
"""Default relative distance within which a pixel's rendered depth agrees with the capture's, for the pixel to be
fused at the captured depth (a floater's pixel, rendered in front of the captured surface, stays out): τ. Looser
values cover more of the surface with pixels whose labels are less often right (docs/labelling.md)."""
MIN_SURFACE_SHARE = 0.6
"""Default ``min_share`` of :func:`one_surface`: most of the ray's light stops at its surface (docs/labelling.md
#one-surface measures it)."""


@dataclass(frozen=True)
class FusionCheck:
    """What a labelled pixel must pass to enter the point cloud (``jacobinerf-label``'s options of the same meaning).

    At the captured depth ``c``: its rendered depth ``r`` agrees, ``|r − c| ≤ capture_tolerance · c``. At the
    rendered depth: its ray has one surface (:func:`one_surface`, ``min_surface_share``) and at least ``min_views``
    views with ``min_angle`` degrees of parallax agree within ``tolerance`` (:func:`view_support`); ``min_views`` 0:
    neither.
    """

    min_views: int = MIN_AGREEING_VIEWS
    tolerance: float = DEPTH_TOLERANCE
    min_angle: float = MIN_TRIANGULATION_ANGLE
    min_surface_share: float = MIN_SURFACE_SHARE
    capture_tolerance: float = CAPTURE_TOLERANCE


@dataclass(frozen=True)
class DepthView:
    """A view that judges points: a one-camera ``camera`` (nerfstudio's frame) and its ``(H, W)`` rendered ``depth``
    at the camera's resolution (distance along each pixel's unit ray, NaN where the ray hits nothing)."""

    camera: Cameras
    depth: Tensor


@dataclass(frozen=True)
class ViewSupport:
    """Per point, ``(P,)`` counts of the views that agree with it and of those that see it (agree or see past it)."""

    agreeing: Tensor
    seeing: Tensor

    def confirmed(self, min_views: int) -> Tensor:
        """``(P,)`` bool: at least ``min_views`` views agree."""
        return self.agreeing >= min_views


def camera_centre(camera: Cameras) -> Tensor:
    """``(3,)`` centre of a one-camera ``camera``."""
    return camera.camera_to_worlds[0, :3, 3]


def project(points: Tensor, camera: Cameras) -> Tuple[Tensor, Tensor, Tensor]:
    """``(P, 3)`` points → ``(P, 2)`` continuous ``(column, row)`` in a one-camera perspective ``camera`` (pixel
    ``(y, x)``'s centre is ``(x + 0.5, y + 0.5)``), ``(P,)`` distances to its centre, and ``(P,)`` whether the point
    is in front of the camera and inside its image.

    The inverse of nerfstudio's ray generation: OpenGL pose, OpenCV pinhole with nerfstudio's radial-tangential
    distortion ``[k1, k2, k3, k4, p1, p2]``. With distortion, points whose undistorted radius exceeds the image
    corners' are outside (the polynomial folds far-off points back into the image).
    """
    from nerfstudio.cameras.camera_utils import radial_and_tangential_undistort
    from nerfstudio.cameras.cameras import CameraType

    if int(camera.camera_type.flatten()[0]) != CameraType.PERSPECTIVE.value:
        raise ValueError("depth consistency projects into perspective cameras only")
    pose = camera.camera_to_worlds[0].to(points)
    local = (points - pose[:, 3]) @ pose[:, :3]  # OpenGL camera frame: x right, y up, looking along -z
    depth = -local[:, 2]
    valid = depth > 0
    x = local[:, 0] / depth.clamp_min(1e-12)
    y = -local[:, 1] / depth.clamp_min(1e-12)  # OpenCV: y down
    fx, fy, cx, cy = (float(value.flatten()[0]) for value in (camera.fx, camera.fy, camera.cx, camera.cy))
    width, height = int(camera.width.flatten()[0]), int(camera.height.flatten()[0])
    params = None if camera.distortion_params is None else camera.distortion_params.reshape(-1).to(points)
    if params is not None and bool((params != 0).any()):
        k1, k2, k3, k4, p1, p2 = params
        radius = x * x + y * y
        corners = torch.tensor([[0.0, 0.0], [width, 0.0], [0.0, height], [width, height]]).to(points)
        corners = torch.stack([(corners[:, 0] - cx) / fx, (corners[:, 1] - cy) / fy], dim=-1)
        undistorted = radial_and_tangential_undistort(corners, params.expand(4, 6))
        valid &= radius <= undistorted.square().sum(dim=-1).max()
        radial = 1.0 + radius * (k1 + radius * (k2 + radius * (k3 + radius * k4)))
        x, y = (
            x * radial + 2 * p1 * x * y + p2 * (radius + 2 * x * x),
            y * radial + 2 * p2 * x * y + p1 * (radius + 2 * y * y),
        )
    coords = torch.stack([fx * x + cx, fy * y + cy], dim=-1)
    inside = valid & (coords[:, 0] >= 0) & (coords[:, 0] < width) & (coords[:, 1] >= 0) & (coords[:, 1] < height)
    return coords, (points - pose[:, 3]).norm(dim=-1), inside


def sample_depth(depth: Tensor, coords: Tensor) -> Tensor:
    """``(P,)`` the ``(H, W)`` ``depth`` at continuous ``(column, row)`` ``coords`` ``(P, 2)`` inside the image,
    bilinear over the 2 × 2 pixels around each (their centres at ``+ 0.5``) that hit a surface; ``inf`` (nothing
    rendered there) where those carry less than half of the weight."""
    height, width = depth.shape
    shifted = coords - 0.5
    corner = shifted.floor()
    fraction = shifted - corner
    total = torch.zeros(len(coords), dtype=coords.dtype, device=coords.device)
    weights = torch.zeros_like(total)
    for dy in (0, 1):
        for dx in (0, 1):
            rows = (corner[:, 1].long() + dy).clamp(0, height - 1)
            columns = (corner[:, 0].long() + dx).clamp(0, width - 1)
            values = depth[rows, columns].to(coords)
            weight = (fraction[:, 0] if dx else 1 - fraction[:, 0]) * (fraction[:, 1] if dy else 1 - fraction[:, 1])
            weight = torch.where(torch.isfinite(values), weight, torch.zeros_like(weight))
            total += weight * torch.nan_to_num(values)
            weights += weight
    return torch.where(weights >= 0.5, total / weights.clamp_min(1e-12), torch.full_like(total, float("inf")))


def agreement(distance: Tensor, rendered: Tensor, tolerance: float) -> Tuple[Tensor, Tensor]:
    """Whether a view agrees with points at ``distance`` from it, given the distance it renders there (``inf``:
    nothing), and whether it sees them (agrees or sees past them); ``(P,)``."""
    agrees = (distance - rendered).abs() <= tolerance * rendered
    return agrees, ~(distance > rendered * (1.0 + tolerance))


def one_surface(surface_share: Tensor, min_share: float) -> Tensor:
    """Whether each ray places one surface: its ``surface_share`` (the share of its weight within the depth tolerance
    of its rendered depth) is at least ``min_share`` (False where it is NaN)."""
    return surface_share >= min_share


def parallax(points: Tensor, viewpoints: Tensor, centre: Tensor, min_angle: float) -> Tensor:
    """``(P,)`` bool: a view at ``centre`` ``(3,)`` sees each of the ``(P, 3)`` points at least ``min_angle`` degrees
    away from the ray it was seen along from ``viewpoints`` ``(P, 3)`` or ``(1, 3)``."""
    own = torch.nn.functional.normalize(points - viewpoints, dim=-1)
    other = torch.nn.functional.normalize(points - centre.to(points), dim=-1)
    return (own * other).sum(dim=-1) <= math.cos(math.radians(min_angle))


def view_support(
    points: Tensor,
    views: Sequence[DepthView],
    tolerance: float,
    viewpoints: Optional[Tensor] = None,
    min_angle: float = MIN_TRIANGULATION_ANGLE,
) -> ViewSupport:
    """How many ``views`` agree with and see each of the ``(P, 3)`` points (nerfstudio's frame).

    ``viewpoints`` ``(P, 3)`` or ``(1, 3)``: where each point was seen from (the frame it was back-projected from, a
    click's ray origin); a view within ``min_angle`` degrees of that ray (:func:`parallax`) does not judge it. Memory
    grows with P, not with the number of views.
    """
    agreeing = torch.zeros(len(points), dtype=torch.long, device=points.device)
    seeing = torch.zeros_like(agreeing)
    for view in views:
        coords, distance, inside = project(points, view.camera)
        if viewpoints is not None:
            inside &= parallax(points, viewpoints, camera_centre(view.camera), min_angle)
        index = torch.nonzero(inside).flatten()
        rendered = sample_depth(view.depth.to(points.device), coords[index])
        agrees, sees = agreement(distance[index], rendered, tolerance)
        agreeing[index] += agrees.long()
        seeing[index] += sees.long()
    return ViewSupport(agreeing=agreeing, seeing=seeing)


def unconfirmed_message(agreeing: int, seeing: int, min_views: int) -> str:
    """Why a clicked surface may be a floater (a surface few views render), for a click that ``min_views`` other
    training views do not confirm."""
    views = (
        f"only {agreeing} of the {seeing} other training views that see its surface render it there"
        if seeing
        else "no other training view sees its surface"
    )
    return (
        f"{views} ({min_views} needed): it may be a floater, and its class would label the floater; click where "
        "several training views show the object."
    )
