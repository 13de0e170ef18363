"""Seconds per image of ``jacobinerf-masks`` (SAM's automatic mask generator, then the id map) on this machine.

    python bench/masks_cost.py --data ../shared/data/replica_office0 [--images 4] [--model-type vit_b] [--threads 2] \
        [--keep-every-mask]

SAM is built with random weights (nothing is downloaded): the compute is that of the real weights (the image encoder
and the prompt decoder run the same operations whatever the values), but the number of masks that pass the quality
filters, and so the small cost of their post-processing and the masks themselves, differ with the real weights
(none passes with random weights). ``--keep-every-mask`` turns both filters off (thresholds 0), so every candidate
mask goes through segment-anything's post-processing (boxes, run-length encoding, non-maximum suppression), and the
id map paints what suppression leaves: a bound from above on what kept masks add. Uses
the command's defaults (points per side, thresholds) and its reading of the scene (``jacobinerf-data``: the first
``--images`` training images; no warm-up: the first call's set-up is small against a SAM pass). Prints each image's
time as it goes, then mean ± std wall seconds per image, and the process's CPU seconds per image (all threads), which
other work on the same cores inflates less.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch

from jacobinerf_ns.commands.masks import Masks
from jacobinerf_ns.segmentation.id_maps import image_id_map, read_rgb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a nerfstudio-data scene (transforms.json)")
    parser.add_argument("--images", type=int, default=3, help="images timed")
    parser.add_argument("--model-type", default="vit_b", choices=["vit_b", "vit_l", "vit_h"])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument(
        "--keep-every-mask", action="store_true", help="filters off: every candidate mask is post-processed"
    )
    args = parser.parse_args()

    from segment_anything import SamAutomaticMaskGenerator, sam_model_registry

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    command = Masks(data=args.data, output_dir=Path("unused"), model_type=args.model_type)
    images = command.training_images()[: args.images]
    options = command.generator_options()
    if args.keep_every_mask:
        options.update(pred_iou_thresh=0.0, stability_score_thresh=0.0)  # segment-anything: 0 skips the filter
    generator = SamAutomaticMaskGenerator(sam_model_registry[args.model_type]().eval(), **options)
    seconds, cpu_seconds, masks = [], [], []
    for image in images:
        rgb = read_rgb(image)
        start, cpu_start = time.perf_counter(), time.process_time()
        ids = image_id_map(generator, rgb)
        seconds.append(time.perf_counter() - start)
        cpu_seconds.append(time.process_time() - cpu_start)
        masks.append(int(ids.max()))
        print(f"{image.name}: {seconds[-1]:.1f} s, {cpu_seconds[-1]:.1f} CPU s, {masks[-1]} masks", flush=True)
    height, width = rgb.shape[:2]
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    print(
        f"{args.model_type}, random weights, {command.points_per_side}² points, {len(seconds)} images of "
        f"{width}×{height} from {args.data}: {np.mean(seconds):.1f} ± {np.std(seconds):.1f} s per image, "
        f"{np.mean(cpu_seconds):.1f} ± {np.std(cpu_seconds):.1f} CPU s per image "
        f"(masks kept per image with random weights{', filters off' if args.keep_every_mask else ''}: {masks})"
    )


if __name__ == "__main__":
    main()
