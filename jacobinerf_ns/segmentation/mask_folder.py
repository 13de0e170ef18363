"""The folder ``--pipeline.datamanager.masks-dir`` reads: ``<image stem>.png`` per training image, uint16 ids.

Each file is written whole (:mod:`jacobinerf_ns.files`), so an interrupted run leaves only complete maps and a rerun
segments only the images without one.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Callable, List, Sequence

from jacobinerf_ns.errors import JacobiNerfError
from jacobinerf_ns.files import save_image
from jacobinerf_ns.segmentation.id_maps import MaskGenerator, image_id_map, read_rgb


def mask_file(output_dir: Path, image: Path) -> Path:
    return Path(output_dir) / f"{Path(image).stem}.png"


def missing_masks(images: Sequence[Path], output_dir: Path) -> List[Path]:
    """The images of ``images`` without a mask file in ``output_dir``; refuses images that share a stem."""
    stems = Counter(Path(image).stem for image in images)
    shared = sorted(str(image) for image in images if stems[Path(image).stem] > 1)
    if shared:
        raise JacobiNerfError(
            f"Images share a file stem ({', '.join(shared[:4])}): masks are found by stem, so theirs would clash."
        )
    return [image for image in images if not mask_file(output_dir, image).exists()]


def write_mask_folder(
    images: Sequence[Path], output_dir: Path, make_generator: Callable[[], MaskGenerator], console=None
) -> int:
    """One id map per image of ``images`` into ``output_dir``, skipping those already there, with a progress bar on
    ``console`` (default: rich's); the generator is made only when an image needs it. Returns the number of images
    segmented."""
    from rich.console import Console
    from rich.progress import track

    console = console or Console()
    todo = missing_masks(images, output_dir)
    if len(todo) < len(images):
        console.print(f"Resuming: {len(images) - len(todo)} of {len(images)} masks already in {output_dir}")
    if not todo:
        return 0
    generator = make_generator()
    for image in track(todo, description="SAM masks", console=console):
        save_image(mask_file(output_dir, image), image_id_map(generator, read_rgb(image)))
    return len(todo)
