"""Colours for label ids, and the overlays the viewer, the label export and the demo draw."""

from __future__ import annotations

import torch
from torch import Tensor

OVERLAY_ALPHA = 0.5
"""Weight of the label colour over the image in label overlays."""
HIGHLIGHT = torch.tensor([1.0, 0.15, 0.1])
"""Colour of selected pixels."""
HIGHLIGHT_ALPHA = 0.6


def palette(count: int, seed: int = 0) -> Tensor:
    """Distinct-enough colours in [0, 1] for ``count`` ids ``(count, 3)``; id 0 (void) is black."""
    generator = torch.Generator().manual_seed(seed)
    colors = torch.rand(count, 3, generator=generator) * 0.8 + 0.2
    colors[0] = 0.0
    return colors


def label_overlay(rgb: Tensor, labels: Tensor, colors: Tensor, alpha: float = OVERLAY_ALPHA) -> Tensor:
    """``(H, W, 3)`` image with each pixel's label colour blended in: ``(1 − α) rgb + α colors[labels]``."""
    return (1 - alpha) * rgb + alpha * colors.to(rgb)[labels.long()]


def highlight(rgb: Tensor, mask: Tensor, color: Tensor = HIGHLIGHT, alpha: float = HIGHLIGHT_ALPHA) -> Tensor:
    """``(H, W, 3)`` image with the pixels of ``mask`` (``(H, W)`` or ``(H, W, 1)``, bool or [0, 1]) tinted."""
    weight = alpha * mask.reshape(*rgb.shape[:-1], 1).to(rgb)
    return rgb * (1 - weight) + weight * color.to(rgb)


def label_image(labels: Tensor):
    """``(H, W)`` ids → the smallest unsigned integer array that holds them (uint8, else uint16) for a PNG."""
    import numpy as np

    array = labels.cpu().numpy()
    return array.astype(np.uint8 if array.max(initial=0) < 256 else np.uint16)


def load_rgb(path, height: int, width: int) -> Tensor:
    """``(H, W, 3)`` float image in [0, 1] from a file, resized to ``height × width`` when it differs."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        if image.size != (width, height):
            image = image.resize((width, height))
        return torch.from_numpy(np.asarray(image).copy()).float() / 255


def to_uint8(image: Tensor):
    """``[0, 1]`` float tensor → uint8 numpy array."""
    return (image.detach().clamp(0, 1).cpu().numpy() * 255).round().astype("uint8")
