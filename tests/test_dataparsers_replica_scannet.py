"""The Replica (Semantic-NeRF layout) and ScanNet dataparsers on small fixtures written here."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from jacobinerf_ns.dataparsers.posed_frames import every_k_split, opencv_to_opengl
from jacobinerf_ns.dataparsers.replica_semantic_nerf import ReplicaSemanticNerfDataParserConfig
from jacobinerf_ns.dataparsers.scannet_labelled import ScanNetLabelledDataParserConfig
from jacobinerf_ns.errors import JacobiNerfError
from jacobinerf_ns.labels import INSTANCES, SEMANTICS

FRAMES, WIDTH, HEIGHT = 12, 16, 12
RAW_CLASSES = (17, 40, 93)
RAW_INSTANCES = (3, 250, 1000)
FIXED = dict(orientation_method="none", center_method="none", auto_scale_poses=False)


def look_at_origin_opencv(position) -> np.ndarray:
    """OpenCV camera-to-world (x right, y down, z forward) at ``position`` looking at the origin, world z up."""
    position = np.asarray(position, dtype=np.float64)
    forward = -position / np.linalg.norm(position)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, down, forward, position
    return pose


def circle_poses(count: int) -> np.ndarray:
    """Frame 0 sits on +x; the others go around the origin at radius 3, a little above and below it."""
    angles = np.linspace(0, 2 * math.pi, count, endpoint=False)
    heights = 0.3 * np.sin(3 * angles)
    return np.stack([look_at_origin_opencv([3 * math.cos(a), 3 * math.sin(a), h]) for a, h in zip(angles, heights)])


def label_map(frame: int, raw_ids, shape, dtype) -> np.ndarray:
    """Bands of void and ``raw_ids``; frame-dependent so the maps differ."""
    ids = np.array((0,) + tuple(raw_ids), dtype=dtype)
    rows = (np.arange(shape[0])[:, None] + np.arange(shape[1])[None, :] + frame) % len(ids)
    return ids[rows]


def write_rgb(path: Path, seed: int):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def write_label(path: Path, array: np.ndarray):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def make_replica(root: Path, frames: int = FRAMES, info: bool = True) -> Path:
    sequence = root / "room_0" / "Sequence_1"
    poses = circle_poses(frames)
    for i in range(frames):
        write_rgb(sequence / "rgb" / f"rgb_{i}.png", i)
        write_label(sequence / "depth" / f"depth_{i}.png", np.full((HEIGHT, WIDTH), 3000, dtype=np.uint16))
        write_label(
            sequence / "semantic_class" / f"semantic_class_{i}.png",
            label_map(i, RAW_CLASSES, (HEIGHT, WIDTH), np.uint8),
        )
        write_label(sequence / "semantic_class" / f"vis_sem_class_{i}.png", np.zeros((HEIGHT, WIDTH, 3), np.uint8))
        write_label(
            sequence / "semantic_instance" / f"semantic_instance_{i}.png",
            label_map(i, RAW_INSTANCES, (HEIGHT, WIDTH), np.uint16),
        )
    np.savetxt(sequence / "traj_w_c.txt", poses.reshape(frames, 16))
    if info:
        classes = [{"id": 17, "name": "wall"}, {"id": 40, "name": "floor"}, {"id": 5, "name": "unused"}]
        (root / "room_0" / "info_semantic.json").write_text(json.dumps({"classes": classes}))
    return sequence


def make_scannet(root: Path, invalid=(4, 7)) -> Path:
    scene = root / "scene0000_00"
    poses = circle_poses(FRAMES)
    for i in invalid:
        poses[i] = -np.inf
    (scene / "intrinsic").mkdir(parents=True)
    intrinsics = np.eye(4)
    intrinsics[0, 0], intrinsics[1, 1], intrinsics[0, 2], intrinsics[1, 2] = 14.0, 13.0, 7.5, 6.5
    np.savetxt(scene / "intrinsic" / "intrinsic_color.txt", intrinsics)
    for i in range(FRAMES):
        write_rgb(scene / "color" / f"{i}.jpg", i)
        (scene / "pose").mkdir(exist_ok=True)
        np.savetxt(scene / "pose" / f"{i}.txt", poses[i])
        # Label maps at another resolution (8x6) than the colour images (16x12), 16-bit raw ScanNet ids.
        write_label(scene / "label-filt" / f"{i}.png", label_map(i, (3, 40, 1163), (6, 8), np.uint16))
        write_label(scene / "instance-filt" / f"{i}.png", label_map(i, (2, 9), (6, 8), np.uint8))
    return scene


@pytest.fixture(scope="module")
def replica(tmp_path_factory) -> Path:
    return make_replica(tmp_path_factory.mktemp("replica"))


@pytest.fixture(scope="module")
def scannet(tmp_path_factory) -> Path:
    return make_scannet(tmp_path_factory.mktemp("scannet"))


def parse(config, split="train"):
    return config.setup().get_dataparser_outputs(split)


def read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_every_k_split_and_opencv_to_opengl():
    assert every_k_split(range(12), 5, 2, "train") == [0, 5, 10]
    assert every_k_split(range(12), 5, 2, "test") == [2, 7]
    assert every_k_split([0, 1, 2, 3, 5, 6, 8], 5, 2, "val") == [2]
    with pytest.raises(JacobiNerfError, match="test_offset"):
        every_k_split(range(12), 5, 5, "train")
    flipped = opencv_to_opengl(torch.eye(4)[None])[0]
    assert torch.equal(flipped, torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0])))


def test_replica_ordering_split_intrinsics(replica, tmp_path):
    config = ReplicaSemanticNerfDataParserConfig(data=replica, cache_dir=tmp_path / "cache")
    parser = config.setup()
    train, test = parser.get_dataparser_outputs("train"), parser.get_dataparser_outputs("test")
    assert [p.name for p in train.image_filenames] == ["rgb_0.png", "rgb_5.png", "rgb_10.png"]
    assert [p.name for p in test.image_filenames] == ["rgb_2.png", "rgb_7.png"]
    assert [p.name for p in parser.get_dataparser_outputs("val").image_filenames] == ["rgb_2.png", "rgb_7.png"]
    assert [p.name for p in train.metadata["depth_filenames"]] == ["depth_0.png", "depth_5.png", "depth_10.png"]
    cameras = train.cameras
    assert int(cameras.width[0]) == WIDTH and int(cameras.height[0]) == HEIGHT
    assert torch.allclose(cameras.fx, torch.full_like(cameras.fx, WIDTH / 2)) and torch.allclose(cameras.fy, cameras.fx)
    assert float(cameras.cx[0]) == WIDTH / 2 and float(cameras.cy[0]) == HEIGHT / 2
    narrower = parse(ReplicaSemanticNerfDataParserConfig(data=replica, cache_dir=tmp_path / "cache", hfov_degrees=60.0))
    assert float(narrower.cameras.fx[0]) == pytest.approx(WIDTH / (2 * math.tan(math.radians(30))))
    other = parse(
        ReplicaSemanticNerfDataParserConfig(data=replica, cache_dir=tmp_path / "cache", train_every=4, test_offset=1),
        "test",
    )
    assert [p.name for p in other.image_filenames] == ["rgb_1.png", "rgb_5.png", "rgb_9.png"]
    # Default normalisation: camera origins within +/- 1, scene box +/- scene_scale.
    assert float(train.cameras.camera_to_worlds[:, :, 3].abs().max()) <= 1.0 + 1e-5
    assert torch.equal(train.scene_box.aabb, torch.tensor([[-1.0, -1, -1], [1, 1, 1]]))


def test_replica_poses_are_opengl_and_look_at_the_origin(replica, tmp_path):
    raw = parse(ReplicaSemanticNerfDataParserConfig(data=replica, cache_dir=tmp_path / "cache", **FIXED))
    pose = raw.cameras.camera_to_worlds[0]  # frame 0 on +x, looking at the origin
    assert torch.allclose(pose[:, 3], torch.tensor([3.0, 0.0, 0.0]), atol=1e-5)
    assert torch.allclose(-pose[:, 2], torch.tensor([-1.0, 0.0, 0.0]), atol=1e-5)  # looks along -z ...
    assert torch.allclose(pose[:, 1], torch.tensor([0.0, 0.0, 1.0]), atol=1e-5)  # ... with y up
    assert torch.allclose(pose[:, 0], torch.tensor([0.0, 1.0, 0.0]), atol=1e-5)  # x right stays right
    # With the default orient/center/scale every camera's -z still points at the (transformed) origin.
    parsed = parse(ReplicaSemanticNerfDataParserConfig(data=replica, cache_dir=tmp_path / "cache"))
    origin = parsed.dataparser_transform[:, 3] * parsed.dataparser_scale
    for pose in parsed.cameras.camera_to_worlds:
        towards_origin = torch.nn.functional.normalize(origin - pose[:, 3], dim=0)
        assert torch.allclose(-pose[:, 2], towards_origin, atol=1e-4)
        assert float(pose[2, 1]) > 0.9  # camera up is (nearly) world +z after "up" orientation


def test_replica_label_remap_names_and_cache(replica, tmp_path):
    cache = tmp_path / "cache"
    train = parse(ReplicaSemanticNerfDataParserConfig(data=replica, cache_dir=cache))
    semantics, instances = train.metadata[SEMANTICS], train.metadata[INSTANCES]
    assert semantics.classes == ["void", "wall", "floor", "class_93"]
    assert instances.classes == ["void", "instance_3", "instance_250", "instance_1000"]
    assert len(semantics.colors) == 4 and semantics.colors[0].abs().sum() == 0
    assert [p.name for p in semantics.filenames] == [
        "semantic_class_0.png",
        "semantic_class_5.png",
        "semantic_class_10.png",
    ]
    for labels, raw_ids in ((semantics, RAW_CLASSES), (instances, RAW_INSTANCES)):
        for frame, path in zip((0, 5, 10), labels.filenames):
            assert path.parent.parent == cache
            remapped = read(path)
            assert remapped.ndim == 2 and remapped.dtype == np.uint8 and remapped.shape == (HEIGHT, WIDTH)
            raw = label_map(frame, raw_ids, (HEIGHT, WIDTH), np.int64)
            expected = np.searchsorted(np.array(raw_ids), raw) + 1
            assert np.array_equal(remapped, np.where(raw == 0, 0, expected))
    assert set(np.unique(read(semantics.filenames[0]))) == {0, 1, 2, 3}

    cached = sorted(cache.rglob("*.png"))
    assert len(cached) == 2 * FRAMES
    stamps = {path: path.stat().st_mtime_ns for path in cached}
    again = parse(ReplicaSemanticNerfDataParserConfig(data=replica, cache_dir=cache), "test")
    assert {path: path.stat().st_mtime_ns for path in cached} == stamps
    assert again.metadata[SEMANTICS].classes == semantics.classes
    assert [p.name for p in again.metadata[INSTANCES].filenames] == [
        "semantic_instance_2.png",
        "semantic_instance_7.png",
    ]


def test_replica_default_cache_names_without_info_and_no_labels(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    sequence = make_replica(tmp_path / "data", frames=6, info=False)
    train = parse(ReplicaSemanticNerfDataParserConfig(data=sequence))
    assert train.metadata[SEMANTICS].classes == ["void", "class_17", "class_40", "class_93"]
    cache_root = tmp_path / "home" / ".cache" / "jacobinerf_ns" / "replica_labels"
    assert train.metadata[SEMANTICS].filenames[0].is_relative_to(cache_root)
    for folder in ("semantic_class", "semantic_instance", "depth"):
        for path in (sequence / folder).iterdir():
            path.unlink()
        (sequence / folder).rmdir()
    plain = parse(ReplicaSemanticNerfDataParserConfig(data=sequence))
    assert SEMANTICS not in plain.metadata and INSTANCES not in plain.metadata
    assert plain.metadata["depth_filenames"] is None


def test_replica_clear_errors(tmp_path):
    with pytest.raises(JacobiNerfError, match="Semantic-NeRF sequence"):
        parse(ReplicaSemanticNerfDataParserConfig(data=tmp_path / "nowhere"))
    sequence = make_replica(tmp_path / "data", frames=6, info=False)
    config = ReplicaSemanticNerfDataParserConfig(data=sequence, cache_dir=tmp_path / "cache")
    (sequence / "semantic_class" / "semantic_class_3.png").unlink()
    with pytest.raises(JacobiNerfError, match="semantic_class_3|frame 3"):
        parse(config)
    write_label(sequence / "semantic_class" / "semantic_class_3.png", np.zeros((HEIGHT, WIDTH, 3), np.uint8))
    with pytest.raises(JacobiNerfError, match="single-channel"):
        parse(config)
    write_label(sequence / "semantic_class" / "semantic_class_3.png", np.zeros((HEIGHT, WIDTH), np.uint8))
    rows = np.loadtxt(sequence / "traj_w_c.txt")
    np.savetxt(sequence / "traj_w_c.txt", rows[:-1])
    with pytest.raises(JacobiNerfError, match="6 frames in rgb/ but 5 poses"):
        parse(config)
    (sequence / "traj_w_c.txt").unlink()
    with pytest.raises(JacobiNerfError, match="traj_w_c.txt"):
        parse(config)
    np.savetxt(sequence / "traj_w_c.txt", rows)
    with pytest.raises(JacobiNerfError, match="test_offset"):
        parse(ReplicaSemanticNerfDataParserConfig(data=sequence, cache_dir=tmp_path / "cache", test_offset=5))
    with pytest.raises(JacobiNerfError, match="info_semantic"):
        parse(
            ReplicaSemanticNerfDataParserConfig(
                data=sequence, cache_dir=tmp_path / "cache", info_semantic=tmp_path / "no.json"
            )
        )


def test_scannet_drops_invalid_poses_split_and_labels(scannet, tmp_path, capsys):
    cache = tmp_path / "cache"
    parser = ScanNetLabelledDataParserConfig(data=scannet, cache_dir=cache).setup()
    train, test = parser.get_dataparser_outputs("train"), parser.get_dataparser_outputs("test")
    out = capsys.readouterr().out
    assert "dropped 2 of 12 frames" in out and out.count("dropped") == 1
    # Split by place in the sequence, before dropping: frame 7 (a test frame) is gone, frame 4 was neither.
    assert [p.name for p in train.image_filenames] == ["0.jpg", "5.jpg", "10.jpg"]
    assert [p.name for p in test.image_filenames] == ["2.jpg"]
    assert float(train.cameras.fx[0]) == 14.0 and float(train.cameras.fy[0]) == 13.0
    assert float(train.cameras.cx[0]) == 7.5 and float(train.cameras.cy[0]) == 6.5
    assert int(train.cameras.width[0]) == WIDTH and int(train.cameras.height[0]) == HEIGHT
    assert train.metadata["depth_filenames"] is None

    semantics, instances = train.metadata[SEMANTICS], train.metadata[INSTANCES]
    assert semantics.classes == ["void", "class_3", "class_40", "class_1163"]
    assert instances.classes == ["void", "instance_2", "instance_9"]
    remapped = read(semantics.filenames[1])
    assert remapped.shape == (6, 8)  # label resolution kept
    raw = label_map(5, (3, 40, 1163), (6, 8), np.int64)
    assert np.array_equal(remapped, np.select([raw == 3, raw == 40, raw == 1163], [1, 2, 3], 0))

    # Camera 0 on +x: -z towards the origin after orient/center/scale.
    origin = train.dataparser_transform[:, 3] * train.dataparser_scale
    pose = train.cameras.camera_to_worlds[0]
    assert torch.allclose(-pose[:, 2], torch.nn.functional.normalize(origin - pose[:, 3], dim=0), atol=1e-4)

    stamps = {path: path.stat().st_mtime_ns for path in cache.rglob("*.png")}
    assert len(stamps) == 2 * (FRAMES - 2)
    parse(ScanNetLabelledDataParserConfig(data=scannet, cache_dir=cache))
    assert {path: path.stat().st_mtime_ns for path in cache.rglob("*.png")} == stamps


def test_scannet_intrinsics_scaling(scannet, tmp_path):
    config = ScanNetLabelledDataParserConfig(data=scannet, cache_dir=tmp_path / "cache", intrinsics_size=(32, 24))
    cameras = parse(config).cameras
    assert float(cameras.fx[0]) == 7.0 and float(cameras.cx[0]) == 3.75 and float(cameras.cy[0]) == 3.25


def test_scannet_clear_errors(tmp_path):
    with pytest.raises(JacobiNerfError, match="SensReader"):
        parse(ScanNetLabelledDataParserConfig(data=tmp_path / "nowhere"))
    scene = make_scannet(tmp_path / "data", invalid=range(FRAMES))
    config = ScanNetLabelledDataParserConfig(data=scene, cache_dir=tmp_path / "cache")
    with pytest.raises(JacobiNerfError, match="inf/nan"):
        parse(config)
    (scene / "pose" / "3.txt").unlink()
    with pytest.raises(JacobiNerfError, match=r"12 frames .* but 11 poses .*first frame without one: 3"):
        parse(config)
    (scene / "intrinsic" / "intrinsic_color.txt").unlink()
    np.savetxt(scene / "pose" / "3.txt", np.eye(4))
    with pytest.raises(JacobiNerfError, match="intrinsic_color.txt"):
        parse(config)


def test_label_cache_is_rewritten_when_the_sources_change(tmp_path):
    sequence = make_replica(tmp_path / "data", frames=6, info=False)
    cache = tmp_path / "cache"
    before = parse(ReplicaSemanticNerfDataParserConfig(data=sequence, cache_dir=cache)).metadata[SEMANTICS]
    assert before.classes == ["void", "class_17", "class_40", "class_93"]
    changed = label_map(0, RAW_CLASSES, (HEIGHT, WIDTH), np.uint8)
    changed[0, 0] = 5
    write_label(sequence / "semantic_class" / "semantic_class_0.png", changed)
    after = parse(ReplicaSemanticNerfDataParserConfig(data=sequence, cache_dir=cache)).metadata[SEMANTICS]
    assert after.classes == ["void", "class_5", "class_17", "class_40", "class_93"]
    assert read(after.filenames[0])[0, 0] == 1 and read(after.filenames[1]).max() == 4
