"""Perturbation responses of clicked pixels (paper §3.4), computed inside the model's eval render.

A :class:`Probe` holds the Jacobians ``J_k`` of K clicked pixels. Perturbing the head along ``σ J_k`` changes
target pixel p by ``R_k(p)``; p gets the label of ``argmax_k R_k(p)``:

* ``linear``: ``R_k(p) = σ |⟨J_p, J_k⟩|`` (2D) or ``σ Σ_i w_i |⟨j_i, J_k⟩|`` (3D);
* ``exact``: ``|g(p; θ + σ J_k) − g(p; θ)|`` (2D) or ``Σ_i w_i |g_i(θ + σ J_k) − g_i(θ)|`` (3D),
  evaluated on the cached trunk features of one render (K head evaluations, never K re-renders).

The model renders a probe's responses as outputs (:data:`RESPONSES`) in the same pass as the colour, so the viewer,
``ns-eval`` and the commands share one implementation. A probe can also carry a head perturbation applied to the
rendered colour (recolouring) and a function that turns the outputs into what the viewer shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Dict, List, Literal, Optional, Sequence, Tuple

import torch
from torch import Tensor

from jacobinerf_ns import jacobians
from jacobinerf_ns.jacobians import HeadInputs

if TYPE_CHECKING:
    from nerfstudio.cameras.cameras import Cameras
    from nerfstudio.cameras.rays import RayBundle

    from jacobinerf_ns.model import JacobiNerfModel

RESPONSES = {"2d": "responses_2d", "3d": "responses_3d"}
"""Model output keys: ``(H, W, K)`` 2D and 3D responses of the active probe."""
JACOBIAN_NORM = "jacobian_norm"
"""Model output key: ``(H, W, 1)`` norm ``‖J_p‖`` of each pixel's ray Jacobian (rendered with any probe's responses)."""


@dataclass(frozen=True)
class Probe:
    """What an eval render computes besides colour: responses to K source Jacobians, and an optional recolouring."""

    sources: Optional[Tensor] = None
    """``(K, 3, F[+1])`` Jacobians of the clicked pixels (``None``: no responses)."""
    sigma: float = 0.1
    mode: Literal["linear", "exact"] = "linear"
    recolor: Optional[Tensor] = None
    """``(3, F[+1])`` head perturbation applied to the rendered colour (:func:`jacobians.recolored`)."""
    decorate: Optional[Callable[[dict, "Cameras"], dict]] = None
    """Applied to a whole render's outputs and its camera (the viewer turns responses into its outputs)."""


def probe_responses(
    head: HeadInputs, weight: Tensor, bias: Tensor, probe: Probe, shape_bias: bool
) -> Dict[str, Tensor]:
    """``{RESPONSES[space]: (R, K)}`` for the rays whose head inputs are ``head``."""
    sources = probe.sources.to(head.features)
    if probe.mode == "linear":
        ray, point = jacobians.linear_responses(head.weights, head.rgb, head.features, sources, shape_bias)
        ray, point = probe.sigma * ray, probe.sigma * point
    else:
        ray, point = jacobians.perturbed_gray_difference(
            head.weights, head.features, weight, bias, probe.sigma * sources
        )
    norm = jacobians.flatten(jacobians.ray_jacobian(head.weights, head.rgb, head.features, shape_bias)).norm(dim=-1)
    return {RESPONSES["2d"]: ray, RESPONSES["3d"]: point, JACOBIAN_NORM: norm[:, None]}


@torch.no_grad()
def eval_head_inputs(model: JacobiNerfModel, bundle: RayBundle) -> Tuple[dict, HeadInputs]:
    """Eval-mode (deterministic sampling) outputs and head inputs of a flat ray bundle."""
    was_training = model.training
    model.eval()
    try:
        return model.get_outputs_with_head_inputs(bundle.to(model.device))
    finally:
        model.train(was_training)


def ray_jacobians(model: JacobiNerfModel, bundle: RayBundle) -> Tuple[Tensor, dict, HeadInputs]:
    """Eval-mode ray Jacobians ``(R, 3, F[+1])`` of a flat ray bundle, with the outputs and head inputs of that pass."""
    outputs, head = eval_head_inputs(model, bundle)
    return jacobians.ray_jacobian(head.weights, head.rgb, head.features, model.config.shape_bias), outputs, head


def pixel_jacobians(model: JacobiNerfModel, camera: Cameras, pixels: Tensor) -> Tensor:
    """Ray Jacobians ``(K, 3, F[+1])`` of ``pixels`` ``(K, 2)`` = (y, x) of a one-camera ``camera`` (chunked)."""
    bundle = camera.generate_rays(camera_indices=0, keep_shape=True)[pixels[:, 0].long(), pixels[:, 1].long()]
    chunk = model.config.eval_num_rays_per_chunk
    return torch.cat([ray_jacobians(model, bundle[start : start + chunk])[0] for start in range(0, len(bundle), chunk)])


def relative_responses(responses: Tensor, self_responses: Tensor) -> Tensor:
    """Responses divided by each source pixel's response to its own perturbation: 1 ≈ "like the clicked pixel"."""
    return responses / self_responses.clamp_min(1e-12)


def render_responses(model: JacobiNerfModel, camera: Cameras, probe: Probe) -> dict:
    """One eval render of ``camera`` with ``probe``: rgb, depth, accumulation and the ``(H, W, K)`` responses."""
    was_training = model.training
    model.eval()
    try:
        return model.get_outputs_for_camera(camera, probe=probe)
    finally:
        model.train(was_training)


def assign_labels(responses: Tensor, click_labels: Sequence[int]) -> Tensor:
    """Label of the strongest-responding click per pixel: ``(H, W, K) -> (H, W)``."""
    labels = torch.as_tensor(list(click_labels), device=responses.device)
    return labels[responses.argmax(dim=-1)]


def propagate(
    model: JacobiNerfModel,
    source_camera: Cameras,
    pixels: Tensor,
    click_labels: Sequence[int],
    target_cameras: Sequence[Cameras],
    sigma: float = 0.1,
    mode: Literal["linear", "exact"] = "linear",
    space: Literal["2d", "3d"] = "3d",
) -> List[Tensor]:
    """Clicks ``pixels`` ``(K, 2)`` (y, x) with ``click_labels`` on ``source_camera`` → ``(H, W)`` label map per target.

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
