"""Build the surrogate chosen with ``--pipeline.datamanager.surrogate {dino,masks,features}``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional, Sequence

import numpy as np
import torch
from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs

from jacobinerf_ns import cache
from jacobinerf_ns.labels import load_label_maps
from jacobinerf_ns.surrogates import FeatureMapSurrogate, LabelMapSurrogate, Surrogate

SurrogateName = Literal["dino", "masks", "features"]


def build_surrogate(
    name: SurrogateName,
    outputs: DataparserOutputs,
    *,
    masks_from: Literal["instances", "semantics"] = "instances",
    masks_dir: Optional[Path] = None,
    features_dir: Optional[Path] = None,
    dino=None,
    cache_dir: Optional[Path] = None,
    device: str = "cpu",
) -> Surrogate:
    """The surrogate for the training images of ``outputs`` (all of one size)."""
    height, width = _image_size(outputs)
    images = outputs.image_filenames
    if name == "masks":
        if masks_dir is not None:
            return LabelMapSurrogate(
                load_label_maps(_files_by_stem(Path(masks_dir), images, (".png",), "mask"), height, width)
            )
        if masks_from not in outputs.metadata:
            raise ValueError(
                f"The mask surrogate needs per-pixel {masks_from} labels, and this dataset has none. Give masks from "
                "any segmenter with `--pipeline.datamanager.masks-dir DIR` (one integer PNG per training image, same "
                "file stem, 0 = unlabelled), or use `--pipeline.datamanager.surrogate dino`."
            )
        return LabelMapSurrogate(load_label_maps(outputs.metadata[masks_from].filenames, height, width))
    if name == "features":
        if features_dir is None:
            raise ValueError(
                "The features surrogate needs `--pipeline.datamanager.features-dir DIR`: one (h, w, E) array per "
                "training image, named <image stem>.npy or <image stem>.pt."
            )
        files = _files_by_stem(Path(features_dir), images, (".npy", ".pt"), "feature map")
        return FeatureMapSurrogate(torch.stack([_load_feature_map(f) for f in files]), height, width)
    if name == "dino":
        from jacobinerf_ns.surrogates.dino import load_or_extract

        maps = load_or_extract(images, dino, cache.cache_root(cache_dir), device=device)
        return FeatureMapSurrogate(maps, height, width)
    raise ValueError(f"Unknown surrogate {name!r}: choose dino, masks or features.")


def _image_size(outputs: DataparserOutputs):
    heights, widths = outputs.cameras.height.unique(), outputs.cameras.width.unique()
    if len(heights) != 1 or len(widths) != 1:
        raise ValueError("Surrogates need all training images at one resolution.")
    return int(heights[0]), int(widths[0])


def _files_by_stem(folder: Path, images: Sequence[Path], suffixes, what: str):
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} folder {folder} does not exist.")
    files = []
    for image in images:
        found = [
            folder / f"{Path(image).stem}{suffix}"
            for suffix in suffixes
            if (folder / f"{Path(image).stem}{suffix}").exists()
        ]
        if not found:
            raise FileNotFoundError(
                f"No {what} for training image {Path(image).name} in {folder} "
                f"(expected {Path(image).stem}{'|'.join(suffixes)})."
            )
        files.append(found[0])
    return files


def _load_feature_map(path: Path) -> torch.Tensor:
    array = (
        torch.load(path, map_location="cpu", weights_only=True)
        if path.suffix == ".pt"
        else torch.from_numpy(np.load(path))
    )
    if array.dim() != 3:
        raise ValueError(f"Feature map {path} has shape {tuple(array.shape)}; expected (h, w, E).")
    return array.to(torch.float16)
