"""The folder ``jacobinerf-label`` writes: per-frame labels, resuming an interrupted export, and the labelled scene
and point cloud it ends with.

    OUT/export.json              what made it: click set (digest), run, settings — written first
    OUT/ids/<stem>.png           class ids (uint8/uint16), 0 = unlabelled, id = position in classes + 1
    OUT/overlay/<stem>.png       class colours over the image
    OUT/confidence/<stem>.png    8-bit confidence (margin of the two best class scores; labelling.md)
    OUT/depth/<stem>.npy         rendered depth along each pixel's ray: where its weight reaches the run's surface
                                 quantile (surface_depth.py; nerfstudio's frame, NaN: hits nothing)
    OUT/surface_share/<stem>.npy   the share of each pixel's ray weight at its rendered depth (NaN: hits nothing)
    OUT/labelled_points.ply      labelled pixels fused at the captured depth where the rendered one agrees with it,
                                 else at depth/ where the ray has one surface and the views agree; voxel majority
                                 vote, original frame, RGB + int32 label
    OUT/classes.json             id → name, colour (the jacobinerf-data layout)
    OUT/transforms.json          the input's frames + semantics_file_path → ids/: written last, marks a complete export

Every file is written then renamed, so a frame is complete when its five files exist; a rerun with the same click
set, run and settings keeps those frames and renders the others.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from jacobinerf_ns import files
from jacobinerf_ns.depth_consistency import (
    DepthView,
    FusionCheck,
    agreement,
    camera_centre,
    one_surface,
    view_support,
)
from jacobinerf_ns.errors import JacobiNerfError
from jacobinerf_ns.labels import read_label_map
from jacobinerf_ns.pointcloud import VoxelVote, backproject, to_original_frame, write_ply
from jacobinerf_ns.visualization import label_image, label_overlay, load_rgb, to_uint8

if TYPE_CHECKING:
    from jacobinerf_ns.propagation.labelling import FrameLabels
    from jacobinerf_ns.scene import Frame, Scene

MANIFEST = "export.json"
FRAME_FILES = {"ids": ".png", "overlay": ".png", "confidence": ".png", "depth": ".npy", "surface_share": ".npy"}
POINTS, CLASSES, TRANSFORMS = "labelled_points.ply", "classes.json", "transforms.json"
UNLABELLED = "unlabelled"
PATH_KEYS = ("file_path", "depth_file_path", "mask_path")
"""Per-frame paths of nerfstudio-data that are relative to the data folder."""
DROPPED_KEYS = ("semantics_file_path", "instance_file_path")
IDENTITY = {
    "clicks": "click set",
    "config": "--load-config",
    "checkpoint": "checkpoint",
    "space": "--space",
    "mode": "--mode",
    "sigma": "--sigma",
    "min_confidence": "--min-confidence",
    "min_explained": "--min-explained",
    "min_resemblance": "--min-resemblance",
    "min_class_score": "--min-class-score",
    "propagation": "--propagation",
    "surface_pixels": "--surface-pixels",
    "masks": "--masks",
}
"""What must match for a rerun to keep an earlier export's frames (``--frames`` and the point cloud's options need not),
and how messages name it."""
FOOTPRINT_SAMPLES = 4096
"""Pixels per frame whose footprint sets the default voxel size."""
FOOTPRINT_PERCENTILE = 10
"""The default voxel is the footprint at this percentile of the distances: near surfaces keep their detail."""


@dataclass(frozen=True)
class Fusion:
    """What :meth:`ExportFolder.write_points` fused: the cloud's ``points`` and ``voxel``, and per class id (index 0,
    unlabelled, stays 0) the ``labelled`` pixels that hit a surface and the ``kept`` ones that entered the cloud."""

    points: int
    voxel: float
    labelled: np.ndarray
    kept: np.ndarray

    @property
    def kept_share(self) -> float:
        """Share of all labelled pixels that entered the cloud."""
        return float(self.kept.sum()) / max(int(self.labelled.sum()), 1)

    def class_shares(self) -> Dict[int, float]:
        """Class id → share of its labelled pixels that entered the cloud, for the classes some pixel has."""
        return {int(i): float(self.kept[i] / self.labelled[i]) for i in np.flatnonzero(self.labelled) if i > 0}


def add_counts(counts: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``counts`` (per id) plus the occurrences of each of ``ids``, grown to the largest id."""
    more = np.bincount(ids, minlength=len(counts))
    return more + np.pad(counts, (0, len(more) - len(counts)))


@dataclass(frozen=True)
class ExportFolder:
    root: Path

    def frame_path(self, kind: str, frame: Frame) -> Path:
        return self.root / kind / f"{frame.stem}{FRAME_FILES[kind]}"

    def is_written(self, frame: Frame) -> bool:
        return all(self.frame_path(kind, frame).is_file() for kind in FRAME_FILES)

    def prepare(self, identity: Dict, scene: Scene, overwrite: bool) -> None:
        """Checks that the folder may receive this export (else a :class:`JacobiNerfError` saying why and what to
        do), clears what an earlier export wrote with ``overwrite``, and records ``identity``."""
        root = self.root
        if root.exists() and not root.is_dir():
            raise JacobiNerfError(f"--output-dir {root} is a file: give a folder (new or empty).")
        if root.resolve() == scene.data_dir.resolve():
            raise JacobiNerfError(
                f"--output-dir {root} is the data folder of the run: the export writes its own transforms.json, so "
                "give another folder."
            )
        previous = self._identity()
        if root.is_dir() and any(root.iterdir()) and not overwrite:
            if previous is None:
                raise JacobiNerfError(
                    f"--output-dir {root} is not empty and holds no jacobinerf-label export: give a new or empty "
                    "folder, or pass --overwrite to write the export there anyway."
                )
            changed = [
                f"{name} {previous.get(key)!r} (now {identity[key]!r})" if key != "clicks" else "another click set"
                for key, name in IDENTITY.items()
                if previous.get(key) != identity[key]
            ]
            if changed:
                raise JacobiNerfError(
                    f"--output-dir {root} holds an export made with {'; '.join(changed)}: pass --overwrite to "
                    "replace it, or give another folder."
                )
        try:
            if overwrite:
                self._remove_export()
            (root / TRANSFORMS).unlink(missing_ok=True)  # the export is incomplete until it is written again
            for kind in FRAME_FILES:
                (root / kind).mkdir(parents=True, exist_ok=True)
                for partial in (root / kind).glob(f".*{files.PARTIAL}-*"):  # left by an interrupted write
                    partial.unlink()
            files.write_json(root / MANIFEST, identity)
        except OSError as error:
            raise JacobiNerfError(f"Cannot write to --output-dir {root} ({error}): give a writable folder.") from None

    def _identity(self) -> Optional[Dict]:
        try:
            return json.loads((self.root / MANIFEST).read_text())
        except (OSError, ValueError):
            return None

    def _remove_export(self) -> None:
        """Removes what an export writes (and nothing else of the folder), its completeness marker first."""
        for name in (TRANSFORMS, MANIFEST, POINTS, CLASSES):
            (self.root / name).unlink(missing_ok=True)
        for kind in FRAME_FILES:
            shutil.rmtree(self.root / kind, ignore_errors=True)

    def write_frame(self, frame: Frame, labels: FrameLabels, colors: torch.Tensor) -> None:
        height, width = labels.ids.shape
        rgb = load_rgb(frame.image, height, width)
        for kind in ("depth", "surface_share"):
            along_rays = getattr(labels, kind)
            along_rays = torch.where(labels.hit, along_rays, torch.full_like(along_rays, float("nan")))
            with files.atomic_path(self.frame_path(kind, frame)) as temporary:
                np.save(temporary, along_rays.numpy().astype(np.float32))
        files.save_image(self.frame_path("confidence", frame), to_uint8(labels.confidence))
        files.save_image(self.frame_path("overlay", frame), to_uint8(label_overlay(rgb, labels.ids, colors)))
        files.save_image(self.frame_path("ids", frame), label_image(labels.ids))

    def depth_views(self, frames: Sequence[Frame]) -> List[DepthView]:
        """The frames' rendered depth (``depth/``), as views that judge points."""
        return [DepthView(frame.camera, self._along_rays(frame)) for frame in frames]

    def write_points(
        self,
        scene: Scene,
        frames: Sequence[Frame],
        voxel_size: Optional[float],
        judges: Sequence[DepthView],
        check: FusionCheck,
        captured: Optional[Callable[[Frame], Optional[torch.Tensor]]] = None,
    ) -> Fusion:
        """Fuses the frames' labelled pixels (id ≠ 0) into ``labelled_points.ply`` (image colours, ids; voxel
        majority vote); returns what it fused, per class.

        Where ``captured(frame)`` gives the capture's depth (distances along the rays, NaN: none;
        :func:`~jacobinerf_ns.pointcloud.captured_distance`), a pixel is fused at the captured depth, and only if the
        rendered depth agrees with it (its label is the captured surface's, not a floater's); elsewhere at the
        rendered depth, where its ray has one surface that the ``judges`` agree on. ``check`` holds the thresholds
        (:class:`~jacobinerf_ns.depth_consistency.FusionCheck`).

        Default voxel: the footprint of one pixel (``distance / fx``) at the near end of the rendered distances
        (:data:`FOOTPRINT_PERCENTILE`), so the cloud keeps about the detail of one view whatever the scene's units,
        and far floaters do not coarsen it.
        """
        if voxel_size is None:
            footprints = np.concatenate([self._footprints(scene, frame) for frame in frames])
            voxel_size = float(np.percentile(footprints, FOOTPRINT_PERCENTILE)) if len(footprints) else 1.0
        vote = VoxelVote(voxel_size)
        labelled = kept = np.zeros(1, dtype=np.int64)
        for frame in frames:
            rendered = self._along_rays(frame)
            ids = torch.from_numpy(read_label_map(self.frame_path("ids", frame)).astype(np.int64))
            chosen = torch.isfinite(rendered) & (ids != 0)
            labelled = add_counts(labelled, ids[chosen].numpy())
            sensor = None if captured is None else captured(frame)
            if sensor is None:
                sensor = torch.full_like(rendered, float("nan"))
            has_sensor = torch.isfinite(sensor)
            chosen &= ~has_sensor | agreement(torch.nan_to_num(rendered), sensor, check.capture_tolerance)[0]
            distance = torch.where(has_sensor, sensor, torch.nan_to_num(rendered))
            points = backproject(frame.camera, distance)
            if check.min_views > 0:
                chosen &= has_sensor | one_surface(self._along_rays(frame, "surface_share"), check.min_surface_share)
                unchecked = chosen & ~has_sensor
                viewpoint = camera_centre(frame.camera)[None]
                support = view_support(points[unchecked], judges, check.tolerance, viewpoint, check.min_angle)
                chosen[unchecked] = support.confirmed(check.min_views)
            kept = add_counts(kept, ids[chosen].numpy())
            colors = to_uint8(load_rgb(frame.image, *rendered.shape))[chosen.numpy()]
            vote.add(to_original_frame(points[chosen], scene.outputs).numpy(), colors, ids[chosen].numpy())
        points, colors, labels = vote.result()
        write_ply(self.root / POINTS, points, colors, labels)
        return Fusion(len(points), voxel_size, labelled, np.pad(kept, (0, len(labelled) - len(kept))))

    def _along_rays(self, frame: Frame, kind: str = "depth") -> torch.Tensor:
        """``(H, W)`` per-pixel ``kind`` of a written frame, read along its rays: the rendered ``depth`` or the
        ``surface_share`` at it (NaN: hits nothing)."""
        return torch.from_numpy(np.load(self.frame_path(kind, frame)))

    def _frame_points(self, scene: Scene, frame: Frame) -> np.ndarray:
        """``(P, 3)`` points of a frame's hit pixels in the original frame."""
        depth = self._along_rays(frame)
        points = backproject(frame.camera, torch.nan_to_num(depth))[torch.isfinite(depth)]
        return to_original_frame(points, scene.outputs).numpy()

    def _footprints(self, scene: Scene, frame: Frame) -> np.ndarray:
        """Sizes of (a sample of) the frame's hit pixels on the surface, in the original frame's units."""
        points = self._frame_points(scene, frame)
        points = points[np.random.default_rng(0).permutation(len(points))[:FOOTPRINT_SAMPLES]]
        centre = to_original_frame(frame.camera.camera_to_worlds[:, :3, 3], scene.outputs)[0].numpy()
        return np.linalg.norm(points - centre, axis=-1) / float(frame.camera.fx)

    def write_classes(self, classes: Sequence[str], colors: torch.Tensor) -> None:
        """``classes.json`` as the jacobinerf-data dataparser reads it (``semantic_classes``: index, name, color)."""
        names = [UNLABELLED, *classes]
        rows = [
            {"index": index, "name": name, "color": [int(c) for c in to_uint8(colors[index])]}
            for index, name in enumerate(names)
        ]
        files.write_json(self.root / CLASSES, {"semantic_classes": rows})

    def write_transforms(self, scene: Scene, frames: Sequence[Frame]) -> None:
        """``transforms.json`` of the labelled frames: the input's own frames when the data folder is nerfstudio-data
        (paths rewritten to resolve from here), else written from the cameras (original frame)."""
        source = scene.data_dir / TRANSFORMS
        if source.is_file():
            meta = self._rewritten_transforms(json.loads(source.read_text()), scene, frames)
        else:
            meta = self._camera_transforms(scene, frames)
        files.write_json(self.root / TRANSFORMS, meta)

    def _relative(self, path: Path) -> str:
        """``path`` as seen from the export folder (absolute when no relative path exists)."""
        try:
            return Path(os.path.relpath(Path(path).resolve(), self.root.resolve())).as_posix()
        except ValueError:  # another drive
            return str(Path(path).resolve())

    def _rewritten_transforms(self, meta: Dict, scene: Scene, frames: Sequence[Frame]) -> Dict:
        by_image = {(scene.data_dir / row["file_path"]).resolve(): row for row in meta["frames"]}
        by_name: Dict[str, List[Dict]] = {}
        for row in meta["frames"]:
            by_name.setdefault(Path(row["file_path"]).name, []).append(row)
        rows = []
        for frame in frames:
            row = by_image.get(frame.image.resolve())
            if row is None:  # nerfstudio loaded a downscaled copy (images_2/...)
                candidates = by_name.get(frame.image.name, [])
                if len(candidates) != 1:
                    raise JacobiNerfError(
                        f"{scene.data_dir / TRANSFORMS} lists no single frame for {frame.name}: the export needs "
                        "the run's data folder as it was at training."
                    )
                row = candidates[0]
            rows.append((frame, row))
        exported = {(scene.data_dir / row["file_path"]).resolve() for _, row in rows}
        result = {key: value for key, value in meta.items() if key != "frames"}
        for key in [key for key in result if key.endswith("_filenames")]:  # explicit splits
            listed = [scene.data_dir / name for name in result[key]]
            result[key] = [self._relative(path) for path in listed if path.resolve() in exported]
        if "ply_file_path" in result:
            result["ply_file_path"] = self._relative(scene.data_dir / result["ply_file_path"])
        result["frames"] = [self._rewritten_frame(row, frame, scene.data_dir) for frame, row in rows]
        return result

    def _rewritten_frame(self, row: Dict, frame: Frame, data_dir: Path) -> Dict:
        row = {key: value for key, value in row.items() if key not in DROPPED_KEYS}
        for key in PATH_KEYS:
            if key in row:
                row[key] = self._relative(data_dir / row[key])
        row["semantics_file_path"] = self._relative(self.frame_path("ids", frame))
        return row

    def _camera_transforms(self, scene: Scene, frames: Sequence[Frame]) -> Dict:
        from nerfstudio.cameras.cameras import CameraType

        poses = scene.outputs.transform_poses_to_original_space(
            torch.cat([frame.camera.camera_to_worlds for frame in frames]), camera_convention="opengl"
        )
        rows = []
        for frame, pose in zip(frames, poses):
            camera = frame.camera
            if int(camera.camera_type.flatten()[0]) != CameraType.PERSPECTIVE.value:
                raise JacobiNerfError(
                    f"Frame {frame.name} has a {CameraType(int(camera.camera_type.flatten()[0])).name} camera: the "
                    "export writes transforms.json for perspective cameras only."
                )
            distortion = [0.0] * 6 if camera.distortion_params is None else camera.distortion_params.flatten().tolist()
            rows.append(
                {
                    "file_path": self._relative(frame.image),
                    "semantics_file_path": self._relative(self.frame_path("ids", frame)),
                    "fl_x": float(camera.fx),
                    "fl_y": float(camera.fy),
                    "cx": float(camera.cx),
                    "cy": float(camera.cy),
                    "w": int(camera.width),
                    "h": int(camera.height),
                    **dict(zip(("k1", "k2", "k3", "k4", "p1", "p2"), distortion)),
                    "transform_matrix": pose.tolist() + [[0.0, 0.0, 0.0, 1.0]],
                }
            )
        return {"camera_model": "OPENCV", "frames": rows}
