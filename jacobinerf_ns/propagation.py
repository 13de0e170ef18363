"""Perturbation responses and label propagation (paper §3.4): clicks in, label maps out.

A :class:`Probe` holds the Jacobians ``J_k`` of K clicked source pixels. Perturbing the head along
``σ J_k`` changes target pixel p by ``R_k(p)``; p gets the label of ``argmax_k R_k(p)``:

* ``linear``: ``R_k(p) = σ |⟨J_p, J_k⟩|`` (2D) or ``σ Σ_i w_i |⟨j_i, J_k⟩|`` (3D);
* ``exact``: ``|g(p; θ + σ J_k) − g(p; θ)|`` (2D) or ``Σ_i w_i |g_i(θ + σ J_k) − g_i(θ)|`` (3D),
  evaluated on the cached trunk features of one render (K head evaluations, never K re-renders).

Responses are computed inside the model's chunked eval render (``JacobiNerfModel.probe``), so the
viewer, ``ns-eval`` and these functions share one implementation.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Dict, Iterator, List, Literal, Sequence

import torch
from torch import Tensor

from jacobinerf_ns import jacobians

RESPONSES = {"2d": "responses_2d", "3d": "responses_3d"}
"""Model output keys: ``(H, W, K)`` 2D and 3D responses of the active probe."""


@dataclass
class Probe:
    """K source Jacobians ``(K, 3, F[+1])`` and how their responses are computed (2D and 3D come together)."""

    sources: Tensor
    sigma: float = 0.1
    mode: Literal["linear", "exact"] = "linear"


def probe_responses(head, weight: Tensor, bias: Tensor, probe: Probe, shape_bias: bool) -> Dict[str, Tensor]:
    """``{RESPONSES[space]: (R, K)}`` for the rays whose :class:`~jacobinerf_ns.model.HeadInputs` are ``head``."""
    sources = probe.sources.to(head.features)
    if probe.mode == "linear":
        ray, point = jacobians.linear_responses(head.weights, head.rgb, head.features, sources, shape_bias)
        ray, point = probe.sigma * ray, probe.sigma * point
    else:
        ray, point = jacobians.perturbed_gray_difference(
            head.weights, head.features, weight, bias, probe.sigma * sources
        )
    return {RESPONSES["2d"]: ray, RESPONSES["3d"]: point}


@torch.no_grad()
def eval_head_inputs(model, bundle):
    """Eval-mode (deterministic sampling) outputs and :class:`~jacobinerf_ns.model.HeadInputs` of a flat ray bundle."""
    was_training = model.training
    model.eval()
    try:
        return model.get_outputs_with_head_inputs(bundle.to(model.device))
    finally:
        model.train(was_training)


def ray_jacobians(model, bundle):
    """Eval-mode ray Jacobians ``(R, 3, F[+1])`` of a flat ray bundle, with the outputs and head inputs of the same pass."""
    outputs, head = eval_head_inputs(model, bundle)
    return jacobians.ray_jacobian(head.weights, head.rgb, head.features, model.config.shape_bias), outputs, head


def pixel_jacobians(model, camera, pixels: Tensor) -> Tensor:
    """Ray Jacobians ``(K, 3, F[+1])`` of ``pixels`` ``(K, 2)`` = (y, x) of a one-camera ``camera`` (chunked)."""
    bundle = camera.generate_rays(camera_indices=0, keep_shape=True)[pixels[:, 0].long(), pixels[:, 1].long()]
    chunk = model.config.eval_num_rays_per_chunk
    return torch.cat([ray_jacobians(model, bundle[start : start + chunk])[0] for start in range(0, len(bundle), chunk)])


def relative_responses(responses: Tensor, self_responses: Tensor) -> Tensor:
    """Responses divided by each source pixel's response to its own perturbation: 1 ≈ "like the clicked pixel"."""
    return responses / self_responses.clamp_min(1e-12)


@contextlib.contextmanager
def probing(model, probe: Probe) -> Iterator[None]:
    """Within the block, the model's eval renders also output ``RESPONSES``."""
    previous, model.probe = model.probe, probe
    try:
        yield
    finally:
        model.probe = previous


def render_responses(model, camera, probe: Probe) -> dict:
    """One eval render of ``camera`` with its 2D and 3D responses ``(H, W, K)`` (and rgb, depth, accumulation)."""
    was_training = model.training
    model.eval()
    try:
        with probing(model, probe):
            return model.get_outputs_for_camera(camera)
    finally:
        model.train(was_training)


def assign_labels(responses: Tensor, click_labels: Sequence[int]) -> Tensor:
    """Label of the strongest-responding click per pixel: ``(H, W, K) -> (H, W)``."""
    labels = torch.as_tensor(list(click_labels), device=responses.device)
    return labels[responses.argmax(dim=-1)]


def sample_clicks(label_map: Tensor, clicks_per_label: int, generator: torch.Generator, ignore: Sequence[int] = (0,)):
    """Uniformly random pixels ``(K, 2)`` (y, x) and their labels: ``clicks_per_label`` per label present."""
    pixels, labels = [], []
    for label in torch.unique(label_map).tolist():
        if label in ignore:
            continue
        where = torch.nonzero(label_map == label)
        picks = torch.randint(len(where), (clicks_per_label,), generator=generator)
        pixels.append(where[picks])
        labels += [label] * clicks_per_label
    if not pixels:
        raise ValueError("The source label map has no labelled (non-void) pixel to click.")
    return torch.cat(pixels), labels


def propagate(
    model,
    source_camera,
    pixels: Tensor,
    click_labels: Sequence[int],
    target_cameras,
    sigma: float = 0.1,
    mode: Literal["linear", "exact"] = "linear",
    space: Literal["2d", "3d"] = "3d",
) -> List[Tensor]:
    """Clicks ``pixels`` ``(K, 2)`` (y, x) with ``click_labels`` on ``source_camera`` → an ``(H, W)`` label map per target camera.

    Example::

        _, pipeline, _, _ = eval_setup(Path("outputs/.../config.yml"), test_mode="test")
        cameras = pipeline.datamanager.eval_dataset.cameras
        maps = propagate(pipeline.model, pipeline.datamanager.train_dataset.cameras[0:1],
                         torch.tensor([[40, 60], [10, 5]]), [3, 7], [cameras[i : i + 1] for i in range(len(cameras))])
    """
    probe = Probe(sources=pixel_jacobians(model, source_camera, pixels), sigma=sigma, mode=mode)
    return [
        assign_labels(render_responses(model, camera, probe)[RESPONSES[space]], click_labels)
        for camera in target_cameras
    ]
