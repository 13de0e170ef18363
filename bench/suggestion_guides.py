"""*Suggest next click* under labels spread over the surfaces: which guide points at the clicks that help most.

    python bench/suggestion_guides.py --bank OUT/bank_stride6.pt [--seeds 0 1 2 3 4] [--batch 8]

The bank and the first clicks are ``bench/propagation_levers.py``'s (one click per class the training frames show);
labels are its ``surface`` method (what ``jacobinerf-label --propagation surface`` scores). Then clicks are added
``--batch`` at a time up to 60, each batch chosen by a guide ``g`` (``(P,)`` in [0, 1], low = the clicks explain the
pixel poorly): in every frame, :func:`~jacobinerf_ns.propagation.labelling.weakest_region` of ``g`` on the bank's grid
(the viewer's rule and window), then the ``--batch`` frames whose suggested box has the lowest mean, one click each;
the ground truth answers with the clicked pixel's class (a void answer is skipped: its pixel is not suggested again
and the next frame's suggestion is taken). Guides:

* ``random``: uniformly random labelled pixels (the levers' sequence);
* ``cosine``: ``max_k |cos(J_p, J_k)|`` over the clicks (the viewer's *Suggest next click* today);
* ``surface``: ``max_c F_c/ΣF · r_c^γ``, the best class score the surface labels give the pixel (low where no
  class both spreads to the pixel and resembles it).

Batches stand in for one click at a time (a spread per click would cost 60 × 18 s per curve here); the viewer
suggests one at a time. Scores: semantic mIoU over the bank's labelled pixels at each batch, mean ± std over seeds;
markdown on stdout and in ``<out>/suggestion_guides.md``.
"""

from __future__ import annotations

import argparse
import runpy
import time
from pathlib import Path
from typing import Dict, List

import torch

from jacobinerf_ns.propagation.bank import suggested_bank_pixels
from jacobinerf_ns.propagation.labelling import SUGGESTION_WINDOW

LEVERS = runpy.run_path(str(Path(__file__).with_name("propagation_levers.py")))
GUIDES = ("random", "cosine", "surface")


def grid_of(levers, bank) -> List[tuple]:
    """``(rows, columns)`` of every frame of the bank (one size for all)."""
    rows, columns = (int(n) for n in bank["grid_shape"])
    return [(rows, columns)] * (int(levers.view.max()) + 1)


def curve(levers, grids, seed: int, guide_name: str, counts: List[int], batch: int) -> Dict[int, float]:
    """mIoU of ``surface`` labels at each of ``counts`` clicks (the first count: the per-class clicks)."""
    clicks = levers.clicks(seed, counts[0])
    sequence = levers.clicks(seed, counts[-1])
    asked = torch.zeros(len(levers.truth), dtype=torch.bool)
    asked[clicks] = True
    values = {}
    while True:
        scores = levers.surface(clicks)
        if len(clicks) in counts:
            values[len(clicks)] = levers.miou(scores)
        if len(clicks) >= counts[-1]:
            return values
        wanted = min(batch, min(n for n in counts if n > len(clicks)) - len(clicks))
        if guide_name == "random":
            clicks += sequence[len(clicks) : len(clicks) + wanted]
            continue
        guide = levers.nearest(clicks).amax(dim=-1) if guide_name == "cosine" else scores.amax(dim=-1)
        added = []
        while len(added) < wanted:
            pending = levers.hit & ~asked
            for index in suggested_bank_pixels(
                guide.clamp(0, 1), pending, grids, SUGGESTION_WINDOW, wanted - len(added)
            ):
                asked[index] = True
                if levers.truth[index] > 0:
                    added.append(index)
        clicks += added


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bank", type=Path, required=True, help="propagation_levers.py's bank of a run")
    parser.add_argument("--out", type=Path, default=Path("outputs/suggestion_guides"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--batch", type=int, default=8, help="clicks chosen per spread")
    parser.add_argument("--counts", type=int, nargs="+", default=[30, 40, 50, 60], help="click counts to score")
    parser.add_argument("--guides", nargs="+", choices=GUIDES, default=list(GUIDES))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    bank = torch.load(args.bank, map_location="cpu", weights_only=False)
    levers = LEVERS["Levers"](bank)
    grids = grid_of(levers, bank)
    first = len(levers.clicks(0, 0))
    counts = sorted({first, *args.counts})
    results: Dict[str, Dict[int, List[float]]] = {}
    minutes: Dict[str, List[float]] = {}
    for seed in args.seeds:
        for guide in args.guides:
            began = time.perf_counter()
            for count, value in curve(levers, grids, seed, guide, counts, args.batch).items():
                results.setdefault(guide, {}).setdefault(count, []).append(value)
                print(f"seed {seed}, {guide}, {count} clicks: mIoU {value:.3f}", flush=True)
            minutes.setdefault(guide, []).append((time.perf_counter() - began) / 60)
    title = (
        f"Suggestion guides under surface labels: {args.bank}, batches of {args.batch}, first clicks one per class "
        f"({first}); semantic mIoU over the bank's labelled pixels, mean ± std over seeds {args.seeds}."
    )
    LEVERS["write_report"](args.out / "suggestion_guides", title, "guide", counts, results,
                           ("minutes per curve", minutes))  # fmt: skip


if __name__ == "__main__":
    main()
