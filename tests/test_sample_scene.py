"""Tests for the embedded procedurally generated demo scene (jacobinerf_ns.sample_scene).

Everything is read back from the written files; the geometry checks use only the
documented conventions (OpenGL camera-to-world, pixel centres at x + 0.5, z-depth in mm).
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jacobinerf_ns.sample_scene import make_sample_scene
from tests.helpers import SCENE_HEIGHT as HEIGHT
from tests.helpers import SCENE_VIEWS as NUM_VIEWS
from tests.helpers import SCENE_WIDTH as WIDTH


@pytest.fixture(scope="module")
def scene_dir(sample_scene: Path) -> Path:
    return sample_scene


@pytest.fixture(scope="module")
def transforms(scene_dir: Path) -> dict:
    return json.loads((scene_dir / "transforms.json").read_text())


@pytest.fixture(scope="module")
def classes(scene_dir: Path) -> dict:
    return json.loads((scene_dir / "classes.json").read_text())


def load(scene_dir: Path, relative_path: str) -> np.ndarray:
    return np.asarray(Image.open(scene_dir / relative_path))


def class_index(classes: dict, name: str) -> int:
    return next(c["index"] for c in classes["semantic_classes"] if c["name"] == name)


def test_layout_sizes_and_dtypes(scene_dir: Path, transforms: dict) -> None:
    assert transforms["camera_model"] == "OPENCV"
    assert (transforms["w"], transforms["h"]) == (WIDTH, HEIGHT)
    assert (transforms["cx"], transforms["cy"]) == (WIDTH / 2, HEIGHT / 2)
    assert all(transforms[k] == 0.0 for k in ("k1", "k2", "p1", "p2"))
    horizontal_fov = 2 * np.degrees(np.arctan(WIDTH / 2 / transforms["fl_x"]))
    assert 65 < horizontal_fov < 75
    assert len(transforms["frames"]) == NUM_VIEWS
    for folder in ("images", "depth", "semantics", "instances"):
        assert len(list((scene_dir / folder).glob("frame_*.png"))) == NUM_VIEWS
    for frame in transforms["frames"]:
        rgb = load(scene_dir, frame["file_path"])
        depth = load(scene_dir, frame["depth_file_path"])
        semantics = load(scene_dir, frame["semantics_file_path"])
        instances = load(scene_dir, frame["instance_file_path"])
        assert rgb.shape == (HEIGHT, WIDTH, 3) and rgb.dtype == np.uint8
        assert depth.shape == (HEIGHT, WIDTH) and depth.dtype == np.uint16
        assert semantics.shape == (HEIGHT, WIDTH) and semantics.dtype == np.uint8
        assert instances.shape == (HEIGHT, WIDTH) and instances.dtype == np.uint8
        assert (depth > 0).all(), "closed room: every pixel hits a surface"
        assert (instances > 0).all() and (semantics > 0).all()
        assert rgb.std() > 10, "textured and shaded, not flat"
        pose = np.array(frame["transform_matrix"])
        assert pose.shape == (4, 4)
        np.testing.assert_allclose(pose[:3, :3] @ pose[:3, :3].T, np.eye(3), atol=1e-9)
        np.testing.assert_allclose(pose[3], [0, 0, 0, 1])


def test_classes_consistent_with_label_maps(scene_dir: Path, transforms: dict, classes: dict) -> None:
    class_indices = {c["index"] for c in classes["semantic_classes"]}
    assert classes["semantic_classes"][0]["name"] == "void" and classes["instances"][0]["index"] == 0
    assert {"floor", "wall", "ceiling", "ball", "box", "vase"} <= {c["name"] for c in classes["semantic_classes"]}
    assert all(len(c["color"]) == 3 for c in classes["semantic_classes"])
    class_of_instance = {i["index"]: i["class_index"] for i in classes["instances"]}
    assert set(class_of_instance.values()) <= class_indices
    for frame in transforms["frames"]:
        semantics = load(scene_dir, frame["semantics_file_path"])
        instances = load(scene_dir, frame["instance_file_path"])
        assert set(np.unique(instances).tolist()) <= set(class_of_instance)
        lookup = np.zeros(256, dtype=np.uint8)
        for instance, class_index_ in class_of_instance.items():
            lookup[instance] = class_index_
        np.testing.assert_array_equal(lookup[instances], semantics)


def test_instances_and_classes_visible(scene_dir: Path, transforms: dict, classes: dict) -> None:
    seen_instances: set[int] = set()
    for frame in transforms["frames"]:
        assert len(np.unique(load(scene_dir, frame["semantics_file_path"]))) >= 3
        seen_instances |= set(np.unique(load(scene_dir, frame["instance_file_path"])).tolist())
    for name in ("ball", "box"):
        instances_of_class = {
            i["index"] for i in classes["instances"] if i["class_index"] == class_index(classes, name)
        }
        assert len(instances_of_class) == 2
        assert instances_of_class <= seen_instances
    assert class_index(classes, "vase") in {
        i["class_index"] for i in classes["instances"] if i["index"] in seen_instances
    }


def backproject_to_world(depth_mm: np.ndarray, pose: np.ndarray, intrinsics: dict) -> np.ndarray:
    """World points (H*W, 3) of all pixel centres, from z-depth and an OpenGL camera-to-world pose."""
    height, width = depth_mm.shape
    pixel_x, pixel_y = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    z = depth_mm.astype(np.float64).ravel() / 1000.0
    camera_points = np.stack(
        [
            (pixel_x.ravel() - intrinsics["cx"]) / intrinsics["fl_x"] * z,
            -(pixel_y.ravel() - intrinsics["cy"]) / intrinsics["fl_y"] * z,
            -z,
        ],
        axis=1,
    )
    return camera_points @ pose[:3, :3].T + pose[:3, 3]


def project_to_pixels(
    points: np.ndarray, pose: np.ndarray, intrinsics: dict
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel column, row (integer, pixel containing the projection) and z-depth of world points."""
    camera_points = (points - pose[:3, 3]) @ pose[:3, :3]
    z = -camera_points[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = intrinsics["fl_x"] * camera_points[:, 0] / z + intrinsics["cx"]
        v = -intrinsics["fl_y"] * camera_points[:, 1] / z + intrinsics["cy"]
    return np.floor(u), np.floor(v), z


@pytest.mark.parametrize("view_a, view_b", [(0, 1), (1, 0), (5, 7), (10, 13), (20, 22)])
def test_multiview_geometric_consistency(scene_dir: Path, transforms: dict, view_a: int, view_b: int) -> None:
    frame_a, frame_b = transforms["frames"][view_a], transforms["frames"][view_b]
    pose_a, pose_b = np.array(frame_a["transform_matrix"]), np.array(frame_b["transform_matrix"])
    depth_a, depth_b = load(scene_dir, frame_a["depth_file_path"]), load(scene_dir, frame_b["depth_file_path"])
    instances_a = load(scene_dir, frame_a["instance_file_path"]).ravel()
    instances_b = load(scene_dir, frame_b["instance_file_path"])

    column, row, z_in_b = project_to_pixels(backproject_to_world(depth_a, pose_a, transforms), pose_b, transforms)
    inside = (z_in_b > 0) & (column >= 0) & (column < depth_b.shape[1]) & (row >= 0) & (row < depth_b.shape[0])
    column, row = column[inside].astype(int), row[inside].astype(int)
    depth_b_at_projection = depth_b[row, column] / 1000.0
    agrees = np.abs(depth_b_at_projection - z_in_b[inside]) < 0.02 + 0.01 * z_in_b[inside]
    covisible_labels_a = instances_a[inside][agrees]
    covisible_labels_b = instances_b[row[agrees], column[agrees]]

    assert agrees.sum() > 0.25 * depth_a.size, "nearby views should share a large co-visible area"
    assert (covisible_labels_a == covisible_labels_b).mean() >= 0.95


def test_second_call_reuses_scene(tmp_path: Path) -> None:
    out_dir = make_sample_scene(tmp_path / "scene", num_views=3, width=16, height=12, seed=1)
    written = [out_dir / "transforms.json", out_dir / "images" / "frame_00000.png"]
    mtimes = [path.stat().st_mtime_ns for path in written]
    assert json.loads(written[0].read_text())["sample_scene"] == {"num_views": 3, "width": 16, "height": 12, "seed": 1}
    assert make_sample_scene(out_dir, num_views=3, width=16, height=12, seed=1) == out_dir
    assert [path.stat().st_mtime_ns for path in written] == mtimes


def test_deterministic_and_rerendered_for_new_arguments(tmp_path: Path) -> None:
    first = make_sample_scene(tmp_path / "first", num_views=4, width=16, height=12, seed=3)
    second = make_sample_scene(tmp_path / "second", num_views=4, width=16, height=12, seed=3)
    for folder in ("images", "depth", "semantics", "instances"):
        for view in range(4):
            name = f"{folder}/frame_{view:05d}.png"
            np.testing.assert_array_equal(load(first, name), load(second, name))
    make_sample_scene(first, num_views=2, width=16, height=12, seed=3)
    assert len(json.loads((first / "transforms.json").read_text())["frames"]) == 2
    assert len(list((first / "images").glob("*.png"))) == 2


def test_open_background_shows_sky_behind_the_objects_with_no_depth_and_no_label(tmp_path: Path) -> None:
    scene = make_sample_scene(tmp_path / "open", num_views=6, width=32, height=24, open_background=True)
    transforms = json.loads((scene / "transforms.json").read_text())
    assert transforms["sample_scene"]["open_background"] is True
    for frame in transforms["frames"]:
        depth = load(scene, frame["depth_file_path"])
        sky = depth == 0
        assert 0.1 < sky.mean() < 0.8, "each view shows both sky and the objects"
        assert (load(scene, frame["semantics_file_path"])[sky] == 0).all()
        assert (load(scene, frame["instance_file_path"])[sky] == 0).all()
        assert (load(scene, frame["instance_file_path"])[~sky] > 0).all(), "every other pixel is a labelled surface"
        image = load(scene, frame["file_path"]).astype(int)
        red, _, blue = image[sky].mean(axis=0)  # its border pixels average in the objects' colours (supersampling)
        assert blue > red + 20, "the sky is blue"
        points = backproject_to_world(depth, np.array(frame["transform_matrix"]), transforms)[~sky.ravel()]
        assert np.abs(points[:, :2]).max() <= 1.2 + 1e-3, "the floor is a patch around the objects"
    room = make_sample_scene(tmp_path / "room", num_views=6, width=32, height=24)
    assert json.loads((room / "transforms.json").read_text())["sample_scene"] == {
        "num_views": 6, "width": 32, "height": 24, "seed": 0}  # fmt: skip
    assert (load(room, "depth/frame_00000.png") > 0).all(), "the room has a surface behind every pixel"


def test_foreign_non_empty_folder_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a sample scene")
    with pytest.raises(ValueError, match="empty"):
        make_sample_scene(tmp_path, num_views=2, width=8, height=6)
    (tmp_path / "transforms.json").write_text(json.dumps({"frames": []}))
    with pytest.raises(ValueError, match="empty"):
        make_sample_scene(tmp_path, num_views=2, width=8, height=6)


def test_command_line(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "jacobinerf_ns.sample_scene",
        str(tmp_path / "cli"),
        "--num-views",
        "2",
        "--width",
        "8",
        "--height",
        "6",
    ]
    subprocess.run(command, check=True, cwd=Path(__file__).resolve().parents[1], capture_output=True)
    assert json.loads((tmp_path / "cli" / "transforms.json").read_text())["sample_scene"]["num_views"] == 2
