"""Replica in the Semantic-NeRF layout (JacobiNeRF's benchmark).

.. code-block:: text

    <sequence>/                      e.g. Replica_Dataset/room_0/Sequence_1
    ├── rgb/rgb_{i}.png
    ├── depth/depth_{i}.png                          (optional, uint16 millimetres)
    ├── semantic_class/semantic_class_{i}.png        (optional, raw Replica class ids)
    ├── semantic_instance/semantic_instance_{i}.png  (optional, raw instance ids)
    └── traj_w_c.txt                 one row of 16 floats per frame: camera-to-world 4x4, row-major, OpenCV

Frames are ordered by the number in their file name; row ``i`` of ``traj_w_c.txt`` is the pose of frame ``i``.
Intrinsics come from the horizontal field of view at each image's own resolution. Label ids are remapped to
consecutive ids over those present in the sequence (0 = void) into a cache folder; class names come from a
Replica ``info_semantic.json`` beside or one level above the sequence when there is one.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Optional, Type

import numpy as np
import torch

from jacobinerf_ns.dataparsers.outputs import consecutive_semantics
from jacobinerf_ns.dataparsers.posed_frames import (
    PosedFrames,
    PosedFramesDataParser,
    PosedFramesDataParserConfig,
    files_for_frames,
    frame_images,
    image_size,
)
from jacobinerf_ns.errors import JacobiNerfError
from jacobinerf_ns.labels import INSTANCES, SEMANTICS

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
LABEL_FOLDERS = {SEMANTICS: "semantic_class", INSTANCES: "semantic_instance"}
INFO_FILE = "info_semantic.json"


@dataclass
class ReplicaSemanticNerfDataParserConfig(PosedFramesDataParserConfig):
    """Replica sequence rendered by Semantic-NeRF (rgb/, depth/, semantic_class/, semantic_instance/, traj_w_c.txt)."""

    _target: Type = field(default_factory=lambda: ReplicaSemanticNerf)
    data: Path = Path("data/replica/room_0/Sequence_1")
    """Semantic-NeRF sequence folder (with rgb/ and traj_w_c.txt)."""
    hfov_degrees: float = 90.0
    """Horizontal field of view of the renders: fx = fy = W / (2 tan(hfov / 2)), cx = W/2, cy = H/2."""
    info_semantic: Optional[Path] = None
    """Replica info_semantic.json naming the classes; default: one beside or one level above the sequence (else
    class_<raw id>)."""


class ReplicaSemanticNerf(PosedFramesDataParser):
    config: ReplicaSemanticNerfDataParserConfig
    cache_namespace = "replica_labels"

    def _load_frames(self) -> PosedFrames:
        data = Path(self.config.data).expanduser()
        images = frame_images(
            data, "rgb", "rgb_", IMAGE_SUFFIXES, "Replica Semantic-NeRF sequence (rgb/, traj_w_c.txt)"
        )
        numbers = list(images)
        poses = _read_trajectory(data / "traj_w_c.txt", len(numbers))
        if numbers != list(range(len(numbers))):
            gaps = sorted(set(range(len(numbers))) - set(numbers))
            raise JacobiNerfError(
                f"Frames in {data / 'rgb'} are not numbered 0..{len(numbers) - 1} (missing rgb_{gaps[0]}): row i of "
                "traj_w_c.txt is the pose of rgb_i, so every frame up to the last must be there."
            )

        width, height = image_size(images[numbers[0]])
        focal = width / (2.0 * math.tan(math.radians(self.config.hfov_degrees) / 2.0))
        count = len(numbers)
        info = _read_info(self._info_path(data))
        class_names = {
            int(row["id"]): str(row["name"]) for row in info.get("classes", []) if "id" in row and "name" in row
        }
        object_classes = {
            int(row["id"]): str(row["class_name"])
            for row in info.get("objects", [])
            if "id" in row and "class_name" in row
        }
        name_of: Dict[str, Callable[[int], str]] = {
            SEMANTICS: lambda raw: class_names.get(raw, f"class_{raw}"),
            INSTANCES: lambda raw: f"{object_classes[raw]}_{raw}" if raw in object_classes else f"instance_{raw}",
        }
        labels = {}
        for kind, folder in LABEL_FOLDERS.items():
            sources = files_for_frames(data / folder, f"{folder}_", (".png",), numbers)
            if sources is not None:
                labels[kind] = consecutive_semantics(sources, self.label_cache_dir() / kind, name_of[kind])
        return PosedFrames(
            image_filenames=[images[number] for number in numbers],
            camera_to_worlds_opencv=poses,
            fx=torch.full((count,), focal),
            fy=torch.full((count,), focal),
            cx=torch.full((count,), width / 2.0),
            cy=torch.full((count,), height / 2.0),
            width=width,
            height=height,
            slots=numbers,
            depth_filenames=files_for_frames(data / "depth", "depth_", (".png",), numbers),
            labels=labels,
        )

    def _info_path(self, data: Path) -> Optional[Path]:
        if self.config.info_semantic is not None:
            path = Path(self.config.info_semantic).expanduser()
            if not path.is_file():
                raise JacobiNerfError(
                    f"No {path}: info_semantic should be a Replica info_semantic.json (classes: [{{id, name}}])."
                )
            return path
        for folder in (data, data.parent):
            if (folder / INFO_FILE).is_file():
                return folder / INFO_FILE
        return None


def _read_trajectory(path: Path, frame_count: int) -> torch.Tensor:
    """``(N, 4, 4)`` OpenCV camera-to-worlds from ``traj_w_c.txt`` (one row-major 4x4 per line)."""
    if not path.is_file():
        raise JacobiNerfError(
            f"No {path}: expected traj_w_c.txt with one row of 16 floats (camera-to-world 4x4, row-major) per frame."
        )
    rows = np.loadtxt(path, ndmin=2)
    if rows.shape[1] != 16:
        raise JacobiNerfError(
            f"{path} has {rows.shape[1]} values per row: expected 16 (camera-to-world 4x4, row-major) per frame."
        )
    if rows.shape[0] != frame_count:
        raise JacobiNerfError(
            f"{frame_count} frames in rgb/ but {rows.shape[0]} poses in {path}: expected one pose row per frame "
            "(row i = rgb_i)."
        )
    if not np.isfinite(rows).all():
        bad = int(np.flatnonzero(~np.isfinite(rows).all(axis=1))[0])
        raise JacobiNerfError(f"Pose row {bad} of {path} is not finite: every frame needs a valid camera-to-world.")
    return torch.from_numpy(rows.reshape(-1, 4, 4)).float()


def _read_info(path: Optional[Path]) -> dict:
    if path is None:
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as error:
        raise JacobiNerfError(f"{path} is not valid JSON ({error}): expected Replica's info_semantic.json.") from error
