"""The scene model of a run's dataset: its frames (images and cameras), the normalisation nerfstudio applied to them,
and what turns the clicks of a click set (:mod:`jacobinerf_ns.clicks`) into rays of the run.

A click set names pixels of dataset images and rays in the original frame of the poses; here they become rays in the
run's normalised frame. A click set made on another scene (its :class:`~jacobinerf_ns.clicks.SceneFingerprint`) is
refused by :func:`scene_mismatch` unless the user forces it.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

import torch
from torch import Tensor

from jacobinerf_ns.clicks import (
    ClickSet,
    PixelClick,
    RayClick,
    SceneFingerprint,
    require_clicks,
    scene_fingerprint,
    vector,
)
from jacobinerf_ns.compat import eval_dataparser_outputs
from jacobinerf_ns.errors import JacobiNerfError

if TYPE_CHECKING:
    from nerfstudio.cameras.cameras import Cameras
    from nerfstudio.cameras.rays import RayBundle
    from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs

RAY_PIXEL_AREA = 1e-6
"""Pixel area given to ray clicks (nerfacto's field does not use it; the viewer's clicks use the same)."""


@dataclass(frozen=True)
class Frame:
    """One dataset image and its camera (nerfstudio's normalised frame)."""

    split: str
    index: int
    """Index within its split."""
    camera: Cameras
    image: Path
    """The image file the dataset loads."""
    name: str
    """``image`` relative to the data folder (POSIX), as clicks name it."""
    depth_file: Optional[Path] = None
    """The capture's depth map of this frame (``depth_file_path``), if the dataset has one."""

    @property
    def stem(self) -> str:
        return Path(self.name).stem


@dataclass(frozen=True)
class Scene:
    """The frames of a run's dataset (train, then eval) and the normalisation nerfstudio applied to them."""

    data_dir: Path
    frames: Tuple[Frame, ...]
    outputs: DataparserOutputs
    """Dataparser outputs of one split: every split shares the normalisation (``dataparser_transform``/``scale``)."""

    def original_poses(self) -> Tensor:
        """``(N, 3, 4)`` OpenGL camera-to-world poses of the frames in the original frame."""
        poses = torch.cat([frame.camera.camera_to_worlds for frame in self.frames])
        return self.outputs.transform_poses_to_original_space(poses, camera_convention="opengl")

    def fingerprint(self) -> SceneFingerprint:
        return scene_fingerprint([frame.name for frame in self.frames], self.original_poses())

    def to_normalised(self, origins: Tensor, directions: Tensor) -> Tuple[Tensor, Tensor]:
        """Rays ``(K, 3)`` from the original frame to nerfstudio's: ``o' = s (A o + t)``, ``d' = A d / |A d|``.

        ``[A | t]`` = ``dataparser_transform`` and ``s`` = ``dataparser_scale``, the inverse of nerfstudio's
        ``transform_poses_to_original_space``.
        """
        transform = self.outputs.dataparser_transform.to(origins)
        linear, translation = transform[:, :3], transform[:, 3]
        scale = float(self.outputs.dataparser_scale)
        return (
            scale * (origins @ linear.T + translation),
            torch.nn.functional.normalize(directions @ linear.T, dim=-1),
        )

    def ray_click(self, origin: Tensor, direction: Tensor, label: str) -> RayClick:
        """A ray of nerfstudio's frame (a viewer click) as a :class:`RayClick` in the original frame: the inverse of
        :meth:`to_normalised`, ``o = A⁻¹ (o' / s − t)``, ``d = A⁻¹ d' / |A⁻¹ d'|``."""
        transform = self.outputs.dataparser_transform.double()
        inverse = torch.linalg.inv(transform[:, :3])
        scale = float(self.outputs.dataparser_scale)
        original = (origin.double().reshape(3) / scale - transform[:, 3]) @ inverse.T
        towards = torch.nn.functional.normalize(direction.double().reshape(3) @ inverse.T, dim=0)
        return RayClick(label=label, origin=vector(original), direction=vector(towards))

    def training_frames(self) -> List[Frame]:
        """The training frames (every frame when the dataset lists none): what labels spread over the surfaces are
        built on, whichever frames are shown or exported."""
        return [frame for frame in self.frames if frame.split == "train"] or list(self.frames)

    def frame_of(self, image: str, where: str) -> Frame:
        """The frame a click's ``image`` names: its path relative to the data folder (or an absolute path), else its
        file name when unique."""
        target = (self.data_dir / image).resolve()
        for frame in self.frames:
            if frame.image.resolve() == target:
                return frame
        name = Path(image.replace("\\", "/")).name
        named = [frame for frame in self.frames if Path(frame.name).name == name]
        if len(named) == 1:
            return named[0]
        if named:
            listed = ", ".join(frame.name for frame in named)
            raise JacobiNerfError(f"{where}: image {image!r} is ambiguous ({listed}): give its path as listed.")
        names = [frame.name for frame in self.frames]
        close = difflib.get_close_matches(image, names, n=3, cutoff=0.5) or names[:3]
        raise JacobiNerfError(
            f"{where}: the dataset in {self.data_dir} has no image {image!r} ({len(names)} images, e.g. "
            f"{', '.join(close)}): name an image by its path relative to the data folder, or by its file name."
        )


def scene_from_outputs(data_dir: Path, splits: Dict[str, DataparserOutputs]) -> Scene:
    """A :class:`Scene` of the frames of ``splits`` (an image listed in two splits counts once, in the first)."""
    data_dir = Path(data_dir)
    data_dir = data_dir.parent if data_dir.suffix == ".json" else data_dir
    frames: List[Frame] = []
    seen = set()
    for split, outputs in splits.items():
        depth_files = outputs.metadata.get("depth_filenames") or [None] * len(outputs.image_filenames)
        for index, (image, depth_file) in enumerate(zip(outputs.image_filenames, depth_files)):
            image = Path(image)
            if image.resolve() in seen:
                continue
            seen.add(image.resolve())
            name = Path(os.path.relpath(image.resolve(), data_dir.resolve())).as_posix()
            depth_file = None if depth_file is None else Path(depth_file)
            frames.append(Frame(split, index, outputs.cameras[index : index + 1], image, name, depth_file))
    return Scene(data_dir=data_dir, frames=tuple(frames), outputs=next(iter(splits.values())))


def frame_masks(datamanager, frames) -> Optional[List[Optional[Tensor]]]:
    """Each of ``frames``' mask ``(H, W)`` from the run's training masks (``training_masks`` of its datamanager;
    ``None`` for a frame that is not a training frame), or ``None`` when the run has none."""
    masks = datamanager.training_masks()
    if masks is None:
        return None
    return [masks[frame.index] if frame.split == "train" else None for frame in frames]


def dataset_scene(datamanager) -> Scene:
    """The :class:`Scene` of a loaded run's datamanager (training and eval frames)."""
    return scene_from_outputs(
        datamanager.dataparser.config.data,
        {"train": datamanager.train_dataparser_outputs, "eval": eval_dataparser_outputs(datamanager)},
    )


@dataclass(frozen=True)
class ClickRays:
    """The rays of a click set's clicks in nerfstudio's normalised frame."""

    origins: Tensor
    directions: Tensor
    pixel_areas: Tensor
    names: Tuple[str, ...]
    """How messages name each click: ``clicks[3] ('chair' at images/frame_00012.png x 140.5 y 88)``."""

    def bundle(self) -> RayBundle:
        from nerfstudio.cameras.rays import RayBundle

        return RayBundle(
            origins=self.origins,
            directions=self.directions,
            pixel_area=self.pixel_areas,
            camera_indices=torch.zeros(len(self.origins), 1, dtype=torch.long),
        )


def pixel_click(frame: Frame, row: float, column: float, label: str) -> PixelClick:
    """The :class:`PixelClick` at continuous camera coordinates ``(row, column)`` of ``frame`` (pixel ``(y, x)``'s
    centre is ``(y + 0.5, x + 0.5)``), converted to the image file's resolution."""
    width, height = image_size(frame.image)
    camera = frame.camera
    return PixelClick(
        label=label,
        image=frame.name,
        x=column * width / float(camera.width),
        y=row * height / float(camera.height),
    )


def image_size(path: Path) -> Tuple[int, int]:
    """``(width, height)`` of an image file (its header only)."""
    from PIL import Image

    with Image.open(path) as image:
        return image.size


def click_rays(click_set: ClickSet, scene: Scene, source: str) -> ClickRays:
    """Pixel clicks → the ray through that continuous pixel of the frame's camera (coordinates scaled from the
    image file's resolution to the camera's); ray clicks → :meth:`Scene.to_normalised`. ``source`` names the set."""
    require_clicks(click_set, source)
    origins, directions, areas, names = [], [], [], []
    for index, click in enumerate(click_set.clicks):
        where = f"Clicks file {source}, clicks[{index}]"
        if isinstance(click, PixelClick):
            frame = scene.frame_of(click.image, where)
            named = scene.data_dir / click.image
            width, height = image_size(named if named.is_file() else frame.image)  # the file the pixels count in
            if not (click.x < width and click.y < height):
                raise JacobiNerfError(
                    f"{where}: (x {click.x}, y {click.y}) lies outside {click.image}, which is {width}×{height} "
                    "pixels: x, y are pixel coordinates at the image file's resolution (x < width, y < height)."
                )
            camera = frame.camera
            coords = torch.tensor([[click.y * float(camera.height) / height, click.x * float(camera.width) / width]])
            rays = camera.generate_rays(camera_indices=0, coords=coords)
            origins.append(rays.origins.reshape(1, 3))
            directions.append(rays.directions.reshape(1, 3))
            areas.append(rays.pixel_area.reshape(1, 1))
            names.append(f"clicks[{index}] ({click.label!r} at {click.image} x {click.x:g} y {click.y:g})")
        else:
            origin, direction = scene.to_normalised(
                torch.tensor([click.origin], dtype=torch.float64), torch.tensor([click.direction], dtype=torch.float64)
            )
            origins.append(origin)
            directions.append(direction)
            areas.append(torch.full((1, 1), RAY_PIXEL_AREA))
            names.append(f"clicks[{index}] ({click.label!r}, ray from {list(click.origin)})")
    return ClickRays(
        origins=torch.cat(origins).float(),
        directions=torch.cat(directions).float(),
        pixel_areas=torch.cat(areas).float(),
        names=tuple(names),
    )


def scene_mismatch(click_set: ClickSet, scene: Scene, source: str, force: bool, to_force: str) -> Optional[str]:
    """How the scene ``click_set`` was made on differs from ``scene`` (``None``: the same scene, or a set without a
    fingerprint). A difference raises :class:`JacobiNerfError` unless ``force`` (``to_force``: how the user forces)."""
    mismatch = None if click_set.fingerprint is None else click_set.fingerprint.mismatch(scene.fingerprint())
    if mismatch is not None and not force:
        raise JacobiNerfError(
            f"Clicks file {source} was made on another scene than {scene.data_dir} ({mismatch}): use a click set of "
            f"this scene, or {to_force}."
        )
    return mismatch
