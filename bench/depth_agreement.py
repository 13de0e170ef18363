"""Where a trained run's rendered surfaces lie against the capture's depth maps, and what one pixel's ray holds.

    python bench/depth_agreement.py --run RUN [--step 599] [--pixel VIEW Y X] [--views 0 27 54] \
        [--surface-quantiles 0.4 0.5]

``RUN``: a run folder (``config.yml``) of a scene with depth maps. For every training view: the median ratio of the
rendered depth (the model's ``depth``: the median termination distance on a run the depth loss trained) to the
captured distance (the map as the depth loss reads it, :func:`jacobinerf_ns.pointcloud.captured_distance`), and the
share of its pixels within 3% of it; the ratio is also given by the pixels' ray direction norm (image centre →
corners), where a z-depth / distance mix-up would show; ``--surface-quantiles`` reads the depth at other quantiles of
each ray's weight than the run's (:mod:`jacobinerf_ns.surface_depth`), and the last rows pool the views.
``--pixel``: for that training view's pixel, the rendered depth and accumulation, and for each sampler (the proposal
samplers, then the field) its total weight and the weight within 0.15 scene units of the captured distance.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from jacobinerf_ns.pointcloud import captured_distance, depth_file_scale
from jacobinerf_ns.runs import checkpoint_steps, load_step

NEAR = 0.15
"""Scene units around the captured distance counted as "at the surface" for ``--pixel``."""
NORM_BINS = (1.0, 1.05, 1.15, 1.25, np.inf)


def view_agreement(pipeline, views: Optional[List[int]], quantiles: List[Optional[float]]) -> None:
    """The table, per training view of ``views`` (None: all) and per surface quantile (None: the run's), then over
    all of them."""
    outputs = pipeline.datamanager.train_dataparser_outputs
    scale = depth_file_scale(outputs)
    depth_files = outputs.metadata["depth_filenames"]
    bins = " / ".join(f"[{lo:g}, {hi:g})" for lo, hi in zip(NORM_BINS, NORM_BINS[1:]))
    print(f"| view | quantile | median rendered / captured | share within 3% | ratio by direction norm {bins} |")
    print("|---|---|---|---|---|")
    renderer = pipeline.model.renderer_depth
    run_quantile = renderer.quantile
    pooled: Dict[float, List[torch.Tensor]] = {}
    for view in range(len(depth_files)) if views is None else views:
        camera = outputs.cameras[view : view + 1]
        captured = captured_distance(camera, depth_files[view], scale)
        norm = camera.generate_rays(camera_indices=0, keep_shape=True).metadata["directions_norm"][..., 0]
        seen = torch.isfinite(captured)
        for quantile in quantiles:
            renderer.quantile = run_quantile if quantile is None else quantile
            with torch.no_grad():
                rendered = pipeline.model.get_outputs_for_camera(camera)["depth"][..., 0].cpu()
            ratio, norms = (rendered / captured)[seen], norm[seen].cpu()
            pooled.setdefault(renderer.quantile, []).append(ratio)
            by_norm = [ratio[(norms >= lo) & (norms < hi)] for lo, hi in zip(NORM_BINS, NORM_BINS[1:])]
            cells = " / ".join(f"{float(part.median()):.3f}" if len(part) else "–" for part in by_norm)
            within = float(((ratio - 1).abs() <= 0.03).float().mean())
            print(f"| {view} | {renderer.quantile:g} | {float(ratio.median()):.4f} | {within:.3f} | {cells} |")
    renderer.quantile = run_quantile
    for quantile, ratios in pooled.items():
        ratio = torch.cat(ratios)
        within = float(((ratio - 1).abs() <= 0.03).float().mean())
        print(f"| all | {quantile:g} | {float(ratio.median()):.4f} | {within:.3f} | |")


def pixel_samplers(pipeline, view: int, y: int, x: int) -> None:
    from nerfstudio.field_components.field_heads import FieldHeadNames

    model, outputs = pipeline.model, pipeline.datamanager.train_dataparser_outputs
    camera = outputs.cameras[view : view + 1]
    captured = float(
        captured_distance(camera, outputs.metadata["depth_filenames"][view], depth_file_scale(outputs))[y, x]
    )
    rays = model.collider(camera.generate_rays(camera_indices=0, keep_shape=True)[y : y + 1, x])
    with torch.no_grad():
        rendered = model.get_outputs(rays)
        samples, weights, samples_list = model.proposal_sampler(rays, density_fns=model.density_fns)
        field_weights = samples.get_weights(model.field.forward(samples)[FieldHeadNames.DENSITY])
    print(f"view {view} pixel ({y}, {x}): captured {captured:.3f}, rendered depth {float(rendered['depth']):.3f}, "
          f"accumulation {float(rendered['accumulation']):.3f}")  # fmt: skip
    levels = [*zip(samples_list, weights), (samples, field_weights)]
    for level, (level_samples, level_weights) in enumerate(levels):
        steps = ((level_samples.frustums.starts + level_samples.frustums.ends) / 2).flatten()
        w = level_weights.flatten()
        near = (steps - captured).abs() < NEAR
        name = "field" if level == len(levels) - 1 else f"proposal {level}"
        print(f"  {name}: {len(w)} samples, weight {float(w.sum()):.3f}, within {NEAR} of the capture "
              f"{float(w[near].sum()):.3f} ({int(near.sum())} samples)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a run folder (config.yml)")
    parser.add_argument("--step", type=int, help="the checkpoint's step (default: the latest)")
    parser.add_argument("--pixel", type=int, nargs=3, metavar=("VIEW", "Y", "X"))
    parser.add_argument("--views", type=int, nargs="+", help="training views to render (default: all)")
    parser.add_argument("--surface-quantiles", type=float, nargs="+", default=[None],
                        help="read each render's depth at these quantiles (default: the run's)")  # fmt: skip
    args = parser.parse_args()
    if any(quantile is not None and not 0 < quantile <= 1 for quantile in args.surface_quantiles):
        parser.error(f"--surface-quantiles must lie in (0, 1], got {args.surface_quantiles}")
    if args.step is None:
        saved = checkpoint_steps(args.run)
        if not saved:
            raise SystemExit(f"{args.run}: no checkpoint in {args.run / 'nerfstudio_models'} (--run: a run folder)")
        args.step = saved[-1]
    pipeline = load_step(args.run, args.step)
    if pipeline.datamanager.train_dataparser_outputs.metadata.get("depth_filenames") is None:
        raise SystemExit(f"{args.run}: the run's scene has no depth maps (depth_file_path)")
    views = len(pipeline.datamanager.train_dataparser_outputs.metadata["depth_filenames"])
    if args.views is not None and not all(0 <= view < views for view in args.views):
        raise SystemExit(f"--views {args.views}: the run has training views 0 to {views - 1}")
    view_agreement(pipeline, args.views, args.surface_quantiles)
    if args.pixel:
        pixel_samplers(pipeline, *args.pixel)


if __name__ == "__main__":
    main()
