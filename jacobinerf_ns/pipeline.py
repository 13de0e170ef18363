"""JacobiNeRF pipeline: prepares the MI surrogate before training, adds label-propagation metrics to ``ns-eval``, and
owns the viewer panel."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Dict, Optional, Type

from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from nerfstudio.utils.rich_utils import CONSOLE

from jacobinerf_ns import cache, compat, errors
from jacobinerf_ns.evaluation import evaluate_propagation
from jacobinerf_ns.labels import INSTANCES, SEMANTICS, load_label_maps
from jacobinerf_ns.propagation.protocol import PropagationProtocol, PropagationViews
from jacobinerf_ns.viewer.panel import JacobiNerfPanel

DINO_METHODS = ("dino-2d", "dino-field")


@dataclass
class JacobiNerfPipelineConfig(VanillaPipelineConfig):
    _target: Type = field(default_factory=lambda: JacobiNerfPipeline)
    propagation: PropagationProtocol = field(default_factory=PropagationProtocol)
    """Label-propagation protocol used by ns-eval (and by the trainer's all-images evaluation)."""


class JacobiNerfPipeline(VanillaPipeline):
    config: JacobiNerfPipelineConfig

    def __init__(self, config: JacobiNerfPipelineConfig, *args, test_mode: str = "val", **kwargs) -> None:
        errors.report_user_errors()  # ns-train / ns-eval / ns-viewer / ns-render of a jacobinerf run
        compat.allow_numpy_scalars()  # before nerfstudio loads a checkpoint into this pipeline (torch >= 2.6)
        super().__init__(config, *args, test_mode=test_mode, **kwargs)
        self.jacobinerf = JacobiNerfPanel(self)  # found by nerfstudio's viewer (ns-viewer, and live in ns-train)
        self.datamanager.surrogate_rays = self.model.config.contrastive_batch_size  # the only rays shaping compares
        if test_mode == "val" and self.model.config.shaping_start_step >= 0:
            self.datamanager.prepare_surrogate()

    def get_average_eval_image_metrics(
        self, step: Optional[int] = None, output_path: Optional[Path] = None, get_std: bool = False
    ):
        metrics = super().get_average_eval_image_metrics(step=step, output_path=output_path, get_std=get_std)
        metrics.update(self.propagation_metrics())
        return metrics

    def propagation_metrics(self) -> Dict[str, float]:
        """Semantic (and ``instance_``-prefixed) propagation metrics; empty, with a message, without labels."""
        train_outputs = self.datamanager.train_dataparser_outputs
        eval_outputs = self.datamanager.eval_dataset._dataparser_outputs
        kinds = [
            kind for kind in (SEMANTICS, INSTANCES) if kind in train_outputs.metadata and kind in eval_outputs.metadata
        ]
        if not kinds:
            CONSOLE.print(
                "[yellow]jacobinerf: this dataset has no semantic/instance labels, so no label-propagation metrics."
            )
            return {}
        protocol = self.config.propagation
        results: Dict[str, float] = {}
        for kind in kinds:
            views = self.propagation_views(kind)
            CONSOLE.print(
                f"jacobinerf: propagating {kind} from training view {protocol.source_view} to "
                f"{len(views.target_cameras)} "
                f"eval views ({protocol.method})"
            )
            prefix = "instance_" if kind == INSTANCES else ""
            results.update(evaluate_propagation(self.model, views, protocol, prefix))
        return results

    def propagation_views(self, kind: str) -> PropagationViews:
        """Source = training view ``propagation.source_view`` with its ``kind`` labels; targets = every eval view."""
        train_outputs = self.datamanager.train_dataparser_outputs
        eval_outputs = self.datamanager.eval_dataset._dataparser_outputs
        if kind not in train_outputs.metadata:
            raise ValueError(f"This dataset has no {kind} labels: propagation needs a labelled source view.")
        index = self.config.propagation.source_view
        if not 0 <= index < len(train_outputs.cameras):
            raise ValueError(
                f"propagation.source_view {index} is not a training view (there are {len(train_outputs.cameras)})."
            )

        def labels(outputs, i: int):
            if kind not in outputs.metadata:
                return None
            camera = outputs.cameras[i : i + 1]
            return load_label_maps([outputs.metadata[kind].filenames[i]], int(camera.height), int(camera.width))[0]

        eval_cameras = eval_outputs.cameras
        return PropagationViews(
            source_camera=train_outputs.cameras[index : index + 1],
            source_labels=labels(train_outputs, index),
            target_cameras=[eval_cameras[i : i + 1] for i in range(len(eval_cameras))],
            target_labels=[labels(eval_outputs, i) for i in range(len(eval_cameras))],
            source_image=train_outputs.image_filenames[index],
            target_images=list(eval_outputs.image_filenames),
            train_cameras=train_outputs.cameras,
            train_images=list(train_outputs.image_filenames),
            image_features=self.dino_features() if self.config.propagation.method in DINO_METHODS else None,
        )

    def dino_features(self) -> Callable:
        """Image files → cached DINO keys (:class:`~jacobinerf_ns.surrogates.feature_cache.FeatureMaps`), with
        ``propagation.dino_weights`` (else the datamanager's, else timm's pretrained ones) and the datamanager's
        settings; fails now (JacobiNerfError) when those weights cannot be had."""
        from jacobinerf_ns.surrogates.dino import DinoExtraction, load_or_extract
        from jacobinerf_ns.surrogates.dino_weights import ensure_available

        datamanager = self.datamanager.config
        extraction = DinoExtraction(
            weights=self.config.propagation.dino_weights or datamanager.dino_weights,
            stride=datamanager.dino_stride,
            short_side=datamanager.dino_short_side,
        )
        ensure_available(extraction.model_name, extraction.weights)
        return partial(
            load_or_extract,
            extraction=extraction,
            cache_dir=cache.cache_root(datamanager.cache_dir),
            device=str(self.device),
        )
