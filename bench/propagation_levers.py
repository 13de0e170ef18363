"""The levers of label propagation on a real room, one at a time: how far N clicks get with today's nearest-click
labels, a classifier learnt from the clicks, and labels spread over the scene's surfaces in 3D.

    python bench/propagation_levers.py --config RUN/config.yml --out outputs/levers [--stride 6] [--seeds 0 1 2 3 4]

1. **Bank** (cached in ``--out``): every ``--stride``-th pixel row and column of every frame (training and eval):
   ray Jacobians, opacity, the rendered surface point (origin + depth · direction, nerfstudio's frame) and the
   ground-truth semantic class and instance (used only to score and to answer clicks); every frame's grid is
   ``grid_shape`` (rows, columns).
2. **Clicks**, on pixels whose ray hits a surface: first one per class the training frames show, at a random bank
   pixel of a random training frame showing it (what a person labelling a room does), then uniformly random labelled
   pixels of any frame, up to 60; the same clicks for every method.
3. **Methods**, each a function of the clicks' bank indices → ``(P, C)`` class scores, label = argmax where the ray
   hits a surface:
   * ``nearest``: today's labels (``jacobinerf-label``): per class, the best ``|cos(J_p, J_k)|`` over its clicks;
   * ``logistic``: a linear softmax classifier on unit Jacobians ``J_p / ‖J_p‖`` fitted to the clicks (L-BFGS);
   * ``geometry``: label spreading on the product's surface graph (``jacobinerf-label --propagation surface``,
     :mod:`jacobinerf_ns.propagation.surface_graph`: ``F ← α S F + (1 − α) Y``, ``S = D^-½ W D^-½``, ``k`` nearest
     neighbours in 3D, edge weight ``exp(−(1 − cos(J_p, J_q)) / τ)``) over the bank's surface points of all frames;
     the clicks are the seeds, so a click's class spreads over the surfaces it lies on, across frames, and stops
     where the Jacobians turn; ``geometry_tau_0.05``: the same at τ = 0.05 (the first study's temperature);
   * ``geometry_only``: the same graph with every edge weighted 1 (τ = ∞);
   * ``surface``: what ``jacobinerf-label --propagation surface --no-masks`` labels by: ``geometry``'s class share ×
     the class's ``nearest`` score to the power γ (:func:`jacobinerf_ns.propagation.surface_graph.class_scores`);
   * ``surface_masks``: what ``jacobinerf-label --propagation surface`` labels by on a run shaped with masks: the
     graph also joins each training frame's nodes inside one mask (the bank's instances, taken within each frame
     only: what a segmenter's per-image masks give), a click seeds its selection (``SurfaceGraph.seed``) and the
     resemblance is the masks' (``SurfaceGraph.node_resemblance``), and a class scores 0 where that resemblance is
     below ``jacobinerf-label --min-resemblance``'s default (0.3): a pixel no class reaches stays unlabelled (and
     counts as wrong);
     ``surface_masks_node_seeds`` /
     ``surface_masks_pixel_resemblance``: one lever off (a click seeds its node / each pixel's own resemblance, at
     γ 0.5, its best), ``surface_masks_before``: both off (the labels before these levers), all three without the
     gate, as ``surface_masks_every_pixel`` (``surface_masks`` before the gate); ``geometry_masks``: the spread alone
     (γ = 0); ``--mask-weights`` / ``--mask-powers`` / ``--min-resemblances`` add ``surface_masks`` with other mask
     weights / γ / gates;
   * ``logistic_all``: the linear classifier fitted to 20000 labelled pixels of the bank, not to the clicks: how much
     of the classes a linear read-out of these Jacobians can separate at all (an upper bound for ``logistic``, not a
     method: it uses the ground truth).
4. **Report**: mIoU over all frames (classes present in the ground truth) at ``--counts`` clicks (30 and 60), mean ±
   std over ``--seeds``, and each method's seconds per labelling; markdown on stdout and in ``<out>/levers.md``;
   with ``--figure``, mIoU against clicks for each method (``--methods``: only those).
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np
import torch
from torch import Tensor

from jacobinerf_ns.propagation.surface_graph import RESEMBLANCE_POWER, SEGMENT_WEIGHT, TAU, mask_key
from jacobinerf_ns.propagation.surface_labelling import MIN_MASK_RESEMBLANCE

PIXEL_MASK_POWER = 0.5
"""γ with masks and each pixel's own resemblance (its best in the sweep of 0, 0.5, 1 and 4)."""


@torch.no_grad()
def build_bank(config: Path, stride: int) -> Dict[str, Tensor]:
    """Every ``stride``-th pixel of every frame (training then eval; a frame listed in both counts once)."""
    from jacobinerf_ns.propagation.bank import grid_pixels
    from jacobinerf_ns.propagation.rendering import ray_jacobians
    from jacobinerf_ns.runs import label_maps, open_run

    _, pipeline, _ = open_run(config)
    model = pipeline.model
    jacobians, opacity, points, labels, instances, views = [], [], [], [], [], []
    train_frames, grid_shapes, maps = 0, set(), {}
    for split, outputs, index in bank_frames(pipeline):
        if split not in maps:
            maps[split] = (label_maps(outputs, "semantics"), label_maps(outputs, "instances"))
        semantic_maps, instance_maps = maps[split]
        camera = outputs.cameras[index : index + 1]
        grid = grid_pixels(int(camera.height), int(camera.width), stride)
        grid_shapes.add((len(grid[:, 0].unique()), len(grid[:, 1].unique())))
        rays = camera.generate_rays(camera_indices=0, keep_shape=True)[grid[:, 0], grid[:, 1]]
        for start in range(0, len(rays), model.config.eval_num_rays_per_chunk):
            chunk = rays[start : start + model.config.eval_num_rays_per_chunk]
            jacobian, rendered, _ = ray_jacobians(model, chunk)
            jacobians.append(jacobian.flatten(1).half())
            opacity.append(rendered["accumulation"].reshape(-1).float())
            points.append(chunk.origins + chunk.directions * rendered["depth"].reshape(-1, 1))
        labels.append(semantic_maps[index][grid[:, 0], grid[:, 1]].long())
        instances.append(instance_maps[index][grid[:, 0], grid[:, 1]].long())
        views.append(torch.full((len(grid),), len(views)))
        train_frames += split == "train"
    assert len(grid_shapes) == 1, "frames of one size"
    return {
        "jacobians": torch.cat(jacobians),
        "accumulation": torch.cat(opacity),
        "points": torch.cat(points),
        "labels": torch.cat(labels),
        "instances": torch.cat(instances),
        "view": torch.cat(views),
        "grid_shape": torch.tensor(grid_shapes.pop()),
        "train_frames": torch.tensor(train_frames),
    }


def bank_frames(pipeline):
    """``(split, dataparser outputs, index)`` of every frame in the bank's order: training frames, then eval frames
    (a frame listed in both counts once)."""
    from jacobinerf_ns.runs import eval_outputs

    seen = set()
    for split, outputs in (("train", pipeline.datamanager.train_dataparser_outputs), ("eval", eval_outputs(pipeline))):
        for index, image in enumerate(outputs.image_filenames):
            if Path(image).resolve() not in seen:
                seen.add(Path(image).resolve())
                yield split, outputs, index


def cached_bank(config: Path, stride: int, out: Path) -> Dict[str, Tensor]:
    from jacobinerf_ns import files

    checkpoint = sorted((config.parent / "nerfstudio_models").glob("step-*.ckpt"))[-1]  # what ns-eval's loader takes
    identity = {"checkpoint": str(checkpoint.resolve()), "stride": stride}
    path = out / f"bank_stride{stride}.pt"
    if path.exists():
        kept = torch.load(path, map_location="cpu", weights_only=False)
        if kept["identity"] == identity:
            return kept
    began = time.perf_counter()
    bank = {**build_bank(config, stride), "identity": identity}
    files.torch_save(path, bank)
    print(f"bank of {len(bank['labels'])} pixels in {time.perf_counter() - began:.0f} s", flush=True)
    return bank


def per_class_clicks(truth: Tensor, view: Tensor, train_frames: int, generator: np.random.Generator) -> List[int]:
    """What a person labelling a room clicks first: one bank pixel per class the training frames show (``truth`` > 0;
    void, and pixels that cannot be clicked, 0), at a random pixel of a random training frame (``view`` <
    ``train_frames``) showing it; classes in increasing order."""
    train = (truth > 0) & (view < train_frames)
    sequence = []
    for label in sorted(set(truth[train].tolist())):
        frames = sorted(set(view[train & (truth == label)].tolist()))
        frame = frames[generator.integers(len(frames))]
        candidates = torch.nonzero(train & (truth == label) & (view == frame)).flatten().numpy()
        sequence.append(int(candidates[generator.integers(len(candidates))]))
    return sequence


def node_positions(nodes: np.ndarray, size: int) -> np.ndarray:
    """``(size,)`` each bank pixel's position among the graph's ``nodes`` (−1: not a node)."""
    position = np.full(size, -1)
    position[nodes] = np.arange(len(nodes))
    return position


class Levers:
    """The methods on one bank (the graph is built once)."""

    def __init__(self, bank: Dict[str, Tensor]) -> None:
        self.truth, self.view = bank["labels"], bank["view"]
        self.train_frames = int(bank["train_frames"])
        self.hit = bank["accumulation"] >= 0.5  # labelling.MIN_ACCUMULATION
        jacobians = bank["jacobians"].float()
        self.unit = jacobians / jacobians.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        self.classes = int(self.truth.max()) + 1
        self.points = bank["points"]
        training = self.view < self.train_frames
        masked = training & (bank["instances"] > 0)
        self.masks = torch.where(masked, mask_key(self.view, bank["instances"]), -1)
        """Each pixel's mask: its instance within its own training frame (what per-image masks give), −1 elsewhere."""
        self._graphs: Dict[Tuple[float, float], tuple] = {}
        self._columns: Dict[Tuple[float, float], Dict[int, np.ndarray]] = {}
        """Each graph's seeds' spreads (``SurfaceGraph.spread_seeds``), kept across click counts."""

    def clicks(self, seed: int, count: int) -> List[int]:
        """:func:`per_class_clicks`, then random labelled pixels of any frame; only pixels whose ray hits a
        surface."""
        generator = np.random.default_rng(seed)
        clickable = self.hit & (self.truth > 0)
        sequence = per_class_clicks(torch.where(clickable, self.truth, 0), self.view, self.train_frames, generator)
        for index in generator.permutation(torch.nonzero(clickable).flatten().numpy()):
            if len(sequence) >= count:
                break
            if int(index) not in sequence:
                sequence.append(int(index))
        return sequence

    def nearest(self, clicks: List[int]) -> Tensor:
        cosines = (self.unit @ self.unit[clicks].T).abs()
        scores = torch.full((len(self.unit), self.classes), -1.0)
        for column, label in enumerate(self.truth[clicks].tolist()):
            scores[:, label] = torch.maximum(scores[:, label], cosines[:, column])
        return scores

    def logistic(self, clicks: List[int], l2: float = 1e-3, steps: int = 200) -> Tensor:
        features, targets = self.unit[clicks], self.truth[clicks]
        weight = torch.zeros(self.unit.shape[1], self.classes, requires_grad=True)
        bias = torch.zeros(self.classes, requires_grad=True)
        absent = torch.full((self.classes,), -1e9)
        absent[targets.unique()] = 0.0  # only classes that were clicked
        optimizer = torch.optim.LBFGS([weight, bias], max_iter=steps, line_search_fn="strong_wolfe")

        def closure():
            optimizer.zero_grad()
            logits = 10.0 * features @ weight + bias + absent
            loss = torch.nn.functional.cross_entropy(logits, targets) + l2 * weight.square().sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            optimizer.step(closure)
        return torch.softmax(10.0 * self.unit @ weight.detach() + bias.detach() + absent, dim=-1)

    def logistic_all(self, clicks: List[int]) -> Tensor:
        labelled = torch.nonzero(self.hit & (self.truth > 0)).flatten()
        sample = labelled[torch.randperm(len(labelled), generator=torch.Generator().manual_seed(0))[:20000]]
        return self.logistic(sample.tolist(), steps=100)

    def graph(self, tau: float, mask_weight: float = 0.0):
        """The product's surface graph (:mod:`jacobinerf_ns.propagation.surface_graph`) over the points that hit;
        ``mask_weight`` > 0: joining the training frames' masks (:attr:`masks`) with that weight."""
        if (tau, mask_weight) not in self._graphs:
            from jacobinerf_ns.propagation.surface_graph import build_surface_graph

            nodes = torch.nonzero(self.hit).flatten().numpy()
            node_masks = self.masks[nodes].numpy() if mask_weight > 0 else None
            graph = build_surface_graph(self.points[nodes].numpy(), self.unit[nodes].numpy(), tau=tau,
                                        masks=node_masks, segment_weight=mask_weight)  # fmt: skip
            self._graphs[tau, mask_weight] = (nodes, graph)
        return self._graphs[tau, mask_weight]

    def surface(
        self,
        clicks: List[int],
        mask_weight: float = 0.0,
        power: float = RESEMBLANCE_POWER,
        seeds_by_mask: bool = True,
        mask_resemblance: bool = True,
        min_resemblance: float = MIN_MASK_RESEMBLANCE,
    ) -> Tensor:
        """What ``jacobinerf-label --propagation surface`` scores: the spread's class share × resemblance^γ; with
        masks (``mask_weight`` > 0) a click seeds its selection and the resemblance is the masks', 0 below
        ``min_resemblance``, unless turned off (then a click seeds its node, and the resemblance is each pixel's
        ``nearest`` score, ungated)."""
        from jacobinerf_ns.propagation.surface_graph import class_scores

        nodes, graph = self.graph(TAU, mask_weight)
        seeded, classes = node_positions(nodes, len(self.truth))[clicks], self.truth[clicks].numpy()
        masked = graph.masks is not None
        if masked and seeds_by_mask:
            columns = self._columns.setdefault((TAU, mask_weight), {})
            spread = graph.spread_seeds(seeded, classes, self.classes, columns)
        else:
            spread = self.spread(clicks, mask_weight=mask_weight).numpy()[nodes]
        if masked and mask_resemblance:
            resemblance = graph.node_resemblance(seeded, classes, self.classes)
        else:
            resemblance, min_resemblance = self.nearest(clicks).clamp_min(0.0).numpy()[nodes], 0.0
        scores = torch.zeros(len(self.truth), self.classes)
        scores[nodes] = torch.from_numpy(class_scores(spread, resemblance, power, min_resemblance))
        return scores

    def spread(self, clicks: List[int], tau: float = TAU, mask_weight: float = 0.0) -> Tensor:
        nodes, graph = self.graph(tau, mask_weight)
        seeds = np.full(len(nodes), -1)
        seeds[node_positions(nodes, len(self.truth))[clicks]] = self.truth[clicks].numpy()
        scores = torch.zeros(len(self.truth), self.classes)
        scores[nodes] = torch.from_numpy(graph.spread(seeds, self.classes))
        return scores

    def methods(self, mask_weights=(), mask_powers=(), min_resemblances=()) -> Dict[str, Callable[[List[int]], Tensor]]:
        """The methods by name; ``mask_weights`` / ``mask_powers`` / ``min_resemblances`` add ``surface_masks`` with
        another mask weight / resemblance power γ / gate."""
        every_pixel = partial(self.surface, min_resemblance=0.0)
        return {
            "nearest": self.nearest,
            "logistic": self.logistic,
            "surface": self.surface,
            "surface_masks": lambda clicks: self.surface(clicks, SEGMENT_WEIGHT),
            "surface_masks_every_pixel": lambda clicks: every_pixel(clicks, SEGMENT_WEIGHT),
            "surface_masks_node_seeds": lambda clicks: every_pixel(clicks, SEGMENT_WEIGHT, seeds_by_mask=False),
            "surface_masks_pixel_resemblance": lambda clicks: every_pixel(
                clicks, SEGMENT_WEIGHT, PIXEL_MASK_POWER, mask_resemblance=False
            ),
            "surface_masks_before": lambda clicks: every_pixel(
                clicks, SEGMENT_WEIGHT, PIXEL_MASK_POWER, seeds_by_mask=False, mask_resemblance=False
            ),
            **{
                f"surface_masks_min_{m:g}": partial(self.surface, mask_weight=SEGMENT_WEIGHT, min_resemblance=m)
                for m in min_resemblances
            },  # fmt: skip
            "geometry_masks": lambda clicks: self.spread(clicks, mask_weight=SEGMENT_WEIGHT),
            **{f"surface_masks_weight_{w:g}": partial(self.surface, mask_weight=w) for w in mask_weights},
            **{
                f"surface_masks_gamma_{g:g}": partial(self.surface, mask_weight=SEGMENT_WEIGHT, power=g)
                for g in mask_powers
            },  # fmt: skip
            "geometry": self.spread,
            "geometry_tau_0.05": lambda clicks: self.spread(clicks, 0.05),
            "geometry_only": lambda clicks: self.spread(clicks, float("inf")),
            "logistic_all": self.logistic_all,
        }

    def miou(self, scores: Tensor) -> float:
        from jacobinerf_ns.metrics import confusion_matrix, label_metrics

        labelled = self.hit & (scores.amax(dim=-1) > 0)  # a pixel no class reaches stays unlabelled (0: wrong)
        predicted = torch.where(labelled, scores.argmax(dim=-1), torch.zeros_like(self.truth))
        valid = self.truth > 0
        counts = confusion_matrix(predicted[valid], self.truth[valid], self.classes)
        return label_metrics(counts, sorted(set(self.truth[valid].tolist())))["miou"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="a trained run's config.yml")
    parser.add_argument("--out", type=Path, default=Path("outputs/levers"))
    parser.add_argument("--stride", type=int, default=6)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--counts", type=int, nargs="+", default=[30, 60], help="click counts to score")
    parser.add_argument("--methods", nargs="+", help="only these methods (default: all)")
    parser.add_argument("--figure", type=Path, help="also plot mIoU against clicks, one line per method, to this PNG")
    parser.add_argument("--mask-weights", type=float, nargs="*", default=[], help="surface_masks with these weights")
    parser.add_argument("--mask-powers", type=float, nargs="*", default=[], help="surface_masks with these γ")
    parser.add_argument("--min-resemblances", type=float, nargs="*", default=[],
                        help="surface_masks with these gates (a class scores 0 below)")  # fmt: skip
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    levers = Levers(cached_bank(args.config, args.stride, args.out))
    results: Dict[str, Dict[int, List[float]]] = {}
    seconds: Dict[str, List[float]] = {}
    methods = levers.methods(args.mask_weights, args.mask_powers, args.min_resemblances)
    swept = set(methods) - set(levers.methods())  # asked for by --mask-weights / --mask-powers
    for seed in args.seeds:
        clicks = levers.clicks(seed, max(args.counts))
        for count in args.counts:
            for name, method in methods.items():
                if args.methods and name not in args.methods and name not in swept:
                    continue
                began = time.perf_counter()
                value = levers.miou(method(clicks[:count]))
                seconds.setdefault(name, []).append(time.perf_counter() - began)
                results.setdefault(name, {}).setdefault(count, []).append(value)
                print(f"seed {seed}, {count} clicks, {name}: mIoU {value:.3f}", flush=True)
    first = len(levers.clicks(0, 0))
    title = (
        f"Label propagation levers: {args.config}, semantic mIoU over {int((levers.truth > 0).sum())} labelled bank "
        f"pixels of all {int(levers.view.max()) + 1} frames (stride {args.stride}); mean ± std over seeds "
        f"{args.seeds}; first clicks: one per class the training frames show ({first}), then random."
    )
    write_report(args.out / "levers", title, "method", args.counts, results, ("seconds per labelling", seconds))
    if args.figure:
        plot_curves(args.figure, results, args.counts, title.split(": ", 1)[1])


def plot_curves(path: Path, results: Dict, counts: List[int], caption: str) -> None:
    """mIoU against clicks, one line per method (mean, ± std band over seeds), to the PNG ``path``."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 5.5))
    for name, by_count in results.items():
        values = np.array([by_count[count] for count in counts])
        mean, std = values.mean(axis=1), values.std(axis=1)
        axis.plot(counts, mean, marker="o", markersize=3, label=name)
        axis.fill_between(counts, mean - std, mean + std, alpha=0.15)
    axis.set_xlabel("clicks (the first: one per class the training frames show, then random labelled pixels)")
    axis.set_ylabel("semantic mIoU over every frame")
    axis.set_ylim(0, 1)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    axis.set_title("How far N clicks label the scene, by propagation\n" + "\n".join(textwrap.wrap(caption, 100)),
                   fontsize=8)  # fmt: skip
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_report(
    path: Path, title: str, row_name: str, counts: List[int], results: Dict, cost: Tuple[str, Dict[str, List[float]]]
) -> None:
    """A markdown table of ``results`` (row → click count → one mIoU per seed: mean ± std) and each row's mean
    ``cost`` (its header, row → values), printed and written to ``path.md``; the figures to ``path.json``."""
    header, costs = cost
    lines = [
        title,
        "",
        f"| {row_name} | " + " | ".join(f"mIoU @{count} clicks" for count in counts) + f" | {header} |",
        "|---|" + "---|" * (len(counts) + 1),
    ]
    for name, by_count in results.items():
        cells = [f"{np.mean(by_count[c]):.3f} ± {np.std(by_count[c]):.3f}" for c in counts]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {np.mean(costs[name]):.1f} |")
    report = "\n".join(lines)
    print(report)
    path.with_suffix(".md").write_text(report + "\n")
    path.with_suffix(".json").write_text(json.dumps({"results": results, header: costs}))


if __name__ == "__main__":
    main()
