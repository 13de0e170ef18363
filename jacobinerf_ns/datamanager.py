"""Datamanager that attaches per-ray surrogate descriptors to training batches (``batch["surrogate"]``); for masks
numbered per image, draws the contrastive rays image by image (GARField's grouped sampling) and gives their images
(``batch["surrogate_images"]``); with masks, when the model's losses ask (its ``reads_masked_rays``), says for every
ray whether a mask covers its pixel (``batch["masked"]``); and adds depth maps to every batch of a scene that has them
(``batch["depth_image"]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Literal, Optional, Type

import torch
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig
from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs
from nerfstudio.data.datasets.base_dataset import InputDataset
from nerfstudio.data.utils.data_utils import get_depth_image_from_path
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor

from jacobinerf_ns import cache
from jacobinerf_ns.errors import require
from jacobinerf_ns.model_config import DEPTH_IMAGE, SCENE_UNITS_PER_POSE_UNIT
from jacobinerf_ns.pointcloud import depth_file_scale
from jacobinerf_ns.surrogates import MASKED, SURROGATE, SURROGATE_IMAGES, LabelMapSurrogate
from jacobinerf_ns.surrogates.build import SurrogateName, build_surrogate


class DepthMapDataset(InputDataset):
    """Images plus each frame's depth map in scene units: file values × ``depth_unit_scale_factor`` (to metres) ×
    the dataparser's scale (the poses' normalisation), resized (nearest) to the camera's resolution; its metadata
    (which the model receives) holds that scale (``SCENE_UNITS_PER_POSE_UNIT``).

    Unlike nerfstudio's ``DepthDataset`` it never makes depth up: a scene without depth files gets the plain
    :class:`InputDataset` (:func:`scene_dataset`), where ``DepthDataset`` would download a monocular depth model.
    """

    exclude_batch_keys_from_device = InputDataset.exclude_batch_keys_from_device + [DEPTH_IMAGE]

    def __init__(self, dataparser_outputs: DataparserOutputs, scale_factor: float = 1.0) -> None:
        super().__init__(dataparser_outputs, scale_factor)
        self.depth_filenames = dataparser_outputs.metadata["depth_filenames"]
        self.depth_scale = depth_file_scale(dataparser_outputs)
        self.metadata[SCENE_UNITS_PER_POSE_UNIT] = float(dataparser_outputs.dataparser_scale)

    def get_metadata(self, data: Dict) -> Dict:
        index = data["image_idx"]
        height, width = int(self.cameras.height[index]), int(self.cameras.width[index])
        return {DEPTH_IMAGE: get_depth_image_from_path(self.depth_filenames[index], height, width, self.depth_scale)}


def scene_dataset(outputs: DataparserOutputs, scale_factor: float) -> InputDataset:
    """:class:`DepthMapDataset` when the dataparser found depth files (``depth_filenames``), else ``InputDataset``."""
    has_depth = outputs.metadata.get("depth_filenames") is not None
    return (DepthMapDataset if has_depth else InputDataset)(outputs, scale_factor=scale_factor)


MASK_SCOPES = ("auto", "image", "scene")


@dataclass
class JacobiNerfDataManagerConfig(VanillaDataManagerConfig):
    """Ray batches for photometric training, plus the MI surrogate's descriptors once shaping needs them."""

    _target: Type = field(default_factory=lambda: JacobiNerfDataManager)
    surrogate: SurrogateName = "dino"
    """What defines positives for MI shaping: DINO ViT-S/8 keys (the paper's), masks, or feature maps from files."""
    masks_from: Literal["instances", "semantics"] = "instances"
    """With ``masks``: which label maps of the dataset are the masks (unless ``masks_dir`` is given)."""
    masks_dir: Optional[Path] = None
    """With ``masks``: folder of integer PNG masks from any segmenter, one per training image (same stem), 0 = none."""
    masks_scope: Literal["auto", "image", "scene"] = "auto"
    """With ``masks``: where one id means one entity. ``image``: within its image only (a segmenter run on each image,
    e.g. SAM's automatic masks): shaping compares rays of the same image only, and the contrastive rays are drawn
    image by image (``contrastive-images``). ``scene``: in every view (the dataset's labels, masks associated across
    views by a tracker): every pair of contrastive rays is compared. ``auto``: ``image`` with ``masks-dir``, ``scene``
    with the dataset's labels."""
    contrastive_images: int = 4
    """With image scope: the contrastive rays (the first ``--pipeline.model.contrastive-batch-size`` rays of each
    batch) come from this many training images drawn at random (all of them when there are fewer), an equal share
    each; the rest of the batch is nerfstudio's uniform sampling."""
    features_dir: Optional[Path] = None
    """With ``features``: folder of per-image feature maps ``<stem>.npy``/``<stem>.pt`` shaped (h, w, E) (float16
    ``.npy`` are read in place, others converted once into the cache)."""
    feature_dim: Optional[int] = None
    """With ``dino``/``features``: store this many channels (uncentred PCA fitted on a sample of the maps) instead of
    all (DINO: 384); fewer bytes on disk, cosines kept up to the discarded energy."""
    dino_weights: Optional[Path] = None
    """With ``dino``: local weights of vit_small_patch8_224_dino (timm's state dict or DINO's
    dino_deitsmall8_pretrain.pth); default: timm's pretrained weights, downloaded once into torch's hub cache."""
    dino_stride: int = 4
    """With ``dino``: patch-embedding stride (paper: 4)."""
    dino_short_side: int = 360
    """With ``dino``: images are resized to this short side before extraction (paper: 360)."""
    cache_dir: Path = cache.DEFAULT_ROOT
    """Where feature maps are cached, one float16 file per image (DINO: keyed by weights, image and settings)."""

    def validate(self) -> None:
        """Surrogate options that cannot work raise :class:`JacobiNerfError` before any data is read."""
        option = "--pipeline.datamanager."
        require(
            self.surrogate in ("dino", "masks", "features"),
            f"{option}surrogate",
            f"{self.surrogate!r}: choose dino, masks or features.",
        )
        require(self.dino_stride >= 1, f"{option}dino-stride", f"must be ≥ 1 (paper: 4), got {self.dino_stride}.")
        require(
            self.dino_short_side >= 8,
            f"{option}dino-short-side",
            f"must be ≥ 8 (one ViT-S/8 patch; paper: 360), got {self.dino_short_side}.",
        )
        require(
            self.feature_dim is None or self.feature_dim >= 1,
            f"{option}feature-dim",
            f"must be ≥ 1 (or unset: every channel), got {self.feature_dim}.",
        )
        for name in ("masks_dir", "features_dir", "dino_weights"):
            path = getattr(self, name)
            require(path is None or Path(path).exists(), f"{option}{name.replace('_', '-')}", f"{path} does not exist.")
        require(
            self.masks_scope in MASK_SCOPES,
            f"{option}masks-scope",
            f"{self.masks_scope!r}: choose image (ids numbered in each image on its own), scene (ids agree across "
            "views) or auto.",
        )
        require(
            self.contrastive_images >= 1,
            f"{option}contrastive-images",
            f"must be ≥ 1 (training images the contrastive rays come from), got {self.contrastive_images}.",
        )

    def mask_scope(self) -> Literal["image", "scene"]:
        """``masks-scope`` resolved: ``auto`` is ``image`` for ``masks-dir``, ``scene`` for the dataset's labels; any
        other surrogate compares across images (``scene``)."""
        if self.surrogate != "masks":
            return "scene"
        if self.masks_scope == "auto":
            return "image" if self.masks_dir is not None else "scene"
        return self.masks_scope


class JacobiNerfDataManager(VanillaDataManager):
    config: JacobiNerfDataManagerConfig

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.surrogate = None
        self.surrogate_rays: Optional[int] = None
        """Rays at the start of each batch that get descriptors (the model's contrastive batch); None: all."""
        self.shaping_start_step = 0
        """First step whose batches carry descriptors (and, with image scope, grouped contrastive rays)."""
        self.marks_masked_rays: Callable[[int], bool] = lambda step: False
        """Whether the batch of a step says which rays a mask covers (``batch["masked"]``, with masks): the pipeline
        sets the model's ``reads_masked_rays``."""

    def set_contrastive_batch(self, rays: int, shaping_start_step: int) -> None:
        """The model's contrastive batch (its first ``rays`` rays) and first shaping step; with image scope, each
        image must get at least two of the rays (a pair to compare)."""
        self.surrogate_rays, self.shaping_start_step = rays, shaping_start_step
        images = self.config.contrastive_images
        rays = min(rays, self.config.train_num_rays_per_batch)
        if self.config.mask_scope() == "image" and shaping_start_step >= 0:
            require(
                rays // images >= 2,
                "--pipeline.datamanager.contrastive-images",
                f"{images} images for {rays} contrastive rays leaves fewer than 2 rays per image, and per-image masks "
                f"compare rays of one image only: give at most {rays // 2}, or a larger "
                "--pipeline.model.contrastive-batch-size.",
            )

    def create_train_dataset(self) -> InputDataset:
        return scene_dataset(self.train_dataparser_outputs, self.config.camera_res_scale_factor)

    def create_eval_dataset(self) -> InputDataset:
        outputs = self.dataparser.get_dataparser_outputs(split=self.test_split)
        return scene_dataset(outputs, self.config.camera_res_scale_factor)

    def prepare_surrogate(self) -> None:
        """Loads (or extracts and caches) the surrogate for every training image; fails fast on bad options."""
        if self.surrogate is not None:
            return
        config = self.config
        dino = None
        if config.surrogate == "dino":
            from jacobinerf_ns.surrogates.dino import DinoExtraction

            dino = DinoExtraction(
                weights=config.dino_weights, stride=config.dino_stride, short_side=config.dino_short_side
            )
        self.surrogate = build_surrogate(
            config.surrogate,
            self.train_dataparser_outputs,
            masks_from=config.masks_from,
            masks_dir=config.masks_dir,
            features_dir=config.features_dir,
            dino=dino,
            feature_dim=config.feature_dim,
            cache_dir=config.cache_dir,
            device=str(self.device),
        )
        CONSOLE.print(f"MI-shaping surrogate: {config.surrogate}")

    def training_masks(self) -> Optional[torch.Tensor]:
        """``(N, H, W)`` integer masks of the training images when the run is shaped with masks (loaded on first
        use), else ``None``: what labels spread over the surfaces join (:mod:`jacobinerf_ns.propagation.surface_graph`).
        Only a mask's pixels within its own image are used, so any scope will do."""
        if self.config.surrogate != "masks":
            return None
        self.prepare_surrogate()
        return self.surrogate.ids

    def next_train(self, step: int):
        shaping = self.surrogate is not None and 0 <= self.shaping_start_step <= step
        if not (shaping and self.config.mask_scope() == "image"):
            ray_bundle, batch = super().next_train(step)
        else:  # VanillaDataManager.next_train, with the contrastive rays drawn image by image
            self.train_count += 1
            image_batch = next(self.iter_train_image_dataloader)
            batch = self.train_pixel_sampler.sample(image_batch)
            group_contrastive_rays(batch, image_batch, self.surrogate_rays, self.config.contrastive_images)
            ray_bundle = self.train_ray_generator(batch["indices"])
            batch[SURROGATE_IMAGES] = batch["indices"][: self.surrogate_rays, 0]
        if shaping:
            batch[SURROGATE] = self.surrogate.descriptors(batch["indices"][: self.surrogate_rays])
        if self.marks_masked_rays(step) and isinstance(self.surrogate, LabelMapSurrogate):
            batch[MASKED] = self.surrogate.descriptors(batch["indices"]) != 0
        return ray_bundle, batch


def grouped_pixels(
    image_count: int, height: int, width: int, rays: int, images: int, valid: Optional[Tensor] = None
) -> Tensor:
    """``(rays, 3)`` pixels ``(image, y, x)`` of ``images`` distinct images of ``image_count`` drawn at random (all of
    them when fewer), an equal share each (the first ``rays % images`` one more), contiguous per image, uniform over
    each image's pixels or, given ``valid`` ``(image_count, H, W)`` bool, its valid ones."""
    candidates = torch.arange(image_count) if valid is None else torch.nonzero(valid.flatten(1).any(dim=1))[:, 0]
    chosen = candidates[torch.randperm(len(candidates))[:images]]
    shares = torch.full((len(chosen),), rays // len(chosen))
    shares[: rays % len(chosen)] += 1
    image = chosen.repeat_interleave(shares)
    if valid is None:
        return torch.stack([image, torch.randint(height, (rays,)), torch.randint(width, (rays,))], dim=-1)
    draws = torch.multinomial(valid[chosen].flatten(1).float(), int(shares.max()), replacement=True)
    pixel = draws[torch.arange(draws.shape[1]) < shares[:, None]]
    return torch.stack([image, pixel // width, pixel % width], dim=-1)


def group_contrastive_rays(batch: Dict[str, Tensor], image_batch: Dict[str, Tensor], rays: Optional[int], images: int):
    """Replaces the first ``rays`` rays of nerfstudio's ``batch`` (sampled from ``image_batch``) by
    :func:`grouped_pixels` of ``images`` images: every value at their pixels, ``indices`` with absolute camera
    indices, as nerfstudio's pixel sampler collates them."""
    count = len(batch["indices"]) if rays is None else min(rays, len(batch["indices"]))
    image_count, height, width = image_batch["image"].shape[:3]
    mask = image_batch.get("mask")
    pixels = grouped_pixels(image_count, height, width, count, images, None if mask is None else mask[..., 0].cpu())
    c, y, x = pixels.unbind(-1)
    for key, value in image_batch.items():
        if key in batch and key != "indices":
            batch[key][:count] = value[c, y, x]
    indices = torch.stack([image_batch["image_idx"][c], y, x], dim=-1)
    batch["indices"][:count] = indices.to(batch["indices"])
