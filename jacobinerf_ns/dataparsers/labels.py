"""How labelled dataparsers hand labels on: ``metadata["semantics"]`` / ``metadata["instances"]`` as ``Semantics``.

Label files are single-channel integer PNGs, 0 = void. Class and instance names/colours come with them.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs, Semantics

SEMANTICS = "semantics"
INSTANCES = "instances"
LABEL_KINDS = (SEMANTICS, INSTANCES)


def palette(count: int, seed: int = 0) -> torch.Tensor:
    """Distinct-enough colours in [0, 1] for ``count`` ids; id 0 (void) is black."""
    generator = torch.Generator().manual_seed(seed)
    colors = torch.rand(count, 3, generator=generator) * 0.8 + 0.2
    colors[0] = 0.0
    return colors


def make_semantics(filenames: Sequence[Path], names: List[str], colors: Optional[torch.Tensor] = None) -> Semantics:
    return Semantics(filenames=list(filenames), classes=names, colors=palette(len(names)) if colors is None else colors)


def subset_outputs(outputs: DataparserOutputs, indices: Sequence[int]) -> DataparserOutputs:
    """The frames ``indices`` of ``outputs`` (cameras, files, per-frame metadata), same scene transform."""
    index = torch.tensor(list(indices), dtype=torch.long)
    metadata: Dict = dict(outputs.metadata)
    if metadata.get("depth_filenames") is not None:
        metadata["depth_filenames"] = [metadata["depth_filenames"][i] for i in indices]
    for kind in LABEL_KINDS:
        if kind in metadata:
            metadata[kind] = replace(metadata[kind], filenames=[metadata[kind].filenames[i] for i in indices])
    return replace(
        outputs,
        image_filenames=[outputs.image_filenames[i] for i in indices],
        cameras=outputs.cameras[index],
        mask_filenames=None if outputs.mask_filenames is None else [outputs.mask_filenames[i] for i in indices],
        metadata=metadata,
    )


def interval_split(count: int, interval: int, offset: int, split: str) -> List[int]:
    """Frames with ``index % interval == offset`` are eval frames, the others train frames."""
    if not 0 <= offset < interval:
        raise ValueError(f"eval offset {offset} must lie in [0, {interval})")
    is_eval = [i % interval == offset for i in range(count)]
    return [i for i in range(count) if is_eval[i] == (split != "train")]


VOID_NAME = "void"
_MANIFEST = "manifest.json"
_MANIFEST_VERSION = 1


def default_cache_dir(namespace: str, data: Path) -> Path:
    """``~/.cache/jacobinerf_ns/<namespace>/<hash of the resolved data path>`` (the data folder may be read-only)."""
    import hashlib

    digest = hashlib.sha1(str(Path(data).expanduser().resolve()).encode("utf-8")).hexdigest()[:16]
    return Path.home() / ".cache" / "jacobinerf_ns" / namespace / digest


def _read_label_map(path: Path):
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        array = np.asarray(image)
    if array.ndim != 2 or array.dtype.kind not in "ui":
        raise ValueError(
            f"Label map {path} has shape {array.shape} and dtype {array.dtype}: expected a single-channel integer PNG "
            "(raw class/instance ids, 0 = void)."
        )
    return array


def consecutive_label_maps(sources: Sequence[Path], out_dir: Path) -> Tuple[List[Path], List[int]]:
    """Label maps with their raw ids remapped to consecutive ids, written once under ``out_dir``.

    The raw ids present in any of ``sources`` (ids <= 0 are void) become ``1..K`` in increasing order; void
    stays 0. Returns the remapped files (one per source, same order, same resolution) and the raw id of
    each new id ``1..K`` (``raw_ids[k - 1]``). A manifest beside the files records the sources (size and
    mtime) and the id table: when it matches and every file is there, nothing is read or rewritten.
    """
    import numpy as np
    from PIL import Image

    sources = [Path(source) for source in sources]
    out_dir = Path(out_dir).expanduser()
    targets = [out_dir / f"{source.stem}.png" for source in sources]
    if len(set(targets)) != len(targets):
        raise ValueError(
            f"Label maps with the same file stem in {sorted({s.parent for s in sources})}: cannot cache them side by side."
        )
    stamp = [[str(source.resolve()), source.stat().st_size, source.stat().st_mtime_ns] for source in sources]
    manifest_path = out_dir / _MANIFEST
    if manifest_path.exists():
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            manifest = {}
        if (
            manifest.get("version") == _MANIFEST_VERSION
            and manifest.get("sources") == stamp
            and all(t.exists() for t in targets)
        ):
            return targets, [int(raw) for raw in manifest["raw_ids"]]

    present: set = set()
    for source in sources:
        present.update(int(raw) for raw in np.unique(_read_label_map(source)) if raw > 0)
    raw_ids = sorted(present)
    if len(raw_ids) > np.iinfo(np.uint16).max:
        raise ValueError(f"{len(raw_ids)} distinct ids in {sources[0].parent}: more than a 16-bit PNG can hold.")
    dtype = np.uint8 if len(raw_ids) <= np.iinfo(np.uint8).max else np.uint16
    lookup = np.zeros((raw_ids[-1] if raw_ids else 0) + 1, dtype=dtype)
    lookup[raw_ids] = np.arange(1, len(raw_ids) + 1, dtype=dtype)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for source, target in zip(sources, targets):
            array = _read_label_map(source)
            remapped = lookup[np.where(array > 0, array, 0)]
            partial = target.with_name(f".{target.stem}.partial.png")
            Image.fromarray(remapped).save(partial)
            os.replace(partial, target)
        partial = manifest_path.with_name(f".{_MANIFEST}.partial")
        partial.write_text(json.dumps({"version": _MANIFEST_VERSION, "raw_ids": raw_ids, "sources": stamp}))
        os.replace(partial, manifest_path)
    except OSError as error:
        raise OSError(
            f"Cannot write the remapped label maps to {out_dir} ({error}): set the dataparser's cache_dir to a writable folder."
        ) from error
    return targets, raw_ids


def consecutive_semantics(sources: Sequence[Path], out_dir: Path, name_of: Callable[[int], str]) -> Semantics:
    """``Semantics`` over :func:`consecutive_label_maps`: class 0 is ``void``, class ``k`` is ``name_of(raw_ids[k - 1])``."""
    filenames, raw_ids = consecutive_label_maps(sources, out_dir)
    return make_semantics(filenames, [VOID_NAME] + [name_of(raw) for raw in raw_ids])
