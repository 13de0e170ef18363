"""The vectorised MI-shaping loss against a direct transcription of the original per-anchor loop, and the threshold."""

from __future__ import annotations

import math

import torch

from jacobinerf_ns.shaping import AdaptiveThreshold, abs_cosine, mi_shaping_losses


def loop_reference(jacobians, affinity, threshold, temperature):
    """The original code's loss: pos = Σ_P exp(|cos|/τ), neg = Σ_¬P exp(|cos|/τ), −log(pos / (pos + neg)),
    anchor ∈ P."""
    batch = jacobians.shape[0]
    losses = []
    for i in range(batch):
        pos = neg = 0.0
        for j in range(batch):
            cos = abs(torch.nn.functional.cosine_similarity(jacobians[i], jacobians[j], dim=0).item())
            if j == i or affinity[i, j] > threshold:
                pos += math.exp(cos / temperature)
            else:
                neg += math.exp(cos / temperature)
        if neg > 0:
            losses.append(-math.log(pos / (pos + neg)))
    norm = sum((1 - jacobians[i].norm().item()) ** 2 for i in range(batch)) / batch
    return sum(losses) / len(losses), norm


def test_loss_matches_loop_reference():
    generator = torch.Generator().manual_seed(0)
    jacobians = torch.randn(24, 12, generator=generator, dtype=torch.float64)
    descriptors = torch.nn.functional.normalize(torch.randn(24, 5, generator=generator, dtype=torch.float64), dim=-1)
    affinity = descriptors @ descriptors.T
    for temperature in (1.0, 0.3):
        losses = mi_shaping_losses(jacobians, affinity, threshold=0.4, temperature=temperature)
        mi, norm = loop_reference(jacobians, affinity, 0.4, temperature)
        assert math.isclose(losses.mi.item(), mi, rel_tol=1e-9)
        assert math.isclose(losses.norm.item(), norm, rel_tol=1e-9)


def test_comparing_within_images_is_each_image_on_its_own():
    """With ``comparable`` = same image, the loss is the loop reference of each image alone, pooled over anchors:
    pairs of two images change nothing, whatever their affinity."""
    generator = torch.Generator().manual_seed(1)
    images = torch.tensor([0] * 7 + [1] * 9 + [2] * 8)
    jacobians = torch.randn(24, 12, generator=generator, dtype=torch.float64)
    ids = torch.randint(1, 4, (24,), generator=generator)
    affinity = (ids[:, None] == ids[None, :]).double()
    comparable = images[:, None] == images[None, :]
    losses = mi_shaping_losses(jacobians, affinity, 0.5, comparable=comparable)
    per_anchor = []
    for image in range(3):
        rows = images == image
        block = affinity[rows][:, rows]
        anchors = int((block < 0.5).any(dim=1).sum())  # anchors with a negative in their image
        per_anchor += [loop_reference(jacobians[rows], block, 0.5, 1.0)[0]] * anchors
    assert math.isclose(losses.mi.item(), sum(per_anchor) / len(per_anchor), rel_tol=1e-9)
    scrambled = torch.where(comparable, affinity, 1 - affinity)
    assert math.isclose(mi_shaping_losses(jacobians, scrambled, 0.5, comparable=comparable).mi.item(),
                        losses.mi.item(), rel_tol=1e-12)  # fmt: skip
    assert not math.isclose(mi_shaping_losses(jacobians, affinity, 0.5).mi.item(), losses.mi.item(), rel_tol=1e-3)


def test_anchors_without_negatives_are_skipped_and_loss_decreases_when_positives_align():
    same = torch.zeros(4, 4)
    same[:2, :2] = 1
    same[2:, 2:] = 1
    aligned = torch.tensor([[1.0, 0, 0], [2.0, 0, 0], [0, 1.0, 0], [0, 3.0, 0]])
    mixed = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [1.0, 0, 0], [0, 1.0, 0]])
    assert mi_shaping_losses(aligned, same, 0.5).mi < mi_shaping_losses(mixed, same, 0.5).mi
    everything_positive = mi_shaping_losses(aligned, torch.ones(4, 4), 0.5)
    assert everything_positive.mi.item() == 0.0


def test_gradients_flow_to_jacobians_and_stats_are_logged():
    jacobians = torch.randn(8, 6, requires_grad=True)
    affinity = (torch.arange(8)[:, None] % 2 == torch.arange(8)[None, :] % 2).float()
    losses = mi_shaping_losses(jacobians, affinity, 0.5)
    (losses.mi + losses.norm).backward()
    assert jacobians.grad is not None and jacobians.grad.abs().sum() > 0
    assert losses.positive_counts.tolist() == [3] * 8
    assert math.isclose(losses.stats["shaping/positive_ratio"].item(), 3 / 7, rel_tol=1e-6)
    cosine = abs_cosine(jacobians.detach())
    assert math.isclose(
        losses.stats["shaping/cos_positive"].item(),
        cosine[affinity.bool() & ~torch.eye(8, dtype=torch.bool)].mean().item(),
        rel_tol=1e-5,
    )


def test_threshold_adapts_within_bounds_and_round_trips_through_state_dict():
    threshold = AdaptiveThreshold(initial=0.8, minimum=0.5, maximum=0.9, step=1e-3)
    threshold.update(torch.zeros(64, dtype=torch.long))  # every anchor has < int(0.05·64) = 3 positives
    assert math.isclose(float(threshold), 0.8 - 64e-3, rel_tol=1e-6)
    threshold.update(torch.full((64,), 20))  # every anchor has > int(0.15·64) = 9 positives
    assert math.isclose(float(threshold), 0.8, rel_tol=1e-6)
    threshold.update(torch.full((64,), 5))  # within [3, 9]: no change
    assert math.isclose(float(threshold), 0.8, rel_tol=1e-6)
    for _ in range(10):
        threshold.update(torch.full((64,), 20))
    assert math.isclose(float(threshold), 0.9, rel_tol=1e-6)
    restored = AdaptiveThreshold()
    restored.load_state_dict(threshold.state_dict())
    assert float(restored) == float(threshold)
