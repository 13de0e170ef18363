"""ScanNet exported with the SensReader and the label export, with semantic and instance labels.

.. code-block:: text

    <scene>/                         e.g. scans/scene0000_00
    ├── color/{i}.jpg
    ├── pose/{i}.txt                 4x4 camera-to-world, OpenCV convention (invalid ones hold -inf)
    ├── intrinsic/intrinsic_color.txt
    ├── depth/{i}.png                (optional, uint16 millimetres)
    ├── label-filt/{i}.png           (optional, NYU40 or raw ScanNet class ids, 0 = void)
    └── instance-filt/{i}.png        (optional, instance ids, 0 = void)

Frames whose pose has inf/nan are dropped. Label maps keep their resolution (the loader resizes them, nearest,
to the image size); their ids are remapped to consecutive ids over those present into a cache folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Tuple, Type

import numpy as np
import torch
from nerfstudio.utils.rich_utils import CONSOLE

from jacobinerf_ns.dataparsers.outputs import consecutive_semantics
from jacobinerf_ns.dataparsers.posed_frames import (
    PosedFrames,
    PosedFramesDataParser,
    PosedFramesDataParserConfig,
    files_for_frames,
    frame_images,
    image_size,
    numbered_files,
)
from jacobinerf_ns.errors import JacobiNerfError
from jacobinerf_ns.labels import INSTANCES, SEMANTICS

COLOR_SUFFIXES = (".jpg", ".jpeg", ".png")
LABEL_FOLDERS = {SEMANTICS: "label-filt", INSTANCES: "instance-filt"}
LABEL_NAMES = {SEMANTICS: "class", INSTANCES: "instance"}


@dataclass
class ScanNetLabelledDataParserConfig(PosedFramesDataParserConfig):
    """ScanNet scene exported by the SensReader (color/, pose/, intrinsic/) plus label-filt/ and instance-filt/."""

    _target: Type = field(default_factory=lambda: ScanNetLabelled)
    data: Path = Path("data/scannet/scans/scene0000_00")
    """ScanNet scene folder (with color/, pose/ and intrinsic/intrinsic_color.txt)."""
    intrinsics_size: Optional[Tuple[int, int]] = None
    """(width, height) the colour intrinsics were calibrated for, when the colour images were resized since;
    default: colorWidth/colorHeight from the scene's <scene>.txt or _info.txt if present, else the images' own size."""


class ScanNetLabelled(PosedFramesDataParser):
    config: ScanNetLabelledDataParserConfig
    cache_namespace = "scannet_labels"

    def _load_frames(self) -> PosedFrames:
        data = Path(self.config.data).expanduser()
        images = frame_images(
            data, "color", "", COLOR_SUFFIXES, "ScanNet scene (SensReader export: color/, pose/, intrinsic/)"
        )
        all_numbers = list(images)
        pose_files = numbered_files(data / "pose", "", (".txt",))
        if len(pose_files) != len(all_numbers) or any(number not in pose_files for number in all_numbers):
            missing = [number for number in all_numbers if number not in pose_files]
            detail = f" (first frame without one: {missing[0]})" if missing else ""
            raise JacobiNerfError(
                f"{len(all_numbers)} frames in {data / 'color'} but {len(pose_files)} poses in "
                f"{data / 'pose'}{detail}: "
                "expected one pose/{i}.txt (4x4 camera-to-world) per color/{i}.jpg."
            )
        poses = np.stack([_read_pose(pose_files[number]) for number in all_numbers])
        valid = np.isfinite(poses).all(axis=(1, 2))
        if not valid.any():
            raise JacobiNerfError(
                f"All {len(all_numbers)} poses in {data / 'pose'} contain inf/nan: no frame can be used."
            )
        if not valid.all():
            CONSOLE.print(
                f"ScanNet: dropped {int((~valid).sum())} of {len(all_numbers)} frames whose pose has inf/nan."
            )
        # Slots count frames in file order before dropping, so dropped frames don't shift the every-k split.
        slots = [slot for slot in range(len(all_numbers)) if valid[slot]]
        numbers = [all_numbers[slot] for slot in slots]

        width, height = image_size(images[numbers[0]])
        fx, fy, cx, cy = self._intrinsics(data, width, height)
        labels = {}
        for kind, folder in LABEL_FOLDERS.items():
            sources = files_for_frames(data / folder, "", (".png",), numbers)
            if sources is not None:
                prefix = LABEL_NAMES[kind]
                labels[kind] = consecutive_semantics(
                    sources, self.label_cache_dir() / kind, lambda raw, p=prefix: f"{p}_{raw}"
                )
        count = len(numbers)
        return PosedFrames(
            image_filenames=[images[number] for number in numbers],
            camera_to_worlds_opencv=torch.from_numpy(poses[valid]).float(),
            fx=torch.full((count,), fx),
            fy=torch.full((count,), fy),
            cx=torch.full((count,), cx),
            cy=torch.full((count,), cy),
            width=width,
            height=height,
            slots=slots,
            depth_filenames=files_for_frames(data / "depth", "", (".png",), numbers),
            labels=labels,
        )

    def _intrinsics(self, data: Path, width: int, height: int) -> Tuple[float, float, float, float]:
        """fx, fy, cx, cy from intrinsic_color.txt, scaled from the calibrated size to the colour images' size."""
        path = data / "intrinsic" / "intrinsic_color.txt"
        if not path.is_file():
            raise JacobiNerfError(f"No {path}: expected the SensReader's 4x4 colour intrinsics (fx, fy, cx, cy).")
        matrix = np.loadtxt(path, ndmin=2)
        if matrix.shape not in ((4, 4), (3, 3)):
            raise JacobiNerfError(f"{path} holds a {matrix.shape} matrix: expected a 4x4 (or 3x3) intrinsics matrix.")
        fx, fy, cx, cy = float(matrix[0, 0]), float(matrix[1, 1]), float(matrix[0, 2]), float(matrix[1, 2])
        calibrated = self.config.intrinsics_size or _calibrated_size(data)
        if calibrated is not None and tuple(calibrated) != (width, height):
            sx, sy = width / calibrated[0], height / calibrated[1]
            fx, cx, fy, cy = fx * sx, cx * sx, fy * sy, cy * sy
        if not (0 < cx < width and 0 < cy < height):
            CONSOLE.print(
                f"[yellow]ScanNet: principal point ({cx:.1f}, {cy:.1f}) lies outside the {width}x{height} colour "
                "images: "
                "were they resized? Set intrinsics_size to the size intrinsic_color.txt is for."
            )
        return fx, fy, cx, cy


def _read_pose(path: Path) -> np.ndarray:
    values = np.loadtxt(path, ndmin=1).reshape(-1)
    if values.size != 16:
        raise JacobiNerfError(f"{path} holds {values.size} values: expected a 4x4 camera-to-world matrix.")
    return values.reshape(4, 4)


def _calibrated_size(data: Path) -> Optional[Tuple[int, int]]:
    """colorWidth/colorHeight from ScanNet's ``<scene>.txt`` or the C++ SensReader's ``_info.txt``, if present."""
    for path in (data / f"{data.name}.txt", data / "_info.txt"):
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        width = re.search(r"^\s*(?:m_)?colorWidth\s*=\s*(\d+)", text, re.MULTILINE)
        height = re.search(r"^\s*(?:m_)?colorHeight\s*=\s*(\d+)", text, re.MULTILINE)
        if width and height:
            return int(width.group(1)), int(height.group(1))
    return None
