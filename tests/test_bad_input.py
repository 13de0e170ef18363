"""Bad input, as a user gives it, to the real commands: one clear message, a non-zero exit, never a traceback.

Each case runs a command on the sample scene (a broken copy of it) or on the tiny trained run, and checks the exit
status, the words of the message (the file or option, and the fix) and that no Python traceback is printed. Commands
run in this process (`invoke`); one case per entry point runs it in a subprocess, as a user does, which is what shows
that the command reports the error without a traceback and exits non-zero.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import SCENE_VIEWS, TINY_FIELD, invoke, run_command, unwrapped

pytestmark = pytest.mark.slow  # every case starts a nerfstudio command

TINY = [*TINY_FIELD, "--pipeline.propagation.seeds", "0", "--pipeline.propagation.settings", "sparse"]


def run(command: str, *args, cwd: Path, in_process: bool = True) -> subprocess.CompletedProcess:
    return invoke(command, *args, cwd=cwd) if in_process else run_command(command, *args, cwd=cwd, timeout=600)


def train_args(data: Path, out: Path, *extra: str, steps: int = 2) -> list:
    return [
        "jacobinerf", "--data", str(data), "--output-dir", str(out), "--experiment-name", "bad", "--timestamp", "t",
        "--machine.device-type", "cpu", "--vis", "tensorboard", "--mixed-precision", "False",
        "--max-num-iterations", str(steps), "--pipeline.datamanager.surrogate", "masks", *TINY, *extra,
    ]  # fmt: skip


def assert_user_error(result: subprocess.CompletedProcess, *words: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    for word in words:
        assert unwrapped(word) in unwrapped(output), f"{word!r} not in:\n{output[-3000:]}"


def assert_train_error(tmp_path: Path, result: subprocess.CompletedProcess, *words: str) -> None:
    """A user error from ``ns-train`` into ``tmp_path/runs`` that left no run folder behind."""
    assert_user_error(result, *words)
    left = sorted(str(path.relative_to(tmp_path)) for path in (tmp_path / "runs").rglob("*"))
    assert not left, f"ns-train stopped on bad input and left {left}"


def broken_copy(scene: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "scene"
    shutil.copytree(scene, copy)
    return copy


def transforms(scene: Path) -> dict:
    return json.loads((scene / "transforms.json").read_text())


@pytest.fixture(scope="module")
def trained(tiny_run) -> Path:
    """The tiny trained run's config.yml (tests that break a run break a copy)."""
    return tiny_run / "config.yml"


# ---- data ----------------------------------------------------------------------------------------------------------


def test_missing_data_folder(tmp_path):
    result = run("ns-train", *train_args(tmp_path / "nowhere", tmp_path / "runs"), cwd=tmp_path, in_process=False)
    assert_train_error(tmp_path, result, "No transforms.json", "point --data at a nerfstudio-data folder")


def test_transforms_json_that_is_not_json(sample_scene, tmp_path):
    data = broken_copy(sample_scene, tmp_path)
    (data / "transforms.json").write_text("{ not json")
    assert_train_error(
        tmp_path, run("ns-train", *train_args(data, tmp_path / "runs"), cwd=tmp_path), "transforms.json", "JSON"
    )


def test_transforms_json_without_frames(sample_scene, tmp_path):
    data = broken_copy(sample_scene, tmp_path)
    (data / "transforms.json").write_text(json.dumps({**transforms(data), "frames": []}))
    assert_train_error(tmp_path, run("ns-train", *train_args(data, tmp_path / "runs"), cwd=tmp_path), "lists no frames")


def test_missing_image_file(sample_scene, tmp_path):
    data = broken_copy(sample_scene, tmp_path)
    (data / "images" / "frame_00003.png").unlink()
    result = run("ns-train", *train_args(data, tmp_path / "runs"), cwd=tmp_path)
    assert_train_error(tmp_path, result, f"1 of {SCENE_VIEWS} images", "frame_00003.png", "do not exist")


def test_missing_label_file_names_it_and_counts_frames(sample_scene, tmp_path):
    data = broken_copy(sample_scene, tmp_path)
    (data / "semantics" / "frame_00002.png").unlink()
    (data / "semantics" / "frame_00005.png").unlink()
    result = run("ns-train", *train_args(data, tmp_path / "runs"), cwd=tmp_path)
    assert_train_error(tmp_path, result, f"2 of {SCENE_VIEWS} frames", "semantics_file_path", "frame_00002.png")


def test_missing_depth_map(sample_scene, tmp_path):
    data = broken_copy(sample_scene, tmp_path)
    (data / "depth" / "frame_00004.png").unlink()
    result = run("ns-train", *train_args(data, tmp_path / "runs"), cwd=tmp_path)
    assert_train_error(tmp_path, result, f"1 of {SCENE_VIEWS} frames", "depth_file_path", "frame_00004.png", "remove")


def test_rgb_label_png(sample_scene, tmp_path):
    data = broken_copy(sample_scene, tmp_path)
    path = data / "instances" / "frame_00001.png"
    Image.fromarray(np.stack([np.asarray(Image.open(path))] * 3, axis=-1)).save(path)
    result = run("ns-train", *train_args(data, tmp_path / "runs"), cwd=tmp_path)
    rgb = f"1 of {SCENE_VIEWS} instance_file_path files are RGB"
    assert_train_error(tmp_path, result, rgb, "frame_00001.png", "single-channel")


def test_corrupt_classes_json(sample_scene, tmp_path):
    data = broken_copy(sample_scene, tmp_path)
    (data / "classes.json").write_text('{"semantic_classes": [{"name": "floor"}]}')
    result = run("ns-train", *train_args(data, tmp_path / "runs"), cwd=tmp_path)
    assert_train_error(tmp_path, result, "classes.json", "'semantic_classes' must be a list of rows")


# ---- options -------------------------------------------------------------------------------------------------------


def test_contrastive_batch_of_zero(sample_scene, tmp_path):
    args = train_args(sample_scene, tmp_path / "runs", "--pipeline.model.contrastive-batch-size", "0")
    assert_train_error(
        tmp_path, run("ns-train", *args, cwd=tmp_path), "--pipeline.model.contrastive-batch-size", "at least 2"
    )


def test_threshold_outside_its_bounds(sample_scene, tmp_path):
    args = train_args(sample_scene, tmp_path / "runs", "--pipeline.model.threshold-init", "0.95")
    assert_train_error(tmp_path, run("ns-train", *args, cwd=tmp_path), "--pipeline.model.threshold-init", "[0.5, 0.9]")


def test_surrogate_options_that_cannot_work(sample_scene, tmp_path):
    args = train_args(sample_scene, tmp_path / "runs", "--pipeline.datamanager.dino-stride", "0")
    assert_train_error(tmp_path, run("ns-train", *args, cwd=tmp_path), "--pipeline.datamanager.dino-stride", "≥ 1")
    args = train_args(sample_scene, tmp_path / "runs", "--pipeline.datamanager.masks-dir", str(tmp_path / "no_masks"))
    assert_train_error(
        tmp_path, run("ns-train", *args, cwd=tmp_path), "--pipeline.datamanager.masks-dir", "does not exist"
    )


def test_source_view_out_of_range(sample_scene, tmp_path):
    args = train_args(sample_scene, tmp_path / "runs", "--pipeline.propagation.source-views", "0", "99")
    assert_train_error(tmp_path, run("ns-train", *args, cwd=tmp_path), "--pipeline.propagation.source-views", "[99]")


def test_start_steps_after_the_last_step_warn_before_training(sample_scene, tmp_path):
    args = train_args(
        sample_scene, tmp_path / "runs", "--pipeline.model.shaping-start-step", "50",
        "--pipeline.model.distortion-loss-start-step", "60",
    )  # fmt: skip
    result = run("ns-train", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    output = unwrapped(result.stdout)
    for expected in (
        "shaping-start-step 50 is after the last step of this run (1, from step 0): it will not shape",
        "distortion-loss-start-step 60 is after the last step of this run (1, from step 0): the distortion loss stays",
    ):
        assert unwrapped(expected) in output, result.stdout[-3000:]


# ---- commands on a run ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moved_data_run(trained, tmp_path_factory) -> Path:
    """The trained run with its data folder gone (moved or deleted)."""
    import yaml

    config = tmp_path_factory.mktemp("moved") / "config.yml"
    shutil.copytree(trained.parent / "nerfstudio_models", config.parent / "nerfstudio_models")
    data = yaml.load(trained.read_text(), Loader=yaml.Loader).data
    config.write_text(trained.read_text().replace(f"- {data.name}\n", "- moved_away\n"))
    assert "moved_away" in config.read_text()
    return config


def test_label_a_run_whose_depth_map_is_gone(trained, sample_scene, tmp_path):
    """The point cloud takes the captured depth: a depth map missing from the run's data stops the export as the run
    loads (the dataparser's check), naming the file, before anything is written."""
    import yaml

    from jacobinerf_ns.clicks import ClickSet, PixelClick, write_clicks

    scene = broken_copy(sample_scene, tmp_path)
    (scene / "depth" / "frame_00003.png").unlink()
    config = yaml.load(trained.read_text(), Loader=yaml.Loader)
    config.data = config.pipeline.datamanager.data = config.pipeline.datamanager.dataparser.data = scene
    run_dir = tmp_path / "run"
    shutil.copytree(trained.parent / "nerfstudio_models", run_dir / "nerfstudio_models")
    (run_dir / "config.yml").write_text(yaml.dump(config))
    clicks = tmp_path / "clicks.json"
    write_clicks(clicks, ClickSet(("box",), (PixelClick("box", "images/frame_00000.png", 30.5, 30.5),)))
    out = tmp_path / "labelled"
    args = ("--load-config", str(run_dir / "config.yml"), "--clicks", str(clicks), "--output-dir", str(out))
    assert_user_error(run("jacobinerf-label", *args, cwd=tmp_path), "depth_file_path", "frame_00003.png")
    assert not out.exists(), "nothing is written"


def test_ns_eval_on_a_run_whose_data_is_gone(moved_data_run, tmp_path):
    result = run(  # ns-eval's subprocess case: test_unreadable_checkpoint
        "ns-eval", "--load-config", str(moved_data_run), "--output-path", str(tmp_path / "e.json"), cwd=tmp_path
    )
    assert_user_error(result, "No transforms.json", "moved_away")


def test_ns_viewer_on_a_run_whose_data_is_gone(moved_data_run, tmp_path):
    args = ("--load-config", str(moved_data_run), "--viewer.websocket-port", "7391")
    result = run("ns-viewer", *args, cwd=tmp_path, in_process=False)
    assert_user_error(result, "No transforms.json", "moved_away")


def test_ns_render_on_a_run_whose_data_is_gone(moved_data_run, tmp_path):
    args = ("dataset", "--load-config", str(moved_data_run), "--output-path", str(tmp_path / "renders"))
    assert_user_error(run("ns-render", *args, cwd=tmp_path, in_process=False), "No transforms.json", "moved_away")


def test_jacobinerf_eval_options(trained, tmp_path):
    result = run(
        "jacobinerf-eval", "--load-config", str(trained), "--output-path", str(tmp_path / "e.txt"), cwd=tmp_path,
        in_process=False,
    )  # fmt: skip
    assert_user_error(result, "--output-path", ".json")
    result = run(
        "jacobinerf-eval", "--load-config", str(tmp_path / "none.yml"), "--output-path", "e.json", cwd=tmp_path
    )
    assert_user_error(result, "--load-config", "none.yml", "does not exist")
    result = run(
        "jacobinerf-eval", "--load-config", str(trained), "--output-path", str(tmp_path / "e.json"),
        "--propagation.source-views", "50", cwd=tmp_path,
    )  # fmt: skip
    assert_user_error(result, "--propagation.source-views", "[50]")
    assert not (tmp_path / "e.json").exists()


def test_export_labels_of_a_kind_the_data_lacks(sample_scene, tmp_path):
    data = broken_copy(sample_scene, tmp_path)
    meta = transforms(data)
    for frame in meta["frames"]:
        frame.pop("instance_file_path")
    (data / "transforms.json").write_text(json.dumps(meta))
    assert run("ns-train", *train_args(data, tmp_path / "runs", "--pipeline.datamanager.masks-from", "semantics"),
               cwd=tmp_path).returncode == 0  # fmt: skip
    config = tmp_path / "runs" / "bad" / "jacobinerf" / "t" / "config.yml"
    args = ("--load-config", str(config), "--kind", "instances")
    result = run("jacobinerf-export-labels", *args, cwd=tmp_path, in_process=False)
    assert_user_error(result, "no instances labels", "--kind")
    assert not (tmp_path / "propagated_labels").exists()


def test_shape_command_inputs(trained, tmp_path):
    nerfacto = tmp_path / "config.yml"
    nerfacto.write_text(trained.read_text().replace("method_name: jacobinerf", "method_name: nerfacto"))
    result = run("jacobinerf-shape", "--load-config", str(nerfacto), cwd=tmp_path, in_process=False)
    assert_user_error(result, "'nerfacto' run")
    result = run("jacobinerf-shape", "--load-config", str(trained), "--steps", "0", cwd=tmp_path)
    assert_user_error(result, "--steps 0")
    empty = tmp_path / "fresh" / "config.yml"
    empty.parent.mkdir()
    empty.write_text(trained.read_text())
    assert_user_error(run("jacobinerf-shape", "--load-config", str(empty), cwd=tmp_path), "No checkpoint in")


# ---- surrogates ----------------------------------------------------------------------------------------------------


def unlabelled_copy(scene: Path, tmp_path: Path) -> Path:
    data = broken_copy(scene, tmp_path)
    meta = transforms(data)
    for frame in meta["frames"]:
        frame.pop("semantics_file_path")
        frame.pop("instance_file_path")
    (data / "transforms.json").write_text(json.dumps(meta))
    return data


def shaping(*extra: str) -> list:
    return ["--pipeline.model.shaping-start-step", "0", *extra]


def test_mask_surrogate_on_data_without_labels(sample_scene, tmp_path):
    data = unlabelled_copy(sample_scene, tmp_path)
    result = run("ns-train", *train_args(data, tmp_path / "runs", *shaping()), cwd=tmp_path)
    assert_train_error(tmp_path, result, "needs per-pixel instances labels", "--pipeline.datamanager.masks-dir")


def test_empty_masks_folder(sample_scene, tmp_path):
    (tmp_path / "masks").mkdir()
    masks = shaping("--pipeline.datamanager.masks-dir", str(tmp_path / "masks"))
    args = train_args(sample_scene, tmp_path / "runs", *masks)
    assert_train_error(tmp_path, run("ns-train", *args, cwd=tmp_path), "No mask for training image", "masks-dir")


def test_feature_maps_of_the_wrong_shape(sample_scene, tmp_path):
    features = tmp_path / "features"
    features.mkdir()
    for image in (sample_scene / "images").glob("*.png"):
        np.save(features / f"{image.stem}.npy", np.zeros((4, 5), np.float32))  # (h, w) instead of (h, w, E)
    args = train_args(
        sample_scene, tmp_path / "runs",
        *shaping("--pipeline.datamanager.surrogate", "features", "--pipeline.datamanager.features-dir", str(features),
                 "--pipeline.datamanager.cache-dir", str(tmp_path / "cache")),
    )  # fmt: skip
    assert_train_error(tmp_path, run("ns-train", *args, cwd=tmp_path), "expected an (h, w, E) array")


def test_dino_weights_that_are_not_a_checkpoint(sample_scene, tmp_path):
    garbage = tmp_path / "dino.pth"
    garbage.write_bytes(b"this is not a checkpoint")
    args = train_args(
        sample_scene, tmp_path / "runs",
        *shaping("--pipeline.datamanager.surrogate", "dino", "--pipeline.datamanager.dino-weights", str(garbage),
                 "--pipeline.datamanager.cache-dir", str(tmp_path / "cache")),
    )  # fmt: skip
    assert_train_error(tmp_path, run("ns-train", *args, cwd=tmp_path), "DINO weights", "dino.pth", "could not be read")
