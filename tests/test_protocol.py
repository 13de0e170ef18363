"""The protocol with several draws (source views × seeds): per-draw values, one render per target, keys, options."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from jacobinerf_ns.evaluation import PropagationEvaluation, evaluate_propagation
from jacobinerf_ns.propagation.protocol import PropagationProtocol
from jacobinerf_ns.propagation.rendering import render_responses
from tests.helpers import build_tiny_model, label_views, metric_keys

FAST = dict(dense_rounds=1, dense_candidates=2, dense_mlp_steps=20)


@pytest.fixture(scope="module")
def model():
    return build_tiny_model(seed=3, average_init_density=1.0).eval()


def tasks(views):
    return {"": [label_views(source_index=v) for v in views], "instance_": [label_views(source_index=v) for v in views]}


def test_every_draw_equals_a_single_draw_protocol_with_the_same_clicks(model):
    protocol = PropagationProtocol(source_views=(0, 1), seeds=(3, 4), **FAST)
    results = evaluate_propagation(model, tasks((0, 1)), protocol)
    draws = [f"view{v}_seed{s}" for v in (0, 1) for s in (3, 4)]
    for prefix in ("", "instance_"):
        assert metric_keys(prefix, ("sparse", "dense"), "2d", draws) <= set(results)
        assert metric_keys(prefix, ("sparse", "dense"), "3d", draws) <= set(results)
    for view in (0, 1):
        for seed in (3, 4):
            single = evaluate_propagation(
                model, tasks((view,)), PropagationProtocol(source_views=(view,), seeds=(seed,), **FAST)
            )
            for key, value in single.items():
                if key.endswith(f"_view{view}_seed{seed}"):
                    assert results[key] == pytest.approx(value, abs=1e-12), key
    values = torch.tensor([results[f"sparse_3d_miou_{draw}"] for draw in draws], dtype=torch.float64)
    assert results["sparse_3d_miou"] == pytest.approx(float(values.mean()))
    assert results["sparse_3d_miou_std"] == pytest.approx(float(values.std()))
    assert all(isinstance(value, float) for value in results.values()), "tensorboard logs the dict: floats only"


def test_the_jacobian_method_renders_every_target_once_for_all_draws(model, monkeypatch):
    rendered = []
    original = type(model).get_outputs_for_camera

    def counting(self, camera, *args, **kwargs):
        rendered.append(float(camera.camera_to_worlds[0, 0, 3]))
        return original(self, camera, *args, **kwargs)

    monkeypatch.setattr(type(model), "get_outputs_for_camera", counting)
    views = label_views()
    targets = [float(camera.camera_to_worlds[0, 0, 3]) for camera in views.target_cameras]
    protocol = PropagationProtocol(source_views=(0,), seeds=(0, 1, 2), **FAST)
    evaluate_propagation(model, {"": [label_views()], "instance_": [label_views()]}, protocol)
    # 2 kinds × 3 seeds × 2 settings = 12 fits: one render of the source view, one of each target
    assert sorted(rendered) == sorted([float(views.source_camera.camera_to_worlds[0, 0, 3]), *targets])


def test_a_render_made_elsewhere_is_scored_without_rendering_again(model, monkeypatch):
    """ns-eval's photometric render carries the draws' responses (the pipeline passes it to ``score``)."""
    protocol = PropagationProtocol(source_views=(0,), seeds=(0, 1), settings=("sparse",))
    reference = evaluate_propagation(model, {"": [label_views()]}, protocol)
    evaluation = PropagationEvaluation(model, {"": [label_views()]}, protocol)
    probe = evaluation.target_probe()
    outputs = [render_responses(model, camera, probe) for camera in label_views().target_cameras]
    monkeypatch.setattr(type(model), "get_outputs_for_camera", lambda *args, **kwargs: pytest.fail("rendered again"))
    for target, render in enumerate(outputs):
        evaluation.score(target, render)
    assert evaluation.metrics() == reference


def test_draws_default_to_three_seeds_from_seed_and_saved_configs_keep_their_source_view():
    assert PropagationProtocol().draw_views() == (0,) and PropagationProtocol().draw_seeds() == (0, 1, 2)
    assert PropagationProtocol(seed=5, source_view=2).draw_seeds() == (5, 6, 7)
    assert PropagationProtocol(seed=5, seeds=(9,)).draw_seeds() == (9,)
    assert PropagationProtocol(source_view=2, source_views=(1, 4)).draw_views() == (1, 4)
    fixture = Path(__file__).parent / "fixtures" / "config_0.1.0.yml"
    saved = yaml.load(fixture.read_text(), Loader=yaml.Loader).pipeline.propagation
    assert saved.draw_views() == (0,) and saved.draw_seeds() == (0, 1, 2)
