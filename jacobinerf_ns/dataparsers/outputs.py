"""What every dataparser of this package builds its outputs with: labels as ``Semantics``, frame subsets, splits.

Labels are handed on as ``metadata["semantics"]`` / ``metadata["instances"]`` (files, class names, colours); reading
and remapping the files themselves is :mod:`jacobinerf_ns.labels`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch
from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs, Semantics

from jacobinerf_ns.errors import JacobiNerfError
from jacobinerf_ns.labels import LABEL_KINDS, VOID_NAME, consecutive_label_maps
from jacobinerf_ns.visualization import palette


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
        raise JacobiNerfError(f"eval offset {offset} must lie in [0, {interval})")
    is_eval = [i % interval == offset for i in range(count)]
    return [i for i in range(count) if is_eval[i] == (split != "train")]


def consecutive_semantics(sources: Sequence[Path], out_dir: Path, name_of: Callable[[int], str]) -> Semantics:
    """``Semantics`` over :func:`consecutive_label_maps`: 0 is void, class ``k`` is ``name_of(raw_ids[k - 1])``."""
    filenames, raw_ids = consecutive_label_maps(sources, out_dir)
    return make_semantics(filenames, [VOID_NAME] + [name_of(raw) for raw in raw_ids])
