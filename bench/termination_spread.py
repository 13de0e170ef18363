"""Where along its rays a run puts one class's surface: the depth at which each ray's accumulated weight reaches a few
quantiles, against the true depth (a sharp surface has every quantile on it; a soft layer spreads them over its
thickness, and the depth ``jacobinerf-label`` fuses at, the run's surface quantile, lies off the surface wherever the
layer is thick).

    python bench/termination_spread.py --config RUN/config.yml [--class floor] [--frames 0 5 10] \
        [--quantiles 0.25 0.4 0.5 0.75]

For each training frame of ``--frames`` (indices among the training frames), the pixels whose true class (the scene's
semantic maps, ``classes.json``) is ``--class`` and that have a true depth (``depth_file_path``, millimetres) are
rendered by the run (eval samplers, no jitter). Per quantile q: the ray's distance where its accumulated weight reaches
q, minus the true distance along the ray, in tolerances (``max(5 cm, two pixel footprints)``: the point cloud's
accuracy tolerance, :mod:`jacobinerf_ns.surface_accuracy`); printed as the median and the share of rays beyond one
tolerance (and beyond it behind the surface).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from jacobinerf_ns.surface_accuracy import FOOTPRINTS, MIN_DISTANCE, true_depth
from jacobinerf_ns.surface_depth import QuantileDepthRenderer


def quantile_distances(model, rays, quantiles) -> torch.Tensor:
    """``(R, Q)`` distance along each ray where its accumulated weight reaches each quantile (scene units)."""
    model.training = True  # the top module only: nerfacto then returns each sampler's weights; samplers keep no jitter
    try:
        with torch.no_grad():
            outputs = model.get_outputs(model.collider(rays))
    finally:
        model.training = False
    weights, samples = outputs["weights_list"][-1], outputs["ray_samples_list"][-1]
    return torch.cat([QuantileDepthRenderer(quantile)(weights, samples) for quantile in quantiles], dim=-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="a trained run's config.yml")
    parser.add_argument("--class", dest="name", default="floor", help="the true class whose rays are measured")
    parser.add_argument("--frames", type=int, nargs="+", default=[0, 5, 10], help="indices among the training frames")
    parser.add_argument("--quantiles", type=float, nargs="+", default=[0.25, 0.4, 0.5, 0.75])
    args = parser.parse_args()

    from jacobinerf_ns.runs import open_run
    from jacobinerf_ns.scene import dataset_scene

    _, pipeline, _ = open_run(args.config)
    scene = dataset_scene(pipeline.datamanager)
    rows = {
        Path(row["file_path"]).name: row
        for row in json.loads((scene.data_dir / "transforms.json").read_text())["frames"]
    }
    classes = {
        row["name"]: int(row["index"])
        for row in json.loads((scene.data_dir / "classes.json").read_text())["semantic_classes"]
    }
    if args.name not in classes:
        parser.error(f"--class {args.name!r} is not a class of {scene.data_dir / 'classes.json'}: {sorted(classes)}")
    scale = float(scene.outputs.dataparser_scale)  # scene units per metre
    training = [frame for frame in scene.frames if frame.split == "train"]
    errors = []
    for frame in (training[i] for i in args.frames):
        row = rows[Path(frame.image).name]
        semantics = np.asarray(Image.open(scene.data_dir / row["semantics_file_path"]))
        depth = true_depth(scene.data_dir, row, 1e-3)
        camera = frame.camera
        fx, fy, cx, cy = (float(getattr(camera, key)) for key in ("fx", "fy", "cx", "cy"))
        ys, xs = np.mgrid[: depth.shape[0], : depth.shape[1]] + 0.5
        along = depth * np.sqrt(((xs - cx) / fx) ** 2 + ((ys - cy) / fy) ** 2 + 1)  # z-depth → distance on the ray
        chosen = np.nonzero(((semantics == classes[args.name]) & (depth > 0)).ravel())[0]
        rays = camera.generate_rays(camera_indices=0).flatten()[torch.from_numpy(chosen)]
        tolerance = np.maximum(MIN_DISTANCE, FOOTPRINTS * along / fx).ravel()[chosen]
        found = quantile_distances(pipeline.model, rays, args.quantiles).numpy() / scale
        errors.append((found - along.ravel()[chosen, None]) / tolerance[:, None])
        print(f"{Path(frame.image).name}: {len(chosen)} rays of {args.name!r}", flush=True)
    errors = np.concatenate(errors)
    print("\n| quantile | median (depth − true) in tolerances | beyond one tolerance | of which behind |")
    print("|---|---|---|---|")
    for column, quantile in enumerate(args.quantiles):
        error = errors[:, column]
        beyond = np.abs(error) > 1
        print(f"| {quantile} | {np.median(error):.2f} | {beyond.mean():.3f} | {(error > 1).mean():.3f} |")


if __name__ == "__main__":
    main()
