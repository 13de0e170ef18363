"""The paper's label-propagation protocol (sparse/dense clicks on one source view, every eval view a target) and the
click logic every method shares: seeded sparse clicks, the dense setting's adaptive selection and aggregation MLP.

A method (:mod:`.jacobian`, :mod:`.semantic_head`, :mod:`.dino`) is a function
``fit(model, views, setting, protocol, generator) -> FittedPropagation``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, Iterator, List, Literal, Optional, Sequence, Tuple
from typing import Protocol as TypingProtocol

import torch
from torch import Tensor

from jacobinerf_ns.errors import require
from jacobinerf_ns.metrics import confusion_matrix, label_metrics
from jacobinerf_ns.probe import Probe, assign_labels

if TYPE_CHECKING:
    from nerfstudio.cameras.cameras import Cameras

MethodName = Literal["jacobian", "jacobian-surface", "semantic-head", "dino-2d", "dino-field"]


@dataclass
class PropagationProtocol:
    """The paper's protocol: clicks on a source (training) view, every eval view a target, one pooled confusion matrix;
    repeated for every draw = (source view, seed), reported as mean ± std over the draws."""

    method: MethodName = "jacobian"
    """How labels travel: ``jacobian`` (JacobiNeRF; the unshaped baseline is the same on an unshaped run),
    ``jacobian-surface`` (the clicks' classes spread over the training views' surfaces across alike Jacobians, as
    ``jacobinerf-label --propagation surface`` labels), or a baseline of the paper: ``semantic-head``
    (Semantic-NeRF style), ``dino-2d``, ``dino-field`` (DINO-NeRF style); one module each in
    :mod:`jacobinerf_ns.propagation`."""
    source_view: int = 0
    """Index of the source view among the training views (when ``source_views`` is empty)."""
    source_views: Tuple[int, ...] = ()
    """Source views of the draws (empty: ``source_view`` alone)."""
    clicks_per_class: int = 1
    """Sparse setting: uniformly random clicks per label present in the source view."""
    seed: int = 0
    """First seed of the draws (when ``seeds`` is empty: ``seed``, ``seed + 1``, ``seed + 2``)."""
    seeds: Tuple[int, ...] = ()
    """Seeds of the draws' clicks (and of the dense setting's selection, the aggregation MLP and the baselines'
    heads); every (source view, seed) pair is one draw."""
    sigma: float = 0.1
    """Perturbation magnitude σ."""
    mode: Literal["linear", "exact"] = "linear"
    """Responses to first order (σ|⟨J_p, J_k⟩|) or exactly (perturbed head on cached trunk features)."""
    settings: Tuple[Literal["sparse", "dense"], ...] = ("sparse", "dense")
    """Which settings to compute; each gives the method's spaces (jacobian: 2D and 3D)."""
    dense_rounds: int = 5
    dense_candidates: int = 20
    dense_mlp_steps: int = 2000
    head_steps: int = 1000
    """``semantic-head`` / ``dino-field``: Adam steps fitting the head on the frozen field."""
    head_rays: int = 8192
    """``semantic-head`` (dense) / ``dino-field``: rays the head is fitted on (random labelled source pixels /
    training pixels)."""
    dino_weights: Optional[Path] = None
    """``dino-2d`` / ``dino-field``: local DINO weights (default: ``--pipeline.datamanager.dino-weights``); extraction
    settings and cache are the datamanager's."""

    def validate(self, train_views: int, option: str = "--pipeline.propagation.") -> None:
        """Raises :class:`JacobiNerfError` on options that cannot run, before any work (``train_views``: how many
        training views the data has)."""
        views = self.draw_views()
        outside = [view for view in views if not 0 <= view < train_views]
        require(not outside, f"{option}source-views", f"{outside[:3]} must be training views 0..{train_views - 1}.")
        require(len(set(views)) == len(views), f"{option}source-views", f"{list(views)} repeats a view.")
        seeds = self.draw_seeds()
        require(len(set(seeds)) == len(seeds), f"{option}seeds", f"{list(seeds)} repeats a seed.")
        require(bool(self.settings), f"{option}settings", "is empty: choose sparse and/or dense.")
        unknown = [setting for setting in self.settings if setting not in ("sparse", "dense")]
        require(not unknown, f"{option}settings", f"{unknown}: choose sparse and/or dense.")
        methods = ("jacobian", "jacobian-surface", "semantic-head", "dino-2d", "dino-field")
        require(self.method in methods, f"{option}method", f"{self.method!r}: choose one of {', '.join(methods)}.")
        require(self.mode in ("linear", "exact"), f"{option}mode", f"{self.mode!r}: choose linear or exact.")
        require(self.sigma > 0, f"{option}sigma", f"must be > 0, got {self.sigma}.")
        for name in ("clicks_per_class", "dense_candidates", "dense_mlp_steps", "head_steps", "head_rays"):
            value = getattr(self, name)
            require(value >= 1, f"{option}{name.replace('_', '-')}", f"must be ≥ 1, got {value}.")
        require(self.dense_rounds >= 0, f"{option}dense-rounds", f"must be ≥ 0, got {self.dense_rounds}.")

    def draw_views(self) -> Tuple[int, ...]:
        return tuple(self.source_views) or (self.source_view,)

    def draw_seeds(self) -> Tuple[int, ...]:
        return tuple(self.seeds) or (self.seed, self.seed + 1, self.seed + 2)


@dataclass
class PropagationViews:
    """One propagation task: a labelled source view, labelled targets, and what the baselines learn from."""

    source_camera: Cameras
    source_labels: Tensor
    """``(H, W)`` ids of the source view, 0 = void."""
    target_cameras: List[Cameras]
    target_labels: List[Optional[Tensor]]
    """``(H, W)`` ids per target (``None`` when only label maps are wanted, not metrics)."""
    source_image: Optional[Path] = None
    target_images: Sequence[Path] = ()
    train_cameras: Optional[Cameras] = None
    train_images: Sequence[Path] = ()
    train_masks: Optional[Tensor] = None
    """``(N, H, W)`` integer masks of the training views (the run's: ``training_masks`` of its datamanager), which
    ``jacobian-surface`` joins; ``None``: none."""
    image_features: Optional[Callable[[Sequence[Path]], Tensor]] = None
    """Image files → ``(N, h, w, C)`` feature maps (DINO): needed by the ``dino-*`` methods only."""
    source_index: int = 0
    """Index of the source view among the training views (identifies it across label kinds)."""


@dataclass
class FittedPropagation:
    """A method fitted to one setting's source labels: target index → ``{space: (H, W, K)}`` scores → label maps."""

    pixels: Tensor
    """``(K, 2)`` (y, x) source pixels the method learnt from (the clicks)."""
    click_labels: List[int]
    scores: Callable[[int], Dict[str, Tensor]]
    make_decoders: Callable[[], Dict[str, Callable[[Tensor], Tensor]]]
    """Built on first use (dense: fits the aggregation MLP on the source view's scores)."""
    _decoders: Optional[Dict[str, Callable[[Tensor], Tensor]]] = field(default=None, init=False, repr=False)

    def decoders(self) -> Dict[str, Callable[[Tensor], Tensor]]:
        if self._decoders is None:
            self._decoders = self.make_decoders()
        return self._decoders

    def predict(self, target: int) -> Dict[str, Tensor]:
        """``(H, W)`` label maps per space of ``views.target_cameras[target]``."""
        decoders = self.decoders()
        return {space: decoders[space](score.cpu()) for space, score in self.scores(target).items()}


class Method(TypingProtocol):
    """A propagation method, built once per evaluation (``METHODS[name](model, protocol)`` in
    :mod:`jacobinerf_ns.evaluation`) and fitted to every draw."""

    def fit(self, views: PropagationViews, setting: str, generator: torch.Generator) -> FittedPropagation: ...

    def target_probe(self) -> Optional[Probe]:
        """The probe whose render of a target all fits read (``None``: the method renders what it needs itself)."""

    def keep_target(self, target: int, outputs: dict) -> None:
        """Takes the render of target ``target`` made elsewhere with :meth:`target_probe`."""


def choose_clicks(
    views: PropagationViews,
    setting: str,
    protocol: PropagationProtocol,
    generator: torch.Generator,
    descriptors: Optional[Callable[[], Tensor]] = None,
    similarity=None,
):
    """Sparse: seeded random clicks per label. Dense: adaptive selection over the source's per-pixel ``descriptors``."""
    if setting == "sparse":
        return sample_clicks(views.source_labels.long(), protocol.clicks_per_class, generator)
    if setting == "dense":
        return select_dense_clicks(descriptors(), similarity, views.source_labels.long(), protocol, generator)
    raise ValueError(f"Unknown propagation setting {setting!r}: choose sparse or dense.")


def click_decoders(
    setting: str,
    click_labels: List[int],
    spaces: Sequence[str],
    source_scores: Callable[[], Dict[str, Tensor]],
    source_labels: Tensor,
    protocol: PropagationProtocol,
    generator: torch.Generator,
) -> Callable[[], Dict[str, Callable[[Tensor], Tensor]]]:
    """Sparse: label of the strongest click. Dense: aggregation MLP fitted on the source view's ``(H, W, K)`` scores
    (when the decoders are first needed)."""
    if setting == "sparse":
        return lambda: {space: partial(assign_labels, click_labels=click_labels) for space in spaces}
    num_labels = int(source_labels.max()) + 1

    def fit() -> Dict[str, Callable[[Tensor], Tensor]]:
        decoders: Dict[str, Callable[[Tensor], Tensor]] = {}
        fitted: List[Tuple[Tensor, Callable[[Tensor], Tensor]]] = []
        for space, scores in source_scores().items():
            same = [decoder for earlier, decoder in fitted if torch.equal(earlier, scores)]
            # 2D and 3D scores are identical for the Jacobian method (every Jacobian entry ≥ 0): one MLP serves both
            decoders[space] = (
                same[0] if same else fit_aggregation_mlp(scores, source_labels.long(), num_labels, protocol, generator)
            )
            fitted.append((scores, decoders[space]))
        return decoders

    return fit


def sample_clicks(label_map: Tensor, clicks_per_label: int, generator: torch.Generator, ignore: Sequence[int] = (0,)):
    """Uniformly random pixels ``(K, 2)`` (y, x) and their labels: ``clicks_per_label`` per label present."""
    pixels, labels = [], []
    for label in torch.unique(label_map).tolist():
        if label in ignore:
            continue
        where = torch.nonzero(label_map == label)
        picks = torch.randint(len(where), (clicks_per_label,), generator=generator)
        pixels.append(where[picks])
        labels += [label] * clicks_per_label
    if not pixels:
        raise ValueError("The source label map has no labelled (non-void) pixel to click.")
    return torch.cat(pixels), labels


@contextlib.contextmanager
def seeded(generator: torch.Generator) -> Iterator[None]:
    """Global RNG seeded from ``generator`` inside the block (layer initialisation takes no generator), and restored
    afterwards: library code never changes its caller's random stream (a trainer's, mid-training)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(1 << 30, (1,), generator=generator)))
        yield


def all_pixels(height: int, width: int) -> Tensor:
    """``(H·W, 2)`` (y, x) in row-major order."""
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return torch.stack([ys.flatten(), xs.flatten()], dim=-1)


def select_dense_clicks(
    source_descriptors: Tensor,
    similarity: Callable[[Tensor, Tensor], Tensor],
    source_labels: Tensor,
    protocol: PropagationProtocol,
    generator: torch.Generator,
):
    """Adaptive selection of representative gradients (paper appendix 6.2.3), scored by source-view mIoU.

    Start from one click per label; each round tries ``dense_candidates`` sets that add one random pixel per label
    and keeps the best only if it beats the current set (the original accepted every round: its best-so-far was
    never updated). A set is scored by labelling every source pixel with its most ``similarity``-similar click, on
    the per-pixel ``source_descriptors`` ``(H·W, D)`` (JacobiNeRF: the source view's Jacobians, 2D linear responses).
    """
    height, width = source_labels.shape
    labels = sorted(set(torch.unique(source_labels).tolist()) - {0})
    valid = source_labels.flatten() > 0

    def score(pixels: Tensor, click_labels) -> float:
        clicks = source_descriptors[pixels[:, 0] * width + pixels[:, 1]]
        predicted = assign_labels(similarity(source_descriptors, clicks), click_labels)
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


def fit_aggregation_mlp(
    responses: Tensor, source_labels: Tensor, num_labels: int, protocol: PropagationProtocol, generator: torch.Generator
):
    """The dense setting's aggregation MLP ``K → 256 → 128 → L`` (cross-entropy on the source view's labels).

    Scores are scaled by their per-click maximum magnitude over the source view, the same scale for every target.
    Returns a decoder ``(H, W, K) responses → (H, W) labels``.
    """
    responses = responses.cpu().float()
    scale = responses.flatten(0, 1).abs().amax(dim=0).clamp_min(1e-12)
    inputs = (responses / scale).flatten(0, 1)
    targets = source_labels.flatten()
    keep = targets > 0
    inputs, targets = inputs[keep], targets[keep]
    with seeded(generator):
        mlp = torch.nn.Sequential(
            torch.nn.Linear(inputs.shape[1], 256),
            torch.nn.ReLU(),
            torch.nn.Linear(256, 128),
            torch.nn.ReLU(),
            torch.nn.Linear(128, num_labels),
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
