"""Where a run renders surfaces see-through: per semantic class, the share of a split's pixels whose ray accumulates
less than ``MIN_ACCUMULATION`` opacity (``jacobinerf-label`` leaves them unlabelled and out of the point cloud, and a
click there is skipped), the median accumulation, and the share of those pixels the capture has a depth for.

    python bench/see_through.py --config RUN/config.yml [--split eval] [--top 8] [--json out.json]

One eval render per frame of ``--split`` with semantic ground truth; classes are ranked by their see-through pixels.
"""

from __future__ import annotations

import argparse
import json
import runpy
from pathlib import Path

import numpy as np

LABEL_QUALITY = runpy.run_path(str(Path(__file__).with_name("label_quality.py")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="a trained run's config.yml")
    parser.add_argument("--split", default="eval", choices=["train", "eval"])
    parser.add_argument("--top", type=int, default=8, help="how many classes to print")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    import torch

    from jacobinerf_ns.pointcloud import captured_distance
    from jacobinerf_ns.propagation.labelling import MIN_ACCUMULATION
    from jacobinerf_ns.propagation.rendering import eval_mode
    from jacobinerf_ns.runs import open_run
    from jacobinerf_ns.scene import dataset_scene

    _, pipeline, _ = open_run(args.config)
    model, scene = pipeline.model, dataset_scene(pipeline.datamanager)
    truth, names = LABEL_QUALITY["ground_truth"](scene.data_dir), LABEL_QUALITY["class_names"](scene.data_dir)
    pixels, see_through, with_depth, opacity = {}, {}, {}, {}
    frames = [frame for frame in scene.frames if frame.split == args.split and frame.name in truth]
    for frame in frames:
        with eval_mode(model), torch.no_grad():
            accumulation = model.get_outputs_for_camera(frame.camera)["accumulation"][..., 0].cpu().numpy()
        classes = truth[frame.name]
        captured = (
            ~captured_distance(frame.camera, frame.depth_file, 1.0).isnan().cpu().numpy()
            if frame.depth_file
            else np.zeros(classes.shape, bool)
        )
        for index in np.unique(classes).tolist():
            name = names.get(index, "void")
            where = classes == index
            low = where & (accumulation < MIN_ACCUMULATION)
            pixels[name] = pixels.get(name, 0) + int(where.sum())
            see_through[name] = see_through.get(name, 0) + int(low.sum())
            with_depth[name] = with_depth.get(name, 0) + int((low & captured).sum())
            opacity.setdefault(name, []).append(accumulation[where])
    total = sum(pixels.values())
    rows = {
        name: {
            "pixels": pixels[name],
            "see_through": see_through[name] / pixels[name],
            "median_accumulation": float(np.median(np.concatenate(opacity[name]))),
            "see_through_with_captured_depth": with_depth[name] / see_through[name] if see_through[name] else None,
        }
        for name in sorted(pixels, key=lambda name: -see_through[name])
    }
    share = sum(see_through.values()) / total
    print(f"{args.config}, {len(frames)} {args.split} frames: {share:.3f} of the pixels see-through")
    print("| class | pixels | see-through | median accumulation | see-through with captured depth |")
    print("|---|---|---|---|---|")
    for name, row in list(rows.items())[: args.top]:
        depth = (
            "–" if row["see_through_with_captured_depth"] is None else f"{row['see_through_with_captured_depth']:.3f}"
        )
        print(f"| {name} | {row['pixels']} | {row['see_through']:.3f} | {row['median_accumulation']:.2f} | {depth} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
