"""End to end, as a user runs it: ns-train (both phases, the `tiny_run` fixture) → checkpoint → ns-eval / viewer
loading → resume; the other commands on the same run. Commands run in this process (`invoke`); the subprocess of each
entry point is in the tests that check its error reporting (test_bad_input)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.helpers import (
    SCENE_EVAL_FRAMES,
    SCENE_HEIGHT,
    SCENE_WIDTH,
    TINY_THRESHOLD_STEP,
    invoke,
    metric_keys,
    train_tiny,
)

pytestmark = pytest.mark.slow  # every test runs nerfstudio commands


def checkpoint_threshold(path: Path) -> float:
    state = torch.load(path, map_location="cpu", weights_only=False)
    return float(state["pipeline"]["_model.threshold.value"])


def test_both_phases_train_and_the_threshold_is_saved(tiny_run):
    checkpoints = sorted((tiny_run / "nerfstudio_models").glob("step-*.ckpt"))
    assert [c.name for c in checkpoints] == ["step-000000002.ckpt", "step-000000004.ckpt", "step-000000005.ckpt"]
    assert checkpoint_threshold(checkpoints[0]) == pytest.approx(0.8)  # saved after step 2, before shaping started
    shaped = checkpoint_threshold(checkpoints[-1])
    assert shaped != pytest.approx(0.8) and 0.5 < shaped < 0.9, shaped  # three shaping steps moved it, not to a bound


def test_checkpoint_loads_through_ns_eval_and_viewer_setup(tiny_run, tmp_path):
    from nerfstudio.utils.eval_utils import eval_setup

    saved = checkpoint_threshold(tiny_run / "nerfstudio_models" / "step-000000005.ckpt")
    for test_mode in ("test", "inference"):  # ns-eval and ns-viewer's loading path
        _, pipeline, checkpoint, step = eval_setup(tiny_run / "config.yml", test_mode=test_mode)
        assert step == 5 and float(pipeline.model.threshold) == pytest.approx(saved)

    result = invoke(
        "ns-eval",
        "--load-config",
        str(tiny_run / "config.yml"),
        "--output-path",
        str(tmp_path / "eval.json"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = json.loads((tmp_path / "eval.json").read_text())["results"]
    assert "psnr" in metrics and "ssim" in metrics
    for prefix in ("", "instance_"):
        for setting in ("sparse", "dense"):
            for space in ("2d", "3d"):
                for metric in ("miou", "class_avg_acc", "total_acc"):
                    value = metrics[f"{prefix}{setting}_{space}_{metric}"]
                    assert 0.0 <= value <= 1.0


def test_resume_restores_the_threshold_and_keeps_shaping(tiny_run, sample_scene):
    saved = checkpoint_threshold(tiny_run / "nerfstudio_models" / "step-000000005.ckpt")
    out = tiny_run.parent.parent.parent
    result = train_tiny(
        sample_scene,
        out,
        "--max-num-iterations",
        "8",
        "--pipeline.model.shaping-start-step",
        "3",
        "--pipeline.datamanager.surrogate",
        "masks",
        *TINY_THRESHOLD_STEP,
        "--load-dir",
        str(tiny_run / "nerfstudio_models"),
        "--steps-per-save",
        "100",
        name="resumed",
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "MI shaping on from step 6" in result.stdout
    assert f"threshold {saved:.3f}" in result.stdout
    final = sorted((out / "resumed" / "jacobinerf" / "t" / "nerfstudio_models").glob("step-*.ckpt"))[-1]
    assert final.name == "step-000000013.ckpt"  # nerfstudio resumes at step 6 and runs 8 more iterations
    assert checkpoint_threshold(final) != saved  # shaping went on moving it


def test_unshaped_baseline_needs_no_surrogate_and_dino_without_weights_fails_fast(sample_scene, tmp_path, offline):
    unshaped = train_tiny(
        sample_scene, tmp_path, "--max-num-iterations", "2", "--pipeline.model.shaping-start-step", "-1", name="plain"
    )
    assert unshaped.returncode == 0, unshaped.stderr[-4000:]
    assert "MI shaping on" not in unshaped.stdout
    state = torch.load(
        tmp_path / "plain/jacobinerf/t/nerfstudio_models/step-000000001.ckpt", map_location="cpu", weights_only=False
    )
    assert float(state["pipeline"]["_model.threshold.value"]) == pytest.approx(0.8)

    missing = train_tiny(
        sample_scene, tmp_path, "--max-num-iterations", "2", "--pipeline.model.shaping-start-step", "1", name="dino"
    )
    assert missing.returncode != 0
    assert "--pipeline.datamanager.dino-weights" in missing.stdout + missing.stderr
    assert not (tmp_path / "dino/jacobinerf/t/nerfstudio_models").exists()


def test_export_labels_command_writes_ids_and_overlays(tiny_run, tmp_path):
    out = tmp_path / "labels"
    result = invoke(
        "jacobinerf-export-labels",
        "--load-config",
        str(tiny_run / "config.yml"),
        "--output-dir",
        str(out),
        "--kind",
        "instances",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    from jacobinerf_ns.clicks import read_clicks

    click_set = read_clicks(out / "clicks.json")  # a click set (docs/clicks.md) that jacobinerf-label takes
    clicked = set(click_set.class_ids())
    assert {click.image for click in click_set.clicks} == {"images/frame_00000.png"}
    assert all(click.x % 1 == 0.5 and click.y % 1 == 0.5 for click in click_set.clicks), "pixel centres"
    assert click_set.fingerprint is not None and json.loads((out / "clicks.json").read_text())["kind"] == "instances"
    ids = sorted((out / "ids").glob("*.png"))
    assert [p.name for p in ids] == SCENE_EVAL_FRAMES
    import numpy as np
    from PIL import Image

    label_map = np.asarray(Image.open(ids[0]))
    assert label_map.shape == (SCENE_HEIGHT, SCENE_WIDTH) and set(np.unique(label_map).tolist()) <= clicked
    assert np.asarray(Image.open(out / "overlay" / "frame_00004.png")).shape == (SCENE_HEIGHT, SCENE_WIDTH, 3)


TINY_PROTOCOL = [  # jacobinerf-eval's protocol replaces the run's: the tiny run's fitting budgets (plumbing only)
    "--propagation.head-steps", "20", "--propagation.head-rays", "512", "--propagation.dense-mlp-steps", "20",
    "--propagation.dense-rounds", "2", "--propagation.dense-candidates", "3",
]  # fmt: skip


def all_metric_keys(prefixes, settings, spaces) -> set:
    """Every key of the default protocol's three draws (training view 0 × seeds 0, 1, 2)."""
    draws = [f"view0_seed{seed}" for seed in range(3)]
    return {key for p in prefixes for d in spaces for key in metric_keys(p, settings, d, draws)}


def test_jacobinerf_eval_runs_every_baseline_on_the_same_run(tiny_run, tmp_path):
    import timm

    config = str(tiny_run / "config.yml")
    output = tmp_path / "semantic_head.json"
    result = invoke(
        "jacobinerf-eval",
        "--load-config",
        config,
        "--output-path",
        str(output),
        *TINY_PROTOCOL,
        "--propagation.method",
        "semantic-head",
        "--no-photometric",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    written = json.loads(output.read_text())
    assert written["propagation"]["method"] == "semantic-head"
    assert set(written["results"]) == all_metric_keys(("", "instance_"), ("sparse", "dense"), ("3d",))  # no psnr

    missing = invoke(
        "jacobinerf-eval",
        "--load-config",
        config,
        "--output-path",
        str(tmp_path / "dino.json"),
        *TINY_PROTOCOL,
        "--propagation.method",
        "dino-2d",
        cwd=tmp_path,
    )
    assert missing.returncode != 0 and "--propagation.dino-weights" in missing.stdout + missing.stderr
    assert not (tmp_path / "dino.json").exists()

    weights = tmp_path / "random_dino.pth"  # random weights: plumbing only, no quality claimed
    torch.manual_seed(0)
    torch.save(timm.create_model("vit_small_patch8_224_dino", pretrained=False).state_dict(), weights)
    for method, space in (("dino-2d", "2d"), ("dino-field", "3d")):
        output = tmp_path / f"{method}.json"
        result = invoke(
            "jacobinerf-eval",
            "--load-config",
            config,
            "--output-path",
            str(output),
            *TINY_PROTOCOL,
            "--propagation.method",
            method,
            "--propagation.dino-weights",
            str(weights),
            "--propagation.settings",
            "sparse",
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr[-4000:]
        results = json.loads(output.read_text())["results"]
        assert "psnr" in results and all_metric_keys(("", "instance_"), ("sparse",), (space,)) <= set(results)
        assert not any(key.endswith(f"_{'3d' if space == '2d' else '2d'}_miou") for key in results)
    assert list(
        (tiny_run.parent.parent.parent / "cache").glob("dino/*/*.npy")
    )  # features cached with the run's settings


def test_export_labels_with_a_baseline_method(tiny_run, tmp_path):
    out = tmp_path / "labels"
    result = invoke(
        "jacobinerf-export-labels",
        "--load-config",
        str(tiny_run / "config.yml"),
        "--output-dir",
        str(out),
        "--method",
        "semantic-head",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert json.loads((out / "clicks.json").read_text())["method"] == "semantic-head"
    assert len(list((out / "ids").glob("*.png"))) == len(SCENE_EVAL_FRAMES)
