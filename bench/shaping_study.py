"""Shaping quality per minute on Replica office_0: which contrastive batch, λ and τ reach the best propagation soonest.

    python bench/shaping_study.py [--data ../shared/data/replica_office0] [--out outputs/shaping_study]
                                  [--base-steps 350] [--steps 1100] [--save-steps 220] [--cap-hours 3]

1. Trains **one photometric run** (the reduced CPU recipe of docs/replica_office0_cpu_2026-11-29.md: small field,
   1024 rays/step, ``--base-steps`` photometric steps).
2. Shapes copies of the run with ``jacobinerf-shape`` (mask surrogate), one factor at a time from the paper's options
   (contrastive batch 64, λ 0.01, τ 1, every option given explicitly so that the study does not move with the
   defaults): contrastive batch 64 / 256 / the whole ray batch; λ 0.01 / 0.1 / 1; τ 1 / 0.1; each for
   ``--steps`` shaping steps with a checkpoint every ``--save-steps``; and continues the same run **without
   shaping** for as many steps (the PSNR and mIoU reference).
3. Calibrates the seconds per step of each setting (and of plain photometric steps), each in its own process, the
   fastest of three blocks: the time axis is steps × these seconds, so it does not depend on what else the machine
   ran while the runs trained (run the study when the machine is otherwise idle, at least for this part).
4. Scores every checkpoint on a pixel bank of the eval views (every 3rd row and column; linear responses, which equal
   the 3D ones in this architecture): sparse semantic and instance mIoU as mean ± std over 3 source views × 3 seeds
   (the protocol's clicks), PSNR, and one-click selection of real objects (the viewer's *Select entity*: a click at
   the most interior pixel of each object of the source views with ≥ 0.5% of its pixels, selection = the pixels
   whose ``|cos(J_p, J_k)|`` exceeds a threshold, as the viewer selects, or, as it did before, whose response relative
   to the click's own does; IoU with the object's mask pooled over the eval views; mean over objects and the share
   above IoU 0.5) for several thresholds.
5. Writes ``docs/shaping_study.png`` (mIoU and selection vs shaping minutes, one line per setting) and a markdown table
   to ``<out>/study.md``, and names the setting with the highest mean sparse semantic mIoU after 5 minutes whose PSNR
   stays within 0.3 dB of the reference.

Everything is resumable (runs, checkpoints and scores already in ``--out`` are kept); the study stops scheduling new
work after ``--cap-hours``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

from jacobinerf_ns.runs import checkpoint_steps

PAPER = {"contrastive_batch_size": 64, "mi_loss_mult": 0.01, "temperature": 1.0}
SETTINGS: Dict[str, Dict[str, object]] = {  # name → jacobinerf-shape options (one factor at a time from the paper's)
    "paper (batch 64, λ 0.01, τ 1)": PAPER,
    "batch 256": {**PAPER, "contrastive_batch_size": 256},
    "batch = ray batch (1024)": {**PAPER, "contrastive_batch_size": 1024},
    "λ 0.1": {**PAPER, "mi_loss_mult": 0.1},
    "λ 1": {**PAPER, "mi_loss_mult": 1.0},
    "τ 0.1": {**PAPER, "temperature": 0.1},
}
REFERENCE = "unshaped (continued)"
RAYS = 1024
SEEDS = (0, 1, 2)
BANK_STRIDE = 3
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
"""Selection thresholds on the response relative to the click's own (the viewer's rule before the cosine)."""
COSINE_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
"""Selection thresholds on ``|cos(J_p, J_k)|`` (the viewer's rule; its default is ``ViewerSettings.threshold``)."""
MIN_OBJECT_SHARE = 0.005
PSNR_TOLERANCE_DB = 0.3
CHOICE_MINUTES = 5.0


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def run_dir(out: Path, name: str) -> Path:
    from jacobinerf_ns.runs import run_folder

    return run_folder(out / "runs", "study", slug(name))


def python_command(module: str, *arguments: str, threads: int) -> None:
    print("$", module, " ".join(arguments), flush=True)
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run([sys.executable, "-m", module, *arguments], check=True, env=environment)


def train_base(args) -> Path:
    from jacobinerf_ns.runs import REPLICA_SMALL_FIELD

    base = run_dir(args.out, "base")
    if checkpoint_steps(base) and checkpoint_steps(base)[-1] == args.base_steps - 1:
        return base
    python_command(
        "nerfstudio.scripts.train", "jacobinerf", "--data", str(args.data), "--output-dir", str(args.out / "runs"),
        "--experiment-name", "study", "--timestamp", slug("base"), "--machine.device-type", "cpu",
        "--mixed-precision", "False", "--vis", "tensorboard", "--max-num-iterations", str(args.base_steps),
        "--steps-per-save", str(args.base_steps), "--steps-per-eval-all-images", str(10 * args.base_steps),
        "--pipeline.model.shaping-start-step", "-1", "--pipeline.datamanager.surrogate", "masks",
        "--pipeline.datamanager.train-num-rays-per-batch", str(RAYS), *REPLICA_SMALL_FIELD, threads=args.threads,
    )  # fmt: skip
    return base


def shape_run(base: Path, name: str, steps: int, options: Dict[str, object]):
    """The :class:`~jacobinerf_ns.commands.shape.ShapeRun` of one setting (the reference: shaping off)."""
    from jacobinerf_ns.commands.shape import ShapeRun

    return ShapeRun(load_config=base / "config.yml", steps=steps, timestamp=slug(name), vis="tensorboard",
                    surrogate="masks", shaping=name != REFERENCE, **options)  # type: ignore[arg-type]  # fmt: skip


def seconds_per_step(base: Path, name: str, steps: int) -> float:
    """One setting's seconds per training step: the fastest of three blocks of ``steps`` (after warm-up), so that a
    burst of other work on the machine does not count."""
    import tempfile

    config = shape_run(base, name, 10_000, SETTINGS.get(name, {})).trainer_config()
    config.output_dir = Path(tempfile.mkdtemp())
    config.save_only_latest_checkpoint, config.steps_per_save = True, 10**9
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    first = trainer._start_step
    for step in range(first, first + 3):  # warm-up (the surrogate is built on the first shaping step)
        trainer.train_iteration(step)
    blocks = []
    for block in range(3):
        began = time.perf_counter()
        for step in range(first + 3 + block * steps, first + 3 + (block + 1) * steps):
            trainer.train_iteration(step)
        blocks.append((time.perf_counter() - began) / steps)
    return min(blocks)


def calibrate(base: Path, args) -> Dict[str, float]:
    """Seconds per step of every setting and of photometric steps, each measured in its own process."""
    record = args.out / "calibration.json"
    seconds: Dict[str, float] = json.loads(record.read_text()) if record.exists() else {}
    for name in [*SETTINGS, REFERENCE]:
        if name not in seconds:
            command = [sys.executable, __file__, "--calibrate-one", name, "--out", str(args.out),
                       "--calibration-steps", str(args.calibration_steps)]  # fmt: skip
            environment = {**os.environ, "OMP_NUM_THREADS": str(os.cpu_count())}  # the machine's speed, all cores
            result = subprocess.run(command, check=True, capture_output=True, text=True, env=environment)
            seconds[name] = float(result.stdout.strip().splitlines()[-1])
            print(f"calibration: {name}: {seconds[name]:.3f} s/step", flush=True)
            record.write_text(json.dumps(seconds, indent=2))
    return seconds


def shape(base: Path, name: str, args) -> Path:
    """The setting's run: ``--steps`` shaping steps, a checkpoint every ``--save-steps``."""
    run = run_dir(args.out, name)
    if checkpoint_steps(run) and checkpoint_steps(run)[-1] >= checkpoint_steps(base)[-1] + args.steps:
        return run
    arguments = ["--load-config", str(base / "config.yml"), "--steps", str(args.steps), "--timestamp", slug(name),
                 "--steps-per-save", str(args.save_steps), "--no-save-only-latest-checkpoint", "--vis", "tensorboard",
                 "--surrogate", "masks"]  # fmt: skip
    for option, value in SETTINGS.get(name, {}).items():
        arguments += [f"--{option.replace('_', '-')}", str(value)]
    if name == REFERENCE:
        arguments += ["--no-shaping"]
    python_command("jacobinerf_ns.commands.shape", *arguments, threads=args.threads)
    return run


# ---- scoring a checkpoint ----------------------------------------------------------------------------------------


def interior_pixel(mask: np.ndarray):
    """(y, x) of the pixel of ``mask`` farthest from its border (where a user would click inside an object)."""
    from scipy.ndimage import distance_transform_edt

    distance = distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    return np.unravel_index(int(distance.argmax()), mask.shape)


@torch.no_grad()
def score_checkpoint(run: Path, step: int, args) -> Dict[str, object]:
    from jacobinerf_ns.labels import INSTANCES, SEMANTICS
    from jacobinerf_ns.metrics import confusion_matrix, label_metrics
    from jacobinerf_ns.propagation.bank import build_bank, grid_pixels, linear_scores
    from jacobinerf_ns.propagation.protocol import sample_clicks
    from jacobinerf_ns.propagation.rendering import pixel_jacobians
    from jacobinerf_ns.runs import eval_outputs, label_maps, load_step
    from jacobinerf_ns.visualization import load_rgb

    pipeline = load_step(run, step)
    model = pipeline.model
    train, targets = pipeline.datamanager.train_dataparser_outputs, eval_outputs(pipeline)
    cameras = [targets.cameras[i : i + 1] for i in range(len(targets.cameras))]
    height, width = int(cameras[0].height), int(cameras[0].width)
    grid = grid_pixels(height, width, BANK_STRIDE)
    bank = build_bank(model, cameras, [grid] * len(cameras))
    truth = {kind: label_maps(targets, kind)[:, grid[:, 0], grid[:, 1]].flatten() for kind in (SEMANTICS, INSTANCES)}
    images = torch.stack([load_rgb(path, height, width)[grid[:, 0], grid[:, 1]] for path in targets.image_filenames])
    mse = ((bank.rgb - images.flatten(0, 1)) ** 2).mean()
    result: Dict[str, object] = {"step": step, "psnr": float(-10 * torch.log10(mse))}

    sources = {kind: label_maps(train, kind) for kind in (SEMANTICS, INSTANCES)}
    for kind, prefix in ((SEMANTICS, ""), (INSTANCES, "instance_")):
        draws = []
        for view in args.source_views:
            source = sources[kind][view]
            labels = sorted(set(torch.unique(source).tolist()) - {0})
            valid = torch.isin(truth[kind], torch.tensor(labels))
            for seed in SEEDS:  # the protocol's sparse clicks for (source_view, seed)
                pixels, click_labels = sample_clicks(source, 1, torch.Generator().manual_seed(seed))
                clicks = pixel_jacobians(model, train.cameras[view : view + 1], pixels).flatten(1)
                predicted = torch.tensor(click_labels)[linear_scores(bank.jacobians, clicks).argmax(dim=-1)]
                count = max(int(truth[kind].max()), labels[-1]) + 1
                counts = confusion_matrix(predicted[valid], truth[kind][valid], count)
                draws.append(label_metrics(counts, labels)["miou"])
        result[f"{prefix}sparse_miou"] = draws

    selections = {threshold: [] for threshold in THRESHOLDS}
    cosine_selections = {threshold: [] for threshold in COSINE_THRESHOLDS}
    norms = torch.cat([chunk.float().norm(dim=-1) for chunk in bank.jacobians.split(1 << 16)])
    for view in args.source_views:
        instances = sources[INSTANCES][view]
        for instance in sorted(set(torch.unique(instances).tolist()) - {0}):
            mask = (instances == instance).numpy()
            if mask.mean() < MIN_OBJECT_SHARE:
                continue
            y, x = interior_pixel(mask)
            click = pixel_jacobians(model, train.cameras[view : view + 1], torch.tensor([[y, x]])).flatten(1)
            responses = linear_scores(bank.jacobians, click)[:, 0]
            relative = responses / (click.float() @ click.float().T).abs()[0, 0]
            cosines = responses / (norms * click.float().norm()).clamp_min(1e-12)
            target = truth[INSTANCES] == instance
            for scores, kept in ((relative, selections), (cosines, cosine_selections)):
                for threshold, values in kept.items():
                    selected = scores > threshold
                    union = (selected | target).sum().item()
                    values.append((selected & target).sum().item() / max(union, 1))
    result["selection_iou"] = {str(t): values for t, values in selections.items()}
    result["selection_cosine_iou"] = {str(t): values for t, values in cosine_selections.items()}
    return result


def scores(run: Path, steps: List[int], args) -> List[Dict[str, object]]:
    folder = args.out / "scores" / run.name
    folder.mkdir(parents=True, exist_ok=True)
    results = []
    for step in steps:
        path = folder / f"{step:09d}.json"
        if not path.exists():
            if time.time() > args.deadline:
                print(f"cap reached: {run.name} step {step} not scored", flush=True)
                continue
            path.write_text(json.dumps(score_checkpoint(run, step, args)))
        results.append(json.loads(path.read_text()))
    return results


# ---- the report --------------------------------------------------------------------------------------------------


def at_minutes(curve: List[Dict], minutes: float, key: str) -> float:
    """``key`` (mean over draws/objects) linearly interpolated at ``minutes`` of shaping."""
    times = [point["minutes"] for point in curve]
    values = [float(np.mean(point[key])) if isinstance(point[key], list) else point[key] for point in curve]
    return float(np.interp(minutes, times, values))


def selection_summary(point: Dict, threshold: float) -> Dict[str, float]:
    values = np.array(point["selection_iou"][str(threshold)])
    return {"mean": float(values.mean()), "share": float((values > 0.5).mean())}


def report(curves: Dict[str, List[Dict]], seconds: Dict[str, float], args) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 4, figsize=(20, 4.6))
    panels = (("sparse_miou", "sparse semantic mIoU"), ("instance_sparse_miou", "sparse instance mIoU"))
    for name, curve in curves.items():
        minutes = [point["minutes"] for point in curve]
        style = {"linestyle": "--", "color": "black"} if name == REFERENCE else {}
        for axis, (key, title) in zip(axes[:2], panels):
            means = np.array([np.mean(point[key]) for point in curve])
            stds = np.array([np.std(point[key], ddof=1) for point in curve])
            axis.errorbar(minutes, means, yerr=stds, label=name, capsize=2, marker="o", markersize=3, **style)
            axis.set_title(f"{title} (mean ± std, {len(args.source_views)} views × {len(SEEDS)} seeds)")
        axes[2].plot(minutes, [selection_summary(p, 0.5)["mean"] for p in curve], marker="o", label=name, **style)
        axes[3].plot(minutes, [p["psnr"] for p in curve], marker="o", label=name, **style)
    axes[2].set_title("one-click selection: mean IoU over objects (threshold 0.5)")
    axes[3].set_title("PSNR of the eval views (dB)")
    for axis in axes:
        axis.set_xlabel("shaping time (minutes, 2-core CPU, calibrated)")
        axis.axvline(CHOICE_MINUTES, color="grey", linewidth=0.5)
    axes[0].legend(fontsize=8)
    figure.suptitle("Replica office_0, mask surrogate: propagation quality vs shaping time, one factor at a time")
    figure.tight_layout()
    from jacobinerf_ns import files

    with files.atomic_path(args.figure) as temporary:
        figure.savefig(temporary, dpi=100)

    reference = curves[REFERENCE]
    lines = [
        f"machine: {platform.machine()} CPU, {os.cpu_count()} cores (s/step calibrated on all cores; runs trained with "
        f"{args.threads} thread(s)); base {args.base_steps} photometric "
        f"steps, {RAYS} rays/step, small field; bank stride {BANK_STRIDE}; source views {args.source_views}, "
        f"seeds {SEEDS}",
        "",
        f"| setting | s/step | sem. mIoU @{CHOICE_MINUTES:g} min | inst. mIoU @{CHOICE_MINUTES:g} min | "
        f"PSNR − ref. @{CHOICE_MINUTES:g} min | sem. mIoU @end | selection IoU / share>0.5 @end (t = 0.5) |",
        "|---|---|---|---|---|---|---|",
    ]
    choice, best = None, -1.0
    for name, curve in curves.items():
        semantic = at_minutes(curve, CHOICE_MINUTES, "sparse_miou")
        instance = at_minutes(curve, CHOICE_MINUTES, "instance_sparse_miou")
        gap = at_minutes(curve, CHOICE_MINUTES, "psnr") - at_minutes(reference, CHOICE_MINUTES, "psnr")
        end = curve[-1]
        selection = selection_summary(end, 0.5)
        lines.append(
            f"| {name} | {seconds[name]:.2f} | {semantic:.3f} ± {std_at(curve, CHOICE_MINUTES, 'sparse_miou'):.3f} | "
            f"{instance:.3f} ± {std_at(curve, CHOICE_MINUTES, 'instance_sparse_miou'):.3f} | {gap:+.2f} dB | "
            f"{np.mean(end['sparse_miou']):.3f} ± {np.std(end['sparse_miou'], ddof=1):.3f} | "
            f"{selection['mean']:.2f} / {selection['share']:.2f} |"
        )
        if name != REFERENCE and gap >= -PSNR_TOLERANCE_DB and semantic > best:
            choice, best = name, semantic
    lines += ["", "Selection threshold (mean IoU over objects / share with IoU > 0.5, at the end of each run):", ""]
    lines.append("| setting | " + " | ".join(f"t = {t}" for t in THRESHOLDS) + " |")
    lines.append("|---|" + "---|" * len(THRESHOLDS))
    for name, curve in curves.items():
        cells = [selection_summary(curve[-1], t) for t in THRESHOLDS]
        lines.append(f"| {name} | " + " | ".join(f"{c['mean']:.2f} / {c['share']:.2f}" for c in cells) + " |")
    lines += ["", f"Chosen: **{choice}** (highest mean sparse semantic mIoU after {CHOICE_MINUTES:g} min of shaping "
              f"with PSNR within {PSNR_TOLERANCE_DB} dB of the reference)."]  # fmt: skip
    return "\n".join(lines)


def std_at(curve: List[Dict], minutes: float, key: str) -> float:
    """Std over draws at the checkpoint nearest ``minutes``."""
    nearest = min(curve, key=lambda point: abs(point["minutes"] - minutes))
    return float(np.std(nearest[key], ddof=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/replica_office0"
    )
    parser.add_argument("--out", type=Path, default=Path("outputs/shaping_study"))
    parser.add_argument("--figure", type=Path, default=Path("docs/shaping_study.png"))
    parser.add_argument("--base-steps", type=int, default=350)
    parser.add_argument("--steps", type=int, default=1100, help="shaping steps of each setting (~10 min on 2 cores)")
    parser.add_argument("--save-steps", type=int, default=220, help="a checkpoint every this many steps")
    parser.add_argument("--calibration-steps", type=int, default=20)
    parser.add_argument("--cap-hours", type=float, default=3.0)
    parser.add_argument("--source-views", type=int, nargs="+", default=[0, 23, 47], help="training views clicked")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), help="a subset of the settings")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count(), help="threads of training and scoring (the calibration uses all)"
    )
    parser.add_argument("--calibrate-one", default=None, help=argparse.SUPPRESS)  # one setting, in a subprocess
    args = parser.parse_args()
    if args.calibrate_one is not None:
        print(seconds_per_step(run_dir(args.out, "base"), args.calibrate_one, args.calibration_steps))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    args.deadline = time.time() + args.cap_hours * 3600

    base = train_base(args)
    base_step = checkpoint_steps(base)[-1]
    names = [*args.settings, REFERENCE]
    for name in names:
        if time.time() > args.deadline:
            print(f"cap reached: {name} not run", flush=True)
            continue
        shape(base, name, args)
    start = scores(base, [base_step], args)[0]
    points = {name: scores(run_dir(args.out, name), checkpoint_steps(run_dir(args.out, name)), args) for name in names}
    seconds = calibrate(base, args)  # last: on an otherwise idle machine (rerun the script to redo a missing part)
    curves = {
        name: [{**start, "minutes": 0.0}]
        + [{**point, "minutes": (point["step"] - base_step) * seconds[name] / 60} for point in points[name]]
        for name in names
        if points[name]
    }
    text = report(curves, seconds, args)
    (args.out / "study.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
