"""Surrogates as a user meets them in ``ns-train``: feature maps read from disk per batch, DINO weights offline."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import train_tiny

pytestmark = pytest.mark.slow  # ns-train (in this process)


def test_shaping_with_feature_maps_from_files(sample_scene, tmp_path):
    features = tmp_path / "features"
    features.mkdir()
    rng = np.random.default_rng(0)
    for image in sorted((sample_scene / "images").glob("*.png")):
        np.save(features / f"{image.stem}.npy", rng.normal(size=(9, 12, 16)).astype(np.float16))
    result = train_tiny(
        sample_scene,
        tmp_path,
        "--max-num-iterations",
        "3",
        "--pipeline.model.shaping-start-step",
        "0",
        "--pipeline.datamanager.surrogate",
        "features",
        "--pipeline.datamanager.features-dir",
        str(features),
        "--pipeline.datamanager.cache-dir",
        str(tmp_path / "cache"),
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "MI-shaping surrogate: features" in result.stdout and "MI shaping on from step 0" in result.stdout
    assert not (tmp_path / "cache").exists()  # float16 .npy files are read in place


def test_offline_dino_stops_before_training_with_one_message(sample_scene, tmp_path, offline):
    result = train_tiny(
        sample_scene,
        tmp_path,
        "--max-num-iterations",
        "3",
        "--pipeline.model.shaping-start-step",
        "0",
        "--pipeline.datamanager.cache-dir",
        str(tmp_path / "cache"),
        name="dino",
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "jacobinerf: Downloading timm's pretrained vit_small_patch8_224_dino weights" in result.stderr
    assert "--pipeline.datamanager.dino-weights" in output and "--pipeline.datamanager.surrogate masks" in output
    assert "Traceback" not in output
    assert not (tmp_path / "dino").exists() or not list((tmp_path / "dino").rglob("*.ckpt"))
