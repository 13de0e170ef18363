"""Click sets as files (docs/clicks.md): round trip, a clear message for every malformed field, scene fingerprints."""

from __future__ import annotations

import json

import pytest
import torch

from jacobinerf_ns.clicks import ClickSet, PixelClick, RayClick, read_clicks, scene_fingerprint, write_clicks
from jacobinerf_ns.errors import JacobiNerfError

VALID = {
    "classes": ["floor", "chair", "lamp"],
    "clicks": [
        {"label": "chair", "image": "images/frame_00012.png", "x": 140.5, "y": 88},
        {"label": "lamp", "origin": [0.1, 2.0, 1.4], "direction": [0.0, -0.7, -0.7]},
        {"label": "chair", "image": "frame_00003.png", "x": 0, "y": 3.25},
    ],
}


def random_poses(seed: int) -> torch.Tensor:
    """``(4, 3, 4)`` camera-to-world poses: random rotations and centres."""
    generator = torch.Generator().manual_seed(seed)
    rotations = torch.linalg.qr(torch.randn(4, 3, 3, generator=generator))[0]
    return torch.cat([rotations, torch.randn(4, 3, 1, generator=generator)], dim=-1)


def fingerprint_of(seed: int = 0):
    return scene_fingerprint([f"images/frame_{i:05d}.png" for i in range(4)], random_poses(seed))


def test_a_click_set_reads_back_identical(tmp_path):
    path = tmp_path / "clicks.json"
    path.write_text(json.dumps(VALID))
    click_set = read_clicks(path)
    assert click_set.classes == ("floor", "chair", "lamp")
    assert click_set.clicks[0] == PixelClick("chair", "images/frame_00012.png", 140.5, 88.0)
    assert click_set.clicks[1] == RayClick("lamp", (0.1, 2.0, 1.4), (0.0, -0.7, -0.7))
    assert click_set.class_ids() == (2, 3, 2)
    with_fingerprint = ClickSet(click_set.classes, click_set.clicks, fingerprint_of())
    write_clicks(tmp_path / "saved.json", with_fingerprint, about={"tool": "test"})
    again = read_clicks(tmp_path / "saved.json")
    assert again == with_fingerprint and again.digest() == with_fingerprint.digest()
    assert again.digest() != click_set.digest()
    assert json.loads((tmp_path / "saved.json").read_text())["tool"] == "test"  # extra keys: kept, ignored
    assert not list(tmp_path.glob(".*partial*"))


def test_an_empty_click_set_is_a_valid_file(tmp_path):
    """The viewer may save classes before any click; using an empty set is refused where it is used."""
    write_clicks(tmp_path / "empty.json", ClickSet(classes=(), clicks=()))
    assert read_clicks(tmp_path / "empty.json") == ClickSet(classes=(), clicks=())


def broken(change):
    value = json.loads(json.dumps(VALID))
    change(value)
    return value


def set_key(container_path, key, value):
    def change(root):
        target = root
        for step in container_path:
            target = target[step]
        target[key] = value

    return change


def delete_key(container_path, key):
    def change(root):
        target = root
        for step in container_path:
            target = target[step]
        del target[key]

    return change


@pytest.mark.parametrize(
    "value, expected",
    [
        ([1, 2], 'the top level is a JSON list, not an object with "classes" and "clicks"'),
        (broken(delete_key([], "classes")), '"classes" is missing'),
        (broken(set_key([], "clicks", {"a": 1})), '"clicks" is a JSON object, not a list'),
        (broken(set_key(["classes"], 1, "")), 'classes[1] is "": class names are non-empty strings'),
        (broken(set_key(["classes"], 2, "floor")), "classes[2] repeats the class 'floor'"),
        (broken(set_key(["clicks"], 1, "lamp")), "clicks[1] is a JSON string, not an object"),
        (broken(delete_key(["clicks", 0], "label")), "clicks[0].label is missing or not a string"),
        (broken(set_key(["clicks", 0], "label", "table")), "clicks[0].label 'table' is not one of the classes"),
        (broken(set_key(["clicks", 1], "x", 3)), "clicks[1] has both pixel (x) and ray (origin, direction) fields"),
        (broken(delete_key(["clicks", 0], "y")), "clicks[0].y is missing"),
        (broken(set_key(["clicks", 0], "x", "140")), 'clicks[0].x is "140", not a finite number'),
        (broken(set_key(["clicks", 0], "x", True)), "clicks[0].x is true, not a finite number"),
        (broken(set_key(["clicks", 0], "y", -1)), "clicks[0] (x 140.5, y -1.0) lies left of or above the image"),
        (broken(set_key(["clicks", 0], "image", 12)), "clicks[0].image is not a non-empty string"),
        (broken(delete_key(["clicks", 1], "direction")), "clicks[1].direction is missing"),
        (broken(set_key(["clicks", 1], "origin", [1, 2])), "clicks[1].origin is [1, 2], not a list of three numbers"),
        (broken(set_key(["clicks", 1], "direction", [0, 0, 0])), "clicks[1].direction is the zero vector"),
        (broken(set_key([], "fingerprint", [])), '"fingerprint" is a JSON list, not an object'),
        (broken(set_key([], "fingerprint", {"images": 3})), "fingerprint.names is missing"),
    ],
)
def test_every_malformed_field_is_named_with_the_file(tmp_path, value, expected):
    path = tmp_path / "clicks.json"
    path.write_text(json.dumps(value))
    with pytest.raises(JacobiNerfError) as caught:
        read_clicks(path)
    message = caught.value.message
    assert message.startswith(f"Clicks file {path}: ") and expected in message and "docs/clicks.md" in message


def test_not_json_and_missing_files_are_user_errors(tmp_path):
    path = tmp_path / "clicks.json"
    path.write_text('{"classes": ["a"], "clicks": [}')
    with pytest.raises(JacobiNerfError, match=r"clicks\.json is not valid JSON \(.* at line 1, column 31\)"):
        read_clicks(path)
    path.write_text('{"classes": ["a"], "clicks": [{"label": "a", "image": "i.png", "x": NaN, "y": 1}]}')
    with pytest.raises(JacobiNerfError, match=r"clicks\[0\]\.x is NaN, not a finite number"):
        read_clicks(path)
    with pytest.raises(JacobiNerfError, match="does not exist"):
        read_clicks(tmp_path / "absent.json")


def test_a_set_that_would_not_read_back_is_not_written(tmp_path):
    bad = ClickSet(classes=("floor",), clicks=(PixelClick("chair", "a.png", 1.0, 1.0),))
    with pytest.raises(JacobiNerfError, match="'chair' is not one of the classes"):
        write_clicks(tmp_path / "clicks.json", bad)
    assert not list(tmp_path.iterdir())


def test_fingerprints_tell_scenes_apart_and_survive_round_off():
    fingerprint = fingerprint_of(0)
    assert fingerprint.mismatch(fingerprint) is None
    poses = random_poses(0)
    names = [f"other/frame_{i:05d}.png" for i in range(4)]  # the same file names in another folder
    noise = 1e-6 * torch.randn(4, 3, 4, generator=torch.Generator().manual_seed(1))
    assert fingerprint.mismatch(scene_fingerprint(names, poses + noise)) is None
    assert "other camera positions" in fingerprint.mismatch(fingerprint_of(1))
    assert "other file names" in fingerprint.mismatch(scene_fingerprint(["a", "b", "c", "d"], poses))
    assert "of 4 images, this one has 3" in fingerprint.mismatch(scene_fingerprint(names[:3], poses[:3]))
    rotated = poses.clone()
    rotated[:, :3, :3] = -rotated[:, :3, :3]
    assert "other viewing directions" in fingerprint.mismatch(scene_fingerprint(names, rotated))
