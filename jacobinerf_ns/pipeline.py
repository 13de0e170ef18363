"""JacobiNeRF pipeline: prepares the MI surrogate before training, and adds label-propagation metrics to ``ns-eval``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Type

from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from nerfstudio.utils.rich_utils import CONSOLE

from jacobinerf_ns.dataparsers.labels import INSTANCES, SEMANTICS
from jacobinerf_ns.evaluation import PropagationProtocol, evaluate_propagation
from jacobinerf_ns.surrogates import load_label_maps


@dataclass
class JacobiNerfPipelineConfig(VanillaPipelineConfig):
    _target: Type = field(default_factory=lambda: JacobiNerfPipeline)
    propagation: PropagationProtocol = field(default_factory=PropagationProtocol)
    """Label-propagation protocol used by ns-eval (and by the trainer's all-images evaluation)."""


class JacobiNerfPipeline(VanillaPipeline):
    config: JacobiNerfPipelineConfig

    def __init__(self, config: JacobiNerfPipelineConfig, *args, test_mode: str = "val", **kwargs) -> None:
        super().__init__(config, *args, test_mode=test_mode, **kwargs)
        if test_mode == "val" and self.model.config.shaping_start_step >= 0:
            self.datamanager.prepare_surrogate()

    def get_average_eval_image_metrics(self, step: Optional[int] = None, output_path: Optional[Path] = None, get_std: bool = False):
        metrics = super().get_average_eval_image_metrics(step=step, output_path=output_path, get_std=get_std)
        metrics.update(self.propagation_metrics())
        return metrics

    def propagation_metrics(self) -> Dict[str, float]:
        """Semantic (and ``instance_``-prefixed) propagation metrics; empty with a message when the data has no labels."""
        train_outputs = self.datamanager.train_dataparser_outputs
        eval_outputs = self.datamanager.eval_dataset._dataparser_outputs
        kinds = [kind for kind in (SEMANTICS, INSTANCES) if kind in train_outputs.metadata and kind in eval_outputs.metadata]
        if not kinds:
            CONSOLE.print("[yellow]jacobinerf: this dataset has no semantic/instance labels, so no label-propagation metrics.")
            return {}
        protocol = self.config.propagation
        source_camera = train_outputs.cameras[protocol.source_view : protocol.source_view + 1]
        eval_cameras = eval_outputs.cameras
        targets = [eval_cameras[i : i + 1] for i in range(len(eval_cameras))]
        results: Dict[str, float] = {}
        for kind in kinds:
            source_file = train_outputs.metadata[kind].filenames[protocol.source_view]
            source = load_label_maps([source_file], int(source_camera.height), int(source_camera.width))[0]
            target_labels = [
                load_label_maps([name], int(camera.height), int(camera.width))[0]
                for name, camera in zip(eval_outputs.metadata[kind].filenames, targets)
            ]
            CONSOLE.print(f"jacobinerf: propagating {kind} from training view {protocol.source_view} to {len(targets)} eval views")
            prefix = "instance_" if kind == INSTANCES else ""
            results.update(evaluate_propagation(self.model, source_camera, source, targets, target_labels, protocol, prefix))
        return results
