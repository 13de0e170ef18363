"""Mutual-information shaping: the InfoNCE loss on Jacobian cosines and its adaptive positive threshold.

For B rays with Jacobians ``J`` (B×D) and a surrogate affinity ``a`` (B×B)::

    S_ij    = |cos(J_i, J_j)| / τ
    C_i     = { j : rays i and j are comparable }          (all rays; those of i's image for per-image masks)
    P_i     = { j ∈ C_i : a_ij > t } ∪ { i }                (the anchor is its own positive)
    L_MIG   = mean_i [ logsumexp_{j∈C_i} S_ij − logsumexp_{j∈P_i} S_ij ]   over anchors with ≥ 1 negative in C_i
    L_norm  = mean_i (1 − ‖J_i‖)²

``t`` adapts so that each anchor keeps between 5% and 15% positives (paper §6.2.1, original code). A pair outside
``C`` is neither positive nor negative: ids numbered per image say nothing about rays of two images (the same object
may carry another id there), so such pairs are left out rather than pushed apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class ShapingLosses:
    mi: Tensor
    norm: Tensor
    positive_counts: Tensor
    """Positives per anchor, the anchor itself excluded (drives the threshold)."""
    stats: Dict[str, Tensor]


def abs_cosine(jacobians: Tensor) -> Tensor:
    """``|cos(J_i, J_j)|`` for all pairs, ``(B, B)``."""
    unit = F.normalize(jacobians, dim=-1)
    return (unit @ unit.T).abs()


def mi_shaping_losses(
    jacobians: Tensor,
    affinity: Tensor,
    threshold: float,
    temperature: float = 1.0,
    comparable: Optional[Tensor] = None,
) -> ShapingLosses:
    """The vectorised InfoNCE + norm losses for one contrastive batch (no loop over rays or pairs); ``comparable``
    ``(B, B)`` bool, with a true diagonal, is ``C`` (default: every pair)."""
    batch = jacobians.shape[0]
    eye = torch.eye(batch, dtype=torch.bool, device=jacobians.device)
    if comparable is None:
        comparable = torch.ones_like(eye)
    cosine = abs_cosine(jacobians)
    logits = cosine / temperature
    positives = ((affinity > threshold) & comparable) | eye
    negatives = comparable & ~positives
    has_negative = negatives.any(dim=1)
    per_anchor = torch.logsumexp(logits.masked_fill(~comparable, float("-inf")), dim=1) - torch.logsumexp(
        logits.masked_fill(~positives, float("-inf")), dim=1
    )
    mi = per_anchor[has_negative].mean() if has_negative.any() else logits.sum() * 0.0
    norms = jacobians.norm(dim=-1)
    norm = ((1.0 - norms) ** 2).mean()
    with torch.no_grad():
        off_diagonal_positives = positives & ~eye
        positive_counts = off_diagonal_positives.sum(dim=1)
        stats = {
            "shaping/positive_ratio": off_diagonal_positives.sum() / (comparable & ~eye).sum().clamp(min=1),
            "shaping/cos_positive": _masked_mean(cosine, off_diagonal_positives),
            "shaping/cos_negative": _masked_mean(cosine, negatives),
            "shaping/jacobian_norm": norms.mean(),
        }
    return ShapingLosses(mi=mi, norm=norm, positive_counts=positive_counts, stats=stats)


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    return values[mask].mean() if mask.any() else torch.full((), float("nan"), device=values.device)


class AdaptiveThreshold(nn.Module):
    """The positive threshold ``t`` as persistent state (a buffer, so checkpoints save and restore it).

    Per anchor with fewer than ``int(low_ratio·B)`` positives, ``t −= step``; with more than
    ``int(high_ratio·B)``, ``t += step``; then ``t`` is clamped to ``[minimum, maximum]``.
    """

    def __init__(
        self,
        initial: float = 0.8,
        minimum: float = 0.5,
        maximum: float = 0.9,
        step: float = 1e-3,
        low_ratio: float = 0.05,
        high_ratio: float = 0.15,
    ) -> None:
        super().__init__()
        if not minimum <= initial <= maximum:
            raise ValueError(f"threshold initial value {initial} must lie in [{minimum}, {maximum}]")
        self.register_buffer("value", torch.tensor(float(initial)))
        self.bounds: Tuple[float, float] = (minimum, maximum)
        self.step, self.low_ratio, self.high_ratio = step, low_ratio, high_ratio

    def __float__(self) -> float:
        return float(self.value)

    @torch.no_grad()
    def update(self, positive_counts: Tensor) -> None:
        batch = positive_counts.numel()
        too_few = (positive_counts < int(self.low_ratio * batch)).sum()
        too_many = (positive_counts > int(self.high_ratio * batch)).sum()
        self.value.add_(self.step * (too_many - too_few).to(self.value)).clamp_(*self.bounds)
