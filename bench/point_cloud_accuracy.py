"""How well a ``jacobinerf-label`` export's point cloud lies on a scene's true surface
(:mod:`jacobinerf_ns.surface_accuracy`): the scene's depth maps (``depth_file_path`` of its ``transforms.json``)
back-projected are the truth.

    python bench/point_cloud_accuracy.py --export labelled/ --data DATA [--depth-scale 0.001] [--json out.json]

Prints, for ``labelled_points.ply``: its points, the share within ``max(5 cm, two pixel footprints)`` of the true
surface (accuracy), the share of the true surface with a point within that distance (completeness: of every frame;
``completeness_of_exported``: of the frames the export labelled, ``ids/``; ``completeness_of_annotated``: of their
surface whose true class is not void, what clicks naming the scene's classes are asked to label; ``None`` without
semantic maps), the median distance, the share of the
points on the surface whose label is the true class there (``label_accuracy``: the export's ``classes.json`` names
against the scene's; ``None`` without semantic maps), and the share of the pixels without a true surface (depth 0)
that ``ids/`` labels (background). ``--by-class`` adds, per true class, where the points off the surface lie (of the
points whose nearest true point has that class: how many, the share off the surface, and the median distance of those
in tolerances: just over 1 for near misses, e.g. a surface rendered slightly off in every view, far over for
floaters) and what the cloud covers (the class's true points, the share with a point within their tolerance).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from plyfile import PlyData

from jacobinerf_ns.surface_accuracy import CloudScore, background_share, true_surface


def class_figures(score: CloudScore) -> dict:
    """True class → the cloud's points whose nearest true point has it, their share off the surface, the median
    distance of those off it in tolerances (None: none off), the class's true points and their share covered."""
    distance, nearest = score.nearest
    classes = score.truth.classes[nearest]
    rows = {}
    for name in np.unique(score.truth.classes):
        here, true = classes == name, score.truth.classes == name
        off = here & ~score.on_surface
        ratios = distance[off] / score.truth.tolerances[nearest[off]]
        rows[str(name)] = {
            "points": int(here.sum()),
            "off_surface": float(off.sum() / here.sum()) if here.any() else None,
            "median_tolerances_off": float(np.median(ratios)) if len(ratios) else None,
            "true_points": int(true.sum()),
            "covered": float(np.mean(score.covered[true])),
        }
    return rows


def measure(export: Path, data: Path, depth_scale: float, by_class: bool = False) -> dict:
    vertex = PlyData.read(str(export / "labelled_points.ply"))["vertex"]
    points = np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=-1).astype(np.float64)
    score = CloudScore(points, true_surface(data, depth_scale))
    figures = {"points": len(points), **score.shares()}
    exported = {path.stem for path in (export / "ids").glob("*.png")}
    figures["completeness_of_exported"] = score.shares(exported)["completeness"]
    figures["completeness_of_annotated"] = score.annotated_completeness(exported)
    rows = json.loads((export / "classes.json").read_text())["semantic_classes"]
    names = np.array([row["name"] for row in sorted(rows, key=lambda row: row["index"])], dtype=object)
    figures["label_accuracy"] = score.label_accuracy(names[np.asarray(vertex["label"])])
    figures["background_labelled"] = background_share(export, data, depth_scale)
    if by_class and score.truth.classes is not None and len(points):
        figures["by_class"] = class_figures(score)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", type=Path, required=True, help="a jacobinerf-label output folder")
    parser.add_argument("--data", type=Path, required=True, help="the nerfstudio-data folder with the true depth")
    parser.add_argument("--depth-scale", type=float, default=1e-3, help="poses' units per depth unit (mm → m)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--by-class", action="store_true", help="accuracy and coverage per true class")
    args = parser.parse_args()
    figures = measure(args.export, args.data, args.depth_scale, args.by_class)
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
