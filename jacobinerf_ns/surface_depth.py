"""Where a ray's surface is read: the distance at which its accumulated weight reaches a quantile ``q``.

For samples with midpoints ``t_1 < … < t_S`` and weights ``w_i``, the depth is ``t_k`` with ``k`` the first index
where ``Σ_{i ≤ k} w_i ≥ q``. ``q = 0.5`` is nerfacto's median depth (nerfstudio's ``DepthRenderer("median")``).

A surface the field learns as a rise of density ``σ`` at ``t_0`` puts every weight at or behind the rise,
``w(t) = σ exp(−σ (t − t_0))``, so the ``q``-quantile lies ``ln(1 / (1 − q)) / σ`` behind the surface: ``0.69 / σ``
for the median, ``0.51 / σ`` for ``q = 0.4``. On a sharp surface every quantile is on it; on a soft one (a textureless
floor trained without depth) the median lands inside the layer, and a lower quantile reads it nearer the surface
(docs/labelling.md#the-depth-a-ray-is-read-at).

How much of the ray's light stops at that depth is its **surface share**: the weight of the samples within a window of
``±s m`` around the depth ``m``, over all of its weight, ``Σ_{i: [t_i⁻, t_i⁺] ∩ [m(1−s), m(1+s)] ≠ ∅} w_i / Σ_i w_i``.
A ray that renders one surface (opaque or half-transparent) stops most of its light there, share near 1; one whose
weight is spread along it (a soft layer, part on a wall and part on a far shell behind it) stops little of it at any one
depth (docs/labelling.md#one-surface).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from nerfstudio.cameras.rays import RaySamples

SURFACE_SHARE = "surface_share"
"""The model's eval output ``(..., 1)``: each ray's :func:`surface_share` at its rendered depth."""
SURFACE_WINDOW = 0.03
"""``s`` of the surface share: 3% of the distance, the depth tolerance the point cloud's multi-view check uses
(:data:`jacobinerf_ns.depth_consistency.DEPTH_TOLERANCE`): the precision the cloud aims at."""
QUANTILE_WITH_DEPTH = 0.5
"""Default ``q`` of a run the depth loss trained: DS-NeRF's loss pulls each ray's weights towards a Gaussian centred on
the captured surface, whose median is the surface."""
QUANTILE_WITHOUT_DEPTH = 0.4
"""Default ``q`` of a run trained from colour alone: nearer the density rise than the median; lower quantiles read the
faint density in front of a soft surface, where little of the ray's weight lies, which the one-surface rule checks
(docs/labelling.md#the-depth-a-ray-is-read-at)."""


def quantile_depth(weights: Tensor, steps: Tensor, quantile: float) -> Tensor:
    """``(..., 1)`` the ``(..., S)`` ``steps`` (sample midpoints, increasing) at the first sample whose cumulative
    ``weights`` ``(..., S)`` reach ``quantile``; the last sample where they never do."""
    cumulative = torch.cumsum(weights, dim=-1)
    target = torch.full((*weights.shape[:-1], 1), quantile, dtype=cumulative.dtype, device=weights.device)
    index = torch.searchsorted(cumulative, target, side="left").clamp(max=steps.shape[-1] - 1)
    return torch.gather(steps, dim=-1, index=index)


def surface_share(
    weights: Tensor, starts: Tensor, ends: Tensor, depth: Tensor, window: float = SURFACE_WINDOW
) -> Tensor:
    """``(..., 1)`` each ray's surface share at ``depth`` ``(..., 1)``: the share of its ``weights`` ``(..., S)`` whose
    sample intervals ``[starts, ends]`` ``(..., S)`` meet ``[depth (1 − window), depth (1 + window)]``; 0 for a ray
    without weight."""
    inside = (ends > depth * (1.0 - window)) & (starts < depth * (1.0 + window))
    total = weights.sum(dim=-1, keepdim=True)
    return (weights * inside).sum(dim=-1, keepdim=True) / total.clamp(min=torch.finfo(weights.dtype).tiny)


class QuantileDepthRenderer(torch.nn.Module):
    """nerfstudio's depth renderer interface (``renderer_depth(weights=, ray_samples=)``) reading
    :func:`quantile_depth` at ``quantile``; unpacked samples only, as nerfacto's median renderer."""

    def __init__(self, quantile: float) -> None:
        super().__init__()
        self.quantile = quantile

    def forward(self, weights: Tensor, ray_samples: RaySamples) -> Tensor:
        """``(..., S, 1)`` weights of ``ray_samples`` → ``(..., 1)`` depth."""
        steps = (ray_samples.frustums.starts + ray_samples.frustums.ends)[..., 0] / 2
        return quantile_depth(weights[..., 0], steps, self.quantile)
