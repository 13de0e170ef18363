"""Label maps: the one place that reads, validates, resizes and remaps them.

A label map is a single-channel integer PNG of ids, 0 = void. Dataparsers hand them on as
``metadata["semantics"]`` / ``metadata["instances"]`` (nerfstudio's ``Semantics``: files, class names, colours).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np
import torch

from jacobinerf_ns import cache, files
from jacobinerf_ns.errors import JacobiNerfError

SEMANTICS = "semantics"
INSTANCES = "instances"
LABEL_KINDS = (SEMANTICS, INSTANCES)
VOID_NAME = "void"


def read_label_map(path: Path) -> np.ndarray:
    """The ids of one label PNG, ``(H, W)`` integer array; raises on anything but a single-channel integer image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            array = np.asarray(image)
    except (OSError, UnidentifiedImageError) as error:
        raise JacobiNerfError(
            f"Label map {path} cannot be read ({error}): give a single-channel integer PNG."
        ) from error
    if array.ndim != 2 or array.dtype.kind not in "uib":
        raise JacobiNerfError(
            f"Label map {path} has shape {array.shape} and dtype {array.dtype}: expected a single-channel integer PNG "
            "(raw class/instance ids, 0 = void)."
        )
    return array


def load_label_maps(filenames: Sequence[Path], height: int, width: int) -> torch.Tensor:
    """Label maps resized (nearest) to ``height × width``, stacked ``(N, H, W)`` int64."""
    from PIL import Image

    maps = []
    for name in filenames:
        array = read_label_map(name)
        if array.shape != (height, width):
            array = np.asarray(Image.fromarray(array).resize((width, height), Image.NEAREST))
        maps.append(torch.from_numpy(array.astype(np.int64)))
    return torch.stack(maps)


def max_label(filenames: Sequence[Path]) -> int:
    """The largest id in any of the label maps."""
    return max(int(read_label_map(name).max()) for name in filenames)


_MANIFEST = "manifest.json"
_MANIFEST_VERSION = 1


def consecutive_label_maps(sources: Sequence[Path], out_dir: Path) -> Tuple[List[Path], List[int]]:
    """Label maps with their raw ids remapped to consecutive ids, written once under ``out_dir``.

    The raw ids present in any of ``sources`` (ids <= 0 are void) become ``1..K`` in increasing order; void
    stays 0. Returns the remapped files (one per source, same order, same resolution) and the raw id of
    each new id ``1..K`` (``raw_ids[k - 1]``). A manifest beside the files records the sources (size and
    mtime) and the id table: when it matches and every file is there, nothing is read or rewritten.
    """
    import json

    sources = [Path(source) for source in sources]
    out_dir = Path(out_dir).expanduser()
    targets = [out_dir / f"{source.stem}.png" for source in sources]
    if len(set(targets)) != len(targets):
        folders = sorted({s.parent for s in sources})
        raise JacobiNerfError(f"Label maps with the same file stem in {folders}: cannot cache them side by side.")
    stamp = [cache.file_signature(source) for source in sources]
    manifest_path = out_dir / _MANIFEST
    if manifest_path.exists():
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            manifest = {}
        fresh = manifest.get("version") == _MANIFEST_VERSION and manifest.get("sources") == stamp
        if fresh and all(t.exists() for t in targets):
            return targets, [int(raw) for raw in manifest["raw_ids"]]

    present: set = set()
    for source in sources:
        present.update(int(raw) for raw in np.unique(read_label_map(source)) if raw > 0)
    raw_ids = sorted(present)
    if len(raw_ids) > np.iinfo(np.uint16).max:
        raise JacobiNerfError(f"{len(raw_ids)} distinct ids in {sources[0].parent}: more than a 16-bit PNG can hold.")
    dtype = np.uint8 if len(raw_ids) <= np.iinfo(np.uint8).max else np.uint16
    lookup = np.zeros((raw_ids[-1] if raw_ids else 0) + 1, dtype=dtype)
    lookup[raw_ids] = np.arange(1, len(raw_ids) + 1, dtype=dtype)
    try:
        for source, target in zip(sources, targets):
            array = read_label_map(source)
            files.save_image(target, lookup[np.where(array > 0, array, 0)])
        # written last: the manifest marks a complete set
        files.write_json(manifest_path, {"version": _MANIFEST_VERSION, "raw_ids": raw_ids, "sources": stamp})
    except OSError as error:
        raise JacobiNerfError(
            f"Cannot write the remapped label maps to {out_dir} ({error}): set the dataparser's cache_dir to a "
            "writable folder."
        ) from error
    return targets, raw_ids
