"""Label propagation on Replica office_0 (../shared/data/replica_office0): JacobiNeRF vs the paper's baselines.

    python bench/replica_propagation.py [--data ../shared/data/replica_office0] [--steps 30000] [--shaping-start 20000]
                                        [--surrogate masks|dino] [--dino-weights PATH] [--device cuda]
                                        [--masks-dir DIR] [--masks-scope auto|image|scene] [--contrastive-images N]
                                        [--seed N]
                                        [--out outputs/bench_replica] [--reuse] [--train-only] [--shaped-only]
                                        [--no-depth | --depth-loss-mult W]

Trains two runs with ``ns-train jacobinerf`` (the README split: eval = frames with index % 8 == 4): JacobiNeRF, and
the same field unshaped (``--pipeline.model.shaping-start-step -1``). Every row of the table is then evaluated by
``jacobinerf-eval`` with the paper's protocol (source = training view 0, seeded clicks, all eval views pooled) on
the same clicks: JacobiNeRF and the unshaped NeRF propagate with Jacobian responses; the Semantic-NeRF-style head,
DINO-2D and the DINO-NeRF-style field are ``--propagation.method`` options evaluated on the unshaped run (the DINO
rows need ``--dino-weights``; without them they are listed as not run). Prints one table in the shape of the
paper's Tables 1–2 (semantic and instance; sparse and dense; 2D and 3D) with PSNR, wall time and peak memory (RSS of
the process tree), all from one invocation; ``--reuse`` keeps runs and evaluations done by an earlier invocation (their
recorded times and memory are reported). The surrogate used for shaping is named in the table. ``--masks-dir``,
``--masks-scope`` and ``--contrastive-images`` are the datamanager's options for the masks surrogate (e.g. masks
renumbered per image by ``bench/renumber_masks.py``), ``--seed`` the training seed (``--machine.seed``); ``--shaped-
only`` trains the JacobiNeRF run alone (with ``--train-only``: for ``bench/compare_runs.py``). office_0 has depth maps,
so the runs train with the depth loss unless ``--no-depth`` (``--pipeline.model.depth-loss-mult 0``);
``--depth-loss-mult`` gives it another weight (give each its own ``--out``: ``--reuse`` does not tell them apart).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import psutil

from jacobinerf_ns.runs import REPLICA_SMALL_FIELD

ROWS = [  # (table row, trained run, propagation method)
    ("JacobiNeRF", "jacobinerf", "jacobian"),
    ("NeRF (unshaped)", "unshaped", "jacobian"),
    ("Semantic-NeRF-style head", "unshaped", "semantic-head"),
    ("DINO-2D", "unshaped", "dino-2d"),
    ("DINO-NeRF-style field", "unshaped", "dino-field"),
]
NEEDS_DINO = {"dino-2d", "dino-field"}


def run_tracked(command: List[str]) -> Tuple[float, float]:
    """Runs ``command``; returns (wall seconds, peak RSS MiB of its process tree, sampled every 0.2 s)."""
    print("$", " ".join(command), flush=True)
    start = time.perf_counter()
    process = subprocess.Popen(command)
    root = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        try:
            tree = [root] + root.children(recursive=True)
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.2)
    if process.returncode != 0:
        raise SystemExit(f"command failed ({process.returncode}): {' '.join(command)}")
    return time.perf_counter() - start, peak / 2**20


def config_path(args, run: str) -> Path:
    return args.out / run / "replica_office0" / "jacobinerf" / "bench" / "config.yml"


def train(run: str, args, shaping_start: int) -> Dict:
    """``ns-train`` one run (or, with ``--reuse``, the record of an earlier one): wall seconds and peak RSS."""
    record = args.out / run / "train.json"
    if args.reuse and record.exists() and config_path(args, run).exists():
        print(f"reusing {config_path(args, run)}")
        return json.loads(record.read_text())
    command = [
        shutil.which("ns-train") or "ns-train",
        "jacobinerf",
        "--data",
        str(args.data),
        "--output-dir",
        str(args.out / run),
        "--experiment-name",
        "replica_office0",
        "--timestamp",
        "bench",
        "--machine.device-type",
        args.device,
        "--vis",
        "tensorboard",
        "--max-num-iterations",
        str(args.steps),
        "--steps-per-eval-all-images",
        str(10 * args.steps),
        "--pipeline.model.shaping-start-step",
        str(shaping_start),
        "--pipeline.datamanager.surrogate",
        args.surrogate,
        "--pipeline.datamanager.train-num-rays-per-batch",
        str(args.rays),
        *(["--pipeline.datamanager.dino-weights", str(args.dino_weights)] if args.dino_weights else []),
        *(["--pipeline.datamanager.masks-dir", str(args.masks_dir)] if args.masks_dir else []),
        "--pipeline.datamanager.masks-scope",
        args.masks_scope,
        *(
            ()
            if args.contrastive_images is None
            else ("--pipeline.datamanager.contrastive-images", str(args.contrastive_images))
        ),
        "--machine.seed",
        str(args.seed),
        *(REPLICA_SMALL_FIELD if args.small_field else []),
        *(["--pipeline.model.depth-loss-mult", "0"] if args.no_depth else []),
        *([] if args.depth_loss_mult is None else ["--pipeline.model.depth-loss-mult", str(args.depth_loss_mult)]),
        *(part for name, value in args.model_option for part in (f"--pipeline.model.{name}", value)),
        *(["--mixed-precision", "False"] if args.device == "cpu" else []),
    ]
    wall, peak = run_tracked(command)
    result = {"train_s": wall, "peak_mib": peak}
    record.write_text(json.dumps(result))
    return result


def evaluate(run: str, method: str, args, photometric: bool) -> Dict:
    """``jacobinerf-eval`` of one run with one propagation method: its results and wall seconds."""
    output = args.out / run / f"eval_{method}.json"
    if args.reuse and output.exists() and "bench" in json.loads(output.read_text()):
        print(f"reusing {output}")
        written = json.loads(output.read_text())
        return {"results": written["results"], **written["bench"]}
    command = [
        shutil.which("jacobinerf-eval") or "jacobinerf-eval",
        "--load-config",
        str(config_path(args, run)),
        "--output-path",
        str(output),
        "--propagation.method",
        method,
        "--propagation.settings",
        *args.settings,
        *(["--propagation.dino-weights", str(args.dino_weights)] if args.dino_weights else []),
        *([] if photometric else ["--no-photometric"]),
    ]
    wall, peak = run_tracked(command)
    written = json.loads(output.read_text())
    written["bench"] = {"eval_s": wall, "eval_peak_mib": peak}
    output.write_text(json.dumps(written, indent=2))
    return {"results": written["results"], **written["bench"]}


def table(rows: Dict[str, Optional[Dict]], trained: Dict[str, Dict], surrogate: str) -> str:
    lines = []
    for prefix, title in (("", "Semantic"), ("instance_", "Instance")):
        lines.append(f"\n{title} label propagation (Replica office_0; JacobiNeRF shaping surrogate: {surrogate})\n")
        lines.append("| method | setting | mIoU | class-avg acc | total acc |")
        lines.append("|---|---|---|---|---|")
        for name, row in rows.items():
            if row is None:
                lines.append(f"| {name} | not run: no DINO weights (`--dino-weights`) | | | |")
                continue
            r = row["results"]
            for setting in ("sparse", "dense"):
                for space in ("2d", "3d"):
                    key = f"{prefix}{setting}_{space}"
                    if f"{key}_miou" in r:
                        lines.append(
                            f"| {name} | {setting} {space.upper()} | {r[f'{key}_miou']:.3f} | "
                            f"{r[f'{key}_class_avg_acc']:.3f} | {r[f'{key}_total_acc']:.3f} |"
                        )
    lines.append("\n| trained run | PSNR | SSIM | train wall time | peak memory (RSS, training) |")
    lines.append("|---|---|---|---|---|")
    for run, record in trained.items():
        r = record["photometric"]
        lines.append(
            f"| {run} | {r['psnr']:.2f} | {r['ssim']:.3f} | {record['train_s'] / 60:.1f} min | "
            f"{record['peak_mib']:.0f} MiB |"
        )
    lines.append("\n| method | propagation wall time (jacobinerf-eval) | peak memory (RSS, eval) |")
    lines.append("|---|---|---|")
    for name, row in rows.items():
        if row is not None:
            lines.append(f"| {name} | {row['eval_s'] / 60:.1f} min | {row['eval_peak_mib']:.0f} MiB |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/replica_office0"
    )
    parser.add_argument("--out", type=Path, default=Path("outputs/bench_replica"))
    parser.add_argument("--steps", type=int, default=30000)
    parser.add_argument("--shaping-start", type=int, default=20000)
    parser.add_argument("--rays", type=int, default=4096)
    parser.add_argument("--surrogate", default="dino", choices=["dino", "masks", "features"])
    parser.add_argument("--dino-weights", type=Path, default=None)
    parser.add_argument("--masks-dir", type=Path, default=None, help="masks surrogate: masks from files")
    parser.add_argument("--masks-scope", default="auto", choices=["auto", "image", "scene"])
    parser.add_argument("--contrastive-images", type=int, default=None, help="images per batch")
    parser.add_argument("--seed", type=int, default=42, help="training seed (nerfstudio's default: 42)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--small-field", action="store_true")
    parser.add_argument("--settings", nargs="+", default=["sparse", "dense"], help="propagation settings evaluated")
    parser.add_argument("--reuse", action="store_true", help="keep runs and evaluations already done in --out")
    parser.add_argument("--train-only", action="store_true", help="train the runs, evaluate nothing")
    parser.add_argument("--no-depth", action="store_true", help="train without the depth loss (depth-loss-mult 0)")
    parser.add_argument("--depth-loss-mult", type=float, help="the depth loss's weight (default: the model's)")
    parser.add_argument(
        "--model-option",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="another --pipeline.model.NAME VALUE of ns-train (repeatable), e.g. distortion-loss-mult-with-depth 0.002",
    )
    parser.add_argument("--shaped-only", action="store_true", help="train the JacobiNeRF run only (with --train-only)")
    args = parser.parse_args()
    if args.no_depth and args.depth_loss_mult is not None:
        parser.error("--no-depth is --depth-loss-mult 0: give one of them")
    if args.shaped_only and not args.train_only:
        parser.error("--shaped-only needs --train-only: the table compares the shaped run with the unshaped one")

    trained = {"jacobinerf": train("jacobinerf", args, args.shaping_start)}
    if not args.shaped_only:
        trained["unshaped"] = train("unshaped", args, -1)
    if args.train_only:
        return
    rows: Dict[str, Optional[Dict]] = {}
    for name, run, method in ROWS:
        if method in NEEDS_DINO and args.dino_weights is None:
            rows[name] = None
            continue
        photometric = "photometric" not in trained[run]  # PSNR/SSIM once per trained run
        rows[name] = evaluate(run, method, args, photometric)
        if photometric:
            trained[run]["photometric"] = rows[name]["results"]
    weight = "off" if args.no_depth else "on" if args.depth_loss_mult is None else f"×{args.depth_loss_mult:g}"
    header = (
        f"machine: {platform.machine()} {args.device} ({platform.node()}); {args.steps} steps, shaping from "
        f"{args.shaping_start}, {args.rays} rays/step{', small field' if args.small_field else ''}; "
        f"depth loss {weight}; "
        f"{''.join(f'{name} {value}; ' for name, value in args.model_option)}"
        f"settings {' '.join(args.settings)}"
    )
    print(header)
    print(table(rows, trained, args.surrogate))


if __name__ == "__main__":
    main()
