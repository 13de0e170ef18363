"""What the viewer shows of a probe's responses: a pure function of one render's outputs and one snapshot of the
viewer's state, so a frame never mixes two states (the viewer renders in its own thread while clicks arrive).

* ``jacobinerf_response``: how like the selected click each pixel is, ``|cos(J_p, J_k)|`` (heatmap, 1 at the click);
* ``jacobinerf_selection``: the RGB with the selected entity (that cosine > threshold; over the surfaces, the
  entity's share, :meth:`~jacobinerf_ns.propagation.surface_labelling.SurfaceSelection.selected`) highlighted;
* ``jacobinerf_labels``: the labels of the label clicks over the RGB: class score ``s_c`` = max response over the
  class's clicks, label = ``argmax_c s_c``, pixels whose ray hits nothing or that resemble no click
  (:func:`~jacobinerf_ns.propagation.labelling.explained` below ``MIN_EXPLAINED``) unlabelled (as ``jacobinerf-label``
  with its defaults); with labels spread over the surfaces, ``s_c`` is the render's ``SURFACE_SCORES`` and every
  pixel that hits a surface and that some class scores above 0 at (with masks: resembles, the gate, with a best score
  at the floor or above) is labelled (as ``jacobinerf-label --propagation surface``);
* ``jacobinerf_confidence``: the margin ``(s1 − s2) / max(s1, ε)`` of the two best class scores (heatmap, 0 = a
  tie: click there next); over the surfaces ``s1 − s2`` of the surface scores
  (:func:`~jacobinerf_ns.propagation.surface_labelling.surface_confidence`: a class that wins alone but barely
  resembles its clicks reads unsure); 1 where the ray hits nothing (nothing to label).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from torch import Tensor

from jacobinerf_ns.probe import JACOBIAN_NORM, RESPONSES, SURFACE_SCORES
from jacobinerf_ns.propagation.labelling import (
    MIN_ACCUMULATION,
    MIN_EXPLAINED,
    class_scores,
    confidence,
    explained,
    label_ids,
)
from jacobinerf_ns.propagation.surface_labelling import SurfaceSelection, surface_confidence
from jacobinerf_ns.visualization import highlight, label_overlay

RESPONSE, SELECTION = "jacobinerf_response", "jacobinerf_selection"
LABELS, CONFIDENCE = "jacobinerf_labels", "jacobinerf_confidence"


@dataclass(frozen=True)
class Decoration:
    """The viewer state a frame is drawn with. The probe's sources are [selection] + label clicks, in that order."""

    space: str
    """``2d`` or ``3d``: which responses are shown."""
    threshold: float
    """Selection: ``|cos(J_p, J_k)|`` above which a pixel belongs to the selected entity."""
    selection_norm: Optional[Tensor]
    """``(1,)`` ``‖J_k‖`` of the selected click (``None``: nothing selected)."""
    label_ids: Tuple[int, ...]
    """Class id (position in the classes + 1) of each label click."""
    colors: Tensor
    """``(C + 1, 3)`` class colours, 0 = unlabelled."""
    sigma: float
    """σ of the probe: the selection perturbs by σ ``J_k``, label clicks by σ along their unit-length Jacobians."""
    selection_spread: Optional[SurfaceSelection] = None
    """The selection over the surfaces (``None``: by ``threshold``): the render's ``SURFACE_SCORES`` start with its
    entity share (the labels' class scores, if any, follow) and ``threshold`` does not apply."""


def decorate(outputs: dict, camera: object, decoration: Decoration) -> dict:
    """Replaces the raw ``(H, W, K)`` responses of ``outputs`` by the viewer's outputs (in place; returns it)."""
    raw = {space: outputs.pop(key) for space, key in RESPONSES.items() if key in outputs}
    pixel_norms = outputs.pop(JACOBIAN_NORM, None)  # not shown
    surface_scores = outputs.pop(SURFACE_SCORES, None)
    if not raw:
        return outputs
    responses = raw[decoration.space]
    rgb = outputs["rgb"]
    if decoration.selection_norm is not None:
        norm = decoration.selection_norm.to(responses)
        likeness = explained(responses[..., :1], norm, pixel_norms[..., 0], decoration.sigma)
        outputs[RESPONSE] = likeness[..., None]
        if decoration.selection_spread is not None:
            selected = decoration.selection_spread.selected(surface_scores[..., 0], likeness)
            surface_scores = surface_scores[..., 1:] if surface_scores.shape[-1] > 1 else None
        else:
            selected = likeness > decoration.threshold
        outputs[SELECTION] = highlight(rgb, selected)
        responses = responses[..., 1:]
    if decoration.label_ids:
        hit = outputs["accumulation"][..., 0] >= MIN_ACCUMULATION
        if surface_scores is not None:
            margin = surface_confidence(surface_scores)
            ids = label_ids(surface_scores, margin, hit=hit)
        else:
            scores = class_scores(responses, decoration.label_ids, len(decoration.colors) - 1)
            margin = confidence(scores)
            unit = torch.ones(responses.shape[-1], dtype=responses.dtype, device=responses.device)
            resemblance = explained(responses, unit, pixel_norms[..., 0], decoration.sigma)
            ids = label_ids(scores, margin, hit=hit, resemblance=resemblance, min_explained=MIN_EXPLAINED)
        outputs[LABELS] = label_overlay(rgb, ids, decoration.colors)
        outputs[CONFIDENCE] = torch.where(hit, margin, torch.ones_like(margin))[..., None]
    return outputs
