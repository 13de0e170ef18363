"""nerfstudio-data (``transforms.json``) with optional per-frame ``semantics_file_path`` / ``instance_file_path``.

The layout of ``replica_office0`` and of the embedded sample scene: a ``classes.json`` beside
``transforms.json`` names the classes (``semantic_classes``) and instances (``instances``).
Without labels it behaves like nerfstudio's own dataparser.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Type

import torch
from nerfstudio.data.dataparsers.nerfstudio_dataparser import Nerfstudio, NerfstudioDataParserConfig
from nerfstudio.utils.io import load_from_json

from jacobinerf_ns.dataparsers.outputs import interval_split, make_semantics, subset_outputs
from jacobinerf_ns.labels import INSTANCES, SEMANTICS, max_label

LABEL_KEYS = {SEMANTICS: "semantics_file_path", INSTANCES: "instance_file_path"}


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
        if not meta_path.exists():
            raise FileNotFoundError(f"No transforms.json at {meta_path}: point --data at a nerfstudio-data folder.")
        meta = load_from_json(meta_path)
        has_split_files = any(f"{s}_filenames" in meta for s in ("train", "val", "test"))
        if self.config.eval_mode == "interval" and not has_split_files:
            # Orient and scale on all frames (as nerfstudio does), then keep this split's frames.
            everything = Nerfstudio(replace(self.config, eval_mode="all"))
            outputs = everything._generate_dataparser_outputs(split)
            self.downscale_factor = everything.downscale_factor
            indices = interval_split(
                len(outputs.image_filenames), self.config.eval_interval, self.config.eval_offset, split
            )
            return subset_outputs(self._with_labels(outputs, meta, meta_path.parent), indices)
        return self._with_labels(super()._generate_dataparser_outputs(split), meta, meta_path.parent)

    def _with_labels(self, outputs, meta, data_dir: Path):
        frame_by_image = {self._get_fname(Path(frame["file_path"]), data_dir): frame for frame in meta["frames"]}
        frames = [frame_by_image[name] for name in outputs.image_filenames]
        tables = (
            json.loads((data_dir / self.config.classes_file).read_text())
            if (data_dir / self.config.classes_file).exists()
            else {}
        )
        metadata = dict(outputs.metadata)
        for kind, key in LABEL_KEYS.items():
            present = [key in frame for frame in frames]
            if not any(present):
                continue
            if not all(present):
                missing = frames[present.index(False)]["file_path"]
                raise ValueError(f"Frame {missing} has no {key} while others do: give every frame one, or none.")
            names, colors = _table(tables, kind)
            filenames = [data_dir / frame[key] for frame in frames]
            if names is None:
                names = [f"{kind}_{i}" for i in range(max_label(filenames) + 1)]
            metadata[kind] = make_semantics(filenames, names, colors)
        return replace(outputs, metadata=metadata)


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
