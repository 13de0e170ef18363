"""Plumbing tests for the DINO key surrogate with randomly initialised weights (no network, no semantics)."""

import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from jacobinerf_ns.errors import JacobiNerfError
from jacobinerf_ns.surrogates import dino, dino_weights, feature_cache
from jacobinerf_ns.surrogates.dino import DinoExtraction, extract_keys, load_dino, load_or_extract, map_shape
from tests.helpers import unwrapped

MODEL_NAME = "vit_small_patch8_224_dino"
OFFICIAL_FILE = "dino_deitsmall8_pretrain.pth"  # the file name of timm 0.6.7's default_cfg url for MODEL_NAME
SMALL = dict(stride=8, short_side=32)  # a 4 x 5 token grid for 32 x 40 images


def official_dino_state_dict(seed: int = 0) -> dict:
    """Random tensors under the key names and shapes of DINO's ``dino_deitsmall8_pretrain.pth``: the ViT-S/8 backbone
    of DINO's ``vision_transformer.py`` (12 blocks of width 384, 6 heads, 1 + 28² positions), a plain state dict."""
    shapes = {
        "cls_token": (1, 1, 384),
        "pos_embed": (1, 785, 384),
        "patch_embed.proj.weight": (384, 3, 8, 8),
        "patch_embed.proj.bias": (384,),
        "norm.weight": (384,),
        "norm.bias": (384,),
    }
    for block in range(12):
        for name, shape in {
            "norm1.weight": (384,),
            "norm1.bias": (384,),
            "attn.qkv.weight": (1152, 384),
            "attn.qkv.bias": (1152,),
            "attn.proj.weight": (384, 384),
            "attn.proj.bias": (384,),
            "norm2.weight": (384,),
            "norm2.bias": (384,),
            "mlp.fc1.weight": (1536, 384),
            "mlp.fc1.bias": (1536,),
            "mlp.fc2.weight": (384, 1536),
            "mlp.fc2.bias": (384,),
        }.items():
            shapes[f"blocks.{block}.{name}"] = shape
    generator = torch.Generator().manual_seed(seed)
    return {key: 0.05 * torch.randn(shape, generator=generator) for key, shape in shapes.items()}


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


@pytest.fixture
def loaded_once(model, weights, monkeypatch):
    """Extraction with the module's model instead of loading the weights file again (loading is tested below)."""

    def load(extraction, device="cpu"):
        assert extraction.weights == weights
        return model

    monkeypatch.setattr(dino, "load_dino", load)


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    """An empty torch home: timm's hub cache is ``<it>/hub/checkpoints``."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def _write_png(path: Path, seed: int, size=(40, 32)) -> Path:
    """Random RGB PNG of size (W, H)."""
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def images(tmp_path) -> list:
    return [_write_png(tmp_path / f"img{i}.png", seed=i) for i in range(3)]


def _stacked(maps) -> torch.Tensor:
    return torch.stack([maps[i] for i in range(len(maps))])


def _entries(cache_dir: Path) -> list:
    return sorted(cache_dir.glob("dino/*/*.npy"))


class CountingExtractor:
    """``extract_keys`` that counts its calls and, optionally, is interrupted (Ctrl-C) at call ``interrupt_at``."""

    def __init__(self, interrupt_at=None):
        self.calls, self.interrupt_at = 0, interrupt_at

    def __call__(self, *args, **kwargs):
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        self.calls += 1
        return extract_keys(*args, **kwargs)


# ---- extraction ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stride", [4, 8])
def test_extract_keys_shape_and_norm(model, weights, stride):
    extraction = DinoExtraction(weights=weights, stride=stride, short_side=32)
    image = torch.rand(32, 40, 3)  # H=32 is the short side -> resized 32x40
    keys = extract_keys(model, image, extraction)
    assert keys.shape == ((32 - 8) // stride + 1, (40 - 8) // stride + 1, 384) == map_shape(32, 40, extraction)
    assert keys.dtype == torch.float32
    torch.testing.assert_close(keys.norm(dim=-1), torch.ones(keys.shape[:2]))


def test_extract_keys_resizes_short_side(model, weights):
    extraction = DinoExtraction(weights=weights, stride=8, short_side=32)
    keys = extract_keys(model, torch.rand(48, 24, 3), extraction)  # W=24 short -> resized 64x32
    assert keys.shape == ((64 - 8) // 8 + 1, (32 - 8) // 8 + 1, 384) == map_shape(48, 24, extraction)


def test_key_facet_matches_timm_forward(model, weights):
    """At the native stride/size the manual forward (fused attention) must reproduce timm's keys of blocks[layer]."""
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


# ---- the on-disk cache -----------------------------------------------------------------------------------------


def test_load_or_extract_writes_one_fp16_entry_per_image_and_hits_without_the_model(
    loaded_once, weights, images, tmp_path, monkeypatch
):
    extraction = DinoExtraction(weights=weights, **SMALL)
    cache_dir = tmp_path / "cache"
    first = load_or_extract(images, extraction, cache_dir)
    assert first.shape == (3, 4, 5, 384)  # 32x40 -> ((32-8)//8+1, (40-8)//8+1)
    assert first[0].dtype == torch.float16
    torch.testing.assert_close(_stacked(first).float().norm(dim=-1), torch.ones(3, 4, 5), atol=2e-3, rtol=0)
    assert len(_entries(cache_dir)) == 3
    assert not [p for p in cache_dir.rglob("*") if ".partial" in p.name]

    def _fail(*args, **kwargs):
        raise AssertionError("nothing is loaded or extracted on a cache hit")

    monkeypatch.setattr(dino, "extract_keys", _fail)
    monkeypatch.setattr(dino, "load_dino", _fail)
    second = load_or_extract(images, extraction, cache_dir)
    assert torch.equal(_stacked(first), _stacked(second))


def test_cache_miss_on_stride_change(loaded_once, weights, images, tmp_path):
    cache_dir = tmp_path / "cache"
    coarse = load_or_extract(images, DinoExtraction(weights=weights, stride=8, short_side=32), cache_dir)
    fine = load_or_extract(images, DinoExtraction(weights=weights, stride=4, short_side=32), cache_dir)
    assert coarse.shape[1:3] == (4, 5) and fine.shape[1:3] == (7, 9)
    assert len(list(cache_dir.glob("dino/*"))) == 2 and len(_entries(cache_dir)) == 6


def test_a_changed_image_is_the_only_one_extracted_again(loaded_once, weights, images, tmp_path, monkeypatch):
    extraction = DinoExtraction(weights=weights, **SMALL)
    cache_dir = tmp_path / "cache"
    before = _stacked(load_or_extract(images, extraction, cache_dir))
    stat = images[1].stat()
    _write_png(images[1], seed=99)
    os.utime(images[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # coarse-mtime filesystems
    counting = CountingExtractor()
    monkeypatch.setattr(dino, "extract_keys", counting)
    after = _stacked(load_or_extract(images, extraction, cache_dir))
    assert counting.calls == 1
    assert (
        torch.equal(before[0], after[0]) and torch.equal(before[2], after[2]) and not torch.equal(before[1], after[1])
    )


def test_an_interrupted_extraction_resumes_with_the_remaining_images(loaded_once, weights, tmp_path, monkeypatch):
    images = [_write_png(tmp_path / f"img{i}.png", seed=i) for i in range(5)]
    extraction = DinoExtraction(weights=weights, **SMALL)
    cache_dir = tmp_path / "cache"
    monkeypatch.setattr(dino, "extract_keys", CountingExtractor(interrupt_at=2))
    with pytest.raises(KeyboardInterrupt):
        load_or_extract(images, extraction, cache_dir)
    assert len(_entries(cache_dir)) == 2
    assert not [p for p in cache_dir.rglob("*") if ".partial" in p.name]

    resumed = CountingExtractor()
    monkeypatch.setattr(dino, "extract_keys", resumed)
    maps = load_or_extract(images, extraction, cache_dir)
    assert resumed.calls == 3
    monkeypatch.setattr(dino, "extract_keys", extract_keys)
    uninterrupted = load_or_extract(images, extraction, tmp_path / "fresh")
    assert torch.equal(_stacked(maps), _stacked(uninterrupted))


@pytest.mark.parametrize("damage", ["truncated", "garbage", "other shape", "float32"])
def test_a_damaged_entry_is_detected_and_recomputed(loaded_once, weights, images, tmp_path, monkeypatch, damage):
    extraction = DinoExtraction(weights=weights, **SMALL)
    cache_dir = tmp_path / "cache"
    expected = _stacked(load_or_extract(images, extraction, cache_dir))
    entry = load_or_extract(images, extraction, cache_dir).paths[1]
    if damage == "truncated":
        entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])
    elif damage == "garbage":
        entry.write_bytes(b"not an array" * 100)
    elif damage == "other shape":  # as written with other settings
        np.save(entry, np.zeros((7, 9, 384), np.float16))
    else:
        np.save(entry, np.zeros((4, 5, 384), np.float32))
    counting = CountingExtractor()
    monkeypatch.setattr(dino, "extract_keys", counting)
    repaired = _stacked(load_or_extract(images, extraction, cache_dir))
    assert counting.calls == 1
    assert torch.equal(repaired, expected)


def test_not_enough_disk_space_stops_before_extracting(loaded_once, weights, images, tmp_path, monkeypatch):
    class Usage:
        free = feature_cache.DISK_RESERVE + 1000  # less than 3 maps of 4 x 5 x 384 float16

    monkeypatch.setattr(feature_cache.shutil, "disk_usage", lambda path: Usage())
    counting = CountingExtractor()
    monkeypatch.setattr(dino, "extract_keys", counting)
    with pytest.raises(JacobiNerfError, match="--pipeline.datamanager.cache-dir") as error:
        load_or_extract(images, DinoExtraction(weights=weights, **SMALL), tmp_path / "cache")
    assert str(tmp_path / "cache") in str(error.value) and counting.calls == 0


def test_mixed_image_sizes_rejected_naming_the_file(loaded_once, weights, tmp_path):
    files = [_write_png(tmp_path / "a.png", 0), _write_png(tmp_path / "b.png", 1, size=(32, 40))]
    with pytest.raises(JacobiNerfError, match="same size.*b.png"):
        load_or_extract(files, DinoExtraction(weights=weights, **SMALL), tmp_path / "cache")


def test_pca_feature_dim_stores_fewer_channels_and_keeps_cosines_up_to_the_energy(
    loaded_once, weights, images, tmp_path
):
    cache_dir = tmp_path / "cache"
    full = _stacked(load_or_extract(images, DinoExtraction(weights=weights, **SMALL), cache_dir)).float()
    reduced = load_or_extract(images, DinoExtraction(weights=weights, **SMALL), cache_dir, feature_dim=32)
    assert reduced.shape == (3, 4, 5, 32) and reduced[0].dtype == torch.float16
    assert np.load(reduced.paths[0]).shape == (4, 5, 32)
    flat_full = F.normalize(full.reshape(-1, 384), dim=-1)
    flat_reduced = F.normalize(_stacked(reduced).float().reshape(-1, 32), dim=-1)
    error = (flat_reduced @ flat_reduced.T - flat_full @ flat_full.T).abs().mean()
    assert error < 0.1  # 60 vectors: 32 directions keep most of their energy


# ---- CPU cost ----------------------------------------------------------------------------------------------------


def test_cpu_users_are_told_the_cost_and_the_cheaper_settings(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    paper = dino.cpu_cost_note(1, (170, 300), DinoExtraction())
    assert "about 38 s for 1 image at stride 4, short side 360" in paper  # measured on 2 cores: 38 s
    assert "--pipeline.datamanager.dino-stride 8 --pipeline.datamanager.dino-short-side 224" in paper
    assert "dino-stride" not in dino.cpu_cost_note(100, (170, 300), DinoExtraction(stride=8, short_side=224))
    assert "about 64 min for 100 images" in dino.cpu_cost_note(100, (170, 300), DinoExtraction())


def test_the_estimate_is_printed_before_extracting_on_cpu(weights, images, tmp_path, capsys):
    load_or_extract(images, DinoExtraction(weights=weights, **SMALL), tmp_path / "cache", device="cpu")
    printed = " ".join(capsys.readouterr().out.split())
    assert "DINO keys on CPU" in printed and f"DINO weights: {weights}" in printed
    assert printed.index("DINO keys on CPU") < printed.index("DINO weights")


# ---- weights -----------------------------------------------------------------------------------------------------


def test_a_missing_weights_file_is_named(images, tmp_path):
    missing = tmp_path / "does/not/exist.pth"
    with pytest.raises(JacobiNerfError, match="--pipeline.datamanager.dino-weights PATH") as error:
        load_or_extract(images, DinoExtraction(weights=missing), tmp_path / "cache")
    assert str(missing) in str(error.value)


@pytest.mark.parametrize("content", ["other model", "tensor", "text"])
def test_weights_that_are_not_a_state_dict_of_the_model_are_named(tmp_path, content):
    bad = tmp_path / "bad.pth"
    if content == "other model":
        torch.save({"model": {"not_a_vit.weight": torch.zeros(1)}}, bad)
    elif content == "tensor":
        torch.save(torch.zeros(3), bad)
    else:
        bad.write_text("not a checkpoint")
    with pytest.raises(JacobiNerfError, match="bad.pth"):
        load_dino(DinoExtraction(weights=bad), "cpu")


def test_the_official_dino_checkpoint_is_accepted_as_local_weights(tmp_path):
    state = official_dino_state_dict()
    path = tmp_path / OFFICIAL_FILE
    torch.save(state, path)
    loaded = load_dino(DinoExtraction(weights=path), "cpu").state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in state.items())


def test_timm_pretrained_weights_are_read_from_the_seeded_hub_cache(torch_home, images, tmp_path, capsys):
    """The online path without network: the file timm would download is already in ``$TORCH_HOME``'s hub cache."""
    cached = torch_home / "hub" / "checkpoints" / OFFICIAL_FILE
    assert dino_weights.pretrained_file(MODEL_NAME) == cached
    cached.parent.mkdir(parents=True)
    state = official_dino_state_dict(seed=1)
    torch.save(state, cached)

    loaded = load_dino(DinoExtraction(), "cpu").state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in state.items())
    expected = f"timm's pretrained {MODEL_NAME}, read from its cache {cached}"
    assert unwrapped(expected) in unwrapped(capsys.readouterr().out)

    cache_dir = tmp_path / "cache"
    maps = load_or_extract(images, DinoExtraction(**SMALL), cache_dir)
    assert maps.shape == (3, 4, 5, 384)
    cached.unlink()  # extracted once: keys keyed by timm's pretrained URL need no weights any more
    assert torch.equal(_stacked(load_or_extract(images, DinoExtraction(**SMALL), cache_dir)), _stacked(maps))


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/{OFFICIAL_FILE}"


def test_a_failed_download_stops_with_one_message(torch_home, images, tmp_path, monkeypatch):
    from timm.models.registry import _model_pretrained_cfgs

    monkeypatch.setitem(_model_pretrained_cfgs[MODEL_NAME], "url", _closed_port_url())
    with pytest.raises(JacobiNerfError) as error:
        load_or_extract(images, DinoExtraction(**SMALL), tmp_path / "cache")
    message = error.value.message
    for part in ("Downloading", "failed", "--pipeline.datamanager.dino-weights PATH", "surrogate masks"):
        assert part in message
    assert "surrogate features" in message and str(torch_home / "hub" / "checkpoints" / OFFICIAL_FILE) in message
    assert not _entries(tmp_path / "cache")


def test_a_download_that_stalls_times_out(torch_home, tmp_path, monkeypatch):
    from timm.models.registry import _model_pretrained_cfgs

    with socket.socket() as server:  # accepts connections (backlog) and never answers
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        url = f"http://127.0.0.1:{server.getsockname()[1]}/{OFFICIAL_FILE}"
        monkeypatch.setitem(_model_pretrained_cfgs[MODEL_NAME], "url", url)
        monkeypatch.setattr(dino_weights, "DOWNLOAD_TIMEOUT_S", 0.5)
        started = time.monotonic()
        with pytest.raises(JacobiNerfError, match="timed out"):
            load_dino(DinoExtraction(), "cpu")
    assert time.monotonic() - started < 10
    assert socket.getdefaulttimeout() is None  # the timeout was scoped to the fetch


def test_offline_the_real_download_fails_with_one_message(offline, images, tmp_path):
    with pytest.raises(JacobiNerfError, match="Downloading timm's pretrained .* failed") as error:
        load_or_extract(images, DinoExtraction(**SMALL), tmp_path / "cache")
    assert "--pipeline.datamanager.dino-weights" in error.value.message
