"""What ``jacobinerf-label --min-confidence T`` would give an export, for several T, without labelling again: the
export's ``ids/`` with every pixel whose ``confidence/`` is below T set to 0 (what the option does, to the PNGs'
8-bit precision), scored as ``bench/label_quality.py`` scores an export against the scene's semantic ground truth.

    python bench/confidence_sweep.py --export OUT/default --data DATA --clicks OUT/clicks.json \
        [--thresholds 0 0.05 0.1 0.2] [--json sweep.json]

Prints per threshold: mIoU over the classes present, pixel accuracy, the share of labelled ground-truth pixels left
unlabelled, and the share of background pixels (no true surface: depth 0) labelled. The point cloud is not fused
again (``bench/point_cloud_accuracy.py`` scores the export's).
"""

from __future__ import annotations

import argparse
import json
import runpy
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from jacobinerf_ns.surface_accuracy import background_share

LABEL_QUALITY = runpy.run_path(str(Path(__file__).with_name("label_quality.py")))
FIGURES = ("miou", "pixel_accuracy", "unlabelled", "background_labelled")


def thresholded(export: Path, threshold: float, folder: Path) -> Path:
    """A folder under ``folder`` holding the export's ``ids/``, 0 where ``confidence/`` is below ``threshold``."""
    copy = folder / f"min_confidence_{threshold:g}"
    (copy / "ids").mkdir(parents=True)
    for path in sorted((export / "ids").glob("*.png")):
        ids = np.asarray(Image.open(path))
        confidence = np.asarray(Image.open(export / "confidence" / path.name), dtype=np.float64) / 255.0
        Image.fromarray(np.where(confidence >= threshold, ids, 0).astype(ids.dtype)).save(copy / "ids" / path.name)
    return copy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", type=Path, required=True, help="a jacobinerf-label output folder")
    parser.add_argument("--data", type=Path, required=True, help="the nerfstudio-data folder with semantics and depth")
    parser.add_argument("--clicks", type=Path, required=True, help="the click set the export was labelled with")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.0, 0.05, 0.1, 0.2])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    for option, path in (("--export", args.export / "confidence"), ("--data", args.data / "transforms.json"),
                         ("--clicks", args.clicks)):  # fmt: skip
        if not path.exists():
            parser.error(f"{option}: {path} does not exist (--export: a jacobinerf-label output folder)")
    rows = {}
    with tempfile.TemporaryDirectory() as folder:
        for threshold in args.thresholds:
            ids = thresholded(args.export, threshold, Path(folder))
            figures = LABEL_QUALITY["label_scores"](ids, args.data, args.clicks)
            rows[threshold] = {**figures, "background_labelled": background_share(ids, args.data)}
    report("--min-confidence", rows, FIGURES, args.json)


def report(option: str, rows: dict, names: tuple, json_path=None) -> None:
    """Prints ``rows`` (value of ``option`` → figures) as a markdown table of the figures ``names`` ("–": none),
    and writes them to ``json_path`` when given."""
    print(f"| {option} | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for value, figures in rows.items():
        cells = ("–" if figures[name] is None else f"{figures[name]:.3f}" for name in names)
        print(f"| {value:g} | " + " | ".join(cells) + " |")
    if json_path:
        json_path.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
