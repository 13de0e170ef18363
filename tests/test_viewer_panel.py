"""The JacobiNeRF viewer panel, driven through its callbacks (no browser): select, paint, recolor, export."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from nerfstudio.viewer.viewer_elements import ViewerClick
from PIL import Image

from jacobinerf_ns.propagation import RESPONSES
from jacobinerf_ns.viewer import LABELS, RESPONSE, SELECTION
from tests.conftest import build_tiny_model


def click_at(camera, y: int, x: int) -> ViewerClick:
    rays = camera.generate_rays(camera_indices=0, keep_shape=True)
    return ViewerClick(tuple(rays.origins[y, x].tolist()), tuple(rays.directions[y, x].tolist()), (x / 10, y / 10))


@pytest.fixture()
def panel_and_camera(sample_scene):
    from jacobinerf_ns.dataparsers.nerfstudio_labelled import LabelledNerfstudioDataParserConfig

    outputs = LabelledNerfstudioDataParserConfig(data=sample_scene).setup().get_dataparser_outputs("train")
    model = build_tiny_model(average_init_density=1.0)
    model.eval()
    return model.jacobinerf, outputs.cameras[0:1], outputs


def test_panel_elements_are_found_by_the_viewer(panel_and_camera):
    from nerfstudio.viewer.utils import parse_object
    from nerfstudio.viewer.viewer_elements import ViewerControl, ViewerElement

    panel, _, _ = panel_and_camera
    names = [path for path, _ in parse_object(panel._model, ViewerElement, "Custom Elements")]
    assert "Custom Elements/jacobinerf/select" in names and "Custom Elements/jacobinerf/recolor_strength" in names
    assert len(parse_object(panel._model, ViewerControl, "Custom Elements")) == 1


def test_select_then_render_gives_response_and_selection_outputs(panel_and_camera):
    panel, camera, _ = panel_and_camera
    panel.on_select_click(click_at(camera, 18, 24))
    assert panel.selection is not None
    outputs = panel._model.get_outputs_for_camera(camera)
    height, width = int(camera.height), int(camera.width)
    assert outputs[RESPONSE].shape == (height, width, 1) and outputs[SELECTION].shape == (height, width, 3)
    assert not any(key in outputs for key in RESPONSES.values()), "raw K-channel responses must not reach the viewer"
    assert outputs[RESPONSE][18, 24, 0] == pytest.approx(1.0, rel=0.05), "the clicked pixel responds like itself"
    panel.threshold.value = 0.0
    everything = panel._model.get_outputs_for_camera(camera)[SELECTION]
    panel.threshold.value = 1e9
    nothing = panel._model.get_outputs_for_camera(camera)[SELECTION]
    torch.testing.assert_close(nothing, outputs["rgb"])
    assert not torch.allclose(everything, outputs["rgb"])


def test_click_into_empty_space_is_reported(panel_and_camera):
    _, camera, _ = panel_and_camera
    empty = build_tiny_model(average_init_density=1e-9)  # a field with (almost) no density anywhere
    empty.eval()
    panel = empty.jacobinerf
    panel.on_select_click(click_at(camera, 18, 24))
    assert panel.selection is None
    assert "No surface" in panel.status.value
    assert panel._model.probe is None


def test_label_painting_undo_and_clear(panel_and_camera):
    panel, camera, _ = panel_and_camera
    for name, (y, x) in (("floor", (34, 24)), ("wall", (3, 3)), ("wall", (5, 40))):
        panel.label_name.value = name
        panel.on_label_click(click_at(camera, y, x))
    assert panel.label_names() == ["floor", "wall"]
    labels = panel._model.get_outputs_for_camera(camera)[LABELS]
    assert labels.shape == (int(camera.height), int(camera.width), 3)
    panel.undo()
    assert len(panel.label_clicks) == 2
    panel.clear()
    assert panel._model.probe is None and LABELS not in panel._model.get_outputs_for_camera(camera)


def test_recolor_moves_the_clicked_colour_towards_the_target_and_reset_is_exact(panel_and_camera):
    panel, camera, _ = panel_and_camera
    head = panel._model.field.rgb_head
    original = (head.weight.detach().clone(), head.bias.detach().clone())
    before = panel._model.get_outputs_for_camera(camera)["rgb"][20, 20]
    panel.recolor_to.value = (255, 0, 0)
    panel.recolor_strength.value = 0.5
    panel.on_recolor_click(click_at(camera, 20, 20))
    after = panel._model.get_outputs_for_camera(camera)["rgb"][20, 20]
    target = torch.tensor([1.0, 0.0, 0.0])
    assert (after - target).norm() < (before - target).norm()
    panel.reset_recolor()
    assert torch.equal(head.weight, original[0]) and torch.equal(head.bias, original[1])


def test_export_writes_masks_for_every_training_view_and_a_ply(panel_and_camera, tmp_path):
    panel, camera, outputs = panel_and_camera

    class Pipeline:
        class datamanager:
            train_dataparser_outputs = outputs

    panel.attach_pipeline(Pipeline)
    panel.on_select_click(click_at(camera, 18, 24))
    panel.threshold.value = 0.5
    folder = panel.export_selection(tmp_path / "export")
    masks = sorted((folder / "masks").glob("*.png"))
    assert [m.stem for m in masks] == sorted(p.stem for p in outputs.image_filenames)
    first = np.asarray(Image.open(folder / "masks" / f"{outputs.image_filenames[0].stem}.png"))
    assert first.shape == (int(camera.height), int(camera.width)) and first[18, 24] == 255
    header = (folder / "selection.ply").read_bytes().split(b"end_header\n")[0].decode()
    count = int(header.split("element vertex ")[1].split("\n")[0])
    assert count >= int((first > 0).sum())
