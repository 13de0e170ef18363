"""A segmenter's masks of one image as one id map, the form ``--pipeline.datamanager.masks-dir`` reads.

Automatic masks overlap (a book, and the shelf it stands on): each pixel gets the smallest mask covering it, so a part
is never hidden under the whole it belongs to. Ids are per image (1, 2, ..., larger masks first, over the masks that
keep pixels), 0 where no mask covers the pixel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Protocol

import numpy as np

from jacobinerf_ns.errors import JacobiNerfError

MAX_ID = np.iinfo(np.uint16).max


class MaskGenerator(Protocol):
    """What segment-anything's ``SamAutomaticMaskGenerator`` offers: records with a boolean ``segmentation``."""

    def generate(self, image: np.ndarray) -> List[Dict[str, Any]]:
        """``(H, W, 3)`` uint8 RGB → records whose ``"segmentation"`` is an ``(H, W)`` bool mask."""
        ...


def id_map(masks: np.ndarray) -> np.ndarray:
    """``(K, H, W)`` bool masks → ``(H, W)`` uint16 ids: the smallest mask covering each pixel wins (between masks of
    one area, the earlier one: SAM lists its masks by score), 0 where none. Masks are painted largest first (the later
    of equal ones first); ids 1..n number the masks that keep pixels in that order."""
    count, height, width = masks.shape
    if count >= MAX_ID:
        raise JacobiNerfError(f"{count} masks in one image: uint16 id maps hold at most {MAX_ID - 1}.")
    areas = masks.reshape(count, -1).sum(axis=1)
    order = np.lexsort((-np.arange(count), -areas))  # largest first, so smaller masks paint over it
    ids = np.zeros((height, width), dtype=np.int64)
    for rank, index in enumerate(order, start=1):
        ids[masks[index]] = rank
    consecutive = np.zeros(count + 1, dtype=np.uint16)
    kept = np.unique(ids[ids > 0])
    consecutive[kept] = np.arange(1, len(kept) + 1)
    return consecutive[ids]


def image_id_map(generator: MaskGenerator, image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB → ``(H, W)`` uint16 ids of the generator's masks (:func:`id_map`)."""
    records = generator.generate(image)
    if not records:
        return np.zeros(image.shape[:2], dtype=np.uint16)
    return id_map(np.stack([np.asarray(record["segmentation"], dtype=bool) for record in records]))


def read_rgb(path: Path) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB of an image file (alpha dropped)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except OSError as error:
        raise JacobiNerfError(
            f"Image {path} could not be read ({error}): restore it or remove it from the scene."
        ) from error
