"""The viewer's selection: one clicked entity, and the pixels of any view whose relative response to it exceeds the
threshold (``R(p) / R(click) > threshold``, :func:`~jacobinerf_ns.probe.relative_responses`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional, Tuple

from torch import Tensor

from jacobinerf_ns.probe import RESPONSES, Probe, probe_responses, relative_responses
from jacobinerf_ns.propagation.rendering import render_responses
from jacobinerf_ns.viewer.click_evaluation import EvaluatedClick, surface_click
from jacobinerf_ns.viewer.settings import ViewerSettings

if TYPE_CHECKING:
    from nerfstudio.cameras.cameras import Cameras
    from nerfstudio.cameras.rays import RayBundle

    from jacobinerf_ns.model import JacobiNerfModel


class Selection:
    """The selected click of one model; ``changed()`` runs after every selection, ``check(click)`` says whether its
    surface may be a floater (``""``: no)."""

    def __init__(
        self,
        model: JacobiNerfModel,
        settings: ViewerSettings,
        changed: Callable[[], None],
        check: Callable[[EvaluatedClick], str],
    ) -> None:
        self.model, self.settings, self.changed, self.check = model, settings, changed, check
        self.clicked: Optional[EvaluatedClick] = None

    def select(self, bundle: RayBundle) -> str:
        """Selects the surface a one-ray bundle hits (nothing when it hits none)."""
        self.clicked, message = surface_click(self.model, bundle)
        self.changed()
        if self.clicked is None:
            return message
        return (
            f"Selected (clicked colour {self.clicked.color}): "
            "see the jacobinerf_selection and jacobinerf_response outputs." + self.check(self.clicked)
        )

    def self_response(self) -> Tensor:
        """The selected click's response to its own perturbation in the settings' space (the scale of "like the
        clicked pixel")."""
        click = self.clicked
        weight, bias = self.model.head_parameters()
        probe = Probe(click.jacobian, sigma=self.settings.sigma)
        responses = probe_responses(click.head, weight.detach(), bias.detach(), probe, self.model.config.shape_bias)
        return responses[RESPONSES[self.settings.space]][0, 0]

    def mask(self, camera: Cameras) -> Tuple[Tensor, dict]:
        """``(H, W)`` bool mask of the selected entity in ``camera``, and that render's outputs."""
        if self.clicked is None:
            raise ValueError("Nothing is selected.")
        outputs = render_responses(self.model, camera, Probe(self.clicked.jacobian, sigma=self.settings.sigma))
        responses = outputs[RESPONSES[self.settings.space]][..., 0]
        return relative_responses(responses, self.self_response().to(responses)) > self.settings.threshold, outputs
