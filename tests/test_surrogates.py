"""Surrogates: descriptors at ray pixels, affinities, builders and their errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from jacobinerf_ns.errors import JacobiNerfError
from jacobinerf_ns.surrogates import FeatureMapSurrogate, LabelMapSurrogate, affinity, sample_bilinear
from jacobinerf_ns.surrogates.build import build_surrogate
from jacobinerf_ns.surrogates.feature_cache import FeatureMaps, write_entry
from tests.helpers import SCENE_HEIGHT, SCENE_WIDTH


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


def test_sampling_maps_on_disk_per_batch_equals_sampling_them_in_memory(tmp_path):
    """The in-memory surrogate is the reference: the on-disk maps must give the same descriptors, bit for bit."""
    generator = torch.Generator().manual_seed(0)
    maps = torch.randn(6, 9, 11, 16, generator=generator).to(torch.float16)
    paths = [tmp_path / f"map{i}.npy" for i in range(len(maps))]
    for path, features in zip(paths, maps):
        write_entry(path, features.numpy())
    on_disk = FeatureMaps(paths, (9, 11, 16))
    assert on_disk.shape == maps.shape and torch.equal(on_disk[4], maps[4])
    height, width = 45, 60  # images larger than the maps: every ray interpolates
    indices = torch.stack(
        [
            torch.randint(6, (500,), generator=generator),
            torch.randint(height, (500,), generator=generator),
            torch.randint(width, (500,), generator=generator),
        ],
        dim=-1,
    )
    indices[:4] = torch.tensor([[0, 0, 0], [5, height - 1, width - 1], [2, 0, width - 1], [3, height - 1, 0]])
    expected = FeatureMapSurrogate(maps, height, width).descriptors(indices)
    assert torch.equal(FeatureMapSurrogate(on_disk, height, width).descriptors(indices), expected)


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
    assert surrogate.ids.dtype == torch.int32  # 4 bytes per pixel of every training image, in RAM
    assert torch.equal(surrogate.ids[0].long(), torch.from_numpy(first.astype(np.int64)))


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
    feature_surrogate = build_surrogate("features", outputs, features_dir=features, cache_dir=tmp_path / "cache")
    torch.testing.assert_close(feature_surrogate.descriptors(torch.tensor([[2, 0, 0]])), torch.tensor([[2.0, 2.0]]))
    assert len(list((tmp_path / "cache" / "features").glob("*.npy"))) == len(outputs.image_filenames)  # float16 copies


def _feature_files(outputs, folder, make):
    folder.mkdir()
    for index, image in enumerate(outputs.image_filenames):
        np.save(folder / f"{image.stem}.npy", make(index))
    return folder


def test_float16_feature_files_are_read_in_place(sample_scene, tmp_path):
    outputs = _outputs(sample_scene)
    rng = np.random.default_rng(0)
    features = _feature_files(outputs, tmp_path / "features", lambda i: rng.normal(size=(4, 6, 8)).astype(np.float16))
    surrogate = build_surrogate("features", outputs, features_dir=features, cache_dir=tmp_path / "cache")
    assert surrogate.maps.paths == [features / f"{image.stem}.npy" for image in outputs.image_filenames]
    assert not (tmp_path / "cache").exists()


def test_feature_dim_projects_on_a_basis_fitted_on_a_sample(sample_scene, tmp_path):
    """Features in a 2-d subspace of 8 channels: 2 PCA channels keep every cosine."""
    outputs = _outputs(sample_scene)
    rng = np.random.default_rng(0)
    subspace = rng.normal(size=(2, 8))
    originals = {}

    def make(index):
        originals[index] = rng.normal(size=(4, 6, 2)) @ subspace
        return originals[index].astype(np.float32)

    features = _feature_files(outputs, tmp_path / "features", make)
    surrogate = build_surrogate("features", outputs, features_dir=features, feature_dim=2, cache_dir=tmp_path / "cache")
    assert surrogate.maps.shape == (len(originals), 4, 6, 2)
    (basis_file,) = (tmp_path / "cache" / "features").glob("pca2-*/pca_basis.npy")
    assert np.load(basis_file).shape == (8, 2)
    indices = torch.tensor([[0, 0, 0], [0, 10, 20], [5, 30, 40], [9, 17, 3]])  # (image, y, x) of the scene's pixels
    maps = torch.from_numpy(np.stack(list(originals.values())))
    reference = FeatureMapSurrogate(maps, SCENE_HEIGHT, SCENE_WIDTH)
    torch.testing.assert_close(
        affinity(surrogate.descriptors(indices)), affinity(reference.descriptors(indices)), atol=2e-3, rtol=0
    )
    with pytest.raises(JacobiNerfError, match="feature-dim 8"):
        build_surrogate("features", outputs, features_dir=features, feature_dim=8, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("bad", ["2-d", "other shape", "not an array"])
def test_bad_feature_files_are_named(sample_scene, tmp_path, bad):
    outputs = _outputs(sample_scene)
    features = _feature_files(outputs, tmp_path / "features", lambda i: np.zeros((4, 6, 8), np.float32))
    culprit = features / f"{outputs.image_filenames[3].stem}.npy"
    if bad == "2-d":
        np.save(culprit, np.zeros((4, 6), np.float32))
    elif bad == "other shape":
        np.save(culprit, np.zeros((5, 6, 8), np.float32))
    else:
        culprit.write_text("not an array")
    with pytest.raises(JacobiNerfError, match=culprit.name):
        build_surrogate("features", outputs, features_dir=features, cache_dir=tmp_path / "cache")


def test_only_the_contrastive_rays_of_a_batch_get_descriptors(sample_scene):
    """The pipeline tells the datamanager the model's contrastive batch size; other rays get no descriptors."""
    from jacobinerf_ns.datamanager import SURROGATE, JacobiNerfDataManagerConfig
    from jacobinerf_ns.dataparsers.nerfstudio_labelled import LabelledNerfstudioDataParserConfig
    from jacobinerf_ns.pipeline import JacobiNerfPipelineConfig
    from tests.helpers import tiny_model_config

    config = JacobiNerfPipelineConfig(
        datamanager=JacobiNerfDataManagerConfig(
            dataparser=LabelledNerfstudioDataParserConfig(data=sample_scene),
            surrogate="masks",
            train_num_rays_per_batch=128,
        ),
        model=tiny_model_config(contrastive_batch_size=16, shaping_start_step=0),
    )
    pipeline = config.setup(device="cpu", test_mode="val")
    _, batch = pipeline.datamanager.next_train(0)
    assert len(batch["indices"]) == 128 and batch[SURROGATE].shape == (16,)
    assert torch.equal(batch[SURROGATE], pipeline.datamanager.surrogate.descriptors(batch["indices"][:16]))


def test_builder_errors_say_what_to_do(sample_scene, tmp_path):
    outputs = _outputs(sample_scene)
    with pytest.raises(JacobiNerfError, match="features-dir"):
        build_surrogate("features", outputs)
    with pytest.raises(JacobiNerfError, match="No mask.*--pipeline.datamanager.masks-dir"):
        (tmp_path / "empty").mkdir()
        build_surrogate("masks", outputs, masks_dir=tmp_path / "empty")
    with pytest.raises(JacobiNerfError, match="missing.*does not exist.*--pipeline.datamanager.features-dir"):
        build_surrogate("features", outputs, features_dir=tmp_path / "missing")
    unlabelled = outputs.__class__(**{**outputs.__dict__, "metadata": {}})
    with pytest.raises(JacobiNerfError, match="masks-dir"):
        build_surrogate("masks", unlabelled)
    from jacobinerf_ns.surrogates.dino import DinoExtraction

    with pytest.raises(JacobiNerfError, match="dino-weights"):
        build_surrogate("dino", outputs, dino=DinoExtraction(weights=tmp_path / "none.pth"), cache_dir=tmp_path)
