"""DINO ViT-S/8 "key" features used by JacobiNeRF as a mutual-information surrogate.

Follows Amir et al.'s dino-vit-features ``ViTExtractor``: the patch-embedding conv is run with a
smaller stride (8 -> 4) for a denser token grid, the positional embedding is bicubically
interpolated to that grid (DINO's ``interpolate_pos_encoding``), and the keys of the last block's
attention (all heads concatenated, CLS token dropped) are the per-token descriptor.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from jacobinerf_ns import cache, files

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DinoExtraction:
    """How DINO key features are extracted; every field is part of the cache key."""

    weights: Optional[Path]
    """Local timm state_dict of ``model_name`` (loaded with ``torch.load``); there is no download."""
    model_name: str = "vit_small_patch8_224_dino"
    stride: int = 4
    """Stride of the patch-embedding conv (the model was trained with its patch size, 8)."""
    short_side: int = 360
    """Images are resized so that their shorter side has this many pixels."""
    layer: int = 11
    """Index of the block whose attention keys are read (11 = last block of ViT-S)."""
    facet: Literal["key"] = "key"


class DinoWeightsMissing(ValueError):
    """Raised when the DINO surrogate is requested without a usable local weights file."""

    def __init__(self, weights: Optional[Path]):
        where = "no weights file was given" if weights is None else f"weights file not found: {weights}"
        super().__init__(
            f"DINO surrogate: {where}. Pass a local timm state_dict of vit_small_patch8_224_dino with "
            "`--pipeline.datamanager.dino-weights PATH` (weights are never downloaded: there is no network "
            "download). Alternatively use `--pipeline.datamanager.surrogate masks` or "
            "`--pipeline.datamanager.surrogate features`."
        )


def _check_weights(extraction: DinoExtraction) -> Path:
    if extraction.weights is None or not Path(extraction.weights).is_file():
        raise DinoWeightsMissing(extraction.weights)
    return Path(extraction.weights)


def load_dino(extraction: DinoExtraction, device: Union[str, torch.device] = "cpu") -> torch.nn.Module:
    """Builds ``extraction.model_name`` with timm and strictly loads the local weights (eval mode)."""
    import timm

    weights = _check_weights(extraction)
    model = timm.create_model(extraction.model_name, pretrained=False)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    for wrapper_key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(wrapper_key), dict):
            state = state[wrapper_key]
            break
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{weights} is not a state_dict of timm model '{extraction.model_name}': {err}") from err
    return model.eval().to(device)


def _pos_embed_for_grid(model: torch.nn.Module, h: int, w: int) -> torch.Tensor:
    """Positional embedding for an h x w token grid (+CLS), as DINO's ``interpolate_pos_encoding``.

    The trained grid (sqrt(N) x sqrt(N)) is resized bicubically with scale factor (g + 0.1) / sqrt(N)
    (the +0.1 avoids floating-point rounding down the output size, as in DINO / dino-vit-features).
    """
    pos_embed = model.pos_embed
    n = pos_embed.shape[1] - 1
    if h * w == n and h == w:
        return pos_embed
    side = int(math.sqrt(n))
    dim = pos_embed.shape[-1]
    grid = pos_embed[:, 1:].reshape(1, side, side, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(
        grid,
        scale_factor=((h + 0.1) / side, (w + 0.1) / side),
        mode="bicubic",
        align_corners=False,
        recompute_scale_factor=False,
    )
    assert grid.shape[-2:] == (h, w)
    return torch.cat([pos_embed[:, :1], grid.permute(0, 2, 3, 1).reshape(1, h * w, dim)], dim=1)


def _resize_short_side(x: torch.Tensor, short_side: int) -> torch.Tensor:
    """Resizes (B,3,H,W) so that min(H,W) == short_side; the long side is truncated like torchvision's Resize."""
    height, width = x.shape[-2:]
    if height <= width:
        size = (short_side, int(short_side * width / height))
    else:
        size = (int(short_side * height / width), short_side)
    if size == (height, width):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


@torch.no_grad()
def extract_keys(model: torch.nn.Module, image: torch.Tensor, extraction: DinoExtraction) -> torch.Tensor:
    """(H,W,3) image in [0,1] -> (h,w,C) L2-normalised keys of block ``extraction.layer``, float32.

    With the resized image H'xW' and patch size p: h = (H'-p)//stride + 1, w = (W'-p)//stride + 1.
    """
    if extraction.facet != "key":
        raise ValueError(f"Unsupported DINO facet '{extraction.facet}' (only 'key').")
    device = model.pos_embed.device
    x = image.to(device=device, dtype=torch.float32).permute(2, 0, 1)[None]
    x = _resize_short_side(x, extraction.short_side)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    x = (x - mean) / std

    proj = model.patch_embed.proj
    tokens = F.conv2d(x, proj.weight, proj.bias, stride=extraction.stride)
    h, w = tokens.shape[-2:]
    tokens = model.patch_embed.norm(tokens.flatten(2).transpose(1, 2))
    tokens = torch.cat([model.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
    tokens = model.pos_drop(tokens + _pos_embed_for_grid(model, h, w))
    for block in model.blocks[: extraction.layer]:
        tokens = block(tokens)

    block = model.blocks[extraction.layer]
    batch, num_tokens, dim = tokens.shape
    heads = block.attn.num_heads
    qkv = block.attn.qkv(block.norm1(tokens)).reshape(batch, num_tokens, 3, heads, dim // heads)
    keys = qkv[:, 1:, 1].reshape(batch, h, w, dim)[0]  # drop CLS, concatenate heads
    return F.normalize(keys.float(), dim=-1)


def _cache_key(image_filenames: Sequence[Path], extraction: DinoExtraction, weights: Path) -> str:
    """sha1 over the extraction settings (minus ``weights``), the weights file and every image (path, size, mtime)."""
    settings = {f.name: getattr(extraction, f.name) for f in dataclasses.fields(extraction) if f.name != "weights"}
    payload = {
        "extraction": settings,
        "weights": cache.file_signature(weights),
        "images": [cache.file_signature(Path(p)) for p in image_filenames],
    }
    return cache.digest(payload)


def load_or_extract(
    image_filenames: Sequence[Path],
    extraction: DinoExtraction,
    cache_dir: Path,
    device: Union[str, torch.device] = "cpu",
) -> torch.Tensor:
    """(N,h,w,C) float16 CPU DINO keys for all images, cached in ``cache_dir/dino_{sha1}.pt``."""
    from nerfstudio.utils.rich_utils import CONSOLE
    from rich.progress import track

    weights = _check_weights(extraction)
    cache_dir = Path(cache_dir)
    cache_file = cache_dir / f"dino_{_cache_key(image_filenames, extraction, weights)}.pt"
    if cache_file.exists():
        CONSOLE.print(f"DINO keys: cache hit, loading {cache_file}")
        return torch.load(cache_file, map_location="cpu", weights_only=True)

    CONSOLE.print(f"DINO keys: cache miss, extracting {len(image_filenames)} images into {cache_file}")
    model = load_dino(extraction, device)
    features = []
    image_size = None
    for filename in track(image_filenames, description="Extracting DINO keys", console=CONSOLE, transient=True):
        with Image.open(filename) as pil_image:
            array = np.array(pil_image.convert("RGB"))
        if image_size is None:
            image_size = array.shape[:2]
        elif array.shape[:2] != image_size:
            raise ValueError(
                f"All images of a scene must have the same size for DINO extraction: {filename} is "
                f"{array.shape[1]}x{array.shape[0]}, expected {image_size[1]}x{image_size[0]} (WxH)."
            )
        image = torch.from_numpy(array).float() / 255.0
        features.append(extract_keys(model, image, extraction).to("cpu", torch.float16))
    stacked = torch.stack(features)

    files.torch_save(cache_file, stacked)
    return stacked
