"""The options of the JacobiNeRF pipeline (:mod:`jacobinerf_ns.pipeline`), importable without it: nerfstudio builds
them at plugin load."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig

from jacobinerf_ns.deferred import Deferred
from jacobinerf_ns.propagation.protocol import PropagationProtocol


@dataclass
class JacobiNerfPipelineConfig(VanillaPipelineConfig):
    _target: Callable = field(default_factory=lambda: Deferred("jacobinerf_ns.pipeline", "JacobiNerfPipeline"))
    propagation: PropagationProtocol = field(default_factory=PropagationProtocol)
    """Label-propagation protocol used by ns-eval (and by the trainer's all-images evaluation)."""
