"""Evaluation: the paper's label-propagation metrics and the Jacobian-cosine gap that shaping should open."""

from __future__ import annotations

from typing import Dict, Sequence

import torch
from torch import Tensor

from jacobinerf_ns.propagation import pixel_jacobians
from jacobinerf_ns.shaping import abs_cosine


def all_pixels(height: int, width: int) -> Tensor:
    """``(H·W, 2)`` (y, x) in row-major order."""
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return torch.stack([ys.flatten(), xs.flatten()], dim=-1)


@torch.no_grad()
def jacobian_cosine_gap(model, cameras, label_maps: Sequence[Tensor], pixels_per_view: int = 512, seed: int = 0) -> Dict[str, float]:
    """Mean ``|cos(J_p, J_q)|`` over pixel pairs of the same label vs of different labels (void excluded), per view, pooled.

    A shaped field has a clear gap (same ≫ different); an unshaped one has little.
    """
    generator = torch.Generator().manual_seed(seed)
    same, different = [], []
    for index, label_map in enumerate(label_maps):
        labelled = torch.nonzero(label_map > 0)
        picks = labelled[torch.randperm(len(labelled), generator=generator)[:pixels_per_view]]
        cosine = abs_cosine(pixel_jacobians(model, cameras[index : index + 1], picks).flatten(1).float())
        labels = label_map[picks[:, 0], picks[:, 1]].to(cosine.device)
        is_same = labels[:, None] == labels[None, :]
        off_diagonal = ~torch.eye(len(labels), dtype=torch.bool, device=cosine.device)
        same.append(cosine[is_same & off_diagonal])
        different.append(cosine[~is_same])
    same_mean, different_mean = torch.cat(same).mean().item(), torch.cat(different).mean().item()
    return {"cos_same": same_mean, "cos_different": different_mean, "cos_gap": same_mean - different_mean}
