"""Semantic-NeRF-style baseline: a rendered semantic head ``s: F → 128 → L`` on the colour features, trained with
cross-entropy on the source view's labelled pixels (sparse: the clicks; dense: ``head_rays`` random labelled
pixels). Space ``3d``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from jacobinerf_ns.propagation.heads import first_camera, fit_rendered_head, pixel_head_inputs, render_head
from jacobinerf_ns.propagation.protocol import FittedPropagation, PropagationProtocol, PropagationViews, sample_clicks

if TYPE_CHECKING:
    from jacobinerf_ns.model import JacobiNerfModel


def fit_semantic_head(
    model: JacobiNerfModel,
    views: PropagationViews,
    setting: str,
    protocol: PropagationProtocol,
    generator: torch.Generator,
) -> FittedPropagation:
    """Semantic-NeRF style: a rendered semantic head trained on the source view's labelled pixels."""
    labels = views.source_labels.long()
    if setting == "sparse":
        pixels, click_labels = sample_clicks(labels, protocol.clicks_per_class, generator)
    elif setting == "dense":
        labelled = torch.nonzero(labels > 0)
        pixels = labelled[torch.randperm(len(labelled), generator=generator)[: protocol.head_rays]]
        click_labels = labels[pixels[:, 0], pixels[:, 1]].tolist()
    else:
        raise ValueError(f"Unknown propagation setting {setting!r}: choose sparse or dense.")
    weights, features = pixel_head_inputs(model, views.source_camera, first_camera(pixels))
    num_labels = int(labels.max()) + 1
    head = fit_rendered_head(
        weights, features, torch.tensor(click_labels), num_labels, F.cross_entropy, protocol, generator
    )
    allowed = torch.full((num_labels,), float("-inf"))
    allowed[torch.tensor(sorted(set(click_labels)))] = 0.0  # predict only labels given on the source view

    def decode(logits: Tensor) -> Tensor:
        return (logits + allowed).argmax(dim=-1)

    return FittedPropagation(
        pixels,
        click_labels,
        lambda target: {"3d": render_head(model, views.target_cameras[target], head)},
        lambda: {"3d": decode},
    )
