"""The point cloud of a ``jacobinerf-label`` export fused at the rendered depth (``--no-captured-depth``, as for a
capture without depth maps) with other settings of the multi-view check, or at the captured depth with other
``--capture-tolerance`` values (``--capture-tolerances``), against the scene's true surface.

    python bench/fusion_sweep.py --export OUT/default --out SWEEP [--tolerances 0.03 0.02] [--views 2 3] \
        [--angles 2] [--shares 0.6 0] [--capture-tolerances 0.03 0.2] [--frames all] [--data DATA]

For each ``--depth-tolerance`` × ``--min-agreeing-views`` × ``--min-triangulation-angle`` (``--angles``) ×
``--min-surface-share`` (``--shares``), the export (its frames: ``ids/``, ``depth/``, ``surface_share/``) is copied to
``SWEEP/t{τ}_v{n}_a{angle}_s{share}`` (with ``--capture-tolerances``, ``..._c{τ_c}`` at the captured depth) and
``jacobinerf-label`` reruns on it
with the export's own run, clicks and labelling settings (``export.json``): the rerun keeps every frame and fuses only
the point cloud. Each cloud is scored by ``bench/point_cloud_accuracy.py`` (``--data``: the run's data folder by
default); the table is printed and written to ``SWEEP/fusion_sweep.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import runpy
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Tuple

POINT_CLOUD = runpy.run_path(str(Path(__file__).with_name("point_cloud_accuracy.py")))
RELABEL_OPTIONS = ("space", "mode", "sigma", "min_confidence", "min_explained", "min_resemblance", "min_class_score",
                   "propagation", "surface_pixels")  # fmt: skip
"""The export's settings (``export.json``) the rerun repeats, so that it keeps the export's frames."""


def fuse_again(export: Path, manifest: dict, frames: str, settings: Tuple, out: Path):
    """The export's frames (``--frames frames``; ``manifest``: its ``export.json``) fused again into ``out`` with
    ``settings``: tolerance, views, angle, surface share and capture tolerance (``None``: at the rendered depth)."""
    tolerance, views, angle, share, capture = settings
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(export, out, ignore=shutil.ignore_patterns("transforms.json", "labelled_points.ply"))
    written = len(list((export / "ids").glob("*.png")))
    command = ["jacobinerf-label", "--load-config", manifest["config"], "--clicks", manifest["clicks_file"],
               "--output-dir", str(out), "--frames", frames,
               "--depth-tolerance", str(tolerance), "--min-agreeing-views", str(views),
               "--min-triangulation-angle", str(angle), "--min-surface-share", str(share)]  # fmt: skip
    command += ["--no-captured-depth"] if capture is None else ["--capture-tolerance", str(capture)]
    for key in RELABEL_OPTIONS:
        command += [f"--{key.replace('_', '-')}", str(manifest[key])]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0 or f"{written} of {written} frames already" not in result.stdout:
        sys.exit(f"{' '.join(command)} did not fuse the export's frames again:\n{result.stdout[-2000:]}"
                 f"{result.stderr[-2000:]}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", type=Path, required=True, help="a complete jacobinerf-label output folder")
    parser.add_argument("--out", type=Path, default=Path("outputs/fusion_sweep"))
    parser.add_argument("--frames", default="all", choices=["all", "train", "eval"], help="the export's --frames")
    parser.add_argument("--tolerances", type=float, nargs="+", default=[0.03, 0.02])
    parser.add_argument("--views", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--angles", type=float, nargs="+", default=[2.0], help="--min-triangulation-angle values")
    parser.add_argument("--shares", type=float, nargs="+", default=[0.6], help="--min-surface-share values")
    parser.add_argument("--capture-tolerances", type=float, nargs="+", default=[None],
                        help="--capture-tolerance values, fused at the captured depth (default: rendered)")  # fmt: skip
    parser.add_argument("--data", type=Path, help="the scene with the true depth (default: the run's data folder)")
    parser.add_argument("--depth-scale", type=float, default=1e-3, help="poses' units per depth unit (mm → m)")
    args = parser.parse_args()
    manifest = json.loads((args.export / "export.json").read_text())
    data = args.data or data_of(Path(manifest["config"]))
    rows = []
    for settings in itertools.product(args.tolerances, args.views, args.angles, args.shares, args.capture_tolerances):
        tolerance, views, angle, share, capture = settings
        at_capture = "" if capture is None else f"_c{capture:g}"
        out = args.out / f"t{tolerance:g}_v{views}_a{angle:g}_s{share:g}{at_capture}"
        fuse_again(args.export, manifest, args.frames, settings, out)
        figures = POINT_CLOUD["measure"](out, data, args.depth_scale)
        rows.append({"depth_tolerance": tolerance, "min_agreeing_views": views, "min_triangulation_angle": angle,
                     "min_surface_share": share, "capture_tolerance": capture, **figures})  # fmt: skip
        at = "rendered depth" if capture is None else f"captured depth (τ_c {capture:g})"
        print(f"τ {tolerance:g}, {views} views, {angle:g}°, surface share {share:g}, {at}: accuracy "
              f"{figures['accuracy']:.3f}, completeness {figures['completeness']:.3f} (of the exported frames "
              f"{figures['completeness_of_exported']:.3f}), label accuracy {figures['label_accuracy']}, "
              f"median distance {figures['median_distance']:.3f}, "
              f"{figures['points']} points", flush=True)  # fmt: skip
    (args.out / "fusion_sweep.json").write_text(json.dumps(rows, indent=2))


def data_of(config: Path) -> Path:
    import yaml

    return Path(yaml.load(config.read_text(), Loader=yaml.Loader).data)


if __name__ == "__main__":
    main()
