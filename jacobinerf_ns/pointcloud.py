"""Point clouds out of renders: back-projected depth, in the poses' original frame, voxel-downsampled with a
majority vote of labels, written as PLY (plyfile).

PLY vertices carry float ``x y z``, uchar ``red green blue`` and, for labelled clouds, an int32 ``label``; Open3D's
tensor API (``open3d.t.io.read_point_cloud(path).point["label"]``), CloudCompare and MeshLab read them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Tuple

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


def depth_file_scale(outputs: DataparserOutputs) -> float:
    """Scene units per unit of the dataset's depth files: ``depth_unit_scale_factor`` × the dataparser's scale (the
    poses' normalisation), as nerfstudio's depth datasets scale them."""
    return float(outputs.metadata["depth_unit_scale_factor"]) * float(outputs.dataparser_scale)


def captured_distance(camera: Cameras, depth_file: Path, scale: float, euclidean: bool = False) -> Tensor:
    """``(H, W)`` a capture's depth map as distances along a one-camera ``camera``'s unit rays (what
    :func:`backproject` takes), NaN where the capture has no depth (0).

    Read as nerfstudio's depth loss reads it (``get_depth_image_from_path``: file values × ``scale``, resized to the
    camera with nearest neighbours): z-depth, so the distance is ``z · |d̃|`` with ``d̃`` the ray direction before
    normalisation (nerfstudio's ``directions_norm``); ``euclidean`` maps already hold distances.
    """
    from nerfstudio.data.utils.data_utils import get_depth_image_from_path

    height, width = int(camera.height.flatten()[0]), int(camera.width.flatten()[0])
    depth = get_depth_image_from_path(Path(depth_file), height, width, scale)[..., 0]
    if not euclidean:
        rays = camera.generate_rays(camera_indices=0, keep_shape=True)
        depth = depth * rays.metadata["directions_norm"][..., 0].to(depth)
    return torch.where(depth > 0, depth, torch.full_like(depth, float("nan")))


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


MERGE_ROWS = 4_000_000
"""Pending (voxel, label) rows of a :class:`VoxelVote` above which they are merged."""


class VoxelVote:
    """Voxel downsampling with a majority vote of labels, accumulated one batch of points (a frame) at a time.

    A voxel's point and colour are the means of the points in it; its label is the most frequent non-zero label
    (0 = unlabelled only when no labelled point fell in it; ties go to the smaller id). Memory grows with the
    occupied voxels × labels, not with the points added.
    """

    def __init__(self, voxel_size: float) -> None:
        self.voxel_size = voxel_size
        self._pending: List[Tuple[np.ndarray, ...]] = []
        self._rows = 0

    def add(self, points: np.ndarray, colors: np.ndarray, labels: np.ndarray) -> None:
        """``(P, 3)`` points, ``(P, 3)`` uint8 colours and ``(P,)`` integer labels."""
        keys = np.column_stack([np.floor(points / self.voxel_size).astype(np.int64), labels.astype(np.int64)])
        reduced = _reduce(keys, np.ones(len(points)), points.astype(np.float64), colors.astype(np.float64))
        self._pending.append(reduced)
        self._rows += len(reduced[0])
        if self._rows > MERGE_ROWS:
            self._pending = [_reduce(*(np.concatenate(part) for part in zip(*self._pending)))]
            self._rows = len(self._pending[0][0])

    def result(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(V, 3)`` float32 points, ``(V, 3)`` uint8 colours and ``(V,)`` int32 labels, one per occupied voxel."""
        if self._rows == 0:  # nothing added, or only empty batches
            return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8), np.zeros(0, np.int32)
        keys, counts, position_sums, color_sums = _reduce(*(np.concatenate(part) for part in zip(*self._pending)))
        _, voxel = np.unique(keys[:, :3], axis=0, return_inverse=True)
        voxel = voxel.reshape(-1)
        labels = keys[:, 3]
        order = np.lexsort((-labels, counts, labels != 0, voxel))  # the winner of each voxel sorts last
        last = np.append(voxel[order][1:] != voxel[order][:-1], True)
        totals = np.bincount(voxel, weights=counts)[:, None]
        points = _sum_by(voxel, position_sums) / totals
        colors = np.clip(np.round(_sum_by(voxel, color_sums) / totals), 0, 255)
        return points.astype(np.float32), colors.astype(np.uint8), labels[order[last]].astype(np.int32)


def _sum_by(groups: np.ndarray, values: np.ndarray) -> np.ndarray:
    return np.stack([np.bincount(groups, weights=values[:, axis]) for axis in range(values.shape[1])], axis=1)


def _reduce(keys: np.ndarray, counts: np.ndarray, position_sums: np.ndarray, color_sums: np.ndarray):
    """Rows with equal ``keys`` (voxel, label) merged: counts and sums added."""
    unique, group = np.unique(keys, axis=0, return_inverse=True)
    group = group.reshape(-1)
    return unique, np.bincount(group, weights=counts), _sum_by(group, position_sums), _sum_by(group, color_sums)
