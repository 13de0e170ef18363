"""Masks as a per-image segmenter gives them: a folder of instance masks renumbered independently in every image.

    python bench/renumber_masks.py [--masks ../shared/data/replica_office0/instances] [--output outputs/masks_per_image]
                                   [--seed 0]

Each PNG's non-void ids are mapped to 1..n (n = the ids present in that image) by a random permutation drawn for that
image alone (void stays 0), as SAM's automatic mask generator or a per-image panoptic model numbers its masks: id k
of one image and id k of another are unrelated. The output (same file names, so ``<image stem>.png``) is what
``--pipeline.datamanager.masks-dir`` reads; the folder is written as a whole (nothing half-written is left). Keep it
outside the repository (``outputs/`` is ignored by git): the Replica data is under the Replica research terms.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from jacobinerf_ns.files import atomic_folder
from jacobinerf_ns.labels import read_label_map


def renumbered(ids: np.ndarray, generator: np.random.Generator) -> np.ndarray:
    """``ids`` with its non-void ids replaced by a random permutation of 1..n (void 0 kept), same dtype."""
    present = np.unique(ids[ids != 0])
    table = np.zeros(int(ids.max()) + 1, dtype=ids.dtype)
    table[present] = generator.permutation(len(present)) + 1
    return table[ids]


def renumber_folder(masks: Path, output: Path, seed: int = 0) -> int:
    """Writes every ``*.png`` of ``masks`` renumbered (:func:`renumbered`, one draw per image) into ``output``; returns
    the number of files."""
    files = sorted(Path(masks).glob("*.png"))
    if not files:
        raise SystemExit(f"No PNG masks in {masks}: give the folder of integer instance PNGs with --masks.")
    generator = np.random.default_rng(seed)
    with atomic_folder(output) as folder:
        for file in files:
            Image.fromarray(renumbered(read_label_map(file), generator)).save(folder / file.name)
    return len(files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--masks", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/replica_office0/instances"
    )
    parser.add_argument("--output", type=Path, default=Path("outputs/masks_per_image"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    count = renumber_folder(args.masks, args.output, args.seed)
    print(f"{count} masks renumbered per image: {args.output}")


if __name__ == "__main__":
    main()
