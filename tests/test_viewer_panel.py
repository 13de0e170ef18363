"""The viewer: the session driven in plain Python (select, paint, recolor, export), and the panel's wiring."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from nerfstudio.viewer.viewer_elements import ViewerClick
from PIL import Image

from jacobinerf_ns.propagation import RESPONSES
from jacobinerf_ns.viewer.decoration import LABELS, RESPONSE, SELECTION
from jacobinerf_ns.viewer.export import export_selection
from jacobinerf_ns.viewer.panel import JacobiNerfPanel, click_ray
from jacobinerf_ns.viewer.session import ViewerSession
from tests.helpers import build_tiny_model


def ray_at(camera, y: int, x: int):
    """The ray through pixel (y, x) as the viewer sends it (a click)."""
    rays = camera.generate_rays(camera_indices=0, keep_shape=True)
    return click_ray(ViewerClick(tuple(rays.origins[y, x].tolist()), tuple(rays.directions[y, x].tolist()), (0, 0)))


@pytest.fixture()
def scene_outputs(sample_scene):
    from jacobinerf_ns.dataparsers.nerfstudio_labelled import LabelledNerfstudioDataParserConfig

    return LabelledNerfstudioDataParserConfig(data=sample_scene).setup().get_dataparser_outputs("train")


@pytest.fixture()
def session_and_camera(scene_outputs):
    model = build_tiny_model(average_init_density=1.0)
    model.eval()
    return ViewerSession(model), scene_outputs.cameras[0:1]


def test_panel_elements_are_found_by_the_viewer_and_drive_the_session(scene_outputs):
    from nerfstudio.viewer.utils import parse_object
    from nerfstudio.viewer.viewer_elements import ViewerControl, ViewerElement

    model = build_tiny_model(average_init_density=1.0)
    pipeline = torch.nn.Module()  # nerfstudio's viewer walks the pipeline's attributes
    pipeline.model = model
    pipeline.datamanager = SimpleNamespace(train_dataparser_outputs=scene_outputs)
    pipeline.jacobinerf = JacobiNerfPanel(pipeline)
    names = [path for path, _ in parse_object(pipeline, ViewerElement, "Custom Elements")]
    assert "Custom Elements/jacobinerf/select" in names and "Custom Elements/jacobinerf/recolor_strength" in names
    assert len(parse_object(pipeline, ViewerControl, "Custom Elements")) == 1
    panel = pipeline.jacobinerf
    panel.threshold.value = 0.25
    panel.threshold.cb_hook(panel.threshold)
    assert panel.session.threshold == 0.25
    panel.on_select(ray_at(scene_outputs.cameras[0:1], 18, 24))
    assert model.probe is not None and panel.session.selection is not None
    panel.reported(lambda: 1 / 0)()
    assert panel.status.value.startswith("Error: ZeroDivisionError")


def test_select_then_render_gives_response_and_selection_outputs(session_and_camera):
    session, camera = session_and_camera
    session.select(ray_at(camera, 18, 24))
    assert session.selection is not None
    outputs = session.model.get_outputs_for_camera(camera)
    height, width = int(camera.height), int(camera.width)
    assert outputs[RESPONSE].shape == (height, width, 1) and outputs[SELECTION].shape == (height, width, 3)
    assert not any(key in outputs for key in RESPONSES.values()), "raw K-channel responses must not reach the viewer"
    assert outputs[RESPONSE][18, 24, 0] == pytest.approx(1.0, rel=0.05), "the clicked pixel responds like itself"
    session.threshold = 0.0
    session.publish()
    everything = session.model.get_outputs_for_camera(camera)[SELECTION]
    session.threshold = 1e9
    session.publish()
    nothing = session.model.get_outputs_for_camera(camera)[SELECTION]
    torch.testing.assert_close(nothing, outputs["rgb"])
    assert not torch.allclose(everything, outputs["rgb"])


def test_click_into_empty_space_is_reported(session_and_camera):
    _, camera = session_and_camera
    empty = build_tiny_model(average_init_density=1e-9)  # a field with (almost) no density anywhere
    empty.eval()
    session = ViewerSession(empty)
    message = session.select(ray_at(camera, 18, 24))
    assert session.selection is None
    assert "No surface" in message
    assert empty.probe is None


def test_label_painting_undo_and_clear(session_and_camera):
    session, camera = session_and_camera
    for name, (y, x) in (("floor", (34, 24)), ("wall", (3, 3)), ("wall", (5, 40))):
        session.add_label(ray_at(camera, y, x), name)
    assert session.label_names() == ["floor", "wall"]
    labels = session.model.get_outputs_for_camera(camera)[LABELS]
    assert labels.shape == (int(camera.height), int(camera.width), 3)
    session.undo()
    assert len(session.label_clicks) == 2
    session.clear()
    assert session.model.probe is None and LABELS not in session.model.get_outputs_for_camera(camera)


def test_recolor_moves_the_clicked_colour_towards_the_target_and_reset_is_exact(session_and_camera):
    session, camera = session_and_camera
    head = session.model.field.rgb_head
    original = (head.weight.detach().clone(), head.bias.detach().clone())
    before = session.model.get_outputs_for_camera(camera)["rgb"]
    session.recolor_strength = 0.5
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
    session.select(ray_at(camera, 18, 24))
    session.threshold = 0.5
    folder = tmp_path / "export"
    masks, points = export_selection(session, scene_outputs, folder)
    written = sorted((folder / "masks").glob("*.png"))
    assert [m.stem for m in written] == sorted(p.stem for p in scene_outputs.image_filenames) and masks == len(written)
    first = np.asarray(Image.open(folder / "masks" / f"{scene_outputs.image_filenames[0].stem}.png"))
    assert first.shape == (int(camera.height), int(camera.width)) and first[18, 24] == 255
    from plyfile import PlyData

    vertex = PlyData.read(str(folder / "selection.ply"))["vertex"]
    assert len(vertex) == points >= int((first > 0).sum())
