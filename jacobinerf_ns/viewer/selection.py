"""The viewer's selection: one clicked entity, and the pixels of any view whose Jacobian points the clicked pixel's
way: ``|cos(J_p, J_k)| > threshold`` (:func:`~jacobinerf_ns.propagation.labelling.explained` of the click alone, the
measure labelling leaves pixels unlabelled by). Unlike the response relative to the click's own,
``⟨J_p, J_k⟩ / ‖J_k‖²``, it does not grow with ``‖J_p‖``: pixels of another entity with long Jacobians stay out.

With *Label propagation: surface* the selection is the click's entity over the run's surface graph, the labels'
graph, instead (:class:`~jacobinerf_ns.propagation.surface_labelling.SurfaceSelection`): the masks the click's mask
reaches where the run has masks, else what the click spreads over; look-alikes elsewhere stay out."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, Optional, Tuple

import torch
from torch import Tensor

from jacobinerf_ns.probe import JACOBIAN_NORM, RESPONSES, SURFACE_SCORES, Probe
from jacobinerf_ns.propagation.labelling import explained
from jacobinerf_ns.propagation.rendering import render_responses
from jacobinerf_ns.propagation.surface_graph import SurfaceGraph
from jacobinerf_ns.propagation.surface_labelling import SurfaceSelection
from jacobinerf_ns.viewer.click_evaluation import EvaluatedClick, surface_click
from jacobinerf_ns.viewer.settings import ViewerSettings

if TYPE_CHECKING:
    from nerfstudio.cameras.cameras import Cameras
    from nerfstudio.cameras.rays import RayBundle

    from jacobinerf_ns.model import JacobiNerfModel


class Selection:
    """The selected click of one model; ``changed()`` runs after every selection, ``check(click)`` says whether its
    surface may be a floater (``""``: no), ``graph()`` gives the run's surface graph."""

    def __init__(
        self,
        model: JacobiNerfModel,
        settings: ViewerSettings,
        changed: Callable[[], None],
        check: Callable[[EvaluatedClick], str],
        graph: Callable[[], SurfaceGraph],
    ) -> None:
        self.model, self.settings, self.changed, self.check, self.graph = model, settings, changed, check, graph
        self.clicked: Optional[EvaluatedClick] = None
        self._spread: Optional[Tuple[EvaluatedClick, SurfaceSelection]] = None

    def spread(self) -> Optional[SurfaceSelection]:
        """The selected entity spread over the surfaces (``None``: nothing selected, or propagation ``nearest``)."""
        if self.clicked is None or self.settings.propagation != "surface":
            return None
        if self._spread is None or self._spread[0] is not self.clicked:
            surface = torch.tensor(self.clicked.surface)
            self._spread = (self.clicked, SurfaceSelection.of_click(self.graph(), surface, self.clicked.jacobian))
        return self._spread[1]

    def select(self, bundle: RayBundle) -> str:
        """Selects the surface a one-ray bundle hits (nothing when it hits none)."""
        self.clicked, message = surface_click(self.model, bundle)
        began = time.perf_counter()
        spread = self.spread()  # None unless propagation surface (the graph is rendered on first use)
        how = "" if spread is None else f", spread over the surfaces ({time.perf_counter() - began:.1f} s)"
        self.changed()
        if self.clicked is None:
            return message
        return (
            f"Selected (clicked colour {self.clicked.color}){how}: "
            "see the jacobinerf_selection and jacobinerf_response outputs." + self.check(self.clicked)
        )

    def jacobian_norm(self) -> Tensor:
        """``(1,)`` ``‖J_k‖`` of the selected click (what its responses are divided by to give cosines)."""
        return self.clicked.jacobian.flatten().norm().reshape(1)

    def mask(self, camera: Cameras) -> Tuple[Tensor, dict]:
        """``(H, W)`` bool mask of the selected entity in ``camera`` (as the viewer draws it), and that render's
        outputs."""
        if self.clicked is None:
            raise ValueError("Nothing is selected.")
        spread = self.spread()
        read_spread = None if spread is None else spread.read_rays
        probe = Probe(self.clicked.jacobian, sigma=self.settings.sigma, surface=read_spread)
        outputs = render_responses(self.model, camera, probe)
        responses = outputs[RESPONSES[self.settings.space]]
        norm = self.jacobian_norm().to(responses)
        cosines = explained(responses, norm, outputs[JACOBIAN_NORM][..., 0], self.settings.sigma)
        if spread is None:
            return cosines > self.settings.threshold, outputs
        return spread.selected(outputs.pop(SURFACE_SCORES)[..., 0], cosines), outputs
