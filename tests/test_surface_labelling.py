"""Labelling by spreading over the surfaces (:mod:`jacobinerf_ns.propagation.surface_labelling`) on a random tiny
field: the protocol's ``jacobian-surface`` method and the frames' labels read from the graph (plumbing: no quality is
claimed on a random field; the sample scene's figures are in test_label_command)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from jacobinerf_ns.evaluation import evaluate_propagation
from jacobinerf_ns.propagation.labelling import ClickSurface, ResolvedClicks, confidence
from jacobinerf_ns.propagation.protocol import PropagationProtocol
from jacobinerf_ns.propagation.rendering import pixel_jacobians
from jacobinerf_ns.propagation.surface_graph import build_surface_graph
from jacobinerf_ns.propagation.surface_labelling import (
    SurfaceLabelling,
    render_nodes,
    surface_confidence,
    surface_passes,
)
from tests.helpers import build_tiny_model, cameras_around_origin, label_views, metric_keys


@pytest.fixture(scope="module")
def model():
    return build_tiny_model(seed=3).eval()


def test_jacobian_surface_runs_in_the_protocol(model):
    protocol = PropagationProtocol(method="jacobian-surface", dense_rounds=1, dense_candidates=2, seeds=(0,))
    protocol.validate(train_views=3)
    views = label_views(lambda label: torch.randn(6, 9, 4))
    views.train_cameras, views.train_images = cameras_around_origin(3, height=12, width=18), [Path("v.png")] * 3
    results = evaluate_propagation(model, {"instance_": [views]}, protocol)
    assert set(results) == metric_keys("instance_", ("sparse", "dense"), "3d")
    assert all(0.0 <= value <= 1.0 for value in results.values())


def test_a_frame_reads_the_spread_at_its_pixels(model):
    """Every node of the graph is a grid pixel of the frames; a frame labelled from it gives each pixel the class the
    nodes around its surface point carry, and a one-class click set labels every pixel that hits a surface."""
    cameras = cameras_around_origin(2, height=12, width=18)
    frames = [cameras[index : index + 1] for index in range(2)]
    points, jacobians, _ = render_nodes(model, frames, pixels_per_frame=12 * 18)
    bundle = frames[0].generate_rays(camera_indices=0, keep_shape=True)[3:4, 5]
    ((jacobian, point, *_),) = surface_passes(model, bundle)
    torch.testing.assert_close(jacobian, pixel_jacobians(model, frames[0], torch.tensor([[3, 5]])).flatten(1))
    clicks = ResolvedClicks(jacobian, (1,), 1, (), (ClickSurface("c", bundle.origins[0], point[0]),))
    graph = build_surface_graph(points.numpy(), jacobians.numpy())
    labels = SurfaceLabelling.spread(graph, clicks).label_frame(model, frames[1])
    assert labels.ids.shape == (12, 18)
    assert torch.equal(labels.ids == 1, labels.hit), "one class: every pixel that hits a surface gets it"


def test_over_the_surfaces_confidence_is_the_absolute_margin_so_a_weak_lone_class_reads_unsure():
    """Surface scores lie in [0, 1]: a class that wins alone with a low score (a pixel that barely resembles its
    clicks) reads unsure, where the ratio of the two best scores would read it certain."""
    scores = torch.tensor([[0.9, 0.0], [0.1, 0.0], [0.5, 0.4], [0.0, 0.0]])
    torch.testing.assert_close(surface_confidence(scores), torch.tensor([0.9, 0.1, 0.1, 0.0]))
    assert confidence(scores)[1] == 1.0, "the ratio reads the weak lone class as certain"
    torch.testing.assert_close(surface_confidence(scores[:, :1]), scores[:, 0])


def test_with_masks_a_pixel_whose_best_class_score_is_below_the_floor_stays_unlabelled(model):
    """With masks (one per frame), the pixels ``label_frame`` labels are exactly those that hit a surface and whose
    best class score reaches ``min_score``; without the floor every pixel that hits a surface is labelled."""
    cameras = cameras_around_origin(2, height=12, width=18)
    frames = [cameras[index : index + 1] for index in range(2)]
    masks = [torch.full((12, 18), view + 1) for view in range(2)]
    points, jacobians, node_masks = render_nodes(model, frames, pixels_per_frame=12 * 18, masks=masks)
    bundle = frames[0].generate_rays(camera_indices=0, keep_shape=True)[3:4, 5]
    ((jacobian, point, *_),) = surface_passes(model, bundle)
    clicks = ResolvedClicks(jacobian, (1,), 1, (), (ClickSurface("c", bundle.origins[0], point[0]),))
    graph = build_surface_graph(points.numpy(), jacobians.numpy(), masks=node_masks.numpy())
    unfloored = SurfaceLabelling.spread(graph, clicks, min_resemblance=0.0, min_score=0.0)
    frame = unfloored.frame_scores(model, frames[1])
    assert torch.equal(unfloored.label_frame(model, frames[1]).ids > 0, frame.hit)
    best = frame.scores.amax(dim=-1)
    floor = float(best[frame.hit].median())
    floored = SurfaceLabelling.spread(graph, clicks, min_resemblance=0.0, min_score=floor)
    labelled = floored.label_frame(model, frames[1]).ids > 0
    assert torch.equal(labelled, frame.hit & (best >= floor))
    assert 0 < int(labelled.sum()) < int(frame.hit.sum()), "the floor splits the frame's pixels"
