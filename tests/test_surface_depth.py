"""Where a ray's surface is read (surface_depth.py): the depth at a quantile of the accumulated weight, against
nerfstudio's median renderer and a plain loop, and the model's ``depth`` output reading it; how much of the ray's
weight lies there (its surface share), against a plain loop, and the model's eval output of it."""

from __future__ import annotations

import math

import pytest
import torch

from jacobinerf_ns.surface_depth import (
    SURFACE_SHARE,
    SURFACE_WINDOW,
    QuantileDepthRenderer,
    quantile_depth,
    surface_share,
)
from tests.helpers import build_tiny_model, random_ray_bundle


def random_samples(rays: int = 64, samples: int = 24, seed: int = 0):
    """Rays' samples with increasing random spacing and weights whose sums fall on both sides of 0.5 and 1."""
    from nerfstudio.cameras.rays import Frustums, RaySamples

    generator = torch.Generator().manual_seed(seed)
    bins = torch.cumsum(torch.rand(rays, samples + 1, generator=generator) + 0.01, dim=-1)
    weights = torch.rand(rays, samples, generator=generator) ** 4
    weights = weights / weights.sum(dim=-1, keepdim=True) * torch.rand(rays, 1, generator=generator) * 1.2
    frustums = Frustums(
        origins=torch.zeros(rays, samples, 3),
        directions=torch.ones(rays, samples, 3),
        starts=bins[:, :-1, None],
        ends=bins[:, 1:, None],
        pixel_area=torch.ones(rays, samples, 1),
    )
    return weights[..., None], RaySamples(frustums=frustums)


def test_the_median_is_nerfstudios_median_depth():
    from nerfstudio.model_components.renderers import DepthRenderer

    weights, samples = random_samples()
    median = DepthRenderer(method="median")(weights=weights, ray_samples=samples)
    assert torch.equal(QuantileDepthRenderer(0.5)(weights=weights, ray_samples=samples), median)


@pytest.mark.parametrize("quantile", [0.1, 0.4, 0.9])
def test_the_quantile_depth_is_the_first_sample_whose_accumulation_reaches_it(quantile):
    weights, samples = random_samples(seed=1)
    steps = ((samples.frustums.starts + samples.frustums.ends) / 2)[..., 0]
    expected = []
    for ray_weights, ray_steps in zip(weights[..., 0].tolist(), steps.tolist()):
        total, found = 0.0, ray_steps[-1]  # never reached: the last sample
        for weight, step in zip(ray_weights, ray_steps):
            total += weight
            if total >= quantile:
                found = step
                break
        expected.append([found])
    assert any(row[0] != steps[i, -1] for i, row in enumerate(expected)), "some rays reach the quantile"
    assert any(row[0] == steps[i, -1] for i, row in enumerate(expected)), "and some do not"
    depth = quantile_depth(weights[..., 0], steps, quantile)
    torch.testing.assert_close(depth, torch.tensor(expected), rtol=1e-6, atol=1e-6)


def test_a_density_rise_puts_the_quantile_ln_one_over_one_minus_q_over_sigma_behind_it():
    """Constant density σ from ``t_0`` on: the weights are ``σ exp(−σ (t − t_0))``, whose q-quantile lies
    ``ln(1 / (1 − q)) / σ`` behind ``t_0`` (the module's docstring)."""
    t0, sigma, spacing = 1.0, 20.0, 1e-4
    bins = torch.arange(0.5, 2.0, spacing, dtype=torch.float64)
    starts, ends = bins[:-1], bins[1:]
    density = torch.where(starts >= t0, sigma, 0.0)
    alpha = 1 - torch.exp(-density * spacing)
    transmittance = torch.exp(-torch.cumsum(density * spacing, dim=0) + density * spacing)
    weights = (alpha * transmittance)[None]
    for quantile in (0.25, 0.4, 0.5):
        depth = float(quantile_depth(weights, ((starts + ends) / 2)[None], quantile))
        assert depth == pytest.approx(t0 + math.log(1 / (1 - quantile)) / sigma, abs=2 * spacing)


def test_the_models_depth_output_is_read_at_its_surface_quantile():
    rays = random_ray_bundle(32)
    outputs = {}
    for quantile in (0.5, 0.3):
        model = build_tiny_model(surface_quantile=quantile).eval()
        assert isinstance(model.renderer_depth, QuantileDepthRenderer) and model.renderer_depth.quantile == quantile
        with torch.no_grad():
            outputs[quantile] = model(rays)
    torch.testing.assert_close(outputs[0.3]["rgb"], outputs[0.5]["rgb"])  # the same field
    assert (outputs[0.3]["depth"] <= outputs[0.5]["depth"]).all()
    assert (outputs[0.3]["depth"] < outputs[0.5]["depth"]).any()


def test_the_default_quantile_is_the_median_where_the_depth_loss_trained_the_run():
    from jacobinerf_ns.model_config import SCENE_UNITS_PER_POSE_UNIT

    with_depth = {SCENE_UNITS_PER_POSE_UNIT: 1.0}  # the metadata of a scene with depth maps
    assert build_tiny_model(metadata=with_depth).renderer_depth.quantile == 0.5
    assert build_tiny_model().renderer_depth.quantile == 0.4  # no depth maps
    assert build_tiny_model(metadata=with_depth, depth_loss_mult=0.0).renderer_depth.quantile == 0.4  # loss off
    assert build_tiny_model(metadata=with_depth, surface_quantile=0.3).renderer_depth.quantile == 0.3


@pytest.mark.parametrize("quantile", [0.0, 0.6])
def test_the_surface_quantile_is_validated(quantile):
    from jacobinerf_ns.errors import JacobiNerfError
    from jacobinerf_ns.model_config import JacobiNerfModelConfig

    with pytest.raises(JacobiNerfError, match="--pipeline.model.surface-quantile.*got"):
        JacobiNerfModelConfig(surface_quantile=quantile).validate()


def test_the_surface_share_is_the_weight_of_the_samples_that_meet_the_window_over_all_of_it():
    weights, samples = random_samples(seed=2)
    weights = weights[..., 0]
    starts, ends = samples.frustums.starts[..., 0], samples.frustums.ends[..., 0]
    depth = quantile_depth(weights, (starts + ends) / 2, 0.4)
    expected = []
    for ray in range(len(weights)):
        m = float(depth[ray])
        low, high = m * (1 - SURFACE_WINDOW), m * (1 + SURFACE_WINDOW)
        at = sum(float(w) for w, a, b in zip(weights[ray], starts[ray], ends[ray]) if b > low and a < high)
        expected.append([at / float(weights[ray].sum())])
    shares = surface_share(weights, starts, ends, depth)
    torch.testing.assert_close(shares, torch.tensor(expected), rtol=1e-5, atol=1e-6)
    assert 0.0 < float(shares.min()) and float(shares.max()) <= 1.0 + 1e-6


def test_a_ray_that_stops_its_light_at_one_depth_has_share_one_and_one_split_in_two_has_its_parts():
    """Weight 0.3 at distance 2 and 0.3 at 6 (a half-transparent wall over a far shell): 0.5 at either depth; all of
    it at 2: 1, however little of the light the ray stops (opacity 0.3 alone)."""
    starts = torch.tensor([[1.0, 1.95, 3.0, 5.95, 7.0]])
    ends = torch.tensor([[1.95, 2.05, 5.95, 6.05, 8.0]])
    split = torch.tensor([[0.0, 0.3, 0.0, 0.3, 0.0]])
    sharp = torch.tensor([[0.0, 0.3, 0.0, 0.0, 0.0]])
    for depth, share in ((2.0, 0.5), (6.0, 0.5)):
        assert float(surface_share(split, starts, ends, torch.tensor([[depth]]))) == pytest.approx(share)
    assert float(surface_share(sharp, starts, ends, torch.tensor([[2.0]]))) == pytest.approx(1.0)
    assert float(surface_share(torch.zeros_like(split), starts, ends, torch.tensor([[2.0]]))) == 0.0


def test_the_models_eval_outputs_give_each_rays_surface_share_at_its_depth():
    """The model's eval pass gives ``surface_share`` at its ``depth``, as :func:`surface_share` reads it from the same
    pass's final samples; a training pass does not compute it."""
    rays = random_ray_bundle(32)
    model = build_tiny_model().eval()
    with torch.no_grad():
        with model.field.recording() as captured:
            outputs = model(rays)
    ray_samples, field_outputs = captured[-1]
    from nerfstudio.field_components.field_heads import FieldHeadNames

    weights = ray_samples.get_weights(field_outputs[FieldHeadNames.DENSITY])[..., 0]
    starts, ends = ray_samples.frustums.starts[..., 0], ray_samples.frustums.ends[..., 0]
    torch.testing.assert_close(outputs[SURFACE_SHARE], surface_share(weights, starts, ends, outputs["depth"]))
    assert outputs[SURFACE_SHARE].shape == outputs["depth"].shape
    assert SURFACE_SHARE not in model.train()(rays)
