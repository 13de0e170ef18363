"""What ``jacobinerf-label --min-class-score F`` gives an export's frames for several floors F, from one render per
frame: the export's run, clicks and settings (``export.json``; ``--propagation surface`` on a run with masks), the
spread built once, each exported frame's class scores rendered once and labelled at every floor, scored as
``bench/confidence_sweep.py`` scores an export against the scene's semantic ground truth.

    python bench/class_score_sweep.py --export OUT/default --data DATA [--floors 0 0.05 0.1 0.2 0.3] [--json F]

Prints per floor: mIoU over the classes present, pixel accuracy, the share of labelled ground-truth pixels left
unlabelled, the share of void ground-truth pixels (a surface no class names, so no click) labelled, and the share of
background pixels (no true surface: depth 0) labelled. The point cloud is not fused (``jacobinerf-label
--min-class-score F``, then ``bench/point_cloud_accuracy.py``).
"""

from __future__ import annotations

import argparse
import json
import runpy
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

LABEL_QUALITY = runpy.run_path(str(Path(__file__).with_name("label_quality.py")))
CONFIDENCE_SWEEP = runpy.run_path(str(Path(__file__).with_name("confidence_sweep.py")))
FIGURES = ("miou", "pixel_accuracy", "unlabelled", "void_labelled", "background_labelled")


def render_scores(export: Path) -> dict:
    """Exported frame's image stem → its :class:`~jacobinerf_ns.propagation.surface_labelling.SurfaceFrame` with no
    floor (``--min-class-score 0``)."""
    from jacobinerf_ns.clicks import read_clicks
    from jacobinerf_ns.commands.label import Label
    from jacobinerf_ns.label_export import MANIFEST
    from jacobinerf_ns.propagation.labelling import resolve_clicks
    from jacobinerf_ns.scene import dataset_scene

    manifest = json.loads((export / MANIFEST).read_text())
    if manifest["propagation"] != "surface":
        raise SystemExit(f"{export} was labelled with --propagation {manifest['propagation']}: the floor is surface's")
    label = Label(
        load_config=Path(manifest["config"]),
        clicks=Path(manifest["clicks_file"]),
        output_dir=export,
        surface_pixels=manifest["surface_pixels"],
        masks=manifest["masks"],
        min_resemblance=manifest["min_resemblance"],
        min_class_score=0.0,
    )
    pipeline, _ = label.load_run()
    model, scene = pipeline.model, dataset_scene(pipeline.datamanager)
    clicks = resolve_clicks(model, read_clicks(label.clicks), scene, str(label.clicks))
    surface = label.spread(model, clicks, scene.training_frames(), pipeline.datamanager)
    if surface.node_resemblance is None:
        raise SystemExit(f"{export}: the run has no masks (or --no-masks): the floor does not apply")
    stems = {path.stem for path in (export / "ids").glob("*.png")}
    rendered = {}
    for frame in scene.frames:
        if frame.stem in stems:
            rendered[frame.stem] = surface.frame_scores(model, frame.camera)
    return rendered


def labelled_at(rendered: dict, floor: float, folder: Path) -> Path:
    """A folder with ``ids/`` labelled at ``floor`` as ``jacobinerf-label`` labels (no ``--min-confidence``)."""
    from dataclasses import replace

    import torch

    from jacobinerf_ns.propagation.surface_graph import floored
    from jacobinerf_ns.visualization import label_image

    (folder / "ids").mkdir(parents=True)
    for stem, frame in rendered.items():
        scores = torch.from_numpy(floored(frame.scores.numpy(), floor))
        Image.fromarray(label_image(replace(frame, scores=scores).labels().ids)).save(folder / "ids" / f"{stem}.png")
    return folder


def void_labelled(ids_folder: Path, data: Path):
    """Share of the void ground-truth pixels (semantic id 0) that ``ids/`` labels (``None``: no such pixel)."""
    void = labelled = 0
    for image, truth in LABEL_QUALITY["ground_truth"](data).items():
        path = ids_folder / "ids" / f"{Path(image).stem}.png"
        if path.is_file():
            unnamed = truth == 0
            void += int(unnamed.sum())
            labelled += int((unnamed & (np.asarray(Image.open(path)) != 0)).sum())
    return labelled / void if void else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", type=Path, required=True, help="a jacobinerf-label output folder (surface)")
    parser.add_argument("--data", type=Path, required=True, help="the nerfstudio-data folder with semantics and depth")
    parser.add_argument("--floors", type=float, nargs="+", default=[0.0, 0.05, 0.1, 0.2, 0.3])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    for option, path in (("--export", args.export / "export.json"), ("--data", args.data / "transforms.json")):
        if not path.exists():
            parser.error(f"{option}: {path} does not exist (--export: a jacobinerf-label output folder)")
    from jacobinerf_ns.surface_accuracy import background_share

    clicks = Path(json.loads((args.export / "export.json").read_text())["clicks_file"])
    rendered = render_scores(args.export)
    rows = {}
    with tempfile.TemporaryDirectory() as folder:
        for floor in args.floors:
            ids = labelled_at(rendered, floor, Path(folder) / f"floor_{floor:g}")
            figures = LABEL_QUALITY["label_scores"](ids, args.data, clicks)
            rows[floor] = {
                **figures,
                "void_labelled": void_labelled(ids, args.data),
                "background_labelled": background_share(ids, args.data),
            }
    CONFIDENCE_SWEEP["report"]("--min-class-score", rows, FIGURES, args.json)


if __name__ == "__main__":
    main()
