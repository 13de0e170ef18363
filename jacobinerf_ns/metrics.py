"""Label-propagation metrics: one confusion matrix pooled over pixels, then mIoU and accuracies (pure functions)."""

from __future__ import annotations

from typing import Dict, Sequence

import torch
from torch import Tensor


def confusion_matrix(predicted: Tensor, truth: Tensor, num_labels: int) -> Tensor:
    """``(L, L)`` counts, rows = ground truth, columns = prediction."""
    index = truth.flatten().long() * num_labels + predicted.flatten().long()
    return torch.bincount(index, minlength=num_labels * num_labels).reshape(num_labels, num_labels)


def label_ious(confusion: Tensor, labels: Sequence[int]) -> Dict[int, float]:
    """IoU ``TP / (truth + predicted − TP)`` of each of ``labels`` present in the ground truth; a label absent from
    every target view has none (dropped, as the original's nanmean drops it)."""
    confusion = confusion.double()
    ious = {}
    for label in labels:
        true_positive, truth_total = confusion[label, label], confusion[label].sum()
        if truth_total > 0:
            ious[label] = (true_positive / (truth_total + confusion[:, label].sum() - true_positive)).item()
    return ious


def label_metrics(confusion: Tensor, labels: Sequence[int]) -> Dict[str, float]:
    """mIoU, class-average accuracy (mean recall) and total accuracy over ``labels`` (the source view's, void excluded).

    The confusion matrix must already exclude pixels whose true label is void or not in ``labels``.
    """
    confusion = confusion.double()
    index = torch.as_tensor(list(labels))
    true_positive = confusion.diagonal()[index]
    truth_total = confusion.sum(dim=1)[index]
    present = truth_total > 0  # as in label_ious
    recall = true_positive[present] / truth_total[present]
    return {
        "miou": torch.tensor(list(label_ious(confusion, labels).values()), dtype=torch.float64).mean().item(),
        "class_avg_acc": recall.mean().item(),
        "total_acc": (true_positive.sum() / confusion.sum()).item(),
    }
