"""Groups of trained office_0 runs compared on the shaping study's scores, as the ratio of means to the first group.

    python bench/compare_runs.py --group NAME RUN [RUN ...] --group NAME RUN [RUN ...] [--source-views 0 23 47]

``RUN`` is a run folder (with ``config.yml``), e.g. ``OUT/jacobinerf/replica_office0/jacobinerf/bench`` of
``bench/replica_propagation.py --out OUT``. Each run's latest checkpoint is scored as ``bench/shaping_study.py`` scores
its checkpoints (``score_checkpoint``): sparse semantic and instance mIoU over the source views × 3 seeds (the
protocol's clicks) and one-click selection of every object of the source views with ≥ 0.5% of its pixels (the
viewer's rule and default threshold, ``|cos(J_p, J_k)| > 0.8``; ``--relative-selection``: the former rule, response
relative to the click's own > 0.5: mean IoU over objects, and the share with IoU > 0.5), plus PSNR. A group pools
its runs (e.g. training seeds): mean ± std over all draws (runs × views × seeds) and all objects. Scores are kept in
``RUN/scores.json`` and reused.
"""

from __future__ import annotations

import argparse
import json
import runpy
from pathlib import Path
from typing import Dict, List

import numpy as np

STUDY = runpy.run_path(str(Path(__file__).with_name("shaping_study.py")))


def run_scores(run: Path, args) -> Dict[str, object]:
    """The scores of ``run``'s latest checkpoint (computed once, then read from ``RUN/scores.json``)."""
    record = run / "scores.json"
    step = STUDY["checkpoint_steps"](run)[-1]
    if record.exists():
        kept = json.loads(record.read_text())
        if kept["step"] == step and kept["source_views"] == args.source_views and "selection_cosine_iou" in kept:
            return kept
    scores = {**STUDY["score_checkpoint"](run, step, args), "source_views": args.source_views}
    record.write_text(json.dumps(scores))
    return scores


def selection_ious(run: Dict[str, object], relative: bool) -> List[float]:
    """One run's selection IoU per object: the viewer's rule at its default, or the former relative-response rule."""
    from jacobinerf_ns.viewer.settings import ViewerSettings

    if relative:
        return run["selection_iou"]["0.5"]
    return run["selection_cosine_iou"][str(ViewerSettings.threshold)]


def pooled(runs: List[Dict[str, object]], relative: bool) -> Dict[str, np.ndarray]:
    selection = np.concatenate([selection_ious(run, relative) for run in runs])
    return {
        "semantic sparse mIoU": np.concatenate([run["sparse_miou"] for run in runs]),
        "instance sparse mIoU": np.concatenate([run["instance_sparse_miou"] for run in runs]),
        "selection mean IoU": selection,
        "selection share IoU > 0.5": (selection > 0.5).astype(float),
        "PSNR": np.array([run["psnr"] for run in runs]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--group", nargs="+", action="append", required=True, metavar=("NAME", "RUN"))
    parser.add_argument("--source-views", type=int, nargs="+", default=[0, 23, 47], help="training views clicked")
    parser.add_argument("--relative-selection", action="store_true", help="selection by the former relative rule")
    args = parser.parse_args()
    relative = args.relative_selection
    groups = {name: pooled([run_scores(Path(run), args) for run in runs], relative) for name, *runs in args.group}
    reference = next(iter(groups))
    names = list(groups)
    print(f"source views {args.source_views} × seeds {STUDY['SEEDS']}; ratio = mean / mean of {reference}\n")
    print("| figure | " + " | ".join(names) + " | " + " | ".join(f"{name} / {reference}" for name in names[1:]) + " |")
    print("|---|" + "---|" * (2 * len(names) - 1))
    for figure in groups[reference]:
        cells = [mean_and_std(groups[name][figure]) for name in names]
        ratios = [f"{groups[name][figure].mean() / groups[reference][figure].mean():.2f}" for name in names[1:]]
        print(f"| {figure} | " + " | ".join(cells + ratios) + " |")
    draws = {name: len(groups[name]["semantic sparse mIoU"]) for name in names}
    objects = {name: len(groups[name]["selection mean IoU"]) for name in names}
    print(f"\ndraws per group: {draws}; objects per group: {objects}")


def mean_and_std(values: np.ndarray) -> str:
    """``mean ± std`` (sample std), or the mean alone for one value (a group of one run's PSNR)."""
    return f"{values.mean():.3f}" + (f" ± {values.std(ddof=1):.3f}" if len(values) > 1 else "")


if __name__ == "__main__":
    main()
