"""Evaluation: the paper's label-propagation metrics for every method, and the Jacobian-cosine gap shaping opens.

The protocol's types live in :mod:`jacobinerf_ns.propagation.protocol`; ``PropagationProtocol`` is also importable
from here, because saved ``config.yml`` files name it ``jacobinerf_ns.evaluation.PropagationProtocol``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Dict, Sequence

import torch
from torch import Tensor

from jacobinerf_ns.metrics import confusion_matrix, label_metrics
from jacobinerf_ns.propagation.dino import fit_dino_2d, fit_dino_field
from jacobinerf_ns.propagation.jacobian import fit_jacobian_propagation
from jacobinerf_ns.propagation.probe import pixel_jacobians
from jacobinerf_ns.propagation.protocol import (
    FittedPropagation,
    PropagationMethod,
    PropagationProtocol,
    PropagationViews,
)
from jacobinerf_ns.propagation.semantic_head import fit_semantic_head
from jacobinerf_ns.shaping import abs_cosine

if TYPE_CHECKING:
    from nerfstudio.cameras.cameras import Cameras

    from jacobinerf_ns.model import JacobiNerfModel

__all__ = ["METHODS", "PropagationMethod", "PropagationProtocol", "evaluate_propagation", "jacobian_cosine_gap"]

METHODS: Dict[str, Callable[..., FittedPropagation]] = {
    "jacobian": fit_jacobian_propagation,
    "semantic-head": fit_semantic_head,
    "dino-2d": fit_dino_2d,
    "dino-field": fit_dino_field,
}
"""``--propagation.method`` → its fitter ``(model, views, setting, protocol, generator) -> FittedPropagation``."""


@torch.no_grad()
def jacobian_cosine_gap(
    model: JacobiNerfModel, cameras: Cameras, label_maps: Sequence[Tensor], pixels_per_view: int = 512, seed: int = 0
) -> Dict[str, float]:
    """Mean ``|cos(J_p, J_q)|`` over pixel pairs of the same label vs of different labels (void excluded), per view,
    pooled.

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


def fit_propagation(
    model: JacobiNerfModel,
    views: PropagationViews,
    setting: str,
    protocol: PropagationProtocol,
    generator: torch.Generator,
) -> FittedPropagation:
    """``protocol.method`` fitted to the source view's labels for ``setting``."""
    if protocol.method not in METHODS:
        raise ValueError(f"Unknown propagation method {protocol.method!r}: choose {', '.join(METHODS)}.")
    return METHODS[protocol.method](model, views, setting, protocol, generator)


def evaluate_propagation(
    model: JacobiNerfModel, views: PropagationViews, protocol: PropagationProtocol, prefix: str = ""
) -> Dict[str, float]:
    """``{prefix}{setting}_{space}_{miou|class_avg_acc|total_acc}`` for label maps (void = 0) of source and targets."""
    generator = torch.Generator().manual_seed(protocol.seed)
    labels = sorted(set(torch.unique(views.source_labels).tolist()) - {0})
    num_labels = int(max([int(views.source_labels.max())] + [int(t.max()) for t in views.target_labels])) + 1
    results: Dict[str, float] = {}
    for setting in protocol.settings:
        fitted = fit_propagation(model, views, setting, protocol, generator)
        confusion: Dict[str, Tensor] = {}
        for target, truth in enumerate(views.target_labels):
            truth = truth.long()
            valid = torch.isin(truth, torch.tensor(labels))
            for space, predicted in fitted.predict(target).items():
                counts = confusion_matrix(predicted[valid], truth[valid], num_labels)
                confusion[space] = confusion.get(space, 0) + counts
        for space, counts in confusion.items():
            for metric, value in label_metrics(counts, labels).items():
                results[f"{prefix}{setting}_{space}_{metric}"] = value
    return results
