"""The README's figure of ``jacobinerf-label`` output: a click set on the sample scene → label overlays of a few
frames and the labelled point cloud.

    python bench/label_figure.py --load-config RUN/config.yml [--out outputs/label_figure]

1. Writes a click set for the run's scene (the sample scene, ``<out>/clicks.json``), as a person would click: one
   pixel inside each object or surface seen in a training frame (its most interior pixel, in the training frame
   where it is largest, or the next one when the run has no surface there), named by its semantic class; the two
   balls and the two boxes get a click each (7 clicks, 5 classes: no frame sees the ceiling). Ground truth only
   places the clicks.
2. Runs ``jacobinerf-label`` (its module, with this interpreter) into ``<out>/labelled`` (a rerun resumes it;
   ``--overwrite`` replaces an export of another run).
3. Draws ``docs/jacobinerf_label_output.png``: ``overlay/`` of two clicked training frames and two eval frames (the
   clicks marked), and ``labelled_points.ply`` as 3D scatters in image colours and in label colours: the points inside
   the room below ``--cut-height`` (the poses' frame: metres, z up), so the objects are visible. A scatter, because
   Open3D's offscreen renderer needs EGL or Vulkan, which a headless CPU machine lacks.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import yaml
from PIL import Image

from jacobinerf_ns.sample_scene import ROOM_MAX, ROOM_MIN

EVAL_FRAMES = 2
TRAIN_FRAMES = 2
ROOM_MARGIN = 0.1
"""Metres around the sample scene's room (``sample_scene.ROOM_MIN/MAX``) within which points are drawn."""


def data_folder(config: Path) -> Path:
    """The data folder the run was trained on (as its ``config.yml`` records it)."""
    trainer = yaml.load(config.read_text(), Loader=yaml.Loader)
    return Path(trainer.pipeline.datamanager.data)


def interior_pixel(mask: np.ndarray) -> Tuple[int, int]:
    """(y, x) of the pixel of ``mask`` farthest from its border."""
    from scipy.ndimage import distance_transform_edt

    distance = distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(distance.argmax()), mask.shape)
    return int(y), int(x)


def candidate_clicks(scene: Path) -> Tuple[List[str], List[List[Dict]]]:
    """The sample scene's semantic classes, and per instance seen in a training frame its candidate clicks: the most
    interior pixel in each training frame that shows it, largest view first."""
    tables = json.loads((scene / "classes.json").read_text())
    classes = [row["name"] for row in tables["semantic_classes"][1:]]
    meta = json.loads((scene / "transforms.json").read_text())
    train = [frame["file_path"] for index, frame in enumerate(meta["frames"]) if index % 8 != 4]  # the default split
    maps = {image: np.asarray(Image.open(scene / image.replace("images/", "instances/"))) for image in train}
    candidates = []
    for row in tables["instances"][1:]:
        frames = sorted((image for image in train if (maps[image] == row["index"]).any()),
                        key=lambda image: -int((maps[image] == row["index"]).sum()))  # fmt: skip
        label = classes[row["class_index"] - 1]
        candidates.append([click(label, image, interior_pixel(maps[image] == row["index"])) for image in frames])
    return classes, [options for options in candidates if options]


def click(label: str, image: str, pixel: Tuple[int, int]) -> Dict:
    return {"label": label, "image": image, "x": pixel[1] + 0.5, "y": pixel[0] + 0.5}


def click_set(config: Path, scene: Path, path: Path) -> Dict[str, List]:
    """Writes one pixel click per instance, labelled with its semantic class, at the first candidate whose ray hits a
    surface of the run (as a person clicks what the viewer shows); returns frame stem → (x, y, label)."""
    import torch

    from jacobinerf_ns import files
    from jacobinerf_ns.clicks import parse_clicks
    from jacobinerf_ns.propagation.labelling import MIN_ACCUMULATION
    from jacobinerf_ns.propagation.rendering import eval_head_inputs
    from jacobinerf_ns.runs import open_run
    from jacobinerf_ns.scene import click_rays, dataset_scene

    classes, candidates = candidate_clicks(scene)
    flat = [option for options in candidates for option in options]
    _, pipeline, _ = open_run(config)
    rays = click_rays(parse_clicks({"classes": classes, "clicks": flat}, "candidates"),
                      dataset_scene(pipeline.datamanager), "candidates")  # fmt: skip
    with torch.no_grad():
        opacity = eval_head_inputs(pipeline.model, rays.bundle())[0]["accumulation"].reshape(-1).tolist()
    hits = iter(value >= MIN_ACCUMULATION for value in opacity)
    chosen = []
    for options in candidates:
        found = [option for option, hit in zip(options, hits) if hit]  # consumes this instance's candidates
        chosen += found[:1]
    used = [name for name in classes if any(option["label"] == name for option in chosen)]
    files.write_json(path, {"classes": used, "clicks": chosen})
    by_frame: Dict[str, List] = {}
    for option in chosen:
        by_frame.setdefault(Path(option["image"]).stem, []).append((option["x"] - 0.5, option["y"] - 0.5))
    return by_frame


def label(config: Path, clicks: Path, out: Path, overwrite: bool) -> None:
    command = [sys.executable, "-m", "jacobinerf_ns.commands.label", "--load-config", str(config), "--clicks",
               str(clicks), "--output-dir", str(out), *(["--overwrite"] if overwrite else [])]  # fmt: skip
    print("$ jacobinerf-label", " ".join(command[3:]), flush=True)
    subprocess.run(command, check=True)


def figure(labelled: Path, scene: Path, clicks: Dict[str, List], cut_height: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    from plyfile import PlyData

    from jacobinerf_ns import files

    classes = json.loads((labelled / "classes.json").read_text())["semantic_classes"]
    colors = np.array([row["color"] for row in classes]) / 255
    meta = json.loads((scene / "transforms.json").read_text())
    stems = [Path(frame["file_path"]).stem for frame in meta["frames"]]
    evals = [stem for index, stem in enumerate(stems) if index % 8 == 4][:EVAL_FRAMES]
    shown = [(stem, "training frame") for stem in sorted(clicks, key=lambda s: -len(clicks[s]))[:TRAIN_FRAMES]]
    shown += [(stem, "eval frame") for stem in evals]

    plot = plt.figure(figsize=(12, 8.6))
    grid = plot.add_gridspec(2, len(shown), height_ratios=(1, 1.5))
    for column, (stem, split) in enumerate(shown):
        axis = plot.add_subplot(grid[0, column])
        axis.imshow(np.asarray(Image.open(labelled / "overlay" / f"{stem}.png")), interpolation="nearest")
        for x, y in clicks.get(stem, []):
            axis.plot(x, y, marker="X", markersize=11, color="white", markeredgecolor="black")
        count = len(clicks.get(stem, []))
        clicked = f"{count} click{'s' * (count > 1)} (×)" if count else "no click in this frame"
        axis.set_title(f"{stem} ({split})\n{clicked}", fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])

    vertices = PlyData.read(str(labelled / "labelled_points.ply"))["vertex"]
    points = np.stack([vertices["x"], vertices["y"], vertices["z"]], axis=-1)
    rgb = np.stack([vertices["red"], vertices["green"], vertices["blue"]], axis=-1) / 255
    ids = np.asarray(vertices["label"])
    inside = np.all((points > ROOM_MIN - ROOM_MARGIN) & (points < ROOM_MAX + ROOM_MARGIN), axis=-1)
    kept = inside & (points[:, 2] < cut_height)
    half = len(shown) // 2
    for index, (title, color) in enumerate((("image colours", rgb), ("labels (colours of the overlays)", colors[ids]))):
        axis = plot.add_subplot(grid[1, index * half : (index + 1) * half], projection="3d")
        axis.scatter(*points[kept].T, c=color[kept], s=2, depthshade=False)
        axis.view_init(elev=35, azim=-60)
        axis.set_box_aspect(np.ptp(points[kept], axis=0))
        axis.set_axis_off()
        axis.set_title(f"labelled_points.ply, {title}", fontsize=10)
    outside = int((~inside).sum())
    note = f"Drawn: {kept.sum()} of {len(points)} points, those inside the room below {cut_height:g} m"
    note += " (upper walls cut away)."
    if outside:
        note += (
            f" {outside} points lie outside the room:\nthe rendered depth of surfaces the run left semi-transparent "
            "(floor, walls) overshoots them."
        )
    plot.text(0.45, 0.02, note, ha="center", fontsize=9)
    handles = [Patch(color=colors[row["index"]], label=row["name"]) for row in classes]
    plot.legend(handles=handles, loc="center right", fontsize=9, title="class")
    plot.suptitle(
        f"jacobinerf-label on the sample scene: {sum(map(len, clicks.values()))} clicks on training frames → labels "
        f"for all {len(stems)} frames and a labelled point cloud\n(overlay = class colour over the image; shaped run; "
        "click set written by bench/label_figure.py)",
        fontsize=11,
    )
    plot.tight_layout(rect=(0, 0.05, 0.9, 1))
    with files.atomic_path(path) as temporary:
        plot.savefig(temporary, dpi=100)
    plt.close(plot)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load-config", type=Path, required=True, help="a run of the sample scene (config.yml)")
    parser.add_argument("--out", type=Path, default=Path("outputs/label_figure"))
    parser.add_argument("--cut-height", type=float, default=1.2, help="points above this z (metres) are not drawn")
    parser.add_argument("--figure", type=Path, default=Path("docs/jacobinerf_label_output.png"))
    parser.add_argument("--overwrite", action="store_true", help="replace an export of another run or click set")
    args = parser.parse_args()
    scene = data_folder(args.load_config)
    clicks = click_set(args.load_config, scene, args.out / "clicks.json")
    label(args.load_config, args.out / "clicks.json", args.out / "labelled", args.overwrite)
    figure(args.out / "labelled", scene, clicks, args.cut_height, args.figure)
    print(f"Figure: {args.figure}")


if __name__ == "__main__":
    main()
