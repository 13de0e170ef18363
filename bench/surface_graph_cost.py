"""What the surface graph costs on a trained run, in one run: its nodes rendered over the training frames (once, as
the viewer and ``jacobinerf-label --propagation surface`` do), then the graph built from them ``--repeats`` times.

    python bench/surface_graph_cost.py --config RUN/config.yml [--repeats 3] [--masks]

``--masks`` joins the run's masks, as the viewer does on a run shaped with masks. To time another version of the
package on the same nodes, run this file with that version first on ``PYTHONPATH``. Prints a markdown table with the
CPU named.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="a trained run's config.yml")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--masks", action="store_true", help="join the run's masks (a run shaped with masks)")
    args = parser.parse_args()

    from jacobinerf_ns.propagation.surface_graph import build_surface_graph
    from jacobinerf_ns.propagation.surface_labelling import render_nodes
    from jacobinerf_ns.runs import open_run
    from jacobinerf_ns.scene import dataset_scene, frame_masks

    _, pipeline, _ = open_run(args.config)
    frames = dataset_scene(pipeline.datamanager).training_frames()
    masks = frame_masks(pipeline.datamanager, frames) if args.masks else None
    began = time.perf_counter()
    points, jacobians, node_masks = render_nodes(pipeline.model, [frame.camera for frame in frames], masks=masks)
    rendered = time.perf_counter() - began
    builds = []
    for _ in range(args.repeats):
        began = time.perf_counter()
        build_surface_graph(points.numpy(), jacobians.numpy(), masks=None if masks is None else node_masks.numpy())
        builds.append(time.perf_counter() - began)
    print(f"CPU: {platform.processor() or platform.machine()}; {len(frames)} training frames, {len(points)} nodes of "
          f"{jacobians.shape[1]} values{', with masks' if masks is not None else ''}")  # fmt: skip
    print("| step | seconds |\n|---|---|")
    print(f"| nodes rendered (once) | {rendered:.1f} |")
    print(f"| graph built ({args.repeats}×) | {' / '.join(f'{seconds:.2f}' for seconds in builds)} |")


if __name__ == "__main__":
    main()
