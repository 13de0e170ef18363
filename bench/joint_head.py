"""The stronger baseline of the real-room issue on the levers' clicks: a semantic head trained *jointly* with the field
from the clicked pixels (Semantic-NeRF / iLabel: the run continued with the clicks' cross-entropy), beside the same
head fitted on the frozen field.

    python bench/joint_head.py --config RUN/config.yml --bank OUT/bank_stride6.pt [--steps 200] [--seeds 0 1 2]

The bank and the clicks are ``bench/propagation_levers.py``'s (same ``--stride``, same seeds: the same clicks as its
table). For each seed and click count, from the run's checkpoint:

* ``frozen``: the product's semantic-head baseline (``--propagation.method semantic-head``): an MLP
  ``F → 128 → C`` on the colour features, rendered like colour (``Σ_i w_i head(h_i)``), fitted to the clicks'
  classes on the frozen field (``fit_rendered_head``, the protocol's ``head_steps``);
* ``joint``: that head and the field then trained together for ``--steps`` Adam steps (lr 1e-3): each step the run's
  own training batch and losses (photometric, and depth where the scene has it; no shaping) plus the cross-entropy of
  the rendered head on every click ray; the field starts from the checkpoint for every seed and click count.

Scores: semantic mIoU over the bank's labelled pixels of all frames (as the levers), mean ± std over seeds, and the
minutes each fit takes (the bank's render not counted); a markdown table on stdout and in ``<out>/joint_head.md``.
"""

from __future__ import annotations

import argparse
import copy
import runpy
import time
from pathlib import Path
from typing import Dict, List

import torch
from torch import Tensor, nn

LEVERS = runpy.run_path(str(Path(__file__).with_name("propagation_levers.py")))


def bank_rays(pipeline, stride: int):
    """The bank's pixels as one flat ray bundle, in the levers' order (training frames, then eval frames not seen);
    a training frame's rays carry its camera index (the field's appearance embedding in training mode)."""
    from nerfstudio.cameras.rays import RayBundle

    from jacobinerf_ns.propagation.bank import grid_pixels

    fields = {"origins": [], "directions": [], "pixel_area": [], "camera_indices": []}
    for split, outputs, index in LEVERS["bank_frames"](pipeline):
        camera = outputs.cameras[index : index + 1]
        grid = grid_pixels(int(camera.height), int(camera.width), stride)
        rays = camera.generate_rays(camera_indices=0, keep_shape=True)[grid[:, 0], grid[:, 1]]
        for name in ("origins", "directions", "pixel_area"):
            fields[name].append(getattr(rays, name))
        fields["camera_indices"].append(torch.full((len(grid), 1), index if split == "train" else 0))
    return RayBundle(**{name: torch.cat(values) for name, values in fields.items()})


def rendered_logits(model, head: nn.Module, rays) -> Tensor:
    """``Σ_i w_i head(h_i)`` of a flat bundle (train or eval mode as the model is)."""
    from jacobinerf_ns.propagation.heads import composite

    _, inputs = model.get_outputs_with_head_inputs(rays.to(model.device))
    return composite(head, inputs.weights, inputs.features)


@torch.no_grad()
def bank_scores(model, head: nn.Module, rays, classes: int) -> Tensor:
    model.eval()
    chunk = model.config.eval_num_rays_per_chunk
    scores = [rendered_logits(model, head, rays[start : start + chunk]).cpu() for start in range(0, len(rays), chunk)]
    return torch.cat(scores)[:, :classes]


def frozen_head(model, click_rays, targets: Tensor, classes: int, seed: int) -> nn.Module:
    """The product's semantic-head baseline on these clicks: :func:`fit_rendered_head` on the frozen field."""
    from jacobinerf_ns.propagation.heads import fit_rendered_head
    from jacobinerf_ns.propagation.protocol import PropagationProtocol
    from jacobinerf_ns.propagation.rendering import eval_head_inputs

    _, inputs = eval_head_inputs(model, click_rays)
    generator = torch.Generator().manual_seed(seed)
    return fit_rendered_head(inputs.weights, inputs.features, targets, classes, nn.functional.cross_entropy,
                             PropagationProtocol(), generator)  # fmt: skip


def train_jointly(pipeline, head: nn.Module, click_rays, targets: Tensor, steps: int) -> float:
    """``steps`` Adam steps (lr 1e-3) of the field and ``head`` together: the run's own training losses on its
    training batch plus the cross-entropy of the rendered head on every click ray. Returns the last cross-entropy."""
    model = pipeline.model
    optimizer = torch.optim.Adam(list(head.parameters()) + list(model.parameters()), lr=1e-3)
    model.train()
    head.train()
    targets = targets.to(model.device)
    with torch.enable_grad():
        for step in range(steps):
            _, loss_dict, _ = pipeline.get_train_loss_dict(step)
            clicks = nn.functional.cross_entropy(rendered_logits(model, head, click_rays), targets)
            optimizer.zero_grad()
            (sum(loss_dict.values()) + clicks).backward()
            optimizer.step()
    return float(clicks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="a trained run's config.yml")
    parser.add_argument("--bank", type=Path, required=True, help="propagation_levers.py's bank of this run")
    parser.add_argument("--out", type=Path, default=Path("outputs/joint_head"))
    parser.add_argument("--stride", type=int, default=6, help="the bank's stride")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--counts", type=int, nargs="+", default=[30, 60])
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    from jacobinerf_ns.runs import open_run

    levers = LEVERS["Levers"](torch.load(args.bank, map_location="cpu", weights_only=False))
    _, pipeline, _ = open_run(args.config, test_mode="val")
    rays = bank_rays(pipeline, args.stride)
    assert len(rays) == len(levers.truth), "the bank is not this run's at this stride"
    start = copy.deepcopy(pipeline.model.state_dict())
    results: Dict[str, Dict[int, List[float]]] = {}
    minutes: Dict[str, List[float]] = {}

    def record(name: str, count: int, value: float, seconds: float, seed: int) -> None:
        results.setdefault(name, {}).setdefault(count, []).append(value)
        minutes.setdefault(name, []).append(seconds / 60)
        print(f"seed {seed}, {count} clicks, {name}: mIoU {value:.3f} ({seconds:.0f} s to fit)", flush=True)

    for seed in args.seeds:
        clicks = levers.clicks(seed, max(args.counts))
        for count in args.counts:
            chosen = torch.tensor(clicks[:count])
            click_rays, targets = rays[chosen], levers.truth[chosen]
            pipeline.model.load_state_dict(start)
            allowed = torch.full((levers.classes,), float("-inf"))
            allowed[targets.unique()] = 0.0  # only the clicked classes, as the semantic-head method predicts
            began = time.perf_counter()
            head = frozen_head(pipeline.model, click_rays, targets, levers.classes, seed)
            fitted = time.perf_counter()
            record("frozen", count, levers.miou(bank_scores(pipeline.model, head, rays, levers.classes) + allowed),
                   fitted - began, seed)  # fmt: skip
            began = time.perf_counter()
            loss = train_jointly(pipeline, head, click_rays, targets, args.steps)
            fitted = time.perf_counter()
            record("joint", count, levers.miou(bank_scores(pipeline.model, head, rays, levers.classes) + allowed),
                   fitted - began, seed)  # fmt: skip
            print(f"  joint: the clicks' cross-entropy after {args.steps} steps {loss:.3f}", flush=True)
    title = (
        f"Semantic head on the levers' clicks: {args.config}, {args.steps} steps, seeds {args.seeds}; semantic mIoU "
        f"over the bank's labelled pixels (stride {args.stride})."
    )
    LEVERS["write_report"](args.out / "joint_head", title, "head", args.counts, results, ("minutes per fit", minutes))


if __name__ == "__main__":
    main()
