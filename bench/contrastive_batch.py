"""What the contrastive batch holds, and what drawing it image by image costs, per mask scope.

    python bench/contrastive_batch.py [--data DIR] [--masks-dir DIR] [--images 1 2 4 8 16] [--batches 50]
                                      [--rays 1024] [--contrastive 256]

Draws ``--batches`` training batches through the jacobinerf datamanager, once per setting: scene scope (nerfstudio's
uniform sampling, every pair compared), per-image masks without grouping (the same batches, pairs of one image only),
and image scope with the contrastive rays drawn from k images (``--pipeline.datamanager.contrastive-images k``). Per
anchor of the contrastive batch it reports the rays compared with it, its positives (same non-void id) and negatives,
and the share of anchors with at least one positive; then the time of ``next_train`` (the fastest of the batches, the
settings drawn in turns) as a ratio to scene scope, and the time of the grouping alone (the fastest call) against
it. The model does the same work per step in both scopes (the loss only masks pairs). Positives of one
image do not depend on how the image's masks are numbered, so the dataset's own instance maps give the figures of
per-image masks too. Without ``--data`` it uses the embedded sample scene.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

from jacobinerf_ns.surrogates import SURROGATE


def datamanager_config(data: Path, rays: int, masks_dir: Optional[Path], scope: str, images: int):
    from jacobinerf_ns.runs import method_config

    config = method_config().pipeline.datamanager
    config.data = data
    config.surrogate = "masks"
    config.masks_dir = masks_dir
    config.masks_scope = scope
    config.contrastive_images = images
    config.train_num_rays_per_batch = rays
    return config


def pair_counts(batches: List[Dict[str, torch.Tensor]], contrastive: int, per_image: bool) -> Dict[str, float]:
    """Per anchor, mean over the batches: rays compared, positives, negatives; share of anchors with a positive."""
    compared, positives, with_positive = [], [], []
    for batch in batches:
        ids, cameras = batch[SURROGATE], batch["indices"][:contrastive, 0]
        eye = torch.eye(len(ids), dtype=torch.bool)
        comparable = (cameras[:, None] == cameras[None, :] if per_image else torch.ones_like(eye)) & ~eye
        positive = comparable & (ids[:, None] == ids[None, :]) & (ids[:, None] != 0)
        compared.append(comparable.sum(dim=1).float())
        positives.append(positive.sum(dim=1).float())
        with_positive.append(positive.any(dim=1).float())
    compared_, positives_ = torch.cat(compared), torch.cat(positives)
    return {
        "compared": float(compared_.mean()),
        "positives": float(positives_.mean()),
        "negatives": float((compared_ - positives_).mean()),
        "with_positive": float(torch.cat(with_positive).mean()),
    }


def draw(configs: Dict[str, object], contrastive: int, count: int):
    """``count`` shaping batches of a fresh datamanager per config, drawn in turns (so that other work on the machine
    weighs on every setting alike), and the seconds of their fastest ``next_train`` (that work only adds to it)."""
    managers = {}
    for name, config in configs.items():
        managers[name] = config.setup(device="cpu", test_mode="val")
        managers[name].set_contrastive_batch(contrastive, 0)
        managers[name].prepare_surrogate()
        managers[name].next_train(0)  # warm-up
    batches = {name: [] for name in configs}
    seconds = {name: [] for name in configs}
    for step in range(count):
        for name, manager in managers.items():
            start = time.perf_counter()
            _, batch = manager.next_train(step)
            seconds[name].append(time.perf_counter() - start)
            batches[name].append(batch)
    return batches, {name: min(values) for name, values in seconds.items()}, managers


def grouping_seconds(manager, contrastive: int, images: int, count: int) -> float:
    """Seconds of the grouping alone (:func:`~jacobinerf_ns.datamanager.group_contrastive_rays`) on one nerfstudio
    batch of ``manager``'s images: the fastest of ``count`` (other work on the machine only adds to it)."""
    from jacobinerf_ns.datamanager import group_contrastive_rays

    image_batch = next(manager.iter_train_image_dataloader)
    batch = manager.train_pixel_sampler.sample(image_batch)
    seconds = []
    for _ in range(count):
        start = time.perf_counter()
        group_contrastive_rays(batch, image_batch, contrastive, images)
        seconds.append(time.perf_counter() - start)
    return min(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--masks-dir", type=Path, default=None, help="default: the dataset's instance labels")
    parser.add_argument("--images", type=int, nargs="+", default=[1, 2, 4, 8, 16], help="contrastive images k")
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--rays", type=int, default=1024)
    parser.add_argument("--contrastive", type=int, default=256, help="contrastive batch size")
    args = parser.parse_args()

    data = args.data
    if data is None:
        from jacobinerf_ns.sample_scene import make_sample_scene

        data = make_sample_scene(Path(tempfile.gettempdir()) / "jacobinerf_bench_scene")
    print(
        f"{data}: {args.batches} batches of {args.rays} rays, contrastive batch {args.contrastive}; "
        f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
    )
    configs = {"scene": datamanager_config(data, args.rays, args.masks_dir, "scene", 1)}
    for images in args.images:
        configs[images] = datamanager_config(data, args.rays, args.masks_dir, "image", images)
    batches, seconds, managers = draw(configs, args.contrastive, args.batches)
    rows = [
        ("scene scope (uniform)", pair_counts(batches["scene"], args.contrastive, False), seconds["scene"]),
        ("per-image masks, uniform (no grouping)", pair_counts(batches["scene"], args.contrastive, True), None),
    ]
    for images in args.images:
        counts = pair_counts(batches[images], args.contrastive, True)
        rows.append((f"image scope, {images} images", counts, seconds[images]))
    print("\n| contrastive batch | compared / anchor | positives / anchor | negatives / anchor | anchors with a "
          "positive | next_train ms (fastest) | ratio to scene scope |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name, counts, time_ in rows:
        timing = "| |" if time_ is None else f"| {time_ * 1e3:.2f} | {time_ / seconds['scene']:.2f} |"
        print(
            f"| {name} | {counts['compared']:.1f} | {counts['positives']:.1f} | {counts['negatives']:.1f} | "
            f"{counts['with_positive']:.0%} {timing}"
        )
    for images in args.images:
        alone = grouping_seconds(managers[images], args.contrastive, images, args.batches)
        print(
            f"grouping alone, {images} images: {alone * 1e3:.3f} ms per batch = {alone / seconds['scene']:.4f} of "
            "scene scope's next_train"
        )


if __name__ == "__main__":
    main()
