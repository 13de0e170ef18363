"""Resolving click sets against a run (propagation/labelling.py), the export folder's scene files, the voxel vote.

A tiny untrained field stands in for a run: these checks are about geometry, formulas and files, not quality.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from jacobinerf_ns.clicks import ClickSet, PixelClick, RayClick, read_clicks, write_clicks
from jacobinerf_ns.errors import JacobiNerfError
from jacobinerf_ns.label_export import ExportFolder
from jacobinerf_ns.pointcloud import VoxelVote, to_original_frame
from jacobinerf_ns.propagation.labelling import (
    class_scores,
    confidence,
    keep_hits,
    label_frame,
    label_ids,
    resolve_clicks,
)
from jacobinerf_ns.propagation.rendering import pixel_jacobians
from jacobinerf_ns.scene import click_rays, pixel_click, scene_from_outputs
from tests.helpers import SCENE_HEIGHT, SCENE_WIDTH, build_tiny_model

NORMALISATIONS = {  # nerfstudio-data options that change nerfstudio's frame, never the original one
    "default": {},
    "other": {"orientation_method": "none", "center_method": "none", "scale_factor": 0.5},
}


def parse_scene(data, **options):
    from jacobinerf_ns.dataparsers.nerfstudio_labelled import LabelledNerfstudioDataParserConfig

    parser = LabelledNerfstudioDataParserConfig(data=data, **options).setup()
    splits = {"train": parser.get_dataparser_outputs("train"), "eval": parser.get_dataparser_outputs("test")}
    return scene_from_outputs(data, splits)


@pytest.fixture(scope="module")
def scenes(sample_scene):
    return {name: parse_scene(sample_scene, **options) for name, options in NORMALISATIONS.items()}


@pytest.fixture(scope="module")
def model():
    model = build_tiny_model(average_init_density=1.0)
    model.eval()
    return model


def transforms(data):
    return json.loads((data / "transforms.json").read_text())


def analytic_pixel_ray(meta, frame_index: int, x: float, y: float):
    """The ray through continuous pixel (x, y) from transforms.json alone (OpenCV pinhole, OpenGL pose)."""
    frame = meta["frames"][frame_index]
    pose = np.array(frame["transform_matrix"])
    camera = np.array([(x - meta["cx"]) / meta["fl_x"], -(y - meta["cy"]) / meta["fl_y"], -1.0])
    direction = pose[:3, :3] @ camera
    return pose[:3, 3], direction / np.linalg.norm(direction)


def to_original_ray(scene, origins, directions):
    """Normalised rays back to the original frame with nerfstudio's own inverse (transform_poses_to_original_space)."""
    origin = to_original_frame(origins, scene.outputs)
    direction = torch.nn.functional.normalize(to_original_frame(origins + directions, scene.outputs) - origin, dim=-1)
    return origin, direction


def test_scene_lists_train_and_eval_frames_by_their_path_in_the_data_folder(scenes, sample_scene):
    scene = scenes["default"]
    names = [frame.name for frame in scene.frames]
    assert sorted(names) == sorted(frame["file_path"] for frame in transforms(sample_scene)["frames"])
    assert {frame.split for frame in scene.frames} == {"train", "eval"}
    assert scenes["other"].fingerprint().mismatch(scene.fingerprint()) is None, "the original frame is the same"


@pytest.mark.parametrize("normalisation", sorted(NORMALISATIONS))
def test_pixel_and_ray_clicks_resolve_to_the_rays_of_the_original_frame(scenes, sample_scene, normalisation):
    scene, meta = scenes[normalisation], transforms(sample_scene)
    order = {frame["file_path"]: index for index, frame in enumerate(meta["frames"])}
    frame = scene.frames[3]
    pixels = [(0.0, 0.0), (20.5, 10.5), (47.9, 35.2)]
    expected = [analytic_pixel_ray(meta, order[frame.name], x, y) for x, y in pixels]
    click_set = ClickSet(
        classes=("thing",),
        clicks=tuple(PixelClick("thing", frame.name, x, y) for x, y in pixels)
        + tuple(RayClick("thing", tuple(o), tuple(2.0 * d)) for o, d in expected),
    )
    rays = click_rays(click_set, scene, "clicks.json")
    origins, directions = to_original_ray(scene, rays.origins, rays.directions)
    wanted_origins = torch.tensor(np.array([o for o, _ in expected] * 2), dtype=torch.float32)
    wanted_directions = torch.tensor(np.array([d for _, d in expected] * 2), dtype=torch.float32)
    torch.testing.assert_close(origins, wanted_origins, atol=1e-4, rtol=0)
    torch.testing.assert_close(directions, wanted_directions, atol=1e-4, rtol=0)


@pytest.mark.parametrize("normalisation", sorted(NORMALISATIONS))
def test_a_viewer_ray_is_saved_in_the_original_frame_and_resolves_back(scenes, sample_scene, normalisation):
    scene, meta = scenes[normalisation], transforms(sample_scene)
    frame = scene.frames[4]
    rays = frame.camera.generate_rays(camera_indices=0, keep_shape=True)
    click = scene.ray_click(rays.origins[9, 13], rays.directions[9, 13], "thing")
    origin, direction = analytic_pixel_ray(meta, [f["file_path"] for f in meta["frames"]].index(frame.name), 13.5, 9.5)
    np.testing.assert_allclose(click.origin, origin, atol=1e-4)
    np.testing.assert_allclose(click.direction, direction, atol=1e-4)
    resolved = click_rays(ClickSet(("thing",), (click,)), scene, "clicks.json")
    torch.testing.assert_close(resolved.origins[0], rays.origins[9, 13], atol=1e-5, rtol=0)
    torch.testing.assert_close(resolved.directions[0], rays.directions[9, 13], atol=1e-5, rtol=0)


def test_a_pixel_click_and_a_ray_click_of_the_same_pixel_have_the_same_jacobian(scenes, model):
    """Where the ray lies is checked above against transforms.json; here, that both kinds reach the same Jacobian."""
    scene = scenes["default"]
    frame = scene.frames[2]
    row, column = 17, 30
    rays = frame.camera.generate_rays(camera_indices=0, keep_shape=True)
    origin, direction = to_original_ray(scene, rays.origins[row, column][None], rays.directions[row, column][None])
    click_set = ClickSet(
        classes=("a", "b"),
        clicks=(
            PixelClick("a", frame.name, column + 0.5, row + 0.5),
            RayClick("b", tuple(origin[0].tolist()), tuple(direction[0].tolist())),
        ),
    )
    resolved = resolve_clicks(model, click_set, scene, "clicks.json")
    expected = pixel_jacobians(model, frame.camera, torch.tensor([[row, column]]))[0]
    assert expected.abs().max() > 0
    torch.testing.assert_close(resolved.jacobians[0], expected)
    torch.testing.assert_close(resolved.jacobians[1], expected, atol=1e-5, rtol=1e-3)
    elsewhere = pixel_jacobians(model, frame.camera, torch.tensor([[row, column + 6]]))[0]
    assert (elsewhere - expected).abs().max() > 100 * 1e-5, "another pixel's Jacobian differs beyond the tolerance"
    assert resolved.class_ids == (1, 2) and resolved.skipped == ()


def test_pixel_click_converts_camera_coordinates_to_the_image_file(scenes):
    frame = scenes["default"].frames[0]
    assert pixel_click(frame, 10.5, 20.5, "a") == PixelClick("a", frame.name, 20.5, 10.5)


def test_saved_and_loaded_click_sets_give_identical_label_maps(scenes, model, tmp_path):
    scene = scenes["default"]
    frames = scene.frames
    click_set = ClickSet(
        classes=("left", "right", "unused"),
        clicks=(
            pixel_click(frames[0], 18.5, 5.5, "left"),
            pixel_click(frames[0], 18.5, 42.5, "right"),
            PixelClick("right", frames[1].name.split("/")[-1], 30.25, 3.75),
        ),
        fingerprint=scene.fingerprint(),
    )
    write_clicks(tmp_path / "clicks.json", click_set)
    loaded = read_clicks(tmp_path / "clicks.json")
    assert loaded == click_set
    maps = [
        label_frame(model, frames[5].camera, resolve_clicks(model, clicks, scene, "clicks.json")).ids
        for clicks in (click_set, loaded)
    ]
    assert torch.equal(maps[0], maps[1]) and set(maps[0].unique().tolist()) <= {0, 1, 2}, "no pixel gets 'unused'"


def test_class_scores_are_the_best_click_of_each_class_and_confidence_their_margin():
    responses = torch.tensor([[[0.2, 0.9, 0.4], [0.5, 0.1, 0.0], [0.0, 0.0, 0.0]]])  # (1, 3 pixels, 3 clicks)
    scores = class_scores(responses, (1, 2, 1), num_classes=3)
    torch.testing.assert_close(scores, torch.tensor([[[0.4, 0.9, 0.0], [0.5, 0.1, 0.0], [0.0, 0.0, 0.0]]]))
    margin = confidence(scores)
    torch.testing.assert_close(margin, torch.tensor([[0.5 / 0.9, 0.4 / 0.5, 0.0]]))
    assert label_ids(scores, margin).tolist() == [[2, 1, 0]], "no class scores above 0 at the third: unlabelled"
    assert label_ids(scores, margin, min_confidence=0.6).tolist() == [[0, 1, 0]]
    assert label_ids(scores, margin, hit=torch.tensor([[True, False, True]])).tolist() == [[2, 0, 0]]
    resemblance = torch.tensor([[0.9, 0.49, 0.5]])  # best |cos| to a click
    assert label_ids(scores, margin, resemblance=resemblance, min_explained=0.5).tolist() == [[2, 0, 0]]
    single = class_scores(responses[..., :1], (1,), num_classes=1)
    torch.testing.assert_close(confidence(single), torch.tensor([[1.0, 1.0, 0.0]]))


def test_pixels_that_resemble_no_click_stay_unlabelled_unless_forced(scenes, model):
    """``min_explained``: 0 where the clicks explain a pixel less (``explained``), the best class everywhere with 0."""
    from jacobinerf_ns.propagation.labelling import MIN_EXPLAINED

    scene = scenes["default"]
    frame = scene.frames[0]
    click_set = ClickSet(("a", "b"), (pixel_click(frame, 10.5, 10.5, "a"), pixel_click(frame, 30.5, 50.5, "b")))
    clicks = resolve_clicks(model, click_set, scene, "clicks.json")
    forced = label_frame(model, frame.camera, clicks, min_explained=0.0)
    assert (forced.ids[forced.hit] > 0).all() and (forced.ids[~forced.hit] == 0).all()
    cut = float(forced.explained[forced.hit].median())  # a cut with pixels on both sides on this random field
    labels = label_frame(model, frame.camera, clicks, min_explained=cut)
    unexplained = forced.hit & (forced.explained < cut)
    assert unexplained.any() and (forced.hit & ~unexplained).any()
    assert (labels.ids[unexplained] == 0).all()
    assert torch.equal(labels.ids[~unexplained], forced.ids[~unexplained])
    assert torch.equal(labels.explained, forced.explained) and torch.equal(labels.confidence, forced.confidence)
    default = label_frame(model, frame.camera, clicks)
    assert torch.equal(default.ids, torch.where(forced.explained >= MIN_EXPLAINED, forced.ids, 0))


def test_resolved_clicks_keep_where_each_ray_meets_the_surface(scenes, model):
    from jacobinerf_ns.propagation.rendering import eval_head_inputs

    scene = scenes["default"]
    frame = scene.frames[2]
    click_set = ClickSet(("a",), (pixel_click(frame, 20.5, 30.5, "a"), pixel_click(frame, 5.5, 7.5, "a")))
    clicks = resolve_clicks(model, click_set, scene, "clicks.json")
    rays = click_rays(click_set, scene, "clicks.json")
    outputs, _ = eval_head_inputs(model, rays.bundle())
    assert [surface.name for surface in clicks.surfaces] == list(rays.names)
    for index, surface in enumerate(clicks.surfaces):
        torch.testing.assert_close(surface.origin, rays.origins[index])
        expected = rays.origins[index] + rays.directions[index] * outputs["depth"][index].cpu()
        torch.testing.assert_close(surface.point, expected)


def test_an_image_the_dataset_does_not_have_names_close_ones(scenes):
    scene = scenes["default"]
    unknown = ClickSet(classes=("a",), clicks=(PixelClick("a", "images/frame_0003.png", 1.0, 1.0),))
    with pytest.raises(JacobiNerfError) as caught:
        click_rays(unknown, scene, "my_clicks.json")
    message = caught.value.message
    assert "my_clicks.json, clicks[0]: the dataset in" in message and "has no image 'images/frame_0003.png'" in message
    assert "images/frame_00003.png" in message
    outside = ClickSet(classes=("a",), clicks=(PixelClick("a", "frame_00003.png", float(SCENE_WIDTH), 1.0),))
    message = rf"\(x {SCENE_WIDTH:.1f}, y 1.0\) lies outside frame_00003.png, which is {SCENE_WIDTH}×{SCENE_HEIGHT}"
    with pytest.raises(JacobiNerfError, match=message):
        click_rays(outside, scene, "my_clicks.json")
    with pytest.raises(JacobiNerfError, match="has no clicks"):
        click_rays(ClickSet(classes=("a",), clicks=()), scene, "my_clicks.json")


def test_an_image_name_shared_by_two_folders_is_ambiguous(scenes, tmp_path):
    scene = scenes["default"]
    first = replace(scene.frames[0], name="a/frame.png")
    second = replace(scene.frames[1], name="b/frame.png")
    twins = replace(scene, frames=(first, second))
    click_set = ClickSet(classes=("a",), clicks=(PixelClick("a", "frame.png", 1.0, 1.0),))
    with pytest.raises(JacobiNerfError, match=r"image 'frame.png' is ambiguous \(a/frame.png, b/frame.png\)"):
        click_rays(click_set, twins, "clicks.json")


def test_clicks_that_hit_nothing_are_skipped_with_a_warning_naming_them():
    click_set = ClickSet(classes=("a", "b", "c"), clicks=tuple(PixelClick(n, "x.png", 1.0, 1.0) for n in "abcb"))
    names = [f"clicks[{i}] (...)" for i in range(4)]
    jacobians = torch.arange(4.0).reshape(4, 1, 1).expand(4, 3, 2)
    kept = keep_hits(click_set, names, jacobians, torch.tensor([0.9, 0.49, 0.5, 0.1]), "clicks.json")
    assert kept.class_ids == (1, 3) and kept.num_classes == 3
    torch.testing.assert_close(kept.jacobians, jacobians[[0, 2]])
    assert kept.skipped == (
        "clicks[1] (...) hits nothing in this run (opacity 0.49 < 0.5): skipped.",
        "clicks[3] (...) hits nothing in this run (opacity 0.10 < 0.5): skipped.",
    )


def test_clicks_that_hit_nothing_are_an_error_when_none_remains(scenes):
    empty = build_tiny_model(average_init_density=1e-9)  # (almost) no density anywhere
    empty.eval()
    frame = scenes["default"].frames[0]
    click_set = ClickSet(classes=("a",), clicks=(pixel_click(frame, 3.5, 3.5, "a"), pixel_click(frame, 9.5, 9.5, "a")))
    with pytest.raises(JacobiNerfError) as caught:
        resolve_clicks(empty, click_set, scenes["default"], "clicks.json")
    message = caught.value.message
    assert message.startswith("None of the 2 clicks of clicks.json hits a surface of this run")
    assert "clicks[1] ('a' at images/frame_00000.png x 9.5 y 9.5) hits nothing in this run (opacity 0.00" in message


@pytest.mark.parametrize("layout", ["nerfstudio-data", "other"])
def test_the_export_is_a_labelled_scene_that_the_dataparser_reads(scenes, sample_scene, tmp_path, layout):
    """Same images and poses; nerfstudio-data: the input's frames with paths rewritten; other layouts:
    transforms.json from the cameras."""
    data = sample_scene if layout == "nerfstudio-data" else tmp_path / "no_transforms_here"
    data.mkdir(exist_ok=True)
    scene = replace(scenes["other"], data_dir=data)
    frames = scene.frames[:5]
    folder = ExportFolder(tmp_path / "out")
    for frame in frames:
        path = folder.frame_path("ids", frame)
        path.parent.mkdir(parents=True, exist_ok=True)
        from PIL import Image

        Image.fromarray(np.full((SCENE_HEIGHT, SCENE_WIDTH), 2, np.uint8)).save(path)
    folder.write_classes(("floor", "ball"), torch.rand(3, 3))
    folder.write_transforms(scene, frames)
    written = json.loads((tmp_path / "out" / "transforms.json").read_text())
    assert all(row["semantics_file_path"].startswith("ids/") for row in written["frames"])
    assert not any("instance_file_path" in row for row in written["frames"])

    exported = parse_scene(tmp_path / "out", eval_mode="all")
    semantics = exported.outputs.metadata["semantics"]
    assert semantics.classes == ["unlabelled", "floor", "ball"]
    assert sorted(p.name for p in semantics.filenames) == sorted(f"{frame.stem}.png" for frame in frames)
    by_image = {frame.image.resolve(): frame for frame in frames}
    assert {frame.image.resolve() for frame in exported.frames} == set(by_image)
    original = dict(zip((f.image.resolve() for f in exported.frames), exported.original_poses()))
    expected = dict(zip((f.image.resolve() for f in scene.frames), scene.original_poses()))
    for image in by_image:
        torch.testing.assert_close(original[image], expected[image], atol=1e-4, rtol=0)


def test_voxel_vote_keeps_the_majority_label_whatever_the_batches(monkeypatch):
    generator = np.random.default_rng(0)
    points = generator.uniform(0, 4, (5000, 3))
    labels = (points[:, 0] > 2).astype(np.int64) + 1  # two halves
    noisy = np.where(generator.uniform(size=5000) < 0.2, 0, labels)  # some unlabelled points
    noisy = np.where(generator.uniform(size=5000) < 0.1, 3 - labels, noisy)  # some wrong labels
    colors = generator.integers(0, 256, (5000, 3)).astype(np.uint8)
    whole = VoxelVote(1.0)
    whole.add(points, colors, noisy)
    monkeypatch.setattr("jacobinerf_ns.pointcloud.MERGE_ROWS", 300)  # merge pending rows every few batches
    parts = VoxelVote(1.0)
    for chunk in np.array_split(np.arange(5000), 7):
        parts.add(points[chunk], colors[chunk], noisy[chunk])
    result = whole.result()
    for a, b in zip(result, parts.result()):
        np.testing.assert_allclose(a, b, atol=1e-4)
    voxel_points, _, voxel_labels = result
    assert len(voxel_points) == 64 and voxel_labels.dtype == np.int32
    np.testing.assert_array_equal(voxel_labels, (voxel_points[:, 0] > 2) + 1)
    unlabelled = VoxelVote(1.0)
    unlabelled.add(points[:3], colors[:3], np.zeros(3, np.int64))
    assert set(unlabelled.result()[2].tolist()) == {0}
    empty = VoxelVote(1.0)
    empty.add(points[:0], colors[:0], noisy[:0])  # a frame none of whose pixels is kept
    assert [part.shape for part in empty.result()] == [(0, 3), (0, 3), (0,)]


def test_the_weakest_region_is_the_lowest_box_that_hits_a_surface():
    from jacobinerf_ns.propagation.labelling import mean_over_hits, weakest_region

    confidence = torch.ones(20, 30)
    confidence[12:17, 3:8] = 0.1  # an unsure region
    confidence[2, 25] = 0.0  # one unsure pixel: a box around it stays confident on average
    hit = torch.ones(20, 30, dtype=torch.bool)
    assert weakest_region(confidence, hit) == (14, 5)
    hit[10:20, 0:10] = False  # the unsure region is sky: nothing to click there
    y, x = weakest_region(confidence, hit)
    assert abs(y - 2) <= 2 and abs(x - 25) <= 2, "the box around the chosen pixel holds the unsure pixel"
    assert weakest_region(confidence, torch.zeros_like(hit)) is None
    assert mean_over_hits(confidence, hit) == pytest.approx(float(confidence[hit].mean()))


def test_the_weakest_region_keeps_off_the_border_of_a_large_view():
    from jacobinerf_ns.propagation.labelling import weakest_region

    confidence = torch.ones(48, 64)
    confidence[:5, :5] = 0.0  # the least explained box is in the corner: its marker would be half outside the view
    confidence[30:35, 40:45] = 0.2
    hit = torch.ones(48, 64, dtype=torch.bool)
    assert weakest_region(confidence, hit) == (32, 42)
    hit[5:-5, 5:-5] = False  # only the border hits a surface: it is suggested all the same
    y, x = weakest_region(confidence, hit)
    assert y < 5 and x < 5


def test_explained_is_the_best_cosine_to_a_click():
    from jacobinerf_ns.propagation.labelling import explained

    pixels = torch.rand(6, 12)  # flattened ray Jacobians
    clicks = torch.rand(3, 12)
    sigma = 0.1
    responses = sigma * (pixels @ clicks.T).abs()  # linear responses
    cosine = torch.nn.functional.normalize(pixels, dim=-1) @ torch.nn.functional.normalize(clicks, dim=-1).T
    result = explained(responses, clicks.norm(dim=-1), pixels.norm(dim=-1), sigma)
    torch.testing.assert_close(result, cosine.abs().amax(dim=-1))
    assert explained(responses[:1], clicks.norm(dim=-1), torch.zeros(1), sigma).item() == 1.0  # clamped


def test_labelling_perturbs_along_each_click_by_the_same_length(scenes, model):
    """``R_k(p) = σ ‖J_p‖ |cos(J_p, J_k)|``: a pixel's label is the click it is most like, and a click whose
    Jacobian is longer takes no pixel more."""
    from jacobinerf_ns.propagation import RESPONSES, render_responses

    scene = scenes["default"]
    frame = scene.frames[0]
    click_set = ClickSet(
        classes=("left", "right"),
        clicks=(
            pixel_click(frame, SCENE_HEIGHT / 2 + 0.5, 5.5, "left"),
            pixel_click(frame, SCENE_HEIGHT / 2 + 0.5, SCENE_WIDTH - 5.5, "right"),
        ),
    )
    clicks = resolve_clicks(model, click_set, scene, "clicks.json")
    longer = replace(clicks, jacobians=clicks.jacobians * torch.tensor([10.0, 1.0])[:, None, None])
    camera = frame.camera  # (a random tiny field: in other views one click may take every pixel)
    labels, longer_labels = (
        label_frame(model, camera, c, "2d", "linear", min_explained=0).ids for c in (clicks, longer)
    )
    assert torch.equal(labels, longer_labels)
    assert set(labels.unique().tolist()) == {1, 2}  # both clicks label pixels

    responses = render_responses(model, camera, clicks.probe(0.1, "linear"))[RESPONSES["2d"]]
    pixels = torch.tensor([[10, 10], [30, 40], [20, 25]])
    targets = pixel_jacobians(model, camera, pixels).flatten(1)
    sources = clicks.jacobians.flatten(1)
    cosine = torch.nn.functional.normalize(targets, dim=-1) @ torch.nn.functional.normalize(sources, dim=-1).T
    expected = 0.1 * targets.norm(dim=-1, keepdim=True) * cosine.abs()
    torch.testing.assert_close(responses[pixels[:, 0], pixels[:, 1]], expected, rtol=1e-4, atol=1e-7)
