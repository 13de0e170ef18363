"""Labels and points on what is not there: the sample scene under open sky, labelled as a user labels it.

    python bench/open_background.py --out OUT [--steps 800] [--shaping-start 400] [--seed 42] [--clicks 10] \
        [--propagation surface|nearest] [--first-clicks classes|objects] [--closed-room] [--runs depth no_depth] \
        [--train-option OPTION VALUE ...]

1. **Scene**: the sample scene with ``open_background`` (the objects on a floor patch, open sky behind them: depth 0
   and void there), written into ``OUT/scene``; with ``--closed-room``, the sample scene as the demo renders it (a
   closed room: its run without the depth loss, fused at the rendered depth, is the sample scene with its depth
   removed).
2. **Runs**: the demo's recipe (:func:`jacobinerf_ns.runs.train`, ``--steps`` with shaping from ``--shaping-start``,
   the scene's instance masks, machine seed ``--seed``), once with the depth loss (the default: the scene has depth
   maps) and once without (``--pipeline.model.depth-loss-mult 0``: a capture without depth); ``--runs`` picks
   which, ``--train-option`` adds an ``ns-train`` option to each (e.g. ``pipeline.model.off-surface-loss-mult
   0``: without the off-surface loss).
3. **Labels**: ``bench/label_quality.py`` on each run, all frames, ``--clicks`` clicks (one per class the training
   frames show, or with ``--first-clicks objects`` one per object, then random labelled pixels; into
   ``OUT/labels_RUN_PROPAGATION``, ``…_objects`` for objects): ``jacobinerf-label`` with the defaults
   (``--propagation`` as given), with every pixel labelled (``--min-explained 0`` / ``--min-resemblance 0
   --min-class-score 0``), and fused at the rendered depth (``--no-captured-depth``, the only fusion a capture without
   depth has).

Report (``OUT/open_background.md`` and stdout): per run and export, the point cloud's share within ``max(5 cm, two
pixel footprints)`` of the true surface (accuracy), the true surface's share with a point that near (completeness),
the share of sky pixels labelled (background), and semantic mIoU over the frames.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

RUNS = {"depth": [], "no_depth": ["--pipeline.model.depth-loss-mult", "0"]}
"""Run name → its extra ``ns-train`` options."""
FIGURES = (("accuracy", "accuracy"), ("completeness", "completeness"), ("background_labelled", "background labelled"),
           ("miou", "mIoU"))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/open_background"))
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--shaping-start", type=int, default=400)
    parser.add_argument("--seed", type=int, default=42, help="machine seed of the runs")
    parser.add_argument("--clicks", type=int, default=10)
    parser.add_argument("--propagation", default="surface", choices=["surface", "nearest"])
    parser.add_argument("--first-clicks", default="classes", choices=["classes", "objects"],
                        help="label_quality.py's first clicks: one per class or one per object")  # fmt: skip
    parser.add_argument("--closed-room", action="store_true", help="the demo's sample scene instead (no open sky)")
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--train-option", nargs=2, action="append", default=[], metavar=("OPTION", "VALUE"),
                        help="an ns-train option (without its leading --) added to every run")  # fmt: skip
    args = parser.parse_args()

    from jacobinerf_ns import files, runs
    from jacobinerf_ns.sample_scene import make_sample_scene

    scene = make_sample_scene(args.out / "scene", open_background=not args.closed_room)
    title = "Closed room" if args.closed_room else "Open background"
    extra = [part for option, value in args.train_option for part in (f"--{option}", value)]
    lines = [
        f"{title} ({scene}): the demo's recipe ({args.steps} steps, shaping from {args.shaping_start}, machine "
        f"seed {args.seed}{''.join(' ' + part for part in extra)}), {args.clicks} clicks (first one per "
        f"{'class' if args.first_clicks == 'classes' else 'object'}), all frames, --propagation {args.propagation}.",
        "",
        "| run | export | " + " | ".join(name for _, name in FIGURES) + " |",
        "|---|---|" + "---|" * len(FIGURES),
    ]
    for name in args.runs:
        options = [*RUNS[name], *extra]
        run = args.out / "runs" / "open_background" / "jacobinerf" / name
        if not sorted((run / "nerfstudio_models").glob("step-*.ckpt")):
            run = runs.train(scene, args.out / "runs", args.steps, args.shaping_start, "cpu",
                             [*options, "--machine.seed", str(args.seed)], "open_background", name)  # fmt: skip
        labels = args.out / f"labels_{name}_{args.propagation}{'_objects' if args.first_clicks == 'objects' else ''}"
        if not (labels / "label_quality.json").is_file():
            subprocess.run([sys.executable, str(Path(__file__).with_name("label_quality.py")), "--config",
                            str(run / "config.yml"), "--out", str(labels), "--clicks", str(args.clicks), "--frames",
                            "all", "--propagation", args.propagation, "--first-clicks", args.first_clicks],
                           check=True)  # fmt: skip
        for export, figures in json.loads((labels / "label_quality.json").read_text()).items():
            if isinstance(figures, dict) and "accuracy" in figures:
                cells = ("–" if figures[key] is None else f"{figures[key]:.3f}" for key, _ in FIGURES)  # no sky: None
                lines.append(f"| {name} | {export} | " + " | ".join(cells) + " |")
    report = "\n".join(lines)
    print(report)
    files.write_text(args.out / "open_background.md", report + "\n")


if __name__ == "__main__":
    main()
