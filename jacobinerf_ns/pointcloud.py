"""Point clouds out of renders: back-projected depth, in the poses' original frame, written as PLY (plyfile).

PLY vertices carry float ``x y z``, uchar ``red green blue`` and, for labelled clouds, an int32 ``label``; Open3D's
tensor API, CloudCompare and MeshLab read them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np
import torch
from torch import Tensor

from jacobinerf_ns import files

if TYPE_CHECKING:
    from nerfstudio.cameras.cameras import Cameras
    from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs


def backproject(camera: Cameras, depth: Tensor) -> Tensor:
    """``(H, W, 3)`` points ``o + t d`` of a one-camera ``camera``'s rays at the rendered ``depth`` ``(H, W[, 1])``.

    nerfstudio's depth output is the distance along its (unit-length) ray directions.
    """
    rays = camera.generate_rays(camera_indices=0, keep_shape=True)
    return rays.origins + rays.directions * depth.reshape(*depth.shape[:2], 1).to(rays.origins)


def to_original_frame(points: Tensor, outputs: DataparserOutputs) -> Tensor:
    """``(P, 3)`` points from nerfstudio's normalised frame to the frame of the poses the dataparser read."""
    if len(points) == 0:
        return points
    poses = torch.cat([torch.eye(3).expand(len(points), 3, 3), points[..., None].float()], dim=-1)
    return outputs.transform_poses_to_original_space(poses)[:, :3, 3]


def write_ply(path: Path, points: np.ndarray, colors: np.ndarray, labels: Optional[np.ndarray] = None) -> None:
    """Binary little-endian PLY: ``(P, 3)`` float points, ``(P, 3)`` uint8 colours, optional ``(P,)`` int32 labels."""
    from plyfile import PlyData, PlyElement

    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
    if labels is not None:
        fields.append(("label", "<i4"))
    vertex = np.empty(len(points), dtype=fields)
    vertex["x"], vertex["y"], vertex["z"] = points[:, 0], points[:, 1], points[:, 2]
    vertex["red"], vertex["green"], vertex["blue"] = colors[:, 0], colors[:, 1], colors[:, 2]
    if labels is not None:
        vertex["label"] = labels
    with files.atomic_path(path) as temporary:
        PlyData([PlyElement.describe(vertex, "vertex")]).write(str(temporary))
