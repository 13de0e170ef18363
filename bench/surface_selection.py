"""One-click selection of a real room's objects, by the Jacobians alone and by spreading over the surfaces.

    python bench/surface_selection.py --bank OUT/bank_stride6.pt [--out OUT] [--rest 0.5 0.7]

The bank is ``bench/propagation_levers.py``'s (every frame at its stride, with the ground-truth instances). Objects:
each instance covering ≥ 0.5% of a training frame's bank pixels, clicked once at the bank pixel farthest from its
border in the training frame where it covers most (where a person clicks inside an object). Its target: the instance's
pixels in every frame. Selections, over the pixels whose ray hits a surface:

* ``cosine``: ``|cos(J_p, J_k)| > 0.8``, what the viewer's *Select entity* selects today;
* ``surface_rest_<t>``: the click seeds the object and every node its Jacobian explains poorly (``|cos| < t``; 0.5 is
  ``jacobinerf-label``'s ``--min-explained``) seeds *the rest*, each side with total mass 1; both spread over the
  product's surface graph (``SurfaceGraph.selection_share``, the graph of ``jacobinerf-label --propagation
  surface``) and a pixel is selected where the object's share of the spread is above ½;
* ``surface_rest_<t>_and_cosine``: the same, only where ``|cos| > 0.5`` too.

With ``--masks`` the graph also has each training frame's masks (``propagation_levers.py``'s ``surface_masks``: the
instances within each frame, what per-image masks give), the spreads run over it, and one more selection is measured:

* ``masks_cover_<c>_shared_<s>``: the masks the click's mask reaches (``SurfaceGraph.mask_selection``: a mask joins
  when more than ``c`` of its nodes that the selection's frames see lie on the selection's surface, and those are
  more than ``s`` of its nodes, and its mean unit Jacobian is at least ``--likeness`` like the clicked mask's;
  ``_like_<l>`` for a value other than the default), what the viewer's *Select entity* selects with masks; a pixel of
  an eval frame (no masks) takes the share of its nearest masked nodes.

Report: mean IoU over the objects and the share above 0.5 (the real-room issue asks for ≥ 0.6 and ≥ 70%); markdown on
stdout and in ``<out>/selection.md``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import runpy
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch

from jacobinerf_ns.propagation.surface_graph import (
    ALPHA,
    MASK_COVER,
    MASK_MIN_LIKENESS,
    MASK_MIN_SHARED,
    SPREAD_STEPS,
)

LEVERS = runpy.run_path(str(Path(__file__).with_name("propagation_levers.py")))
SHAPING_STUDY = runpy.run_path(str(Path(__file__).with_name("shaping_study.py")))
INTERIOR_PIXEL, MIN_OBJECT_SHARE = SHAPING_STUDY["interior_pixel"], SHAPING_STUDY["MIN_OBJECT_SHARE"]
SELECT_COSINE = 0.8


def objects(bank: Dict, hit: torch.Tensor) -> List[Tuple[int, int]]:
    """``(instance, clicked bank index)`` of each instance covering ≥ :data:`MIN_OBJECT_SHARE` of a training frame."""
    rows, columns = bank["grid_shape"].tolist()
    per_frame = rows * columns
    instances = bank["instances"].view(-1, per_frame)[: int(bank["train_frames"])]
    chosen = []
    for instance in sorted(set(instances.unique().tolist()) - {0}):
        shares = (instances == instance).float().mean(dim=1)
        frame = int(shares.argmax())
        if shares[frame] < MIN_OBJECT_SHARE:
            continue
        mask = (instances[frame] == instance).view(rows, columns).numpy()
        y, x = INTERIOR_PIXEL(mask)
        index = frame * per_frame + int(y) * columns + int(x)
        if hit[index]:
            chosen.append((instance, index))
    return chosen


def surface_selection(levers, click: int, rest: float, alpha: float, steps: int, masks: bool) -> torch.Tensor:
    """The entity's share of the spread > ½ (``SurfaceGraph.selection_share`` of the click's node, rest below
    ``rest``, ``steps`` steps at ``alpha``; ``masks``: on the graph that joins the training frames' masks)."""
    nodes, graph = levers.graph(LEVERS["TAU"], LEVERS["SEGMENT_WEIGHT"] if masks else 0.0)
    share = graph.selection_share(int(np.flatnonzero(nodes == click)[0]), rest, alpha, steps, masks)
    return on_bank(levers, nodes, share > 0.5)


def on_bank(levers, nodes: np.ndarray, selected_nodes: np.ndarray) -> torch.Tensor:
    """``(P,)`` bank pixels of the ``nodes`` selected (``selected_nodes`` ``(N,)`` bool); the others unselected."""
    selected = torch.zeros(len(levers.truth), dtype=torch.bool)
    selected[torch.from_numpy(nodes)] = torch.from_numpy(selected_nodes)
    return selected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bank", type=Path, required=True, help="propagation_levers.py's bank of a run")
    parser.add_argument("--out", type=Path, default=Path("outputs/selection"))
    parser.add_argument("--rest", type=float, nargs="+", default=[0.5, 0.7, 0.8], help="|cos| of the rest's seeds")
    parser.add_argument("--alpha", type=float, default=ALPHA, help="the spread's α (the labels' by default)")
    parser.add_argument("--steps", type=int, default=SPREAD_STEPS, help="the spread's steps (the labels' by default)")
    parser.add_argument("--masks", action="store_true", help="the graph with the frames' masks; the masks' selection")
    parser.add_argument("--cover", type=float, nargs="+", default=[MASK_COVER], help="mask selection: seen share")
    parser.add_argument("--min-shared", type=float, nargs="+", default=[MASK_MIN_SHARED], help="mask selection")
    parser.add_argument("--likeness", type=float, nargs="+", default=[MASK_MIN_LIKENESS], help="mask selection")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    bank = torch.load(args.bank, map_location="cpu", weights_only=False)
    levers = LEVERS["Levers"](bank)
    ious: Dict[str, List[float]] = {}
    clicked = objects(bank, levers.hit)
    mask_seconds: List[float] = []
    for instance, click in clicked:
        target = bank["instances"] == instance
        cosines = (levers.unit @ levers.unit[click]).abs()
        selections = {"cosine": levers.hit & (cosines > SELECT_COSINE)}
        for rest in args.rest:
            spread = surface_selection(levers, click, rest, args.alpha, args.steps, args.masks)
            selections[f"surface_rest_{rest:g}"] = spread
            selections[f"surface_rest_{rest:g}_and_cosine"] = spread & (cosines > 0.5)
        if args.masks:
            nodes, graph = levers.graph(LEVERS["TAU"], LEVERS["SEGMENT_WEIGHT"])
            node = int(np.flatnonzero(nodes == click)[0])
            for cover, shared, like in itertools.product(args.cover, args.min_shared, args.likeness):
                began = time.perf_counter()
                share = graph.mask_selection(node, cover=cover, min_shared=shared, min_likeness=like)
                mask_seconds.append(time.perf_counter() - began)
                name = f"masks_cover_{cover:g}_shared_{shared:g}"
                name += "" if like == MASK_MIN_LIKENESS else f"_like_{like:g}"
                selections[name] = on_bank(levers, nodes, share > 0.5)
        for name, selected in selections.items():
            iou = float((selected & target).sum() / (selected | target).sum().clamp_min(1))
            ious.setdefault(name, []).append(iou)
        print(f"instance {instance}: " + ", ".join(f"{n} {v[-1]:.2f}" for n, v in ious.items()), flush=True)
    lines = [
        f"One-click selection: {args.bank}, spread α {args.alpha}, {args.steps} steps"
        f"{', the graph joining the training frames’ masks' if args.masks else ''}; {len(clicked)} objects "
        f"(≥ {MIN_OBJECT_SHARE:.1%} of a training frame), "
        "IoU with the instance over all frames' bank pixels.",
        "",
        "| selection | mean IoU | share of objects above 0.5 |",
        "|---|---|---|",
    ]
    for name, values in ious.items():
        lines.append(f"| {name} | {np.mean(values):.3f} | {np.mean(np.array(values) > 0.5):.2f} |")
    if mask_seconds:
        lines += ["", f"Mask selection: {np.mean(mask_seconds):.2f} s per click (mean, the graph built)."]
    report = "\n".join(lines)
    print(report)
    (args.out / "selection.md").write_text(report + "\n")
    (args.out / "selection.json").write_text(json.dumps({"ious": ious, "objects": clicked}))


if __name__ == "__main__":
    main()
