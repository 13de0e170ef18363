"""How labelled dataparsers hand labels on: ``metadata["semantics"]`` / ``metadata["instances"]`` as ``Semantics``.

Label files are single-channel integer PNGs, 0 = void. Class and instance names/colours come with them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence

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
