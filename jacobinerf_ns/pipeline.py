"""JacobiNeRF pipeline: prepares the MI surrogate before training starts, so bad surrogate options fail fast."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Type

from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig


@dataclass
class JacobiNerfPipelineConfig(VanillaPipelineConfig):
    _target: Type = field(default_factory=lambda: JacobiNerfPipeline)


class JacobiNerfPipeline(VanillaPipeline):
    config: JacobiNerfPipelineConfig

    def __init__(self, config: JacobiNerfPipelineConfig, *args, test_mode: str = "val", **kwargs) -> None:
        super().__init__(config, *args, test_mode=test_mode, **kwargs)
        if test_mode == "val" and self.model.config.shaping_start_step >= 0:
            self.datamanager.prepare_surrogate()
