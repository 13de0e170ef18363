"""DINO ViT-S/8 "key" features used by JacobiNeRF as a mutual-information surrogate.

Follows Amir et al.'s dino-vit-features ``ViTExtractor``: the patch-embedding conv is run with a
smaller stride (8 -> 4) for a denser token grid, the positional embedding is bicubically
interpolated to that grid (DINO's ``interpolate_pos_encoding``), and the keys of the last block's
attention (all heads concatenated, CLS token dropped) are the per-token descriptor. The blocks run their
attention with ``scaled_dot_product_attention`` (same result as timm's explicit softmax): at stride 4 the grid has
~10⁴ tokens, whose explicit ``(heads, T, T)`` attention matrix alone would take ~5 GB.

Keys are cached per image on disk (:mod:`.feature_cache`); the weights come from :mod:`.dino_weights`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from jacobinerf_ns import cache
from jacobinerf_ns.errors import JacobiNerfError
from jacobinerf_ns.surrogates import dino_weights
from jacobinerf_ns.surrogates.feature_cache import FeatureMaps, cached_feature_maps

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CPU_FLOPS_PER_THREAD = 5.5e10
"""Speed of :func:`extract_keys` per CPU thread, for the estimate printed before extracting on CPU (measured on 2
cores: 38 s for a 300×170 image at stride 4 / short side 360, i.e. ~1.1e11 FLOP/s by :func:`extraction_flops`)."""
CHEAP = {"stride": 8, "short_side": 224}
"""The settings suggested to CPU users who find the paper's too slow (a coarser surrogate)."""


@dataclass(frozen=True)
class DinoExtraction:
    """How DINO key features are extracted; every field is part of the cache key."""

    weights: Optional[Path] = None
    """Local weights of ``model_name`` (timm's state dict or DINO's ``dino_deitsmall8_pretrain.pth``); None: timm's
    pretrained weights, downloaded once into torch's hub cache."""
    model_name: str = "vit_small_patch8_224_dino"
    patch_size: int = 8
    """Patch size of ``model_name``."""
    dim: int = 384
    """Embedding width of ``model_name`` (the descriptor's length)."""
    stride: int = 4
    """Stride of the patch-embedding conv (the model was trained with its patch size, 8)."""
    short_side: int = 360
    """Images are resized so that their shorter side has this many pixels."""
    layer: int = 11
    """Index of the block whose attention keys are read (11 = last block of ViT-S)."""
    facet: Literal["key"] = "key"


def load_dino(extraction: DinoExtraction, device: Union[str, torch.device] = "cpu") -> torch.nn.Module:
    """``extraction.model_name`` with its weights (:func:`.dino_weights.load_vit`), eval mode, on ``device``."""
    return dino_weights.load_vit(extraction.model_name, extraction.weights).to(device)


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


def resized_size(height: int, width: int, short_side: int) -> Tuple[int, int]:
    """``(H', W')`` with ``min(H', W') == short_side``; the long side is truncated like torchvision's Resize."""
    if height <= width:
        return short_side, int(short_side * width / height)
    return int(short_side * height / width), short_side


def map_shape(height: int, width: int, extraction: DinoExtraction) -> Tuple[int, int, int]:
    """``(h, w, dim)`` keys of an ``height × width`` image: ``h = (H' - p) // stride + 1`` on the resized ``H'``."""
    resized = resized_size(height, width, extraction.short_side)
    grid = [(side - extraction.patch_size) // extraction.stride + 1 for side in resized]
    return grid[0], grid[1], extraction.dim


def _resize_short_side(x: torch.Tensor, short_side: int) -> torch.Tensor:
    """Resizes ``(B, 3, H, W)`` to :func:`resized_size` (bilinear, antialiased)."""
    size = resized_size(*x.shape[-2:], short_side)
    if size == tuple(x.shape[-2:]):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def _block(block: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """timm's ViT ``Block`` in eval mode (no drop path, no layer scale) with fused attention."""
    attention = block.attn
    batch, count, dim = tokens.shape
    qkv = attention.qkv(block.norm1(tokens)).reshape(batch, count, 3, attention.num_heads, dim // attention.num_heads)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)
    mixed = F.scaled_dot_product_attention(q, k, v)  # softmax(q kᵀ / sqrt(head dim)) v, timm's scale
    tokens = tokens + attention.proj(mixed.transpose(1, 2).reshape(batch, count, dim))
    return tokens + block.mlp(block.norm2(tokens))


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
        tokens = _block(block, tokens)

    block = model.blocks[extraction.layer]
    batch, num_tokens, dim = tokens.shape
    heads = block.attn.num_heads
    qkv = block.attn.qkv(block.norm1(tokens)).reshape(batch, num_tokens, 3, heads, dim // heads)
    keys = qkv[:, 1:, 1].reshape(batch, h, w, dim)[0]  # drop CLS, concatenate heads
    return F.normalize(keys.float(), dim=-1)


def settings_key(extraction: DinoExtraction) -> str:
    """Hash of the extraction settings and the weights' identity (local file signature or timm's pretrained URL)."""
    settings = {f.name: getattr(extraction, f.name) for f in dataclasses.fields(extraction) if f.name != "weights"}
    weights = dino_weights.weights_identity(extraction.model_name, extraction.weights)
    return cache.digest({"extraction": settings, "weights": weights})


def extraction_flops(shape: Tuple[int, int, int], extraction: DinoExtraction) -> float:
    """FLOPs of one image with ``T = h·w`` tokens of width ``D`` through ``layer + 1`` blocks: ``24·T·D²`` (linear
    layers) ``+ 4·T²·D`` (attention) each."""
    tokens, dim = shape[0] * shape[1], extraction.dim
    return (extraction.layer + 1) * (24 * tokens * dim**2 + 4 * tokens**2 * dim)


def cpu_cost_note(count: int, image_size: Tuple[int, int], extraction: DinoExtraction) -> str:
    """The estimated CPU time of extracting ``count`` images of ``image_size`` (H, W), and the cheaper settings."""
    speed = CPU_FLOPS_PER_THREAD * torch.get_num_threads()

    def seconds(settings: DinoExtraction) -> float:
        return count * extraction_flops(map_shape(*image_size, settings), settings) / speed

    note = (
        f"DINO keys on CPU ({torch.get_num_threads()} threads): about {_duration(seconds(extraction))} for {count} "
        f"image{'s' if count > 1 else ''} at stride {extraction.stride}, short side {extraction.short_side} "
        "(a GPU is much faster)."
    )
    cheap = dataclasses.replace(extraction, **CHEAP)
    if seconds(cheap) < seconds(extraction):
        note += (
            f" Cheaper, and coarser than the paper's: --pipeline.datamanager.dino-stride {CHEAP['stride']} "
            f"--pipeline.datamanager.dino-short-side {CHEAP['short_side']} (about {_duration(seconds(cheap))})."
        )
    return note


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def _image_size(image_filenames: Sequence[Path]) -> Tuple[int, int]:
    """The common ``(H, W)`` of the images (headers only); JacobiNerfError naming the first that differs."""
    sizes = []
    for filename in image_filenames:
        with Image.open(filename) as image:
            sizes.append((image.height, image.width))
    for filename, size in zip(image_filenames, sizes):
        if size != sizes[0]:
            raise JacobiNerfError(
                f"All images of a scene must have the same size for DINO extraction: {filename} is "
                f"{size[1]}x{size[0]}, {image_filenames[0]} is {sizes[0][1]}x{sizes[0][0]} (WxH)."
            )
    return sizes[0]


def _read_image(filename: Path) -> torch.Tensor:
    with Image.open(filename) as image:
        return torch.from_numpy(np.array(image.convert("RGB"))).float() / 255.0


def load_or_extract(
    image_filenames: Sequence[Path],
    extraction: DinoExtraction,
    cache_dir: Path,
    device: Union[str, torch.device] = "cpu",
    feature_dim: Optional[int] = None,
) -> FeatureMaps:
    """``(N, h, w, C)`` float16 DINO keys of the images, on disk under ``cache_dir/dino/<settings>/`` (one file per
    image); only images without a valid entry are extracted, so an interrupted extraction resumes."""
    from nerfstudio.utils.rich_utils import CONSOLE

    image_size = _image_size(image_filenames)
    folder = Path(cache_dir) / "dino" / settings_key(extraction)

    def start(count: int):
        if torch.device(device).type == "cpu":
            CONSOLE.print(f"[yellow]{cpu_cost_note(count, image_size, extraction)}")
        model = load_dino(extraction, device)
        return lambda index: extract_keys(model, _read_image(image_filenames[index]), extraction)

    return cached_feature_maps(
        folder,
        image_filenames,
        map_shape(*image_size, extraction),
        start,
        description="DINO keys",
        feature_dim=feature_dim,
    )
