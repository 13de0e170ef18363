"""Per-class IoU of the demo's sparse propagation, for groups of sample-scene runs: which classes a change moves.

    python bench/per_class_propagation.py --group NAME CONFIG [CONFIG ...] --group NAME CONFIG [CONFIG ...]

``CONFIG`` is a run's ``config.yml`` (e.g. ``OUT/runs/sample_scene/jacobinerf/demo/config.yml`` of
``bash scripts/demo.sh --out OUT``). Each run's latest checkpoint is scored with the demo's protocol (sparse, one click
per class or instance, training views 0, 5, 10 × the protocol's seeds, every eval view), and each label's IoU is
averaged over the draws whose source view shows it. A group pools its runs: per label, mean ± std over runs × draws,
and, per run, the label that the pixels wrongly predicted as it most often truly are, with its share of the pixels
predicted as it (what a label's false positives are). The table (semantic classes, then instances) is printed and
written to ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np


def label_scores(config: Path) -> Tuple[Dict[str, List[float]], Dict[str, Tuple[str, float]]]:
    """On ``config``'s run, with the demo's protocol: ``'{kind}:{name}'`` → the label's IoU in every draw whose source
    view shows it, and → the label its wrongly predicted pixels most often truly are, with that label's share of all
    the pixels predicted as it (confusion summed over the draws)."""
    from jacobinerf_ns import runs
    from jacobinerf_ns.demo import propagation_protocol
    from jacobinerf_ns.metrics import label_ious

    run = config.parent
    pipeline = runs.load_step(run, runs.checkpoint_steps(run)[-1])
    pipeline.config.propagation = propagation_protocol()
    evaluation = pipeline.propagation_evaluation()
    evaluation.score_the_rest()
    tables = json.loads((Path(pipeline.datamanager.config.data) / "classes.json").read_text())
    names = {"": [c["name"] for c in tables["semantic_classes"]], "instance_": [i["name"] for i in tables["instances"]]}
    ious: Dict[str, List[float]] = {}
    summed: Dict[str, np.ndarray] = {}
    for draw in evaluation.draws:
        confusion = draw.confusion["3d"].double().numpy()
        padded = np.zeros((len(names[draw.prefix]),) * 2)
        padded[: len(confusion), : len(confusion)] = confusion
        summed[draw.prefix] = summed.get(draw.prefix, 0) + padded
        for label, iou in label_ious(draw.confusion["3d"], draw.labels).items():
            ious.setdefault(key(draw.prefix, names[draw.prefix][label]), []).append(iou)
    sources = {}
    for prefix, confusion in summed.items():
        for label, name in enumerate(names[prefix]):
            wrong = confusion[:, label].copy()
            wrong[label] = 0
            if confusion[:, label].sum() > 0:
                source = int(wrong.argmax())
                sources[key(prefix, name)] = (names[prefix][source], wrong[source] / confusion[:, label].sum())
    return ious, sources


def key(prefix: str, name: str) -> str:
    return f"{'instance' if prefix else 'class'}:{name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--group", nargs="+", action="append", required=True, metavar=("NAME", "CONFIG"))
    parser.add_argument("--out", type=Path, default=Path("outputs/per_class_propagation.md"))
    args = parser.parse_args()

    pooled: Dict[str, Dict[str, List[float]]] = {}
    confused: Dict[str, Dict[str, List[Tuple[str, float]]]] = {}
    for name, *configs in args.group:
        for config in configs:
            ious, sources = label_scores(Path(config))
            for label, values in ious.items():
                pooled.setdefault(label, {}).setdefault(name, []).extend(values)
            for label, source in sources.items():
                confused.setdefault(label, {}).setdefault(name, []).append(source)
    names = [group[0] for group in args.group]
    lines = [
        "| label | " + " | ".join(f"{n}: IoU | {n}: false positives mostly (share, per run)" for n in names) + " |",
        "|---|" + "---|---|" * len(names),
    ]
    for label, groups in pooled.items():
        cells = []
        for n in names:
            cells.append(f"{np.mean(groups[n]):.3f} ± {np.std(groups[n]):.3f}" if n in groups else "–")
            runs_sources = confused.get(label, {}).get(n, [])
            cells.append(", ".join(f"{source} {share:.2f}" for source, share in runs_sources) or "–")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
