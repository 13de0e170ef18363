"""Perturbation responses of clicked pixels (paper §3.4): the math an eval render computes besides colour.

A :class:`Probe` holds the Jacobians ``J_k`` of K clicked pixels. Perturbing the head along ``σ J_k`` changes
target pixel p by ``R_k(p)``; p gets the label of ``argmax_k R_k(p)``:

* ``linear``: ``R_k(p) = σ |⟨J_p, J_k⟩|`` (2D) or ``σ Σ_i w_i |⟨j_i, J_k⟩|`` (3D);
* ``exact``: ``|g(p; θ + σ J_k) − g(p; θ)|`` (2D) or ``Σ_i w_i |g_i(θ + σ J_k) − g_i(θ)|`` (3D),
  evaluated on the cached trunk features of one render (K head evaluations, never K re-renders).

The model renders its probe's responses as outputs (:data:`RESPONSES`) in the same pass as the colour, so the viewer,
``ns-eval`` and the commands share one implementation (:func:`probe_responses`). A probe can also carry a head
perturbation applied to the rendered colour (recolouring) and a function that turns the outputs into what the viewer
shows. Renders that call the model are :mod:`jacobinerf_ns.propagation.rendering`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Dict, Literal, Optional, Sequence

import torch
from torch import Tensor

from jacobinerf_ns import jacobians
from jacobinerf_ns.jacobians import HeadInputs

if TYPE_CHECKING:
    from nerfstudio.cameras.cameras import Cameras

RESPONSES = {"2d": "responses_2d", "3d": "responses_3d"}
"""Model output keys: ``(H, W, K)`` 2D and 3D responses of the model's probe."""
JACOBIAN_NORM = "jacobian_norm"
"""Model output key: ``(H, W, 1)`` norm ``‖J_p‖`` of each pixel's ray Jacobian (rendered with any probe's responses)."""
SURFACE_SCORES = "surface_scores"
"""Model output key: ``(H, W, C)`` class scores a probe's ``surface`` reads for each pixel."""


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
    surface: Optional[Callable[[Tensor, Tensor], Tensor]] = None
    """Rays' flat Jacobians ``(R, D)`` and surface points ``(R, 3)`` (origin + depth · direction) → ``(R, C)`` class
    scores (labels spread over the surfaces: ``SurfaceLabelling.read_rays``), rendered as :data:`SURFACE_SCORES`."""


def probe_responses(
    head: HeadInputs, weight: Tensor, bias: Tensor, probe: Probe, shape_bias: bool
) -> Dict[str, Tensor]:
    """``{RESPONSES[space]: (R, K), JACOBIAN_NORM: (R, 1)}`` for the rays whose head inputs are ``head``."""
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


def assign_labels(responses: Tensor, click_labels: Sequence[int]) -> Tensor:
    """Label of the strongest-responding click per pixel: ``(H, W, K) -> (H, W)``."""
    labels = torch.as_tensor(list(click_labels), device=responses.device)
    return labels[responses.argmax(dim=-1)]
