"""The propagation metrics on a confusion matrix worked by hand."""

import pytest
import torch

from jacobinerf_ns.metrics import confusion_matrix, label_ious, label_metrics


def test_label_ious_and_metrics_on_a_hand_worked_confusion():
    truth = torch.tensor([1, 1, 1, 1, 2, 2, 2, 0])
    predicted = torch.tensor([1, 1, 2, 3, 2, 2, 1, 1])
    valid = truth > 0  # void pixels are left out before counting
    confusion = confusion_matrix(predicted[valid], truth[valid], 4)
    assert confusion.tolist() == [[0, 0, 0, 0], [0, 2, 1, 1], [0, 1, 2, 0], [0, 0, 0, 0]]
    ious = label_ious(confusion, [1, 2, 3])
    # 1: TP 2, truth 4, predicted 3 → 2 / 5; 2: TP 2, truth 3, predicted 3 → 2 / 4; 3: absent from the truth → no IoU
    assert ious == pytest.approx({1: 0.4, 2: 0.5})
    metrics = label_metrics(confusion, [1, 2, 3])
    assert metrics["miou"] == pytest.approx(0.45)
    assert metrics["class_avg_acc"] == pytest.approx((2 / 4 + 2 / 3) / 2)
    assert metrics["total_acc"] == pytest.approx(4 / 7)
