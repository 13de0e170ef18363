"""A point cloud against a scene's true surface: the ground-truth depth maps of a nerfstudio-data folder
back-projected, each true point with the distance within which a point counts as on it, ``max(min_distance,
footprints × distance / fx)`` (``footprints`` pixel footprints of its own frame).

* accuracy: share of the cloud's points within the tolerance of their nearest true point;
* completeness: share of the true points with a cloud point within their tolerance (of every frame, or of the frames
  an export labelled: the surface it could cover; or of their annotated surface, void not counted: what a click set
  naming the scene's classes is asked to label);
* label accuracy: share of the cloud's points on the true surface whose label names the true class of their nearest
  true point (the scene's semantic maps; void not scored);
* background: share of the pixels without a true surface (depth 0) that an export labels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Collection, Dict, Optional, Tuple

import numpy as np

MIN_DISTANCE = 0.05
"""Metres (the poses' units) within which a point always counts as on the surface."""
FOOTPRINTS = 2.0
"""Pixel footprints within which a point counts as on the surface, where that is more than :data:`MIN_DISTANCE`."""


@dataclass(frozen=True)
class TrueSurface:
    points: np.ndarray
    """``(N, 3)`` true surface points in the poses' frame."""
    tolerances: np.ndarray
    """``(N,)`` distance within which a point counts as on each."""
    stems: np.ndarray
    """``(N,)`` stem of the image of each point's frame."""
    classes: Optional[np.ndarray] = None
    """``(N,)`` true class name of each (``semantics_file_path`` and ``classes.json``; ``None`` without them)."""

    @cached_property
    def tree(self):
        """A KD-tree of :attr:`points` (scipy's ``cKDTree``), built once for every query against this surface."""
        from scipy.spatial import cKDTree

        return cKDTree(self.points)


def _frames(data_dir: Path) -> Tuple[dict, list]:
    meta = json.loads((Path(data_dir) / "transforms.json").read_text())
    return meta, [frame for frame in meta["frames"] if "depth_file_path" in frame]


def true_depth(data_dir: Path, frame: dict, depth_scale: float) -> np.ndarray:
    """``(H, W)`` z-depth of one frame of ``transforms.json`` in the poses' units (0: no surface)."""
    from PIL import Image

    return np.asarray(Image.open(Path(data_dir) / frame["depth_file_path"]), dtype=np.float64) * depth_scale


def true_surface(
    data_dir: Path,
    depth_scale: float = 1e-3,
    min_distance: float = MIN_DISTANCE,
    footprints: float = FOOTPRINTS,
) -> TrueSurface:
    """The true surface of every frame with a ``depth_file_path`` (pinhole, OpenGL poses; ``depth_scale``: poses'
    units per depth unit, nerfstudio's ``depth_unit_scale_factor``)."""
    from PIL import Image

    meta, frames = _frames(data_dir)
    names = _class_names(data_dir)
    with_classes = names is not None and all("semantics_file_path" in frame for frame in frames)
    points, tolerances, stems, classes = [], [], [], []
    for frame in frames:
        depth = true_depth(data_dir, frame, depth_scale)
        stems.append(np.full(int((depth > 0).sum()), Path(frame["file_path"]).stem, dtype=object))
        if with_classes:
            semantics = np.asarray(Image.open(Path(data_dir) / frame["semantics_file_path"]))
            classes.append(semantics[depth > 0])
        fx, fy, cx, cy = (float(frame.get(key, meta.get(key))) for key in ("fl_x", "fl_y", "cx", "cy"))
        scale = depth.shape[1] / float(frame.get("w", meta.get("w", depth.shape[1])))  # depth maps may be resized
        ys, xs = np.mgrid[: depth.shape[0], : depth.shape[1]] + 0.5
        rays = np.stack([(xs - cx * scale) / (fx * scale), -(ys - cy * scale) / (fy * scale), -np.ones_like(xs)])
        pose = np.array(frame["transform_matrix"], dtype=np.float64)
        valid = depth > 0
        camera = (rays * depth)[:, valid]
        points.append(camera.T @ pose[:3, :3].T + pose[:3, 3])
        tolerances.append(np.maximum(min_distance, footprints * np.linalg.norm(camera, axis=0) / (fx * scale)))
    true_classes = None
    if with_classes:
        ids = np.concatenate(classes)
        table = np.array([names.get(index, VOID) for index in range(int(ids.max(initial=0)) + 1)], dtype=object)
        true_classes = table[ids]
    return TrueSurface(np.concatenate(points), np.concatenate(tolerances), np.concatenate(stems), true_classes)


VOID = "void"
"""The true class that is not scored: semantic id 0 (``void`` in Replica's and the sample scene's ``classes.json``)."""


def _class_names(data_dir: Path) -> Optional[Dict[int, str]]:
    """Semantic id → name from ``classes.json`` (``semantic_classes``: index, name), id 0 as :data:`VOID`."""
    path = Path(data_dir) / "classes.json"
    if not path.is_file():
        return None
    rows = json.loads(path.read_text()).get("semantic_classes", [])
    return {**{int(row["index"]): str(row["name"]) for row in rows}, 0: VOID}


@dataclass(frozen=True)
class CloudScore:
    """``(P, 3)`` points (the poses' frame) against one true surface; each nearest-neighbour query is made once, however
    many figures are read."""

    points: np.ndarray
    truth: TrueSurface

    @cached_property
    def nearest(self) -> Tuple[np.ndarray, np.ndarray]:
        """``(P,)`` each point's distance to its nearest true point, and that point's index."""
        return self.truth.tree.query(self.points)

    @cached_property
    def on_surface(self) -> np.ndarray:
        """``(P,)`` whether each point lies within its nearest true point's tolerance."""
        distance, nearest = self.nearest
        return distance <= self.truth.tolerances[nearest]

    @cached_property
    def covered(self) -> np.ndarray:
        """``(N,)`` whether each true point has a point of the cloud within its tolerance."""
        from scipy.spatial import cKDTree

        return cKDTree(self.points).query(self.truth.points)[0] <= self.truth.tolerances

    def of_frames(self, frames: Optional[Collection[str]]) -> np.ndarray:
        """``(N,)`` whether each true point belongs to a frame whose image stem is in ``frames`` (``None``: every
        frame)."""
        return np.ones(len(self.truth.stems), dtype=bool) if frames is None else np.isin(self.truth.stems, list(frames))

    def shares(self, frames: Optional[Collection[str]] = None) -> Dict[str, float]:
        """Accuracy, completeness (of the true surface of the frames whose image stems are ``frames``; ``None``: of
        every frame) and the median distance to the truth."""
        if len(self.points) == 0:
            return {"accuracy": float("nan"), "completeness": 0.0, "median_distance": float("nan")}
        covered = self.covered[self.of_frames(frames)]
        return {
            "accuracy": float(np.mean(self.on_surface)),
            "completeness": float(np.mean(covered)) if len(covered) else 0.0,
            "median_distance": float(np.median(self.nearest[0])),
        }

    def annotated_completeness(self, frames: Optional[Collection[str]] = None) -> Optional[float]:
        """Completeness (as :meth:`shares`) of the true surface whose class is not void; ``None`` without true
        classes or such a surface."""
        if self.truth.classes is None:
            return None
        annotated = (self.truth.classes != VOID) & self.of_frames(frames)
        if not annotated.any():
            return None
        return float(np.mean(self.covered[annotated])) if len(self.points) else 0.0

    def label_accuracy(self, names: np.ndarray) -> Optional[float]:
        """Share of the points on the true surface whose class ``names`` ``(P,)`` is the true class of their nearest
        true point (true void not scored); ``None`` without true classes or such points."""
        if self.truth.classes is None or len(self.points) == 0:
            return None
        true_names = self.truth.classes[self.nearest[1]]
        scored = self.on_surface & (true_names != VOID)
        return float(np.mean(names[scored] == true_names[scored])) if scored.any() else None


def background_share(export_dir: Path, data_dir: Path, depth_scale: float = 1e-3) -> Optional[float]:
    """Share of the pixels without a true surface that the export's ``ids/`` label (``None``: no such pixel)."""
    from PIL import Image

    _, frames = _frames(data_dir)
    background = labelled = 0
    for frame in frames:
        ids_path = Path(export_dir) / "ids" / f"{Path(frame['file_path']).stem}.png"
        if not ids_path.is_file():
            continue
        ids = np.asarray(Image.open(ids_path))
        empty = Image.fromarray((true_depth(data_dir, frame, depth_scale) == 0).astype(np.uint8))
        empty = np.asarray(empty.resize(ids.shape[::-1], Image.NEAREST)).astype(bool)
        background += int(empty.sum())
        labelled += int((empty & (ids != 0)).sum())
    return labelled / background if background else None
