"""Trained runs as the demo, the benchmarks and the tests use them: train with ``ns-train``, load a checkpoint step,
read a split's label maps.

``ns-train`` runs in a subprocess with this interpreter (the same entry point as the console script, no dependence
on PATH or shims), as a user would run it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, List, Sequence

import torch

from jacobinerf_ns.labels import load_label_maps

if TYPE_CHECKING:
    from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs

    from jacobinerf_ns.pipeline import JacobiNerfPipeline

SAMPLE_SCENE_FIELD = [
    # A small field: the sample scene is 64×48 pixels, and the demo must run in minutes on two CPU cores.
    "--pipeline.model.log2-hashmap-size", "15",
    "--pipeline.model.num-levels", "8",
    "--pipeline.model.max-res", "256",
    "--pipeline.model.num-nerf-samples-per-ray", "32",
    "--pipeline.model.num-proposal-samples-per-ray", "64", "32",
    "--pipeline.datamanager.train-num-rays-per-batch", "1024",
]  # fmt: skip
"""The demo's field and batch size (also the tests' trained run)."""

REPLICA_SMALL_FIELD = [
    # The reduced CPU recipe for Replica office_0 (docs/replica_office0_cpu_2026-11-29.md).
    "--pipeline.model.log2-hashmap-size", "17",
    "--pipeline.model.num-levels", "12",
    "--pipeline.model.max-res", "512",
    "--pipeline.model.num-nerf-samples-per-ray", "32",
    "--pipeline.model.num-proposal-samples-per-ray", "96", "48",
]  # fmt: skip


def run_folder(out: Path, experiment: str, timestamp: str, method: str = "jacobinerf") -> Path:
    """Where ``ns-train`` puts a run (the folder that holds ``config.yml``)."""
    return out / experiment / method / timestamp


def train(
    scene: Path,
    out: Path,
    steps: int,
    shaping_start: int,
    device: str,
    extra: Sequence[str] = (),
    experiment: str = "sample_scene",
    timestamp: str = "demo",
) -> Path:
    """Runs ``ns-train jacobinerf`` with the sample-scene recipe and the mask surrogate; returns the run folder.

    Checkpoints are kept at ``shaping_start - 1`` (the field right before shaping) and at the last step.
    """
    arguments = [
        "jacobinerf",
        "--data", str(scene),
        "--output-dir", str(out),
        "--experiment-name", experiment,
        "--timestamp", timestamp,
        "--machine.device-type", device,
        "--vis", "tensorboard",
        "--max-num-iterations", str(steps),
        "--steps-per-save", str(shaping_start - 1),
        "--save-only-latest-checkpoint", "False",
        "--steps-per-eval-all-images", str(10 * steps),
        "--pipeline.model.shaping-start-step", str(shaping_start),
        "--pipeline.datamanager.surrogate", "masks",
        *SAMPLE_SCENE_FIELD,
        *extra,
    ]  # fmt: skip
    print("$ ns-train", " ".join(arguments), flush=True)
    subprocess.run([sys.executable, "-m", "nerfstudio.scripts.train", *arguments], check=True)
    return run_folder(out, experiment, timestamp)


def checkpoint_path(run: Path, step: int) -> Path:
    return run / "nerfstudio_models" / f"step-{step:09d}.ckpt"


def checkpoint_step(checkpoint: Path) -> int:
    """The step of a checkpoint file (``step-000001449.ckpt`` → 1449), the inverse of :func:`checkpoint_path`."""
    return int(checkpoint.stem.split("-")[1])


def checkpoint_steps(run: Path) -> List[int]:
    """The steps of the run's saved checkpoints (``RUN/nerfstudio_models/step-*.ckpt``), in increasing order."""
    return sorted(checkpoint_step(path) for path in (run / "nerfstudio_models").glob("step-*.ckpt"))


def load_step(run: Path, step: int) -> JacobiNerfPipeline:
    """The run's pipeline with the checkpoint of ``step`` loaded (ns-eval's loader, told the step)."""
    from nerfstudio.utils.eval_utils import eval_setup

    def at_step(config):
        config.load_step = step
        return config

    _, pipeline, _, _ = eval_setup(run / "config.yml", test_mode="test", update_config_callback=at_step)
    return pipeline


def label_maps(outputs: DataparserOutputs, kind: str) -> torch.Tensor:
    """``(N, H, W)`` label maps of one split (``kind``: semantics or instances), at the cameras' resolution."""
    cameras = outputs.cameras
    return load_label_maps(outputs.metadata[kind].filenames, int(cameras.height[0]), int(cameras.width[0]))


def eval_outputs(pipeline: JacobiNerfPipeline) -> DataparserOutputs:
    """The eval split's dataparser outputs (nerfstudio keeps them only on the eval dataset)."""
    from jacobinerf_ns.compat import eval_dataparser_outputs

    return eval_dataparser_outputs(pipeline.datamanager)


def instance_names(scene: Path) -> List[str]:
    """Instance names by id of a scene written by :mod:`jacobinerf_ns.sample_scene`."""
    import json

    return [row["name"] for row in json.loads((scene / "classes.json").read_text())["instances"]]


def cosine_gap(pipeline: JacobiNerfPipeline, views: int = 2) -> dict:
    """Jacobian-cosine gap of instance pairs in the first ``views`` eval views (the demo's and the tests' measure)."""
    from jacobinerf_ns.evaluation import jacobian_cosine_gap

    outputs = eval_outputs(pipeline)
    return jacobian_cosine_gap(pipeline.model, outputs.cameras, list(label_maps(outputs, "instances")[:views]))


def method_config():
    """A deep copy of the registered ``jacobinerf`` ``TrainerConfig`` (the registered one is never changed)."""
    import copy

    from jacobinerf_ns.config import jacobinerf

    return copy.deepcopy(jacobinerf.config)


def open_run(config_path: Path, test_mode: str = "test", option: str = "--load-config"):
    """``(config, pipeline, checkpoint path)`` of a trained jacobinerf run (ns-eval's loader), with clear errors for a
    path that is not one."""
    import yaml
    from nerfstudio.utils.eval_utils import eval_setup

    from jacobinerf_ns.errors import JacobiNerfError

    if not Path(config_path).is_file():
        raise JacobiNerfError(f"{option} {config_path} does not exist: give the config.yml of a trained run.")
    try:
        method = getattr(yaml.load(Path(config_path).read_text(), Loader=yaml.Loader), "method_name", None)
    except yaml.YAMLError as error:
        raise JacobiNerfError(f"{option} {config_path} is not a run's config.yml ({error}).") from error
    if method != "jacobinerf":
        raise JacobiNerfError(f"{option} {config_path} is a '{method}' run: this command needs a jacobinerf run.")
    if not sorted((Path(config_path).parent / "nerfstudio_models").glob("step-*.ckpt")):
        raise JacobiNerfError(f"{option} {config_path}: the run has saved no checkpoint yet (nerfstudio_models/).")
    config, pipeline, checkpoint, _ = eval_setup(Path(config_path), test_mode=test_mode)
    return config, pipeline, checkpoint
