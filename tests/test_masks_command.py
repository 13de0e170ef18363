"""``jacobinerf-masks``: the smaller-mask-wins rule, the folder ``--pipeline.datamanager.masks-dir`` reads, resume, and
its errors (offline, wrong weights, options). SAM here is a tiny randomly initialised one: plumbing, never quality, and
nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from jacobinerf_ns.segmentation import sam_weights
from jacobinerf_ns.segmentation.id_maps import id_map, image_id_map, read_rgb
from jacobinerf_ns.segmentation.mask_folder import write_mask_folder
from tests.helpers import SCENE_HEIGHT, SCENE_WIDTH, invoke, run_command, unreachable_url, unwrapped


def tiny_sam_generator():
    """segment-anything's automatic mask generator on a SAM of a few thousand random weights (64-pixel input), with
    no quality filter, so that its masks reach the id maps."""
    from segment_anything import SamAutomaticMaskGenerator
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    torch.manual_seed(0)
    size, patch, dim = 64, 16, 16
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=size, patch_size=patch, embed_dim=dim, depth=1, num_heads=2, out_chans=dim
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=dim,
            image_embedding_size=(size // patch, size // patch),
            input_image_size=(size, size),
            mask_in_chans=4,
        ),
        mask_decoder=MaskDecoder(
            transformer_dim=dim,
            transformer=TwoWayTransformer(depth=1, embedding_dim=dim, num_heads=2, mlp_dim=32),
            iou_head_depth=1,
            iou_head_hidden_dim=16,
        ),
    ).eval()
    return SamAutomaticMaskGenerator(sam, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)


def training_images(scene: Path):
    from jacobinerf_ns.commands.masks import Masks

    return Masks(data=scene, output_dir=scene / "unused").training_images()


def test_the_smaller_mask_wins_where_masks_overlap():
    masks = np.zeros((5, 4, 6), dtype=bool)
    masks[0] = True  # the whole image (24 pixels)
    masks[1, :, :3] = True  # left half (12)
    masks[2, 1:3, 1:3] = True  # a square inside the left half but one column (4)
    masks[3, 0, 4:6] = True  # two pixels at the top right (2) ...
    masks[4, 0, 3:5] = True  # ... and two overlapping them by one: same area, the earlier mask wins there
    expected = np.array(
        [
            [2, 2, 2, 4, 5, 5],
            [2, 3, 3, 1, 1, 1],
            [2, 3, 3, 1, 1, 1],
            [2, 2, 2, 1, 1, 1],
        ]
    )  # ids in painting order: whole 1, left half 2, square 3, then the pairs (the later one first, so the earlier
    # one paints over it: 4, 5)
    ids = id_map(masks)
    assert ids.dtype == np.uint16
    np.testing.assert_array_equal(ids, expected)


def test_masks_hidden_under_smaller_ones_leave_no_id_gap():
    masks = np.zeros((3, 2, 2), dtype=bool)
    masks[0, 0] = True  # the top row (2 pixels), wholly covered by the two single pixels below
    masks[1, 0, 0] = True
    masks[2, 0, 1] = True
    np.testing.assert_array_equal(id_map(masks), [[2, 1], [0, 0]])


def test_the_folder_is_what_masks_dir_reads(sample_scene, tmp_path):
    """One uint16 PNG per training image, same stem and size, equal to the core's id map; the mask surrogate built
    from the folder (as ns-train builds it) holds them."""
    from jacobinerf_ns.dataparsers.nerfstudio_labelled import LabelledNerfstudioDataParserConfig
    from jacobinerf_ns.surrogates.build import build_surrogate

    images = training_images(sample_scene)
    generator = tiny_sam_generator()
    out = tmp_path / "masks"
    assert write_mask_folder(images, out, lambda: generator) == len(images)

    assert sorted(path.name for path in out.iterdir()) == sorted(f"{image.stem}.png" for image in images)
    outputs = LabelledNerfstudioDataParserConfig(data=sample_scene).setup().get_dataparser_outputs("train")
    surrogate = build_surrogate("masks", outputs, masks_dir=out)
    found_masks = 0
    for index, image in enumerate(images):
        with Image.open(out / f"{image.stem}.png") as png:
            written = np.asarray(png)
        rgb = read_rgb(image)
        assert written.dtype == np.uint16 and written.shape == rgb.shape[:2]
        if index < 2:  # the file holds the core's id map (the generator is deterministic)
            np.testing.assert_array_equal(written, image_id_map(generator, rgb))
        np.testing.assert_array_equal(surrogate.ids[index].numpy(), written)
        found_masks += int(written.max() > 0)
    assert found_masks > 0, "the tiny SAM found no mask in any image: the test would not see the ids"


def test_a_rerun_segments_only_the_images_without_a_mask(sample_scene, tmp_path):
    images = training_images(sample_scene)[:4]
    out = tmp_path / "masks"
    generator = tiny_sam_generator()
    assert write_mask_folder(images, out, lambda: generator) == 4

    kept = out / f"{images[0].stem}.png"
    marked = np.full((SCENE_HEIGHT, SCENE_WIDTH), 7, dtype=np.uint16)  # a map the rerun must leave alone
    Image.fromarray(marked).save(kept)
    (out / f"{images[1].stem}.png").unlink()
    (out / f".{images[2].stem}.partial-1.png").write_bytes(b"interrupted")  # what an interrupted write leaves
    assert write_mask_folder(images, out, lambda: generator) == 1
    assert (out / f"{images[1].stem}.png").is_file()
    with Image.open(kept) as png:
        assert np.asarray(png).max() == 7


def test_a_complete_folder_loads_no_model(sample_scene, tmp_path):
    """A rerun on a finished folder succeeds without touching SAM (its weights file does not even exist), reading the
    scene as ns-train does with the dataparser subcommand's own --data."""
    out = tmp_path / "masks"
    out.mkdir()
    images = training_images(sample_scene)
    for image in images:
        Image.fromarray(np.zeros((SCENE_HEIGHT, SCENE_WIDTH), dtype=np.uint16)).save(out / f"{image.stem}.png")
    args = ["--output-dir", out, "--weights", tmp_path / "absent.pth", "jacobinerf-data", "--data", sample_scene]
    result = invoke("jacobinerf-masks", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    expected = f"Resuming: {len(images)} of {len(images)} masks already in {out}"
    assert unwrapped(expected) in unwrapped(result.stdout)
    assert unwrapped("(0 segmented now)") in unwrapped(result.stdout)


@pytest.fixture
def sam_offline(tmp_path, monkeypatch) -> Path:
    """SAM's vit_b checkpoint unreachable whatever the machine's network (its URL on a closed local port, an empty torch
    hub cache, as the `offline` fixture does for DINO); the cache folder the checkpoint would go to."""
    url = unreachable_url(Path(sam_weights.CHECKPOINT_URLS["vit_b"]).name)
    monkeypatch.setitem(sam_weights.CHECKPOINT_URLS, "vit_b", url)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home" / "hub" / "checkpoints"


def test_offline_the_command_stops_with_one_message(sam_offline, sample_scene, tmp_path):
    out = tmp_path / "masks"
    result = invoke("jacobinerf-masks", "--data", sample_scene, "--output-dir", out, "--device", "cpu", cwd=tmp_path)
    assert result.returncode == 1
    assert "Downloading SAM's vit_b weights" in result.stderr
    assert "--weights PATH" in result.stderr and str(sam_offline / "sam_vit_b_01ec64.pth") in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()
    assert not any(sam_offline.iterdir())  # no partial download in the cache


def test_weights_that_are_no_sam_checkpoint_are_named(tmp_path):
    unreadable, foreign = tmp_path / "notes.pth", tmp_path / "other.pth"
    unreadable.write_text("not a checkpoint")
    torch.save({"weight": torch.zeros(2)}, foreign)
    with pytest.raises(sam_weights.JacobiNerfError, match=f"SAM weights {unreadable} could not be read"):
        sam_weights.load_sam("vit_b", unreadable, "cpu")
    with pytest.raises(sam_weights.JacobiNerfError, match=f"SAM weights {foreign} are not a vit_b checkpoint"):
        sam_weights.load_sam("vit_b", foreign, "cpu")


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--points-per-side", "0", "--points-per-side 0 must be at least 1"),
        ("--pred-iou-thresh", "1.5", "--pred-iou-thresh 1.5 must lie in [0, 1]"),
        ("--device", "nonsense", "--device nonsense is not usable here"),
    ],
)
def test_options_out_of_range_are_named(option, value, message, sample_scene, tmp_path):
    out = tmp_path / "masks"
    result = invoke("jacobinerf-masks", "--data", sample_scene, "--output-dir", out, option, value, cwd=tmp_path)
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert not out.exists()


@pytest.mark.slow
def test_the_command_reports_a_missing_weights_file_without_a_traceback(sample_scene, tmp_path):
    missing = tmp_path / "sam_vit_b.pth"
    out = tmp_path / "masks"
    result = run_command(
        "jacobinerf-masks", "--data", sample_scene, "--output-dir", out, "--weights", missing, cwd=tmp_path
    )
    assert result.returncode != 0
    assert f"SAM weights file not found: {missing}. Fix --weights PATH" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()
