"""The README's first command: train and shape JacobiNeRF on the embedded sample scene, then show what shaping did.

    python -m jacobinerf_ns.demo            # ~5 minutes on a 2-core CPU

1. renders the sample scene (``jacobinerf_ns.sample_scene``) into ``outputs/demo/scene``;
2. runs ``ns-train jacobinerf`` on it (photometric phase, then MI shaping with the scene's instance masks);
3. loads the run and writes ``outputs/demo/response.png``: for clicks on objects of a training view, the perturbation
   response and the selected entity in held-out views, next to the ground-truth entity; and prints the Jacobian
   cosine gap (same-instance vs different-instance pixel pairs) before and after shaping, plus sparse label
   propagation metrics (mean ± std over 3 training views × 3 seeds).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from jacobinerf_ns import files, runs
from jacobinerf_ns.sample_scene import make_sample_scene

if TYPE_CHECKING:
    from jacobinerf_ns.pipeline import JacobiNerfPipeline

CLICKED_INSTANCES = ("ball_red", "box_yellow")


def response_figure(pipeline: JacobiNerfPipeline, scene: Path, path: Path) -> None:
    """Rows = clicked entity × held-out view; columns = render, response, selection, ground-truth entity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jacobinerf_ns.propagation import RESPONSES, Probe, pixel_jacobians, render_responses
    from jacobinerf_ns.visualization import highlight

    model = pipeline.model
    train_outputs, targets_outputs = pipeline.datamanager.train_dataparser_outputs, runs.eval_outputs(pipeline)
    names = runs.instance_names(scene)
    source, targets = runs.label_maps(train_outputs, "instances")[0], runs.label_maps(targets_outputs, "instances")
    views = min(2, len(targets))
    columns = ("render", "response to the click", "selection (response > 0.5 max)", "ground truth")
    figure, axes = plt.subplots(len(CLICKED_INSTANCES) * views, 4, figsize=(11, 2.2 * len(CLICKED_INSTANCES) * views))
    for entity, name in enumerate(CLICKED_INSTANCES):
        instance = names.index(name)
        where = torch.nonzero(source == instance).float()
        click = where[(where - where.mean(dim=0)).norm(dim=-1).argmin()].long()[None]  # the pixel nearest its centroid
        probe = Probe(sources=pixel_jacobians(model, train_outputs.cameras[0:1], click))
        for view in range(views):
            outputs = render_responses(model, targets_outputs.cameras[view : view + 1], probe)
            response = outputs[RESPONSES["3d"]][..., 0].cpu()
            response = response / response.max().clamp_min(1e-12)
            rgb = outputs["rgb"].cpu().clamp(0, 1)
            panels = (rgb, response, highlight(rgb, response > 0.5), targets[view] == instance)
            row = axes[entity * views + view]
            for column, (axis, image) in enumerate(zip(row, panels)):
                axis.imshow(image.numpy(), cmap="turbo" if column == 1 else "gray", vmin=0, vmax=1)
                axis.set_xticks([])
                axis.set_yticks([])
                if entity == 0 and view == 0:
                    axis.set_title(columns[column], fontsize=9)
            row[0].set_ylabel(f"{name}\neval view {view}", fontsize=9)
        print(f"  clicked {name} at (y, x) = {tuple(click[0].tolist())} of training view 0")
    figure.suptitle("One click on training view 0 → the clicked entity in held-out views (after shaping)")
    figure.tight_layout()
    with files.atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=110)
    plt.close(figure)


def propagation_protocol():
    """The demo's label-propagation protocol: the paper's sparse setting (one click per class or instance) from
    training views 0, 5 and 10, with the protocol's click seeds."""
    from jacobinerf_ns.propagation.protocol import PropagationProtocol

    return PropagationProtocol(settings=("sparse",), source_views=(0, 5, 10))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"), help="where the scene, run and figure go")
    parser.add_argument("--steps", type=int, default=800, help="total training steps")
    parser.add_argument("--shaping-start", type=int, default=400, help="step at which MI shaping starts")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    parser.add_argument("extra", nargs="*", help="further ns-train options, after --")
    args = parser.parse_args(argv)

    scene = make_sample_scene(args.out / "scene")
    print(f"Sample scene: {scene}", flush=True)
    run = runs.train(scene, args.out / "runs", args.steps, args.shaping_start, args.device, args.extra)

    before = runs.cosine_gap(runs.load_step(run, args.shaping_start - 1))
    pipeline = runs.load_step(run, args.steps - 1)
    after = runs.cosine_gap(pipeline)
    figure = args.out / "response.png"
    response_figure(pipeline, scene, figure)
    protocol = propagation_protocol()
    pipeline.config.propagation = protocol
    metrics = pipeline.propagation_metrics()

    print("\nMean |cos| of Jacobians in two held-out views (instance pairs):")
    for when, step, gap in (("before", args.shaping_start - 1, before), ("after ", args.steps - 1, after)):
        print(
            f"  {when} shaping (step {step}): same {gap['cos_same']:.3f}  different {gap['cos_different']:.3f}  "
            f"gap {gap['cos_gap']:+.3f}"
        )
    draws = len(protocol.draw_views()) * len(protocol.draw_seeds())
    print(
        f"Sparse label propagation (one click per class/instance on a training view, all eval views), mean ± std "
        f"over {draws} draws (training views {list(protocol.draw_views())} × seeds {list(protocol.draw_seeds())}):"
    )
    for key in ("sparse_3d_miou", "sparse_3d_total_acc", "instance_sparse_3d_miou", "instance_sparse_3d_total_acc"):
        if key in metrics:
            print(f"  {key:30s} {metrics[key]:.3f} ± {metrics[f'{key}_std']:.3f}")
    print(f"\nFigure: {figure}")
    print(f"Config: {run / 'config.yml'}  (try: ns-eval --load-config {run / 'config.yml'} --output-path eval.json)")


if __name__ == "__main__":
    main(sys.argv[1:])
