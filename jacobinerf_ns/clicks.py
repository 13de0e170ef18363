"""Click sets: what a person clicked to label a scene, kept as one JSON file (format: ``docs/clicks.md``).

A click is stored as what the person did, never as a Jacobian, so one click set works on any run of the scene:

* a pixel of a dataset image: ``{"label", "image", "x", "y"}``, continuous coordinates at the image file's own
  resolution (x right, y down, pixel ``(i, j)`` spans ``[i, i+1) × [j, j+1)``, its centre is ``i + 0.5``);
* a ray ``{"label", "origin", "direction"}`` in the frame of the poses the dataparser read (``transforms.json``),
  never nerfstudio's normalised frame, so it survives retraining with another normalisation.

Files written by tools carry a :class:`SceneFingerprint` (image names and camera poses in that frame) so a click set
is not silently applied to another scene. The scene a click set is made on, and its clicks as rays of a run, are
:mod:`jacobinerf_ns.scene`.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, NoReturn, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from jacobinerf_ns import files
from jacobinerf_ns.errors import JacobiNerfError

FORMAT_HELP = "see docs/clicks.md for the format"
PIXEL_KEYS = ("image", "x", "y")
RAY_KEYS = ("origin", "direction")
FINGERPRINT_TOLERANCE = 1e-3
"""Camera statistics of the same scene agree within this fraction of the cameras' spread (float round-off of the
normalisation is ~1e-6); two different captures almost never do."""

Vector = Tuple[float, float, float]


@dataclass(frozen=True)
class PixelClick:
    """A click on pixel ``(x, y)`` of a dataset image."""

    label: str
    image: str
    """The image's path as the dataset lists it (relative to the data folder), or its file name when unique."""
    x: float
    y: float


@dataclass(frozen=True)
class RayClick:
    """A click along a ray of the scene, in the frame of the poses the dataparser read."""

    label: str
    origin: Vector
    direction: Vector


Click = Union[PixelClick, RayClick]


@dataclass(frozen=True)
class SceneFingerprint:
    """What identifies a scene independently of its normalisation: image names and camera poses (original frame)."""

    images: int
    names: str
    """SHA-256 (16 hex digits) of the sorted image file names."""
    camera_mean: Vector
    """Mean camera centre."""
    camera_spread: float
    """RMS distance of the camera centres from their mean."""
    view_mean: Vector
    """Mean viewing direction (unit vectors, averaged)."""

    def mismatch(self, scene: SceneFingerprint) -> Optional[str]:
        """How ``scene`` differs from the scene this fingerprint was taken of (``None``: the same scene)."""
        if self.images != scene.images:
            return f"it was made on a scene of {self.images} images, this one has {scene.images}"
        if self.names != scene.names:
            return f"it was made on a scene of {self.images} images with other file names"
        tolerance = FINGERPRINT_TOLERANCE * max(self.camera_spread, scene.camera_spread, 1e-9)
        moved = math.dist(self.camera_mean, scene.camera_mean)
        if moved > tolerance or abs(self.camera_spread - scene.camera_spread) > tolerance:
            return f"its images have the same names but other camera positions (mean centre {moved:.3g} away)"
        if math.dist(self.view_mean, scene.view_mean) > FINGERPRINT_TOLERANCE:
            return "its images have the same names and camera positions but other viewing directions"
        return None


def scene_fingerprint(names: Sequence[str], camera_to_worlds: Tensor) -> SceneFingerprint:
    """The fingerprint of images ``names`` with OpenGL camera-to-world poses ``(N, 3, 4)`` in the original frame."""
    digest = hashlib.sha256("\n".join(sorted(Path(name).name for name in names)).encode()).hexdigest()[:16]
    poses = camera_to_worlds.double()
    centres = poses[:, :3, 3]
    mean = centres.mean(dim=0)
    views = torch.nn.functional.normalize(-poses[:, :3, 2], dim=-1)  # OpenGL cameras look along -z
    return SceneFingerprint(
        images=len(names),
        names=digest,
        camera_mean=vector(mean),
        camera_spread=float((centres - mean).square().sum(dim=-1).mean().sqrt()),
        view_mean=vector(views.mean(dim=0)),
    )


def vector(values: Tensor) -> Vector:
    """Three values of a tensor as the click format's ``(x, y, z)`` floats."""
    return tuple(float(v) for v in values)  # type: ignore[return-value]


@dataclass(frozen=True)
class ClickSet:
    """Classes (id = position + 1; 0 is unlabelled) and the clicks that name them."""

    classes: Tuple[str, ...]
    clicks: Tuple[Click, ...]
    fingerprint: Optional[SceneFingerprint] = None

    def class_ids(self) -> Tuple[int, ...]:
        """The class id of each click."""
        return tuple(self.classes.index(click.label) + 1 for click in self.clicks)

    def to_json(self) -> Dict[str, Any]:
        value: Dict[str, Any] = {"classes": list(self.classes), "clicks": [_click_json(c) for c in self.clicks]}
        if self.fingerprint is not None:
            fingerprint = self.fingerprint
            value["fingerprint"] = {
                "images": fingerprint.images,
                "names": fingerprint.names,
                "camera_mean": list(fingerprint.camera_mean),
                "camera_spread": fingerprint.camera_spread,
                "view_mean": list(fingerprint.view_mean),
            }
        return value

    def digest(self) -> str:
        """SHA-256 of the canonical JSON: equal for equal click sets (an export records which set made it)."""
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()


def _click_json(click: Click) -> Dict[str, Any]:
    if isinstance(click, PixelClick):
        return {"label": click.label, "image": click.image, "x": click.x, "y": click.y}
    return {"label": click.label, "origin": list(click.origin), "direction": list(click.direction)}


def require_clicks(click_set: ClickSet, source: str) -> None:
    """A set to label with needs a click (an empty set is a valid file: the viewer saves classes before clicks)."""
    if not click_set.clicks:
        raise JacobiNerfError(
            f"Clicks file {source} has no clicks: add at least one ({FORMAT_HELP}), e.g. "
            '{"label": "chair", "image": "images/frame_00000.png", "x": 10.5, "y": 20.5}.'
        )


def read_clicks(path: Path) -> ClickSet:
    """The click set in a JSON file, every field validated (a :class:`JacobiNerfError` names the file and field)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise JacobiNerfError(f"Clicks file {path} does not exist: give the path of a clicks JSON file.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise JacobiNerfError(f"Cannot read the clicks file {path} ({error}): give a readable JSON file.") from None
    return loads_clicks(text, str(path))


def loads_clicks(text: str, source: str) -> ClickSet:
    """The click set in JSON text (e.g. a file uploaded to the viewer); ``source`` names it in every error."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise JacobiNerfError(
            f"Clicks file {source} is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno}): "
            f"fix it ({FORMAT_HELP})."
        ) from None
    return parse_clicks(value, source)


def write_clicks(path: Path, click_set: ClickSet, about: Optional[Dict[str, Any]] = None) -> None:
    """Writes ``click_set`` (write, then rename); a set that would not read back is refused first.

    ``about``: extra top-level keys saying where the set came from (readers ignore them).
    """
    value = click_set.to_json()
    parse_clicks(value, str(path))
    files.write_json(path, {**value, **(about or {})})


def parse_clicks(value: Any, source: str) -> ClickSet:
    """A click set from already-decoded JSON; ``source`` (a file name) is named in every error.

    Keys the format does not define are ignored (tools may record where a set came from beside it).
    """
    if not isinstance(value, dict):
        _fail(source, "the top level", f'is a JSON {_kind(value)}, not an object with "classes" and "clicks"')
    for key in ("classes", "clicks"):
        if key not in value:
            _fail(source, f'"{key}"', "is missing")
        if not isinstance(value[key], list):
            _fail(source, f'"{key}"', f"is a JSON {_kind(value[key])}, not a list")
    classes = value["classes"]
    for index, name in enumerate(classes):
        if not isinstance(name, str) or not name.strip():
            _fail(source, f"classes[{index}]", f"is {json.dumps(name)}: class names are non-empty strings")
        if classes.index(name) != index:
            _fail(source, f"classes[{index}]", f"repeats the class {name!r}: each class is listed once")
    clicks = tuple(_parse_click(click, f"clicks[{i}]", classes, source) for i, click in enumerate(value["clicks"]))
    fingerprint = None if value.get("fingerprint") is None else _parse_fingerprint(value["fingerprint"], source)
    return ClickSet(classes=tuple(classes), clicks=clicks, fingerprint=fingerprint)


def _parse_click(value: Any, where: str, classes: Sequence[str], source: str) -> Click:
    if not isinstance(value, dict):
        _fail(source, where, f"is a JSON {_kind(value)}, not an object")
    label = value.get("label")
    if not isinstance(label, str):
        _fail(source, f"{where}.label", "is missing or not a string: give the class name of the click")
    if label not in classes:
        _fail(source, f"{where}.label", f'{label!r} is not one of the classes {list(classes)}: add it to "classes"')
    pixel = [key for key in PIXEL_KEYS if key in value]
    ray = [key for key in RAY_KEYS if key in value]
    if pixel and ray:
        _fail(source, where, f"has both pixel ({', '.join(pixel)}) and ray ({', '.join(ray)}) fields: keep one kind")
    if ray:
        for key in RAY_KEYS:
            if key not in value:
                _fail(source, f"{where}.{key}", "is missing: a ray click has an origin and a direction")
        origin = _triple(value["origin"], f"{where}.origin", source)
        direction = _triple(value["direction"], f"{where}.direction", source)
        if math.hypot(*direction) == 0.0:
            _fail(source, f"{where}.direction", "is the zero vector: give the direction the ray points in")
        return RayClick(label=label, origin=origin, direction=direction)
    for key in PIXEL_KEYS:
        if key not in value:
            _fail(
                source,
                f"{where}.{key}",
                'is missing: a click is a pixel ("image", "x", "y") or a ray ("origin", "direction")',
            )
    image = value["image"]
    if not isinstance(image, str) or not image:
        _fail(source, f"{where}.image", "is not a non-empty string: give the image's path as the dataset lists it")
    x, y = (_number(value[key], f"{where}.{key}", source) for key in ("x", "y"))
    if x < 0 or y < 0:
        _fail(source, where, f"(x {x}, y {y}) lies left of or above the image: pixel coordinates start at 0")
    return PixelClick(label=label, image=image, x=x, y=y)


def _parse_fingerprint(value: Any, source: str) -> SceneFingerprint:
    if not isinstance(value, dict):
        _fail(source, '"fingerprint"', f"is a JSON {_kind(value)}, not an object (delete it to skip the scene check)")
    for key in ("images", "names", "camera_mean", "camera_spread", "view_mean"):
        if key not in value:
            _fail(source, f"fingerprint.{key}", "is missing (delete the fingerprint to skip the scene check)")
    if not isinstance(value["images"], int) or isinstance(value["images"], bool):
        _fail(source, "fingerprint.images", "is not an integer")
    if not isinstance(value["names"], str):
        _fail(source, "fingerprint.names", "is not a string")
    return SceneFingerprint(
        images=value["images"],
        names=value["names"],
        camera_mean=_triple(value["camera_mean"], "fingerprint.camera_mean", source),
        camera_spread=_number(value["camera_spread"], "fingerprint.camera_spread", source),
        view_mean=_triple(value["view_mean"], "fingerprint.view_mean", source),
    )


def _number(value: Any, where: str, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _fail(source, where, f"is {json.dumps(value)}, not a finite number")
    return float(value)


def _triple(value: Any, where: str, source: str) -> Vector:
    if not isinstance(value, list) or len(value) != 3:
        _fail(source, where, f"is {json.dumps(value)}, not a list of three numbers")
    return tuple(_number(v, f"{where}[{i}]", source) for i, v in enumerate(value))  # type: ignore[return-value]


def _kind(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def _fail(source: str, where: str, problem: str) -> NoReturn:
    raise JacobiNerfError(f"Clicks file {source}: {where} {problem} ({FORMAT_HELP}).")
