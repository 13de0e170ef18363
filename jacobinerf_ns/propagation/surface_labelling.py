"""Labelling by spreading the clicks' classes over the scene's surfaces (:mod:`.surface_graph`), not pixel by pixel.

The graph's nodes are a regular grid of pixels of the training frames (about ``pixels_per_frame`` each) that hit a
surface; each click seeds the node near its surface point that looks most like it. A frame's pixels then read the spread
from the nodes around their surface point, weighted by how alike their Jacobians are: every frame takes its labels from
the same spread, so frames agree where they see the same surface, and a click's class covers the connected surface of
alike Jacobians it lies on; a pixel's score also weighs how much it resembles the class's clicks
(:func:`.surface_graph.class_scores`).

Where the graph has masks, a class reaches a pixel only where the pixel resembles it (the masks' resemblance ``r_c ≥
min_resemblance``), and a pixel whose best class score is below ``min_score`` (the clicks explain it poorly) takes
none: a pixel that resembles no class (a mask nobody clicked, a floater, the sky) stays unlabelled, as
:func:`.labelling.label_frame` leaves pixels that resemble no click. Without masks every pixel that hits a surface gets
a class: there a pixel's resemblance is its own Jacobian's, and the part of an object unlike its click (a two-coloured
object's other colour) is what the spread exists to reach. ``explained`` is still the clicks' own resemblance. *Suggest
next click* follows :meth:`SurfaceFrame.covered`, the best class score, instead: under the spread a pixel no click
resembles may be well labelled already.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, Iterable, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from jacobinerf_ns.probe import Probe
from jacobinerf_ns.propagation.bank import grid_pixels
from jacobinerf_ns.propagation.jacobian import abs_dot
from jacobinerf_ns.propagation.labelling import (
    MIN_ACCUMULATION,
    MIN_EXPLAINED,
    ClickSurface,
    FrameLabels,
    ResolvedClicks,
    best_two,
    label_ids,
)
from jacobinerf_ns.propagation.labelling import class_scores as labelling_class_scores
from jacobinerf_ns.propagation.protocol import (
    FittedPropagation,
    PropagationProtocol,
    PropagationViews,
    all_pixels,
    choose_clicks,
)
from jacobinerf_ns.propagation.rendering import pixel_jacobians, ray_jacobians
from jacobinerf_ns.propagation.surface_graph import (
    SurfaceGraph,
    build_surface_graph,
    class_scores,
    mask_key,
    unit_rows,
)
from jacobinerf_ns.surface_depth import SURFACE_SHARE

if TYPE_CHECKING:
    from nerfstudio.cameras.cameras import Cameras
    from nerfstudio.cameras.rays import RayBundle

    from jacobinerf_ns.model import JacobiNerfModel

MIN_MASK_RESEMBLANCE = 0.3
"""With masks, a class reaches no pixel whose mask resembles its clicks' masks less than this (``|cos|`` of their mean
unit Jacobians; docs/propagation_levers.md measures 0.3 and 0.5)."""
MIN_CLASS_SCORE = 0.1
"""With masks, a pixel whose best class score ``max_c F_c / ΣF · r_c^γ`` is below this stays unlabelled
(docs/labelling.md measures 0.05-0.3)."""
PIXELS_PER_FRAME = 2048
"""Graph nodes per frame (before dropping pixels that hit nothing): a grid of stride ``√(H·W / this)``."""


def surface_confidence(scores: Tensor) -> Tensor:
    """``s1 − s2`` of the two best class scores ``(..., C) → (...)`` (:func:`.labelling.best_two`). Surface scores
    are absolute (``F_c / ΣF · r_c^γ`` in [0, 1]), so unlike :func:`.labelling.confidence`'s ratio this reads a class
    that wins alone but barely resembles its clicks (an unclicked object let through by the masks' gate) as unsure."""
    best, second = best_two(scores)
    return (best - second).clamp(0.0, 1.0)


def node_stride(camera: Cameras, pixels_per_frame: int) -> int:
    """The grid stride that gives about ``pixels_per_frame`` pixels of a one-camera ``camera``."""
    return max(1, round(math.sqrt(int(camera.height) * int(camera.width) / pixels_per_frame)))


class SurfacePass(NamedTuple):
    """One chunk of rays rendered in eval mode, on the CPU."""

    jacobians: Tensor
    """``(R, D)`` flat ray Jacobians."""
    points: Tensor
    """``(R, 3)`` surface points: origin + depth · direction."""
    depth: Tensor
    """``(R,)`` the rendered depth: where the ray's weight reaches the model's ``surface_quantile``."""
    surface_share: Tensor
    """``(R,)`` the share of each ray's weight at ``depth`` (:func:`~jacobinerf_ns.surface_depth.surface_share`)."""
    accumulation: Tensor
    """``(R,)``."""


def surface_passes(model: JacobiNerfModel, bundle: RayBundle) -> Iterable[SurfacePass]:
    """Chunked eval passes over a flat ``bundle``."""
    chunk = model.config.eval_num_rays_per_chunk
    for start in range(0, len(bundle), chunk):
        rays = bundle[start : start + chunk]
        jacobian, outputs, _ = ray_jacobians(model, rays)
        depth = outputs["depth"].reshape(-1).float().cpu()
        yield SurfacePass(
            jacobians=jacobian.flatten(1).float().cpu(),
            points=rays.origins.cpu() + rays.directions.cpu() * depth[:, None],
            depth=depth,
            surface_share=outputs[SURFACE_SHARE].reshape(-1).float().cpu(),
            accumulation=outputs["accumulation"].reshape(-1).float().cpu(),
        )


@dataclass(frozen=True)
class SurfaceFrame:
    """One camera's pixels read from a spread (:meth:`SurfaceLabelling.frame_scores`); all ``(H, W)`` but ``scores``."""

    scores: Tensor
    """``(H, W, C)`` class scores (:func:`.surface_graph.class_scores` of the spread read from the nodes around the
    pixels' surface points)."""
    explained: Tensor
    """The clicks' own resemblance (:func:`.labelling.explained`: best ``|cos|`` to a click)."""
    depth: Tensor
    surface_share: Tensor
    accumulation: Tensor
    like_dismissed: Optional[Tensor]
    """Best ``|cos|`` to a dismissed suggestion (``None`` without any)."""

    @property
    def hit(self) -> Tensor:
        return self.accumulation >= MIN_ACCUMULATION

    def labels(self, min_confidence: float = 0.0) -> FrameLabels:
        """Each pixel that hits a surface takes its best class (none where no class scores above 0 or the confidence
        :func:`surface_confidence` is below ``min_confidence``)."""
        hit = self.hit
        margin = torch.where(hit, surface_confidence(self.scores), torch.zeros_like(self.accumulation))
        return FrameLabels(
            ids=label_ids(self.scores, margin, min_confidence, hit),
            confidence=margin,
            explained=torch.where(hit, self.explained, torch.ones_like(self.explained)),
            depth=self.depth,
            surface_share=self.surface_share,
            accumulation=self.accumulation,
        )

    def covered(self) -> Tensor:
        """How well the labels cover each pixel, where *Suggest next click* looks for the lowest: its best class score
        ``max_c F_c / ΣF · r_c^γ`` (low where no class both spreads to the pixel and resembles it), or its likeness to
        a dismissed suggestion where higher; 1 where the ray hits nothing."""
        best = self.scores.amax(dim=-1).clamp(0.0, 1.0) if self.scores.shape[-1] else torch.zeros_like(self.depth)
        if self.like_dismissed is not None:
            best = torch.maximum(best, self.like_dismissed)
        return torch.where(self.hit, best, torch.ones_like(best))


@dataclass
class SurfaceLabelling:
    """The clicks' classes spread over a graph of the frames' surfaces (``node_scores`` ``(N, C)``)."""

    graph: SurfaceGraph
    node_scores: np.ndarray
    clicks: ResolvedClicks
    node_resemblance: Optional[np.ndarray]
    """``(N, C)`` the masks' resemblance at the nodes (:meth:`.surface_graph.SurfaceGraph.node_resemblance`), read
    at a ray like the spread; ``None`` without masks: a ray's resemblance is its own Jacobian's."""
    min_resemblance: float = MIN_MASK_RESEMBLANCE
    """With masks, a class scores 0 at a ray whose resemblance to it is below this (:func:`.surface_graph.class_scores`;
    without masks it does not apply)."""
    min_score: float = MIN_CLASS_SCORE
    """With masks, every class scores 0 at a ray whose best score is below this (without masks it does not apply: a
    pixel's resemblance there is its own Jacobian's, which the spread exists to overrule)."""

    @classmethod
    def spread(
        cls,
        graph: SurfaceGraph,
        clicks: ResolvedClicks,
        columns: Optional[Dict[int, np.ndarray]] = None,
        min_resemblance: float = MIN_MASK_RESEMBLANCE,
        min_score: float = MIN_CLASS_SCORE,
    ) -> "SurfaceLabelling":
        """The clicks' classes spread over ``graph`` (:func:`surface_graph`) from the nodes they seed
        (:meth:`~.surface_graph.SurfaceGraph.seed_nodes`: their surface points must be known,
        :func:`.labelling.resolve_clicks`); ``columns`` keeps each seed's spread for the next call."""
        if len(clicks.surfaces) != len(clicks.jacobians):
            raise ValueError("surface labelling needs each click's surface point (labelling.resolve_clicks)")
        flat = clicks.jacobians.flatten(1).float().cpu().numpy()
        nodes = graph.seed_nodes(clicks_points(clicks).numpy(), unit_rows(flat))
        classes = np.asarray(clicks.class_ids) - 1
        spread = graph.spread_seeds(nodes, classes, clicks.num_classes, columns)
        resemblance = None if graph.masks is None else graph.node_resemblance(nodes, classes, clicks.num_classes)
        return cls(graph, spread, clicks, resemblance, min_resemblance, min_score)

    def cosines(self, jacobians: Tensor) -> Tensor:
        """``(R, K)`` ``|cos|`` between rays' flat Jacobians ``(R, D)`` and the clicks'."""
        click_units = torch.from_numpy(unit_rows(self.clicks.jacobians.flatten(1).float().cpu().numpy()))
        return (torch.from_numpy(unit_rows(jacobians.float().cpu().numpy())) @ click_units.T).abs()

    def read_rays(self, jacobians: Tensor, points: Tensor) -> Tensor:
        """``(R, C)`` class scores (:func:`.surface_graph.class_scores`) of rays with flat Jacobians ``(R, D)`` whose
        surface points are ``points`` ``(R, 3)``: what ``jacobinerf-label`` writes and the viewer draws (CPU)."""
        unit = unit_rows(jacobians.float().cpu().numpy())
        points = points.float().cpu().numpy()
        spread = self.graph.read(self.node_scores, points, unit)
        if self.node_resemblance is None:  # no gates: the spread overrules the pixel's own resemblance
            ids, count = self.clicks.class_ids, self.clicks.num_classes
            return torch.from_numpy(
                class_scores(spread, labelling_class_scores(self.cosines(jacobians), ids, count).numpy())
            )
        resemblance = self.graph.read(self.node_resemblance, points, unit)
        return torch.from_numpy(
            class_scores(spread, resemblance, min_resemblance=self.min_resemblance, min_score=self.min_score)
        )

    def frame_scores(self, model: JacobiNerfModel, camera: Cameras, dismissed: Optional[Tensor] = None) -> SurfaceFrame:
        """One camera's pixels read from the spread (:class:`SurfaceFrame`); ``dismissed`` ``(D, 3, F[+1])``:
        Jacobians of suggestions the user had nothing to label at."""
        height, width = int(camera.height), int(camera.width)
        bundle = camera.generate_rays(camera_indices=0, keep_shape=True).flatten()
        dismissed_units = None if dismissed is None else unit_rows(dismissed.flatten(1).float().cpu().numpy())
        scores, explained, like_dismissed, along_rays = [], [], [], []
        for rays in surface_passes(model, bundle):
            scores.append(self.read_rays(rays.jacobians, rays.points))
            explained.append(self.cosines(rays.jacobians).amax(dim=-1).clamp(0.0, 1.0))
            if dismissed_units is not None:
                units = unit_rows(rays.jacobians.float().cpu().numpy())
                like_dismissed.append(torch.from_numpy(np.abs(units @ dismissed_units.T).max(axis=-1)).clamp(0.0, 1.0))
            along_rays.append(torch.stack([rays.depth, rays.surface_share, rays.accumulation], dim=-1))
        depth, surface_share, accumulation = torch.cat(along_rays).view(height, width, 3).unbind(dim=-1)
        return SurfaceFrame(
            scores=torch.cat(scores).view(height, width, -1),
            explained=torch.cat(explained).view(height, width),
            depth=depth,
            surface_share=surface_share,
            accumulation=accumulation,
            like_dismissed=torch.cat(like_dismissed).view(height, width) if like_dismissed else None,
        )

    def label_frame(self, model: JacobiNerfModel, camera: Cameras, min_confidence: float = 0.0) -> FrameLabels:
        """Labels of one camera (:meth:`SurfaceFrame.labels` of :meth:`frame_scores`)."""
        return self.frame_scores(model, camera).labels(min_confidence)


SELECT_SHARE = 0.5
"""A pixel belongs to a surface selection where the entity's share is above this (and, for a spread, the pixel
resembles the click: ``|cos| >`` :data:`~.labelling.MIN_EXPLAINED`)."""


@dataclass
class SurfaceSelection:
    """One click's entity over a graph of the frames' surfaces: ``node_share`` ``(N,)``, with masks the masks the
    click's mask reaches (:meth:`.surface_graph.SurfaceGraph.mask_selection`), else the spread from the node the
    click seeds (:meth:`.surface_graph.SurfaceGraph.selection_share`); ``min_likeness``: the ``|cos|`` to the click a
    selected pixel needs (a spread reaches look-alikes' edges, a mask does not)."""

    graph: SurfaceGraph
    node_share: np.ndarray
    min_likeness: float

    @classmethod
    def of_click(cls, graph: SurfaceGraph, point: Tensor, jacobian: Tensor) -> "SurfaceSelection":
        """The selection of a click whose surface point is ``point`` ``(3,)`` and Jacobian ``jacobian`` (any shape)."""
        unit = unit_rows(jacobian.reshape(1, -1).float().cpu().numpy())
        node = int(graph.seed_nodes(point.reshape(1, 3).float().cpu().numpy(), unit)[0])
        if graph.masks is not None and graph.masks[node] >= 0:
            return cls(graph, graph.mask_selection(node), 0.0)
        return cls(graph, graph.selection_share(node), MIN_EXPLAINED)

    def read_rays(self, jacobians: Tensor, points: Tensor) -> Tensor:
        """``(R, 1)`` the entity's share at rays with flat Jacobians ``(R, D)`` and surface points ``(R, 3)`` (CPU)."""
        unit = unit_rows(jacobians.float().cpu().numpy())
        return torch.from_numpy(self.graph.read(self.node_share[:, None], points.float().cpu().numpy(), unit))

    def selected(self, share: Tensor, likeness: Tensor) -> Tensor:
        """Pixels of the selection from their read ``share`` and ``|cos|`` to the click ``likeness``: the share
        above :data:`SELECT_SHARE`, the likeness above :attr:`min_likeness`."""
        return (share > SELECT_SHARE) & (likeness > self.min_likeness)


def surface_graph(
    model: JacobiNerfModel,
    cameras: Iterable[Cameras],
    pixels_per_frame: int = PIXELS_PER_FRAME,
    masks: Optional[Sequence[Optional[Tensor]]] = None,
) -> SurfaceGraph:
    """The graph over the surfaces of the one-camera ``cameras`` (:func:`render_nodes`): built once per run and
    click-independent, so a click costs one spread. ``masks[v]``: camera v's integer mask ``(h, w)`` (any size; 0: no
    mask) or ``None``; with masks the graph joins each mask's nodes (:func:`.surface_graph.build_surface_graph`)."""
    points, jacobians, node_masks = render_nodes(model, cameras, pixels_per_frame, masks)
    return build_surface_graph(points.numpy(), jacobians.numpy(), masks=None if masks is None else node_masks.numpy())


def render_nodes(
    model: JacobiNerfModel,
    cameras: Iterable[Cameras],
    pixels_per_frame: int = PIXELS_PER_FRAME,
    masks: Optional[Sequence[Optional[Tensor]]] = None,
) -> Tuple[Tensor, Tensor, Tensor]:
    """``(N, 3)`` surface points, ``(N, D)`` flat Jacobians and ``(N,)`` masks of a grid of each one-camera
    ``cameras`` (an iterable, so a caller can wrap it in progress), pixels that hit nothing left out: the graph's
    nodes. A node's mask is :func:`.surface_graph.mask_key` of its camera and the id of ``masks[v]`` at its pixel, −1
    where there is none."""
    points, jacobians, node_masks = [], [], []
    for view, camera in enumerate(cameras):
        height, width = int(camera.height), int(camera.width)
        grid = grid_pixels(height, width, node_stride(camera, pixels_per_frame))
        mask = None if masks is None else masks[view]
        ids = torch.full((len(grid),), -1, dtype=torch.long)
        if mask is not None:  # the mask's pixel under each grid pixel, whatever its resolution
            rows = (grid[:, 0] * mask.shape[0]) // height
            columns = (grid[:, 1] * mask.shape[1]) // width
            found = mask[rows, columns].long()
            ids = torch.where(found > 0, mask_key(view, found), ids)
        bundle = camera.generate_rays(camera_indices=0, keep_shape=True)[grid[:, 0], grid[:, 1]]
        start = 0
        for rays in surface_passes(model, bundle):
            hit = rays.accumulation >= MIN_ACCUMULATION
            points.append(rays.points[hit])
            jacobians.append(rays.jacobians[hit])
            node_masks.append(ids[start : start + len(hit)][hit.cpu()])
            start += len(hit)
    return torch.cat(points), torch.cat(jacobians), torch.cat(node_masks)


def clicks_points(clicks: ResolvedClicks) -> Tensor:
    """``(K, 3)`` the clicks' surface points."""
    return torch.stack([surface.point.float() for surface in clicks.surfaces]) if clicks.surfaces else torch.zeros(0, 3)


class SurfacePropagation:
    """``--propagation.method jacobian-surface``: each draw's clicks spread over the surfaces the training views see
    (rendered once per evaluation, shared by every draw), targets read from it; a pixel takes the class of its best
    score in both settings (dense picks its clicks as JacobiNeRF's dense setting does). Space ``3d``."""

    def __init__(self, model: JacobiNerfModel, protocol: PropagationProtocol) -> None:
        self.model, self.protocol = model, protocol
        self.graphs: Dict[int, Tuple[SurfaceGraph, Dict[int, np.ndarray]]] = {}

    def target_probe(self) -> Optional[Probe]:
        return None

    def keep_target(self, target: int, outputs: dict) -> None:
        raise ValueError("jacobian-surface renders its targets itself.")

    def graph(self, views: PropagationViews) -> Tuple[SurfaceGraph, Dict[int, np.ndarray]]:
        """The training views' graph, joining their masks where the views carry them (the source and targets' graph
        when the views carry no training cameras), and its seeds' spreads, shared by every draw."""
        cameras = views.train_cameras
        if cameras is None:
            return surface_graph(self.model, [views.source_camera, *views.target_cameras]), {}
        key = id(cameras)
        if key not in self.graphs:
            frames = (cameras[index : index + 1] for index in range(len(cameras)))
            masks = None if views.train_masks is None else list(views.train_masks)
            self.graphs[key] = (surface_graph(self.model, frames, masks=masks), {})
        return self.graphs[key]

    def fit(self, views: PropagationViews, setting: str, generator: torch.Generator) -> FittedPropagation:
        height, width = views.source_labels.shape
        source = views.source_camera

        def descriptors() -> Tensor:
            return pixel_jacobians(self.model, source, all_pixels(height, width)).flatten(1)

        pixels, click_labels = choose_clicks(views, setting, self.protocol, generator, descriptors, abs_dot)
        bundle = source.generate_rays(camera_indices=0, keep_shape=True)[pixels[:, 0], pixels[:, 1]]
        passes = list(surface_passes(self.model, bundle))
        labels = sorted(set(click_labels))
        clicks = ResolvedClicks(
            jacobians=torch.cat([rays.jacobians for rays in passes]),
            class_ids=tuple(labels.index(label) + 1 for label in click_labels),
            num_classes=len(labels),
            skipped=(),
            surfaces=tuple(
                ClickSurface(f"click {index}", origin, point)
                for index, (origin, point) in enumerate(
                    zip(bundle.origins, torch.cat([rays.points for rays in passes]))
                )
            ),
        )
        graph, columns = self.graph(views)
        # the protocol labels every pixel
        spread = SurfaceLabelling.spread(graph, clicks, columns, min_resemblance=0.0, min_score=0.0)
        label_of_class = torch.tensor(labels)
        return FittedPropagation(
            pixels,
            click_labels,
            lambda target: {"3d": spread.frame_scores(self.model, views.target_cameras[target]).scores},
            lambda: {"3d": lambda scores: label_of_class[scores.argmax(dim=-1)]},
        )
