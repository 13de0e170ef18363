"""Build the surrogate chosen with ``--pipeline.datamanager.surrogate {dino,masks,features}``.

Feature maps (``dino``, ``features``) stay on disk, one float16 file per image (:mod:`.feature_cache`); id maps
(``masks``) are held in RAM as int32, 4 bytes per pixel of every training image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional, Sequence

import numpy as np
import torch
from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs
from nerfstudio.utils.rich_utils import CONSOLE

from jacobinerf_ns import cache
from jacobinerf_ns.errors import JacobiNerfError
from jacobinerf_ns.labels import load_label_maps
from jacobinerf_ns.surrogates import FeatureMapSurrogate, LabelMapSurrogate, Surrogate
from jacobinerf_ns.surrogates.feature_cache import FeatureMaps, cached_feature_maps, stored_shape

SurrogateName = Literal["dino", "masks", "features"]


def build_surrogate(
    name: SurrogateName,
    outputs: DataparserOutputs,
    *,
    masks_from: Literal["instances", "semantics"] = "instances",
    masks_dir: Optional[Path] = None,
    features_dir: Optional[Path] = None,
    dino=None,
    feature_dim: Optional[int] = None,
    cache_dir: Optional[Path] = None,
    device: str = "cpu",
) -> Surrogate:
    """The surrogate for the training images of ``outputs`` (all of one size)."""
    height, width = _image_size(outputs)
    images = outputs.image_filenames
    if name == "masks":
        if masks_dir is not None:
            files = _files_by_stem(Path(masks_dir), images, (".png",), "mask", "--pipeline.datamanager.masks-dir")
            return LabelMapSurrogate(_id_maps(files, height, width))
        if masks_from not in outputs.metadata:
            raise JacobiNerfError(
                f"The mask surrogate needs per-pixel {masks_from} labels, and this dataset has none. Give masks from "
                "any segmenter with `--pipeline.datamanager.masks-dir DIR` (one integer PNG per training image, same "
                "file stem, 0 = unlabelled), or use `--pipeline.datamanager.surrogate dino`."
            )
        return LabelMapSurrogate(_id_maps(outputs.metadata[masks_from].filenames, height, width))
    if name == "features":
        if features_dir is None:
            raise JacobiNerfError(
                "The features surrogate needs `--pipeline.datamanager.features-dir DIR`: one (h, w, E) array per "
                "training image, named <image stem>.npy or <image stem>.pt."
            )
        files = _files_by_stem(
            Path(features_dir), images, (".npy", ".pt"), "feature map", "--pipeline.datamanager.features-dir"
        )
        return FeatureMapSurrogate(_feature_maps(files, cache.cache_root(cache_dir), feature_dim), height, width)
    if name == "dino":
        from jacobinerf_ns.surrogates.dino import DinoExtraction, load_or_extract

        maps = load_or_extract(
            images, dino or DinoExtraction(), cache.cache_root(cache_dir), device=device, feature_dim=feature_dim
        )
        return FeatureMapSurrogate(maps, height, width)
    raise JacobiNerfError(f"Unknown surrogate {name!r}: choose dino, masks or features.")


def _image_size(outputs: DataparserOutputs):
    heights, widths = outputs.cameras.height.unique(), outputs.cameras.width.unique()
    if len(heights) != 1 or len(widths) != 1:
        raise JacobiNerfError(
            "Surrogates need all training images at one resolution; this dataset has several "
            f"(heights {heights.tolist()}, widths {widths.tolist()})."
        )
    return int(heights[0]), int(widths[0])


def _id_maps(files: Sequence[Path], height: int, width: int) -> torch.Tensor:
    """``(N, H, W)`` int32 ids, read one file at a time (PNG ids fit in int32)."""
    ids = torch.empty((len(files), height, width), dtype=torch.int32)
    for index, file in enumerate(files):
        ids[index] = load_label_maps([file], height, width)[0]
    return ids


def _feature_maps(files: Sequence[Path], cache_root: Path, feature_dim: Optional[int]) -> FeatureMaps:
    """The feature files on disk: read in place when they all are float16 ``(h, w, E)`` ``.npy`` of one shape (and
    no PCA), else converted once into float16 cache entries."""
    shapes = {stored_shape(file) if file.suffix == ".npy" else None for file in files}
    shape = next(iter(shapes))
    if feature_dim is None and len(shapes) == 1 and shape is not None and len(shape) == 3:
        CONSOLE.print(f"Feature maps: {len(files)} float16 {shape} maps read in place from {files[0].parent}")
        return FeatureMaps(files, shape)
    first = _load_feature_map(files[0])
    return cached_feature_maps(
        cache_root / "features",
        files,
        tuple(first.shape),
        lambda count: lambda index: _load_feature_map(files[index]),
        description="Feature maps",
        feature_dim=feature_dim,
    )


def _files_by_stem(folder: Path, images: Sequence[Path], suffixes, what: str, option: str):
    if not folder.is_dir():
        raise JacobiNerfError(f"The {what} folder {folder} does not exist: fix {option}.")
    files = []
    for image in images:
        found = [
            folder / f"{Path(image).stem}{suffix}"
            for suffix in suffixes
            if (folder / f"{Path(image).stem}{suffix}").exists()
        ]
        if not found:
            raise JacobiNerfError(
                f"No {what} for training image {Path(image).name} in {folder} "
                f"(expected {Path(image).stem}{'|'.join(suffixes)}): give one per training image with {option}."
            )
        files.append(found[0])
    return files


def _load_feature_map(path: Path) -> torch.Tensor:
    try:
        array = (
            torch.load(path, map_location="cpu", weights_only=True)
            if path.suffix == ".pt"
            else torch.from_numpy(np.load(path))
        )
    except Exception as error:  # torch.load / np.load of arbitrary bytes raise many types: a wrong file
        raise JacobiNerfError(
            f"Feature map {path} could not be read ({error}): expected an (h, w, E) array."
        ) from error
    if not isinstance(array, torch.Tensor) or array.dim() != 3:
        described = f"shaped {tuple(array.shape)}" if isinstance(array, torch.Tensor) else f"a {type(array).__name__}"
        raise JacobiNerfError(f"Feature map {path} is {described}; expected an (h, w, E) array.")
    return array.float()
