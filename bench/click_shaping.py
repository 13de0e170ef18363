"""Learning from the clicks by reshaping the Jacobians: a shaping continuation whose surrogate is the clicks' classes
spread over the surfaces, against the same continuation with the dataset's labels.

    python bench/click_shaping.py --config RUN/config.yml --out OUT [--steps 250] [--seeds 0] [--counts 60]
                                  [--arms instances semantics clicks]

The bank, the clicks and the scores are ``bench/propagation_levers.py``'s (same ``--stride``, same seeds: the same
clicks as its table). Each arm continues the run with ``jacobinerf-shape --steps S --surrogate masks --masks-scope
scene`` (its own weights, optimizers and threshold, into a new run folder beside it), then renders that run's bank:

* ``instances``: the dataset's instance ids, as the run was shaped (the reference: what ``S`` more steps of the
  same shaping give);
* ``semantics``: the dataset's semantic classes (uses the ground truth of every pixel: a bound on what class labels
  can do as a surrogate, not a method);
* ``clicks``: for each click seed and count, the classes ``surface`` labels the training frames' bank pixels with
  (``jacobinerf-label --propagation surface`` on those clicks; pixels whose ray misses every surface stay 0 =
  unlabelled), each grid pixel's label filling its ``stride × stride`` cell, written as one PNG per training image
  (``--masks-dir``) — what a user gets by labelling and shaping again with the labels.

Scores: semantic mIoU over the bank's labelled pixels of all frames, ``nearest`` and ``surface`` on the new bank with
the same clicks (an arm of the dataset's labels on every seed and count; a ``clicks`` arm on its own seed and count),
beside the base run's; minutes of each continuation. Markdown on stdout and in ``<out>/click_shaping.md``.
"""

from __future__ import annotations

import argparse
import os
import runpy
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

LEVERS = runpy.run_path(str(Path(__file__).with_name("propagation_levers.py")))
METHODS = ("nearest", "surface")


def filled_maps(labels: torch.Tensor, image_shape, stride: int) -> np.ndarray:
    """``(V, H, W)`` label maps from ``labels`` ``(V·rows·cols,)`` on the bank's grid (row ``stride // 2 + k·stride``):
    every pixel takes the label of the grid pixel nearest it."""
    height, width = image_shape
    rows, cols = len(range(stride // 2, height, stride)), len(range(stride // 2, width, stride))
    grid = labels.reshape(-1, rows, cols).numpy()
    ys = np.clip(np.rint((np.arange(height) - stride // 2) / stride).astype(int), 0, rows - 1)
    xs = np.clip(np.rint((np.arange(width) - stride // 2) / stride).astype(int), 0, cols - 1)
    return grid[:, ys][:, :, xs]


def write_click_masks(levers, clicks: List[int], images: List[Path], image_shape, stride: int, out: Path):
    """The ``clicks`` arm's masks: ``surface`` labels on the training frames' grids, one uint16 PNG per image."""
    from PIL import Image

    from jacobinerf_ns.files import atomic_folder

    train = levers.view < levers.train_frames
    labels = torch.where(levers.hit, levers.surface(clicks).argmax(dim=-1), torch.zeros_like(levers.truth))[train]
    maps = filled_maps(labels, image_shape, stride)
    assert len(maps) == len(images), "the bank's training frames are the run's training images"
    if not out.exists():
        with atomic_folder(out) as folder:
            for image, ids in zip(images, maps):
                Image.fromarray(ids.astype(np.uint16)).save(folder / f"{image.stem}.png")
    return out


def shape(config: Path, name: str, steps: int, masks: List[str], threads: int) -> Path:
    """``jacobinerf-shape`` into ``<run's experiment>/<name>``; returns the new run's config (kept if already there)."""
    run = config.parent.parent / name
    if not sorted((run / "nerfstudio_models").glob("step-*.ckpt")):
        command = [sys.executable, "-m", "jacobinerf_ns.commands.shape", "--load-config", str(config), "--steps",
                   str(steps), "--timestamp", name, "--vis", "tensorboard", "--surrogate", "masks", "--masks-scope",
                   "scene", *masks]  # fmt: skip
        print("$", " ".join(command[2:]), flush=True)
        subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    return run / "config.yml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="a trained run's config.yml")
    parser.add_argument("--out", type=Path, default=Path("outputs/click_shaping"))
    parser.add_argument("--stride", type=int, default=6, help="the bank's stride")
    parser.add_argument("--steps", type=int, default=250, help="shaping steps of each continuation")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[60])
    parser.add_argument(
        "--arms", nargs="+", default=["instances", "semantics", "clicks"], choices=["instances", "semantics", "clicks"]
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    from jacobinerf_ns.runs import open_run

    base = LEVERS["Levers"](LEVERS["cached_bank"](args.config, args.stride, args.out / "base"))
    _, pipeline, _ = open_run(args.config)
    outputs = pipeline.datamanager.train_dataparser_outputs
    images = [Path(name) for name in outputs.image_filenames]
    image_shape = (int(outputs.cameras.height[0]), int(outputs.cameras.width[0]))
    del pipeline
    clicks = {seed: base.clicks(seed, max(args.counts)) for seed in args.seeds}
    results: Dict[str, Dict[int, List[float]]] = {}
    minutes: Dict[str, List[float]] = {}

    def score(levers, arm: str, seeds: List[int], counts: List[int], spent: float) -> None:
        for seed in seeds:
            for count in counts:
                for method in METHODS:
                    value = levers.miou(levers.methods()[method](clicks[seed][:count]))
                    results.setdefault(f"{arm}: {method}", {}).setdefault(count, []).append(value)
                    minutes.setdefault(f"{arm}: {method}", []).append(spent)
                    print(f"seed {seed}, {count} clicks, {arm}, {method}: mIoU {value:.3f}", flush=True)

    def continued(name: str, masks: List[str]):
        """The continuation's levers and its minutes (0 when it was already there)."""
        began = time.perf_counter()
        config = shape(args.config, name, args.steps, masks, args.threads)
        spent = (time.perf_counter() - began) / 60
        return LEVERS["Levers"](LEVERS["cached_bank"](config, args.stride, args.out / name)), spent

    score(base, "base run", args.seeds, args.counts, 0.0)
    for arm in args.arms:
        if arm != "clicks":
            levers, spent = continued(f"shaped_{arm}", ["--masks-from", arm])
            score(levers, f"+{args.steps} steps, {arm}", args.seeds, args.counts, spent)
            continue
        for seed in args.seeds:
            for count in args.counts:
                masks = write_click_masks(base, clicks[seed][:count], images, image_shape, args.stride,
                                          args.out / f"masks_seed{seed}_{count}")  # fmt: skip
                levers, spent = continued(f"shaped_clicks_seed{seed}_{count}", ["--masks-dir", str(masks)])
                score(levers, f"+{args.steps} steps, clicks", [seed], [count], spent)
    title = (
        f"Shaping continued from the clicks: {args.config}, {args.steps} steps per continuation, click seeds "
        f"{args.seeds}; semantic mIoU over the bank's labelled pixels (stride {args.stride})."
    )
    LEVERS["write_report"](args.out / "click_shaping", title, "arm: method", args.counts, results,
                           ("minutes to continue (this run's; 0: reused)", minutes))  # fmt: skip


if __name__ == "__main__":
    main()
