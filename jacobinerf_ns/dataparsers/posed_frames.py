"""What the Replica (Semantic-NeRF) and ScanNet dataparsers share: numbered frame files, OpenCV camera-to-world
poses turned into nerfstudio cameras (auto orient, center and scale like nerfstudio's own dataparser), the
every-k train/test split, and label maps remapped to consecutive ids in a cache folder.

A parser subclasses :class:`PosedFramesDataParser` and implements :meth:`PosedFramesDataParser._load_frames`;
its config subclasses :class:`PosedFramesDataParserConfig`.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Optional, Sequence

import torch
from nerfstudio.cameras import camera_utils
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs, Semantics
from nerfstudio.data.scene_box import SceneBox

from jacobinerf_ns import cache
from jacobinerf_ns.dataparsers.outputs import subset_outputs
from jacobinerf_ns.errors import JacobiNerfError

OPENCV_TO_OPENGL = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0]))
"""Right-multiply an OpenCV camera-to-world (x right, y down, z forward) for nerfstudio's OpenGL one (y up, z back)."""


def opencv_to_opengl(camera_to_worlds: torch.Tensor) -> torch.Tensor:
    """``(..., 4, 4)`` camera-to-worlds from the OpenCV to the OpenGL camera convention (flips camera y and z)."""
    return camera_to_worlds @ OPENCV_TO_OPENGL.to(camera_to_worlds)


def numbered_files(folder: Path, prefix: str, suffixes: Sequence[str]) -> Dict[int, Path]:
    """Files ``folder/{prefix}{i}{suffix}`` by frame number ``i``, in numeric order (``10`` after ``9``)."""
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)$")
    found: Dict[int, Path] = {}
    if folder.is_dir():
        for path in folder.iterdir():
            match = pattern.match(path.stem)
            if match and path.suffix.lower() in suffixes and path.is_file():
                found.setdefault(int(match.group(1)), path)
    return dict(sorted(found.items()))


def frame_images(data: Path, folder: str, prefix: str, suffixes: Sequence[str], layout: str) -> Dict[int, Path]:
    """The numbered images ``data/folder/{prefix}{i}{suffix}``; clear errors when the folder or frames are missing."""
    if not data.is_dir():
        raise JacobiNerfError(f"No {layout} folder at {data}: point --data at it.")
    images = numbered_files(data / folder, prefix, suffixes)
    if not images:
        raise JacobiNerfError(
            f"No frames in {data / folder}: expected {folder}/{prefix}{{i}}{suffixes[0]} (i = 0, 1, ...)."
        )
    return images


def files_for_frames(
    folder: Path, prefix: str, suffixes: Sequence[str], numbers: Sequence[int], required: bool = False
) -> Optional[List[Path]]:
    """``folder/{prefix}{i}{suffix}`` for each frame number; ``None`` when the folder is absent (and not ``required``).

    Raises when the folder exists but lacks a file for some frame: a per-frame modality is given for every frame or
    none.
    """
    example = f"{folder.name}/{prefix}{{i}}{suffixes[0]}"
    if not folder.is_dir():
        if required:
            raise JacobiNerfError(f"No folder {folder}: expected one {example} per frame.")
        return None
    found = numbered_files(folder, prefix, suffixes)
    missing = [number for number in numbers if number not in found]
    if missing:
        raise JacobiNerfError(
            f"{folder} has no file for {len(missing)} of {len(numbers)} frames (first missing: frame {missing[0]}): "
            f"expected {example} for every frame" + ("." if required else f", or no {folder.name}/ folder at all.")
        )
    return [found[number] for number in numbers]


def every_k_split(slots: Sequence[int], train_every: int, test_offset: int, split: str) -> List[int]:
    """Positions ``j`` of this split's frames: train where ``slots[j] % train_every == 0``, val/test where it is
    ``test_offset``.

    ``slots`` are the frames' places in the sequence (frame 0, 1, ...), so train = frames 0, k, 2k, ... and
    test = train frames + ``test_offset`` (the JacobiNeRF / Semantic-NeRF split with ``k = 5``, offset 2).
    """
    if train_every < 1:
        raise JacobiNerfError(f"train_every must be >= 1, got {train_every}.")
    if not 0 <= test_offset < train_every:
        raise JacobiNerfError(f"test_offset must lie in [0, train_every) = [0, {train_every}), got {test_offset}.")
    if split == "train":
        offset = 0
    elif split in ("val", "test"):
        offset = test_offset
    else:
        raise ValueError(f"Unknown split {split!r}: expected 'train', 'val' or 'test'.")
    indices = [j for j, slot in enumerate(slots) if slot % train_every == offset]
    if not indices:
        raise JacobiNerfError(
            f"No {split} frames among {len(slots)} frames with train_every={train_every}, test_offset={test_offset}: "
            "the sequence is too short for this split."
        )
    return indices


@dataclass
class PosedFrames:
    """A whole sequence, before the split: files, OpenCV camera-to-worlds and intrinsics (one image size)."""

    image_filenames: List[Path]
    camera_to_worlds_opencv: torch.Tensor
    """``(N, 4, 4)`` camera-to-world, OpenCV camera convention (x right, y down, z forward)."""
    fx: torch.Tensor
    """``(N,)`` focal lengths and principal points in pixels, nerfstudio convention (pixel centres at +0.5)."""
    fy: torch.Tensor
    cx: torch.Tensor
    cy: torch.Tensor
    width: int
    height: int
    slots: List[int]
    """Each frame's place in the sequence (for the every-k split)."""
    depth_filenames: Optional[List[Path]] = None
    labels: Dict[str, Semantics] = field(default_factory=dict)
    """``semantics`` / ``instances`` label maps (consecutive ids, 0 = void), one file per frame."""


@dataclass
class PosedFramesDataParserConfig(DataParserConfig):
    """Options shared by the posed-frame dataparsers (split, scene normalisation, label cache)."""

    train_every: int = 5
    """Train frames are frames 0, train_every, 2*train_every, ... (JacobiNeRF: 5)."""
    test_offset: int = 2
    """Val/test frames are the train frames + test_offset (JacobiNeRF: 2); 0 evaluates on the train frames."""
    scale_factor: float = 1.0
    """How much to scale the camera origins by (after auto_scale_poses)."""
    scene_scale: float = 1.0
    """Half-size of the scene box: the region of interest is +/- scene_scale around the origin."""
    orientation_method: Literal["pca", "up", "vertical", "none"] = "up"
    """How to orient the poses (nerfstudio's auto_orient_and_center_poses)."""
    center_method: Literal["poses", "focus", "none"] = "poses"
    """How to center the poses (nerfstudio's auto_orient_and_center_poses)."""
    auto_scale_poses: bool = True
    """Scale the camera origins to fit in +/- 1 (before scale_factor)."""
    depth_unit_scale_factor: float = 1e-3
    """Depth PNG values times this are metres (uint16 millimetres: 1e-3)."""
    cache_dir: Optional[Path] = None
    """Folder for the label maps remapped to consecutive ids (written once, reused); default
    ~/.cache/jacobinerf_ns/<dataset>_labels/<hash of the data path>."""


class PosedFramesDataParser(DataParser):
    """Loads the sequence once (:meth:`_load_frames`), orients/scales on all frames, then keeps the split's frames."""

    config: PosedFramesDataParserConfig
    cache_namespace: str = "labels"
    """Default cache folder: ``~/.cache/jacobinerf_ns/<cache_namespace>/<hash>``."""

    def __init__(self, config: PosedFramesDataParserConfig):
        super().__init__(config)
        self._frames: Optional[PosedFrames] = None

    @abstractmethod
    def _load_frames(self) -> PosedFrames:
        """The whole sequence (all splits), labels already remapped (see :meth:`label_cache_dir`)."""

    def label_cache_dir(self) -> Path:
        if self.config.cache_dir is not None:
            return Path(self.config.cache_dir).expanduser()
        return cache.dataset_cache_dir(self.cache_namespace, self.config.data)

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> DataparserOutputs:
        if self._frames is None:
            self._frames = self._load_frames()
        indices = every_k_split(self._frames.slots, self.config.train_every, self.config.test_offset, split)
        return subset_outputs(posed_outputs(self._frames, self.config), indices)


def posed_outputs(frames: PosedFrames, config: PosedFramesDataParserConfig) -> DataparserOutputs:
    """All frames as nerfstudio outputs: OpenGL poses oriented, centered and scaled as nerfstudio's dataparser does."""
    poses = opencv_to_opengl(frames.camera_to_worlds_opencv.float())
    poses, transform = camera_utils.auto_orient_and_center_poses(
        poses, method=config.orientation_method, center_method=config.center_method
    )
    scale = 1.0
    if config.auto_scale_poses:
        extent = float(torch.max(torch.abs(poses[:, :3, 3])))
        if extent > 0:
            scale /= extent
    scale *= config.scale_factor
    poses[:, :3, 3] *= scale

    aabb = config.scene_scale
    cameras = Cameras(
        fx=frames.fx.float(),
        fy=frames.fy.float(),
        cx=frames.cx.float(),
        cy=frames.cy.float(),
        width=frames.width,
        height=frames.height,
        camera_to_worlds=poses[:, :3, :4],
        camera_type=CameraType.PERSPECTIVE,
    )
    metadata = {
        "depth_filenames": frames.depth_filenames,
        "depth_unit_scale_factor": config.depth_unit_scale_factor,
        **frames.labels,
    }
    return DataparserOutputs(
        image_filenames=list(frames.image_filenames),
        cameras=cameras,
        scene_box=SceneBox(aabb=torch.tensor([[-aabb] * 3, [aabb] * 3], dtype=torch.float32)),
        dataparser_scale=scale,
        dataparser_transform=transform,
        metadata=metadata,
    )


def image_size(path: Path):
    """``(width, height)`` of an image file, read from its header."""
    from PIL import Image

    with Image.open(path) as image:
        return image.size
