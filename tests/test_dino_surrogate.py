"""Plumbing tests for the DINO key surrogate with randomly initialised weights (no network, no semantics)."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from jacobinerf_ns.surrogates import dino
from jacobinerf_ns.surrogates.dino import (
    DinoExtraction,
    DinoWeightsMissing,
    extract_keys,
    load_dino,
    load_or_extract,
)

MODEL_NAME = "vit_small_patch8_224_dino"


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    import timm

    torch.manual_seed(0)
    model = timm.create_model(MODEL_NAME, pretrained=False)
    path = tmp_path_factory.mktemp("weights") / "rand.pth"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def model(weights):
    return load_dino(DinoExtraction(weights=weights), "cpu")


def _write_png(path: Path, seed: int, size=(40, 32)) -> Path:
    """Random RGB PNG of size (W, H)."""
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def images(tmp_path) -> list:
    return [_write_png(tmp_path / f"img{i}.png", seed=i) for i in range(3)]


@pytest.mark.parametrize("stride", [4, 8])
def test_extract_keys_shape_and_norm(model, weights, stride):
    extraction = DinoExtraction(weights=weights, stride=stride, short_side=32)
    image = torch.rand(32, 40, 3)  # H=32 is the short side -> resized 32x40
    keys = extract_keys(model, image, extraction)
    assert keys.shape == ((32 - 8) // stride + 1, (40 - 8) // stride + 1, 384)
    assert keys.dtype == torch.float32
    torch.testing.assert_close(keys.norm(dim=-1), torch.ones(keys.shape[:2]))


def test_extract_keys_resizes_short_side(model, weights):
    extraction = DinoExtraction(weights=weights, stride=8, short_side=32)
    keys = extract_keys(model, torch.rand(48, 24, 3), extraction)  # W=24 short -> resized 64x32
    assert keys.shape == ((64 - 8) // 8 + 1, (32 - 8) // 8 + 1, 384)


def test_key_facet_matches_timm_forward(model, weights):
    """At the native stride/size the manual forward must reproduce timm's keys of blocks[layer]."""
    layer = 11
    torch.manual_seed(1)
    image = torch.rand(224, 224, 3)
    captured = {}
    handle = model.blocks[layer].attn.qkv.register_forward_hook(lambda m, i, o: captured.setdefault("qkv", o))
    try:
        mean = torch.tensor(dino.IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(dino.IMAGENET_STD).view(1, 3, 1, 1)
        with torch.no_grad():
            model.forward_features((image.permute(2, 0, 1)[None] - mean) / std)
    finally:
        handle.remove()
    qkv = captured["qkv"].reshape(1, 1 + 28 * 28, 3, 6, 64)
    expected = F.normalize(qkv[0, 1:, 1].reshape(28, 28, 384), dim=-1)

    keys = extract_keys(model, image, DinoExtraction(weights=weights, stride=8, short_side=224, layer=layer))
    torch.testing.assert_close(keys, expected, atol=1e-5, rtol=1e-4)


def test_load_or_extract_dtype_and_cache_hit(weights, images, tmp_path, monkeypatch):
    extraction = DinoExtraction(weights=weights, stride=8, short_side=32)
    cache_dir = tmp_path / "cache"
    first = load_or_extract(images, extraction, cache_dir)
    assert first.dtype == torch.float16 and first.device.type == "cpu"
    assert first.shape == (3, 4, 5, 384)  # 32x40 -> ((32-8)//8+1, (40-8)//8+1)
    torch.testing.assert_close(first.float().norm(dim=-1), torch.ones(first.shape[:3]), atol=2e-3, rtol=0)
    assert len(list(cache_dir.glob("dino_*.pt"))) == 1
    assert not list(cache_dir.glob("*.tmp*"))

    def _fail(*args, **kwargs):
        raise AssertionError("extract_keys must not run on a cache hit")

    monkeypatch.setattr(dino, "extract_keys", _fail)
    second = load_or_extract(images, extraction, cache_dir)
    assert torch.equal(first, second)


def test_cache_miss_on_stride_change(weights, images, tmp_path):
    cache_dir = tmp_path / "cache"
    coarse = load_or_extract(images, DinoExtraction(weights=weights, stride=8, short_side=32), cache_dir)
    fine = load_or_extract(images, DinoExtraction(weights=weights, stride=4, short_side=32), cache_dir)
    assert coarse.shape[1:3] == (4, 5) and fine.shape[1:3] == (7, 9)
    assert len(list(cache_dir.glob("dino_*.pt"))) == 2


def test_cache_miss_on_image_change(weights, images, tmp_path):
    extraction = DinoExtraction(weights=weights, stride=8, short_side=32)
    cache_dir = tmp_path / "cache"
    before = load_or_extract(images, extraction, cache_dir)
    stat = images[1].stat()
    _write_png(images[1], seed=99)
    os.utime(images[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # coarse-mtime filesystems
    after = load_or_extract(images, extraction, cache_dir)
    assert len(list(cache_dir.glob("dino_*.pt"))) == 2
    assert torch.equal(before[0], after[0]) and not torch.equal(before[1], after[1])


def test_mixed_image_sizes_rejected(weights, tmp_path):
    files = [_write_png(tmp_path / "a.png", 0), _write_png(tmp_path / "b.png", 1, size=(32, 40))]
    with pytest.raises(ValueError, match="same size"):
        load_or_extract(files, DinoExtraction(weights=weights, stride=8, short_side=32), tmp_path / "cache")


@pytest.mark.parametrize("missing", [None, "does/not/exist.pth"])
def test_weights_missing(images, tmp_path, missing):
    weights = None if missing is None else tmp_path / missing
    with pytest.raises(DinoWeightsMissing, match="--pipeline.datamanager.dino-weights PATH") as info:
        load_or_extract(images, DinoExtraction(weights=weights), tmp_path / "cache")
    assert "surrogate masks" in str(info.value)
    if weights is not None:
        assert str(weights) in str(info.value)
    with pytest.raises(DinoWeightsMissing):
        load_dino(DinoExtraction(weights=weights), "cpu")


def test_wrong_state_dict_is_named(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"model": {"not_a_vit.weight": torch.zeros(1)}}, bad)
    with pytest.raises(ValueError, match="bad.pth"):
        load_dino(DinoExtraction(weights=bad), "cpu")
