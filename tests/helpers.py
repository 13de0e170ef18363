"""Test helpers: a tiny JacobiNeRF model (CPU, seconds) and random rays."""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

import torch

TEST_FIELD = [  # the demo's field made cheaper (runs.SAMPLE_SCENE_FIELD, overridden): ~2 minutes of CPU for a run
    "--pipeline.model.log2-hashmap-size", "13",
    "--pipeline.model.num-levels", "6",
    "--pipeline.model.max-res", "128",
    "--pipeline.model.hidden-dim", "32",
    "--pipeline.model.hidden-dim-color", "32",
    "--pipeline.model.head-in-dim", "32",
    "--pipeline.model.num-nerf-samples-per-ray", "16",
    "--pipeline.model.num-proposal-samples-per-ray", "32", "16",
    "--pipeline.datamanager.train-num-rays-per-batch", "512",
    "--mixed-precision", "False",
]  # fmt: skip
TRAINED_STEPS, TRAINED_SHAPING_START = 600, 150
"""The recipe of the trained runs (the `trained_run` fixture, the label test's run): steps, and the step shaping
starts at (the demo's is 800, 400 with its larger field)."""
SCENE_VIEWS, SCENE_WIDTH, SCENE_HEIGHT = 24, 64, 48
"""The one sample scene every test uses (the `sample_scene` fixture): the demo's. With fewer views, a run of the tests'
recipe renders objects as floaters."""
SCENE_EVAL_FRAMES = ["frame_00004.png", "frame_00012.png", "frame_00020.png"]  # every 8th from the 5th
TINY_THRESHOLD_STEP = ["--pipeline.model.threshold-step", "1e-4"]
"""The tiny run's threshold step (`tiny_run`)."""
DINO_MODEL = "vit_small_patch8_224_dino"  # the DINO surrogate's default ViT
MACHINE_SEED = int(os.environ.get("JACOBINERF_MACHINE_SEED", "42"))
"""``--machine.seed`` of the trained runs (nerfstudio's default, 42); other values calibrate the thresholds."""


def tiny_model_config(**overrides):
    from jacobinerf_ns.model import JacobiNerfModelConfig

    settings = dict(
        implementation="torch",
        num_levels=4,
        log2_hashmap_size=10,
        max_res=64,
        hidden_dim=16,
        hidden_dim_color=16,
        head_in_dim=8,
        appearance_embed_dim=4,
        num_nerf_samples_per_ray=8,
        num_proposal_samples_per_ray=(16, 8),
        proposal_net_args_list=[
            {"hidden_dim": 8, "log2_hashmap_size": 10, "num_levels": 3, "max_res": 32, "use_linear": False},
            {"hidden_dim": 8, "log2_hashmap_size": 10, "num_levels": 3, "max_res": 32, "use_linear": False},
        ],
        eval_num_rays_per_chunk=1024,  # several chunks per sample-scene frame (64 × 48 rays): the chunked paths run
    )
    settings.update(overrides)
    return JacobiNerfModelConfig(**settings)


def build_tiny_model(seed: int = 0, metadata: Optional[dict] = None, **overrides):
    """A tiny model with ``overrides`` of its options, given the dataset ``metadata`` (default: none)."""
    from nerfstudio.data.scene_box import SceneBox

    torch.manual_seed(seed)
    config = tiny_model_config(**overrides)
    return config.setup(
        scene_box=SceneBox(aabb=torch.tensor([[-1.0, -1, -1], [1, 1, 1]])), num_train_data=4, metadata=metadata or {}
    )


def random_ray_bundle(count: int, seed: int = 0, dtype=torch.float32):
    from nerfstudio.cameras.rays import RayBundle

    generator = torch.Generator().manual_seed(seed)
    origins = (torch.rand(count, 3, generator=generator) - 0.5) * 0.5
    directions = torch.nn.functional.normalize(torch.randn(count, 3, generator=generator), dim=-1)
    return RayBundle(
        origins=origins.to(dtype),
        directions=directions.to(dtype),
        pixel_area=torch.full((count, 1), 1e-4, dtype=dtype),
        camera_indices=torch.randint(0, 4, (count, 1), generator=generator),
        nears=torch.full((count, 1), 0.05, dtype=dtype),
        fars=torch.full((count, 1), 2.0, dtype=dtype),
    )


def cameras_around_origin(count: int, height: int = 6, width: int = 8):
    """``count`` pinhole cameras 0.6 in front of the origin (looking along -z), shifted sideways."""
    from nerfstudio.cameras.cameras import Cameras

    poses = torch.eye(4)[:3].repeat(count, 1, 1)
    poses[:, 0, 3] = torch.linspace(-0.2, 0.2, count)
    poses[:, 2, 3] = 0.6
    return Cameras(camera_to_worlds=poses, fx=6.0, fy=6.0, cx=width / 2, cy=height / 2, width=width, height=height)


def label_views(feature_of=None, source_index: int = 0):
    """Source view ``source_index`` of three (0 by default) and targets 1 and 2; labels = vertical stripes (1, 2, 3)
    shifted per view; features from ``feature_of``."""
    from jacobinerf_ns.propagation.protocol import PropagationViews

    cameras = cameras_around_origin(3, height=12, width=18)
    maps = []
    for shift in (0, 2, 4):
        label = torch.ones(12, 18, dtype=torch.long)
        label[:, 6 + shift :] = 2
        label[:, 12 + shift :] = 3
        label[:2] = 0  # void rows
        maps.append(label)

    names = [Path(f"view{i}.png") for i in range(3)]
    by_name = dict(zip(names, maps))
    return PropagationViews(
        source_camera=cameras[source_index : source_index + 1],
        source_labels=maps[source_index],
        target_cameras=[cameras[1:2], cameras[2:3]],
        target_labels=maps[1:],
        source_image=names[source_index],
        target_images=names[1:],
        image_features=None
        if feature_of is None
        else lambda paths: torch.stack([feature_of(by_name[p]) for p in paths]),
        source_index=source_index,
    )


def metric_keys(prefix: str, settings, space: str, draws=("view0_seed0",)) -> set:
    """The mean, its ``_std`` and each draw's value, for every metric."""
    means = {f"{prefix}{s}_{space}_{m}" for s in settings for m in ("miou", "class_avg_acc", "total_acc")}
    return means | {f"{key}_std" for key in means} | {f"{key}_{draw}" for key in means for draw in draws}


COMMANDS = {  # console scripts → their modules, run with this interpreter (no dependence on PATH or shims)
    "ns-train": "nerfstudio.scripts.train",
    "ns-eval": "nerfstudio.scripts.eval",
    "ns-viewer": "nerfstudio.scripts.viewer.run_viewer",
    "ns-render": "nerfstudio.scripts.render",
    "jacobinerf-eval": "jacobinerf_ns.commands.eval",
    "jacobinerf-export-labels": "jacobinerf_ns.commands.export_labels",
    "jacobinerf-shape": "jacobinerf_ns.commands.shape",
    "jacobinerf-label": "jacobinerf_ns.commands.label",
    "jacobinerf-masks": "jacobinerf_ns.commands.masks",
}

TINY_FIELD = [
    "--pipeline.model.log2-hashmap-size", "10", "--pipeline.model.num-levels", "4", "--pipeline.model.max-res", "64",
    "--pipeline.model.hidden-dim", "16", "--pipeline.model.hidden-dim-color", "16",
    "--pipeline.model.head-in-dim", "16",
    "--pipeline.model.num-nerf-samples-per-ray", "8", "--pipeline.model.num-proposal-samples-per-ray", "16", "8",
    "--pipeline.model.eval-num-rays-per-chunk", "1024",
    "--pipeline.datamanager.train-num-rays-per-batch", "128", "--pipeline.datamanager.eval-num-rays-per-batch", "128",
    "--pipeline.propagation.dense-mlp-steps", "20", "--pipeline.propagation.dense-rounds", "2",
    "--pipeline.propagation.dense-candidates", "3", "--pipeline.propagation.head-steps", "20",
    "--pipeline.datamanager.dino-stride", "8",  # DINO baselines with random weights: a tiny token grid
    "--pipeline.datamanager.dino-short-side", "32",
]  # fmt: skip
"""ns-train options of a field that trains in seconds on the sample scene (plumbing, not quality)."""


def unreachable_url(file_name: str) -> str:
    """A URL of ``file_name`` on a port of this machine nobody listens on: fetching it fails as it does offline."""
    import socket

    with socket.socket() as probe:  # the port is free once closed: the connection is refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/{file_name}"


def run_command(command: str, *args, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    """A console script in a subprocess, as a user runs it (CPU only)."""
    return subprocess.run(
        [sys.executable, "-m", COMMANDS[command], *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
        timeout=timeout,
    )


def invoke(command: str, *args, cwd: Path) -> subprocess.CompletedProcess:
    """A console script run in this process, as :func:`run_command` runs it in a subprocess (same arguments, same
    result): its output is captured, ``SystemExit`` gives the return code, and a :class:`JacobiNerfError` is reported
    as the package's excepthook reports it (status 1, no traceback). Any other exception propagates (a bug).

    Each entry point keeps one subprocess test, which checks what only a process shows: the installed hook and the
    exit status. nerfstudio's event writers are module globals that each ``ns-train`` appends to; they are closed and
    dropped after the call, so one in-process run never writes into another's folder.
    """
    from jacobinerf_ns.errors import JacobiNerfError, format_user_error

    module = importlib.import_module(COMMANDS[command])

    stdout, stderr = io.StringIO(), io.StringIO()
    argv, previous_cwd, returncode = sys.argv, Path.cwd(), 0
    try:
        sys.argv = [command, *map(str, args)]
        os.chdir(cwd)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                module.entrypoint()
            except SystemExit as exit:
                returncode = exit.code if isinstance(exit.code, int) else int(exit.code is not None)
            except JacobiNerfError as error:
                stderr.write(format_user_error(error))
                returncode = 1
    finally:
        sys.argv = argv
        os.chdir(previous_cwd)
        writer = sys.modules.get("nerfstudio.utils.writer")  # imported by the command if at all (alone, circularly)
        for event_writer in getattr(writer, "EVENT_WRITERS", []):
            getattr(getattr(event_writer, "tb_writer", None), "close", lambda: None)()
        getattr(writer, "EVENT_WRITERS", []).clear()
    return subprocess.CompletedProcess([command, *map(str, args)], returncode, stdout.getvalue(), stderr.getvalue())


def tiny_train_args(scene: Path, out: Path, *args, name: str = "run") -> list:
    """``ns-train`` arguments of the tiny field on ``scene`` into ``out/<name>/jacobinerf/t``."""
    return [
        "jacobinerf", "--data", scene, "--output-dir", out, "--experiment-name", name, "--timestamp", "t",
        "--machine.device-type", "cpu", "--vis", "tensorboard", "--mixed-precision", "False",
        "--steps-per-eval-batch", "1000", "--steps-per-eval-image", "1000", "--steps-per-eval-all-images", "100000",
        *TINY_FIELD, *args,
    ]  # fmt: skip


def train_tiny(scene: Path, out: Path, *args, name: str = "run", in_process: bool = True):
    """``ns-train jacobinerf`` of the tiny field on ``scene`` into ``out/<name>/jacobinerf/t`` (in this process, or
    in a subprocess as a user runs it)."""
    return (invoke if in_process else run_command)("ns-train", *tiny_train_args(scene, out, *args, name=name), cwd=out)


def unwrapped(text: str) -> str:
    """``text`` without whitespace: nerfstudio's console wraps at 120 columns, even inside a long path (a test's
    temporary folder), so messages are compared as ``unwrapped(expected) in unwrapped(output)``."""
    return "".join(text.split())
