"""Peak RAM of training with per-pixel feature maps (on disk) vs masks, as the number of images grows.

    python bench/surrogate_memory.py [--counts 50 200 400] [--steps 3] [--out /tmp/jacobinerf_surrogate_memory]

Writes once, for the largest N (and reuses on later invocations): a synthetic nerfstudio-data scene of N 640×480
images (smooth random colours, cameras on a circle around the origin), N integer mask PNGs, and N per-pixel feature
maps at the size DINO makes for a 640×480 image (120×160×384 float16, ≈ 15 MB each; no DINO). Each N gets a scene
folder with its first N frames. For each N, three ``ns-train jacobinerf`` runs, each in its own process, train a
small field for a few steps with shaping from step 0 on the CPU: ``--pipeline.datamanager.surrogate features``
(the maps, read in place), ``masks`` (the mask PNGs) and, for reference, the unshaped field with no surrogate. Prints
the peak RSS of each run's process tree (psutil, sampled every 0.2 s) and ``features − masks``; target: ≤ 300 MB at
every N. nerfstudio caches the training images themselves in every run, which grows with N whatever the surrogate.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
from PIL import Image
from replica_propagation import run_tracked

from jacobinerf_ns.runs import REPLICA_SMALL_FIELD

WIDTH, HEIGHT = 640, 480
MAP_SHAPE = (120, 160, 384)
"""Per-pixel features of one 640×480 image at DINO's size (float16: 14.7 MB)."""
TARGET_MB = 300
SHAPED = ["--pipeline.model.shaping-start-step", "0"]
RUNS = {  # run name → its ns-train arguments besides the common ones ({features}, {masks}: the folders)
    "no surrogate": ["--pipeline.model.shaping-start-step", "-1"],
    "masks": [
        *SHAPED,
        "--pipeline.datamanager.surrogate",
        "masks",
        "--pipeline.datamanager.masks-dir",
        "{masks}",
        "--pipeline.datamanager.masks-scope",
        "scene",  # one id pattern in every image, compared across them as when the figures were measured
    ],
    "features": [
        *SHAPED,
        "--pipeline.datamanager.surrogate",
        "features",
        "--pipeline.datamanager.features-dir",
        "{features}",
    ],
}


def frame_name(index: int) -> str:
    return f"frame_{index:05d}"


def camera_to_world(index: int, count: int) -> List[List[float]]:
    """OpenGL camera-to-world pose on a circle of radius 4 at height 1, looking at the origin."""
    angle = 2 * np.pi * index / count
    position = np.array([4 * np.cos(angle), 4 * np.sin(angle), 1.0])
    backward = position / np.linalg.norm(position)  # the camera looks along -z
    right = np.cross([0.0, 0.0, 1.0], backward)
    right /= np.linalg.norm(right)
    up = np.cross(backward, right)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, up, backward, position
    return pose.tolist()


def write_assets(root: Path, count: int) -> None:
    """Images, masks and feature maps of ``count`` frames under ``root`` (files already there are kept)."""
    for folder in ("images", "masks", "features"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    missing = [i for i in range(count) if not (root / "features" / f"{frame_name(i)}.npy").exists()]
    needed = len(missing) * int(np.prod(MAP_SHAPE)) * 2
    free = shutil.disk_usage(root).free
    if needed > free:
        raise SystemExit(f"{count} feature maps need {needed / 2**30:.1f} GiB more in {root}; {free / 2**30:.1f} free")
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH] / max(HEIGHT, WIDTH)
    for done, index in enumerate(missing):
        rng = np.random.default_rng(index)
        colour = rng.uniform(0, 1, (3, 3))
        image = colour[:, 0] + colour[:, 1] * ys[..., None] + colour[:, 2] * xs[..., None]
        Image.fromarray((255 * image.clip(0, 1)).astype(np.uint8)).save(root / "images" / f"{frame_name(index)}.png")
        masks = (4 * (ys > 0.5) + (xs * 4).astype(int)).astype(np.uint8)
        Image.fromarray(masks).save(root / "masks" / f"{frame_name(index)}.png")
        features = rng.standard_normal(MAP_SHAPE, dtype=np.float32).astype(np.float16)
        np.save(root / "features" / f"{frame_name(index)}.npy", features)  # written last: marks the frame done
        if done % 50 == 49:
            print(f"  wrote {done + 1}/{len(missing)} frames", flush=True)


def scene(root: Path, count: int) -> Path:
    """``root/scene_<count>``: transforms.json over the first ``count`` frames, images linked from ``root``."""
    folder = root / f"scene_{count}"
    folder.mkdir(exist_ok=True)
    if not (folder / "images").exists():
        (folder / "images").symlink_to(Path("..") / "images")
    focal = 0.5 * WIDTH / np.tan(np.radians(30))  # 60° horizontal field of view
    transforms = {
        "camera_model": "OPENCV",
        "fl_x": focal,
        "fl_y": focal,
        "cx": WIDTH / 2,
        "cy": HEIGHT / 2,
        "w": WIDTH,
        "h": HEIGHT,
        "frames": [
            {"file_path": f"images/{frame_name(i)}.png", "transform_matrix": camera_to_world(i, count)}
            for i in range(count)
        ],
    }
    (folder / "transforms.json").write_text(json.dumps(transforms))
    return folder


def train(root: Path, count: int, run: str, steps: int) -> float:
    """Peak RSS (MiB) of one ``ns-train`` run on the scene of ``count`` frames."""
    folders = {"features": str(root / "features"), "masks": str(root / "masks")}
    command = [
        shutil.which("ns-train") or "ns-train",
        "jacobinerf",
        "--data",
        str(scene(root, count)),
        "--output-dir",
        str(root / "runs"),
        "--experiment-name",
        f"n{count}-{run.replace(' ', '-')}",
        "--timestamp",
        "bench",
        "--machine.device-type",
        "cpu",
        "--vis",
        "tensorboard",
        "--mixed-precision",
        "False",
        "--max-num-iterations",
        str(steps),
        "--steps-per-eval-batch",
        str(10 * steps),
        "--steps-per-eval-image",
        str(10 * steps),
        "--steps-per-eval-all-images",
        str(10 * steps),
        "--pipeline.datamanager.cache-dir",
        str(root / "cache"),
        *REPLICA_SMALL_FIELD,
        *[argument.format(**folders) for argument in RUNS[run]],
    ]
    return run_tracked(command)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[50, 200, 400], help="numbers of images N")
    parser.add_argument("--steps", type=int, default=3, help="training steps per run")
    parser.add_argument("--out", type=Path, default=Path("/tmp/jacobinerf_surrogate_memory"))
    args = parser.parse_args()

    print(f"writing {max(args.counts)} synthetic frames into {args.out} (kept for later invocations)", flush=True)
    write_assets(args.out, max(args.counts))
    peaks: Dict[int, Dict[str, float]] = {count: {} for count in args.counts}
    for count in args.counts:
        for run in RUNS:
            peaks[count][run] = train(args.out, count, run, args.steps)

    print(
        f"\nmachine: {platform.machine()} CPU ({platform.node()}), Python {sys.version.split()[0]}; {args.steps} "
        f"steps per run, shaping from step 0, small field; {WIDTH}×{HEIGHT} images, feature maps "
        f"{'×'.join(map(str, MAP_SHAPE))} float16; peak RSS of each ns-train process tree\n"
    )
    print("| N images | no surrogate (unshaped) | masks | features | features − masks | target |")
    print("|---|---|---|---|---|---|")
    for count, peak in peaks.items():
        extra = peak["features"] - peak["masks"]
        met = extra * 2**20 / 1e6 <= TARGET_MB
        print(
            f"| {count} | {peak['no surrogate']:.0f} MiB | {peak['masks']:.0f} MiB | {peak['features']:.0f} MiB | "
            f"{extra:+.0f} MiB | {'met' if met else 'MISSED'} (≤ {TARGET_MB} MB) |"
        )


if __name__ == "__main__":
    main()
