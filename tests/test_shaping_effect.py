"""What shaping does on the sample scene (trained here, CPU): Jacobian cosines and entity selection.

Reference (the field right before shaping) and shaped field come from the same run, so the only difference is
the shaping phase. The thresholds are what a user relies on; the figures measured on several machine seeds are in
docs/testing.md.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jacobinerf_ns.runs import cosine_gap, eval_outputs, instance_names, label_maps, load_step
from tests.helpers import TRAINED_SHAPING_START, TRAINED_STEPS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fields(trained_run):
    return {
        "before": load_step(trained_run, TRAINED_SHAPING_START - 1),
        "after": load_step(trained_run, TRAINED_STEPS - 1),
    }


def test_shaping_opens_a_jacobian_cosine_gap(fields):
    before, after = cosine_gap(fields["before"]), cosine_gap(fields["after"])
    assert after["cos_gap"] > 0.5, after
    assert after["cos_gap"] > before["cos_gap"] + 0.3, (before, after)
    assert after["cos_different"] < 0.3 < after["cos_same"]


def selection_iou(pipeline, scene, instance_name: str) -> float:
    """Click the pixel nearest the centre of an instance in the training view that shows most of it; IoU of the
    viewer's selection by the Jacobians (*Label propagation: nearest*) with the instance's mask, pooled over the
    held-out views and a third of the other training views (every third, all around the scene)."""
    from jacobinerf_ns.viewer.session import ViewerSession

    instance = instance_names(scene).index(instance_name)
    train_outputs, eval_split = pipeline.datamanager.train_dataparser_outputs, eval_outputs(pipeline)
    train_labels = label_maps(train_outputs, "instances")
    view = int((train_labels == instance).flatten(1).sum(dim=1).argmax())
    where = torch.nonzero(train_labels[view] == instance).float()
    y, x = where[(where - where.mean(dim=0)).norm(dim=-1).argmin()].long().tolist()
    rays = train_outputs.cameras[view : view + 1].generate_rays(camera_indices=0, keep_shape=True)
    # no dataset: the selection by the Jacobians alone (|cos| > the panel's threshold, σ 0.1, 3D), what shaping shapes
    session = ViewerSession(pipeline.model)
    session.selection.select(rays[y : y + 1, x])
    if session.selection.clicked is None:  # the click hits no surface: the viewer selects nothing
        return 0.0
    targets = [
        (train_outputs.cameras[i : i + 1], labels) for i, labels in enumerate(train_labels) if i % 3 == (view + 1) % 3
    ]
    targets += [(eval_split.cameras[i : i + 1], labels) for i, labels in enumerate(label_maps(eval_split, "instances"))]
    intersection = union = 0
    for camera, labels in targets:
        selected, _ = session.selection.mask(camera)
        truth = labels == instance
        intersection += (selected.cpu() & truth).sum().item()
        union += (selected.cpu() | truth).sum().item()
    return intersection / union


@pytest.fixture(scope="module")
def selection_ious(fields, sample_scene) -> dict:
    """``{"before"|"after": {instance name: selection IoU}}`` for every instance the training views show."""
    names = instance_names(sample_scene)
    shown = torch.unique(label_maps(fields["after"].datamanager.train_dataparser_outputs, "instances")).tolist()
    names = [names[i] for i in shown if i > 0]
    assert set(names) == set(SHOWN_INSTANCES), names
    ious = {when: {name: selection_iou(pipeline, sample_scene, name) for name in names}
            for when, pipeline in fields.items()}  # fmt: skip
    print("selection IoU", ious)  # the figures the thresholds were calibrated on
    return ious


SHOWN_INSTANCES = ("floor", "walls", "ball_red", "ball_blue", "box_green", "box_yellow", "vase")
"""The sample scene's instances its views show (its cameras look down: none sees the ceiling)."""
SMALL_OBJECT = (
    "One click does not select this object reliably yet: after shaping, IoU 0.03-0.72 (blue ball), 0.18-0.95 (yellow "
    "box), 0.32-0.96 (vase) over six runs with today's depth weights (machine seeds 42, 1 and 2, twice each), where "
    "the floor, the walls, the red ball and the green box reach 0.65-0.99 on each; with the off-surface loss on (its "
    "default since 2026-12-05) 0.45-0.88, 0.18-0.21 and 0.51-0.85 on seeds 1 and 2, each above 0.5 on seed 42 "
    "(docs/testing.md). This is the "
    "selection by the Jacobians alone; the viewer's default "
    "selection spreads over the run's masks and surfaces and selects each of them whole (test_viewer_panel)."
)
NOT_SELECTED_YET = {
    "ball_blue": SMALL_OBJECT,
    "box_yellow": SMALL_OBJECT,
    "vase": SMALL_OBJECT,
}
"""Instance → why one click does not select it yet after shaping (the case is an expected failure)."""


def instance_cases():
    for name in SHOWN_INSTANCES:
        reason = NOT_SELECTED_YET.get(name)
        yield pytest.param(name, marks=[pytest.mark.xfail(reason=reason, strict=False)] if reason else [], id=name)


@pytest.mark.parametrize("name", instance_cases())
def test_one_click_selects_each_entity_after_shaping(selection_ious, name):
    """One click on an instance selects it in every other view: IoU > 0.5."""
    assert selection_ious["after"][name] > 0.5, selection_ious


def test_clicking_an_entity_selects_it_clearly_better_after_shaping(selection_ious):
    """Shaping is what makes a click select its entity: the mean IoU over the instances rises by > 0.2 (with a
    short recipe a distinctly coloured object can already be selected before shaping, so per instance it need not)."""
    before, after = (np.mean(list(selection_ious[when].values())) for when in ("before", "after"))
    assert after > before + 0.2, selection_ious


SPARSE_MIOU_FLOOR = {"sparse_3d_miou": 0.4, "instance_sparse_3d_miou": 0.45}
"""What the shared run's sparse label propagation must exceed (mean over the draws), calibrated on machine seeds 42,
1 and 2 of today's recipe (semantic 0.47-0.62, instance 0.52-0.79: docs/testing.md); recalibrate when the recipe
changes."""


def test_the_trained_run_propagates_labels_from_one_click_per_class(fields):
    """The paper's sparse setting on the shaped run, as the demo measures it: one click per class (or instance) on a
    training view, labels propagated to the held-out views; mean over 3 training views × 3 seeds."""
    from jacobinerf_ns.demo import propagation_protocol

    pipeline = fields["after"]
    pipeline.config.propagation = propagation_protocol()
    metrics = pipeline.propagation_metrics()
    print("sparse propagation", {key: metrics[key] for key in SPARSE_MIOU_FLOOR})
    for key, floor in SPARSE_MIOU_FLOOR.items():
        assert metrics[key] > floor, (key, metrics[key], metrics[f"{key}_std"])
