"""``jacobinerf-label`` as a user runs it on a scene with ground truth: labels and point cloud against the truth, with
the defaults and with every pixel labelled, and the point cloud at the captured and at the rendered depth.

    python bench/label_quality.py --config RUN/config.yml --out OUT [--clicks 30] [--seed 0] [--frames eval] \
        [--propagation surface|nearest] [--no-masks] [--first-clicks classes|objects]

1. **Clicks** (``OUT/clicks.json``), on training frames only, from the scene's ground truth: first one per class the
   training frames show (``--first-clicks classes``: a random training frame showing it, a random pixel of the class)
   or one per object (``objects``: per instance of the scene's instance maps, a random training frame showing it and a
   random labelled pixel of the instance, as a person labelling objects clicks each once), then random labelled
   pixels of training frames up to ``--clicks``; each click's class is the ground truth's name of its class. A click
   whose ray hits nothing in the run (``jacobinerf-label`` skips it with a warning, the viewer says "No surface along
   that ray") is drawn again as a user clicks again: another pixel of its class or object, from its own generator (so
   a set whose clicks all hit is the one drawn without this step), up to :data:`RECLICKS` times.
2. **Exports**: ``jacobinerf-label`` (a subprocess, as a user runs it, with ``--propagation``) into ``OUT/default``
   and with every pixel labelled (``--min-explained 0`` / ``--min-resemblance 0 --min-class-score 0``) into
   ``OUT/every_pixel``; ``OUT/default`` fused again at the rendered depth (``--no-captured-depth``) into
   ``OUT/rendered`` (the rerun keeps the frames and writes only the point cloud).
3. **Scores** of each export's ``ids/`` over the exported frames against the ground truth (void pixels not scored):
   mIoU over the classes present there, pixel accuracy, and the share of labelled ground-truth pixels the export
   leaves unlabelled; and its point cloud's figures (``bench/point_cloud_accuracy.py``). Printed and written to
   ``OUT/label_quality.json``.
"""

from __future__ import annotations

import argparse
import functools
import json
import runpy
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
from PIL import Image

POINT_CLOUD = runpy.run_path(str(Path(__file__).with_name("point_cloud_accuracy.py")))
RECLICKS = 20
"""How many times a click that hits nothing is drawn again before it is left to ``jacobinerf-label`` to skip."""


@functools.lru_cache(maxsize=2)
def ground_truth(data_dir: Path, maps: str = "semantics_file_path") -> Dict[str, np.ndarray]:
    """Image path as ``transforms.json`` lists it → semantic class map (0: void), or the instance map with ``maps``
    ``instance_file_path``; read once per folder and process (the sweeps score many labellings of one export)."""
    meta = json.loads((data_dir / "transforms.json").read_text())
    return {
        frame["file_path"]: np.asarray(Image.open(data_dir / frame[maps])) for frame in meta["frames"] if maps in frame
    }


def class_names(data_dir: Path) -> Dict[int, str]:
    rows = json.loads((data_dir / "classes.json").read_text())["semantic_classes"]
    return {int(row["index"]): row["name"] for row in rows}


def write_click_set(config: Path, out: Path, count: int, seed: int, first: str = "classes") -> Path:
    """The click set of step 1 (``first``: ``classes`` or ``objects``), with the run's scene fingerprint."""
    from jacobinerf_ns.clicks import ClickSet, PixelClick, write_clicks
    from jacobinerf_ns.runs import open_run
    from jacobinerf_ns.scene import dataset_scene

    _, pipeline, _ = open_run(config)
    scene = dataset_scene(pipeline.datamanager)
    truth, names = ground_truth(scene.data_dir), class_names(scene.data_dir)
    train = [frame.name for frame in scene.frames if frame.split == "train" and frame.name in truth]
    generator = np.random.default_rng(seed)
    clicks: List[PixelClick] = []

    def click(image: str, mask: np.ndarray) -> None:
        ys, xs = np.nonzero(mask)
        pick = generator.integers(len(ys))
        label = names[int(truth[image][ys[pick], xs[pick]])]
        clicks.append(PixelClick(label, image, float(xs[pick]) + 0.5, float(ys[pick]) + 0.5))

    # the maps whose ids the first clicks cover: each click's target is the id it was drawn from, in these maps
    targets = truth if first == "classes" else ground_truth(scene.data_dir, "instance_file_path")
    shown = sorted(set(np.concatenate([np.unique(targets[image]) for image in train]).tolist()) - {0})
    drawn = []
    for target in shown:
        showing = [image for image in train if ((targets[image] == target) & (truth[image] > 0)).any()]
        if showing:  # an object of void class only is not clicked
            image = showing[generator.integers(len(showing))]
            click(image, (targets[image] == target) & (truth[image] > 0))
            drawn.append(target)
    while len(clicks) < count:
        image = train[generator.integers(len(train))]
        click(image, truth[image] > 0)
    classes = tuple(dict.fromkeys(c.label for c in clicks))
    index_of = {name: index for index, name in names.items()}

    def redraw_mask(index: int, image: str) -> np.ndarray:
        """Where click ``index`` is drawn again in ``image``: its object or class (a first click), else its class."""
        if index < len(drawn):
            return (targets[image] == drawn[index]) & (truth[image] > 0)
        return truth[image] == index_of[clicks[index].label]

    generator = np.random.default_rng([seed, 1])  # the clicks drawn again
    for _ in range(RECLICKS):
        missed = np.nonzero(~hits(pipeline.model, ClickSet(classes, tuple(clicks), None), scene))[0]
        if not len(missed):
            break
        for index in missed.tolist():
            print(f"clicks[{index}] ({clicks[index].label!r}) hits nothing in this run: clicked again", flush=True)
            showing = [image for image in train if redraw_mask(index, image).any()]
            image = showing[generator.integers(len(showing))]
            click(image, redraw_mask(index, image))
            clicks[index] = clicks.pop()
    path = out / "clicks.json"
    write_clicks(path, ClickSet(classes, tuple(clicks), scene.fingerprint()))
    return path


def hits(model, click_set, scene) -> np.ndarray:
    """``(K,)`` whether each click's ray hits a surface of the run (``jacobinerf-label``'s test)."""
    from jacobinerf_ns.propagation.labelling import MIN_ACCUMULATION
    from jacobinerf_ns.propagation.rendering import ray_jacobians
    from jacobinerf_ns.scene import click_rays

    _, outputs, _ = ray_jacobians(model, click_rays(click_set, scene, "the bench's clicks").bundle())
    return (outputs["accumulation"].reshape(-1) >= MIN_ACCUMULATION).cpu().numpy()


def label(config: Path, clicks: Path, output: Path, frames: str, *options: str) -> float:
    began = time.perf_counter()
    command = ["jacobinerf-label", "--load-config", str(config), "--clicks", str(clicks), "--output-dir", str(output),
               "--frames", frames, *options]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    print(result.stdout.strip().splitlines()[-1], flush=True)
    return time.perf_counter() - began


def scores(export: Path, data_dir: Path, clicks: Path) -> Dict[str, float]:
    """:func:`label_scores` and the point cloud's figures."""
    return {**label_scores(export, data_dir, clicks), **POINT_CLOUD["measure"](export, data_dir, 1e-3)}


def label_scores(export: Path, data_dir: Path, clicks: Path) -> Dict[str, float]:
    """mIoU, pixel accuracy and unlabelled share of ``ids/`` against the ground truth."""
    from jacobinerf_ns.metrics import confusion_matrix, label_metrics

    truth, names = ground_truth(data_dir), class_names(data_dir)
    index_of = {name: index for index, name in names.items()}
    to_truth = np.array([0, *(index_of[name] for name in json.loads(clicks.read_text())["classes"])])
    predicted, expected = [], []
    for image, labels in truth.items():
        ids_path = export / "ids" / f"{Path(image).stem}.png"
        if ids_path.is_file():
            predicted.append(to_truth[np.asarray(Image.open(ids_path)).astype(np.int64)].ravel())
            expected.append(labels.astype(np.int64).ravel())
    predicted, expected = np.concatenate(predicted), np.concatenate(expected)
    valid = expected > 0
    import torch

    count = int(max(expected.max(), predicted.max())) + 1
    counts = confusion_matrix(torch.from_numpy(predicted[valid]), torch.from_numpy(expected[valid]), count)
    metrics = label_metrics(counts, sorted(set(expected[valid].tolist())))
    return {
        "miou": metrics["miou"],
        "pixel_accuracy": float(np.mean(predicted[valid] == expected[valid])),
        "unlabelled": float(np.mean(predicted[valid] == 0)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="a trained run's config.yml")
    parser.add_argument("--out", type=Path, default=Path("outputs/label_quality"))
    parser.add_argument("--clicks", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frames", default="eval", choices=["all", "train", "eval"])
    parser.add_argument("--propagation", default="surface", choices=["surface", "nearest"],
                        help="jacobinerf-label's --propagation for every export (its default: surface)")  # fmt: skip
    parser.add_argument("--no-masks", action="store_true", help="pass --no-masks: surface labels without the masks")
    parser.add_argument("--first-clicks", default="classes", choices=["classes", "objects"],
                        help="one first click per class, or per object (instance)")  # fmt: skip
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    import yaml

    data_dir = Path(yaml.load(args.config.read_text(), Loader=yaml.Loader).data)
    clicks = write_click_set(args.config, args.out, args.clicks, args.seed, args.first_clicks)
    chosen = ("--propagation", args.propagation, *(["--no-masks"] if args.no_masks else []))
    minutes = {"default": label(args.config, clicks, args.out / "default", args.frames, *chosen)}
    force = (
        ("--min-explained", "0")
        if args.propagation == "nearest"
        else ("--min-resemblance", "0", "--min-class-score", "0")
    )
    every_pixel = (*chosen, *force)
    minutes["every_pixel"] = label(args.config, clicks, args.out / "every_pixel", args.frames, *every_pixel)
    rendered = args.out / "rendered"
    shutil.rmtree(rendered, ignore_errors=True)
    shutil.copytree(args.out / "default", rendered)
    (rendered / "transforms.json").unlink()
    minutes["rendered"] = label(args.config, clicks, rendered, args.frames, *chosen, "--no-captured-depth")
    report = {
        name: {**scores(args.out / name, data_dir, clicks), "minutes": seconds / 60}
        for name, seconds in minutes.items()
    }
    print(json.dumps(report, indent=2))
    (args.out / "label_quality.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
