"""The viewer's interaction state in plain Python (no viser): the settings and the parts that own one job each —
:class:`~.selection.Selection`, :class:`~.labels.LabelClicks` (classes, label clicks, legend, markers),
:class:`~.surface_spread.SurfaceSpread` (labels spread over the surfaces),
:class:`~.suggestions.Suggestions`, :class:`~.click_files.ClickFiles` (saving and loading click sets),
:class:`~.surface_check.SurfaceCheck` (whether a click's surface may be a floater) — plus a recolouring.

Every change publishes one immutable :class:`~jacobinerf_ns.probe.Probe` on the model (sources = [selection] + label
clicks, the recolour perturbation, and the :class:`~.decoration.Decoration` that draws the viewer's outputs); the
model's renders read it once per frame. The head's parameters are never edited.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Callable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from jacobinerf_ns import jacobians
from jacobinerf_ns.probe import Probe
from jacobinerf_ns.propagation.labelling import unit_perturbations
from jacobinerf_ns.scene import Frame, Scene
from jacobinerf_ns.viewer.click_evaluation import surface_click
from jacobinerf_ns.viewer.click_files import ClickFiles
from jacobinerf_ns.viewer.decoration import Decoration, decorate
from jacobinerf_ns.viewer.labels import LabelClicks
from jacobinerf_ns.viewer.selection import Selection
from jacobinerf_ns.viewer.settings import ViewerSettings
from jacobinerf_ns.viewer.suggestions import Suggestions
from jacobinerf_ns.viewer.surface_check import SurfaceCheck
from jacobinerf_ns.viewer.surface_spread import SurfaceSpread

if TYPE_CHECKING:
    from nerfstudio.cameras.rays import RayBundle

    from jacobinerf_ns.model import JacobiNerfModel


class ViewerSession:
    """Selection, label clicks, suggestions, click-set files and recolouring of one model, with the viewer's settings.

    ``scene`` gives the run's :class:`~jacobinerf_ns.scene.Scene` (called once, when first needed). Without it
    (benchmarks) label clicks stay in nerfstudio's frame and cannot be saved or loaded, and nothing spreads over the
    surfaces (propagation ``nearest``). ``masks`` gives frames' masks (:func:`jacobinerf_ns.scene.frame_masks`), which
    labels and selections spread over the surfaces join; ``progress`` is told how rendering the training frames for
    the surface graph goes (once per run).
    """

    def __init__(
        self,
        model: JacobiNerfModel,
        scene: Optional[Callable[[], Scene]] = None,
        masks: Optional[Callable[[Sequence[Frame]], Optional[List[Optional[Tensor]]]]] = None,
        progress: Optional[Callable[[str], None]] = None,
    ) -> None:
        self.model = model
        self.settings = ViewerSettings() if scene is not None else ViewerSettings(propagation="nearest")
        self.surface_check = SurfaceCheck(model, lambda: self.scene)
        self.labels = LabelClicks(model, lambda: self.scene, self.publish, self.surface_check.warning)
        self.surface = SurfaceSpread(model, lambda: self.scene, self.labels, masks, progress)
        self.selection = Selection(model, self.settings, self.publish, self.surface_check.warning, self.surface.nodes)
        self.suggestions = Suggestions(model, self.settings, self.labels, self.surface.current)
        self.files = ClickFiles(model, self.labels, lambda: self.scene)
        self.recolor_delta: Optional[Tensor] = None
        self._scene_of = scene
        self._scene: Optional[Scene] = None

    @property
    def scene(self) -> Optional[Scene]:
        if self._scene is None and self._scene_of is not None:
            self._scene = self._scene_of()
        return self._scene

    def clear_labels(self) -> str:
        """Forgets every class, label click and skipped suggestion."""
        self.labels.clear()
        self.suggestions.dismissed = []
        return "Cleared every class and label click."

    def recolor(self, bundle: RayBundle, target: Tuple[float, float, float]) -> str:
        """Moves the clicked colour to ``target`` (RGB in [0, 1]) along its channel Jacobians."""
        click, message = surface_click(self.model, bundle)
        if click is None:
            return message
        head = click.head
        self.recolor_delta = jacobians.recolor_delta(
            head.weights[0], head.rgb[0], head.features[0], torch.tensor(target), self.model.config.shape_bias
        )
        self.publish()
        return "Recolored: move 'Recolor strength', or 'Reset colors' to restore the original colours."

    def reset_recolor(self) -> None:
        self.recolor_delta = None
        self.publish()

    def probe(self) -> Optional[Probe]:
        """The probe of the current state: sources = [selection] + label clicks (their
        :func:`~jacobinerf_ns.propagation.labelling.unit_perturbations`, as ``jacobinerf-label`` perturbs), and with
        propagation ``surface`` the surface scores [selection's share] + the labels' class scores, in that order;
        ``None`` when there is nothing."""
        settings, selected = self.settings, self.selection.clicked
        sources = ([selected.jacobian] if selected is not None else []) + [
            unit_perturbations(click.evaluated.jacobian) for click in self.labels.clicks
        ]
        recolor = None if self.recolor_delta is None else settings.recolor_strength * self.recolor_delta
        if not sources and recolor is None:
            return None
        selection_spread = self.selection.spread()
        readers = [] if selection_spread is None else [selection_spread.read_rays]
        if settings.propagation == "surface" and self.labels.clicks:
            readers.append(self.surface.current().read_rays)
        decoration = Decoration(
            space=settings.space,
            threshold=settings.threshold,
            selection_norm=None if selected is None else self.selection.jacobian_norm(),
            label_ids=self.labels.class_ids(),
            colors=self.labels.colors(),
            sigma=settings.sigma,
            selection_spread=selection_spread,
        )
        return Probe(
            torch.cat(sources) if sources else None,
            sigma=settings.sigma,
            recolor=recolor,
            decorate=partial(decorate, decoration=decoration),
            surface=partial(read_all, readers) if readers else None,
        )

    def set_propagation(self, propagation: str) -> str:
        """Labels and selection by the nearest click or spread over the surfaces (the training frames are rendered on
        first use)."""
        self.settings.propagation = propagation  # type: ignore[assignment]
        self.publish()
        if propagation == "nearest":
            return "Labels: each pixel takes the class of the click it looks most like (selection: by the threshold)."
        if not self.labels.clicks:
            return "Labels will spread over the surfaces once you paint a label (a selection spreads too)."
        return (
            f"Labels spread over the surfaces of the training frames ({self.surface.seconds:.1f} s): a click labels "
            "the whole surface it lies on, as jacobinerf-label --propagation surface."
        )

    def publish(self) -> None:
        """Makes the current state what the model's next renders show (:attr:`JacobiNerfModel.probe`)."""
        self.model.probe = self.probe()


def read_all(readers: List[Callable[[Tensor, Tensor], Tensor]], jacobians: Tensor, points: Tensor) -> Tensor:
    """The readers' ``(R, C_i)`` surface scores side by side: ``(R, Σ C_i)``."""
    return torch.cat([read(jacobians, points) for read in readers], dim=-1)
