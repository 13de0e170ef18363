"""Labelling a scene with a click set: clicks → rays of a run → Jacobians → class scores, confidence, label maps.

A click set's rays in the run's normalised frame come from its scene (:mod:`jacobinerf_ns.scene`); their Jacobians
are computed from the run (never stored). For a target pixel p with responses ``R_k(p)`` to the K clicks
(:mod:`jacobinerf_ns.probe`, one render per frame):

* each click perturbs the head by the same length σ along its Jacobian (:func:`unit_perturbations`), so
  ``R_k(p) = σ ‖J_p‖ |cos(J_p, J_k)|`` (linear): p's best response is to the click it is most like;
* class score ``s_c(p) = max_{k of class c} R_k(p)``; label = ``argmax_c s_c(p)`` (id = position in classes + 1);
* confidence = ``(s1 − s2) / max(s1, ε)`` with ``s1 ≥ s2`` the two best class scores (one class: ``s2 = 0``);
* pixels whose ray hits nothing (accumulation below :data:`MIN_ACCUMULATION`) are unlabelled (0), and so are pixels
  that resemble no click (:func:`explained` below :data:`MIN_EXPLAINED`);
* a click's surface is checked against the training views' rendered depths (:func:`unconfirmed_clicks`).

The command ``jacobinerf-label`` and the viewer share these functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Optional, Sequence, Tuple

import torch
from torch import Tensor

from jacobinerf_ns.clicks import ClickSet
from jacobinerf_ns.depth_consistency import DepthView, FusionCheck, unconfirmed_message, view_support
from jacobinerf_ns.errors import JacobiNerfError
from jacobinerf_ns.probe import JACOBIAN_NORM, RESPONSES, Probe
from jacobinerf_ns.propagation.rendering import ray_jacobians, render_responses
from jacobinerf_ns.scene import Scene, click_rays
from jacobinerf_ns.surface_depth import SURFACE_SHARE

if TYPE_CHECKING:
    from nerfstudio.cameras.cameras import Cameras

    from jacobinerf_ns.model import JacobiNerfModel

MIN_ACCUMULATION = 0.5
"""A ray that accumulates less opacity than this hits no surface (a click is skipped, a pixel left unlabelled)."""
CONFIDENCE_EPSILON = 1e-12
MIN_EXPLAINED = 0.5
"""Pixels that :func:`explained` rates below this resemble no click and stay unlabelled: ``|cos(J_p, J_k)| ≤ 0.5``
for every click, far from any click's entity (the viewer selects a clicked entity's pixels above 0.8)."""


def unit_perturbations(jacobians: Tensor) -> Tensor:
    """``J_k / ‖J_k‖`` for ``(K, ...)`` Jacobians: the directions labelling perturbs along, each by the same σ.

    The paper perturbs along ``σ J_k`` and relies on shaping to keep ``‖J_k‖ ≈ 1``; the norms that remain (0.87–1.09
    between the 10th and 90th percentile on office_0) then decide which click wins wherever cosines are close, and most
    clicks win no pixel at all. With unit perturbations a pixel takes the class of the click it is most like:
    ``bench/clicks_to_quality.py`` measures the gain (docs/clicks_to_quality_*.md)."""
    norms = jacobians.flatten(1).norm(dim=-1).clamp_min(CONFIDENCE_EPSILON)
    return jacobians / norms.view(-1, *([1] * (jacobians.dim() - 1)))


@dataclass(frozen=True)
class ClickSurface:
    """Where a click's ray meets the surface (nerfstudio's frame), and how messages name the click."""

    name: str
    origin: Tensor
    """``(3,)`` the ray's origin."""
    point: Tensor
    """``(3,)`` origin + rendered depth · direction."""


@dataclass(frozen=True)
class ResolvedClicks:
    """The clicks that hit a surface of the run: their Jacobians and classes; the others, and why."""

    jacobians: Tensor
    """``(K, 3, F[+1])``."""
    class_ids: Tuple[int, ...]
    """Class id (position in classes + 1) of each kept click."""
    num_classes: int
    skipped: Tuple[str, ...]
    """One warning per click that hit nothing."""
    surfaces: Tuple[ClickSurface, ...] = ()
    """Of each kept click (empty for the viewer's clicks: it checks each when it is made)."""

    def probe(self, sigma: float, mode: Literal["linear", "exact"], dismissed: Optional[Tensor] = None) -> Probe:
        """The clicks as one probe of :func:`unit_perturbations`; ``dismissed`` ``(D, 3, F[+1])`` Jacobians follow
        them as further sources."""
        sources = self.jacobians if dismissed is None else torch.cat([self.jacobians, dismissed.to(self.jacobians)])
        return Probe(sources=unit_perturbations(sources), sigma=sigma, mode=mode)


def resolve_clicks(model: JacobiNerfModel, click_set: ClickSet, scene: Scene, source: str) -> ResolvedClicks:
    """Jacobians of the clicks' rays on ``model`` (eval mode); clicks whose ray hits nothing are skipped."""
    rays = click_rays(click_set, scene, source)
    bundle = rays.bundle()
    chunk = model.config.eval_num_rays_per_chunk
    jacobians, accumulations, depths = [], [], []
    for start in range(0, len(bundle), chunk):
        jacobian, outputs, _ = ray_jacobians(model, bundle[start : start + chunk])
        jacobians.append(jacobian.cpu())
        accumulations.append(outputs["accumulation"].reshape(-1).cpu())
        depths.append(outputs["depth"].reshape(-1, 1).cpu())
    points = rays.origins + rays.directions * torch.cat(depths)
    surfaces = tuple(map(ClickSurface, rays.names, rays.origins, points))
    return keep_hits(click_set, rays.names, torch.cat(jacobians), torch.cat(accumulations), source, surfaces)


def keep_hits(
    click_set: ClickSet,
    names: Sequence[str],
    jacobians: Tensor,
    accumulation: Tensor,
    source: str,
    surfaces: Sequence[ClickSurface] = (),
) -> ResolvedClicks:
    """The clicks whose ray accumulates at least :data:`MIN_ACCUMULATION` (with their ``surfaces``, when given), a
    warning naming each other one, and an error when none is left."""
    hits = accumulation >= MIN_ACCUMULATION
    skipped = tuple(
        f"{name} hits nothing in this run (opacity {float(opacity):.2f} < {MIN_ACCUMULATION}): skipped."
        for name, opacity, hit in zip(names, accumulation, hits)
        if not hit
    )
    if not hits.any():
        raise JacobiNerfError(
            f"None of the {len(hits)} clicks of {source} hits a surface of this run:\n  "
            + "\n  ".join(skipped)
            + "\nClick on objects of the scene (pixel clicks on images, or rays in the frame of transforms.json)."
        )
    class_ids = click_set.class_ids()
    kept = torch.nonzero(hits).flatten().tolist()
    return ResolvedClicks(
        jacobians=jacobians[hits],
        class_ids=tuple(class_ids[i] for i in kept),
        num_classes=len(click_set.classes),
        skipped=skipped,
        surfaces=tuple(surfaces[i] for i in kept) if surfaces else (),
    )


def unconfirmed_clicks(
    surfaces: Sequence[ClickSurface], views: Sequence[DepthView], check: FusionCheck
) -> Tuple[str, ...]:
    """A warning naming each click whose surface fewer than ``check.min_views`` of the training ``views`` (those with
    ``check.min_angle`` degrees of parallax on it) agree on within ``check.tolerance``
    (:mod:`jacobinerf_ns.depth_consistency`): a click on a floater."""
    if not surfaces or check.min_views <= 0:
        return ()
    points = torch.stack([surface.point for surface in surfaces])
    origins = torch.stack([surface.origin for surface in surfaces])
    support = view_support(points, views, check.tolerance, origins, check.min_angle)
    return tuple(
        f"{surface.name}: {unconfirmed_message(int(agreeing), int(seeing), check.min_views)}"
        for surface, agreeing, seeing in zip(surfaces, support.agreeing, support.seeing)
        if agreeing < check.min_views
    )


def class_scores(responses: Tensor, class_ids: Sequence[int], num_classes: int) -> Tensor:
    """``(..., K)`` responses → ``(..., C)`` scores, ``s_c = max`` over the clicks of class ``c`` (0 without any)."""
    index = torch.as_tensor(list(class_ids), device=responses.device) - 1
    scores = torch.zeros(*responses.shape[:-1], num_classes, dtype=responses.dtype, device=responses.device)
    return scores.scatter_reduce(-1, index.expand_as(responses), responses, reduce="amax")


def best_two(scores: Tensor) -> Tuple[Tensor, Tensor]:
    """The two best class scores ``s1 ≥ s2``: ``(..., C) → (...), (...)`` (one class: ``s2 = 0``)."""
    if scores.shape[-1] == 1:
        return scores[..., 0], torch.zeros_like(scores[..., 0])
    top = scores.topk(2, dim=-1).values
    return top[..., 0], top[..., 1]


def confidence(scores: Tensor) -> Tensor:
    """``(s1 − s2) / max(s1, ε)`` of the two best class scores ``(..., C) → (...)`` (:func:`best_two`)."""
    best, second = best_two(scores)
    return (best - second) / best.clamp_min(CONFIDENCE_EPSILON)


def explained(responses: Tensor, click_norms: Tensor, pixel_norms: Tensor, sigma: float) -> Tensor:
    """How well the clicks explain each pixel: the best ``|cos|`` between its Jacobian and a click's,
    ``max_k R_k / (σ ‖J_k‖ ‖J_p‖)`` for linear responses ``R_k = σ |⟨J_p, J_k⟩|`` (1: like a clicked pixel, 0: like
    none); ``(..., K)``, ``(K,)``, ``(...)`` → ``(...)``.

    *Suggest next click* goes where this is lowest. The confidence margin is a worse guide: on the sample scene
    (``bench/clicks_to_quality.py``) it keeps pointing at an entity whose Jacobians stay mixed with another's, and
    clicks placed by it do worse than random ones, while clicks placed where no click explains the pixel do better.
    """
    scale = sigma * click_norms.clamp_min(CONFIDENCE_EPSILON) * pixel_norms[..., None].clamp_min(CONFIDENCE_EPSILON)
    return (responses / scale).amax(dim=-1).clamp(0.0, 1.0)


def label_ids(
    scores: Tensor,
    margin: Tensor,
    min_confidence: float = 0.0,
    hit: Optional[Tensor] = None,
    resemblance: Optional[Tensor] = None,
    min_explained: float = 0.0,
) -> Tensor:
    """Class id of the best score (1-based); 0 where no class scores above 0, where ``margin < min_confidence``,
    where ``hit`` is false or where ``resemblance`` (:func:`explained`) is below ``min_explained``."""
    ids = scores.argmax(dim=-1) + 1
    keep = (margin >= min_confidence) & (scores.amax(dim=-1) > 0)
    if hit is not None:
        keep &= hit
    if resemblance is not None:
        keep &= resemblance >= min_explained
    return torch.where(keep, ids, torch.zeros_like(ids))


@dataclass(frozen=True)
class FrameLabels:
    """A frame labelled by one render: ``(H, W)`` ids, confidence and how well the clicks explain each pixel
    (:func:`explained`), and the render's depth (the surface: the model's ``surface_quantile``), the share of each
    ray's weight at that depth (:func:`~jacobinerf_ns.surface_depth.surface_share`) and accumulation."""

    ids: Tensor
    confidence: Tensor
    explained: Tensor
    depth: Tensor
    surface_share: Tensor
    accumulation: Tensor

    @property
    def hit(self) -> Tensor:
        """``(H, W)`` pixels whose ray hits a surface."""
        return self.accumulation >= MIN_ACCUMULATION


def label_frame(
    model: JacobiNerfModel,
    camera: Cameras,
    clicks: ResolvedClicks,
    space: Literal["2d", "3d"] = "3d",
    mode: Literal["linear", "exact"] = "linear",
    sigma: float = 0.1,
    min_confidence: float = 0.0,
    dismissed: Optional[Tensor] = None,
    min_explained: float = MIN_EXPLAINED,
) -> FrameLabels:
    """Labels of one camera from one render with all clicks as one probe; pixels the clicks explain less than
    ``min_explained`` (:func:`explained`, the clicks alone) stay unlabelled (0 labels every pixel that hits a surface).

    ``dismissed`` ``(D, 3, F[+1])``: Jacobians of suggested pixels the user had nothing to label at; they count as
    explaining their look-alikes (so suggestions move on) but label nothing."""
    probe = clicks.probe(sigma, mode, dismissed)
    outputs = render_responses(model, camera, probe)
    responses = outputs[RESPONSES[space]].cpu()
    scores = class_scores(responses[..., : len(clicks.jacobians)], clicks.class_ids, clicks.num_classes)
    accumulation = outputs["accumulation"].cpu()[..., 0]
    hit = accumulation >= MIN_ACCUMULATION
    margin = torch.where(hit, confidence(scores), torch.zeros_like(accumulation))
    source_norms = probe.sources.flatten(1).norm(dim=-1).cpu()
    pixel_norms = outputs[JACOBIAN_NORM].cpu()[..., 0]
    how_well = explained(responses, source_norms, pixel_norms, sigma)
    count = len(clicks.jacobians)
    by_clicks = (
        how_well if dismissed is None else explained(responses[..., :count], source_norms[:count], pixel_norms, sigma)
    )
    return FrameLabels(
        ids=label_ids(scores, margin, min_confidence, hit, by_clicks, min_explained),
        confidence=margin,
        explained=torch.where(hit, how_well, torch.ones_like(how_well)),
        depth=outputs["depth"].cpu()[..., 0],
        surface_share=outputs[SURFACE_SHARE].cpu()[..., 0],
        accumulation=accumulation,
    )


SUGGESTION_WINDOW = 5
"""Side (pixels) of the box over which *Suggest next click* averages its guide: a region, not one noisy pixel."""


def weakest_region(guide: Tensor, hit: Tensor, window: int = SUGGESTION_WINDOW) -> Optional[Tuple[int, int]]:
    """``(y, x)``: the centre of the ``window × window`` box of lowest mean ``guide`` (in [0, 1]; *Suggest next click*
    uses :func:`explained`), among pixels whose ray hits a surface (``None`` when none does); ``(H, W)`` inputs.

    Centres keep ``window`` pixels from the border where the view is large enough: a suggestion on the frame's edge is
    half outside the view, and its marker with it."""
    if not hit.any():
        return None
    known = torch.where(hit, guide.float(), torch.ones_like(guide, dtype=torch.float32))
    pooled = torch.nn.functional.avg_pool2d(
        known[None, None], window, stride=1, padding=window // 2, count_include_pad=False
    )[0, 0]
    inner = torch.zeros_like(hit)
    inner[window:-window, window:-window] = True
    height, width = hit.shape
    large = height > 4 * window and width > 4 * window
    candidates = hit & inner if large and (hit & inner).any() else hit
    pooled = torch.where(candidates, pooled, torch.full_like(pooled, float("inf")))
    index = int(pooled.argmin())
    return index // pooled.shape[1], index % pooled.shape[1]


def mean_over_hits(values: Tensor, hit: Tensor) -> float:
    """Mean of ``values`` over the pixels whose ray hits a surface (1 when none does: nothing to label there)."""
    return float(values[hit].mean()) if hit.any() else 1.0
