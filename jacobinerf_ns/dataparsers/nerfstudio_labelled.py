"""nerfstudio-data (``transforms.json``) with optional per-frame ``semantics_file_path`` / ``instance_file_path``.

The layout of ``replica_office0`` and of the embedded sample scene: a ``classes.json`` beside
``transforms.json`` names the classes (``semantic_classes``) and instances (``instances``).
Without labels it behaves like nerfstudio's own dataparser.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import List, Literal, Type

import torch
from nerfstudio.data.dataparsers.nerfstudio_dataparser import Nerfstudio, NerfstudioDataParserConfig

from jacobinerf_ns.compat import nerfstudio_image_path
from jacobinerf_ns.dataparsers.outputs import interval_split, make_semantics, subset_outputs
from jacobinerf_ns.errors import JacobiNerfError
from jacobinerf_ns.labels import INSTANCES, SEMANTICS, max_label

LABEL_KEYS = {SEMANTICS: "semantics_file_path", INSTANCES: "instance_file_path"}
LABEL_MODES = ("1", "L", "P", "I", "I;16", "I;16B", "I;16L")
"""PIL modes of single-channel integer images."""


@dataclass
class LabelledNerfstudioDataParserConfig(NerfstudioDataParserConfig):
    """nerfstudio-data plus semantic/instance label maps and a ``classes.json``."""

    _target: Type = field(default_factory=lambda: LabelledNerfstudio)
    eval_mode: Literal["fraction", "filename", "interval", "all"] = "interval"
    """How to split train/eval (nerfstudio's modes); ``interval`` honours ``eval_offset``."""
    eval_interval: int = 8
    """With ``interval``: every ``eval_interval``-th frame is an eval frame."""
    eval_offset: int = 4
    """With ``interval``: eval frames have ``index % eval_interval == eval_offset`` (replica_office0's split)."""
    classes_file: str = "classes.json"
    """Class and instance table beside transforms.json (optional)."""


@dataclass
class LabelledNerfstudio(Nerfstudio):
    config: LabelledNerfstudioDataParserConfig

    def _generate_dataparser_outputs(self, split: str = "train"):
        meta_path = self.config.data if self.config.data.suffix == ".json" else self.config.data / "transforms.json"
        meta = read_transforms(meta_path)
        check_depth_files(meta, meta_path.parent)
        has_split_files = any(f"{s}_filenames" in meta for s in ("train", "val", "test"))
        interval = self.config.eval_mode == "interval" and not has_split_files
        # nerfstudio's parser; with interval splits it orients and scales on all frames, then this split's are kept
        parser = Nerfstudio(replace(self.config, eval_mode="all") if interval else self.config)
        outputs = self._with_labels(parser.get_dataparser_outputs(split), meta, meta_path.parent, parser)
        self.downscale_factor = parser.downscale_factor
        if not interval:
            return outputs
        every, offset = self.config.eval_interval, self.config.eval_offset
        return subset_outputs(outputs, interval_split(len(outputs.image_filenames), every, offset, split))

    def _with_labels(self, outputs, meta, data_dir: Path, parser: Nerfstudio):
        """``outputs`` with the label maps of their frames (``parser``: the nerfstudio parser that made them)."""
        frame_by_image = {
            nerfstudio_image_path(parser, Path(frame["file_path"]), data_dir): frame for frame in meta["frames"]
        }
        frames = [frame_by_image[name] for name in outputs.image_filenames]
        tables = read_classes(data_dir / self.config.classes_file)
        metadata = dict(outputs.metadata)
        for kind, key in LABEL_KEYS.items():
            present = [key in frame for frame in frames]
            if not any(present):
                continue
            if not all(present):
                missing = frames[present.index(False)]["file_path"]
                raise JacobiNerfError(
                    f"Frame {missing} of transforms.json has no {key} while others do: give every frame one, or none."
                )
            names, colors = _table(tables, kind)
            filenames = [data_dir / frame[key] for frame in frames]
            check_label_files(filenames, key)
            if names is None:
                names = [f"{kind}_{i}" for i in range(max_label(filenames) + 1)]
            metadata[kind] = make_semantics(filenames, names, colors)
        return replace(outputs, metadata=metadata)


def read_transforms(path: Path) -> dict:
    """transforms.json, checked for what nerfstudio's parser assumes: frames with an existing image and a 4×4 pose."""
    if not path.is_file():
        raise JacobiNerfError(f"No transforms.json at {path}: point --data at a nerfstudio-data folder.")
    meta = read_json(path, "transforms.json")
    frames = meta.get("frames") if isinstance(meta, dict) else None
    if not isinstance(frames, list) or not frames:
        raise JacobiNerfError(f"{path} lists no frames: a nerfstudio transforms.json has a non-empty 'frames' list.")
    for index, frame in enumerate(frames):
        if not isinstance(frame, dict) or "file_path" not in frame:
            raise JacobiNerfError(f"Frame {index} of {path} has no 'file_path': every frame names its image.")
        pose = frame.get("transform_matrix")
        if not (isinstance(pose, list) and len(pose) in (3, 4) and all(len(row) == 4 for row in pose)):
            raise JacobiNerfError(
                f"Frame {frame['file_path']} of {path} has no 4×4 'transform_matrix' (camera-to-world)."
            )
    missing = [frame["file_path"] for frame in frames if not (path.parent / frame["file_path"]).is_file()]
    if missing:
        raise JacobiNerfError(
            f"{len(missing)} of {len(frames)} images listed in {path} do not exist (first: "
            f"{path.parent / missing[0]}): fix the file paths in transforms.json or restore the images."
        )
    return meta


def check_depth_files(meta: dict, data_dir: Path) -> None:
    """Every frame names an existing ``depth_file_path``, or none does (nerfstudio's parser asserts on a partial set;
    a missing file would stop training when its batch is loaded)."""
    frames = meta["frames"]
    named = [frame for frame in frames if "depth_file_path" in frame]
    if not named:
        return
    if len(named) < len(frames):
        missing = next(frame for frame in frames if "depth_file_path" not in frame)["file_path"]
        raise JacobiNerfError(
            f"Frame {missing} of transforms.json has no depth_file_path while others do: give every frame one, or none."
        )
    absent = [
        data_dir / frame["depth_file_path"] for frame in named if not (data_dir / frame["depth_file_path"]).is_file()
    ]
    if absent:
        raise JacobiNerfError(
            f"{len(absent)} of {len(frames)} frames name a depth_file_path that does not exist (first: {absent[0]}): "
            "restore the depth maps or remove depth_file_path from every frame."
        )


def read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise JacobiNerfError(f"{path} is not a readable JSON {what} ({error}).") from error


def read_classes(path: Path) -> dict:
    """classes.json (optional): ``{"semantic_classes": [{"index", "name", "color"}...], "instances": [...]}``."""
    if not path.exists():
        return {}
    tables = read_json(path, "class table")
    for key in ("semantic_classes", "instances"):
        rows = tables.get(key, []) if isinstance(tables, dict) else None
        if not isinstance(rows, list) or not all(_valid_row(row) for row in rows):
            raise JacobiNerfError(
                f'{path}: \'{key}\' must be a list of rows {{"index": id ≥ 0, "name": ..., "color": [r, g, b]}} '
                "(name and color optional)."
            )
    return tables


def _valid_row(row) -> bool:
    if not isinstance(row, dict) or not isinstance(row.get("index"), int) or row["index"] < 0:
        return False
    color = row.get("color", [0, 0, 0])
    return isinstance(color, list) and len(color) == 3 and all(isinstance(c, (int, float)) for c in color)


def check_label_files(filenames: List[Path], key: str) -> None:
    """Every label file exists and is a single-channel image (read from its header only)."""
    from PIL import Image

    missing = [name for name in filenames if not name.is_file()]
    if missing:
        raise JacobiNerfError(
            f"{len(missing)} of {len(filenames)} frames name a {key} that does not exist (first: {missing[0]}): "
            "restore the label files or remove the key from every frame."
        )
    wrong = []
    for name in filenames:
        with Image.open(name) as image:
            if image.mode not in LABEL_MODES:
                wrong.append((name, image.mode))
    if wrong:
        raise JacobiNerfError(
            f"{len(wrong)} of {len(filenames)} {key} files are {wrong[0][1]} images (first: {wrong[0][0]}): label maps "
            "must be single-channel integer PNGs of ids (0 = void), not colour visualisations."
        )


def _table(tables: dict, kind: str):
    """Names (and colours) by id from classes.json; ``None`` when the table is absent."""
    rows = tables.get("semantic_classes" if kind == SEMANTICS else "instances")
    if not rows:
        return None, None
    size = max(row["index"] for row in rows) + 1
    names = [f"{kind}_{i}" for i in range(size)]
    colors = None
    for row in rows:
        names[row["index"]] = row.get("name", names[row["index"]])
    if all("color" in row for row in rows):
        colors = torch.zeros(size, 3)
        for row in rows:
            colors[row["index"]] = torch.tensor(row["color"], dtype=torch.float32) / 255.0
    return names, colors
