"""Closed-form Jacobians against torch.autograd, in float64, on random tensors and through the real model."""

from __future__ import annotations

import pytest
import torch

from jacobinerf_ns import jacobians
from tests.helpers import build_tiny_model, random_ray_bundle


def random_head(rays=5, samples=7, features=6, seed=0):
    generator = torch.Generator().manual_seed(seed)
    weights = torch.rand(rays, samples, 1, generator=generator, dtype=torch.float64) / samples
    h = torch.rand(rays, samples, features, generator=generator, dtype=torch.float64)
    weight = torch.randn(3, features, generator=generator, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, generator=generator, dtype=torch.float64, requires_grad=True)
    return weights, h, weight, bias


def render(weights, colors, background):
    """nerfstudio's RGBRenderer arithmetic: Σ w c + (1 − Σ w) · background."""
    accumulation = weights.sum(dim=-2)
    background_color = (
        colors[..., -1, :] if background == "last_sample" else torch.tensor([0.2, 0.5, 0.9], dtype=colors.dtype)
    )
    return (weights * colors).sum(dim=-2) + (1 - accumulation) * background_color


@pytest.mark.parametrize("background", ["last_sample", "constant"])
@pytest.mark.parametrize("shape_bias", [False, True])
def test_ray_jacobian_matches_autograd(background, shape_bias):
    weights, h, weight, bias = random_head()
    colors = jacobians.head_colors(h, weight, bias)
    gray = render(weights, colors, background).mean(dim=-1)
    closed = jacobians.ray_jacobian(jacobians.effective_weights(weights, background), colors, h, shape_bias)
    for ray in range(gray.shape[0]):
        grad_weight, grad_bias = torch.autograd.grad(gray[ray], (weight, bias), retain_graph=True)
        expected = torch.cat([grad_weight, grad_bias[:, None]], dim=1) if shape_bias else grad_weight
        torch.testing.assert_close(closed[ray], expected, rtol=1e-10, atol=1e-12)


def test_background_matters_only_for_last_sample():
    weights, h, weight, bias = random_head()
    colors = jacobians.head_colors(h, weight, bias)
    constant = jacobians.ray_jacobian(jacobians.effective_weights(weights, "constant"), colors, h)
    last = jacobians.ray_jacobian(jacobians.effective_weights(weights, "last_sample"), colors, h)
    assert not torch.allclose(constant, last), "the last-sample background depends on the head and must change J"


def test_point_and_channel_jacobians_match_autograd():
    weights, h, weight, bias = random_head()
    colors = jacobians.head_colors(h, weight, bias)
    point = jacobians.point_jacobian(colors, h)
    gray_points = colors.mean(dim=-1)
    for ray, sample in [(0, 0), (2, 3), (4, 6)]:
        (grad,) = torch.autograd.grad(gray_points[ray, sample], weight, retain_graph=True)
        torch.testing.assert_close(point[ray, sample], grad)
    rendered = render(weights, colors, "constant")
    for channel in range(3):
        closed = jacobians.channel_jacobian(weights, colors, h, channel)
        (grad,) = torch.autograd.grad(rendered[1, channel], weight, retain_graph=True)
        torch.testing.assert_close(closed[1], grad)


def test_model_jacobians_match_autograd_through_the_renderer():
    """Through nerfacto's sampler and renderer (last_sample background): per-ray autograd of the rendered gray value."""
    model = build_tiny_model().double()
    model.eval()
    bundle = random_ray_bundle(12, dtype=torch.float64)
    outputs, head = model.get_outputs_with_head_inputs(bundle)
    closed = jacobians.ray_jacobian(head.weights, head.rgb, head.features)
    gray = outputs["rgb"].mean(dim=-1)
    assert gray.dtype == torch.float64
    for ray in range(len(gray)):
        (grad,) = torch.autograd.grad(gray[ray], model.field.rgb_head.weight, retain_graph=True)
        torch.testing.assert_close(closed[ray], grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("space", [0, 1])
def test_linear_responses_are_the_first_order_of_exact_ones(space):
    weights, h, weight, bias = random_head(rays=9)
    weight, bias = weight.detach(), bias.detach()
    colors = jacobians.head_colors(h, weight, bias)
    sources = jacobians.ray_jacobian(weights, colors, h)[:3]
    linear = jacobians.linear_responses(weights, colors, h, sources)[space]
    errors = []
    for sigma in (1e-2, 1e-3):
        exact = jacobians.perturbed_gray_difference(weights, h, weight, bias, sigma * sources)[space] / sigma
        errors.append((exact - linear).abs().max().item())
    assert errors[0] < 1e-2 * linear.abs().max().item()
    assert errors[1] < errors[0] / 5, f"error must shrink ~linearly with sigma: {errors}"


def test_linear_point_responses_match_explicit_point_jacobians():
    weights, h, weight, bias = random_head(rays=4)
    colors = jacobians.head_colors(h, weight.detach(), bias.detach())
    sources = torch.randn(2, 3, h.shape[-1], dtype=torch.float64)
    explicit = (weights * torch.einsum("rncf,kcf->rnk", jacobians.point_jacobian(colors, h), sources).abs()).sum(dim=1)
    torch.testing.assert_close(jacobians.linear_responses(weights, colors, h, sources)[1], explicit)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (and tinycudann for the tcnn trunk)")
def test_tcnn_model_jacobians_match_autograd():
    pytest.importorskip("tinycudann")
    model = build_tiny_model(implementation="tcnn").cuda()
    model.eval()
    bundle = random_ray_bundle(8).to("cuda")
    outputs, head = model.get_outputs_with_head_inputs(bundle)
    closed = jacobians.ray_jacobian(head.weights.float(), head.rgb.float(), head.features.float())
    gray = outputs["rgb"].float().mean(dim=-1)
    for ray in range(len(gray)):
        (grad,) = torch.autograd.grad(gray[ray], model.field.rgb_head.weight, retain_graph=True)
        torch.testing.assert_close(closed[ray], grad, rtol=1e-4, atol=1e-6)


def test_with_non_negative_factors_3d_responses_are_the_2d_ones():
    """ReLU features, sigmoid slopes and weights ≥ 0: every ⟨j_i, J_k⟩ ≥ 0, so Σ_i w_i |⟨j_i, J_k⟩| = |⟨J_p, J_k⟩|
    (the fast path) — checked against the explicit point Jacobians."""
    weights, h, weight, bias = random_head(rays=6)
    h = h.relu()
    colors = jacobians.head_colors(h, weight.detach(), bias.detach())
    sources = jacobians.ray_jacobian(weights, colors, h)[:3]
    ray, composited = jacobians.linear_responses(weights, colors, h, sources)
    explicit = (weights * torch.einsum("rncf,kcf->rnk", jacobians.point_jacobian(colors, h), sources).abs()).sum(dim=1)
    torch.testing.assert_close(composited, explicit)
    torch.testing.assert_close(ray, explicit)


def test_rounding_sized_negatives_keep_the_fast_path():
    """Weights and Jacobians of a real render hold float32 rounding (~1e-7 below 0): still one product, and still the
    explicit point responses up to that rounding; genuinely signed features take the per-sample path."""
    weights, h, weight, bias = random_head(rays=6)
    h = h.relu()
    colors = jacobians.head_colors(h, weight.detach(), bias.detach())
    sources = jacobians.ray_jacobian(weights, colors, h)[:3]
    weights = weights.clone()
    weights.view(-1)[0] = -1e-7  # one weight just below zero, as α·T rounds
    ray, composited = jacobians.linear_responses(weights, colors, h, sources)
    assert composited is ray, "the fast path: the 3D responses are the 2D ones"
    explicit = (weights * torch.einsum("rncf,kcf->rnk", jacobians.point_jacobian(colors, h), sources).abs()).sum(dim=1)
    torch.testing.assert_close(composited, explicit)
    signed = h - 0.5 * h.max()
    ray, composited = jacobians.linear_responses(weights, colors, signed, sources)
    assert composited is not ray
