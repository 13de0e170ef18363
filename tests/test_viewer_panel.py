"""The viewer: the session driven in plain Python (select, paint, recolor, label clicks and their files, suggestions,
export), and the panel's wiring with a stand-in pipeline (no viser)."""

from __future__ import annotations

import html
import json
import re
from dataclasses import replace
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from nerfstudio.viewer.viewer_elements import ViewerClick
from PIL import Image

from jacobinerf_ns.clicks import RayClick, read_clicks
from jacobinerf_ns.errors import JacobiNerfError
from jacobinerf_ns.probe import JACOBIAN_NORM
from jacobinerf_ns.propagation import RESPONSES
from jacobinerf_ns.propagation.labelling import (
    MIN_ACCUMULATION,
    SUGGESTION_WINDOW,
    class_scores,
    confidence,
    label_frame,
    mean_over_hits,
    weakest_region,
)
from jacobinerf_ns.propagation.rendering import render_responses
from jacobinerf_ns.scene import pixel_click, scene_from_outputs
from jacobinerf_ns.view_cache import ViewCache, answers, camera_key
from jacobinerf_ns.viewer.decoration import CONFIDENCE, LABELS, RESPONSE, SELECTION, Decoration, decorate
from jacobinerf_ns.viewer.export import export_selection
from jacobinerf_ns.viewer.panel import AUTOSAVE_FILE, JacobiNerfPanel, click_ray
from jacobinerf_ns.viewer.session import ViewerSession
from jacobinerf_ns.viewer.suggestions import low_resolution
from jacobinerf_ns.visualization import label_overlay, palette
from tests.helpers import SCENE_VIEWS, SCENE_WIDTH, build_tiny_model

PAINTED = (("floor", (34, 24)), ("wall", (3, 3)), ("box", (20, 20)), ("wall", (5, 40)))
"""(class, (y, x) in training view 0) of the label clicks the tests paint."""


def ray_at(camera, y: int, x: int):
    """The ray through pixel (y, x) as the viewer sends it (a click)."""
    rays = camera.generate_rays(camera_indices=0, keep_shape=True)
    return click_ray(ViewerClick(tuple(rays.origins[y, x].tolist()), tuple(rays.directions[y, x].tolist()), (0, 0)))


@pytest.fixture(scope="module")
def parser(sample_scene):
    from jacobinerf_ns.dataparsers.nerfstudio_labelled import LabelledNerfstudioDataParserConfig

    return LabelledNerfstudioDataParserConfig(data=sample_scene).setup()


@pytest.fixture(scope="module")
def scene_outputs(parser):
    return parser.get_dataparser_outputs("train")


@pytest.fixture(scope="module")
def scene(parser, sample_scene, scene_outputs):
    return scene_from_outputs(sample_scene, {"train": scene_outputs, "eval": parser.get_dataparser_outputs("test")})


@pytest.fixture()
def model():
    model = build_tiny_model(average_init_density=1.0)
    model.eval()
    return model


@pytest.fixture()
def session_and_camera(model, scene, scene_outputs):
    model.probe = None
    return ViewerSession(model, scene=lambda: scene), scene_outputs.cameras[0:1]


@pytest.fixture()
def nearest_session_and_camera(session_and_camera):
    """A session with *Label propagation: nearest* (labels by the nearest click, selection by the threshold)."""
    session, camera = session_and_camera
    session.set_propagation("nearest")
    return session, camera


def painted(session, camera, clicks=PAINTED):
    for name, (y, x) in clicks:
        message = session.labels.add(ray_at(camera, y, x), name)
        assert message.startswith(f"Painted '{name}'"), message
    return session


def stand_in_pipeline(model, scene, scene_outputs, parser, sample_scene):
    """What the panel uses of a pipeline: the model and the datamanager's dataparser outputs."""
    pipeline = torch.nn.Module()  # nerfstudio's viewer walks the pipeline's attributes
    pipeline.model = model
    pipeline.datamanager = SimpleNamespace(
        train_dataparser_outputs=scene_outputs,
        eval_dataset=SimpleNamespace(_dataparser_outputs=parser.get_dataparser_outputs("test")),
        dataparser=SimpleNamespace(config=SimpleNamespace(data=sample_scene)),
        training_masks=lambda: None,  # a run shaped without masks
    )
    pipeline.jacobinerf = JacobiNerfPanel(pipeline.model, pipeline.datamanager)
    return pipeline


@pytest.fixture()
def panel(model, scene, scene_outputs, parser, sample_scene, tmp_path):
    """The panel of a stand-in pipeline, with a stand-in viewer (its run folder is ``tmp_path``) and one browser."""
    model.probe = None
    panel = stand_in_pipeline(model, scene, scene_outputs, parser, sample_scene).jacobinerf
    browser = SimpleNamespace(camera=SimpleNamespace(aspect=4 / 3))
    panel.viewer_control.viewer = SimpleNamespace(
        log_filename=tmp_path / "viewer_log.txt", _trigger_rerender=lambda: None
    )
    panel.viewer_control.viser_server = SimpleNamespace(get_clients=lambda: {0: browser})
    panel.browser = browser
    return panel


def test_panel_elements_are_found_by_the_viewer_and_drive_the_session(scene, scene_outputs, parser, sample_scene):
    from nerfstudio.viewer.utils import parse_object
    from nerfstudio.viewer.viewer_elements import ViewerControl, ViewerElement

    model = build_tiny_model(average_init_density=1.0)
    pipeline = stand_in_pipeline(model, scene, scene_outputs, parser, sample_scene)
    names = [path for path, _ in parse_object(pipeline, ViewerElement, "Custom Elements")]
    assert "Custom Elements/jacobinerf/select" in names and "Custom Elements/jacobinerf/recolor_strength" in names
    labels = [name.rsplit("/", 1)[1] for name in names if name.startswith("Custom Elements/jacobinerf/labels/")]
    assert labels[:3] == ["class_name", "class_paint", "classes"], "the folder reads in the order of the workflow"
    assert {"click_delete", "file_load", "file_save", "file_upload", "markers", "clicks_suggest"} <= set(labels)
    assert len(parse_object(pipeline, ViewerControl, "Custom Elements")) == 1
    panel = pipeline.jacobinerf
    panel.threshold.value = 0.25
    panel.threshold.cb_hook(panel.threshold)
    assert panel.session.settings.threshold == 0.25
    panel.on_select(ray_at(scene_outputs.cameras[0:1], 18, 24))
    assert model.probe is not None and panel.session.selection.clicked is not None
    panel.reported(lambda: 1 / 0)()
    assert panel.message.startswith("Error: ZeroDivisionError")


def test_labels_and_selection_spread_over_the_surfaces_by_default_and_the_graph_reports_its_progress(
    panel, model, scene
):
    """The panel starts on *Label propagation: surface* (what ``jacobinerf-label`` labels by default); rendering the
    training frames' graph tells the status how far it is, frame by frame, with the time left; a session without the
    dataset has nothing to spread over and labels by the nearest click."""
    assert panel.labels.classes_propagation.value == "surface" == panel.session.settings.propagation
    assert ViewerSession(model).settings.propagation == "nearest"
    reports = []
    session = ViewerSession(model, scene=lambda: scene, progress=reports.append)
    graph = session.surface.nodes()
    frames = len(scene.training_frames())
    assert len(reports) == frames and len(graph) > 0
    assert reports[0].endswith(f": 0 of {frames}")
    later = [re.search(f": {done} of {frames}, about \\d+ s left$", reports[done]) for done in range(1, frames)]
    assert all(later), reports
    assert session.surface.nodes() is graph and len(reports) == frames, "rendered once per run"


def test_a_kept_field_pass_relabels_the_view_as_a_full_render_would(panel, scene_outputs):
    """Once a viewer click is armed the model keeps the viewer's last field pass: a new label click re-labels the view
    from it (no field pass) to what a full render gives, a moved camera renders the field again, and a recolouring
    (which changes the samples' colours) is always rendered in full."""
    session, camera = panel.session, scene_outputs.cameras[0:1]
    model = session.model
    assert model.view_cache is None, "not before a viewer is running"
    panel.viewer_control.viser_server.scene = SimpleNamespace(on_pointer_event=lambda event_type: lambda cb: cb)
    panel.select.cb_hook(panel.select)
    cache = model.view_cache
    assert cache is not None and panel.message == "Click in the scene to select an entity."

    def full_render() -> dict:
        model.view_cache = None
        try:
            return model.get_outputs_for_camera(camera)
        finally:
            model.view_cache = cache

    session.selection.select(ray_at(camera, 18, 24))
    painted(session, camera, PAINTED[:2])
    kept = model.get_outputs_for_camera(camera)
    assert cache.passes == 1 and answers(cache.kept, model.probe), "served from the kept pass"
    expected = full_render()
    for key in ("rgb", "depth", RESPONSE, SELECTION, LABELS, CONFIDENCE):
        torch.testing.assert_close(kept[key], expected[key], atol=1e-5, rtol=1e-4)
    painted(session, camera, PAINTED[2:])  # two more label clicks: the labels change, the field does not
    relabelled = model.get_outputs_for_camera(camera)
    assert cache.passes == 1, "no field pass for a click"
    torch.testing.assert_close(relabelled[LABELS], full_render()[LABELS], atol=1e-5, rtol=1e-4)
    assert not torch.equal(relabelled[LABELS], kept[LABELS])
    model.get_outputs_for_camera(scene_outputs.cameras[1:2])
    assert cache.passes == 2, "a moved camera renders the field"
    session.recolor(ray_at(camera, 18, 24), (0.9, 0.1, 0.1))
    recolored = model.get_outputs_for_camera(camera)
    assert cache.passes == 2 and not ViewCache.serves(model.probe)
    torch.testing.assert_close(recolored["rgb"], full_render()["rgb"])
    cache.clear()
    assert cache.kept is None


def test_select_then_render_gives_response_and_selection_outputs(nearest_session_and_camera):
    session, camera = nearest_session_and_camera
    session.selection.select(ray_at(camera, 18, 24))
    assert session.selection.clicked is not None
    outputs = session.model.get_outputs_for_camera(camera)
    height, width = int(camera.height), int(camera.width)
    assert outputs[RESPONSE].shape == (height, width, 1) and outputs[SELECTION].shape == (height, width, 3)
    assert not any(key in outputs for key in RESPONSES.values()), "raw K-channel responses must not reach the viewer"
    assert outputs[RESPONSE][18, 24, 0] == pytest.approx(1.0, rel=0.05), "the clicked pixel responds like itself"
    session.settings.threshold = 0.0
    session.publish()
    everything = session.model.get_outputs_for_camera(camera)[SELECTION]
    session.settings.threshold = 1e9
    session.publish()
    nothing = session.model.get_outputs_for_camera(camera)[SELECTION]
    torch.testing.assert_close(nothing, outputs["rgb"])
    assert not torch.allclose(everything, outputs["rgb"])


def test_the_status_of_a_selection_or_label_click_says_when_its_surface_may_be_a_floater(session_and_camera):
    """Each click's surface goes through the session's surface check, whose warning ends the status message."""
    from jacobinerf_ns.viewer.labels import LabelClicks
    from jacobinerf_ns.viewer.selection import Selection

    session, camera = session_and_camera
    checked = []

    def check(click) -> str:
        checked.append(click.surface)
        return " Warning: a floater."

    selection = Selection(session.model, session.settings, lambda: None, check, session.surface.nodes)
    assert selection.select(ray_at(camera, 34, 24)).endswith("outputs. Warning: a floater.")
    labels = LabelClicks(session.model, lambda: session.scene, lambda: None, check)
    assert labels.add(ray_at(camera, 34, 24), "floor").endswith("outputs. Warning: a floater.")
    assert len(checked) == 2 and checked[0] == selection.clicked.surface
    assert session.selection.check == session.labels.check == session.surface_check.warning


def test_click_into_empty_space_is_reported(session_and_camera):
    _, camera = session_and_camera
    empty = build_tiny_model(average_init_density=1e-9)  # a field with (almost) no density anywhere
    empty.eval()
    session = ViewerSession(empty)
    message = session.selection.select(ray_at(camera, 18, 24))
    assert session.selection.clicked is None
    assert "No surface" in message
    assert empty.probe is None


def test_label_painting_legend_markers_delete_undo_and_clear(session_and_camera):
    session, camera = session_and_camera
    painted(session, camera)
    assert session.labels.classes == ["floor", "wall", "box"]
    colors = palette(4)
    legend = session.labels.legend()
    assert [(entry.name, entry.clicks) for entry in legend] == [("floor", 1), ("wall", 2), ("box", 1)]
    assert [entry.color for entry in legend] == [tuple(colors[i].tolist()) for i in (1, 2, 3)]
    assert all(isinstance(click.record, RayClick) for click in session.labels.clicks)
    points, shades = session.labels.markers()
    assert points.shape == (4, 3) and np.allclose(shades, colors[[1, 2, 3, 2]].numpy())
    rays = [ray_at(camera, y, x) for _, (y, x) in PAINTED]
    for point, ray in zip(points, rays):  # on its clicked ray, in front of the camera
        offset = torch.from_numpy(point) - ray.origins[0]
        assert float(offset @ ray.directions[0]) > 0
        torch.testing.assert_close(torch.nn.functional.normalize(offset, dim=0), ray.directions[0], atol=1e-4, rtol=0)
    labels = session.model.get_outputs_for_camera(camera)[LABELS]
    assert labels.shape == (int(camera.height), int(camera.width), 3)

    kept = [session.labels.clicks[i].record for i in (0, 2, 3)]
    assert "box" in session.labels.delete(2) and [click.record for click in session.labels.clicks] != kept
    session.labels.add(ray_at(camera, 20, 20), "box")
    assert "Deleted label click 2 (wall · ray)" in session.labels.delete(1)
    assert [(entry.name, entry.clicks) for entry in session.labels.legend()] == [("floor", 1), ("wall", 1), ("box", 1)]
    assert "There is no label click 9" in session.labels.delete(8)
    session.labels.undo()
    assert session.labels.classes == ["floor", "wall", "box"], (
        "a class stays when its last click goes (ids do not move)"
    )
    assert [(entry.name, entry.clicks) for entry in session.labels.legend()] == [("floor", 1), ("wall", 1), ("box", 0)]
    session.clear_labels()
    assert session.model.probe is None and LABELS not in session.model.get_outputs_for_camera(camera)
    assert session.labels.classes == [] and session.labels.markers()[0].shape == (0, 3)
    assert "Type a class name" in session.labels.add(ray_at(camera, 3, 3), "  ")


def test_decoration_labels_by_the_best_class_score_and_shows_their_margin():
    """On made-up responses of 4 clicks (classes 1, 2, 3, 2), a few rays that hit nothing and a row of pixels that
    resemble no click, worked by hand."""
    generator = torch.Generator().manual_seed(0)
    responses = torch.rand(6, 7, 4, generator=generator)
    rgb = torch.rand(6, 7, 3, generator=generator)
    accumulation = torch.ones(6, 7, 1)
    accumulation[0, :3] = MIN_ACCUMULATION / 2
    sigma = 0.1
    norms = responses.amax(dim=-1, keepdim=True) / sigma  # best |cos| = R / (σ ‖J_p‖) = 1: like a click
    norms[5] *= 4  # best |cos| 0.25: like no click
    colors = palette(4)
    decoration = Decoration("3d", 0.5, None, label_ids=(1, 2, 3, 2), colors=colors, sigma=sigma)
    raw = {"rgb": rgb, "accumulation": accumulation, RESPONSES["3d"]: responses, RESPONSES["2d"]: 0 * responses,
           JACOBIAN_NORM: norms}  # fmt: skip
    outputs = decorate(raw, None, decoration)
    assert not any(key in outputs for key in (*RESPONSES.values(), JACOBIAN_NORM))
    scores = torch.stack([responses[..., 0], responses[..., [1, 3]].amax(dim=-1), responses[..., 2]], dim=-1)
    best, second = scores.sort(dim=-1, descending=True).values.unbind(dim=-1)[:2]
    ids = scores.argmax(dim=-1) + 1
    ids[0, :3] = 0
    ids[5] = 0
    margin = (best - second) / best
    margin[0, :3] = 1.0
    assert set(ids.unique().tolist()) == {0, 1, 2, 3}, "every class wins somewhere: the check covers all of them"
    torch.testing.assert_close(outputs[CONFIDENCE][..., 0], margin)
    torch.testing.assert_close(outputs[LABELS], label_overlay(rgb, ids, colors))


def test_a_session_without_a_dataset_paints_labels_but_cannot_save_them(model, scene_outputs, tmp_path):
    """What benchmarks drive (``ViewerSession(model)``): labels are drawn, files need the dataset's frame."""
    camera = scene_outputs.cameras[0:1]
    session = painted(ViewerSession(model), camera, PAINTED[:2])
    assert LABELS in session.model.get_outputs_for_camera(camera)
    assert session.labels.clicks[0].record.origin == pytest.approx(ray_at(camera, 34, 24).origins[0].tolist())
    with pytest.raises(JacobiNerfError, match="no dataset"):
        session.files.save(tmp_path / "clicks.json")
    assert not (tmp_path / "clicks.json").exists()


def test_labels_and_confidence_outputs_are_the_class_scores_of_the_labelling_api(nearest_session_and_camera):
    """The viewer draws what ``jacobinerf-label`` writes: class score = best click of the class, label = best class,
    confidence = margin of the two best; unlabelled and confident (1) where the ray hits nothing."""
    session, camera = nearest_session_and_camera
    painted(session, camera)
    outputs = session.model.get_outputs_for_camera(camera)
    height, width = int(camera.height), int(camera.width)
    shown = outputs[CONFIDENCE]
    assert shown.shape == (height, width, 1) and shown.min() >= 0 and shown.max() <= 1
    clicks = session.labels.resolved()
    assert clicks.class_ids == (1, 2, 3, 2) and clicks.num_classes == 3
    expected = label_frame(session.model, camera, clicks, "3d", sigma=session.settings.sigma)
    hit = expected.hit
    torch.testing.assert_close(shown[..., 0][hit], expected.confidence[hit])
    assert torch.all(shown[..., 0][~hit] == 1)
    raw = render_responses(session.model, camera, clicks.probe(session.settings.sigma, "linear"))
    torch.testing.assert_close(shown[..., 0][hit], confidence(class_scores(raw[RESPONSES["3d"]], (1, 2, 3, 2), 3))[hit])
    torch.testing.assert_close(outputs[LABELS], label_overlay(outputs["rgb"], expected.ids, session.labels.colors()))


def test_labels_spread_over_the_surfaces_are_what_jacobinerf_label_writes(model, scene, scene_outputs, sample_scene,
                                                                         tmp_path):  # fmt: skip
    """With 'Label propagation: surface' the viewer draws the labels ``jacobinerf-label --propagation surface``
    computes for the same clicks (saved, resolved as the command resolves them, spread over the training frames and
    their masks)."""
    from jacobinerf_ns.propagation.labelling import resolve_clicks
    from jacobinerf_ns.propagation.surface_labelling import SurfaceLabelling, surface_graph

    def instance_masks(frames):
        return [torch.from_numpy(np.asarray(Image.open(sample_scene / "instances" / f"{frame.stem}.png")).astype(
            np.int64)) for frame in frames]  # fmt: skip

    model.probe = None
    session, camera = ViewerSession(model, scene=lambda: scene, masks=instance_masks), scene_outputs.cameras[0:1]
    assert session.set_propagation("surface").startswith("Labels will spread over the surfaces once you paint")
    painted(session, camera)
    assert session.set_propagation("surface").startswith("Labels spread over the surfaces of the training frames")
    assert session.surface.nodes().affinity.shape[0] > len(session.surface.nodes()), "the graph joins the masks"
    shown = session.model.get_outputs_for_camera(camera)
    session.files.save(tmp_path / "clicks.json")
    train = [frame for frame in scene.frames if frame.split == "train"]
    clicks = resolve_clicks(session.model, read_clicks(tmp_path / "clicks.json"), scene, "clicks.json")
    graph = surface_graph(session.model, [frame.camera for frame in train], masks=instance_masks(train))
    written = SurfaceLabelling.spread(graph, clicks).label_frame(session.model, camera)
    colors = session.labels.colors()
    overlay = label_overlay(shown["rgb"], written.ids, colors)
    assert torch.mean(torch.all(shown[LABELS] == overlay, dim=-1).float()) > 0.999
    assert len(torch.unique(written.ids[written.hit])) > 1, "several classes are drawn"
    torch.testing.assert_close(shown[CONFIDENCE][..., 0][written.hit], written.confidence[written.hit], atol=1e-4,
                               rtol=1e-3)  # fmt: skip
    spread = session.surface.current()
    session.labels.undo()
    assert session.surface.current() is not spread, "a change of the clicks spreads again"
    assert session.set_propagation("nearest").startswith("Labels: each pixel takes the class")
    nearest = label_frame(session.model, camera, session.labels.resolved(), "3d", sigma=session.settings.sigma)
    shown = session.model.get_outputs_for_camera(camera)
    torch.testing.assert_close(shown[LABELS], label_overlay(shown["rgb"], nearest.ids, colors))


def test_a_selection_spread_over_the_surfaces_is_drawn_and_exported_as_computed(trained_run):
    """With 'Label propagation: surface' the selection is the click's entity spread over the training frames' graph
    (``SurfaceSelection``): on the trained run, the viewer highlights, and the export masks, exactly the pixels whose
    share of the spread is above ½ and that resemble the click; back to nearest, the cosine threshold again."""
    from scipy.ndimage import distance_transform_edt

    from jacobinerf_ns.propagation.surface_labelling import SurfaceSelection, surface_passes
    from jacobinerf_ns.runs import instance_names, label_maps, open_run
    from jacobinerf_ns.scene import dataset_scene, frame_masks
    from jacobinerf_ns.visualization import highlight

    _, pipeline, _ = open_run(trained_run / "config.yml")
    scene = dataset_scene(pipeline.datamanager)
    session = ViewerSession(pipeline.model, scene=lambda: scene)
    camera = scene.frames[0].camera
    names = instance_names(Path(scene.data_dir))
    box = label_maps(pipeline.datamanager.train_dataparser_outputs, "instances")[0] == names.index("box_green")
    y, x = np.unravel_index(int(distance_transform_edt(box.numpy()).argmax()), box.shape)  # inside the green box
    session.set_propagation("surface")
    assert "spread over the surfaces (" in session.selection.select(ray_at(camera, y, x))
    clicked = session.selection.clicked
    shown = session.model.get_outputs_for_camera(camera)

    # the session's own graph: test_labels_spread_over_the_surfaces_are_what_jacobinerf_label_writes checks that one
    spread = SurfaceSelection.of_click(session.selection.graph(), torch.tensor(clicked.surface), clicked.jacobian)
    bundle = camera.generate_rays(camera_indices=0, keep_shape=True).flatten()
    passes = list(surface_passes(session.model, bundle))
    jacobians, points = torch.cat([rays.jacobians for rays in passes]), torch.cat([rays.points for rays in passes])
    click = clicked.jacobian.flatten().float().cpu()
    likeness = (jacobians @ click).abs() / (jacobians.norm(dim=-1) * click.norm()).clamp_min(1e-12)
    expected = spread.selected(spread.read_rays(jacobians, points)[:, 0], likeness).view(shown["rgb"].shape[:2])
    assert 0 < expected.float().mean() < 0.5 and expected[y, x], "the clicked object, not the whole view"
    agree = torch.all(shown[SELECTION].cpu() == highlight(shown["rgb"].cpu(), expected), dim=-1).float().mean()
    assert agree > 0.999
    mask, _ = session.selection.mask(camera)
    assert torch.mean((mask.cpu() == expected).float()) > 0.999, "the export masks what the viewer highlights"

    session.set_propagation("nearest")
    shown = session.model.get_outputs_for_camera(camera)
    by_threshold = (likeness > session.settings.threshold).view(expected.shape)
    agree = torch.all(shown[SELECTION].cpu() == highlight(shown["rgb"].cpu(), by_threshold), dim=-1).float().mean()
    assert agree > 0.999

    # with the run's masks (it was shaped with the scene's instances), the masks the click's mask reaches
    masked = ViewerSession(pipeline.model, scene=lambda: scene, masks=partial(frame_masks, pipeline.datamanager))
    masked.set_propagation("surface")
    masked.selection.select(ray_at(camera, y, x))
    click = masked.selection.clicked
    graph = masked.selection.graph()
    assert graph.masks is not None, "the masked session's graph joins the run's masks"
    by_masks = SurfaceSelection.of_click(graph, torch.tensor(click.surface), click.jacobian)
    assert by_masks.min_likeness == 0.0, "a mask selection keeps pixels unlike the click"
    expected_by_masks = by_masks.selected(by_masks.read_rays(jacobians, points)[:, 0], likeness).view(expected.shape)
    mask, _ = masked.selection.mask(camera)
    assert torch.mean((mask.cpu() == expected_by_masks).float()) > 0.999

    def iou(selected: torch.Tensor) -> float:
        return float((selected & box).sum() / (selected | box).sum())

    print(f"green box IoU: spread {iou(expected):.3f}, masks {iou(expected_by_masks):.3f}")
    assert iou(expected_by_masks) > max(0.9, iou(expected)), "the masks select the clicked box"


LARGE_SURFACE = (
    "One click's spread decays across a large surface while the rest reaches it over its edges: the floor and walls "
    "are selected less fully than by the cosine (floor 0.46 and 0.79 against 0.95 and 0.88 on machine seeds 1 and 2, "
    "walls 0.51-0.93 against 0.62-0.97 on 1, 2, 42; measured before the test clicked deeper where a click hits no "
    "surface)."
)
SPREAD_SELECTION_GAPS = {
    "floor": LARGE_SURFACE,
    "walls": LARGE_SURFACE,
    "box_yellow": "Its dark squares look like the floor it stands on: 0.25 and 0.82 on two draws of machine seed 42, "
    "0.93 and 0.87 on seeds 1 and 2.",
}


BALL_BEHIND_THE_VASE = (
    "On machine seed 2 the vase renders semi-transparent in frames that see the red ball behind it, so a vase mask "
    "there lies on the ball's surface and joins, and shaping left the two objects' Jacobians alike (|cos| 0.80 between "
    "their masks), so the likeness to the clicked mask keeps it out neither: 0.67 (0.99 on seeds 42 and 1)."
)
FLOOR_WITH_MASKS = (
    "A large surface: the floor's click selects 0.82 of it on machine seed 42 (above 0.85 on seed 2; on seed 1 before "
    "the click retry, 0.85+); which of its masks stay out was not traced."
)
USER_TRIES = 10
"""Clicks a user tries inside an object before giving up on it."""


class EveryViewKept(ViewCache):
    """The viewer's :class:`ViewCache` keeping every camera's field pass, not only the last: the selections of many
    clicks over the same frames then render each frame's field once (a kept pass answers as a full render does:
    ``test_a_kept_field_pass_relabels_the_view_as_a_full_render_would``)."""

    def __init__(self) -> None:
        super().__init__()
        self.views = {}

    def view(self, camera, render):
        key = camera_key(camera)
        if key not in self.views:
            self.views[key] = render()
            self.passes += 1
        self._view = (key, self.views[key])  # the last camera's, as ``kept`` reads it
        return self.views[key]

    def clear(self) -> None:
        super().clear()
        self.views.clear()


@pytest.fixture(scope="module")
def surface_selection_ious(trained_run) -> dict[str, dict[str, float]]:
    """IoU over the training frames of what *Select entity* exports with 'Label propagation: surface' for one click
    inside each object of training view 0, on the trained run: ``spread`` without masks, ``masks`` with the run's masks
    (it was shaped with the scene's instances). The click is the object's most interior pixel that hits a surface: on
    a CPU-sized run parts of the floor and walls render semi-transparent, the viewer answers "No surface", and a user
    clicks again deeper into what they see."""
    from scipy.ndimage import distance_transform_edt

    from jacobinerf_ns.runs import instance_names, label_maps, open_run
    from jacobinerf_ns.scene import dataset_scene, frame_masks

    _, pipeline, _ = open_run(trained_run / "config.yml")
    pipeline.model.view_cache = EveryViewKept()
    scene = dataset_scene(pipeline.datamanager)
    train = [frame for frame in scene.frames if frame.split == "train"]
    truth = label_maps(pipeline.datamanager.train_dataparser_outputs, "instances")
    results = {}
    for kind, masks in (("spread", None), ("masks", partial(frame_masks, pipeline.datamanager))):
        session = ViewerSession(pipeline.model, scene=lambda: scene, masks=masks)
        session.set_propagation("surface")
        ious = results.setdefault(kind, {})
        for instance, name in enumerate(instance_names(Path(scene.data_dir))):
            inside = (truth[0] == instance).numpy()
            if instance == 0 or not inside.any():
                continue
            depth = distance_transform_edt(inside)
            order = np.argsort(-depth, axis=None)[: int(inside.sum())]
            tries = order[:: max(1, len(order) // USER_TRIES)][:USER_TRIES]  # most interior first, spread out
            for y, x in zip(*np.unravel_index(tries, inside.shape)):
                if not session.selection.select(ray_at(train[0].camera, y, x)).startswith("No surface"):
                    break
            else:
                ious[name] = 0.0  # no click inside it selects anything
                continue
            overlap = union = 0
            for frame in train:
                selected, target = session.selection.mask(frame.camera)[0].cpu(), truth[frame.index] == instance
                overlap, union = overlap + int((selected & target).sum()), union + int((selected | target).sum())
            ious[name] = overlap / max(union, 1)
    assert pipeline.model.view_cache.passes <= len(train) + 1, "each frame's field rendered once"
    return results


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=[pytest.mark.xfail(reason=SPREAD_SELECTION_GAPS[name], strict=False)])
        if name in SPREAD_SELECTION_GAPS
        else name
        for name in ("ball_red", "ball_blue", "box_green", "vase", *SPREAD_SELECTION_GAPS)
    ],
)
def test_one_click_spread_over_the_surfaces_selects_its_whole_object_in_every_frame(surface_selection_ious, name):
    """By the cosine alone the blue ball and the vase were selected at 0.48-0.97 and 0.51-0.94 (machine seeds 1, 2,
    42); spread over the surfaces, 0.93-0.98 for every object but the yellow box."""
    assert surface_selection_ious["spread"][name] > 0.85, surface_selection_ious["spread"]


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("ball_red", marks=[pytest.mark.xfail(reason=BALL_BEHIND_THE_VASE, strict=False)]),
        "ball_blue",
        "box_green",
        "vase",
        "box_yellow",
        "walls",
        pytest.param("floor", marks=[pytest.mark.xfail(reason=FLOOR_WITH_MASKS, strict=False)]),
    ],
)
def test_one_click_with_masks_selects_its_whole_object_in_every_frame(surface_selection_ious, name):
    """With the run's masks the selection is the masks the click's mask reaches: every object whole, the yellow box
    and the walls too, which the spread misses."""
    assert surface_selection_ious["masks"][name] > 0.85, surface_selection_ious["masks"]


def test_saved_clicks_load_into_a_new_session_with_identical_label_maps(session_and_camera, tmp_path):
    session, camera = session_and_camera
    painted(session, camera)
    session.labels.delete(2)  # "box" stays a class without clicks
    before = session.model.get_outputs_for_camera(camera)
    path = tmp_path / "clicks.json"
    assert session.files.save(path).startswith("Saved 3 clicks of 3 classes")
    saved = read_clicks(path)  # a valid click set, in the documented format
    assert saved.classes == ("floor", "wall", "box") and len(saved.clicks) == 3
    assert saved.fingerprint == session.scene.fingerprint()
    assert all(isinstance(click, RayClick) for click in saved.clicks)

    loaded = ViewerSession(session.model, scene=lambda: session.scene)
    assert loaded.files.load(saved, str(path)) == f"Loaded 3 clicks of 3 classes from {path}."
    assert loaded.labels.classes == session.labels.classes
    assert [c.record for c in loaded.labels.clicks] == [c.record for c in session.labels.clicks]
    after = loaded.model.get_outputs_for_camera(camera)
    assert torch.equal(after[LABELS], before[LABELS]) and torch.equal(after[CONFIDENCE], before[CONFIDENCE])
    for frame in session.scene.frames[5:7]:  # and in other views
        session.publish()
        first = session.model.get_outputs_for_camera(frame.camera)[LABELS]
        loaded.publish()
        assert torch.equal(loaded.model.get_outputs_for_camera(frame.camera)[LABELS], first)


def test_pixel_clicks_load_and_save_back_unchanged(session_and_camera, tmp_path):
    session, camera = session_and_camera
    frame = session.scene.frames[0]
    click_set = replace(
        painted(ViewerSession(session.model, scene=lambda: session.scene), camera, PAINTED[:1]).files.click_set(),
        classes=("floor", "ball"),
        clicks=(pixel_click(frame, 34.5, 24.5, "floor"), pixel_click(frame, 20.5, 20.5, "ball")),
    )
    message = session.files.load(click_set, "clicks.json")
    assert message == "Loaded 2 clicks of 2 classes from clicks.json."
    assert [click.describe() for click in session.labels.clicks] == [
        f"floor · {frame.name} (24.5, 34.5)",
        f"ball · {frame.name} (20.5, 20.5)",
    ]
    session.files.save(tmp_path / "again.json")
    assert read_clicks(tmp_path / "again.json") == click_set


def test_loading_clicks_of_another_scene_is_refused_unless_forced(session_and_camera):
    session, camera = session_and_camera
    painted(session, camera)
    click_set = session.files.click_set()
    moved = replace(click_set.fingerprint, camera_mean=tuple(v + 1.0 for v in click_set.fingerprint.camera_mean))
    other = replace(click_set, fingerprint=moved)
    fresh = ViewerSession(session.model, scene=lambda: session.scene)
    moved_message = r"was made on another scene than .* \(its images have the same names but other "
    with pytest.raises(JacobiNerfError, match=moved_message):
        fresh.files.load(other, "other.json")
    assert fresh.labels.clicks == [] and fresh.labels.classes == []
    message = fresh.files.load(other, "other.json", force=True)
    assert message.startswith("Loaded 4 clicks of 3 classes from other.json (made on another scene:")
    assert fresh.files.load(replace(click_set, fingerprint=None), "handwritten.json").startswith("Loaded 4 clicks")


def test_loading_clicks_that_hit_nothing_is_an_error_and_keeps_the_session(session_and_camera, scene):
    session, camera = session_and_camera
    painted(session, camera)
    click_set = session.files.click_set()
    empty = build_tiny_model(average_init_density=1e-9)
    empty.eval()
    nothing = ViewerSession(empty, scene=lambda: scene)
    with pytest.raises(JacobiNerfError, match="None of the 4 clicks of clicks.json hits a surface"):
        nothing.files.load(click_set, "clicks.json")
    assert nothing.labels.classes == [] and empty.probe is None
    classes_only = replace(click_set, clicks=())
    assert nothing.files.load(classes_only, "classes.json") == "Loaded 0 clicks of 3 classes from classes.json."


def test_the_suggested_click_is_where_the_clicks_explain_the_view_least(nearest_session_and_camera):
    session, camera = nearest_session_and_camera
    painted(session, camera)
    with pytest.raises(JacobiNerfError, match="Paint a label first"):
        ViewerSession(session.model, scene=lambda: session.scene).suggestions.suggest(camera)
    suggestion = session.suggestions.suggest(camera)
    labels = label_frame(session.model, camera, session.labels.resolved(), "3d", sigma=session.settings.sigma)
    y, x = suggestion.pixel
    assert suggestion.pixel == weakest_region(labels.explained, labels.hit)
    assert suggestion.explained == pytest.approx(float(labels.explained[y, x]))
    assert suggestion.view_explained == pytest.approx(mean_over_hits(labels.explained, labels.hit))
    box = labels.explained[max(0, y - 2) : y + 3, max(0, x - 2) : x + 3]
    assert float(box.mean()) < suggestion.view_explained, "the marked region is less explained than the view"
    assert float(box.mean()) <= float(labels.explained[labels.hit].quantile(0.1)) + 1e-6
    ray = camera.generate_rays(camera_indices=0, keep_shape=True)[y, x]
    offset = torch.tensor(suggestion.marker) - ray.origins
    torch.testing.assert_close(torch.nn.functional.normalize(offset, dim=0), ray.directions, atol=1e-4, rtol=0)
    distance, fx = float(offset.norm()), float(camera.fx[0, 0])
    on_screen = suggestion.marker_size * fx / distance
    assert on_screen == pytest.approx(SUGGESTION_WINDOW), "the marker covers the box it marks, in pixels"
    reach = round(on_screen)
    covered = labels.depth[max(0, y - reach) : y + reach + 1, max(0, x - reach) : x + reach + 1]
    assert distance < float(covered.min()), "no surface the marker covers on screen hides it"


def test_a_skipped_suggestion_counts_as_explained_labels_nothing_and_moves_the_next_one(session_and_camera):
    session, camera = session_and_camera
    painted(session, camera)
    before = label_frame(session.model, camera, session.labels.resolved(), "3d", sigma=session.settings.sigma)
    skipped = session.suggestions.suggest(camera)
    assert session.suggestions.dismiss(skipped) == "Skipped that suggestion (1 skipped)"
    after = label_frame(session.model, camera, session.labels.resolved(), "3d", sigma=session.settings.sigma,
                        dismissed=torch.cat(session.suggestions.dismissed))  # fmt: skip
    y, x = skipped.pixel
    assert before.explained[y, x] < after.explained[y, x] and after.explained[y, x] > 0.999, "it explains itself"
    assert (after.explained >= before.explained - 1e-6).all()
    torch.testing.assert_close(after.ids, before.ids)
    torch.testing.assert_close(after.confidence, before.confidence)
    assert session.suggestions.suggest(camera).pixel != skipped.pixel
    session.clear_labels()
    assert session.suggestions.dismissed == []


def test_spread_over_the_surfaces_the_suggestion_follows_the_best_class_score(session_and_camera):
    """Under *Label propagation: surface* the suggested region is the weakest of the best class score the spread gives
    each pixel (not of the clicks' cosine, which no longer says what is labelled), and a skipped suggestion's
    look-alikes count as covered."""
    session, camera = session_and_camera
    painted(session, camera)
    session.set_propagation("surface")
    suggestion = session.suggestions.suggest(camera)
    frame = session.surface.current().frame_scores(session.model, camera)
    covered, hit = frame.covered(), frame.hit
    assert suggestion.guide == "best class score"
    assert suggestion.pixel == weakest_region(covered, hit)
    y, x = suggestion.pixel
    assert suggestion.explained == pytest.approx(float(covered[y, x]))
    assert suggestion.view_explained == pytest.approx(mean_over_hits(covered, hit))
    assert torch.all(covered[hit] <= frame.explained[hit] + 1e-6), "a class score never exceeds the resemblance"
    assert torch.all(covered[~hit] == 1)
    cosine = label_frame(session.model, camera, session.labels.resolved(), "3d", sigma=session.settings.sigma)
    assert not torch.allclose(covered[hit], cosine.explained[hit]), "a different guide from nearest-click labels'"

    session.suggestions.dismiss(suggestion)
    after = session.surface.current().frame_scores(session.model, camera, torch.cat(session.suggestions.dismissed))
    assert float(after.like_dismissed[y, x]) > 0.999 and float(after.covered()[y, x]) > 0.999, "it covers itself"
    assert torch.all(after.covered() >= covered - 1e-6)
    torch.testing.assert_close(after.scores, frame.scores)
    assert session.suggestions.suggest(camera).pixel != suggestion.pixel
    session.set_propagation("nearest")
    assert session.suggestions.suggest(camera).guide == "best cosine"


def test_the_least_explained_training_view_is_chosen_from_low_resolution_renders(
    nearest_session_and_camera, scene_outputs
):
    session, camera = nearest_session_and_camera
    painted(session, camera)
    cameras = scene_outputs.cameras
    small = low_resolution(cameras[3:4], 16)
    assert (int(small.width), int(small.height)) == (16, 12), "a rescaled copy"
    assert int(cameras[3:4].width) == SCENE_WIDTH
    progress = []
    ranking = session.suggestions.least_explained_view(cameras, 16, lambda done, total: progress.append((done, total)))
    assert progress[-1] == (len(cameras), len(cameras)) and len(ranking.mean_explained) == len(cameras)
    clicks = session.labels.resolved()
    means = []
    for index in range(len(cameras)):
        labels = label_frame(session.model, low_resolution(cameras[index : index + 1], 16), clicks, "3d")
        assert labels.explained.shape == (12, 16)
        means.append(mean_over_hits(labels.explained, labels.hit))
    assert ranking.mean_explained == pytest.approx(means)
    assert ranking.index == int(np.argmin(means)) and max(means) > min(means)
    assert ranking.suggestion is not None and ranking.suggestion.view_explained == pytest.approx(min(means))


def test_panel_labelling_legend_click_list_markers_and_autosave(panel, scene_outputs, tmp_path):
    camera = scene_outputs.cameras[0:1]
    assert "No classes yet" in panel.labels.classes.content
    for name, (y, x) in PAINTED:
        panel.labels.class_name.value = name
        panel.reported(partial(panel.on_label, ray_at(camera, y, x)))()  # as an armed click runs it
    legend = panel.labels.classes.content
    hex_colors = ["#" + "".join(f"{round(255 * c):02x}" for c in palette(4)[i].tolist()) for i in (1, 2, 3)]
    assert f"| `{hex_colors[1]}` | wall | 2 |" in legend and f"| `{hex_colors[2]}` | box | 1 |" in legend
    assert panel.labels.click_choice.options == ["1 · floor · ray", "2 · wall · ray", "3 · box · ray", "4 · wall · ray"]
    assert panel.labels.markers.points.shape == (4, 3) and panel.labels.markers.colors.dtype == np.uint8
    autosave = read_clicks(tmp_path / AUTOSAVE_FILE)
    assert len(autosave.clicks) == 4 and autosave.classes == ("floor", "wall", "box")

    panel.labels.click_choice.value = "2 · wall · ray"
    panel.labels.click_delete.cb_hook(panel.labels.click_delete)
    assert panel.message.startswith("Deleted label click 2 (wall · ray)")
    assert "| wall | 1 |" in panel.labels.classes.content and len(panel.labels.click_choice.options) == 3
    assert len(read_clicks(tmp_path / AUTOSAVE_FILE).clicks) == 3, "the autosave follows every change"
    assert panel.labels.markers.points.shape == (3, 3)

    name = "lamp_{2} <b>*"  # markdown and MDX markup in a class name is shown literally
    panel.labels.class_name.value = name
    panel.on_label(ray_at(camera, 20, 20))
    cells = next(line for line in panel.labels.classes.content.splitlines() if "lamp" in line).split("|")
    assert not any(mark in cells[2] for mark in "_{}<>*") and html.unescape(cells[2]) == f" {name} "

    panel.labels.clicks_clear.cb_hook(panel.labels.clicks_clear)
    assert (
        panel.labels.click_choice.options == ["(no label clicks)"] and "No classes yet" in panel.labels.classes.content
    )
    assert read_clicks(tmp_path / AUTOSAVE_FILE).classes == ()
    panel.labels.click_delete.cb_hook(panel.labels.click_delete)
    assert panel.message == "Choose a label click to delete."


def test_panel_saves_loads_uploads_and_downloads_click_sets(panel, scene_outputs, tmp_path):
    camera = scene_outputs.cameras[0:1]
    for name, (y, x) in PAINTED[:3]:
        panel.labels.class_name.value = name
        panel.on_label(ray_at(camera, y, x))
    labels = panel.session.model.get_outputs_for_camera(camera)[LABELS]
    panel.labels.file_save.cb_hook(panel.labels.file_save)
    assert panel.message.startswith(f"Saved 3 clicks of 3 classes to {tmp_path / 'clicks.json'}")
    name, content = panel.clicks_download()
    assert name == "clicks.json" and json.loads(content) == json.loads((tmp_path / "clicks.json").read_text())

    panel.labels.clicks_clear.cb_hook(panel.labels.clicks_clear)
    panel.labels.file_load.cb_hook(panel.labels.file_load)
    assert panel.message == f"Loaded 3 clicks of 3 classes from {tmp_path / 'clicks.json'}."
    assert "| box | 1 |" in panel.labels.classes.content and len(panel.labels.click_choice.options) == 3
    assert torch.equal(panel.session.model.get_outputs_for_camera(camera)[LABELS], labels)

    panel.labels.clicks_clear.cb_hook(panel.labels.clicks_clear)
    panel.labels.file_upload.file = ("mine.json", content)  # what the browser uploaded
    panel.labels.file_upload.cb_hook(panel.labels.file_upload)
    assert panel.message == "Loaded 3 clicks of 3 classes from mine.json (uploaded)."
    assert torch.equal(panel.session.model.get_outputs_for_camera(camera)[LABELS], labels)

    for text, message in (
        (b"\xff\xfe", "Uploaded file bad.json is not UTF-8 text"),
        (b"{", "Clicks file bad.json (uploaded) is not valid JSON"),
        (
            b'{"classes": ["a"], "clicks": [{"label": "b", "origin": [0, 0, 0], "direction": [0, 0, 1]}]}',
            "Clicks file bad.json (uploaded): clicks[0].label 'b' is not one of the classes ['a']",
        ),
    ):
        panel.labels.file_upload.file = ("bad.json", text)
        panel.labels.file_upload.cb_hook(panel.labels.file_upload)
        assert panel.message.startswith(message), panel.message
    panel.labels.file.value = "missing.json"
    panel.labels.file_load.cb_hook(panel.labels.file_load)
    assert panel.message.startswith(f"Clicks file {tmp_path / 'missing.json'} does not exist")
    assert len(panel.session.labels.clicks) == 3, "a failed load keeps the session's clicks"

    other = json.loads(content)
    other["fingerprint"]["images"] += 1
    (tmp_path / "other.json").write_text(json.dumps(other))
    panel.labels.file.value = str(tmp_path / "other.json")
    panel.labels.file_load.cb_hook(panel.labels.file_load)
    assert "was made on another scene than" in panel.message
    assert f"(it was made on a scene of {SCENE_VIEWS + 1} images, this one has {SCENE_VIEWS})" in panel.message
    panel.labels.file_load_force.value = True
    panel.labels.file_load.cb_hook(panel.labels.file_load)
    assert panel.message.startswith("Loaded 3 clicks of 3 classes") and "made on another scene" in panel.message


def test_panel_suggests_the_next_click_and_goes_to_the_least_explained_training_view(panel, scene_outputs):
    from nerfstudio.viewer.viewer import VISER_NERFSTUDIO_SCALE_RATIO

    camera = scene_outputs.cameras[0:1]
    panel.viewer_control.get_camera = lambda height, width: low_resolution(camera, max(height, width))
    panel.labels.clicks_suggest.cb_hook(panel.labels.clicks_suggest)
    assert panel.message.startswith("Paint a label first")
    for name, (y, x) in PAINTED:
        panel.labels.class_name.value = name
        panel.on_label(ray_at(camera, y, x))
    panel.labels.clicks_suggest_skip.cb_hook(panel.labels.clicks_suggest_skip)
    assert panel.message.startswith("No suggestion to skip")
    panel.labels.clicks_suggest.cb_hook(panel.labels.clicks_suggest)
    assert panel.message.startswith("The clicks explain the magenta marker least") and "paint a label" in panel.message
    assert panel.labels.suggestion.points.shape == (1, 3)
    first = panel.labels.suggestion.points.copy()
    panel.labels.clicks_suggest_skip.cb_hook(panel.labels.clicks_suggest_skip)
    assert panel.message.startswith("Skipped that suggestion (1 skipped). The clicks explain the magenta marker least")
    assert len(panel.session.suggestions.dismissed) == 1 and not np.allclose(panel.labels.suggestion.points, first)

    panel.labels.clicks_suggest_view.cb_hook(panel.labels.clicks_suggest_view)
    ranking = panel.session.suggestions.least_explained_view(scene_outputs.cameras, 96)
    assert panel.message.startswith(f"At training view {ranking.index}, the one the clicks explain least")
    position = scene_outputs.cameras.camera_to_worlds[ranking.index, :3, 3].numpy() * VISER_NERFSTUDIO_SCALE_RATIO
    np.testing.assert_allclose(panel.browser.camera.position, position)
    assert panel.view_index.value == ranking.index
    np.testing.assert_allclose(panel.labels.suggestion.points[0], ranking.suggestion.marker, atol=1e-6)
    assert panel.labels.suggestion.size == pytest.approx(ranking.suggestion.marker_size)
    panel.labels.click_undo.cb_hook(panel.labels.click_undo)
    assert panel.labels.suggestion.points.shape == (0, 3), "a change of the labels clears the old suggestion"


def test_recolor_moves_the_clicked_colour_towards_the_target_and_reset_is_exact(session_and_camera):
    session, camera = session_and_camera
    head = session.model.field.rgb_head
    original = (head.weight.detach().clone(), head.bias.detach().clone())
    before = session.model.get_outputs_for_camera(camera)["rgb"]
    session.settings.recolor_strength = 0.5
    session.recolor(ray_at(camera, 20, 20), (1.0, 0.0, 0.0))
    after = session.model.get_outputs_for_camera(camera)["rgb"]
    target = torch.tensor([1.0, 0.0, 0.0])
    assert (after[20, 20] - target).norm() < (before[20, 20] - target).norm()
    assert torch.equal(head.weight, original[0]) and torch.equal(head.bias, original[1]), "the head is never edited"
    session.reset_recolor()
    torch.testing.assert_close(session.model.get_outputs_for_camera(camera)["rgb"], before)


def test_recolor_through_the_probe_equals_rendering_with_the_perturbed_head(session_and_camera):
    """The render-time recolouring (head inputs of one pass) is the render of the head ``W + ΔW``."""
    session, camera = session_and_camera
    session.recolor(ray_at(camera, 20, 20), (1.0, 0.0, 0.0))
    recolored = session.model.get_outputs_for_camera(camera)["rgb"]
    delta = session.recolor_delta
    session.reset_recolor()
    head = session.model.field.rgb_head
    with torch.no_grad():
        head.weight += delta[:, : head.weight.shape[1]]
    torch.testing.assert_close(session.model.get_outputs_for_camera(camera)["rgb"], recolored, atol=1e-5, rtol=1e-5)


def test_export_writes_masks_for_every_training_view_and_a_ply(session_and_camera, scene_outputs, tmp_path):
    session, camera = session_and_camera
    session.selection.select(ray_at(camera, 18, 24))
    session.settings.threshold = 0.5
    folder = tmp_path / "export"
    masks, points = export_selection(session.selection, scene_outputs, folder)
    written = sorted((folder / "masks").glob("*.png"))
    assert [m.stem for m in written] == sorted(p.stem for p in scene_outputs.image_filenames) and masks == len(written)
    first = np.asarray(Image.open(folder / "masks" / f"{scene_outputs.image_filenames[0].stem}.png"))
    assert first.shape == (int(camera.height), int(camera.width)) and first[18, 24] == 255
    from plyfile import PlyData

    vertex = PlyData.read(str(folder / "selection.ply"))["vertex"]
    assert len(vertex) == points >= int((first > 0).sum())
