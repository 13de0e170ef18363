"""What the viewer shows of a probe's responses: a pure function of one render's outputs and one snapshot of the
viewer's state, so a frame never mixes two states (the viewer renders in its own thread while clicks arrive).

* ``jacobinerf_response``: the selected click's response relative to its response to itself (heatmap);
* ``jacobinerf_selection``: the RGB with the selected entity (relative response > threshold) highlighted;
* ``jacobinerf_labels``: the sparse propagation of the label clicks over the RGB.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from torch import Tensor

from jacobinerf_ns.propagation.probe import RESPONSES, assign_labels, relative_responses
from jacobinerf_ns.visualization import highlight, label_overlay

RESPONSE, SELECTION, LABELS = "jacobinerf_response", "jacobinerf_selection", "jacobinerf_labels"


@dataclass(frozen=True)
class Decoration:
    """The viewer state a frame is drawn with. The probe's sources are [selection] + label clicks, in that order."""

    space: str
    """``2d`` or ``3d``: which responses are shown."""
    threshold: float
    """Selection: relative response above which a pixel belongs to the selected entity."""
    selection_self_response: Optional[Tensor]
    """The selected click's response to itself in ``space`` (``None``: nothing selected)."""
    label_ids: Tuple[int, ...]
    """Class id (1-based) of each label click."""
    colors: Tensor
    """``(L + 1, 3)`` class colours, 0 = void."""


def decorate(outputs: dict, camera: object, decoration: Decoration) -> dict:
    """Replaces the raw ``(H, W, K)`` responses of ``outputs`` by the viewer's outputs (in place; returns it)."""
    raw = {space: outputs.pop(key) for space, key in RESPONSES.items() if key in outputs}
    if not raw:
        return outputs
    responses = raw[decoration.space]
    rgb = outputs["rgb"]
    if decoration.selection_self_response is not None:
        relative = relative_responses(responses[..., :1], decoration.selection_self_response.to(responses))
        outputs[RESPONSE] = relative
        outputs[SELECTION] = highlight(rgb, relative > decoration.threshold)
        responses = responses[..., 1:]
    if decoration.label_ids:
        outputs[LABELS] = label_overlay(rgb, assign_labels(responses, decoration.label_ids), decoration.colors)
    return outputs
