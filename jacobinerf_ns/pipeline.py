"""JacobiNeRF pipeline: prepares the MI surrogate before training, adds label-propagation metrics to ``ns-eval``, and
owns the viewer panel."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable, Dict, List, Optional

from nerfstudio.pipelines.base_pipeline import VanillaPipeline
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor

from jacobinerf_ns import cache, compat, errors
from jacobinerf_ns.errors import JacobiNerfError
from jacobinerf_ns.evaluation import PropagationEvaluation
from jacobinerf_ns.labels import INSTANCES, LABEL_KINDS, load_label_maps
from jacobinerf_ns.pipeline_config import JacobiNerfPipelineConfig  # saved config.yml files name it here too
from jacobinerf_ns.propagation.protocol import PropagationViews
from jacobinerf_ns.viewer.panel import JacobiNerfPanel

DINO_METHODS = ("dino-2d", "dino-field")


class JacobiNerfPipeline(VanillaPipeline):
    config: JacobiNerfPipelineConfig

    def __init__(self, config: JacobiNerfPipelineConfig, *args, test_mode: str = "val", **kwargs) -> None:
        errors.report_user_errors()  # ns-train / ns-eval / ns-viewer / ns-render of a jacobinerf run
        compat.check_checkpoint_loads()  # before nerfstudio loads a checkpoint into this pipeline
        config.model.validate()
        config.datamanager.validate()
        super().__init__(config, *args, test_mode=test_mode, **kwargs)
        config.propagation.validate(len(self.datamanager.train_dataparser_outputs.cameras))
        # found by nerfstudio's viewer (ns-viewer, and live in ns-train)
        self.jacobinerf = JacobiNerfPanel(self.model, self.datamanager)
        # the only rays shaping compares, and when it starts
        self.datamanager.set_contrastive_batch(
            self.model.config.contrastive_batch_size, self.model.config.shaping_start_step
        )
        self.model.surrogate = config.datamanager.surrogate
        self.datamanager.marks_masked_rays = self.model.reads_masked_rays
        if test_mode == "val" and self.model.config.shaping_start_step >= 0:
            self.datamanager.prepare_surrogate()

    def get_average_eval_image_metrics(
        self, step: Optional[int] = None, output_path: Optional[Path] = None, get_std: bool = False
    ):
        """ns-eval's photometric metrics and the propagation metrics. With the Jacobian method, the photometric render
        of each eval view carries every draw's responses: each eval view is rendered once for both."""
        evaluation = self.propagation_evaluation()
        probe = None if evaluation is None else evaluation.target_probe()
        if probe is None:
            metrics = super().get_average_eval_image_metrics(step=step, output_path=output_path, get_std=get_std)
        else:
            with self.model.probing(probe), self.model.scoring(evaluation.score):
                metrics = super().get_average_eval_image_metrics(step=step, output_path=output_path, get_std=get_std)
        if evaluation is not None:
            evaluation.score_the_rest()
            metrics.update(evaluation.metrics())
        return metrics

    def propagation_metrics(self) -> Dict[str, float]:
        """Semantic (and ``instance_``-prefixed) propagation metrics; empty, with a message, without labels."""
        evaluation = self.propagation_evaluation()
        if evaluation is None:
            return {}
        evaluation.score_the_rest()
        return evaluation.metrics()

    def propagation_evaluation(self) -> Optional[PropagationEvaluation]:
        """Every draw of the protocol fitted for every label kind of the data; ``None`` (with a message) without
        labels."""
        train_outputs = self.datamanager.train_dataparser_outputs
        eval_outputs = compat.eval_dataparser_outputs(self.datamanager)
        kinds = [kind for kind in LABEL_KINDS if kind in train_outputs.metadata and kind in eval_outputs.metadata]
        if not kinds:
            CONSOLE.print(
                "[yellow]jacobinerf: this dataset has no semantic/instance labels, so no label-propagation metrics."
            )
            return None
        protocol = self.config.propagation
        tasks = {}
        for kind in kinds:
            targets = [self.label_map(eval_outputs, kind, i) for i in range(len(eval_outputs.cameras))]
            prefix = "instance_" if kind == INSTANCES else ""
            tasks[prefix] = [self.propagation_views(kind, view, targets) for view in protocol.draw_views()]
        CONSOLE.print(
            f"jacobinerf: propagating {' and '.join(kinds)} from training views {list(protocol.draw_views())} with "
            f"seeds {list(protocol.draw_seeds())} to {len(eval_outputs.cameras)} eval views ({protocol.method})"
        )
        return PropagationEvaluation(self.model, tasks, protocol)

    @staticmethod
    def label_map(outputs, kind: str, index: int) -> Optional[Tensor]:
        """``(H, W)`` ids of frame ``index`` of a split, at its camera's resolution (``None`` without ``kind``)."""
        if kind not in outputs.metadata:
            return None
        camera = outputs.cameras[index : index + 1]
        return load_label_maps([outputs.metadata[kind].filenames[index]], int(camera.height), int(camera.width))[0]

    def propagation_views(
        self, kind: str, source_view: Optional[int] = None, target_labels: Optional[List[Optional[Tensor]]] = None
    ) -> PropagationViews:
        """Source = training view ``source_view`` (default: the protocol's first) with its ``kind`` labels; targets =
        every eval view."""
        train_outputs = self.datamanager.train_dataparser_outputs
        eval_outputs = compat.eval_dataparser_outputs(self.datamanager)
        if kind not in train_outputs.metadata:
            raise JacobiNerfError(
                f"This dataset has no {kind} labels: propagating them needs a labelled source view (--kind)."
            )
        index = self.config.propagation.draw_views()[0] if source_view is None else source_view
        method = self.config.propagation.method
        eval_cameras = eval_outputs.cameras
        if target_labels is None:
            target_labels = [self.label_map(eval_outputs, kind, i) for i in range(len(eval_cameras))]
        return PropagationViews(
            source_camera=train_outputs.cameras[index : index + 1],
            source_labels=self.label_map(train_outputs, kind, index),
            target_cameras=[eval_cameras[i : i + 1] for i in range(len(eval_cameras))],
            target_labels=target_labels,
            source_image=train_outputs.image_filenames[index],
            target_images=list(eval_outputs.image_filenames),
            train_cameras=train_outputs.cameras,
            train_images=list(train_outputs.image_filenames),
            train_masks=self.datamanager.training_masks() if method == "jacobian-surface" else None,
            image_features=self.dino_features() if method in DINO_METHODS else None,
            source_index=index,
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
