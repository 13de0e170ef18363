"""Surrogates: descriptors at ray pixels, affinities, builders and their errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from jacobinerf_ns.surrogates import FeatureMapSurrogate, LabelMapSurrogate, affinity, sample_bilinear
from jacobinerf_ns.surrogates.build import build_surrogate


def test_id_affinity_is_same_non_void_id():
    ids = torch.tensor([1, 1, 2, 0, 0])
    expected = torch.tensor(
        [[1, 1, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.float32
    )
    assert torch.equal(affinity(ids), expected)


def test_feature_affinity_is_cosine():
    features = torch.tensor([[1.0, 0.0], [2.0, 0.0], [1.0, 1.0]])
    torch.testing.assert_close(affinity(features)[0], torch.tensor([1.0, 1.0, 2**-0.5]))


def test_bilinear_sampling_hits_cell_centres_and_interpolates():
    maps = torch.arange(2 * 2 * 3 * 1, dtype=torch.float32).reshape(2, 2, 3, 1)
    cam = torch.tensor([1, 1, 0])
    v = torch.tensor([0.25, 0.75, 0.5])  # row centres of a 2-row map, then halfway
    u = torch.tensor([1 / 6, 5 / 6, 0.5])
    values = sample_bilinear(maps, cam, v, u)[:, 0]
    torch.testing.assert_close(values, torch.tensor([6.0, 11.0, 2.5]))


def test_feature_map_surrogate_at_full_resolution_returns_the_pixel_feature():
    maps = torch.randn(3, 4, 5, 7)
    surrogate = FeatureMapSurrogate(maps, image_height=4, image_width=5)
    indices = torch.tensor([[0, 0, 0], [2, 3, 4], [1, 2, 1]])
    torch.testing.assert_close(surrogate.descriptors(indices), maps[indices[:, 0], indices[:, 1], indices[:, 2]])


def test_label_map_surrogate_indexes_ids():
    ids = torch.randint(0, 5, (2, 3, 4))
    indices = torch.tensor([[1, 2, 3], [0, 0, 1]])
    assert LabelMapSurrogate(ids).descriptors(indices).tolist() == [ids[1, 2, 3].item(), ids[0, 0, 1].item()]


def _outputs(sample_scene, split="train"):
    from jacobinerf_ns.dataparsers.nerfstudio_labelled import LabelledNerfstudioDataParserConfig

    return LabelledNerfstudioDataParserConfig(data=sample_scene).setup().get_dataparser_outputs(split)


def test_masks_from_dataset_instances_match_the_files(sample_scene):
    outputs = _outputs(sample_scene)
    surrogate = build_surrogate("masks", outputs)
    first = np.asarray(Image.open(outputs.metadata["instances"].filenames[0]))
    assert torch.equal(surrogate.ids[0], torch.from_numpy(first.astype(np.int64)))


def test_masks_dir_and_features_dir(sample_scene, tmp_path):
    outputs = _outputs(sample_scene)
    masks, features = tmp_path / "masks", tmp_path / "features"
    masks.mkdir()
    features.mkdir()
    height, width = int(outputs.cameras.height[0]), int(outputs.cameras.width[0])
    for index, image in enumerate(outputs.image_filenames):
        Image.fromarray(np.full((height // 2, width // 2), index % 7, np.uint8)).save(masks / f"{image.stem}.png")
        np.save(features / f"{image.stem}.npy", np.full((3, 4, 2), index, np.float32))
    mask_surrogate = build_surrogate("masks", outputs, masks_dir=masks)
    assert mask_surrogate.ids.shape == (len(outputs.image_filenames), height, width)  # resized to the image
    assert mask_surrogate.descriptors(torch.tensor([[3, 5, 5]])).item() == 3
    feature_surrogate = build_surrogate("features", outputs, features_dir=features)
    torch.testing.assert_close(feature_surrogate.descriptors(torch.tensor([[2, 0, 0]])), torch.tensor([[2.0, 2.0]]))


def test_builder_errors_say_what_to_do(sample_scene, tmp_path):
    outputs = _outputs(sample_scene)
    with pytest.raises(ValueError, match="features-dir"):
        build_surrogate("features", outputs)
    with pytest.raises(FileNotFoundError, match="No mask"):
        (tmp_path / "empty").mkdir()
        build_surrogate("masks", outputs, masks_dir=tmp_path / "empty")
    unlabelled = outputs.__class__(**{**outputs.__dict__, "metadata": {}})
    with pytest.raises(ValueError, match="masks-dir"):
        build_surrogate("masks", unlabelled)
    from jacobinerf_ns.surrogates.dino import DinoExtraction, DinoWeightsMissing

    with pytest.raises(DinoWeightsMissing, match="dino-weights"):
        build_surrogate("dino", outputs, dino=DinoExtraction(weights=None), cache_dir=tmp_path)
