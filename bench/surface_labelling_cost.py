"""What labels spread over the surfaces cost in the viewer, on a trained run, in one run: the one-time pass over the
training frames, the spread after a click, a selection, and a frame at the viewer's resolution with each
propagation.

    python bench/surface_labelling_cost.py --config RUN/config.yml --clicks CLICKS.json [--width 512] [--repeats 3]

The click set (e.g. the one ``bench/label_quality.py`` writes) is loaded into a viewer session
(:class:`~jacobinerf_ns.viewer.session.ViewerSession` with the run's masks, what the panel drives); then: the nodes of
the training frames (once, with the spread of every click), the spread of every click alone, what one more click
costs (the spreads of the earlier clicks kept, as the viewer keeps them), *Select entity*'s selection of the last
click, the median render of the first training camera scaled to ``--width`` pixels with nearest and with surface
labels, and what the viewer takes from a label click to that frame re-labelled when it keeps its last field pass
(:mod:`jacobinerf_ns.view_cache`: the click's spread, the probe, the labels read at every pixel). Prints a markdown
table with the CPU named.
"""

from __future__ import annotations

import argparse
import platform
import time
from dataclasses import replace
from pathlib import Path


def seconds(function) -> float:
    began = time.perf_counter()
    function()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="a trained run's config.yml")
    parser.add_argument("--clicks", type=Path, required=True, help="a click set of the run's scene")
    parser.add_argument("--width", type=int, default=512, help="viewer render width in pixels")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch

    from jacobinerf_ns.clicks import read_clicks
    from jacobinerf_ns.propagation.surface_labelling import SurfaceLabelling, SurfaceSelection
    from jacobinerf_ns.runs import open_run
    from jacobinerf_ns.scene import click_rays, dataset_scene, frame_masks
    from jacobinerf_ns.view_cache import ViewCache
    from jacobinerf_ns.viewer.decoration import LABELS
    from jacobinerf_ns.viewer.session import ViewerSession

    _, pipeline, _ = open_run(args.config)
    model = pipeline.model
    scene = dataset_scene(pipeline.datamanager)
    session = ViewerSession(model, scene=lambda: scene, masks=lambda frames: frame_masks(pipeline.datamanager, frames))
    click_set = read_clicks(args.clicks)
    began = time.perf_counter()
    print(session.files.load(click_set, str(args.clicks)), flush=True)  # publishes: the graph, every click's spread
    once = time.perf_counter() - began
    train = [frame for frame in scene.frames if frame.split == "train"]
    graph, clicks = session.surface.graph, session.labels.resolved()
    all_clicks = seconds(lambda: SurfaceLabelling.spread(graph, clicks, {}))
    # a new click: the spreads of the earlier clicks kept, as the viewer keeps them
    earlier = replace(clicks, jacobians=clicks.jacobians[:-1], class_ids=clicks.class_ids[:-1],
                      surfaces=clicks.surfaces[:-1])  # fmt: skip
    columns: dict = {}
    SurfaceLabelling.spread(graph, earlier, columns)
    click = seconds(lambda: SurfaceLabelling.spread(graph, clicks, columns))
    last = session.labels.clicks[-1].evaluated
    selection = seconds(lambda: SurfaceSelection.of_click(graph, torch.tensor(last.surface), last.jacobian))

    camera = train[0].camera.to("cpu")
    camera.rescale_output_resolution(args.width / int(camera.width))
    renders = {}
    for propagation in ("nearest", "surface"):
        session.set_propagation(propagation)
        times = []
        for _ in range(args.repeats):
            times.append(seconds(lambda: model.get_outputs_for_camera(camera)[LABELS]))
        renders[propagation] = sorted(times)[len(times) // 2]
    # a label click with the viewer's last field pass kept: the frame rendered before the click, then the click
    model.view_cache = ViewCache()
    last_click = click_set.clicks[-1]
    session.files.load(replace(click_set, clicks=click_set.clicks[:-1]), str(args.clicks))
    model.get_outputs_for_camera(camera)
    ray = click_rays(replace(click_set, clicks=(last_click,)), scene, str(args.clicks)).bundle()
    # what the panel does on a click: evaluate the ray, check its surface, publish, and the viewer renders
    relabel = seconds(lambda: (session.labels.add(ray, last_click.label), model.get_outputs_for_camera(camera)))
    assert model.view_cache.passes == 1, "the click re-labels the kept field pass"
    graph = session.surface.current().graph
    rows = [
        f"Surface labelling in the viewer: {args.config}, {len(session.labels.clicks)} clicks, {len(train)} training "
        f"frames, {len(graph)} graph nodes; {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads.",
        "",
        "| step | seconds |",
        "|---|---|",
        f"| loading the clicks: their rays, the training frames' graph, every click's spread (once) | {once:.1f} |",
        f"| of which the spread of every click | {all_clicks:.1f} |",
        f"| a new click: its seed's spread, the labels' sum | {click:.1f} |",
        f"| *Select entity*: a click's selection ({'by the masks' if graph.masks is not None else 'a spread'}) | "
        f"{selection:.1f} |",
        f"| a frame {int(camera.width)}×{int(camera.height)}, nearest labels | {renders['nearest']:.1f} |",
        f"| a frame {int(camera.width)}×{int(camera.height)}, surface labels | {renders['surface']:.1f} |",
        f"| a label click to that frame re-labelled, its field pass kept (surface) | {relabel:.1f} |",
    ]
    print("\n".join(rows))


if __name__ == "__main__":
    main()
