"""Mask scope: per-image masks compare rays of one image only, drawn image by image; consistent ids compare across
views; the option's defaults and validation."""

from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from jacobinerf_ns.datamanager import JacobiNerfDataManagerConfig, group_contrastive_rays, grouped_pixels
from jacobinerf_ns.errors import JacobiNerfError
from jacobinerf_ns.surrogates import MASKED, SURROGATE, SURROGATE_IMAGES, affinity

RAYS, CONTRASTIVE = 256, 96


def pipeline(scene, step=0, model=None, **datamanager):
    from jacobinerf_ns.dataparsers.nerfstudio_labelled import LabelledNerfstudioDataParserConfig
    from jacobinerf_ns.pipeline import JacobiNerfPipelineConfig
    from tests.helpers import tiny_model_config

    config = JacobiNerfPipelineConfig(
        datamanager=JacobiNerfDataManagerConfig(
            dataparser=LabelledNerfstudioDataParserConfig(data=scene),
            surrogate="masks",
            train_num_rays_per_batch=RAYS,
            **datamanager,
        ),
        model=tiny_model_config(contrastive_batch_size=CONTRASTIVE, shaping_start_step=step, **(model or {})),
    )
    return config.setup(device="cpu", test_mode="val")


def compared_positives(batch):
    """The contrastive pairs shaping treats as positives (what the model gives the loss), as (i, j) index pairs."""
    ids = batch[SURROGATE]
    images = batch.get(SURROGATE_IMAGES)
    comparable = torch.ones(len(ids), len(ids), dtype=torch.bool) if images is None else images[:, None] == images
    return torch.nonzero((affinity(ids) > 0.5) & comparable & ~torch.eye(len(ids), dtype=torch.bool))


def test_per_image_scope_never_pairs_rays_of_different_images(sample_scene):
    """The scene's masks are consistent ids, so only the scope keeps rays of two images from pairing."""
    manager = pipeline(sample_scene, masks_dir=sample_scene / "instances", contrastive_images=3).datamanager
    assert manager.config.mask_scope() == "image"
    for step in range(5):
        _, batch = manager.next_train(step)
        cameras = batch["indices"][:CONTRASTIVE, 0]
        assert torch.equal(batch[SURROGATE_IMAGES], cameras) and len(cameras.unique()) == 3
        pairs = compared_positives(batch)
        assert len(pairs) > 0 and torch.equal(cameras[pairs[:, 0]], cameras[pairs[:, 1]])
        across = cameras[:, None] != cameras[None, :]
        assert (affinity(batch[SURROGATE]).bool() & across).any()  # the ids alone would pair across images


def test_consistent_ids_in_scene_scope_pair_rays_across_views(sample_scene):
    manager = pipeline(sample_scene, masks_dir=sample_scene / "instances", masks_scope="scene").datamanager
    _, batch = manager.next_train(0)
    assert SURROGATE_IMAGES not in batch
    cameras = batch["indices"][:CONTRASTIVE, 0]
    pairs = compared_positives(batch)
    assert (cameras[pairs[:, 0]] != cameras[pairs[:, 1]]).any()
    assert len(cameras.unique()) > 12  # nerfstudio's uniform sampling, not grouped


def test_the_dataset_labels_default_to_scene_scope_and_a_masks_dir_to_image_scope(sample_scene):
    assert JacobiNerfDataManagerConfig(surrogate="masks").mask_scope() == "scene"
    assert JacobiNerfDataManagerConfig(surrogate="masks", masks_dir=sample_scene / "instances").mask_scope() == "image"
    assert JacobiNerfDataManagerConfig(surrogate="masks", masks_scope="image").mask_scope() == "image"
    assert JacobiNerfDataManagerConfig(surrogate="dino", masks_scope="image").mask_scope() == "scene"


def test_grouping_waits_for_shaping(sample_scene):
    """Before the shaping step the batch is nerfstudio's, without descriptors (as in the unshaped run)."""
    manager = pipeline(sample_scene, step=3, masks_dir=sample_scene / "instances").datamanager
    _, before = manager.next_train(2)
    assert SURROGATE not in before and SURROGATE_IMAGES not in before
    assert len(before["indices"][:CONTRASTIVE, 0].unique()) > 4
    _, shaping = manager.next_train(3)
    assert len(shaping["indices"][:CONTRASTIVE, 0].unique()) == 4 and len(shaping[SURROGATE]) == CONTRASTIVE


def test_every_ray_says_whether_a_mask_covers_its_pixel_while_a_loss_reads_it(sample_scene, tmp_path):
    """``batch[MASKED]``: the masks read at each ray's pixel ≠ 0, for the whole batch, before shaping and during (the
    scene's masks with the walls' id made void, so that both kinds of pixel occur), when the masked-opacity loss asks
    for it; without it the batches of a scene with depth do not carry it, and those of a run without depth maps until
    shaping starts (the distortion loss on void reads it until then)."""
    masks = {}
    (tmp_path / "masks").mkdir()
    for path in sorted((sample_scene / "instances").glob("*.png")):
        ids = np.array(Image.open(path))
        ids[ids == 2] = 0  # the walls
        Image.fromarray(ids).save(tmp_path / "masks" / path.name)
        masks[path.stem] = torch.from_numpy(ids)
    manager = pipeline(sample_scene, 3, {"masked_opacity_loss_mult": 0.001}, masks_dir=tmp_path / "masks").datamanager
    stack = torch.stack([masks[path.stem] for path in manager.train_dataparser_outputs.image_filenames])
    for step in (0, 3):
        _, batch = manager.next_train(step)
        image, y, x = batch["indices"].long().unbind(-1)
        assert len(batch[MASKED]) == RAYS and torch.equal(batch[MASKED], stack[image, y, x] != 0)
        assert batch[MASKED].any() and not batch[MASKED].all()
    assert MASKED not in pipeline(sample_scene, masks_dir=tmp_path / "masks").datamanager.next_train(0)[1]
    no_depth = pipeline(sample_scene, 3, {"depth_loss_mult": 0.0}, masks_dir=tmp_path / "masks").datamanager
    assert [MASKED in no_depth.next_train(step)[1] for step in (0, 2, 3)] == [True, True, False]


@pytest.mark.parametrize("images", [1, 5, 7])
def test_grouped_pixels_split_the_rays_equally_between_the_stated_images(images):
    pixels = grouped_pixels(10, 6, 9, 45, images)
    image, y, x = pixels.unbind(-1)
    assert pixels.shape == (45, 3)
    assert len(image.unique()) == images and len(image.unique_consecutive()) == images  # contiguous per image
    shares = torch.unique_consecutive(image, return_counts=True)[1]
    assert shares.max() - shares.min() <= 1 and shares.sum() == 45
    assert ((0 <= y) & (y < 6) & (0 <= x) & (x < 9) & (image < 10)).all()


def test_grouped_pixels_stay_inside_the_valid_pixels():
    valid = torch.zeros(5, 6, 9, dtype=torch.bool)
    valid[1, 2:4, 3:5] = valid[3, 0, :] = True  # two images with valid pixels, three without
    with torch.random.fork_rng():
        torch.manual_seed(0)
        pixels = grouped_pixels(5, 6, 9, 80, 4, valid)
    image, y, x = pixels.unbind(-1)
    assert sorted(image.unique().tolist()) == [1, 3]  # all the images that have any (fewer than asked)
    assert valid[image, y, x].all()
    assert len(pixels[image == 1].unique(dim=0)) == 4  # uniform over the valid pixels: all four drawn


def test_grouped_rays_are_collated_as_nerfstudio_collates():
    image_batch = {
        "image": torch.rand(4, 6, 9, 3),
        "mask": torch.rand(4, 6, 9, 1) > 0.3,
        "image_idx": torch.tensor([7, 2, 5, 9]),
    }
    batch = {"image": torch.zeros(20, 3), "mask": torch.zeros(20, 1, dtype=torch.bool),
             "indices": torch.zeros(20, 3, dtype=torch.long)}  # fmt: skip
    group_contrastive_rays(batch, image_batch, rays=12, images=3)
    camera, y, x = batch["indices"][:12].unbind(-1)
    local = torch.tensor([[7, 2, 5, 9].index(int(c)) for c in camera])
    assert len(camera.unique()) == 3 and batch["mask"][:12].all()
    assert torch.equal(batch["image"][:12], image_batch["image"][local, y, x])
    assert not batch["image"][12:].any()  # the rest of the batch is untouched


def test_scope_options_are_validated(sample_scene, tmp_path):
    with pytest.raises(JacobiNerfError, match="--pipeline.datamanager.masks-scope.*'images': choose image"):
        JacobiNerfDataManagerConfig(masks_scope="images").validate()
    with pytest.raises(JacobiNerfError, match="--pipeline.datamanager.contrastive-images.*≥ 1"):
        JacobiNerfDataManagerConfig(contrastive_images=0).validate()
    with pytest.raises(JacobiNerfError, match="--pipeline.datamanager.contrastive-images.*at most 48"):
        pipeline(sample_scene, masks_dir=sample_scene / "instances", contrastive_images=49)
    pipeline(sample_scene, masks_scope="scene", masks_dir=sample_scene / "instances", contrastive_images=49)


def test_shape_command_overrides_the_scope_and_old_configs_read_auto(tmp_path):
    """``jacobinerf-shape --masks-scope`` reaches the new run's datamanager; a config.yml written before the option
    existed reads ``auto``."""
    import yaml

    from jacobinerf_ns.commands.shape import ShapeRun
    from jacobinerf_ns.runs import method_config

    config = method_config()
    config.pipeline.datamanager.masks_dir = tmp_path
    run = tmp_path / "run"
    (run / "nerfstudio_models").mkdir(parents=True)
    (run / "nerfstudio_models" / "step-000000009.ckpt").write_bytes(b"")
    text = yaml.dump(config)
    old = "\n".join(
        line for line in text.splitlines() if "masks_scope" not in line and "contrastive_images" not in line
    )
    (run / "config.yml").write_text(old)
    kept = ShapeRun(load_config=run / "config.yml", steps=5).trainer_config().pipeline.datamanager
    assert kept.masks_scope == "auto" and kept.contrastive_images == 4 and kept.mask_scope() == "scene"
    kept.surrogate = "masks"
    assert kept.mask_scope() == "image"
    shaped = ShapeRun(load_config=run / "config.yml", steps=5, masks_scope="scene", contrastive_images=2)
    datamanager = shaped.trainer_config().pipeline.datamanager
    assert datamanager.masks_scope == "scene" and datamanager.contrastive_images == 2


def test_renumbered_masks_keep_void_and_regions(sample_scene, tmp_path):
    """bench/renumber_masks.py: every image's ids permuted on their own, void kept, same regions."""
    renumber_folder = runpy.run_path(str(Path(__file__).parents[1] / "bench" / "renumber_masks.py"))["renumber_folder"]
    renumber_folder(sample_scene / "instances", tmp_path / "masks", seed=0)
    changed = 0
    for original in sorted((sample_scene / "instances").glob("*.png")):
        ids = np.asarray(Image.open(original))
        renumbered = np.asarray(Image.open(tmp_path / "masks" / original.name))
        assert ((ids == 0) == (renumbered == 0)).all()
        pairs = set(zip(ids.ravel().tolist(), renumbered.ravel().tolist()))
        assert len(pairs) == len(np.unique(ids)) == len(np.unique(renumbered))  # a bijection of ids
        changed += any(a != b for a, b in pairs)
    assert changed > 0
