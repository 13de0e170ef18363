"""Evaluation: the paper's label-propagation metrics and the Jacobian-cosine gap that shaping should open."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, Dict, List, Literal, Sequence, Tuple

import torch
from torch import Tensor

from jacobinerf_ns.propagation import RESPONSES, Probe, assign_labels, pixel_jacobians, render_responses, sample_clicks
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


# ---- the paper's label-propagation protocol (DESIGN §7) -----------------------------------------------------------


def confusion_matrix(predicted: Tensor, truth: Tensor, num_labels: int) -> Tensor:
    """``(L, L)`` counts, rows = ground truth, columns = prediction."""
    index = truth.flatten().long() * num_labels + predicted.flatten().long()
    return torch.bincount(index, minlength=num_labels * num_labels).reshape(num_labels, num_labels)


def label_metrics(confusion: Tensor, labels: Sequence[int]) -> Dict[str, float]:
    """mIoU, class-average accuracy (mean recall) and total accuracy over ``labels`` (the source view's, void excluded).

    The confusion matrix must already exclude pixels whose true label is void or not in ``labels``.
    """
    confusion = confusion.double()
    index = torch.as_tensor(list(labels))
    true_positive = confusion.diagonal()[index]
    truth_total = confusion.sum(dim=1)[index]
    predicted_total = confusion.sum(dim=0)[index]
    union = truth_total + predicted_total - true_positive
    present = truth_total > 0  # a source label absent from every target view has no IoU (nanmean, like the original)
    iou = true_positive[present] / union[present]
    recall = true_positive[present] / truth_total[present]
    return {
        "miou": iou.mean().item(),
        "class_avg_acc": recall.mean().item(),
        "total_acc": (true_positive.sum() / confusion.sum()).item(),
    }


@dataclass
class PropagationProtocol:
    """The paper's protocol: clicks on one source (training) view, every eval view a target, one pooled confusion matrix."""

    source_view: int = 0
    """Index of the source view among the training views."""
    clicks_per_class: int = 1
    """Sparse setting: uniformly random clicks per label present in the source view."""
    seed: int = 0
    """Seed of the clicks (and of the dense setting's selection and aggregation MLP)."""
    sigma: float = 0.1
    """Perturbation magnitude σ."""
    mode: Literal["linear", "exact"] = "linear"
    """Responses to first order (σ|⟨J_p, J_k⟩|) or exactly (perturbed head on cached trunk features)."""
    settings: Tuple[Literal["sparse", "dense"], ...] = ("sparse", "dense")
    """Which settings to compute; each gives 2D and 3D metrics."""
    dense_rounds: int = 5
    dense_candidates: int = 20
    dense_mlp_steps: int = 2000


@dataclass
class FittedPropagation:
    """Clicks of one setting turned into a probe and per-space decoders ``(H, W, K) responses → (H, W) labels``."""

    pixels: Tensor
    click_labels: List[int]
    probe: Probe
    decoders: Dict[str, Callable[[Tensor], Tensor]]

    def predict(self, model, camera) -> Tuple[Dict[str, Tensor], dict]:
        """Label maps per space (``2d``, ``3d``) for one camera, from one render, and that render's outputs."""
        outputs = render_responses(model, camera, self.probe)
        return {space: self.decoders[space](outputs[key].cpu()) for space, key in RESPONSES.items()}, outputs


def fit_propagation(model, source_camera, source_labels: Tensor, setting: str, protocol: PropagationProtocol, generator: torch.Generator) -> FittedPropagation:
    """Sparse: seeded random clicks, label of the strongest response. Dense: selected clicks + aggregation MLP."""
    source_labels = source_labels.long()
    if setting == "sparse":
        pixels, click_labels = sample_clicks(source_labels, protocol.clicks_per_class, generator)
    elif setting == "dense":
        pixels, click_labels = select_dense_clicks(model, source_camera, source_labels, protocol, generator)
    else:
        raise ValueError(f"Unknown propagation setting {setting!r}: choose sparse or dense.")
    probe = Probe(pixel_jacobians(model, source_camera, pixels), sigma=protocol.sigma, mode=protocol.mode)
    decoders = {space: partial(assign_labels, click_labels=click_labels) for space in RESPONSES}
    if setting == "dense":
        source_responses = render_responses(model, source_camera, probe)
        num_labels = int(source_labels.max()) + 1
        decoders = {
            space: fit_aggregation_mlp(source_responses[key], source_labels, num_labels, protocol, generator)
            for space, key in RESPONSES.items()
        }
    return FittedPropagation(pixels, click_labels, probe, decoders)


def evaluate_propagation(model, source_camera, source_labels: Tensor, target_cameras, target_labels, protocol: PropagationProtocol, prefix: str = "") -> Dict[str, float]:
    """``{prefix}{setting}_{2d|3d}_{miou|class_avg_acc|total_acc}`` for label maps (void = 0) of source and targets."""
    generator = torch.Generator().manual_seed(protocol.seed)
    labels = sorted(set(torch.unique(source_labels).tolist()) - {0})
    num_labels = int(max([int(source_labels.max())] + [int(t.max()) for t in target_labels])) + 1
    results: Dict[str, float] = {}
    for setting in protocol.settings:
        fitted = fit_propagation(model, source_camera, source_labels, setting, protocol, generator)
        confusion = {space: torch.zeros(num_labels, num_labels, dtype=torch.long) for space in RESPONSES}
        for camera, truth in zip(target_cameras, target_labels):
            predicted, _ = fitted.predict(model, camera)
            truth = truth.long()
            valid = torch.isin(truth, torch.tensor(labels))
            for space in RESPONSES:
                confusion[space] += confusion_matrix(predicted[space][valid], truth[valid], num_labels)
        for space in RESPONSES:
            for metric, value in label_metrics(confusion[space], labels).items():
                results[f"{prefix}{setting}_{space}_{metric}"] = value
    return results


def select_dense_clicks(model, source_camera, source_labels: Tensor, protocol: PropagationProtocol, generator: torch.Generator):
    """Adaptive selection of representative gradients (paper appendix 6.2.3), scored by source-view mIoU.

    Start from one click per label; each round tries ``dense_candidates`` sets that add one random pixel per label
    and keeps the best only if it beats the current set (the original accepted every round: its best-so-far was
    never updated). Scoring uses 2D linear responses from one render of the source view's Jacobians.
    """
    height, width = source_labels.shape
    source_jacobians = pixel_jacobians(model, source_camera, all_pixels(height, width)).flatten(1)  # (HW, D)
    labels = sorted(set(torch.unique(source_labels).tolist()) - {0})
    valid = source_labels.flatten() > 0

    def score(pixels: Tensor, click_labels) -> float:
        clicks = source_jacobians[pixels[:, 0] * width + pixels[:, 1]]
        predicted = assign_labels((source_jacobians @ clicks.T).abs(), click_labels)
        confusion = confusion_matrix(predicted[valid], source_labels.flatten()[valid], int(source_labels.max()) + 1)
        return label_metrics(confusion, labels)["miou"]

    pixels, click_labels = sample_clicks(source_labels, 1, generator)
    best = score(pixels, click_labels)
    for _ in range(protocol.dense_rounds):
        candidates = []
        for _ in range(protocol.dense_candidates):
            extra, extra_labels = sample_clicks(source_labels, 1, generator)
            candidates.append((torch.cat([pixels, extra]), click_labels + extra_labels))
        scored = [(score(*candidate), candidate) for candidate in candidates]
        round_best, candidate = max(scored, key=lambda item: item[0])
        if round_best > best:
            best, (pixels, click_labels) = round_best, candidate
    return pixels, click_labels


def fit_aggregation_mlp(responses: Tensor, source_labels: Tensor, num_labels: int, protocol: PropagationProtocol, generator: torch.Generator):
    """The dense setting's aggregation MLP ``K → 256 → 128 → L`` (cross-entropy on the source view's labels).

    Responses are scaled by their per-click maximum over the source view, the same scale for every target.
    Returns a decoder ``(H, W, K) responses → (H, W) labels``.
    """
    responses = responses.cpu().float()
    scale = responses.flatten(0, 1).amax(dim=0).clamp_min(1e-12)
    inputs = (responses / scale).flatten(0, 1)
    targets = source_labels.flatten()
    keep = targets > 0
    inputs, targets = inputs[keep], targets[keep]
    torch.manual_seed(int(torch.randint(1 << 30, (1,), generator=generator)))
    mlp = torch.nn.Sequential(
        torch.nn.Linear(inputs.shape[1], 256), torch.nn.ReLU(), torch.nn.Linear(256, 128), torch.nn.ReLU(), torch.nn.Linear(128, num_labels)
    )
    optimizer = torch.optim.Adam(mlp.parameters(), lr=1e-3)
    with torch.enable_grad():
        for _ in range(protocol.dense_mlp_steps):
            batch = torch.randint(len(inputs), (min(4096, len(inputs)),), generator=generator)
            loss = torch.nn.functional.cross_entropy(mlp(inputs[batch]), targets[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    allowed = torch.full((num_labels,), float("-inf"))
    allowed[torch.unique(targets)] = 0.0  # predict only labels of the source view

    @torch.no_grad()
    def decode(target_responses: Tensor) -> Tensor:
        return (mlp(target_responses.float() / scale) + allowed).argmax(dim=-1)

    return decode
