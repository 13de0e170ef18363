"""Depth where the scene has it: depth maps load in scene units, nerfstudio's depth loss is added on batches with
depth, and a scene without depth trains as before (never through nerfstudio's monocular-depth fallback); the rays a mask
covers and no depth judges are charged for the light they let past."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from jacobinerf_ns.datamanager import DepthMapDataset, JacobiNerfDataManagerConfig
from jacobinerf_ns.dataparsers.nerfstudio_labelled import LabelledNerfstudioDataParserConfig
from jacobinerf_ns.dataparsers.replica_semantic_nerf import ReplicaSemanticNerfDataParserConfig
from jacobinerf_ns.dataparsers.scannet_labelled import ScanNetLabelledDataParserConfig
from jacobinerf_ns.model_config import DEPTH_IMAGE, SCENE_UNITS_PER_POSE_UNIT
from jacobinerf_ns.surrogates import MASKED
from tests.helpers import build_tiny_model, cameras_around_origin, train_tiny
from tests.test_dataparsers_replica_scannet import make_replica, make_scannet, write_label


def datamanager(dataparser, **options):
    return JacobiNerfDataManagerConfig(dataparser=dataparser, **options).setup(device="cpu")


def without_depth(scene: Path, copy: Path) -> Path:
    """A copy of ``scene`` whose frames have no ``depth_file_path`` (and no depth folder)."""
    shutil.copytree(scene, copy, ignore=shutil.ignore_patterns("depth"))
    meta = json.loads((copy / "transforms.json").read_text())
    for frame in meta["frames"]:
        frame.pop("depth_file_path")
    (copy / "transforms.json").write_text(json.dumps(meta))
    return copy


def test_sample_scene_depth_loads_in_scene_units(sample_scene):
    manager = datamanager(LabelledNerfstudioDataParserConfig(data=sample_scene))
    outputs = manager.train_dataparser_outputs
    assert isinstance(manager.train_dataset, DepthMapDataset) and isinstance(manager.eval_dataset, DepthMapDataset)
    frames = {
        frame["file_path"]: frame for frame in json.loads((sample_scene / "transforms.json").read_text())["frames"]
    }
    for index in (0, 5):
        frame = frames[str(outputs.image_filenames[index].relative_to(sample_scene))]
        millimetres = np.asarray(Image.open(sample_scene / frame["depth_file_path"]), dtype=np.float32)
        expected = torch.from_numpy(millimetres / 1000.0 * outputs.dataparser_scale)[..., None]
        assert outputs.dataparser_scale != pytest.approx(1.0)  # the scale is applied, not merely 1
        torch.testing.assert_close(manager.train_dataset[index][DEPTH_IMAGE], expected)
    assert manager.train_dataset.metadata[SCENE_UNITS_PER_POSE_UNIT] == outputs.dataparser_scale  # for depth-std

    half = datamanager(LabelledNerfstudioDataParserConfig(data=sample_scene), camera_res_scale_factor=0.5)
    item = half.train_dataset[0]
    assert item[DEPTH_IMAGE].shape[:2] == item["image"].shape[:2] == (24, 32)  # resized with the cameras


def test_replica_and_scannet_depth_millimetres_become_scene_units(tmp_path):
    replica = make_replica(tmp_path / "replica", frames=6)  # depth PNGs of 3000 mm
    manager = datamanager(ReplicaSemanticNerfDataParserConfig(data=replica, cache_dir=tmp_path / "cache"))
    outputs = manager.train_dataparser_outputs
    assert outputs.metadata["depth_unit_scale_factor"] == 1e-3
    depth = manager.train_dataset[0][DEPTH_IMAGE]
    torch.testing.assert_close(depth, torch.full_like(depth, 3.0 * outputs.dataparser_scale))

    scannet = make_scannet(tmp_path / "scannet")
    for i in range(12):  # ScanNet's depth has its own (smaller) resolution: 8×6 against 16×12 colour
        write_label(scannet / "depth" / f"{i}.png", np.full((6, 8), 2500, dtype=np.uint16))
    manager = datamanager(ScanNetLabelledDataParserConfig(data=scannet, cache_dir=tmp_path / "cache_scannet"))
    outputs = manager.train_dataparser_outputs
    assert outputs.metadata["depth_unit_scale_factor"] == 1e-3
    depth = manager.train_dataset[0][DEPTH_IMAGE]
    assert depth.shape == (12, 16, 1)
    torch.testing.assert_close(depth, torch.full_like(depth, 2.5 * outputs.dataparser_scale))


def test_a_scene_without_depth_never_builds_the_monocular_fallback(sample_scene, tmp_path, monkeypatch):
    from nerfstudio.data.datasets.depth_dataset import DepthDataset
    from nerfstudio.model_components import losses

    def refuse(*args, **kwargs):
        raise AssertionError("nerfstudio's DepthDataset (it downloads a monocular depth model) was built")

    monkeypatch.setattr(DepthDataset, "__init__", refuse)
    monkeypatch.setattr(torch.hub, "load", refuse)
    manager = datamanager(LabelledNerfstudioDataParserConfig(data=without_depth(sample_scene, tmp_path / "plain")))
    assert not isinstance(manager.train_dataset, DepthMapDataset)
    assert DEPTH_IMAGE not in manager.train_dataset[0] and DEPTH_IMAGE not in manager.eval_dataset[0]
    _, batch = manager.next_train(0)
    assert DEPTH_IMAGE not in batch and not losses.FORCE_PSEUDODEPTH_LOSS


def depth_model(scale: float = 1.0, **overrides):
    """A tiny model as the pipeline builds it on a scene with depth whose poses are scaled by ``scale``."""
    return build_tiny_model(metadata={SCENE_UNITS_PER_POSE_UNIT: scale}, **overrides)


def training_losses(model, depth=None, masked=None):
    """One training step's (metrics, losses) of ``model`` on a camera's rays, with depth maps ``depth`` or none and
    the masks' coverage ``masked`` or none."""
    model.train()
    rays = cameras_around_origin(1).generate_rays(camera_indices=0).flatten()
    torch.manual_seed(0)
    outputs = model(rays)
    batch = {"image": torch.rand(len(rays), 3)}
    if depth is not None:
        batch[DEPTH_IMAGE] = depth
    if masked is not None:
        batch[MASKED] = masked
    metrics = model.get_metrics_dict(outputs, batch)
    return outputs, batch, metrics, model.get_loss_dict(outputs, batch, metrics)


def test_the_depth_loss_is_added_with_depth_and_only_then():
    from nerfstudio.model_components.losses import DepthLossType, depth_loss
    from nerfstudio.models.nerfacto import NerfactoModel

    model = depth_model(scale=0.5, depth_std=0.2)  # nerfstudio's σ in scene units: (0.2 · 0.5)² = 0.01
    rays = 6 * 8
    depth = torch.linspace(0.3, 0.9, rays)[:, None]
    outputs, _, metrics, losses = training_losses(model, depth)
    assert losses["depth_loss"] > 0 and losses["depth_loss"] == model.config.depth_loss_mult * metrics["depth_loss"]
    samplers = list(zip(outputs["weights_list"], outputs["ray_samples_list"]))
    expected = sum(
        depth_loss(w, s, depth, outputs["expected_depth"], torch.tensor([0.01]), outputs["directions_norm"], False,
                   DepthLossType.DS_NERF)
        for w, s in samplers
    ) / len(samplers)  # fmt: skip
    torch.testing.assert_close(metrics["depth_loss"], expected)
    wider = training_losses(depth_model(scale=0.5, depth_std=0.4), depth)[2]["depth_loss"]
    assert not torch.isclose(wider, expected), "the kernel's width follows depth-std"
    losses["depth_loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.field.parameters())

    invalid = torch.arange(rays)[:, None] % 3 == 0  # depth 0 = invalid: those rays add nothing
    kept = training_losses(model, torch.where(invalid, 0.0, depth))[3]["depth_loss"]
    others = training_losses(model, torch.where(invalid, depth, 0.0))[3]["depth_loss"]
    torch.testing.assert_close(kept + others, losses["depth_loss"], rtol=1e-5, atol=0)
    assert training_losses(model, torch.zeros(rays, 1))[3]["depth_loss"] == 0

    # z-depth is turned into distance along each ray
    euclidean = depth_model(scale=0.5, depth_std=0.2, is_euclidean_depth=True)
    outputs = training_losses(euclidean, depth)[0]
    along_rays = training_losses(euclidean, depth * outputs["directions_norm"])[3]["depth_loss"]
    assert outputs["directions_norm"].max() > 1.01  # off-centre pixels: the two differ
    torch.testing.assert_close(along_rays, losses["depth_loss"], rtol=1e-5, atol=0)

    outputs, batch, metrics, plain = training_losses(model)  # no depth: nerfacto's losses, nothing more
    expected = NerfactoModel.get_loss_dict(model, outputs, batch, metrics)
    assert "depth_loss" not in metrics and plain.keys() == expected.keys()
    assert all(torch.equal(plain[key], expected[key]) for key in plain)

    off = depth_model(depth_loss_mult=0.0)  # depth off: nerfacto's distortion loss again
    metrics, losses = training_losses(off, depth)[2:]
    assert "depth_loss" not in losses
    assert losses["distortion_loss"] == off.config.distortion_loss_mult * metrics["distortion"] > 0


def test_the_distortion_loss_has_its_own_weight_where_the_depth_loss_supervises():
    depth = torch.linspace(0.3, 0.9, 6 * 8)[:, None]
    model = depth_model(distortion_loss_mult_with_depth=None)  # None: nerfacto's weight, with depth as without
    metrics, losses = training_losses(model, depth)[2:]
    assert losses["distortion_loss"] == model.config.distortion_loss_mult * metrics["distortion"] > 0
    assert depth_model().config.distortion_loss_mult_with_depth == 0, "by default it steps aside for depth"
    for weight in (0.0, 0.5):
        model = depth_model(distortion_loss_mult_with_depth=weight)
        metrics, losses = training_losses(model, depth)[2:]
        assert metrics["distortion"] > 0
        torch.testing.assert_close(losses["distortion_loss"], weight * metrics["distortion"])
        metrics, losses = training_losses(model)[2:]  # no depth in the batch: nerfacto's weight
        assert losses["distortion_loss"] == model.config.distortion_loss_mult * metrics["distortion"]


def test_the_distortion_loss_counts_from_its_start_step():
    """Before ``distortion_loss_start_step`` nerfacto's distortion loss is off (surfaces form first), from it on, as
    the training callbacks count the steps (the model's own, not nerfacto's proposal annealing, which may be off)."""
    from nerfstudio.engine.callbacks import TrainingCallbackAttributes, TrainingCallbackLocation

    assert build_tiny_model().distortion_start_step == 0
    model = build_tiny_model(distortion_loss_start_step=5, use_proposal_weight_anneal=False)
    callbacks = model.get_training_callbacks(TrainingCallbackAttributes(None, None, None, None))
    for step, counted in ((0, False), (4, False), (5, True), (9, True)):
        for callback in callbacks:
            callback.run_callback_at_location(step, TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
        metrics, losses = training_losses(model)[2:]
        assert metrics["distortion"] > 0
        if counted:
            assert losses["distortion_loss"] == model.config.distortion_loss_mult * metrics["distortion"]
        else:
            assert "distortion_loss" not in losses, step


def in_a_run(model, surrogate: str):
    """``model`` as the pipeline of a run shaped with ``surrogate`` sets it."""
    model.surrogate = surrogate
    return model


@pytest.mark.parametrize(
    "surrogate, options, metadata, start, on_void",
    [
        ("masks", {}, {}, 7, True),  # masks, no depth maps: the distortion loss waits for shaping, on void before it
        ("masks", {}, {SCENE_UNITS_PER_POSE_UNIT: 1.0}, 0, False),  # the depth loss trains the run: from step 0
        ("masks", {"depth_loss_mult": 0.0}, {SCENE_UNITS_PER_POSE_UNIT: 1.0}, 7, True),  # depth maps, loss off
        ("dino", {}, {}, 0, False),
        ("masks", {"shaping_start_step": -1}, {}, 0, False),  # never shapes: no masks are read
        ("masks", {"distortion_loss_start_step": 3}, {}, 3, True),
        ("masks", {"distortion_loss_start_step": 0}, {}, 0, False),
        ("masks", {"distortion_loss_on_void": False}, {}, 7, False),
        ("dino", {"distortion_loss_start_step": 3, "distortion_loss_on_void": True}, {}, 3, False),  # no masks
    ],
)
def test_the_distortion_loss_waits_for_shaping_by_default_in_a_run_with_masks_and_no_depth(
    surrogate, options, metadata, start, on_void
):
    """The default start (None) is the shaping start in a run shaped with masks that the depth loss does not train,
    else 0; the loss on void (None: on) acts with masks and a start > 0, and only then are masked rays read."""
    model = in_a_run(build_tiny_model(metadata=metadata, **{"shaping_start_step": 7, **options}), surrogate)
    assert (model.distortion_start_step, model.distortion_on_void) == (start, on_void)
    assert model.reads_masked_rays(0) == on_void and not model.reads_masked_rays(start), "until the start only"


def test_a_run_whose_distortion_loss_waits_for_shaping_by_default_says_so(capsys):
    in_a_run(build_tiny_model(shaping_start_step=7), "masks").warn_about_the_schedule(None, None)
    said = " ".join(capsys.readouterr().out.split())
    assert "distortion loss counts from step 7 (the shaping start), before it on the rays no mask covers only" in said
    in_a_run(build_tiny_model(shaping_start_step=7, distortion_loss_start_step=7), "masks").warn_about_the_schedule(
        None, None
    )  # asked for: nothing to say
    in_a_run(build_tiny_model(shaping_start_step=7), "dino").warn_about_the_schedule(None, None)
    assert "distortion loss counts" not in capsys.readouterr().out


@pytest.mark.parametrize("start, warned", [(None, True), (0, False)])
def test_a_late_shaping_start_says_the_distortion_loss_waiting_for_it_stays_off(start, warned, capsys):
    """In a run shaped with masks without depth maps, a shaping start after the last step also keeps the distortion
    loss (its default start: the shaping start) off; with a start of its own it is not named."""
    from types import SimpleNamespace

    trainer = SimpleNamespace(_start_step=0, config=SimpleNamespace(max_num_iterations=10))
    model = in_a_run(build_tiny_model(shaping_start_step=50, distortion_loss_start_step=start), "masks")
    model.warn_about_the_schedule(trainer, None)
    output = " ".join(capsys.readouterr().out.split())
    assert "shaping-start-step 50 is after the last step of this run (9, from step 0): it will not shape" in output
    assert ("the distortion loss, which waits for shaping" in output) == warned
    assert "distortion-loss-start-step" not in output


def test_before_its_start_the_distortion_loss_can_stay_on_the_rays_no_mask_covers():
    """With the loss on void, before the start step the loss is nerfacto's per-ray distortion on the rays whose pixel
    no mask covers (a mean over all rays), against the rays' own samples; from the start step every ray counts; off
    or without the batch's masks, nothing before the start."""
    from nerfstudio.model_components.losses import lossfun_distortion, ray_samples_to_sdist

    count = 6 * 8
    masked = torch.arange(count) % 3 != 0  # every third ray's pixel is void
    model = in_a_run(build_tiny_model(distortion_loss_start_step=5), "masks")
    model.step = 0
    outputs, _, metrics, losses = training_losses(model, None, masked)
    per_ray = lossfun_distortion(
        ray_samples_to_sdist(outputs["ray_samples_list"][-1]), outputs["weights_list"][-1][..., 0]
    )
    expected = torch.where(masked, 0.0, per_ray).mean()
    assert 0 < expected < per_ray.mean()
    torch.testing.assert_close(metrics["distortion_on_void"], expected, rtol=1e-4, atol=1e-9)
    torch.testing.assert_close(losses["distortion_loss"], model.config.distortion_loss_mult * expected)
    model.step = 5
    metrics, losses = training_losses(model, None, masked)[2:]
    assert "distortion_on_void" not in metrics
    assert losses["distortion_loss"] == model.config.distortion_loss_mult * metrics["distortion"]
    model.step = 0
    assert "distortion_loss" not in training_losses(model)[3]  # no masks in the batch
    off = in_a_run(build_tiny_model(distortion_loss_start_step=5, distortion_loss_on_void=False), "masks")
    off.step = 0
    assert "distortion_loss" not in training_losses(off, None, masked)[3]


@pytest.mark.parametrize(
    "surrogate, on_void, start, warned",
    [("dino", True, 5, True), ("masks", True, 0, True), ("masks", True, 5, False), ("dino", None, 5, False)],
)
def test_the_distortion_loss_on_void_warns_where_it_has_nothing_to_do(surrogate, on_void, start, warned, capsys):
    """Asked for (True) where it cannot act, it warns; its default (None) never does."""
    model = build_tiny_model(distortion_loss_on_void=on_void, distortion_loss_start_step=start)
    in_a_run(model, surrogate).warn_about_the_schedule(None, None)
    assert ("distortion-loss-on-void acts before" in capsys.readouterr().out) == warned


def test_rays_without_a_valid_depth_keep_nerfactos_distortion_loss():
    """Depth 0 (the sky, a sensor's hole) supervises nothing: those rays keep ``distortion_loss_mult``."""
    from nerfstudio.model_components.losses import lossfun_distortion, ray_samples_to_sdist

    depth = torch.linspace(0.3, 0.9, 6 * 8)[:, None]
    invalid = torch.arange(len(depth))[:, None] % 2 == 0
    model = depth_model(distortion_loss_mult_with_depth=0.0)
    outputs, _, metrics, losses = training_losses(model, torch.where(invalid, 0.0, depth))
    samples, weights = outputs["ray_samples_list"][-1], outputs["weights_list"][-1][..., 0]
    per_ray = lossfun_distortion(ray_samples_to_sdist(samples), weights)
    expected = model.config.distortion_loss_mult * torch.mean(per_ray * invalid[:, 0])
    torch.testing.assert_close(losses["distortion_loss"], expected)
    assert 0 < expected < model.config.distortion_loss_mult * metrics["distortion"]


def test_the_off_surface_loss_is_the_weight_a_ray_with_depth_puts_away_from_its_captured_surface():
    """``1 − Σ_{|t_i − d| ≤ 2s} w_i`` per ray (s: depth-std in scene units), against a plain loop; rays without a valid
    depth add nothing; it is on by default (0.01), absent without depth, at weight 0 and with the depth loss off."""
    depth = torch.linspace(0.3, 0.9, 6 * 8)[:, None]
    invalid = torch.arange(len(depth))[:, None] % 3 == 0
    model = depth_model(scale=0.5, off_surface_loss_mult=0.5, depth_std=0.126)  # margin 2 · 0.126 · 0.5 = 0.126
    outputs, _, metrics, losses = training_losses(model, torch.where(invalid, 0.0, depth))
    samples, weights = outputs["ray_samples_list"][-1], outputs["weights_list"][-1][..., 0]
    middles = ((samples.frustums.starts + samples.frustums.ends) / 2)[..., 0]
    along = depth[:, 0] * outputs["directions_norm"][:, 0]
    expected = []
    for ray in range(len(depth)):
        at_surface = sum(float(w) for w, t in zip(weights[ray], middles[ray]) if abs(t - along[ray]) <= 0.126)
        expected.append(0.0 if invalid[ray] else 1.0 - at_surface)
    assert min(e for e, bad in zip(expected, invalid[:, 0]) if not bad) < max(expected)  # the window matters
    torch.testing.assert_close(metrics["off_surface"], torch.tensor(expected).mean(), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(losses["off_surface_loss"], 0.5 * metrics["off_surface"])
    losses["off_surface_loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.field.parameters())

    assert "off_surface_loss" not in training_losses(model)[3]  # no depth in the batch
    default = training_losses(depth_model(), depth)[3]
    assert default["off_surface_loss"] > 0 and depth_model().config.off_surface_loss_mult == 0.01  # on by default
    assert "off_surface_loss" not in training_losses(depth_model(off_surface_loss_mult=0.0), depth)[3]
    off = depth_model(off_surface_loss_mult=0.5, depth_loss_mult=0.0)
    assert "off_surface_loss" not in training_losses(off, depth)[3]


def test_the_masked_opacity_loss_is_the_light_a_masked_ray_without_a_judged_depth_lets_past():
    """``1 − Σ w_i`` on the rays a mask covers, a mean over all rays, against the rays' own weights; rays with a depth
    the off-surface loss judges add nothing, and with that loss or the depth loss off every masked ray counts; absent
    without masks and at weight 0, the default."""
    count = 6 * 8
    masked = torch.arange(count) % 2 == 0
    depth = torch.where(torch.arange(count)[:, None] % 3 == 0, 0.0, 0.6)  # every third ray without a valid depth
    model = depth_model(masked_opacity_loss_mult=0.5)
    outputs, _, metrics, losses = training_losses(model, depth, masked)
    let_past = 1.0 - outputs["weights_list"][-1][..., 0].sum(dim=-1)
    counted = masked & (depth[:, 0] == 0)
    expected = torch.where(counted, let_past, 0.0).mean()
    assert 0 < expected < torch.where(masked, let_past, 0.0).mean()  # the judged rays are left out
    torch.testing.assert_close(metrics["masked_see_through"], expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(losses["masked_opacity_loss"], 0.5 * metrics["masked_see_through"])
    losses["masked_opacity_loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.field.parameters())

    every_masked = torch.where(masked, let_past, 0.0).mean()
    for options, ray_depth in (({}, None), ({"depth_loss_mult": 0.0}, depth), ({"off_surface_loss_mult": 0.0}, depth)):
        metrics = training_losses(depth_model(masked_opacity_loss_mult=0.5, **options), ray_depth, masked)[2]
        torch.testing.assert_close(metrics["masked_see_through"], every_masked, rtol=1e-4, atol=1e-6)
    assert "masked_opacity_loss" not in training_losses(model, depth)[3]  # no masks in the batch
    assert "masked_opacity_loss" not in training_losses(depth_model(), None, masked)[3]  # off by default


@pytest.mark.parametrize("surrogate, start, warned", [("dino", 0, True), ("masks", -1, True), ("masks", 0, False)])
def test_the_masked_opacity_loss_warns_where_the_run_has_no_masks(surrogate, start, warned, capsys):
    model = build_tiny_model(masked_opacity_loss_mult=0.001, shaping_start_step=start)
    in_a_run(model, surrogate).warn_about_the_schedule(None, None)
    assert ("masked-opacity-loss-mult needs masks" in capsys.readouterr().out) == warned
    in_a_run(build_tiny_model(shaping_start_step=start), surrogate).warn_about_the_schedule(None, None)  # off
    assert "masked-opacity" not in capsys.readouterr().out


def test_the_depth_options_are_validated():
    from jacobinerf_ns.errors import JacobiNerfError
    from jacobinerf_ns.model_config import JacobiNerfModelConfig

    with pytest.raises(JacobiNerfError, match="--pipeline.model.depth-std.*> 0 \\(the poses' units\\), got 0.0"):
        JacobiNerfModelConfig(depth_std=0.0).validate()
    with pytest.raises(JacobiNerfError, match="--pipeline.model.off-surface-loss-mult.*≥ 0"):
        JacobiNerfModelConfig(off_surface_loss_mult=-0.01).validate()
    with pytest.raises(JacobiNerfError, match="--pipeline.model.masked-opacity-loss-mult.*≥ 0"):
        JacobiNerfModelConfig(masked_opacity_loss_mult=-1.0).validate()
    with pytest.raises(
        JacobiNerfError, match="--pipeline.model.distortion-loss-start-step.*≥ 0, or None \\(its default\\), got -1"
    ):
        JacobiNerfModelConfig(distortion_loss_start_step=-1).validate()


def logged_tags(run: Path) -> set:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = run.glob("events.out.tfevents.*")
    return set(EventAccumulator(str(events)).Reload().Tags()["scalars"])


@pytest.mark.slow
def test_training_logs_a_depth_loss_only_on_a_scene_with_depth(sample_scene, tmp_path):
    plain = without_depth(sample_scene, tmp_path / "plain")
    for scene, name in ((sample_scene, "depth"), (plain, "plain")):
        result = train_tiny(
            scene, tmp_path, "--max-num-iterations", "2", "--pipeline.model.shaping-start-step", "-1", name=name
        )
        assert result.returncode == 0, result.stderr[-4000:]
    assert "Train Loss Dict/depth_loss" in logged_tags(tmp_path / "depth" / "jacobinerf" / "t")
    tags = logged_tags(tmp_path / "plain" / "jacobinerf" / "t")
    assert "Train Loss Dict/rgb_loss" in tags and "Train Loss Dict/depth_loss" not in tags
