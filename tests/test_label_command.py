"""``jacobinerf-label`` end to end, as a user runs it, on the sample scene.

Two runs: the shared trained run (`trained_run`, nerfstudio's default normalisation) and one of the sample scene with
its labels removed, shaped with instance masks given as files (as from any segmenter) under another normalisation
(no re-orientation, no centring, half the scale). Ground truth (the scene's instance maps, depth maps and analytic
geometry) is used only to score. The command runs in this process (`invoke`); one case runs it in a subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest
import torch
from PIL import Image

from jacobinerf_ns.clicks import ClickSet, PixelClick, RayClick, scene_fingerprint, write_clicks
from jacobinerf_ns.label_export import FRAME_FILES
from jacobinerf_ns.runs import train
from jacobinerf_ns.sample_scene import INSTANCES, PRIMITIVES, _trace
from jacobinerf_ns.surface_accuracy import CloudScore, true_surface
from tests.helpers import (
    MACHINE_SEED,
    SCENE_EVAL_FRAMES,
    SCENE_HEIGHT,
    SCENE_VIEWS,
    SCENE_WIDTH,
    TEST_FIELD,
    TRAINED_SHAPING_START,
    TRAINED_STEPS,
    invoke,
    run_command,
    train_tiny,
)

pytestmark = pytest.mark.slow  # trains a run and labels it

OTHER_NORMALISATION = ["jacobinerf-data", "--orientation-method", "none", "--center-method", "none", "--scale-factor",
                       "0.5"]  # fmt: skip
"""The dataparser's options (they follow its subcommand)."""
OBJECTS = {  # instance → a point inside it (sample_scene.PRIMITIVES)
    "ball_red": (-0.55, 0.45, 0.32),
    "ball_blue": (0.6, -0.55, 0.22),
    "box_green": (0.45, 0.45, 0.3),
    "box_yellow": (-0.6, -0.55, 0.2),
    "vase": (0.0, -0.05, 0.5),
}
BACKGROUND = {"floor": (1.2, -1.4, 0.0), "walls": (-2.4, 0.0, 1.2)}
"""Background instance → a point on it: their own classes, so no object's class spreads over them."""
NAMES = [name for name, *_ in INSTANCES]  # instance id - 1 → name
OBJECT_POINTS_ON_SURFACE = 0.7
"""Share of the objects' points (fused at the rendered depth) within 5 cm of the true surface that the point cloud
must exceed: 0.87-0.97 across machine seeds (docs/testing.md), ~0 for points placed anywhere else."""


def label(*args, cwd: Path, in_process: bool = True) -> subprocess.CompletedProcess:
    if in_process:
        return invoke("jacobinerf-label", *args, cwd=cwd)
    return run_command("jacobinerf-label", *args, cwd=cwd, timeout=600)


def output(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


def without_labels(scene: Path, copy: Path) -> Path:
    """``scene`` with its labels removed: no label paths in transforms.json, no classes.json, no label maps."""
    shutil.copytree(scene, copy, ignore=shutil.ignore_patterns("semantics", "instances", "classes.json"))
    meta = json.loads((copy / "transforms.json").read_text())
    for frame in meta["frames"]:
        del frame["semantics_file_path"], frame["instance_file_path"]
    (copy / "transforms.json").write_text(json.dumps(meta))
    return copy


@pytest.fixture(scope="module")
def runs(request, sample_scene, tmp_path_factory) -> Dict[str, Path]:
    """Run folders by normalisation: the shared trained run, and one of the sample scene without its labels (same
    recipe). This run trains before the shared one is asked for, so that another test process can build that one
    meanwhile."""
    if os.environ.get("JACOBINERF_LABEL_RUNS"):  # reuse a run of this recipe while iterating on these tests
        other = Path(os.environ["JACOBINERF_LABEL_RUNS"])
    else:
        out = tmp_path_factory.mktemp("label_runs")
        scene = without_labels(sample_scene, out / "scene")
        options = [*run_options(sample_scene / "instances", MACHINE_SEED), *OTHER_NORMALISATION]
        other = train(scene, out, TRAINED_STEPS, TRAINED_SHAPING_START, "cpu", options, "u", "other")
    return {"default": request.getfixturevalue("trained_run"), "other": other}


def run_options(masks: Path, seed: int, *extra: str) -> List[str]:
    """``ns-train`` options of the label test's run before its dataparser's: the tests' field shaped with ``masks``
    (instance ids that agree across views), machine seed ``seed``, then ``extra`` (bench/ray_click_landing.py)."""
    return [*TEST_FIELD, "--pipeline.datamanager.masks-dir", str(masks), "--pipeline.datamanager.masks-scope", "scene",
            "--machine.seed", str(seed), *extra]  # fmt: skip


@pytest.fixture(scope="module")
def unlabelled_scene(runs) -> Path:
    """The data folder the run under another normalisation was trained on (the sample scene without labels)."""
    import yaml

    return Path(yaml.load((runs["other"] / "config.yml").read_text(), Loader=yaml.Loader).data)


@pytest.fixture(scope="module")
def empty_run(unlabelled_scene, sample_scene, tmp_path_factory) -> Path:
    """A run of the scene whose field is (almost) empty: every click hits nothing."""
    out = tmp_path_factory.mktemp("empty_run")
    result = train_tiny(
        unlabelled_scene, out, "--max-num-iterations", "1", "--pipeline.model.shaping-start-step", "2",
        "--pipeline.datamanager.surrogate", "masks",
        "--pipeline.datamanager.masks-dir", str(sample_scene / "instances"), "--pipeline.datamanager.masks-scope",
        "scene", "--pipeline.model.average-init-density", "1e-9", name="empty",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return out / "empty" / "jacobinerf" / "t"


def transforms(scene: Path) -> dict:
    return json.loads((scene / "transforms.json").read_text())


def fingerprint_of(scene: Path):
    """The scene's fingerprint from transforms.json alone (nerfstudio computes it from its normalised poses)."""
    frames = transforms(scene)["frames"]
    poses = torch.tensor([frame["transform_matrix"] for frame in frames], dtype=torch.float64)[:, :3]
    return scene_fingerprint([frame["file_path"] for frame in frames], poses)


def interior_pixel(instances: np.ndarray, instance: int) -> Tuple[float, float]:
    """Continuous (x, y) centre of the pixel of ``instance`` farthest from its border."""
    from scipy.ndimage import distance_transform_edt

    distance = distance_transform_edt(np.pad(instances == instance, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(distance.argmax(), distance.shape)
    return x + 0.5, y + 0.5


def aimed_ray(meta: dict, name: str, target) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A ray from the first camera that sees instance ``name`` at ``target``, towards it: origin, direction and the
    analytic hit point (original frame)."""
    for frame in meta["frames"]:
        pose = np.array(frame["transform_matrix"])
        origin = pose[:3, 3]
        direction = (np.array(target) - origin) / np.linalg.norm(np.array(target) - origin)
        camera = pose[:3, :3].T @ direction  # OpenGL camera: x right, y up, looking along -z
        x = meta["cx"] + meta["fl_x"] * camera[0] / -camera[2]
        y = meta["cy"] - meta["fl_y"] * camera[1] / -camera[2]
        if camera[2] < 0 and 2 <= x < meta["w"] - 2 and 2 <= y < meta["h"] - 2:
            distance, primitive = _trace(origin[None], direction[None], PRIMITIVES)
            if NAMES[PRIMITIVES[int(primitive[0])].instance - 1] == name:
                return origin, direction, origin + distance[0] * direction
    raise AssertionError(f"no camera sees {name} at {target}")


@pytest.fixture(scope="module")
def click_set_file(sample_scene, tmp_path_factory) -> Path:
    """Pixel clicks on the interior of the walls, floor and ceiling in frame_00000; ray clicks (original frame) at the
    objects; the fingerprint computed from transforms.json."""
    meta = transforms(sample_scene)
    instances = np.asarray(Image.open(sample_scene / "instances" / "frame_00000.png"))
    clicks: List = []
    for name in ("floor", "walls", "ceiling"):
        if NAMES.index(name) + 1 in instances:
            x, y = interior_pixel(instances, NAMES.index(name) + 1)
            clicks.append(PixelClick(name, "images/frame_00000.png", x, y))
    for name, target in OBJECTS.items():
        origin, direction, _ = aimed_ray(meta, name, target)
        clicks.append(RayClick(name, tuple(origin.tolist()), tuple(direction.tolist())))
    classes = tuple(dict.fromkeys(click.label for click in clicks))
    path = tmp_path_factory.mktemp("clicks") / "clicks.json"
    write_clicks(path, ClickSet(classes, tuple(clicks), fingerprint_of(sample_scene)))
    return path


@pytest.fixture(scope="module")
def export(runs, click_set_file, tmp_path_factory) -> Tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("export") / "labelled"
    config = runs["other"] / "config.yml"
    result = label("--load-config", config, "--clicks", click_set_file, "--output-dir", out, cwd=out.parent)
    return out, result


def stems(scene: Path) -> List[str]:
    return sorted(Path(frame["file_path"]).stem for frame in transforms(scene)["frames"])


def test_every_frame_gets_ids_overlay_and_confidence(export, unlabelled_scene, click_set_file):
    out, result = export
    assert result.returncode == 0, output(result)[-4000:]
    assert "entered labelled_points.ply" not in output(result), "a run with depth maps leaves no class out of the cloud"
    classes = json.loads(click_set_file.read_text())["classes"]
    for kind, suffix in FRAME_FILES.items():
        assert sorted(p.stem for p in (out / kind).glob(f"*{suffix}")) == stems(unlabelled_scene), kind
    depth, share = (np.load(out / kind / "frame_00003.npy") for kind in ("depth", "surface_share"))
    assert np.isfinite(depth).any() and np.array_equal(np.isnan(depth), np.isnan(share)), "the same hits"
    assert ((share[np.isfinite(share)] >= 0) & (share[np.isfinite(share)] <= 1 + 1e-6)).all()
    ids = np.stack([np.asarray(Image.open(path)) for path in sorted((out / "ids").glob("*.png"))])
    assert ids.dtype == np.uint8 and ids.shape[1:] == (SCENE_HEIGHT, SCENE_WIDTH) and ids.max() <= len(classes)
    assert len(np.unique(ids)) >= 4, "several classes are predicted"
    assert np.asarray(Image.open(out / "overlay" / "frame_00003.png")).shape == (SCENE_HEIGHT, SCENE_WIDTH, 3)
    confidence = np.asarray(Image.open(out / "confidence" / "frame_00003.png"))
    assert confidence.dtype == np.uint8 and confidence.shape == (SCENE_HEIGHT, SCENE_WIDTH) and confidence.max() > 0
    rows = json.loads((out / "classes.json").read_text())["semantic_classes"]
    assert [row["name"] for row in rows] == ["unlabelled", *classes] and [row["index"] for row in rows] == list(
        range(len(classes) + 1)
    )
    assert all(len(row["color"]) == 3 and all(0 <= c <= 255 for c in row["color"]) for row in rows)
    assert not list(out.rglob(".*partial*"))


def test_the_output_is_a_labelled_scene_with_the_input_images_and_poses(export, unlabelled_scene):
    from jacobinerf_ns.dataparsers.nerfstudio_labelled import LabelledNerfstudioDataParserConfig

    out, _ = export
    for split in ("train", "test"):
        labelled = LabelledNerfstudioDataParserConfig(data=out).setup().get_dataparser_outputs(split)
        original = LabelledNerfstudioDataParserConfig(data=unlabelled_scene).setup().get_dataparser_outputs(split)
        assert [p.resolve() for p in labelled.image_filenames] == [p.resolve() for p in original.image_filenames]
        torch.testing.assert_close(labelled.cameras.camera_to_worlds, original.cameras.camera_to_worlds)
        semantics = labelled.metadata["semantics"]
        assert semantics.classes[0] == "unlabelled"
        assert [p.resolve() for p in semantics.filenames] == [
            (out / "ids" / f"{p.stem}.png").resolve() for p in original.image_filenames
        ]


@pytest.fixture(scope="module")
def rendered_export(export, runs, click_set_file, tmp_path_factory) -> Path:
    """The export's point cloud fused again at the rendered depth (``--no-captured-depth``), as for a capture
    without depth maps: the rerun keeps the export's frames and writes only the point cloud and the final files."""
    out = tmp_path_factory.mktemp("rendered") / "labelled"
    shutil.copytree(export[0], out)
    (out / "transforms.json").unlink()
    config = runs["other"] / "config.yml"
    result = label("--load-config", config, "--clicks", click_set_file, "--output-dir", out, "--no-captured-depth",
                   cwd=out.parent)  # fmt: skip
    assert result.returncode == 0, output(result)[-4000:]
    assert f"Resuming: {SCENE_VIEWS} of {SCENE_VIEWS} frames already" in result.stdout
    return out


@pytest.fixture(scope="module")
def point_cloud(rendered_export, sample_scene):
    """The point cloud fused at the rendered depth (Open3D's tensor API) and each point's distance to the true
    surface."""
    import open3d as o3d
    from scipy.spatial import cKDTree

    cloud = o3d.t.io.read_point_cloud(str(rendered_export / "labelled_points.ply"))
    distance, _ = cKDTree(true_surface(sample_scene).points).query(cloud.point["positions"].numpy())
    return cloud, distance


def test_the_point_cloud_has_an_int32_label_open3d_reads_in_the_original_frame(point_cloud, click_set_file):
    import open3d as o3d

    cloud, distance = point_cloud
    assert {"positions", "colors", "label"} <= set(cloud.point)
    labels = cloud.point["label"].numpy()
    assert cloud.point["label"].dtype == o3d.core.int32 and labels.shape[1] == 1
    assert cloud.point["colors"].dtype == o3d.core.uint8
    classes = json.loads(click_set_file.read_text())["classes"]
    assert len(labels) > 1000 and set(np.unique(labels)) <= set(range(len(classes) + 1))
    # The objects' points lie on their true surfaces more than anywhere else (in any other frame, none would)
    on_objects = np.isin(labels[:, 0], [classes.index(name) + 1 for name in OBJECTS])
    assert on_objects.sum() > 100
    assert np.mean(distance[on_objects] < 0.05) > OBJECT_POINTS_ON_SURFACE, np.percentile(distance, [10, 50, 90])


def shares_of(export: Path, sample_scene: Path, name: str) -> dict:
    """Accuracy and completeness of an export's point cloud against the scene's true surface (ground-truth depth
    back-projected; a point counts within max(5 cm, two pixel footprints))."""
    import open3d as o3d

    points = o3d.t.io.read_point_cloud(str(export / "labelled_points.ply")).point["positions"].numpy()
    shares = CloudScore(points, true_surface(sample_scene)).shares()
    print(f"point cloud {name}: accuracy / completeness", shares)  # the figures the thresholds were calibrated on
    return shares


@pytest.fixture(scope="module")
def surface(export, sample_scene) -> dict:
    """The figures of the export's point cloud: fused at the scene's captured depth (the default)."""
    return shares_of(export[0], sample_scene, "at the captured depth")


@pytest.fixture(scope="module")
def rendered_surface(rendered_export, sample_scene) -> dict:
    """The figures of the point cloud fused at the rendered depth, where the views agree."""
    return shares_of(rendered_export, sample_scene, "at the rendered depth")


def test_the_whole_point_cloud_lies_on_the_true_surface(surface):
    """With the capture's depth maps, the points lie on the captured surface: pixels whose render disagrees with the
    capture (a floater's label) are dropped, and the rest are fused at the captured depth."""
    assert surface["accuracy"] >= 0.99, surface


def test_without_captured_depth_the_whole_point_cloud_lies_on_the_true_surface(rendered_surface):
    """≥ 95% of the points fused at the rendered depth on the true surface (the target without depth maps)."""
    assert rendered_surface["accuracy"] >= 0.95, rendered_surface


def test_the_point_cloud_covers_the_true_surface(surface):
    """≥ 80% of the true surface keeps a point within its distance."""
    assert surface["completeness"] >= 0.8, surface


def test_an_interrupted_export_resumes_and_keeps_the_frames_already_written(export, runs, click_set_file, tmp_path):
    original, _ = export
    out = tmp_path / "labelled"
    shutil.copytree(original, out)
    # what an interruption leaves: no final files, some frames without all their files, a half-written file
    for name in ("transforms.json", "classes.json", "labelled_points.ply"):
        (out / name).unlink()
    (out / "ids" / "frame_00002.png").unlink()
    (out / "depth" / "frame_00005.npy").unlink()
    for kind in ("ids", "overlay", "confidence", "depth"):
        for path in (out / kind).glob("frame_0001[0-2].*"):
            path.unlink()
    (out / "ids" / ".frame_00002.partial-123.png").write_bytes(b"half")
    kept = {path: path.stat().st_mtime_ns for path in (out / "overlay").glob("frame_0000[0-1].png")}
    result = label(
        "--load-config", runs["other"] / "config.yml", "--clicks", click_set_file, "--output-dir", out, cwd=tmp_path
    )
    assert result.returncode == 0, output(result)[-4000:]
    assert f"Resuming: {SCENE_VIEWS - 5} of {SCENE_VIEWS} frames already" in result.stdout
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in kept.items()), "written frames are kept"
    for path in sorted((original / "ids").glob("*.png")):
        np.testing.assert_array_equal(np.asarray(Image.open(out / "ids" / path.name)), np.asarray(Image.open(path)))
    assert (out / "transforms.json").is_file() and (out / "labelled_points.ply").is_file()
    assert not list(out.rglob(".*partial*"))


def instance_iou(out: Path, scene: Path, classes: List[str], name: str) -> float:
    """IoU over all frames of the pixels labelled ``name`` and the ground-truth pixels of that instance."""
    intersection = union = 0
    for path in sorted((out / "ids").glob("*.png")):
        predicted = np.asarray(Image.open(path)) == classes.index(name) + 1
        truth = np.asarray(Image.open(scene / "instances" / path.name)) == NAMES.index(name) + 1
        intersection += int((predicted & truth).sum())
        union += int((predicted | truth).sum())
    return intersection / max(union, 1)


PROPAGATIONS = ("nearest", "surface")


def landing_distances(pipeline, click_set: ClickSet, truth: np.ndarray) -> Dict[str, float]:
    """Object → distance from its ray click's rendered hit (``click_set``'s first clicks, one per object of
    ``OBJECTS``) to its analytic hit ``truth`` (original frame)."""
    from jacobinerf_ns.pointcloud import to_original_frame
    from jacobinerf_ns.propagation.rendering import eval_head_inputs
    from jacobinerf_ns.scene import click_rays, dataset_scene

    scene = dataset_scene(pipeline.datamanager)
    assert click_set.fingerprint.mismatch(scene.fingerprint()) is None
    rays = click_rays(click_set, scene, "rays.json")
    outputs, _ = eval_head_inputs(pipeline.model, rays.bundle())
    hits = to_original_frame(rays.origins + rays.directions * outputs["depth"].reshape(-1, 1), scene.outputs)
    return dict(zip(OBJECTS, np.linalg.norm(hits.numpy()[: len(OBJECTS)] - truth, axis=-1).tolist()))


@pytest.fixture(scope="module")
def ray_clicks(runs, sample_scene, tmp_path_factory) -> dict:
    """One ray click (original frame) per object and background instance, labelled with both runs and both
    propagations: by normalisation, how far each object's click lands from its analytic hit point; by (propagation,
    normalisation), each object's IoU and the label maps."""
    from nerfstudio.utils.eval_utils import eval_setup

    folder = tmp_path_factory.mktemp("ray_clicks")
    meta = transforms(sample_scene)
    aimed = {name: aimed_ray(meta, name, target) for name, target in {**OBJECTS, **BACKGROUND}.items()}
    click_set = ClickSet(
        classes=tuple(aimed),
        clicks=tuple(RayClick(name, tuple(o.tolist()), tuple(d.tolist())) for name, (o, d, _) in aimed.items()),
        fingerprint=fingerprint_of(sample_scene),
    )
    write_clicks(folder / "rays.json", click_set)
    truth = np.array([aimed[name][2] for name in OBJECTS])
    landed, ious, ids = {}, {}, {}
    for normalisation, run in runs.items():
        _, pipeline, _, _ = eval_setup(run / "config.yml", test_mode="test")
        landed[normalisation] = landing_distances(pipeline, click_set, truth)

        for propagation in PROPAGATIONS:
            out = folder / f"{normalisation}_{propagation}"
            result = label("--load-config", run / "config.yml", "--clicks", folder / "rays.json", "--output-dir", out,
                           "--propagation", propagation, cwd=folder)  # fmt: skip
            assert result.returncode == 0, output(result)[-4000:]
            ious[propagation, normalisation] = {
                name: instance_iou(out, sample_scene, list(aimed), name) for name in OBJECTS
            }
            ids[propagation, normalisation] = np.stack(
                [np.asarray(Image.open(p)) for p in sorted((out / "ids").glob("*.png"))]
            )
    print("ray clicks: landing distance", landed, "IoU", ious)  # the figures the thresholds were calibrated on
    return {"landed": landed, "ious": ious, "ids": ids, "folder": folder}


UNEXPLAINED = (
    "Labelled by the nearest click's Jacobian (--propagation nearest), one click does not take this object whole: IoU "
    "0.42 and 0.27 on machine seeds 1 and 2 at today's defaults, its one-click selection an expected failure too "
    "(test_shaping_effect); spread over the surfaces (the default) it reaches 0.96 on both (docs/testing.md)."
)
EXPECTED_FAILURES = {  # (check, normalisation, object) → why it may fail: calibration in docs/testing.md
    ("labels", "default", "box_yellow"): UNEXPLAINED,
}


def object_cases(check: str):
    for normalisation in ("default", "other"):
        for name in OBJECTS:
            reason = EXPECTED_FAILURES.get((check, normalisation, name))
            marks = [pytest.mark.xfail(reason=reason, strict=False)] if reason else []
            yield pytest.param(normalisation, name, marks=marks, id=f"{normalisation}-{name}")


@pytest.mark.parametrize("normalisation, name", object_cases("lands"))
def test_a_ray_click_in_original_coordinates_lands_on_its_object(ray_clicks, normalisation, name):
    """Under either normalisation the click lands within 10 cm of where the ray meets the object (a ray mapped with
    the wrong normalisation lands nowhere near it)."""
    assert ray_clicks["landed"][normalisation][name] < 0.1, ray_clicks["landed"]


@pytest.mark.parametrize("normalisation, name", object_cases("labels"))
def test_a_ray_click_labels_its_object_in_every_frame(ray_clicks, normalisation, name):
    """The object's label covers the object over all frames: IoU > 0.5 (labelling at random scores ~0.05-0.2)."""
    assert ray_clicks["ious"]["nearest", normalisation][name] > 0.5, ray_clicks["ious"]


@pytest.mark.parametrize("normalisation, name", object_cases("spreads"))
def test_a_ray_click_spread_over_the_surfaces_labels_its_object_in_every_frame(ray_clicks, normalisation, name):
    """``--propagation surface``: the object's label covers the object over all frames (IoU > 0.5)."""
    assert ray_clicks["ious"]["surface", normalisation][name] > 0.5, ray_clicks["ious"]


def test_labels_spread_over_the_surfaces_do_not_depend_on_which_frames_are_exported(ray_clicks, runs, tmp_path):
    """The graph is the training frames' (and their masks') whatever ``--frames`` exports: the eval frames exported
    alone get the labels they get in the export of every frame."""
    folder = ray_clicks["folder"]
    out = tmp_path / "eval_only"
    result = label("--load-config", runs["default"] / "config.yml", "--clicks", folder / "rays.json", "--output-dir",
                   out, "--propagation", "surface", "--frames", "eval", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, output(result)[-4000:]
    alone = sorted((out / "ids").glob("*.png"))
    assert alone
    for path in alone:
        every = np.asarray(Image.open(folder / "default_surface" / "ids" / path.name))
        assert np.mean(np.asarray(Image.open(path)) == every) > 0.999, path.name


def test_both_normalisations_label_the_objects_alike(ray_clicks, sample_scene):
    truth_ids = np.stack([np.asarray(Image.open(p)) for p in sorted((sample_scene / "instances").glob("*.png"))])
    on_objects = np.isin(truth_ids, [NAMES.index(name) + 1 for name in OBJECTS])
    ids = ray_clicks["ids"]
    agreement = np.mean(ids["nearest", "default"][on_objects] == ids["nearest", "other"][on_objects])
    assert agreement > 0.7, agreement


FLOOR_CLICK = {"label": "floor", "image": "images/frame_00000.png", "x": 40.5, "y": 28.5}  # floor between objects


def clicks_file(folder: Path, value) -> Path:
    path = folder / "clicks.json"
    path.write_text(value if isinstance(value, str) else json.dumps(value))
    return path


@pytest.mark.parametrize(
    "value, expected",
    [
        ('{"classes": ["floor"], "clicks": [', "clicks.json is not valid JSON (Expecting value at line 1, column 35)"),
        ({"classes": ["floor"], "clicks": [{**FLOOR_CLICK, "y": None}]}, "clicks[0].y is null, not a finite number"),
        ({"classes": ["floor"], "clicks": [{"label": "floor", "x": 1}]}, "clicks[0].image is missing: a click is a"),
        ({"classes": ["floor"], "clicks": [{**FLOOR_CLICK, "label": "lamp"}]}, "'lamp' is not one of the classes"),
        ({"classes": ["floor"], "clicks": []}, "clicks.json has no clicks: add at least one"),
    ],
)
def test_a_bad_clicks_file_stops_before_loading_the_run(tmp_path, value, expected):
    config = tmp_path / "config.yml"
    config.write_text("not read: the clicks file is checked first")
    clicks = clicks_file(tmp_path, value)
    as_a_user_runs_it = isinstance(value, str)  # one case in a subprocess: the exit status and the installed hook
    result = label(
        "--load-config", config, "--clicks", clicks, "--output-dir", tmp_path / "o", cwd=tmp_path,
        in_process=not as_a_user_runs_it,
    )  # fmt: skip
    assert result.returncode != 0 and expected in result.stderr, output(result)[-3000:]
    assert "Traceback" not in output(result) and not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "arguments, expected",
    [
        (["--min-confidence", "2"], "--min-confidence 2.0 must lie in [0, 1]"),
        (["--voxel-size", "0"], "--voxel-size 0.0 must be positive"),
        (["--min-explained", "1.5"], "--min-explained 1.5 must lie in [0, 1]"),
        (["--min-resemblance", "-0.1"], "--min-resemblance -0.1 must lie in [0, 1]"),
        (["--min-class-score", "1.2"], "--min-class-score 1.2 must lie in [0, 1]"),
        (["--min-agreeing-views", "-1"], "--min-agreeing-views -1 must be 0 (no depth check) or more"),
        (["--depth-tolerance", "0"], "--depth-tolerance 0.0 must lie in (0, 1)"),
        (["--min-triangulation-angle", "90"], "--min-triangulation-angle 90.0 must lie in [0, 90) (degrees)"),
        (["--min-surface-share", "1.5"], "--min-surface-share 1.5 must lie in [0, 1]"),
        (["--capture-tolerance", "1"], "--capture-tolerance 1.0 must lie in (0, 1)"),
        (["--surface-pixels", "0"], "--surface-pixels 0 must be 1 or more"),
        (["--load-config", "nowhere/config.yml"], "--load-config nowhere/config.yml is not a file"),
    ],
)
def test_bad_options_are_named(tmp_path, arguments, expected):
    clicks = clicks_file(tmp_path, {"classes": ["floor"], "clicks": [FLOOR_CLICK]})
    config = tmp_path / "config.yml"
    config.write_text("")
    result = label(
        "--load-config", config, "--clicks", clicks, "--output-dir", tmp_path / "o", *arguments, cwd=tmp_path
    )
    assert result.returncode != 0 and expected in result.stderr, output(result)[-3000:]
    assert "Traceback" not in output(result)


def other_scene_fingerprint(scene: Path) -> dict:
    """The fingerprint of the same images with the cameras elsewhere (as JSON)."""
    fingerprint = fingerprint_of(scene)
    return {
        "images": fingerprint.images,
        "names": fingerprint.names,
        "camera_mean": [c + 1.0 for c in fingerprint.camera_mean],
        "camera_spread": fingerprint.camera_spread,
        "view_mean": list(fingerprint.view_mean),
    }


def test_every_bad_input_about_the_run_gives_one_message(runs, unlabelled_scene, export, tmp_path):
    """Each: non-zero exit, the message, no traceback, nothing written that looks like an export."""
    config = runs["other"] / "config.yml"

    def run(value, out: Path, *extra: str) -> subprocess.CompletedProcess:
        folder = tmp_path / f"case_{len(list(tmp_path.glob('case_*')))}"
        folder.mkdir()
        clicks = clicks_file(folder, value)
        return label("--load-config", config, "--clicks", clicks, "--output-dir", out, *extra, cwd=folder)

    origin, direction, _ = aimed_ray(transforms(unlabelled_scene), "box_green", OBJECTS["box_green"])
    box_click = {"label": "box", "origin": origin.tolist(), "direction": direction.tolist()}  # lands on every seed
    good = {"classes": ["box"], "clicks": [box_click]}
    elsewhere = {**good, "fingerprint": other_scene_fingerprint(unlabelled_scene)}
    cases = [
        ({"classes": ["floor"], "clicks": [{**FLOOR_CLICK, "image": "images/frame_99999.png"}]}, tmp_path / "o1", [],
         "clicks[0]: the dataset in"),
        ({"classes": ["floor"], "clicks": [{**FLOOR_CLICK, "x": float(SCENE_WIDTH)}]}, tmp_path / "o2", [],
         f"(x {SCENE_WIDTH:.1f}, y 28.5) lies outside images/frame_00000.png, which is {SCENE_WIDTH}×{SCENE_HEIGHT}"),
        (elsewhere, tmp_path / "o3", [], "was made on another scene than"),
        (good, unlabelled_scene, ["--overwrite"], "is the data folder of the run"),
        (good, export[0] / "classes.json", [], "is a file: give a folder"),
        (good, unlabelled_scene / "images", [], "is not empty and holds no jacobinerf-label export"),
    ]  # fmt: skip
    for value, out, extra, expected in cases:
        result = run(value, out, *extra)
        assert result.returncode != 0 and expected in result.stderr, (expected, output(result)[-3000:])
        assert "Traceback" not in output(result)
    assert "has no image 'images/frame_99999.png'" in run(*cases[0][:2]).stderr
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o3").exists()
    assert sorted(p.name for p in unlabelled_scene.iterdir()) == ["depth", "images", "transforms.json"]

    forced = run(elsewhere, tmp_path / "o3", "--force", "--frames", "eval")
    assert forced.returncode == 0 and "--force: applying" in forced.stdout, output(forced)[-3000:]
    assert len(list((tmp_path / "o3" / "ids").glob("*.png"))) == len(SCENE_EVAL_FRAMES)

    changed = run(good, tmp_path / "o3", "--mode", "exact", "--frames", "eval")
    assert changed.returncode != 0, output(changed)[-3000:]
    assert "holds an export made with another click set; --mode 'linear' (now 'exact')" in changed.stderr
    replaced = run(good, tmp_path / "o3", "--mode", "exact", "--frames", "eval", "--overwrite")
    assert replaced.returncode == 0, output(replaced)[-3000:]
    assert json.loads((tmp_path / "o3" / "export.json").read_text())["mode"] == "exact"


def test_clicks_that_hit_nothing_are_named_and_an_error_when_none_remains(empty_run, tmp_path):
    value = {
        "classes": ["floor", "wall"],
        "clicks": [FLOOR_CLICK, {"label": "wall", "origin": [0, 0, 1], "direction": [1, 0, 0]}],
    }
    result = label(
        "--load-config", empty_run / "config.yml", "--clicks", clicks_file(tmp_path, value), "--output-dir",
        tmp_path / "o", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode != 0 and "None of the 2 clicks of " in result.stderr
    assert "clicks.json hits a surface of this run" in result.stderr
    assert (
        "clicks[0] ('floor' at images/frame_00000.png x 40.5 y 28.5) hits nothing in this run (opacity 0.00"
        in result.stderr
    )
    assert "clicks[1] ('wall', ray from [0.0, 0.0, 1.0]) hits nothing" in result.stderr
    assert "Traceback" not in output(result) and not (tmp_path / "o").exists()
