"""The paper's baselines (``jacobinerf_ns.propagation``): heads on the frozen field, DINO-feature propagation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from nerfstudio.cameras.cameras import Cameras
from torch import nn

from jacobinerf_ns.evaluation import evaluate_propagation, fit_propagation
from jacobinerf_ns.propagation.heads import fit_rendered_head, pixel_head_inputs, render_head
from jacobinerf_ns.propagation.probe import eval_head_inputs
from jacobinerf_ns.propagation.protocol import PropagationProtocol, PropagationViews
from tests.helpers import build_tiny_model


def cameras_around_origin(count: int, height: int = 6, width: int = 8) -> Cameras:
    """``count`` pinhole cameras 0.6 in front of the origin (looking along -z), shifted sideways."""
    poses = torch.eye(4)[:3].repeat(count, 1, 1)
    poses[:, 0, 3] = torch.linspace(-0.2, 0.2, count)
    poses[:, 2, 3] = 0.6
    return Cameras(camera_to_worlds=poses, fx=6.0, fy=6.0, cx=width / 2, cy=height / 2, width=width, height=height)


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


def label_views(feature_of) -> PropagationViews:
    """Source and two targets, labels = vertical stripes (1, 2, 3) shifted per view; features from ``feature_of``."""
    cameras = cameras_around_origin(3, height=12, width=18)
    maps = []
    for shift in (0, 2, 4):
        label = torch.ones(12, 18, dtype=torch.long)
        label[:, 6 + shift :] = 2
        label[:, 12 + shift :] = 3
        label[:2] = 0  # void rows
        maps.append(label)
    names = [Path(f"view{i}.png") for i in range(3)]
    by_name = dict(zip(names, maps))
    return PropagationViews(
        source_camera=cameras[0:1],
        source_labels=maps[0],
        target_cameras=[cameras[1:2], cameras[2:3]],
        target_labels=maps[1:],
        source_image=names[0],
        target_images=names[1:],
        image_features=lambda files: torch.stack([feature_of(by_name[f]) for f in files]),
    )


def test_dino_2d_propagates_by_feature_similarity():
    protocol = PropagationProtocol(method="dino-2d", dense_rounds=2, dense_candidates=3, dense_mlp_steps=200)
    noise = torch.Generator().manual_seed(0)

    def label_features(label):  # features that encode the label (at half resolution): propagation must be exact
        half = label[::2, ::2]
        return F.one_hot(half, 4).float() + 0.05 * torch.randn(*half.shape, 4, generator=noise)

    results = evaluate_propagation(None, label_views(label_features), protocol)
    assert set(results) == {f"{s}_2d_{m}" for s in ("sparse", "dense") for m in ("miou", "class_avg_acc", "total_acc")}
    assert (
        results["sparse_2d_miou"] > 0.8 and results["dense_2d_miou"] > 0.8
    )  # only bilinear upsampling at borders errs

    uninformative = evaluate_propagation(
        None, label_views(lambda label: torch.randn(6, 9, 4, generator=noise)), protocol
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
    protocol = PropagationProtocol(head_steps=20, head_rays=64, dense_rounds=1, dense_candidates=2, dense_mlp_steps=10)
    views = label_views(lambda label: torch.randn(6, 9, 4))
    views.train_cameras, views.train_images = (
        cameras_around_origin(3, height=12, width=18),
        [Path(f"view{i}.png") for i in range(3)],
    )
    for method in ("semantic-head", "dino-field"):
        protocol.method = method
        results = evaluate_propagation(model, views, protocol, prefix="instance_")
        assert set(results) == {
            f"instance_{s}_3d_{m}" for s in ("sparse", "dense") for m in ("miou", "class_avg_acc", "total_acc")
        }
        assert all(0.0 <= value <= 1.0 for value in results.values())


def test_semantic_head_learns_the_sample_scene_from_clicks(trained_run):
    """On the trained sample scene the Semantic-NeRF-style head propagates sparse clicks far above chance."""
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, _, _ = eval_setup(trained_run / "config.yml", test_mode="test")
    pipeline.config.propagation = PropagationProtocol(method="semantic-head", settings=("sparse",), head_steps=300)
    views = pipeline.propagation_views("semantics")
    results = evaluate_propagation(pipeline.model, views, pipeline.config.propagation)
    assert results["sparse_3d_miou"] > 0.4  # 7 classes; measured 0.64 (JacobiNeRF on the same clicks: 0.63)
