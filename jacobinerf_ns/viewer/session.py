"""The viewer's interaction state in plain Python (no viser): a selection, label clicks, a recolouring.

Every change publishes one immutable :class:`~jacobinerf_ns.propagation.probe.Probe` on the model (sources =
[selection] + label clicks, the recolour perturbation, and the :class:`~.decoration.Decoration` that draws the
viewer's outputs); the model's renders read it once per frame. The head's parameters are never edited.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

import torch
from torch import Tensor

from jacobinerf_ns import jacobians
from jacobinerf_ns.jacobians import HeadInputs
from jacobinerf_ns.propagation.labelling import MIN_ACCUMULATION
from jacobinerf_ns.propagation.probe import (
    RESPONSES,
    Probe,
    probe_responses,
    ray_jacobians,
    relative_responses,
    render_responses,
)
from jacobinerf_ns.viewer.decoration import Decoration, decorate
from jacobinerf_ns.visualization import palette

if TYPE_CHECKING:
    from nerfstudio.cameras.cameras import Cameras
    from nerfstudio.cameras.rays import RayBundle

    from jacobinerf_ns.model import JacobiNerfModel


@dataclass(frozen=True)
class Click:
    """One clicked ray, evaluated on the model: its Jacobian, head inputs, opacity and colour."""

    jacobian: Tensor
    """``(1, 3, F[+1])``."""
    head: HeadInputs
    accumulation: float
    color: Tuple[float, float, float]


def evaluate_click(model: JacobiNerfModel, bundle: RayBundle) -> Click:
    """The :class:`Click` of a one-ray bundle (one eval-mode forward pass)."""
    jacobian, outputs, head = ray_jacobians(model, bundle)
    color = tuple(round(float(c), 2) for c in outputs["rgb"][0])
    return Click(jacobian[:1], head, float(outputs["accumulation"][0]), color)  # type: ignore[arg-type]


class ViewerSession:
    """Selection, label clicks and recolouring of one model, with the viewer's settings."""

    def __init__(self, model: JacobiNerfModel) -> None:
        self.model = model
        self.sigma = 0.1
        self.threshold = 0.5
        self.space = "3d"
        self.recolor_strength = 1.0
        self.selection: Optional[Click] = None
        self.label_clicks: List[Tuple[Click, str]] = []
        self.recolor_delta: Optional[Tensor] = None

    # ---- clicks ------------------------------------------------------------------------------------------------

    def hit(self, bundle: RayBundle) -> Tuple[Optional[Click], str]:
        """The click of a ray, or ``None`` and why when it hits no surface."""
        click = evaluate_click(self.model, bundle)
        if click.accumulation < MIN_ACCUMULATION:
            return None, f"No surface along that ray (opacity {click.accumulation:.2f}): click on an object."
        return click, ""

    def select(self, bundle: RayBundle) -> str:
        self.selection, message = self.hit(bundle)
        self.publish()
        if self.selection is None:
            return message
        return (
            f"Selected (clicked colour {self.selection.color}): "
            "see the jacobinerf_selection and jacobinerf_response outputs."
        )

    def add_label(self, bundle: RayBundle, name: str) -> str:
        click, message = self.hit(bundle)
        if click is not None:
            self.label_clicks.append((click, name))
            message = f"{len(self.label_clicks)} label clicks ({', '.join(self.label_names())}): see jacobinerf_labels."
        self.publish()
        return message

    def recolor(self, bundle: RayBundle, target: Tuple[float, float, float]) -> str:
        """Moves the clicked colour to ``target`` (RGB in [0, 1]) along its channel Jacobians."""
        click, message = self.hit(bundle)
        if click is None:
            return message
        head = click.head
        self.recolor_delta = jacobians.recolor_delta(
            head.weights[0], head.rgb[0], head.features[0], torch.tensor(target), self.model.config.shape_bias
        )
        self.publish()
        return "Recolored: move 'Recolor strength', or 'Reset colors' to restore the original colours."

    # ---- state -------------------------------------------------------------------------------------------------

    def label_names(self) -> List[str]:
        return list(dict.fromkeys(name for _, name in self.label_clicks))

    def undo(self) -> None:
        if self.label_clicks:
            self.label_clicks.pop()
        self.publish()

    def clear(self) -> None:
        self.label_clicks = []
        self.publish()

    def reset_recolor(self) -> None:
        self.recolor_delta = None
        self.publish()

    def self_responses(self, click: Click) -> Dict[str, Tensor]:
        """A click's response to its own perturbation, per space (the scale of "like the clicked pixel")."""
        weight, bias = self.model.head_parameters()
        probe = Probe(click.jacobian, sigma=self.sigma)
        responses = probe_responses(click.head, weight.detach(), bias.detach(), probe, self.model.config.shape_bias)
        return {space: responses[key][0, 0] for space, key in RESPONSES.items()}

    def probe(self) -> Optional[Probe]:
        """The probe of the current state: sources = [selection] + label clicks; ``None`` when there is nothing."""
        clicks = ([self.selection] if self.selection is not None else []) + [click for click, _ in self.label_clicks]
        recolor = None if self.recolor_delta is None else self.recolor_strength * self.recolor_delta
        if not clicks and recolor is None:
            return None
        names = self.label_names()
        decoration = Decoration(
            space=self.space,
            threshold=self.threshold,
            selection_self_response=None if self.selection is None else self.self_responses(self.selection)[self.space],
            label_ids=tuple(names.index(name) + 1 for _, name in self.label_clicks),
            colors=palette(len(names) + 1),
        )
        sources = torch.cat([click.jacobian for click in clicks]) if clicks else None
        return Probe(sources, sigma=self.sigma, recolor=recolor, decorate=partial(decorate, decoration=decoration))

    def publish(self) -> None:
        """Makes the current state what the model's next renders show."""
        self.model.probe = self.probe()

    # ---- the selection in other views --------------------------------------------------------------------------

    def selection_mask(self, camera: Cameras) -> Tuple[Tensor, dict]:
        """``(H, W)`` bool mask of the selected entity in ``camera``, and that render's outputs."""
        if self.selection is None:
            raise ValueError("Nothing is selected.")
        outputs = render_responses(self.model, camera, Probe(self.selection.jacobian, sigma=self.sigma))
        responses = outputs[RESPONSES[self.space]][..., 0]
        self_response = self.self_responses(self.selection)[self.space].to(responses)
        return relative_responses(responses, self_response) > self.threshold, outputs
