"""JacobiNeRF model: nerfacto with a shapeable RGB head, closed-form Jacobians and MI shaping.

One ``ns-train`` run trains photometrically until ``shaping_start_step``, then adds
``λ L_MIG + γ L_norm`` (see :mod:`jacobinerf_ns.shaping`) on a contrastive subset of each ray batch.
``shaping_start_step = -1`` trains the identical field without shaping (the paper's plain-NeRF baseline).
"""

from __future__ import annotations

import contextlib
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from functools import partial
from typing import Dict, Iterator, List, Literal, Optional, Type

import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.field_components.field_heads import FieldHeadNames
from nerfstudio.models.nerfacto import NerfactoModel, NerfactoModelConfig
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor

from jacobinerf_ns import compat, jacobians
from jacobinerf_ns.errors import require
from jacobinerf_ns.field import HEAD_FEATURES, JacobiNerfField
from jacobinerf_ns.jacobians import HeadInputs
from jacobinerf_ns.propagation.probe import Probe, probe_responses
from jacobinerf_ns.shaping import AdaptiveThreshold, mi_shaping_losses
from jacobinerf_ns.surrogates import affinity

JACOBIAN = "jacobian"
RESPONSE_CHUNK_BYTES = 1 << 28
"""Eval chunks shrink so that a chunk's per-sample response products stay under this size."""
RESPONSE_CHUNK_MIN_RAYS = 256


@dataclass
class JacobiNerfModelConfig(NerfactoModelConfig):
    """Nerfacto + shapeable RGB head + MI shaping (defaults: paper / original code)."""

    _target: Type = field(default_factory=lambda: JacobiNerfModel)
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
        require(self.head_in_dim >= 1, f"{option}head-in-dim", f"must be ≥ 1, got {self.head_in_dim}.")


def resolve_implementation(requested: str) -> Literal["tcnn", "torch"]:
    """``auto`` → tcnn when it imports and CUDA is there, otherwise torch (with one warning)."""
    if requested != "auto":
        return requested  # type: ignore[return-value]
    try:
        import tinycudann  # noqa: F401

        if torch.cuda.is_available():
            return "tcnn"
    except ImportError:
        pass
    CONSOLE.print(
        "[yellow]jacobinerf: tinycudann/CUDA not available, using nerfstudio's torch field (slower, same results)."
    )
    return "torch"


class JacobiNerfModel(NerfactoModel):
    config: JacobiNerfModelConfig

    def populate_modules(self) -> None:
        implementation = resolve_implementation(self.config.implementation)
        self.config.implementation = implementation
        # nerfacto's wiring, with our field and an LPIPS that does not download at construction
        with compat.nerfacto_parts(partial(JacobiNerfField, head_in_dim=self.config.head_in_dim)):
            super().populate_modules()
        compat.check_nerfacto_parts(self, JacobiNerfField)
        self.threshold = AdaptiveThreshold(
            initial=self.config.threshold_init,
            minimum=self.config.threshold_min,
            maximum=self.config.threshold_max,
            step=self.config.threshold_step,
            low_ratio=self.config.positive_ratio_low,
            high_ratio=self.config.positive_ratio_high,
        )
        self.shaping_active = False
        self._positive_counts = None
        self.probe: Optional[Probe] = None
        """Rendered by eval renders that are given no probe of their own (the viewer publishes its state here)."""
        self._rendering = threading.local()  # the probe set with `probing`, per thread

    # ---- head inputs and Jacobians ---------------------------------------------------------------------------

    def _head_inputs(self, ray_samples, field_outputs) -> HeadInputs:
        weights = ray_samples.get_weights(field_outputs[FieldHeadNames.DENSITY])
        background = self.renderer_rgb.background_color
        return HeadInputs(
            weights=jacobians.effective_weights(weights, background if isinstance(background, str) else "constant"),
            rgb=field_outputs[FieldHeadNames.RGB],
            features=field_outputs[HEAD_FEATURES],
        )

    def get_outputs_with_head_inputs(self, ray_bundle: RayBundle):
        """``forward`` (collider + ``get_outputs``) plus the :class:`HeadInputs` of the same pass (no second render)."""
        with self.field.recording() as captured:
            outputs = self.forward(ray_bundle)
        ray_samples, field_outputs = captured[-1]
        return outputs, self._head_inputs(ray_samples, field_outputs)

    def head_parameters(self):
        """The RGB head's ``(W, b)`` (``b`` is shaped, and perturbed, only with ``shape_bias``)."""
        head = self.field.rgb_head
        return head.weight, head.bias

    def get_outputs(self, ray_bundle: RayBundle, probe: Optional[Probe] = None):
        """nerfacto's outputs; while training and shaping, the contrastive rays' Jacobians; in eval renders, the
        ``probe``'s responses (and recolouring)."""
        shaping = self.training and self.shaping_active
        probe = None if self.training else probe
        if not (shaping or probe is not None):
            return super().get_outputs(ray_bundle)
        with self.field.recording() as captured:
            outputs = super().get_outputs(ray_bundle)
        head = self._head_inputs(*captured[-1])
        if probe is not None:
            weight, bias = self.head_parameters()
            if probe.sources is not None:
                outputs.update(probe_responses(head, weight, bias, probe, self.config.shape_bias))
            if probe.recolor is not None:
                change = jacobians.recolored(head, weight, bias, probe.recolor.to(weight))
                outputs["rgb"] = (outputs["rgb"] + change).clamp(0.0, 1.0)
            return outputs
        count = self.config.contrastive_batch_size
        outputs[JACOBIAN] = jacobians.flatten(
            jacobians.ray_jacobian(
                head.weights[:count], head.rgb[:count], head.features[:count], self.config.shape_bias
            )
        )
        return outputs

    # ---- losses and schedule -----------------------------------------------------------------------------------

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        loss_dict = super().get_loss_dict(outputs, batch, metrics_dict)
        if JACOBIAN not in outputs:
            return loss_dict
        if "surrogate" not in batch:
            raise RuntimeError(
                "MI shaping is on but the batch has no surrogate descriptors: use the jacobinerf datamanager."
            )
        count = outputs[JACOBIAN].shape[0]
        shaping = mi_shaping_losses(
            outputs[JACOBIAN],
            affinity(batch["surrogate"][:count].to(self.device)),
            float(self.threshold),
            self.config.temperature,
        )
        loss_dict["mi_loss"] = self.config.mi_loss_mult * shaping.mi
        loss_dict["jacobian_norm_loss"] = self.config.norm_loss_mult * shaping.norm
        if metrics_dict is not None:
            metrics_dict.update(shaping.stats)
            metrics_dict["shaping/threshold"] = self.threshold.value.clone()
        self._positive_counts = shaping.positive_counts
        return loss_dict

    @contextlib.contextmanager
    def probing(self, probe: Probe) -> Iterator[None]:
        """Within the block, this thread's renders without a probe of their own use ``probe`` (for renders that
        nerfstudio makes, e.g. ns-eval's; the viewer, in its own thread, keeps :attr:`probe`)."""
        previous, self._rendering.probe = getattr(self._rendering, "probe", None), probe
        try:
            yield
        finally:
            self._rendering.probe = previous

    @torch.no_grad()
    def get_outputs_for_camera(self, camera: Cameras, obb_box=None, probe: Optional[Probe] = None) -> Dict[str, Tensor]:
        """Eval render with ``probe`` (default: :meth:`probing`'s, else :attr:`probe`), read once, so a frame never
        mixes two probes; rays in chunks that shrink with the number of clicks (their responses are per sample)."""
        probe = probe or getattr(self._rendering, "probe", None) or self.probe
        bundle = camera.generate_rays(camera_indices=0, keep_shape=True, obb_box=obb_box)
        height, width = bundle.origins.shape[:2]
        chunk = self.config.eval_num_rays_per_chunk
        if probe is not None and probe.sources is not None:
            per_ray = self.config.num_nerf_samples_per_ray * len(probe.sources) * 3 * 4  # bytes of ⟨h_i, J_k[c]⟩
            chunk = int(min(chunk, max(RESPONSE_CHUNK_MIN_RAYS, RESPONSE_CHUNK_BYTES // per_ray)))
        pieces = defaultdict(list)
        for start in range(0, height * width, chunk):
            rays = bundle.get_row_major_sliced_ray_bundle(start, start + chunk).to(self.device)
            rays = self.collider(rays) if self.collider is not None else rays
            for name, output in self.get_outputs(rays, probe=probe).items():
                if isinstance(output, Tensor):
                    pieces[name].append(output.to(bundle.origins.device))
        outputs = {name: torch.cat(parts).view(height, width, -1) for name, parts in pieces.items()}
        return probe.decorate(outputs, camera) if probe is not None and probe.decorate is not None else outputs

    def get_image_metrics_and_images(self, outputs, batch):
        metrics, images = super().get_image_metrics_and_images(outputs, batch)
        if not self.lpips.available:
            metrics.pop("lpips", None)
        return metrics, images

    def warn_about_the_schedule(self, trainer, pipeline) -> None:
        """Warnings, before training starts, for a run whose shaping would silently not happen as asked."""
        start = self.config.shaping_start_step
        if trainer is not None and start >= 0:
            last = trainer._start_step + trainer.config.max_num_iterations - 1
            if start > last:
                CONSOLE.print(
                    f"[yellow]jacobinerf: --pipeline.model.shaping-start-step {start} is after the last step of this "
                    f"run ({last}, from step {trainer._start_step}): it will not shape. Lower it or raise "
                    "--max-num-iterations."
                )
        rays = getattr(getattr(pipeline, "datamanager", None), "config", None)
        rays = getattr(rays, "train_num_rays_per_batch", None)
        if start >= 0 and rays is not None and self.config.contrastive_batch_size > rays:
            CONSOLE.print(
                f"[yellow]jacobinerf: --pipeline.model.contrastive-batch-size {self.config.contrastive_batch_size} is "
                f"larger than the ray batch ({rays}): the whole batch ({rays} rays) is the contrastive batch."
            )

    def get_training_callbacks(
        self, training_callback_attributes: TrainingCallbackAttributes
    ) -> List[TrainingCallback]:
        callbacks = super().get_training_callbacks(training_callback_attributes)
        pipeline = training_callback_attributes.pipeline
        self.warn_about_the_schedule(training_callback_attributes.trainer, pipeline)

        def switch_phase(step: int) -> None:
            start = self.config.shaping_start_step
            active = start >= 0 and step >= start
            if active and not self.shaping_active:
                CONSOLE.print(f"jacobinerf: MI shaping on from step {step} (threshold {float(self.threshold):.3f})")
                if pipeline is not None and hasattr(pipeline.datamanager, "prepare_surrogate"):
                    pipeline.datamanager.prepare_surrogate()
            self.shaping_active = active

        def update_threshold(step: int) -> None:
            if self._positive_counts is not None:
                self.threshold.update(self._positive_counts)
                self._positive_counts = None

        callbacks.append(TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], switch_phase))
        callbacks.append(TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], update_threshold))
        return callbacks
