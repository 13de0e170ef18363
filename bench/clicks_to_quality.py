"""Clicks-to-quality: how many clicks a person needs to label a whole scene, clicking at random or where *Suggest next
click* points.

    python bench/clicks_to_quality.py     # sample scene: trains both runs (~8 min each on 2 cores), then ~4 CPU-minutes
    python bench/clicks_to_quality.py --data ../shared/data/replica_office0 --out outputs/clicks_to_quality_office0 \\
        --shaped-config SHAPED/config.yml --unshaped-config UNSHAPED/config.yml --stride 6

1. **Runs.** ``--shaped-config`` / ``--unshaped-config`` (their latest checkpoints); a missing one is trained with
   :func:`jacobinerf_ns.runs.train` on ``--data`` (default: the sample scene, written into ``--out``): the demo's
   recipe, ``--steps`` with shaping from ``--shaping-start`` (mask surrogate); the unshaped run is the same with
   ``--pipeline.model.shaping-start-step -1``. Options after ``--`` go to ``ns-train``.
2. **Banks.** Per run, every ``--stride``-th row and column of **every frame** (training and eval): ray Jacobians
   (float16), opacity and the ground-truth labels (used only to score and to answer clicks); the unshaped run's bank
   also keeps the head inputs (every sample's weight and colour features, float16: pixels × samples × 129 × 2 bytes,
   ~600 MB for the sample scene at stride 1, ~1 GB for office_0 at stride 6). A click's responses are a matmul with
   the bank (linear responses; 2D = 3D in this architecture, :mod:`jacobinerf_ns.propagation.bank`).
3. **Clicks**, only on pixels whose ray hits a surface of the run (``jacobinerf-label`` skips the others). Per seed,
   first clicks by ``--first-clicks``: ``classes`` (default), what a person labelling a room does — one click per
   class the training frames show, at a random pixel of a random training frame showing it (``propagation_levers.py``'s
   rule, :func:`per_class_clicks`); ``source-view`` (the figures before that rule): one uniformly random pixel per
   class of training view ``--source-view`` (:func:`~jacobinerf_ns.propagation.protocol.sample_clicks` on the bank's
   grid of that view). Then one click at a time up to ``--max-clicks`` in total: *random* = a uniformly random
   labelled (non-void) bank pixel of any frame;
   *suggested* = the bank pixel *Suggest next click* points at
   (:func:`~jacobinerf_ns.propagation.bank.suggested_bank_pixel`: ``labelling.weakest_region`` of
   ``labelling.explained`` — the best cosine ``max_k cos(J_p, J_k)`` to a click — on each frame's grid, the frame of
   lowest pooled value; a box of 5 bank pixels = 5 × stride image pixels): where no click's entity resembles the
   pixel. The oracle answers with the ground-truth class of the clicked pixel; it has no answer on void pixels, so it
   presses *Skip suggestion* there (counted in the table): the pixel's Jacobian then counts as explaining its
   look-alikes but labels nothing (``Suggestions.dismiss``), and the next suggestion is taken. A pixel is suggested
   at most once.
   *margin* runs the same search on the confidence margin instead (the guide the viewer does *not* use: measured
   here, it keeps pointing at an entity whose Jacobians stay mixed with another's).
4. **Scores.** After every click: class scores = ``labelling.class_scores`` (max over a class's clicks) of the
   responses to ``labelling.unit_perturbations`` as in ``jacobinerf-label`` (*random_paper*: random clicks perturbing
   along ``σ J_k``, the paper's length, for comparison), labels = the best class where the ray hits a surface
   (``jacobinerf-label``'s ids), mIoU over the bank (all frames) averaging the classes present in its ground truth
   (:mod:`jacobinerf_ns.metrics`). The Semantic-NeRF-style head
   (:func:`~jacobinerf_ns.propagation.heads.fit_rendered_head`: MLP on the unshaped run's colour features, rendered
   with the weights, cross-entropy on the clicks) is fitted to the random clicks and to the clicks suggested on the
   unshaped run at ``HEAD_POINTS`` total clicks only.
5. **Report.** ``docs/clicks_to_quality_<scene>.png`` (mIoU vs clicks, mean ± std over seeds) and
   ``<out>/table_<kind>.md``: clicks to reach 0.5 and 0.7 mIoU, mIoU at 10/30/60 clicks, suggested − random.

Resumable: banks and every curve (per run, seed and strategy) are files in ``--out``, reused when what made them
(checkpoint, stride, kind, seed, clicks) is unchanged.
"""

from __future__ import annotations

import argparse
import json
import runpy
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

LEVERS = runpy.run_path(str(Path(__file__).with_name("propagation_levers.py")))

RUNS = ("shaped", "unshaped")
STRATEGIES = {
    "suggested": "clicks where 'Suggest next click' points (no click explains the pixel; void ones skipped)",
    "random": "random labelled pixels",
    "margin": "clicks where the confidence margin is lowest (not used by the viewer)",
    "random_paper": "random labelled pixels, perturbed along σ J_k (the paper's length; labelling uses unit ones)",
}
"""How the next click is chosen (:func:`jacobian_curve`), and how the figure names it."""
PAPER_LENGTH = "random_paper"
"""The one strategy whose clicks perturb along ``σ J_k``; the others along ``labelling.unit_perturbations``."""
HEAD_STRATEGIES = ("suggested", "random")
LINESTYLES = {"suggested": "-", "random": "--", "margin": ":", "random_paper": "-."}
HEAD_RUN = "unshaped"
HEAD_POINTS = (1, 2, 4, 8, 10, 16, 30, 32, 60)
"""Total clicks at which the head is fitted (those at or above the first clicks, and the last)."""
REPORT_POINTS = (10, 30, 60)
THRESHOLDS = (0.5, 0.7)
KINDS = ("semantics", "instances")
FIRST_CLICKS = ("classes", "source-view")


# ---- runs and banks -----------------------------------------------------------------------------------------------


def run_configs(args) -> Dict[str, Path]:
    """``config.yml`` of the shaped and the unshaped run: given, or trained into ``--out/runs``."""
    from jacobinerf_ns.runs import checkpoint_path, run_folder, train

    given = {"shaped": args.shaped_config, "unshaped": args.unshaped_config}
    configs = {}
    for name in RUNS:
        if given[name] is not None:
            configs[name] = given[name]
            continue
        run = run_folder(args.out / "runs", "clicks_to_quality", name)
        if not checkpoint_path(run, args.steps - 1).exists():
            never = ["--pipeline.model.shaping-start-step", "-1"] if name == "unshaped" else []
            train(args.data, args.out / "runs", args.steps, args.shaping_start, "cpu", [*never, *args.extra],
                  "clicks_to_quality", name)  # fmt: skip
        configs[name] = run / "config.yml"
    return configs


def latest_checkpoint(config: Path) -> Path:
    """The checkpoint ``ns-eval``'s loader takes: the highest step of the run."""
    steps = sorted((config.parent / "nerfstudio_models").glob("step-*.ckpt"))
    if not steps:
        raise SystemExit(f"{config}: the run has no checkpoint (nerfstudio_models/step-*.ckpt).")
    return steps[-1]


def bank(name: str, config: Path, args) -> Dict:
    """The run's bank over every frame (cached in ``--out/banks``): Jacobians, opacity, labels, grids, head inputs."""
    from jacobinerf_ns import files

    head_inputs = name == HEAD_RUN
    identity = {"checkpoint": str(latest_checkpoint(config).resolve()), "stride": args.stride,
                "head_inputs": head_inputs}  # fmt: skip
    path = args.out / "banks" / f"{name}_stride{args.stride}.pt"
    if path.exists():
        cached = torch.load(path, map_location="cpu", weights_only=False)
        if cached["identity"] == identity:
            return cached
    began = time.perf_counter()
    built = build(config, args.stride, head_inputs)
    built["identity"] = identity
    files.torch_save(path, built)
    pixels = len(built["jacobians"])
    print(f"{name}: bank of {pixels} pixels of {len(built['grids'])} frames in {time.perf_counter() - began:.0f} s",
          flush=True)  # fmt: skip
    return built


@torch.no_grad()
def build(config: Path, stride: int, head_inputs: bool) -> Dict:
    """Every ``stride``-th pixel of every frame (training then eval; a frame listed in both counts once)."""
    from jacobinerf_ns.propagation.bank import build_bank, grid_pixels
    from jacobinerf_ns.runs import eval_outputs, label_maps, open_run

    _, pipeline, _ = open_run(config)
    splits = {"train": pipeline.datamanager.train_dataparser_outputs, "eval": eval_outputs(pipeline)}
    cameras, pixels, grids, names, labels = [], [], [], [], {kind: [] for kind in KINDS}
    seen = set()
    for split, outputs in splits.items():
        maps = {kind: label_maps(outputs, kind) for kind in KINDS if kind in outputs.metadata}
        for index, image in enumerate(outputs.image_filenames):
            if Path(image).resolve() in seen:
                continue
            seen.add(Path(image).resolve())
            camera = outputs.cameras[index : index + 1]
            height, width = int(camera.height), int(camera.width)
            grid = grid_pixels(height, width, stride)
            cameras.append(camera)
            pixels.append(grid)
            grids.append((len(range(stride // 2, height, stride)), len(range(stride // 2, width, stride))))
            names.append(f"{split}/{Path(image).name}")
            for kind, label in maps.items():
                labels[kind].append(label[index][grid[:, 0], grid[:, 1]])
    built = build_bank(pipeline.model, cameras, pixels, head_inputs)
    return {
        "jacobians": built.jacobians,
        "accumulation": built.accumulation,
        "head_weights": built.head_weights,
        "head_features": built.head_features,
        "labels": {kind: torch.cat(values).long() for kind, values in labels.items() if values},
        "grids": grids,
        "frames": names,
        "train_frames": len(splits["train"].image_filenames),
    }


# ---- clicks and curves --------------------------------------------------------------------------------------------


def frame_start(grids: Sequence, frame: int) -> int:
    return sum(rows * columns for rows, columns in grids[:frame])


def first_clicks(truth: Tensor, data: Dict, seed: int, args) -> List[int]:
    """The first clicks by ``--first-clicks`` on ``truth`` (0 where a pixel cannot be clicked)."""
    grids = data["grids"]
    if args.first_clicks == "classes":
        view = torch.repeat_interleave(torch.arange(len(grids)), torch.tensor([rows * cols for rows, cols in grids]))
        return LEVERS["per_class_clicks"](truth, view, data["train_frames"], np.random.default_rng(seed))
    return source_view_clicks(truth, grids, args.source_view, seed)


def source_view_clicks(truth: Tensor, grids: Sequence, view: int, seed: int) -> List[int]:
    """One uniformly random bank pixel per class present in training view ``view`` (the protocol's sparse clicks)."""
    from jacobinerf_ns.propagation.protocol import sample_clicks

    start, (rows, columns) = frame_start(grids, view), grids[view]
    labels = truth[start : start + rows * columns].view(rows, columns)
    pixels, _ = sample_clicks(labels, 1, torch.Generator().manual_seed(seed))
    return [start + y * columns + x for y, x in pixels.tolist()]


def random_clicks(truth: Tensor, first: List[int], count: int, seed: int) -> List[int]:
    """``first``, then uniformly random labelled bank pixels (each once) up to ``count`` clicks."""
    generator = torch.Generator().manual_seed(1_000_003 + seed)
    labelled = torch.nonzero(truth > 0).flatten()
    sequence = list(first)
    for index in labelled[torch.randperm(len(labelled), generator=generator)].tolist():
        if len(sequence) >= count:
            break
        if index not in sequence:
            sequence.append(index)
    return sequence


def miou(predicted: Tensor, truth: Tensor) -> float:
    """mIoU over the classes present in ``truth`` (void pixels not scored)."""
    from jacobinerf_ns.metrics import confusion_matrix, label_metrics

    valid = truth > 0
    count = int(max(truth.max(), predicted.max())) + 1
    counts = confusion_matrix(predicted[valid], truth[valid], count)
    return label_metrics(counts, sorted(set(truth[valid].tolist())))["miou"]


@torch.no_grad()
def jacobian_curve(data: Dict, truth: Tensor, first: List[int], count: int, strategy: str, sequence: List[int]) -> Dict:
    """mIoU after each click from ``len(first)`` to ``count`` clicks, perturbing along each click's
    ``labelling.unit_perturbations`` as labelling does (``random_paper``: along ``σ J_k``). ``random`` /
    ``random_paper``: the clicks of ``sequence``; ``suggested``:
    :func:`~jacobinerf_ns.propagation.bank.suggested_bank_pixel` on ``labelling.explained`` (the best cosine
    ``max_k ⟨J_p, J_k⟩ / (|J_p| |J_k|)``, the viewer's guide); ``margin``: the same search on the confidence margin."""
    from jacobinerf_ns.propagation.bank import linear_scores, suggested_bank_pixel
    from jacobinerf_ns.propagation.labelling import (
        MIN_ACCUMULATION,
        SUGGESTION_WINDOW,
        class_scores,
        confidence,
        explained,
        label_ids,
        unit_perturbations,
    )

    jacobians, classes = data["jacobians"], int(truth.max())
    along = (lambda sources: sources) if strategy == PAPER_LENGTH else unit_perturbations
    norms = torch.cat([chunk.float().norm(dim=-1) for chunk in jacobians.split(1 << 16)]).clamp_min(1e-12)
    hit = data["accumulation"] >= MIN_ACCUMULATION
    clicks = list(first)
    responses = linear_scores(jacobians, along(jacobians[clicks]))
    asked = torch.zeros(len(truth), dtype=torch.bool)
    asked[clicks] = True
    by_skipped = torch.zeros(len(truth))  # how well the suggestions the oracle skipped explain each pixel
    values, void_answers = [], 0
    while True:
        scores = class_scores(responses, truth[clicks].tolist(), classes)
        margin = torch.where(hit, confidence(scores), torch.zeros_like(scores[:, 0]))
        values.append(miou(label_ids(scores, margin, 0.0, hit), truth))
        if len(clicks) >= count:
            break
        if strategy.startswith("random"):
            pick = sequence[len(clicks)]
        else:
            unit = torch.ones(len(clicks))  # the norms of unit perturbations
            guide = margin if strategy == "margin" else explained(responses, unit, norms, 1.0).maximum(by_skipped)
            while True:
                pick = suggested_bank_pixel(guide, hit & ~asked, data["grids"], SUGGESTION_WINDOW)
                if pick is None:
                    raise SystemExit("No pixel left to suggest: lower --max-clicks.")
                asked[pick] = True
                if truth[pick] > 0:
                    break
                void_answers += 1
                if strategy == "suggested":  # *Skip suggestion* (Suggestions.dismiss): explains, labels nothing
                    column = linear_scores(jacobians, unit_perturbations(jacobians[pick : pick + 1]))
                    by_skipped = by_skipped.maximum(explained(column, torch.ones(1), norms, 1.0))
                    guide = guide.maximum(by_skipped)
        clicks.append(pick)
        responses = torch.cat([responses, linear_scores(jacobians, along(jacobians[pick : pick + 1]))], dim=1)
    return {"clicks": clicks, "miou": values, "void_answers": void_answers}


@torch.no_grad()
def head_curve(data: Dict, truth: Tensor, clicks: List[int], first: int, seed: int, args) -> Dict[str, float]:
    """mIoU of the Semantic-NeRF-style head fitted to the first n clicks, for n in :data:`HEAD_POINTS` (and the
    last), scored on the bank (labels only of clicked classes, 0 where the ray hits nothing, as the Jacobian
    labels)."""
    import torch.nn.functional as F

    from jacobinerf_ns.propagation.heads import composite, fit_rendered_head
    from jacobinerf_ns.propagation.labelling import MIN_ACCUMULATION
    from jacobinerf_ns.propagation.protocol import PropagationProtocol

    weights, features = data["head_weights"], data["head_features"]
    hit = data["accumulation"] >= MIN_ACCUMULATION
    protocol = PropagationProtocol(head_steps=args.head_steps)
    points = sorted({n for n in (*HEAD_POINTS, first, len(clicks)) if first <= n <= len(clicks)})
    values = {}
    for count in points:
        chosen = clicks[:count]
        targets = truth[chosen]
        generator = torch.Generator().manual_seed(seed)
        head = fit_rendered_head(weights[chosen].float(), features[chosen].float(), targets, int(truth.max()) + 1,
                                 F.cross_entropy, protocol, generator)  # fmt: skip
        allowed = torch.full((int(truth.max()) + 1,), float("-inf"))
        allowed[targets.unique()] = 0.0  # only classes that were clicked
        chunk = 4096
        predicted = torch.cat([
            (composite(head, weights[s : s + chunk].float(), features[s : s + chunk].float()) + allowed).argmax(-1)
            for s in range(0, len(truth), chunk)
        ])  # fmt: skip
        values[str(count)] = miou(torch.where(hit, predicted, torch.zeros_like(predicted)), truth)
    return values


def cached(path: Path, identity: Dict, compute, *arguments) -> Dict:
    """``compute(*arguments)``, kept in ``path`` with what made it; recomputed when ``identity`` changed."""
    from jacobinerf_ns import files

    if path.exists():
        record = json.loads(path.read_text())
        if record["identity"] == identity:
            return record["result"]
    began = time.perf_counter()
    result = compute(*arguments)
    files.write_json(path, {"identity": identity, "result": result})
    print(f"{path}: {time.perf_counter() - began:.1f} s", flush=True)
    return result


def curves(banks: Dict[str, Dict], args) -> Dict[Tuple[str, str], Dict[int, Dict]]:
    """(run or ``head``, strategy) → seed → ``{"x": total clicks, "miou": values}`` (and the Jacobian curves' clicks
    and void answers).

    Clicks land only on pixels that hit a surface of the run (``jacobinerf-label`` skips the others), so each run has
    its own clicks; the head (unshaped run's features) gets exactly the unshaped run's clicks.
    """
    from jacobinerf_ns.propagation.labelling import MIN_ACCUMULATION

    truth = banks["shaped"]["labels"][args.kind]
    results: Dict[Tuple[str, str], Dict[int, Dict]] = {}
    for seed in args.seeds:
        base = {
            "kind": args.kind,
            "seed": seed,
            "max_clicks": args.max_clicks,
            **({"source_view": args.source_view} if args.first_clicks == "source-view" else {"first": "classes"}),
        }
        for name in RUNS:
            clickable = torch.where(banks[name]["accumulation"] >= MIN_ACCUMULATION, truth, torch.zeros_like(truth))
            first = first_clicks(clickable, banks[name], seed, args)
            sequence = random_clicks(clickable, first, args.max_clicks, seed)
            for strategy in STRATEGIES:
                identity = {**base, **banks[name]["identity"], "strategy": strategy, "rule": STRATEGIES[strategy],
                            "perturbation": "σ J_k" if strategy == PAPER_LENGTH else "unit-length"}  # fmt: skip
                path = args.out / "curves" / args.kind / f"{name}_{strategy}_seed{seed}.json"
                curve = cached(path, identity, jacobian_curve, banks[name], truth, first, args.max_clicks, strategy,
                               sequence)  # fmt: skip
                x = list(range(len(first), len(first) + len(curve["miou"])))
                results.setdefault((name, strategy), {})[seed] = {**curve, "x": x}
        for strategy in HEAD_STRATEGIES:
            curve = results[(HEAD_RUN, strategy)][seed]
            identity = {**base, **banks[HEAD_RUN]["identity"], "strategy": strategy, "head_steps": args.head_steps,
                        "clicks": curve["clicks"]}  # fmt: skip
            path = args.out / "curves" / args.kind / f"head_{strategy}_seed{seed}.json"
            values = cached(path, identity, head_curve, banks[HEAD_RUN], truth, curve["clicks"], curve["x"][0], seed,
                            args)  # fmt: skip
            results.setdefault(("head", strategy), {})[seed] = {"x": [int(n) for n in values],
                                                                "miou": list(values.values())}  # fmt: skip
    return results


def curve_name(owner: str, strategy: str) -> str:
    who = f"Semantic-NeRF-style head on the {HEAD_RUN} run" if owner == "head" else f"{owner} run"
    return f"{who}, {STRATEGIES[strategy]}"


# ---- the report ---------------------------------------------------------------------------------------------------


def matrix(series: Dict[int, Dict]) -> tuple:
    """Total clicks ``(X,)`` common to every seed and mIoU ``(seeds, X)``."""
    common = sorted(set.intersection(*(set(curve["x"]) for curve in series.values())))
    values = np.array([[dict(zip(curve["x"], curve["miou"]))[x] for x in common] for curve in series.values()])
    return np.array(common), values


def spread(values: np.ndarray) -> np.ndarray:
    return values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros(values.shape[1])


def clicks_to_reach(series: Dict[int, Dict], threshold: float, max_clicks: int) -> str:
    """Mean over seeds of the first number of clicks whose mIoU reaches ``threshold``."""
    reached = []
    for curve in series.values():
        hits = [x for x, value in zip(curve["x"], curve["miou"]) if value >= threshold]
        reached.append(hits[0] if hits else None)
    done = [x for x in reached if x is not None]
    if len(done) < len(reached):
        seeds = f"; {len(done)}/{len(reached)} seeds did, after {np.mean(done):.1f}" if done else ""
        return f"not reached within {max_clicks}{seeds}"
    return f"{np.mean(done):.1f} ± {np.std(done, ddof=1) if len(done) > 1 else 0.0:.1f}"


def hit_share(data: Dict) -> float:
    from jacobinerf_ns.propagation.labelling import MIN_ACCUMULATION

    return float((data["accumulation"] >= MIN_ACCUMULATION).float().mean())


def report(results: Dict[Tuple[str, str], Dict[int, Dict]], banks: Dict[str, Dict], scene: str, args) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jacobinerf_ns import files

    data = banks["shaped"]
    frames, pixels, seeds = len(data["grids"]), len(data["jacobians"]), len(args.seeds)
    styles = {"shaped": dict(color="tab:red"), "unshaped": dict(color="tab:blue"), "head": dict(color="tab:green")}
    figure, axis = plt.subplots(figsize=(10, 7.4))
    for (owner, strategy), series in results.items():
        x, values = matrix(series)
        mean, std = values.mean(axis=0), spread(values)
        axis.plot(x, mean, label=curve_name(owner, strategy), linestyle=LINESTYLES[strategy],
                  marker="o" if len(x) < 12 else None, markersize=3, **styles[owner])  # fmt: skip
        axis.fill_between(x, mean - std, mean + std, alpha=0.12, **styles[owner])
    for threshold in THRESHOLDS:
        axis.axhline(threshold, color="grey", linewidth=0.6)
        axis.text(args.max_clicks, threshold, f" {threshold}", va="center", fontsize=8, color="grey")
    axis.set_xlabel(f"total clicks (the first: {first_clicks_text(args)}; then one at a time)")
    axis.set_ylabel(f"{args.kind} mIoU over all {frames} frames (train + eval)")
    axis.set_ylim(0, 1)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=1)
    sampled = "every pixel" if args.stride == 1 else f"every {args.stride}th pixel row and column"
    axis.set_title(
        f"How many clicks label the whole scene? {scene}, {args.kind}: line = mean, band = ± std over {seeds} seeds\n"
        f"(scored on {sampled} of every frame, {pixels} pixels; the ground truth answers each click with the "
        "clicked pixel's class, and scores)",
        fontsize=9,
    )
    figure.tight_layout()
    figure_path = args.figure or Path("docs") / f"clicks_to_quality_{scene}.png"
    with files.atomic_path(figure_path) as temporary:
        figure.savefig(temporary, dpi=110, bbox_inches="tight")  # the legend below the axes, whole
    plt.close(figure)

    points = [n for n in REPORT_POINTS if n <= args.max_clicks]
    lines = [
        f"Clicks-to-quality, {scene}, {args.kind}: mIoU over {pixels} pixels of all {frames} frames (stride "
        f"{args.stride}), classes present in the ground truth; mean ± std over seeds {list(args.seeds)}; first clicks: "
        f"{first_clicks_text(args)}. Figure: {figure_path}",
        "",
        "Pixels whose ray hits a surface (the others stay unlabelled, as in jacobinerf-label): "
        + ", ".join(f"{name} run {hit_share(banks[name]):.1%}" for name in RUNS)
        + ".",
        "",
    ]
    header = ["curve", *(f"clicks to mIoU {t}" for t in THRESHOLDS), *(f"mIoU @{n} clicks" for n in points),
              "void answers to suggestions"]  # fmt: skip
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (owner, strategy), series in results.items():
        x, values = matrix(series)
        cells = [clicks_to_reach(series, t, args.max_clicks) for t in THRESHOLDS]
        for n in points:
            column = np.nonzero(x == n)[0]
            cells.append(f"{values[:, column[0]].mean():.3f} ± {spread(values)[column[0]]:.3f}" if len(column) else "—")
        voids = [curve.get("void_answers") for curve in series.values()]
        cells.append("—" if None in voids or strategy.startswith("random") else f"{np.mean(voids):.1f}")
        lines.append(f"| {curve_name(owner, strategy)} | " + " | ".join(cells) + " |")
    fitted = ", ".join(map(str, HEAD_POINTS))
    lines += [
        "",
        f"Head: fitted only at {fitted} clicks (and the last), so its clicks to reach a level are the first fitted "
        "point that reaches it (an upper bound).",
        "",
        "Each curve − random clicks on the same run, mIoU (paired by seed: the same first clicks; mean ± std over "
        "seeds):",
        "",
    ]
    for (owner, strategy), series in results.items():
        if strategy == "random":
            continue
        xs, a = matrix(series)
        xr, b = matrix(results[(owner, "random")])
        common = [n for n in xs if n in set(xr)]
        difference = {n: a[:, list(xs).index(n)] - b[:, list(xr).index(n)] for n in common}
        overall = np.mean(list(difference.values()), axis=0)
        cells = [f"mean over {common[0]}–{common[-1]} clicks {overall.mean():+.3f} ± {spread(overall[:, None])[0]:.3f}"]
        cells += [f"@{n}: {difference[n].mean():+.3f} ± {spread(difference[n][:, None])[0]:.3f}"
                  for n in points if n in difference]  # fmt: skip
        lines.append(f"- {curve_name(owner, strategy)}: " + "; ".join(cells))
    return "\n".join(lines)


def first_clicks_text(args) -> str:
    if args.first_clicks == "classes":
        return "one per class the training frames show, at a random pixel of a random training frame showing it"
    return f"one random click per class of training view {args.source_view}"


def scene_name(data: Path) -> str:
    """``sample_scene`` for the embedded demo scene, else the data folder's name (it names the figure)."""
    transforms = data / "transforms.json"
    marked = transforms.is_file() and "sample_scene" in json.loads(transforms.read_text())
    return "sample_scene" if marked else data.resolve().name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="the scene (default: the sample scene, in --out)")
    parser.add_argument("--out", type=Path, default=Path("outputs/clicks_to_quality"))
    parser.add_argument("--shaped-config", type=Path, default=None, help="a shaped run's config.yml (else trained)")
    parser.add_argument("--unshaped-config", type=Path, default=None, help="an unshaped run's (else trained)")
    parser.add_argument("--kind", choices=KINDS, default="semantics")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-clicks", type=int, default=60)
    parser.add_argument("--stride", type=int, default=1, help="bank: every stride-th pixel row and column")
    parser.add_argument(
        "--first-clicks",
        choices=FIRST_CLICKS,
        default="classes",
        help="classes: one per class the training frames show; source-view: per class of one view",
    )
    parser.add_argument("--source-view", type=int, default=0, help="training view of the first clicks (source-view)")
    parser.add_argument("--head-steps", type=int, default=1000, help="Adam steps of each head fit")
    parser.add_argument("--steps", type=int, default=800, help="training steps of a run trained here")
    parser.add_argument("--shaping-start", type=int, default=400, help="first shaping step of a run trained here")
    parser.add_argument("--figure", type=Path, default=None, help="default: docs/clicks_to_quality_<scene>.png")
    parser.add_argument("extra", nargs="*", help="further ns-train options of runs trained here, after --")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.data is None:
        from jacobinerf_ns.sample_scene import make_sample_scene

        args.data = make_sample_scene(args.out / "scene")

    configs = run_configs(args)
    banks = {name: bank(name, config, args) for name, config in configs.items()}
    if args.kind not in banks["shaped"]["labels"]:
        raise SystemExit(f"{args.data} has no {args.kind} labels: the benchmark scores with them (--kind).")
    if not all(torch.equal(banks[name]["labels"][args.kind], banks["shaped"]["labels"][args.kind]) for name in RUNS):
        raise SystemExit("The two runs were trained on different frames or labels: compare runs of one dataset.")
    if not 0 <= args.source_view < banks["shaped"]["train_frames"]:
        raise SystemExit(f"--source-view {args.source_view}: choose one of the {banks['shaped']['train_frames']} "
                         "training views.")  # fmt: skip
    text = report(curves(banks, args), banks, scene_name(args.data), args)
    from jacobinerf_ns import files

    files.write_text(args.out / f"table_{args.kind}.md", text + "\n")
    print(text)


if __name__ == "__main__":
    main()
