"""The options of the JacobiNeRF model (:mod:`jacobinerf_ns.model`), importable without it: nerfstudio builds them at
plugin load."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal, Optional

from nerfstudio.models.nerfacto import NerfactoModelConfig

from jacobinerf_ns.deferred import Deferred
from jacobinerf_ns.errors import require

DEPTH_IMAGE = "depth_image"
"""nerfstudio's batch key of depth maps, in scene units (the datamanager's dataset adds them when the scene has depth
files; its pixel samplers and depth losses use the key)."""
SCENE_UNITS_PER_POSE_UNIT = "scene_units_per_pose_unit"
"""Key of the dataset metadata (given to the model) holding the dataparser's scale, for a scene with depth: the
model turns ``depth_std`` from the poses' units into scene units with it."""


@dataclass
class JacobiNerfModelConfig(NerfactoModelConfig):
    """Nerfacto + shapeable RGB head + MI shaping (defaults: paper / original code)."""

    _target: Callable = field(default_factory=lambda: Deferred("jacobinerf_ns.model", "JacobiNerfModel"))
    implementation: Literal["auto", "tcnn", "torch"] = "auto"
    """Trunk implementation; ``auto`` = tcnn when importable on CUDA, else nerfstudio's torch modules."""
    head_in_dim: int = 128
    """Width F of the head input: the shaped weight is 3×F (paper: 3×128)."""
    shape_bias: bool = False
    """Also shape the head's bias (the paper shapes the weight only)."""
    shaping_start_step: int = 20000
    """Step at which MI shaping starts; -1 never shapes (the unshaped baseline)."""
    mi_loss_mult: float = 0.01
    """λ: weight of the InfoNCE loss on Jacobian cosines."""
    norm_loss_mult: float = 0.01
    """γ: weight of the Jacobian-norm loss (1 − ‖J‖)²."""
    temperature: float = 1.0
    """τ of the InfoNCE loss."""
    contrastive_batch_size: int = 256
    """Rays of each batch (its first ones; the pixel sampler draws them at random) used as the contrastive batch.
    256, not the paper's 64: the best sparse mIoU after 5 minutes of shaping on office_0 at the same cost per step
    (docs/shaping_study.md); a larger ray batch's cosine matrix is still a small matmul here."""
    threshold_init: float = 0.8
    """Initial surrogate-affinity threshold for positives."""
    threshold_min: float = 0.5
    threshold_max: float = 0.9
    threshold_step: float = 1e-3
    positive_ratio_low: float = 0.05
    """Anchors with fewer positives than this fraction of the batch lower the threshold."""
    positive_ratio_high: float = 0.15
    """Anchors with more positives than this fraction of the batch raise the threshold."""
    depth_loss_mult: float = 1e-3
    """Weight of nerfstudio's DS-NeRF depth loss (depth-nerfacto's, and its weight), added when the batch has depth
    maps (the scene's frames have depth files); 0 turns it off. Scenes without depth never get it."""
    distortion_loss_mult_with_depth: Optional[float] = 0.0
    """Weight of nerfacto's distortion loss on the rays the depth loss supervises (a valid depth: > 0), where
    ``distortion_loss_mult`` holds on the others (None: there too). There the depth loss already draws the ray's
    weights to the captured surface, the distortion loss's job without depth, and the two together leave holes
    (docs/training.md)."""
    distortion_loss_start_step: Optional[int] = None
    """Step from which nerfacto's distortion loss (``distortion_loss_mult``) counts; before it the loss is off, so that
    surfaces form before the loss gathers each ray's weights (docs/training.md#distortion-start). None: the shaping
    start in a run shaped with masks that trains without depth maps, else 0."""
    distortion_loss_on_void: Optional[bool] = None
    """Before the distortion loss's start step, keep it on the rays whose pixel no mask covers (the sky and other void
    of a run shaped with masks), so that they stay empty while the masked surfaces form
    (docs/training.md#distortion-on-void). None: on wherever it acts (shaped with masks, a start step > 0)."""
    off_surface_loss_mult: float = 0.01
    """Weight of the share of a ray's weight that is not at its captured surface, ``1 − Σ_{|t_i − d| ≤ 2 s} w_i``
    (a mean over the rays with a valid depth ``d``; ``s``: ``depth_std`` in scene units, so the window is two standard
    deviations of the depth loss's kernel): without it a textureless surface can render see-through, its colour
    carried by nerfacto's last-sample background (docs/training.md#off-surface);
    0 turns it off."""
    masked_opacity_loss_mult: float = 0.0
    """Weight of the light a ray through a masked pixel lets past, ``1 − Σ w_i`` (a mean over the batch's rays, counted
    on rays whose pixel has a non-void id of the mask surrogate and no captured depth that the off-surface loss
    judges): a mask says the pixel shows a surface, so the ray should stop. Without depth maps it keeps textureless
    walls from rendering see-through, so they are labelled, but thickens soft surfaces, so fewer of the point cloud's
    points lie on the surface (docs/training.md#masked-opacity); 0 (the default) turns it off. Only with
    ``--pipeline.datamanager.surrogate masks``."""
    depth_std: float = 0.087
    """Standard deviation of the depth loss's kernel in the poses' units (metres for RGB-D and phone captures): in
    scene units ``s = depth_std × the dataparser's scale``, and nerfstudio's DS-NeRF loss weights a sample at distance
    t by exp(−(t − d)² / (2σ)) with σ = s². In the poses' units, not scene units, so that the kernel and the
    off-surface window keep their size against the scene's objects under any normalisation. 0.087: depth-nerfacto's
    σ = 0.01 under office_0's normalisation (docs/training.md#depth)."""
    is_euclidean_depth: bool = False
    """Whether depth maps hold distances along the ray rather than z-depth (camera-frame z)."""
    surface_quantile: Optional[float] = None
    """The accumulated weight at which a ray's ``depth`` output, its surface, is read (clicks, labels, the point cloud;
    :mod:`jacobinerf_ns.surface_depth`); training does not use it. None: 0.5, the median, on a run the depth loss
    trained (it centres each ray's weights on the captured surface), else 0.4 (a surface learned from colour alone
    puts its weights behind it; docs/labelling.md#the-depth-a-ray-is-read-at)."""

    def validate(self) -> None:
        """Options that would fail, or train to the end doing nothing, raise :class:`JacobiNerfError` before any work
        (called when the pipeline is built: configs loaded from config.yml skip ``__post_init__``)."""
        option = "--pipeline.model."
        require(
            self.contrastive_batch_size >= 2,
            f"{option}contrastive-batch-size",
            "must be at least 2 (the MI loss "
            f"compares rays of the contrastive batch; the paper uses 64), got {self.contrastive_batch_size}.",
        )
        require(
            self.shaping_start_step >= -1,
            f"{option}shaping-start-step",
            f"must be a step ≥ 0, or -1 (never shape), got {self.shaping_start_step}.",
        )
        for name in ("mi_loss_mult", "norm_loss_mult"):
            value = getattr(self, name)
            require(value >= 0, f"{option}{name.replace('_', '-')}", f"must be ≥ 0, got {value}.")
        require(self.temperature > 0, f"{option}temperature", f"must be > 0, got {self.temperature}.")
        require(
            0 <= self.threshold_min <= self.threshold_max <= 1,
            f"{option}threshold-min/max",
            f"must satisfy 0 ≤ min ≤ max ≤ 1, got [{self.threshold_min}, {self.threshold_max}].",
        )
        require(
            self.threshold_min <= self.threshold_init <= self.threshold_max,
            f"{option}threshold-init",
            f"must lie in [threshold-min, threshold-max] = [{self.threshold_min}, {self.threshold_max}], got "
            f"{self.threshold_init}.",
        )
        require(self.threshold_step >= 0, f"{option}threshold-step", f"must be ≥ 0, got {self.threshold_step}.")
        require(
            0 <= self.positive_ratio_low <= self.positive_ratio_high <= 1,
            f"{option}positive-ratio-low/high",
            f"must satisfy 0 ≤ low ≤ high ≤ 1, got [{self.positive_ratio_low}, {self.positive_ratio_high}].",
        )
        require(
            self.depth_loss_mult >= 0, f"{option}depth-loss-mult", f"must be ≥ 0 (0: off), got {self.depth_loss_mult}."
        )
        require(
            self.distortion_loss_mult_with_depth is None or self.distortion_loss_mult_with_depth >= 0,
            f"{option}distortion-loss-mult-with-depth",
            f"must be ≥ 0 (0: off) or None (distortion-loss-mult), got {self.distortion_loss_mult_with_depth}.",
        )
        require(
            self.distortion_loss_start_step is None or self.distortion_loss_start_step >= 0,
            f"{option}distortion-loss-start-step",
            f"must be a step ≥ 0, or None (its default), got {self.distortion_loss_start_step}.",
        )
        require(
            self.off_surface_loss_mult >= 0,
            f"{option}off-surface-loss-mult",
            f"must be ≥ 0 (0: off), got {self.off_surface_loss_mult}.",
        )
        require(
            self.masked_opacity_loss_mult >= 0,
            f"{option}masked-opacity-loss-mult",
            f"must be ≥ 0 (0: off), got {self.masked_opacity_loss_mult}.",
        )
        require(self.depth_std > 0, f"{option}depth-std", f"must be > 0 (the poses' units), got {self.depth_std}.")
        require(
            self.surface_quantile is None or 0 < self.surface_quantile <= 0.5,
            f"{option}surface-quantile",
            "must lie in (0, 0.5] (a ray hits a surface once it accumulates 0.5 of opacity; 0.5 is the median) or be "
            f"None (0.5 with depth, 0.4 without), got {self.surface_quantile}.",
        )
        require(self.head_in_dim >= 1, f"{option}head-in-dim", f"must be ≥ 1, got {self.head_in_dim}.")
