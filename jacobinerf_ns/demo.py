"""The README's first command: train and shape JacobiNeRF on the embedded sample scene, then show what shaping did.

    python -m jacobinerf_ns.demo            # ~5 minutes on a 2-core CPU

1. renders the sample scene (``jacobinerf_ns.sample_scene``) into ``outputs/demo/scene``;
2. runs ``ns-train jacobinerf`` on it (photometric phase, then MI shaping with the scene's instance masks);
3. loads the run and writes ``outputs/demo/response.png``: for clicks on objects of a training view, the perturbation
   response and the selected entity in held-out views, next to the ground-truth entity; and prints the Jacobian
   cosine gap (same-instance vs different-instance pixel pairs) before and after shaping, plus sparse label
   propagation metrics.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import List

import numpy as np
import torch

from jacobinerf_ns.sample_scene import make_sample_scene

DEMO_MODEL_ARGS = [
    # A small field: the scene is 64×48 pixels, and the demo must run in minutes on two CPU cores.
    "--pipeline.model.log2-hashmap-size",
    "15",
    "--pipeline.model.num-levels",
    "8",
    "--pipeline.model.max-res",
    "256",
    "--pipeline.model.num-nerf-samples-per-ray",
    "32",
    "--pipeline.model.num-proposal-samples-per-ray",
    "64",
    "32",
    "--pipeline.datamanager.train-num-rays-per-batch",
    "1024",
]
CLICKED_INSTANCES = ("ball_red", "box_yellow")


def train(scene: Path, out: Path, steps: int, shaping_start: int, device: str, extra: List[str]) -> Path:
    """Runs ``ns-train jacobinerf`` as a user would and returns the run folder (the one holding ``config.yml``)."""
    arguments = [
        "jacobinerf",
        "--data",
        str(scene),
        "--output-dir",
        str(out),
        "--experiment-name",
        "sample_scene",
        "--timestamp",
        "demo",
        "--machine.device-type",
        device,
        "--vis",
        "tensorboard",
        "--max-num-iterations",
        str(steps),
        "--steps-per-save",
        str(shaping_start - 1),  # a checkpoint right before shaping starts
        "--save-only-latest-checkpoint",
        "False",
        "--steps-per-eval-all-images",
        str(10 * steps),
        "--pipeline.model.shaping-start-step",
        str(shaping_start),
        "--pipeline.datamanager.surrogate",
        "masks",
        *DEMO_MODEL_ARGS,
        *extra,
    ]
    print("$ ns-train", " ".join(arguments), flush=True)
    # The same entry point as `ns-train`, run with this interpreter (no dependence on PATH or shims).
    subprocess.run([sys.executable, "-m", "nerfstudio.scripts.train", *arguments], check=True)
    return out / "sample_scene" / "jacobinerf" / "demo"


def load_step(run: Path, step: int):
    """The run's pipeline with the checkpoint of ``step`` loaded (ns-eval's loader, then that step's weights)."""
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, _, _ = eval_setup(run / "config.yml", test_mode="test")
    checkpoint = run / "nerfstudio_models" / f"step-{step:09d}.ckpt"
    state = torch.load(checkpoint, map_location="cpu")
    pipeline.load_pipeline(state["pipeline"], state["step"])
    return pipeline


def instance_maps(outputs) -> torch.Tensor:
    from jacobinerf_ns.surrogates import load_label_maps

    cameras = outputs.cameras
    return load_label_maps(outputs.metadata["instances"].filenames, int(cameras.height[0]), int(cameras.width[0]))


def response_figure(pipeline, scene: Path, path: Path) -> None:
    """Rows = clicked entities × held-out views; columns = image, response, selection, ground-truth entity."""
    from nerfstudio.utils.colormaps import apply_colormap

    from jacobinerf_ns.propagation import RESPONSES, Probe, pixel_jacobians, render_responses

    model = pipeline.model
    train_outputs = pipeline.datamanager.train_dataparser_outputs
    eval_outputs = pipeline.datamanager.eval_dataset._dataparser_outputs
    names = [row["name"] for row in json.loads((scene / "classes.json").read_text())["instances"]]
    source, targets = instance_maps(train_outputs)[0], instance_maps(eval_outputs)
    rows = []
    for name in CLICKED_INSTANCES:
        instance = names.index(name)
        where = torch.nonzero(source == instance).float()
        click = where[(where - where.mean(dim=0)).norm(dim=-1).argmin()].long()[None]  # the pixel nearest its centroid
        probe = Probe(sources=pixel_jacobians(model, train_outputs.cameras[0:1], click))
        for view in range(min(2, len(targets))):
            outputs = render_responses(model, eval_outputs.cameras[view : view + 1], probe)
            response = outputs[RESPONSES["3d"]][..., :1].cpu()
            response = response / response.max().clamp_min(1e-12)
            rgb = outputs["rgb"].cpu().clamp(0, 1)
            selected = (response > 0.5).float()
            overlay = rgb * (1 - 0.6 * selected) + 0.6 * selected * torch.tensor([1.0, 0.1, 0.1])
            truth = (targets[view] == instance).float()[..., None].expand(-1, -1, 3)
            rows.append(torch.cat([rgb, apply_colormap(response), overlay, truth], dim=1))
        print(f"  clicked {name} at (y, x) = {tuple(click[0].tolist())} of training view 0")
    figure = (torch.cat(rows, dim=0).numpy() * 255).astype(np.uint8).repeat(4, axis=0).repeat(4, axis=1)
    from PIL import Image

    Image.fromarray(figure).save(path)


def cosine_gap(pipeline) -> dict:
    from jacobinerf_ns.evaluation import jacobian_cosine_gap

    eval_outputs = pipeline.datamanager.eval_dataset._dataparser_outputs
    return jacobian_cosine_gap(pipeline.model, eval_outputs.cameras, list(instance_maps(eval_outputs)[:2]))


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
    run = train(scene, args.out / "runs", args.steps, args.shaping_start, args.device, args.extra)

    before = cosine_gap(load_step(run, args.shaping_start - 1))
    pipeline = load_step(run, args.steps - 1)
    after = cosine_gap(pipeline)
    figure = args.out / "response.png"
    response_figure(pipeline, scene, figure)
    from jacobinerf_ns.evaluation import PropagationProtocol

    pipeline.config.propagation = PropagationProtocol(settings=("sparse",))
    metrics = pipeline.propagation_metrics()

    print("\nMean |cos| of Jacobians in two held-out views (instance pairs):")
    print(
        f"  before shaping (step {args.shaping_start - 1}): same {before['cos_same']:.3f}  different {before['cos_different']:.3f}  gap {before['cos_gap']:+.3f}"
    )
    print(
        f"  after shaping  (step {args.steps - 1}): same {after['cos_same']:.3f}  different {after['cos_different']:.3f}  gap {after['cos_gap']:+.3f}"
    )
    print("Sparse label propagation (one click per class/instance on training view 0, all eval views):")
    for key in sorted(metrics):
        print(f"  {key:32s} {metrics[key]:.3f}")
    print(
        f"\nFigure: {figure}  (rows: clicked entity × held-out view; columns: render, response, selection, ground truth)"
    )
    print(f"Config: {run / 'config.yml'}  (try: ns-eval --load-config {run / 'config.yml'} --output-path eval.json)")


if __name__ == "__main__":
    main(sys.argv[1:])
