"""JacobiNeRF's propagation: a pixel takes the label of the click whose head perturbation moves it most.

Responses of all clicks come from one render per view (:mod:`.probe`); the dense setting selects representative
clicks by Jacobian similarity on the source view and aggregates their responses with the protocol's MLP.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Dict

import torch
from torch import Tensor

from jacobinerf_ns.propagation.probe import RESPONSES, Probe, pixel_jacobians, render_responses
from jacobinerf_ns.propagation.protocol import (
    FittedPropagation,
    PropagationProtocol,
    PropagationViews,
    all_pixels,
    choose_clicks,
    click_decoders,
)

if TYPE_CHECKING:
    from jacobinerf_ns.model import JacobiNerfModel


def abs_dot(descriptors: Tensor, clicks: Tensor) -> Tensor:
    """Jacobian similarity ``|⟨J_p, J_k⟩|`` (σ does not change the argmax)."""
    return (descriptors @ clicks.T).abs()


def fit_jacobian_propagation(
    model: JacobiNerfModel,
    views: PropagationViews,
    setting: str,
    protocol: PropagationProtocol,
    generator: torch.Generator,
) -> FittedPropagation:
    """JacobiNeRF: responses of the clicks' Jacobians (2D and 3D), from one render per view."""
    height, width = views.source_labels.shape

    def descriptors() -> Tensor:  # (H·W, D): every source pixel's Jacobian (dense selection only)
        return pixel_jacobians(model, views.source_camera, all_pixels(height, width)).flatten(1)

    pixels, click_labels = choose_clicks(views, setting, protocol, generator, descriptors, abs_dot)
    probe = Probe(pixel_jacobians(model, views.source_camera, pixels), sigma=protocol.sigma, mode=protocol.mode)

    def responses(camera) -> Dict[str, Tensor]:
        outputs = render_responses(model, camera, probe)
        return {space: outputs[key].cpu() for space, key in RESPONSES.items()}

    source_scores = partial(responses, views.source_camera)
    decoders = click_decoders(
        setting, click_labels, tuple(RESPONSES), source_scores, views.source_labels, protocol, generator
    )
    return FittedPropagation(pixels, click_labels, lambda target: responses(views.target_cameras[target]), decoders)
