"""JacobiNeRF model: nerfacto with a shapeable RGB head, closed-form Jacobians and MI shaping.

One ``ns-train`` run trains photometrically until ``shaping_start_step``, then adds
``λ L_MIG + γ L_norm`` (see :mod:`jacobinerf_ns.shaping`) on a contrastive subset of each ray batch.
``shaping_start_step = -1`` trains the identical field without shaping (the paper's plain-NeRF baseline).
When the batch has depth maps, nerfstudio's depth loss is added as depth-nerfacto adds it.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from functools import partial
from typing import Callable, Dict, Iterator, List, Literal, Optional

import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.field_components.field_heads import FieldHeadNames
from nerfstudio.model_components.losses import DepthLossType, depth_loss, lossfun_distortion, ray_samples_to_sdist
from nerfstudio.models.nerfacto import NerfactoModel
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor

from jacobinerf_ns import compat, jacobians
from jacobinerf_ns.field import HEAD_FEATURES, JacobiNerfField
from jacobinerf_ns.jacobians import HeadInputs
from jacobinerf_ns.model_config import (  # saved config.yml files name JacobiNerfModelConfig here too
    DEPTH_IMAGE,
    SCENE_UNITS_PER_POSE_UNIT,
    JacobiNerfModelConfig,
)
from jacobinerf_ns.probe import SURFACE_SCORES, Probe, probe_responses
from jacobinerf_ns.shaping import AdaptiveThreshold, mi_shaping_losses
from jacobinerf_ns.surface_depth import (
    QUANTILE_WITH_DEPTH,
    QUANTILE_WITHOUT_DEPTH,
    SURFACE_SHARE,
    QuantileDepthRenderer,
    surface_share,
)
from jacobinerf_ns.surrogates import MASKED, SURROGATE, SURROGATE_IMAGES, affinity
from jacobinerf_ns.view_cache import FieldView, ViewCache, answers

JACOBIAN = "jacobian"
DIRECTIONS_NORM = "directions_norm"
DISTORTION_WITH_DEPTH = "distortion_with_depth"
OFF_SURFACE = "off_surface"
MASKED_SEE_THROUGH = "masked_see_through"
DISTORTION_ON_VOID = "distortion_on_void"
RESPONSE_CHUNK_BYTES = 1 << 28
"""Eval chunks shrink so that a chunk's per-sample response products stay under this size."""
RESPONSE_CHUNK_MIN_RAYS = 256
VIEW_JACOBIANS, VIEW_POINTS = "view_jacobians", "view_points"
"""A field pass's per-pixel flat ray Jacobians and surface points while :meth:`JacobiNerfModel._field_view` gathers
them (never in a render's outputs)."""


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


def weight_off_surface(weights: Tensor, ray_samples, distance: Tensor, margin: float) -> Tensor:
    """``(R,)`` the share of each ray's weight farther than ``margin`` from ``distance`` ``(R, 1)`` along it (the light
    it stops before that surface, plus what it lets past): ``1 − Σ_{|t_i − distance| ≤ margin} w_i``, ``t_i`` the
    samples' midpoints as the depth loss takes them; weights ``(R, N, 1)``."""
    steps = (ray_samples.frustums.starts + ray_samples.frustums.ends) / 2
    return 1.0 - (weights * ((steps - distance[:, None]).abs() <= margin)).sum(dim=(-2, -1))


def per_ray_distortion(outputs: Dict) -> Tensor:
    """``(R,)`` nerfacto's distortion loss of each ray, on the final sampler's weights (its ``distortion`` metric is
    their mean)."""
    return lossfun_distortion(
        ray_samples_to_sdist(outputs["ray_samples_list"][-1]), outputs["weights_list"][-1][..., 0]
    )


class JacobiNerfModel(NerfactoModel):
    config: JacobiNerfModelConfig

    def populate_modules(self) -> None:
        implementation = resolve_implementation(self.config.implementation)
        self.config.implementation = implementation
        # nerfacto's wiring, with our field and an LPIPS that does not download at construction
        with compat.nerfacto_parts(partial(JacobiNerfField, head_in_dim=self.config.head_in_dim)):
            super().populate_modules()
        compat.check_nerfacto_parts(self, JacobiNerfField)
        self.renderer_depth = QuantileDepthRenderer(self.surface_quantile)
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
        self.surrogate: Optional[str] = None
        """The run's ``--pipeline.datamanager.surrogate``, set by the pipeline: :attr:`shaped_with_masks` reads it."""
        self.probe: Optional[Probe] = None
        """What every eval render computes besides colour (:meth:`probing` sets it for a block; the viewer keeps its
        state here). nerfstudio renders, and calls the viewer panel's callbacks, under the viewer's lock, so a change
        is never seen halfway through a render."""
        self.score_eval_image: Optional[Callable[[int, dict], None]] = None
        """Given each eval image nerfstudio scores (its index in the eval split, and its render): :meth:`scoring`."""
        self.view_cache: Optional[ViewCache] = None
        """Set by the viewer: a render of the camera rendered last reuses its field pass when the probe allows
        (:mod:`jacobinerf_ns.view_cache`), so a click re-labels the view without a field render; cleared by every
        training step."""

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

    @property
    def shaped_with_masks(self) -> bool:
        """Whether this run shapes with masks: the masks surrogate and a shaping start ≥ 0."""
        return self.surrogate == "masks" and self.config.shaping_start_step >= 0

    @property
    def trained_with_depth(self) -> bool:
        """Whether the depth loss trains this run: the scene has depth maps and the loss a weight."""
        return self.config.depth_loss_mult > 0 and SCENE_UNITS_PER_POSE_UNIT in self.kwargs["metadata"]

    @property
    def distortion_start_step(self) -> int:
        """The step from which nerfacto's distortion loss counts: ``distortion_loss_start_step``, else the shaping
        start in a run shaped with masks that the depth loss does not train, else 0
        (docs/training.md#distortion-start)."""
        if self.config.distortion_loss_start_step is not None:
            return self.config.distortion_loss_start_step
        return self.config.shaping_start_step if self.shaped_with_masks and not self.trained_with_depth else 0

    @property
    def distortion_on_void(self) -> bool:
        """Whether, before :attr:`distortion_start_step`, the distortion loss stays on the rays no mask covers:
        ``distortion_loss_on_void`` (None: on) where it can act, a run shaped with masks with a start step > 0."""
        acts = self.shaped_with_masks and self.distortion_start_step > 0
        return acts and self.config.distortion_loss_on_void is not False

    def distortion_on_void_at(self, step: int) -> bool:
        """Whether training step ``step`` keeps the distortion loss on the void rays only: :attr:`distortion_on_void`
        and a step before :attr:`distortion_start_step`."""
        return self.distortion_on_void and step < self.distortion_start_step

    def reads_masked_rays(self, step: int) -> bool:
        """Whether the training step ``step`` reads which rays a mask covers (``batch["masked"]``): the masked-opacity
        loss, or the distortion loss on void before its start."""
        return self.config.masked_opacity_loss_mult > 0 or self.distortion_on_void_at(step)

    @property
    def surface_quantile(self) -> float:
        """Where a ray's ``depth`` output is read (``surface_quantile``): the option, else the median on a run the depth
        loss trained, else :data:`QUANTILE_WITHOUT_DEPTH`."""
        if self.config.surface_quantile is not None:
            return self.config.surface_quantile
        return QUANTILE_WITH_DEPTH if self.trained_with_depth else QUANTILE_WITHOUT_DEPTH

    def head_parameters(self):
        """The RGB head's ``(W, b)`` (``b`` is shaped, and perturbed, only with ``shape_bias``)."""
        head = self.field.rgb_head
        return head.weight, head.bias

    def get_outputs(self, ray_bundle: RayBundle):
        """nerfacto's outputs; in eval, each ray's :data:`SURFACE_SHARE`; while training, the rays' direction norms (the
        depth loss turns z-depth into distance along the ray with them, as depth-nerfacto does) and, while shaping, the
        contrastive rays' Jacobians."""
        if not self.training:
            outputs, _ = self._eval_pass(ray_bundle)
        elif not self.shaping_active:
            outputs = super().get_outputs(ray_bundle)
        else:
            with self.field.recording() as captured:
                outputs = super().get_outputs(ray_bundle)
            head = self._head_inputs(*captured[-1])
            count = self.config.contrastive_batch_size
            outputs[JACOBIAN] = jacobians.flatten(
                jacobians.ray_jacobian(
                    head.weights[:count], head.rgb[:count], head.features[:count], self.config.shape_bias
                )
            )
        if self.training and ray_bundle.metadata is not None and DIRECTIONS_NORM in ray_bundle.metadata:
            outputs[DIRECTIONS_NORM] = ray_bundle.metadata[DIRECTIONS_NORM]
        return outputs

    def _eval_pass(self, ray_bundle: RayBundle):
        """nerfacto's outputs of an eval pass with each ray's :data:`SURFACE_SHARE` at its rendered depth, and the
        final sampler's ``(ray_samples, field_outputs)`` of the same pass."""
        with self.field.recording() as captured:
            outputs = super().get_outputs(ray_bundle)
        ray_samples, field_outputs = captured[-1]
        weights = ray_samples.get_weights(field_outputs[FieldHeadNames.DENSITY])[..., 0]
        starts, ends = ray_samples.frustums.starts[..., 0], ray_samples.frustums.ends[..., 0]
        outputs[SURFACE_SHARE] = surface_share(weights, starts, ends, outputs["depth"])
        return outputs, (ray_samples, field_outputs)

    def _probed_outputs(self, ray_bundle: RayBundle, probe: Probe):
        """Eval outputs of rays with ``probe``'s responses, surface scores and recolouring."""
        outputs, last_pass = self._eval_pass(ray_bundle)
        head = self._head_inputs(*last_pass)
        weight, bias = self.head_parameters()
        if probe.sources is not None:
            outputs.update(probe_responses(head, weight, bias, probe, self.config.shape_bias))
        if probe.surface is not None:
            ray = jacobians.ray_jacobian(head.weights, head.rgb, head.features, self.config.shape_bias)
            flat = jacobians.flatten(ray)
            points = ray_bundle.origins + ray_bundle.directions * outputs["depth"].reshape(-1, 1)
            outputs[SURFACE_SCORES] = probe.surface(flat, points).to(flat)
        if probe.recolor is not None:
            change = jacobians.recolored(head, weight, bias, probe.recolor.to(weight))
            outputs["rgb"] = (outputs["rgb"] + change).clamp(0.0, 1.0)
        return outputs

    # ---- losses and schedule -----------------------------------------------------------------------------------

    def get_metrics_dict(self, outputs, batch) -> Dict[str, Tensor]:
        """nerfacto's metrics, plus depth-nerfacto's DS-NeRF ``depth_loss`` (averaged over the proposal and final
        samplers' weights) on a training batch with depth maps; depth 0 (invalid) is masked out by the loss. Then
        ``distortion_with_depth``: the part of nerfacto's ``distortion`` (a mean over rays) from the rays with a
        valid depth, which ``distortion_loss_mult_with_depth`` weighs, and ``off_surface``: the mean over rays of the
        weight a ray with a valid depth puts away from it (:func:`weight_off_surface`), which ``off_surface_loss_mult``
        weighs. And ``masked_see_through``: the mean over rays of the light a masked ray without a judged depth lets
        past (``1 − accumulation``), which ``masked_opacity_loss_mult`` weighs; before the distortion loss's start step
        with the loss on void (:attr:`distortion_on_void`), ``distortion_on_void``: the part of nerfacto's
        ``distortion`` from the rays no mask covers."""
        metrics_dict = super().get_metrics_dict(outputs, batch)
        if self.training and self.config.depth_loss_mult > 0 and DEPTH_IMAGE in batch:
            termination_depth = batch[DEPTH_IMAGE].to(self.device)
            valid = termination_depth[..., 0] > 0
            std = self.config.depth_std * float(self.kwargs["metadata"][SCENE_UNITS_PER_POSE_UNIT])  # scene units
            if self.config.off_surface_loss_mult > 0:
                distance = termination_depth * (1.0 if self.config.is_euclidean_depth else outputs[DIRECTIONS_NORM])
                margin = 2 * std
                off = weight_off_surface(outputs["weights_list"][-1], outputs["ray_samples_list"][-1], distance, margin)
                metrics_dict[OFF_SURFACE] = torch.mean(off * valid)
            if self.config.distortion_loss_mult_with_depth is not None:
                metrics_dict[DISTORTION_WITH_DEPTH] = torch.mean(per_ray_distortion(outputs) * valid)
            sigma = torch.tensor([std**2], device=self.device)
            samplers = list(zip(outputs["weights_list"], outputs["ray_samples_list"]))
            metrics_dict["depth_loss"] = sum(
                depth_loss(
                    weights=weights,
                    ray_samples=ray_samples,
                    termination_depth=termination_depth,
                    predicted_depth=outputs["expected_depth"],
                    sigma=sigma,
                    directions_norm=outputs[DIRECTIONS_NORM],
                    is_euclidean=self.config.is_euclidean_depth,
                    depth_loss_type=DepthLossType.DS_NERF,
                )
                for weights, ray_samples in samplers
            ) / len(samplers)
        if self.training and self.distortion_on_void_at(self.step) and MASKED in batch:
            metrics_dict[DISTORTION_ON_VOID] = torch.mean(per_ray_distortion(outputs) * ~batch[MASKED].to(self.device))
        if self.training and self.config.masked_opacity_loss_mult > 0 and MASKED in batch:
            unjudged_masked = batch[MASKED].to(self.device)
            if OFF_SURFACE in metrics_dict:  # the off-surface loss judges the rays with a valid depth
                unjudged_masked = unjudged_masked & ~valid
            metrics_dict[MASKED_SEE_THROUGH] = torch.mean((1.0 - outputs["accumulation"][..., 0]) * unjudged_masked)
        return metrics_dict

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        loss_dict = super().get_loss_dict(outputs, batch, metrics_dict)
        if metrics_dict is not None and "depth_loss" in metrics_dict:
            loss_dict["depth_loss"] = self.config.depth_loss_mult * metrics_dict["depth_loss"]
        if metrics_dict is not None and OFF_SURFACE in metrics_dict:
            loss_dict["off_surface_loss"] = self.config.off_surface_loss_mult * metrics_dict[OFF_SURFACE]
        if metrics_dict is not None and MASKED_SEE_THROUGH in metrics_dict:
            loss_dict["masked_opacity_loss"] = self.config.masked_opacity_loss_mult * metrics_dict[MASKED_SEE_THROUGH]
        if metrics_dict is not None and DISTORTION_WITH_DEPTH in metrics_dict:
            with_depth = metrics_dict[DISTORTION_WITH_DEPTH]
            loss_dict["distortion_loss"] = (
                self.config.distortion_loss_mult * (metrics_dict["distortion"] - with_depth)
                + self.config.distortion_loss_mult_with_depth * with_depth
            )
        if self.training and self.step < self.distortion_start_step:
            loss_dict.pop("distortion_loss", None)
            if metrics_dict is not None and DISTORTION_ON_VOID in metrics_dict:
                loss_dict["distortion_loss"] = self.config.distortion_loss_mult * metrics_dict[DISTORTION_ON_VOID]
        if JACOBIAN not in outputs:
            return loss_dict
        if SURROGATE not in batch:
            raise RuntimeError(
                "MI shaping is on but the batch has no surrogate descriptors: use the jacobinerf datamanager."
            )
        count = outputs[JACOBIAN].shape[0]
        images = batch.get(SURROGATE_IMAGES)
        images = None if images is None else images[:count].to(self.device)
        shaping = mi_shaping_losses(
            outputs[JACOBIAN],
            affinity(batch[SURROGATE][:count].to(self.device)),
            float(self.threshold),
            self.config.temperature,
            comparable=None if images is None else images[:, None] == images[None, :],
        )
        loss_dict["mi_loss"] = self.config.mi_loss_mult * shaping.mi
        loss_dict["jacobian_norm_loss"] = self.config.norm_loss_mult * shaping.norm
        if metrics_dict is not None:
            metrics_dict.update(shaping.stats)
            metrics_dict["shaping/threshold"] = self.threshold.value.clone()
        self._positive_counts = shaping.positive_counts
        return loss_dict

    @contextlib.contextmanager
    def probing(self, probe: Optional[Probe]) -> Iterator[None]:
        """Within the block, eval renders compute ``probe`` (:attr:`probe`); the former probe is restored afterwards."""
        previous, self.probe = self.probe, probe
        try:
            yield
        finally:
            self.probe = previous

    @contextlib.contextmanager
    def scoring(self, score: Callable[[int, dict], None]) -> Iterator[None]:
        """Within the block, each eval image nerfstudio scores is also given to ``score(index, outputs)`` (ns-eval's
        propagation metrics read the render its photometric metrics are computed on)."""
        previous, self.score_eval_image = self.score_eval_image, score
        try:
            yield
        finally:
            self.score_eval_image = previous

    @torch.no_grad()
    def get_outputs_for_camera(self, camera: Cameras, obb_box=None) -> Dict[str, Tensor]:
        """Eval render with :attr:`probe` (read once, so a frame never mixes two probes); rays in chunks that shrink
        with the number of clicks (their responses are per sample). With :attr:`view_cache`, from the camera's kept
        field pass where it answers the probe."""
        probe = self.probe
        view = None
        if self.view_cache is not None and obb_box is None and ViewCache.serves(probe):
            view = self.view_cache.view(camera, lambda: self._field_view(camera))
        if view is not None and answers(view, probe):
            outputs = view.probed(probe)
        else:
            chunk = self.config.eval_num_rays_per_chunk
            if probe is not None and probe.sources is not None:
                per_ray = self.config.num_nerf_samples_per_ray * len(probe.sources) * 3 * 4  # bytes of ⟨h_i, J_k[c]⟩
                chunk = int(min(chunk, max(RESPONSE_CHUNK_MIN_RAYS, RESPONSE_CHUNK_BYTES // per_ray)))
            evaluate = self.get_outputs if probe is None else partial(self._probed_outputs, probe=probe)
            outputs = self._render_in_chunks(camera, chunk, evaluate, obb_box)
        return probe.decorate(outputs, camera) if probe is not None and probe.decorate is not None else outputs

    def _render_in_chunks(
        self, camera: Cameras, chunk: int, evaluate: Callable[[RayBundle], dict], obb_box=None
    ) -> Dict[str, Tensor]:
        """``evaluate``'s outputs of ``camera``'s rays (collided), ``chunk`` rays at a time, as ``(H, W, ·)``."""
        bundle = camera.generate_rays(camera_indices=0, keep_shape=True, obb_box=obb_box)
        height, width = bundle.origins.shape[:2]
        pieces = defaultdict(list)
        for start in range(0, height * width, chunk):
            rays = bundle.get_row_major_sliced_ray_bundle(start, start + chunk).to(self.device)
            rays = self.collider(rays) if self.collider is not None else rays
            for name, output in evaluate(rays).items():
                if isinstance(output, Tensor):
                    pieces[name].append(output.to(bundle.origins.device))
        return {name: torch.cat(parts).view(height, width, -1) for name, parts in pieces.items()}

    @torch.no_grad()
    def _field_view(self, camera: Cameras) -> FieldView:
        """One eval pass of ``camera`` without a probe, with each pixel's flat ray Jacobian and surface point."""
        non_negative = []

        def evaluate(rays: RayBundle) -> dict:
            outputs, last_pass = self._eval_pass(rays)
            head = self._head_inputs(*last_pass)
            ray = jacobians.ray_jacobian(head.weights, head.rgb, head.features, self.config.shape_bias)
            non_negative.append(jacobians.non_negative(head.features) and jacobians.non_negative(head.weights))
            points = rays.origins + rays.directions * outputs["depth"].reshape(-1, 1)
            return {**outputs, VIEW_JACOBIANS: jacobians.flatten(ray), VIEW_POINTS: points}

        outputs = self._render_in_chunks(camera, self.config.eval_num_rays_per_chunk, evaluate)
        flat, points = outputs.pop(VIEW_JACOBIANS).flatten(0, 1), outputs.pop(VIEW_POINTS).flatten(0, 1)
        return FieldView(outputs, flat, points, all(non_negative))

    def get_image_metrics_and_images(self, outputs, batch):
        if self.score_eval_image is not None:
            self.score_eval_image(int(batch["image_idx"]), outputs)
        metrics, images = super().get_image_metrics_and_images(outputs, batch)
        if not self.lpips.available:
            metrics.pop("lpips", None)
        return metrics, images

    def warn_about_the_schedule(self, trainer, pipeline) -> None:
        """Warnings, before training starts, for a run whose shaping, distortion loss or masked-opacity loss would
        silently not happen as asked; and where the distortion loss's default start waits for shaping, a line saying
        so."""
        start = self.config.shaping_start_step
        if self.config.distortion_loss_start_step is None and self.distortion_start_step > 0:
            before = "on the rays no mask covers only" if self.distortion_on_void else "off"
            CONSOLE.print(
                "jacobinerf: shaped with masks and trained without depth maps: nerfacto's distortion loss counts "
                f"from step {self.distortion_start_step} (the shaping start), before it {before} "
                "(docs/training.md#no-depth-defaults)."
            )
        if trainer is not None:
            first = compat.trainer_start_step(trainer)
            last = first + trainer.config.max_num_iterations - 1
            late = {"shaping-start-step": (start, "it will not shape")} if start >= 0 else {}
            if self.config.distortion_loss_mult > 0 and self.distortion_start_step > last:
                if self.config.distortion_loss_start_step is not None:
                    late["distortion-loss-start-step"] = (
                        self.distortion_start_step,
                        "the distortion loss stays off for the whole run",
                    )
                else:  # it waits for shaping (a run shaped with masks, without depth maps)
                    late["shaping-start-step"] = (
                        start,
                        "it will not shape, and the distortion loss, which waits for shaping in a run shaped with "
                        "masks without depth maps, stays off",
                    )
            for option, (step, consequence) in late.items():
                if step > last:
                    CONSOLE.print(
                        f"[yellow]jacobinerf: --pipeline.model.{option} {step} is after the last step of this run "
                        f"({last}, from step {first}): {consequence}. Lower it or raise --max-num-iterations."
                    )
        if self.config.masked_opacity_loss_mult > 0 and not self.shaped_with_masks:
            CONSOLE.print(
                "[yellow]jacobinerf: --pipeline.model.masked-opacity-loss-mult needs masks: it acts in a run shaped "
                "with --pipeline.datamanager.surrogate masks (and a shaping start ≥ 0); this run trains without it."
            )
        if self.config.distortion_loss_on_void and not self.distortion_on_void:
            CONSOLE.print(
                "[yellow]jacobinerf: --pipeline.model.distortion-loss-on-void acts before "
                "--pipeline.model.distortion-loss-start-step (> 0) in a run shaped with "
                "--pipeline.datamanager.surrogate masks; this run trains without it."
            )
        datamanager = getattr(getattr(pipeline, "datamanager", None), "config", None)
        rays = getattr(datamanager, "train_num_rays_per_batch", None)
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
            self.step = step  # nerfacto's attribute, which it sets only with its proposal-weight annealing
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

        def forget_the_view(step: int) -> None:
            if self.view_cache is not None:
                self.view_cache.clear()

        callbacks.append(TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], update_threshold))
        callbacks.append(TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], forget_the_view))
        return callbacks
