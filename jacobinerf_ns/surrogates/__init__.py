"""Mutual-information surrogates: per-pixel descriptors whose pairwise affinity defines the positives.

Two kinds of descriptor, one interface:

* integer ids (``masks``: instance labels of the dataset or masks of any external segmenter):
  affinity 1 for the same non-void id, else 0 — any threshold in (0, 1) gives "same mask";
* float feature vectors (``dino``, ``features``): affinity = cosine similarity.

A :class:`Surrogate` turns the training batch's pixel indices ``(camera, y, x)`` into descriptors;
:func:`affinity` compares them. Builders for each kind live in :mod:`.build`; feature maps stay on disk
(:mod:`.feature_cache`), id maps in RAM.

Masks numbered independently in every image (a segmenter run per image) only say which rays of one image belong
together: the datamanager then gives each contrastive ray's image (``batch[SURROGATE_IMAGES]``), and shaping compares
rays of the same image only (:func:`jacobinerf_ns.shaping.mi_shaping_losses`, ``comparable``).
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

SURROGATE = "surrogate"
"""Batch key of the contrastive rays' descriptors."""
SURROGATE_IMAGES = "surrogate_images"
"""Batch key of the contrastive rays' training-image indices ``(B,)``, present when ids hold within an image only."""
MASKED = "masked"
"""Batch key of every ray's "its pixel lies in a mask" (a non-void id) ``(R,)`` bool, present when the surrogate is
masks."""


class Surrogate(Protocol):
    def descriptors(self, indices: Tensor) -> Tensor:
        """Descriptors ``(B, E)`` (float) or ``(B,)`` (integer ids) for pixel indices ``(B, 3)`` = (camera, y, x)."""


def affinity(descriptors: Tensor) -> Tensor:
    """Pairwise affinity ``(B, B)``: same non-void id for integer ids, cosine similarity for features."""
    if not descriptors.is_floating_point():
        same = descriptors[:, None] == descriptors[None, :]
        return (same & (descriptors[:, None] != 0)).float()
    unit = F.normalize(descriptors.float(), dim=-1)
    return unit @ unit.T


class LabelMapSurrogate:
    """Integer id maps ``(N, H, W)``, one per training image, indexed at each ray's pixel (held in RAM: 4 bytes per
    pixel as int32)."""

    def __init__(self, ids: Tensor) -> None:
        self.ids = ids

    def descriptors(self, indices: Tensor) -> Tensor:
        cam, y, x = indices.long().cpu().unbind(-1)
        return self.ids[cam, y, x]


class FeatureMapSurrogate:
    """Feature maps ``(N, h, w, E)`` (any resolution), sampled bilinearly at each ray's pixel centre.

    ``maps`` is a tensor held in memory (the reference) or a :class:`~.feature_cache.FeatureMaps` on disk, which
    reads only the pixels a batch samples.
    """

    def __init__(self, maps, image_height: int, image_width: int) -> None:
        self.maps = maps
        self.image_size = (image_height, image_width)

    def descriptors(self, indices: Tensor) -> Tensor:
        cam, y, x = indices.long().cpu().unbind(-1)
        return sample_bilinear(
            self.maps, cam, (y.float() + 0.5) / self.image_size[0], (x.float() + 0.5) / self.image_size[1]
        )


def sample_bilinear(maps, cam: Tensor, v: Tensor, u: Tensor) -> Tensor:
    """Bilinear sample of ``maps (N, h, w, E)`` at normalised coordinates ``u, v ∈ [0, 1]`` (cell centres at
    (k+.5)/n). ``maps`` is indexed once, ``maps[cams, ys, xs]``, for the four corners of every sample."""
    _, h, w, _ = maps.shape
    fy = (v * h - 0.5).clamp(0, h - 1)
    fx = (u * w - 0.5).clamp(0, w - 1)
    y0, x0 = fy.floor().long(), fx.floor().long()
    y1, x1 = (y0 + 1).clamp(max=h - 1), (x0 + 1).clamp(max=w - 1)
    wy, wx = (fy - y0)[:, None], (fx - x0)[:, None]
    corners = maps[cam.repeat(4), torch.cat([y0, y0, y1, y1]), torch.cat([x0, x1, x0, x1])].float()
    top_left, top_right, bottom_left, bottom_right = corners.view(4, len(cam), -1)
    top = top_left * (1 - wx) + top_right * wx
    bottom = bottom_left * (1 - wx) + bottom_right * wx
    return top * (1 - wy) + bottom * wy
