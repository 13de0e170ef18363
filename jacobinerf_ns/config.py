"""nerfstudio entry point of the ``jacobinerf`` method (the dataparsers' is :mod:`jacobinerf_ns.dataparsers.registry`).

Imported by every ``ns-*`` command at start-up: only config dataclasses are built here, and the model and pipeline
they set up are imported when one is built (:class:`~jacobinerf_ns.deferred.Deferred`).
"""

from __future__ import annotations

from nerfstudio.cameras.camera_optimizers import CameraOptimizerConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig
from nerfstudio.plugins.types import MethodSpecification

from jacobinerf_ns.datamanager import JacobiNerfDataManagerConfig
from jacobinerf_ns.dataparsers.nerfstudio_labelled import LabelledNerfstudioDataParserConfig
from jacobinerf_ns.model_config import JacobiNerfModelConfig
from jacobinerf_ns.pipeline_config import JacobiNerfPipelineConfig
from jacobinerf_ns.trainer import SavedOnStartTrainerConfig


def _adam(lr: float, final: float, steps: int = 200000):
    return {
        "optimizer": AdamOptimizerConfig(lr=lr, eps=1e-15),
        "scheduler": ExponentialDecaySchedulerConfig(lr_final=final, max_steps=steps),
    }


jacobinerf = MethodSpecification(
    config=SavedOnStartTrainerConfig(
        method_name="jacobinerf",
        steps_per_eval_batch=500,
        steps_per_save=2000,
        max_num_iterations=30000,
        mixed_precision=True,
        pipeline=JacobiNerfPipelineConfig(
            datamanager=JacobiNerfDataManagerConfig(
                dataparser=LabelledNerfstudioDataParserConfig(),
                train_num_rays_per_batch=4096,
                eval_num_rays_per_batch=4096,
            ),
            model=JacobiNerfModelConfig(
                eval_num_rays_per_chunk=1 << 15,
                average_init_density=0.01,
                camera_optimizer=CameraOptimizerConfig(mode="off"),
            ),
        ),
        optimizers={
            "proposal_networks": _adam(1e-2, 1e-4),
            "fields": _adam(1e-2, 1e-4),
            "camera_opt": _adam(1e-3, 1e-4, 5000),
        },
        vis="viewer",
    ),
    description="JacobiNeRF: nerfacto with MI-shaped RGB-head Jacobians (label propagation, selection, recoloring).",
)
