"""The multi-view depth-consistency check (depth_consistency.py) on synthetic depth maps of a floor seen by five
cameras, the clicks and the viewer's click it judges, and the point cloud it filters (label_export.py) on the sample
scene's true depth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from jacobinerf_ns.depth_consistency import DepthView, FusionCheck, project, view_support
from jacobinerf_ns.pointcloud import backproject
from jacobinerf_ns.propagation.labelling import ClickSurface, unconfirmed_clicks
from jacobinerf_ns.scene import Frame, Scene

WIDTH, HEIGHT, FOCAL = 40, 30, 30.0
POSITIONS = [(0.0, 0.0, 2.5), (1.2, 0.0, 2.0), (-1.2, 0.0, 2.0), (0.0, 1.2, 2.0), (0.0, -1.2, 2.0)]
"""Cameras above the floor z = 0, each looking at the origin."""
FLOATER = (slice(12, 17), slice(17, 23))
"""Pixels of camera 0 that render a floater at 0.6 × the floor's distance."""


def camera_at(position, target=(0.0, 0.0, 0.0), distortion=None):
    from nerfstudio.cameras.cameras import Cameras, CameraType

    position, target = torch.tensor(position), torch.tensor(target)
    forward = torch.nn.functional.normalize(target - position, dim=0)
    right = torch.nn.functional.normalize(torch.linalg.cross(forward, torch.tensor([0.0, 1.0, 0.0])), dim=0)
    up = torch.linalg.cross(right, forward)
    pose = torch.cat([torch.stack([right, up, -forward], dim=1), position[:, None]], dim=1)  # OpenGL: looks along -z
    return Cameras(
        camera_to_worlds=pose[None],
        fx=FOCAL,
        fy=FOCAL,
        cx=WIDTH / 2,
        cy=HEIGHT / 2,
        width=WIDTH,
        height=HEIGHT,
        distortion_params=distortion,
        camera_type=CameraType.PERSPECTIVE,
    )


def floor_depth(camera) -> torch.Tensor:
    """``(H, W)`` distance along each pixel's ray to the floor z = 0 (NaN where the ray misses it)."""
    rays = camera.generate_rays(camera_indices=0, keep_shape=True)
    distance = -rays.origins[..., 2] / rays.directions[..., 2]
    return torch.where(distance > 0, distance, torch.full_like(distance, float("nan")))


@pytest.fixture(scope="module")
def views():
    """The five views; camera 0 renders a floater in front of the floor."""
    views = [DepthView(camera, floor_depth(camera)) for camera in map(camera_at, POSITIONS)]
    views[0].depth[FLOATER] *= 0.6
    return views


def points_of(view: DepthView) -> torch.Tensor:
    """``(H, W, 3)`` points of a view's depth."""
    return backproject(view.camera, view.depth)


def centre(view: DepthView) -> torch.Tensor:
    return view.camera.camera_to_worlds[0, :3, 3]


def test_projection_inverts_nerfstudios_rays_with_distortion():
    """Points on the rays nerfstudio generates through random pixels project back onto those pixels."""
    distortion = torch.tensor([[-0.08, 0.02, 0.0, 0.0, 0.003, -0.002]])
    camera = camera_at((0.3, -0.2, 2.0), (0.1, 0.2, 0.0), distortion)
    generator = torch.Generator().manual_seed(0)
    pixels = torch.rand(200, 2, generator=generator) * torch.tensor([HEIGHT, WIDTH])  # (row, column)
    rays = camera.generate_rays(camera_indices=0, coords=pixels)
    distance = 0.5 + 3 * torch.rand(200, 1, generator=generator)
    coords, distances, inside = project(rays.origins + rays.directions * distance, camera)
    torch.testing.assert_close(coords, pixels.flip(-1), atol=2e-3, rtol=0)
    torch.testing.assert_close(distances, distance[:, 0])
    assert inside.all()
    behind = rays.origins - rays.directions * distance
    assert not project(behind, camera)[2].any()
    assert not project(torch.tensor([[30.0, 0.0, 0.0]]), camera)[2].any(), "far off the image, not folded into it"


def test_points_only_one_view_renders_are_dropped_and_the_floor_is_kept(views):
    points = points_of(views[0]).reshape(-1, 3)
    support = view_support(points, views, 0.03, centre(views[0])[None])
    floater = torch.zeros(HEIGHT, WIDTH, dtype=torch.bool)
    floater[FLOATER] = True
    assert (support.agreeing[floater.flatten()] == 0).all(), "every other view sees past the floater"
    assert (support.seeing[floater.flatten()] >= 2).all()
    floor = ~floater.flatten()
    assert (support.agreeing[floor] == support.seeing[floor]).all(), "every view that sees a floor point agrees"
    assert support.confirmed(2)[floor].float().mean() > 0.8
    assert not support.confirmed(2)[floater.flatten()].any()
    assert (support.seeing <= len(views) - 1).all(), "a point's own view does not judge it"


def test_a_far_shell_that_every_view_renders_is_not_confirmed_by_views_without_parallax():
    """A field that explains the room by a far "sky" shell renders it at about the same distance from every nearby
    viewpoint, so each view agrees with the others' shell points; views within the minimum triangulation angle of a
    point's own ray cannot place it along that ray and do not judge it. The floor below, seen at wide angles, stays
    confirmed."""
    shell = 200.0  # distance every view renders above the horizon
    looking_out = [camera_at(position, (position[0], position[1] + 5.0, 0.8)) for position in POSITIONS]
    views = []
    for camera in looking_out:
        floor = floor_depth(camera)
        views.append(DepthView(camera, torch.where(torch.isfinite(floor), floor, torch.full_like(floor, shell))))
    own = views[0]
    points = points_of(own).reshape(-1, 3)
    far = own.depth.flatten() == shell
    assert far.any() and (~far).any()
    viewpoint = centre(own)[None]
    without_parallax = view_support(points, views, 0.03, viewpoint, min_angle=0.0)
    assert without_parallax.confirmed(2)[far].float().mean() > 0.8, "the nearby views agree with the shell"
    support = view_support(points, views, 0.03, viewpoint)
    assert not support.confirmed(1)[far].any()
    near_floor = ~far & (own.depth.flatten() < 8.0)
    assert near_floor.any() and support.confirmed(2)[near_floor].float().mean() > 0.8


def test_a_view_that_shows_something_in_front_of_a_point_does_not_judge_it(views):
    point = torch.tensor([[0.1, 0.05, 0.0]])  # on the floor, seen by every view
    before = view_support(point, views, 0.03)
    assert before.agreeing.item() == before.seeing.item() == len(views) - 1, "view 0 renders the floater there"
    occluded = list(views)
    coords, _, _ = project(point, views[1].camera)
    column, row = coords[0].long().tolist()
    depth = views[1].depth.clone()
    depth[row - 2 : row + 3, column - 2 : column + 3] *= 0.5  # an object in front of the point in view 1
    occluded[1] = DepthView(views[1].camera, depth)
    after = view_support(point, occluded, 0.03)
    assert after.agreeing.item() == after.seeing.item() == len(views) - 2
    assert view_support(point, [occluded[1]], 0.03).seeing.item() == 0


def test_a_click_on_a_floater_is_named_in_a_warning(views):
    rays = views[0].camera.generate_rays(camera_indices=0, keep_shape=True)
    points = points_of(views[0])
    origin = rays.origins[14, 20]
    surfaces = [
        ClickSurface("clicks[0] ('vase' at images/frame_00000.png x 20.5 y 14.5)", origin, points[14, 20]),
        ClickSurface("clicks[1] ('floor' at images/frame_00000.png x 5.5 y 5.5)", origin, points[5, 5]),
    ]
    warnings = unconfirmed_clicks(surfaces, views, FusionCheck(min_views=2, tolerance=0.03))
    assert len(warnings) == 1
    assert warnings[0].startswith("clicks[0] ('vase' at images/frame_00000.png x 20.5 y 14.5): only 0 of the 4 ")
    assert "it may be a floater" in warnings[0]
    assert unconfirmed_clicks(surfaces, views, FusionCheck(min_views=0)) == (), "0 views: no check"


class FloorField:
    """Stands in for a model in eval passes: renders the floor z = 0 (opaque) along any ray."""

    device = "cpu"
    training = False

    def eval(self):
        return self

    def train(self, mode: bool = True):
        return self

    def get_outputs_with_head_inputs(self, bundle):
        distance = -bundle.origins[:, 2:] / bundle.directions[:, 2:]
        hit = distance > 0
        return {"depth": torch.where(hit, distance, torch.zeros_like(distance)), "accumulation": hit.float()}, None


def test_the_viewer_warns_about_a_click_on_a_floater(views):
    from jacobinerf_ns.viewer.click_evaluation import EvaluatedClick
    from jacobinerf_ns.viewer.surface_check import SurfaceCheck

    frames = tuple(Frame("train", i, view.camera, Path(f"{i}.png"), f"{i}.png") for i, view in enumerate(views))
    scene = Scene(Path("."), frames, None)
    check = SurfaceCheck(FloorField(), lambda: scene)

    def click(origin, surface) -> EvaluatedClick:
        return EvaluatedClick(torch.zeros(1, 3, 2), None, 1.0, (0.5, 0.5, 0.5), origin, surface, surface)

    viewer = (0.3, 0.4, 1.8)  # not a training view
    assert check.warning(click(viewer, (0.1, 0.05, 0.0))) == ""
    floater = tuple(0.4 * np.array(viewer) + 0.6 * np.array([0.1, 0.05, 0.0]))  # in front of the floor
    warning = check.warning(click(viewer, floater))
    assert warning.startswith(" Warning: only 0 of the 5 other training views") and "may be a floater" in warning
    on_view = tuple(centre(views[1]).tolist())  # a click from training view 1: that view does not judge it
    assert "of the 4 other training views" in check.warning(click(on_view, floater))
    assert SurfaceCheck(FloorField(), lambda: None).warning(click(viewer, floater)) == "", "no scene: no check"


def true_depth_export(sample_scene: Path, out: Path, render_error: float = 1.0):
    """An export folder whose renders are the sample scene's true depth (× ``render_error``; one surface per ray: all
    of its weight there, surface share 1), with a floater painted into frame 0 and half of every frame unlabelled; the
    scene, the folder and each frame's true distances."""
    from jacobinerf_ns.dataparsers.nerfstudio_labelled import LabelledNerfstudioDataParserConfig
    from jacobinerf_ns.label_export import ExportFolder
    from jacobinerf_ns.scene import scene_from_outputs

    parser = LabelledNerfstudioDataParserConfig(data=sample_scene).setup()
    scene = scene_from_outputs(sample_scene, {"train": parser.get_dataparser_outputs("train")})
    folder = ExportFolder(out)
    for kind in ("depth", "surface_share", "ids"):
        (out / kind).mkdir(parents=True)
    scale = float(scene.outputs.dataparser_scale)
    distances = {}
    for index, frame in enumerate(scene.frames):
        z = np.asarray(Image.open(sample_scene / "depth" / f"{frame.stem}.png")) / 1000.0
        rays = frame.camera.generate_rays(camera_indices=0, keep_shape=True)
        optical_axis = -frame.camera.camera_to_worlds[0, :3, 2]
        distance = scale * z / (rays.directions @ optical_axis).numpy()  # z-depth → distance along the unit ray
        distances[frame.stem] = distance.copy()
        distance *= render_error
        if index == 0:
            distance[10:40, 36:60] *= 0.6  # a floater only this frame renders (in the labelled half)
        np.save(folder.frame_path("depth", frame), distance.astype(np.float32))
        np.save(folder.frame_path("surface_share", frame), np.ones_like(distance, dtype=np.float32))
        ids = np.ones_like(z, dtype=np.uint8)
        ids[:, : ids.shape[1] // 2] = 0  # unlabelled: out of the point cloud
        Image.fromarray(ids).save(folder.frame_path("ids", frame))
    return scene, folder, distances


def fused_shares(folder, truth, *write_points_args):
    """Accuracy, completeness and median distance of the point cloud ``write_points`` fuses, and its share kept."""
    from plyfile import PlyData

    from jacobinerf_ns.label_export import POINTS
    from jacobinerf_ns.surface_accuracy import CloudScore

    kept = folder.write_points(*write_points_args).kept_share
    vertex = PlyData.read(str(folder.root / POINTS))["vertex"]
    assert set(np.unique(vertex["label"])) == {1}, "unlabelled pixels stay out"
    points = np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=-1).astype(np.float64)
    return CloudScore(points, truth).shares(), kept


def test_the_point_cloud_keeps_labelled_points_the_views_agree_on(sample_scene, tmp_path):
    """The sample scene's true depth as renders, a floater painted into one frame, half of every frame unlabelled."""
    from jacobinerf_ns.surface_accuracy import true_surface

    scene, folder, _ = true_depth_export(sample_scene, tmp_path / "out")
    judges = folder.depth_views(scene.frames)
    truth = true_surface(sample_scene)
    unfiltered, kept_all = fused_shares(folder, truth, scene, scene.frames, None, judges, FusionCheck(min_views=0))
    filtered, kept = fused_shares(folder, truth, scene, scene.frames, None, judges, FusionCheck())
    assert kept_all == 1.0 and kept < 1.0
    assert unfiltered["accuracy"] < 0.99 and filtered["accuracy"] > 0.999, (unfiltered, filtered)
    assert filtered["completeness"] > 0.9 * unfiltered["completeness"], (unfiltered, filtered)


def test_pixels_whose_ray_spreads_its_weight_along_it_stay_out_of_the_point_cloud(sample_scene, tmp_path):
    """True renders, but frame 1's rays spread their weight along them (a share of 0.4 at the rendered depth, which
    sits on the true surface, so every view agrees with it): none of its pixels enters the point cloud by default, all
    that the views confirm do with ``min_surface_share`` 0, and a frame with one surface per ray keeps the same pixels
    either way."""
    scene, folder, distances = true_depth_export(sample_scene, tmp_path / "out")
    spread, sharp = scene.frames[1], scene.frames[2]
    np.save(folder.frame_path("surface_share", spread), np.full_like(distances[spread.stem], 0.4, dtype=np.float32))
    judges = folder.depth_views(scene.frames)

    def kept(frame, **check):
        return folder.write_points(scene, [frame], None, judges, FusionCheck(**check)).kept_share

    assert kept(spread, min_surface_share=0.0) > 0.9 and kept(spread) == 0.0
    assert kept(sharp) == kept(sharp, min_surface_share=0.0) > 0.9


def test_the_fusion_counts_each_class_s_labelled_and_kept_pixels(sample_scene, tmp_path):
    """Of frames 0-2, frame 0 unlabelled, frame 1 (its rays spread their weight) labelled class 2 and frame 2 (one
    surface per ray) class 1, each on half of its pixels: class 2 keeps none of its pixels, class 1 nearly all."""
    scene, folder, distances = true_depth_export(sample_scene, tmp_path / "out")
    spread, sharp = scene.frames[1], scene.frames[2]
    np.save(folder.frame_path("surface_share", spread), np.full_like(distances[spread.stem], 0.4, dtype=np.float32))
    for frame, class_id in ((spread, 2), (sharp, 1), (scene.frames[0], 0)):
        ids = np.asarray(Image.open(folder.frame_path("ids", frame)))
        Image.fromarray(np.where(ids > 0, class_id, 0).astype(np.uint8)).save(folder.frame_path("ids", frame))
    fusion = folder.write_points(scene, scene.frames[:3], None, folder.depth_views(scene.frames), FusionCheck())
    half = 48 * 32  # the labelled half of a frame
    assert fusion.labelled.tolist() == [0, half, half] and fusion.kept[2] == 0 and fusion.kept[0] == 0
    shares = fusion.class_shares()
    assert set(shares) == {1, 2} and shares[2] == 0.0 and shares[1] > 0.9, shares
    assert fusion.kept_share == pytest.approx(fusion.kept[1] / (2 * half))


def test_a_class_the_point_cloud_leaves_out_is_named_with_what_helps():
    from jacobinerf_ns.commands.label import poorly_fused_message

    without = poorly_fused_message("floor", 0.05, 9412, captured=False, distortion_waited=False)
    assert without.startswith("class 'floor': 5% of its 9412 labelled pixels entered labelled_points.ply")
    assert "see-through" in without and "--pipeline.model.distortion-loss-start-step" in without
    waited = poorly_fused_message("floor", 0.05, 9412, captured=False, distortion_waited=True)
    assert "--machine.seed" in waited and "distortion-loss-start-step" not in waited, "no advice the run already took"
    assert "captured depth" in poorly_fused_message("floor", 0.05, 9412, captured=True, distortion_waited=False)


def test_the_point_cloud_lies_at_the_captured_depth_where_the_render_agrees_with_it(sample_scene, tmp_path):
    """Renders 2% too far (within the tolerance) and a floater in frame 0: with the scene's depth maps the points
    lie on the true surface, and the floater's pixels, whose render disagrees with the capture, are dropped."""
    from jacobinerf_ns.pointcloud import captured_distance, depth_file_scale
    from jacobinerf_ns.surface_accuracy import true_surface

    scene, folder, distances = true_depth_export(sample_scene, tmp_path / "out", render_error=1.02)
    frame = scene.frames[0]
    assert frame.depth_file == sample_scene / "depth" / f"{frame.stem}.png"
    captured = captured_distance(frame.camera, frame.depth_file, depth_file_scale(scene.outputs))
    torch.testing.assert_close(captured, torch.from_numpy(distances[frame.stem]).float(), equal_nan=True)

    def capture(frame):
        return captured_distance(frame.camera, frame.depth_file, depth_file_scale(scene.outputs))

    judges = folder.depth_views(scene.frames)
    truth = true_surface(sample_scene)
    no_check = FusionCheck(min_views=0)
    rendered, _ = fused_shares(folder, truth, scene, scene.frames, None, judges, no_check)
    fused, kept = fused_shares(folder, truth, scene, scene.frames, None, judges, no_check, capture)
    floater = 30 * 24 / (len(scene.frames) * 48 * 32)  # the floater's share of the labelled pixels
    assert 1.0 - 1.5 * floater < kept < 1.0, "only the floater's pixels disagree with the capture"
    strict = FusionCheck(min_views=0, capture_tolerance=0.01)
    assert folder.write_points(scene, scene.frames, None, judges, strict, capture).kept_share == 0.0, (
        "with a capture tolerance under the renders' 2% error no pixel agrees with the capture"
    )
    assert rendered["accuracy"] < 0.99 and fused["accuracy"] > 0.999, (rendered, fused)
    assert fused["median_distance"] < 0.1 * rendered["median_distance"], (rendered, fused)


def test_the_label_commands_defaults_are_the_librarys():
    """``jacobinerf-label`` spells its defaults out (its ``--help`` imports no torch); they are the library's."""
    from dataclasses import fields

    from jacobinerf_ns.commands.label import Label
    from jacobinerf_ns.depth_consistency import (
        CAPTURE_TOLERANCE,
        DEPTH_TOLERANCE,
        MIN_AGREEING_VIEWS,
        MIN_SURFACE_SHARE,
        MIN_TRIANGULATION_ANGLE,
    )
    from jacobinerf_ns.propagation.labelling import MIN_EXPLAINED
    from jacobinerf_ns.propagation.surface_labelling import MIN_CLASS_SCORE, MIN_MASK_RESEMBLANCE, PIXELS_PER_FRAME

    defaults = {field.name: field.default for field in fields(Label)}
    assert defaults["min_explained"] == MIN_EXPLAINED
    assert defaults["min_resemblance"] == MIN_MASK_RESEMBLANCE
    assert defaults["min_class_score"] == MIN_CLASS_SCORE
    assert defaults["surface_pixels"] == PIXELS_PER_FRAME
    assert defaults["min_agreeing_views"] == MIN_AGREEING_VIEWS
    assert defaults["depth_tolerance"] == DEPTH_TOLERANCE
    assert defaults["min_triangulation_angle"] == MIN_TRIANGULATION_ANGLE
    assert defaults["min_surface_share"] == MIN_SURFACE_SHARE
    assert defaults["capture_tolerance"] == CAPTURE_TOLERANCE


def test_the_point_clouds_labels_are_scored_against_the_scenes_semantic_maps(sample_scene):
    """``CloudScore.label_accuracy``: points on the true surface carrying their true class score 1, another class 0;
    points off the surface are not scored."""
    from jacobinerf_ns.surface_accuracy import VOID, CloudScore, true_surface

    truth = true_surface(sample_scene)
    assert truth.classes is not None and len(truth.classes) == len(truth.points)
    assert {"floor", "wall", "ball", "box", "vase"} <= set(truth.classes)
    picked = np.random.default_rng(0).choice(np.flatnonzero(truth.classes != VOID), 500, replace=False)
    points, names = truth.points[picked], truth.classes[picked]
    assert CloudScore(points, truth).label_accuracy(names) == 1.0
    assert CloudScore(points, truth).label_accuracy(np.where(names == "floor", "wall", "floor")) == 0.0
    assert CloudScore(points + 100.0, truth).label_accuracy(names) is None


def test_completeness_of_the_annotated_surface_leaves_the_void_out(sample_scene):
    """With the vase's surface made void (a surface nobody annotated, so no click names it), a cloud of every other
    true point covers the annotated surface whole and the whole surface only in part; without true classes there is
    no such figure."""
    from dataclasses import replace

    from jacobinerf_ns.surface_accuracy import VOID, CloudScore, true_surface

    truth = true_surface(sample_scene)
    truth = replace(truth, classes=np.where(truth.classes == "vase", VOID, truth.classes))
    score = CloudScore(truth.points[truth.classes != VOID], truth)
    assert score.annotated_completeness() == 1.0 and score.shares()["completeness"] < 1.0
    assert CloudScore(truth.points[truth.classes == VOID], truth).annotated_completeness() < 0.5
    assert CloudScore(truth.points, replace(truth, classes=None)).annotated_completeness() is None


def test_completeness_of_some_frames_counts_their_true_surface_alone(sample_scene):
    """A cloud of the true points of two frames covers those frames' surface whole and every frame's only in part;
    ``frames`` naming no frame covers nothing."""
    from jacobinerf_ns.surface_accuracy import CloudScore, true_surface

    truth = true_surface(sample_scene)
    frames = json.loads((sample_scene / "transforms.json").read_text())["frames"][:2]
    stems = [Path(frame["file_path"]).stem for frame in frames]
    score = CloudScore(truth.points[np.isin(truth.stems, stems)], truth)
    assert score.shares(stems)["completeness"] == 1.0 and score.shares(stems)["accuracy"] == 1.0
    assert 0.0 < score.shares()["completeness"] < 1.0
    assert score.shares(["no_such_frame"])["completeness"] == 0.0
