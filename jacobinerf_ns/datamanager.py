"""Datamanager that attaches per-ray surrogate descriptors to training batches (``batch["surrogate"]``), and depth
maps to every batch of a scene that has them (``batch["depth_image"]``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Literal, Optional, Type

from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig
from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs
from nerfstudio.data.datasets.base_dataset import InputDataset
from nerfstudio.data.utils.data_utils import get_depth_image_from_path
from nerfstudio.utils.rich_utils import CONSOLE

from jacobinerf_ns import cache
from jacobinerf_ns.errors import require
from jacobinerf_ns.surrogates.build import SurrogateName, build_surrogate

SURROGATE = "surrogate"
DEPTH_IMAGE = "depth_image"
"""nerfstudio's batch key of depth maps (its pixel samplers and depth losses use it)."""


class DepthMapDataset(InputDataset):
    """Images plus each frame's depth map in scene units: file values × ``depth_unit_scale_factor`` (to metres) ×
    the dataparser's scale (the poses' normalisation), resized (nearest) to the camera's resolution.

    Unlike nerfstudio's ``DepthDataset`` it never makes depth up: a scene without depth files gets the plain
    :class:`InputDataset` (:func:`scene_dataset`), where ``DepthDataset`` would download a monocular depth model.
    """

    exclude_batch_keys_from_device = InputDataset.exclude_batch_keys_from_device + [DEPTH_IMAGE]

    def __init__(self, dataparser_outputs: DataparserOutputs, scale_factor: float = 1.0) -> None:
        super().__init__(dataparser_outputs, scale_factor)
        self.depth_filenames = dataparser_outputs.metadata["depth_filenames"]
        self.depth_scale = dataparser_outputs.metadata["depth_unit_scale_factor"] * dataparser_outputs.dataparser_scale

    def get_metadata(self, data: Dict) -> Dict:
        index = data["image_idx"]
        height, width = int(self.cameras.height[index]), int(self.cameras.width[index])
        return {DEPTH_IMAGE: get_depth_image_from_path(self.depth_filenames[index], height, width, self.depth_scale)}


def scene_dataset(outputs: DataparserOutputs, scale_factor: float) -> InputDataset:
    """:class:`DepthMapDataset` when the dataparser found depth files (``depth_filenames``), else ``InputDataset``."""
    has_depth = outputs.metadata.get("depth_filenames") is not None
    return (DepthMapDataset if has_depth else InputDataset)(outputs, scale_factor=scale_factor)


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


class JacobiNerfDataManager(VanillaDataManager):
    config: JacobiNerfDataManagerConfig

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.surrogate = None
        self.surrogate_rays: Optional[int] = None
        """Rays at the start of each batch that get descriptors (the model's contrastive batch); None: all."""

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

    def next_train(self, step: int):
        ray_bundle, batch = super().next_train(step)
        if self.surrogate is not None:
            batch[SURROGATE] = self.surrogate.descriptors(batch["indices"][: self.surrogate_rays])
        return ray_bundle, batch
