"""Label propagation on Replica office_0 (../shared/data/replica_office0): JacobiNeRF vs the unshaped NeRF.

    python bench/replica_propagation.py [--data ../shared/data/replica_office0] [--steps 30000] [--shaping-start 20000]
                                        [--surrogate masks|dino] [--device cuda] [--out outputs/bench_replica]

Trains each method with ``ns-train`` (the README split: eval = frames with index % 8 == 4), evaluates it with
``ns-eval`` (the paper's protocol: source = training view 0, seeded clicks, all eval views pooled), and prints one
table in the shape of the paper's Tables 1–2 (semantic and instance; sparse and dense; 2D and 3D) with PSNR,
wall time and peak memory (RSS of the training process tree, or CUDA max allocated as logged), all from one run.
The surrogate used for shaping is named in the table. Use ``--small-field`` and fewer steps on a CPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Tuple

import psutil

SMALL_FIELD = [
    "--pipeline.model.log2-hashmap-size", "17",
    "--pipeline.model.num-levels", "12",
    "--pipeline.model.max-res", "512",
    "--pipeline.model.num-nerf-samples-per-ray", "32",
    "--pipeline.model.num-proposal-samples-per-ray", "96", "48",
]


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


def train_and_evaluate(name: str, args, shaping_start: int) -> Dict:
    out = args.out / name
    command = [
        shutil.which("ns-train") or "ns-train", "jacobinerf", "--data", str(args.data), "--output-dir", str(out),
        "--experiment-name", "replica_office0", "--timestamp", "bench", "--machine.device-type", args.device,
        "--vis", "tensorboard", "--max-num-iterations", str(args.steps), "--steps-per-eval-all-images", str(10 * args.steps),
        "--pipeline.model.shaping-start-step", str(shaping_start), "--pipeline.datamanager.surrogate", args.surrogate,
        "--pipeline.datamanager.train-num-rays-per-batch", str(args.rays),
        *(["--pipeline.datamanager.dino-weights", str(args.dino_weights)] if args.dino_weights else []),
        *(SMALL_FIELD if args.small_field else []),
        "--pipeline.propagation.settings", *args.settings,
        *(["--mixed-precision", "False"] if args.device == "cpu" else []),
    ]
    wall, peak = run_tracked(command)
    config = out / "replica_office0" / "jacobinerf" / "bench" / "config.yml"
    eval_json = out / "eval.json"
    eval_wall, _ = run_tracked([shutil.which("ns-eval") or "ns-eval", "--load-config", str(config), "--output-path", str(eval_json)])
    results = json.loads(eval_json.read_text())["results"]
    return {"results": results, "train_s": wall, "eval_s": eval_wall, "peak_mib": peak}


def table(rows: Dict[str, Dict], surrogate: str) -> str:
    lines = []
    for prefix, title in (("", "Semantic"), ("instance_", "Instance")):
        lines.append(f"\n{title} label propagation (Replica office_0; shaping surrogate: {surrogate})\n")
        lines.append("| method | setting | mIoU | class-avg acc | total acc |")
        lines.append("|---|---|---|---|---|")
        for name, row in rows.items():
            for setting in ("sparse", "dense"):
                for space in ("2d", "3d"):
                    key = f"{prefix}{setting}_{space}"
                    if f"{key}_miou" in row["results"]:
                        r = row["results"]
                        lines.append(f"| {name} | {setting} {space.upper()} | {r[f'{key}_miou']:.3f} | {r[f'{key}_class_avg_acc']:.3f} | {r[f'{key}_total_acc']:.3f} |")
    lines.append("\n| method | PSNR | SSIM | train wall time | eval wall time | peak memory (RSS) |")
    lines.append("|---|---|---|---|---|---|")
    for name, row in rows.items():
        r = row["results"]
        lines.append(f"| {name} | {r['psnr']:.2f} | {r['ssim']:.3f} | {row['train_s'] / 60:.1f} min | {row['eval_s'] / 60:.1f} min | {row['peak_mib']:.0f} MiB |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/replica_office0")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench_replica"))
    parser.add_argument("--steps", type=int, default=30000)
    parser.add_argument("--shaping-start", type=int, default=20000)
    parser.add_argument("--rays", type=int, default=4096)
    parser.add_argument("--surrogate", default="dino", choices=["dino", "masks", "features"])
    parser.add_argument("--dino-weights", type=Path, default=None)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--small-field", action="store_true")
    parser.add_argument("--settings", nargs="+", default=["sparse", "dense"], help="propagation settings ns-eval computes")
    args = parser.parse_args()

    rows = {
        "JacobiNeRF": train_and_evaluate("jacobinerf", args, args.shaping_start),
        "NeRF (unshaped)": train_and_evaluate("unshaped", args, -1),
    }
    header = (
        f"machine: {platform.machine()} {args.device} ({platform.node()}); {args.steps} steps, shaping from "
        f"{args.shaping_start}, {args.rays} rays/step{', small field' if args.small_field else ''}; settings {' '.join(args.settings)}"
    )
    print(header)
    print(table(rows, args.surrogate))


if __name__ == "__main__":
    main()
