"""The paper's baselines (``jacobinerf_ns.propagation``): heads on the frozen field, DINO-feature propagation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from jacobinerf_ns.evaluation import evaluate_propagation, fit_propagation
from jacobinerf_ns.propagation.heads import fit_rendered_head, pixel_head_inputs, render_head
from jacobinerf_ns.propagation.protocol import PropagationProtocol
from jacobinerf_ns.propagation.rendering import eval_head_inputs
from tests.helpers import build_tiny_model, cameras_around_origin, label_views, metric_keys


@pytest.fixture(scope="module")
def model():
    return build_tiny_model(seed=3).eval()


def test_render_head_of_the_rgb_head_is_the_rendered_colour(model):
    camera = cameras_around_origin(1)
    rgb_head = nn.Sequential(model.field.rgb_head, nn.Sigmoid())  # the field's own colour head, per sample
    rendered = render_head(model, camera, rgb_head)
    with torch.no_grad():
        expected = model.get_outputs_for_camera(camera)["rgb"]
    assert rendered.shape == expected.shape == (6, 8, 3)
    torch.testing.assert_close(rendered, expected, atol=1e-5, rtol=1e-4)


def test_pixel_head_inputs_are_those_of_the_full_render_at_those_pixels(model):
    cameras = cameras_around_origin(3)
    indices = torch.tensor([[2, 0, 0], [1, 5, 7], [2, 3, 4]])
    weights, features = pixel_head_inputs(model, cameras, indices)
    for row, (camera, y, x) in enumerate(indices.tolist()):
        bundle = cameras[camera : camera + 1].generate_rays(camera_indices=0, keep_shape=True)[y : y + 1, x]
        _, head = eval_head_inputs(model, bundle)
        torch.testing.assert_close(weights[row], head.weights[0])
        torch.testing.assert_close(features[row], head.features[0])


def test_fit_rendered_head_recovers_a_teacher_head():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2048, 6, 8, generator=generator)
    weights = torch.softmax(torch.randn(2048, 6, 1, generator=generator), dim=1)
    torch.manual_seed(1)
    teacher = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    with torch.no_grad():
        targets = (weights * teacher(features)).sum(dim=1)
    start = F.mse_loss(torch.zeros_like(targets), targets).item()
    head = fit_rendered_head(weights, features, targets, 4, F.mse_loss, PropagationProtocol(head_steps=400), generator)
    with torch.no_grad():
        final = F.mse_loss((weights * head(features)).sum(dim=1), targets).item()
    assert final < 0.05 * start


def test_dino_2d_propagates_by_feature_similarity():
    protocol = PropagationProtocol(
        method="dino-2d", dense_rounds=2, dense_candidates=3, dense_mlp_steps=200, seeds=(0,)
    )
    noise = torch.Generator().manual_seed(0)

    def label_features(label):  # features that encode the label (at half resolution): propagation must be exact
        half = label[::2, ::2]
        return F.one_hot(half, 4).float() + 0.05 * torch.randn(*half.shape, 4, generator=noise)

    results = evaluate_propagation(None, {"": [label_views(label_features)]}, protocol)
    assert set(results) == metric_keys("", ("sparse", "dense"), "2d")
    assert (
        results["sparse_2d_miou"] > 0.8 and results["dense_2d_miou"] > 0.8
    )  # only bilinear upsampling at borders errs

    uninformative = evaluate_propagation(
        None, {"": [label_views(lambda label: torch.randn(6, 9, 4, generator=noise))]}, protocol
    )
    assert uninformative["sparse_2d_miou"] < results["sparse_2d_miou"] - 0.3


def test_baselines_report_what_they_need(model):
    views = label_views(lambda label: torch.zeros(6, 9, 4))
    views.image_features, views.train_cameras, views.train_images = None, views.source_camera, [views.source_image]
    for method in ("dino-2d", "dino-field"):
        with pytest.raises(ValueError, match="--propagation.dino-weights"):
            fit_propagation(model, views, "sparse", PropagationProtocol(method=method), torch.Generator())
    with pytest.raises(ValueError, match="choose jacobian"):
        fit_propagation(model, views, "sparse", PropagationProtocol(method="sam"), torch.Generator())  # type: ignore[arg-type]


def test_semantic_head_and_dino_field_run_on_a_field(model):
    """Plumbing on a random tiny field: the heads' metrics exist for their own space only (no quality claimed)."""
    protocol = PropagationProtocol(
        head_steps=20, head_rays=64, dense_rounds=1, dense_candidates=2, dense_mlp_steps=10, seeds=(0,)
    )
    views = label_views(lambda label: torch.randn(6, 9, 4))
    views.train_cameras, views.train_images = (
        cameras_around_origin(3, height=12, width=18),
        [Path(f"view{i}.png") for i in range(3)],
    )
    for method in ("semantic-head", "dino-field"):
        protocol.method = method
        results = evaluate_propagation(model, {"instance_": [views]}, protocol)
        assert set(results) == metric_keys("instance_", ("sparse", "dense"), "3d")
        assert all(0.0 <= value <= 1.0 for value in results.values())


def test_semantic_head_learns_the_sample_scene_from_clicks(trained_run):
    """On the trained sample scene the Semantic-NeRF-style head propagates sparse clicks far above chance."""
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, _, _ = eval_setup(trained_run / "config.yml", test_mode="test")
    pipeline.config.propagation = PropagationProtocol(
        method="semantic-head", settings=("sparse",), head_steps=300, seeds=(0,)
    )
    views = pipeline.propagation_views("semantics")
    results = evaluate_propagation(pipeline.model, {"": [views]}, pipeline.config.propagation)
    assert results["sparse_3d_miou"] > 0.4  # 7 classes; measured 0.64 (JacobiNeRF on the same clicks: 0.63)
