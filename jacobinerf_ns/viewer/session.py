"""The viewer's interaction state in plain Python (no viser): a selection, label clicks and their classes, a
recolouring.

Every change publishes one immutable :class:`~jacobinerf_ns.propagation.probe.Probe` on the model (sources =
[selection] + label clicks, the recolour perturbation, and the :class:`~.decoration.Decoration` that draws the
viewer's outputs); the model's renders read it once per frame. The head's parameters are never edited.

A label click is kept as what a click-set file stores (:mod:`jacobinerf_ns.clicks`): a viewer click becomes a
:class:`~jacobinerf_ns.clicks.RayClick` in the original frame of the poses, a loaded click stays the pixel or ray
click it was. Its Jacobian is always computed from that record's ray, so a session saved and loaded again shows the
same labels. Classes keep their order (id = position + 1, colour ``palette(C + 1)[id]`` as ``jacobinerf-label``
draws them); a class stays when its last click is deleted, so ids and colours do not move.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from jacobinerf_ns import jacobians
from jacobinerf_ns.clicks import ClickSet, PixelClick, RayClick, write_clicks
from jacobinerf_ns.errors import JacobiNerfError
from jacobinerf_ns.jacobians import HeadInputs
from jacobinerf_ns.propagation.labelling import (
    MIN_ACCUMULATION,
    SUGGESTION_WINDOW,
    ResolvedClicks,
    Scene,
    click_rays,
    keep_hits,
    label_frame,
    mean_over_hits,
    unit_perturbations,
    weakest_region,
)
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

    from jacobinerf_ns.clicks import Click
    from jacobinerf_ns.model import JacobiNerfModel

MARKER_DEPTH = 0.97
"""Markers sit on the clicked ray at this fraction of the depth it hit: just in front of the surface, so the
render's depth (which the viewer draws scene objects against) does not hide them."""
VIEWER_SOURCE = "the viewer's clicks"
"""How messages name clicks made in the viewer."""


@dataclass(frozen=True)
class EvaluatedClick:
    """One clicked ray, evaluated on the model: its Jacobian, head inputs, opacity, colour and where it hit."""

    jacobian: Tensor
    """``(1, 3, F[+1])``."""
    head: HeadInputs
    accumulation: float
    color: Tuple[float, float, float]
    marker: Tuple[float, float, float]
    """Where its marker is drawn (nerfstudio's frame): ``origin + MARKER_DEPTH · depth · direction``."""


def evaluate_rays(model: JacobiNerfModel, bundle: RayBundle) -> List[EvaluatedClick]:
    """The :class:`EvaluatedClick` of each ray of a flat bundle: one eval-mode forward pass per ray, so a click
    evaluates to the same bits alone (painted) or among others (loaded from a file)."""
    clicks = []
    for index in range(len(bundle)):
        ray = bundle[index : index + 1]
        jacobian, outputs, head = ray_jacobians(model, ray)
        depth = float(outputs["depth"].reshape(-1)[0])
        marker = ray.origins.reshape(3).cpu() + MARKER_DEPTH * depth * ray.directions.reshape(3).cpu()
        clicks.append(
            EvaluatedClick(
                jacobian=jacobian,
                head=head,
                accumulation=float(outputs["accumulation"].reshape(-1)[0]),
                color=tuple(round(float(c), 2) for c in outputs["rgb"].reshape(3)),  # type: ignore[arg-type]
                marker=_floats(marker),
            )
        )
    return clicks


def evaluate_click(model: JacobiNerfModel, bundle: RayBundle) -> EvaluatedClick:
    """The :class:`EvaluatedClick` of a one-ray bundle."""
    return evaluate_rays(model, bundle)[0]


def _floats(vector: Tensor) -> Tuple[float, float, float]:
    return tuple(float(v) for v in vector.reshape(3))  # type: ignore[return-value]


def no_surface(click: EvaluatedClick) -> str:
    return f"No surface along that ray (opacity {click.accumulation:.2f}): click on an object."


@dataclass(frozen=True)
class LabelClick:
    """A label click: the click-set record it is saved as, and its evaluation on the model."""

    record: Click
    evaluated: EvaluatedClick

    @property
    def label(self) -> str:
        return self.record.label

    def describe(self) -> str:
        """``chair · ray`` or ``chair · images/frame_00012.png (140.5, 88)``."""
        if isinstance(self.record, PixelClick):
            return f"{self.label} · {self.record.image} ({self.record.x:g}, {self.record.y:g})"
        return f"{self.label} · ray"


@dataclass(frozen=True)
class LegendEntry:
    name: str
    color: Tuple[float, float, float]
    """In [0, 1]."""
    clicks: int


@dataclass(frozen=True)
class Suggestion:
    """Where in one view the next label click helps most: the region the clicks explain least
    (:func:`~.labelling.weakest_region` of :func:`~.labelling.explained`)."""

    pixel: Tuple[int, int]
    """``(y, x)`` in the render it was found in."""
    explained: float
    """How well the clicks explain that pixel (best |cos| to a click's Jacobian)."""
    view_explained: float
    """The same, averaged over the view's pixels that hit a surface."""
    marker: Tuple[float, float, float]
    """Where its marker is drawn (nerfstudio's frame): on the pixel's ray, in front of every surface the marker
    covers on screen (the render's depth hides scene objects behind it; suggestions lie on object borders)."""
    marker_size: float
    """The marker's size (nerfstudio's units): it covers the ``SUGGESTION_WINDOW`` box on screen, near or far."""
    ray: RayBundle
    """The pixel's ray, a one-ray bundle of the judged camera (what :meth:`ViewerSession.dismiss` evaluates)."""


@dataclass(frozen=True)
class ViewRanking:
    """The training view the clicks explain least, judged from low-resolution renders."""

    index: int
    mean_explained: Tuple[float, ...]
    """Per training view."""
    suggestion: Optional[Suggestion]
    """The least-explained region of that view (``None`` when its rays hit nothing)."""


def low_resolution(camera: Cameras, max_side: int) -> Cameras:
    """A copy of a one-camera ``camera`` rescaled so that its longer side is at most ``max_side`` pixels."""
    camera = camera[0:1]
    scale = min(1.0, max_side / max(int(camera.height), int(camera.width)))
    if scale < 1.0:
        camera.rescale_output_resolution(scale)  # replaces the copy's intrinsics; the original is untouched
    return camera


class ViewerSession:
    """Selection, label clicks and recolouring of one model, with the viewer's settings.

    ``scene`` gives the run's :class:`~jacobinerf_ns.propagation.labelling.Scene` (called once, when first needed).
    Without it (benchmarks) label clicks stay in nerfstudio's frame and cannot be saved or loaded.
    """

    def __init__(self, model: JacobiNerfModel, scene: Optional[Callable[[], Scene]] = None) -> None:
        self.model = model
        self.sigma = 0.1
        self.threshold = 0.5
        self.space = "3d"
        self.recolor_strength = 1.0
        self.selection: Optional[EvaluatedClick] = None
        self.classes: List[str] = []
        self.label_clicks: List[LabelClick] = []
        self.dismissed: List[Tensor] = []
        """Jacobians ``(1, 3, F[+1])`` of suggestions the user had nothing to label at (kept until *Clear labels*)."""
        self.recolor_delta: Optional[Tensor] = None
        self._scene_of = scene
        self._scene: Optional[Scene] = None

    @property
    def scene(self) -> Optional[Scene]:
        if self._scene is None and self._scene_of is not None:
            self._scene = self._scene_of()
        return self._scene

    # ---- clicks ------------------------------------------------------------------------------------------------

    def hit(self, bundle: RayBundle) -> Tuple[Optional[EvaluatedClick], str]:
        """The click of a ray, or ``None`` and why when it hits no surface."""
        click = evaluate_click(self.model, bundle)
        if click.accumulation < MIN_ACCUMULATION:
            return None, no_surface(click)
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
        """Labels the surface a viewer ray hits as class ``name`` (a new name adds a class)."""
        name = name.strip()
        if not name:
            return "Type a class name first: the label click paints that class."
        origin, direction = bundle.origins.reshape(3), bundle.directions.reshape(3)
        scene = self.scene
        if scene is None:
            record, rays = RayClick(name, _floats(origin), _floats(direction)), bundle
        else:
            record = scene.ray_click(origin, direction, name)
            rays = click_rays(ClickSet((name,), (record,)), scene, VIEWER_SOURCE).bundle()
        click = evaluate_click(self.model, rays)
        if click.accumulation < MIN_ACCUMULATION:
            return no_surface(click)
        if name not in self.classes:
            self.classes.append(name)
        self.label_clicks.append(LabelClick(record, click))
        self.publish()
        return (
            f"Painted '{name}' ({self.count(name)} of {len(self.label_clicks)} label clicks): "
            "see the jacobinerf_labels and jacobinerf_confidence outputs."
        )

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

    # ---- labels ------------------------------------------------------------------------------------------------

    def count(self, name: str) -> int:
        return sum(click.label == name for click in self.label_clicks)

    def colors(self) -> Tensor:
        """``(C + 1, 3)`` class colours, 0 = unlabelled."""
        return palette(len(self.classes) + 1)

    def legend(self) -> List[LegendEntry]:
        colors = self.colors()
        return [
            LegendEntry(name, tuple(float(c) for c in colors[index + 1]), self.count(name))  # type: ignore[arg-type]
            for index, name in enumerate(self.classes)
        ]

    def markers(self) -> Tuple[np.ndarray, np.ndarray]:
        """``(N, 3)`` marker positions of the label clicks (nerfstudio's frame) and their class colours."""
        colors = self.colors()
        points = [click.evaluated.marker for click in self.label_clicks]
        shades = [colors[self.classes.index(click.label) + 1].tolist() for click in self.label_clicks]
        return np.array(points, dtype=np.float32).reshape(-1, 3), np.array(shades, dtype=np.float32).reshape(-1, 3)

    def undo(self) -> str:
        if not self.label_clicks:
            return "No label clicks to undo."
        return self.delete_click(len(self.label_clicks) - 1)

    def delete_click(self, index: int) -> str:
        if not 0 <= index < len(self.label_clicks):
            return f"There is no label click {index + 1} ({len(self.label_clicks)} label clicks)."
        click = self.label_clicks.pop(index)
        self.publish()
        return f"Deleted label click {index + 1} ({click.describe()}); {len(self.label_clicks)} label clicks left."

    def clear(self) -> str:
        self.classes, self.label_clicks, self.dismissed = [], [], []
        self.publish()
        return "Cleared every class and label click."

    def click_set(self) -> ClickSet:
        """The classes and label clicks as a click set of this scene (with its fingerprint)."""
        scene = self.scene
        if scene is None:
            raise JacobiNerfError("This viewer session has no dataset: its clicks cannot be saved.")
        return ClickSet(
            classes=tuple(self.classes),
            clicks=tuple(click.record for click in self.label_clicks),
            fingerprint=scene.fingerprint(),
        )

    def save(self, path: Path) -> str:
        click_set = self.click_set()
        write_clicks(path, click_set)
        return f"Saved {len(click_set.clicks)} clicks of {len(click_set.classes)} classes to {path}"

    def load(self, click_set: ClickSet, source: str, force: bool = False) -> str:
        """Replaces the classes and label clicks by those of ``click_set`` resolved on this run: clicks that hit
        nothing are skipped with a warning naming them; a set made on another scene is refused unless ``force``."""
        scene = self.scene
        if scene is None:
            raise JacobiNerfError("This viewer session has no dataset: clicks cannot be loaded into it.")
        other = None if click_set.fingerprint is None else click_set.fingerprint.mismatch(scene.fingerprint())
        if other and not force:
            raise JacobiNerfError(
                f"Clicks file {source} was made on another scene: {other}. "
                "Tick 'Load from another scene' to load it anyway."
            )
        loaded: List[LabelClick] = []
        skipped: Sequence[str] = ()
        if click_set.clicks:
            rays = click_rays(click_set, scene, source)
            evaluated = evaluate_rays(self.model, rays.bundle())
            accumulation = torch.tensor([click.accumulation for click in evaluated])
            jacobian = torch.cat([click.jacobian.cpu() for click in evaluated])
            skipped = keep_hits(click_set, rays.names, jacobian, accumulation, source).skipped
            loaded = [
                LabelClick(record, click)
                for record, click in zip(click_set.clicks, evaluated)
                if click.accumulation >= MIN_ACCUMULATION
            ]
        self.classes, self.label_clicks = list(click_set.classes), loaded
        self.publish()
        message = f"Loaded {len(loaded)} clicks of {len(self.classes)} classes from {source}"
        if other:
            message += f" (made on another scene: {other})"
        return message + "." + "".join(f" {warning}" for warning in skipped)

    # ---- what the next click should be -------------------------------------------------------------------------

    def resolved(self) -> ResolvedClicks:
        """The label clicks as :func:`~.labelling.label_frame` takes them."""
        if not self.label_clicks:
            raise JacobiNerfError("Paint a label first: suggestions rank pixels by how well the clicks explain them.")
        return ResolvedClicks(
            jacobians=torch.cat([click.evaluated.jacobian for click in self.label_clicks]),
            class_ids=tuple(self.classes.index(click.label) + 1 for click in self.label_clicks),
            num_classes=len(self.classes),
            skipped=(),
        )

    def suggest(self, camera: Cameras) -> Optional[Suggestion]:
        """The region of ``camera``'s render the clicks explain least (``None`` when its rays hit nothing)."""
        return self._judge(camera, self.resolved())[1]

    def dismiss(self, suggestion: Suggestion) -> str:
        """Nothing to label at ``suggestion`` (void, or not worth a class): what its pixel resembles counts as
        explained from now on, so suggestions move on; it labels nothing."""
        self.dismissed.append(evaluate_click(self.model, suggestion.ray).jacobian.cpu())
        return f"Skipped that suggestion ({len(self.dismissed)} skipped)"

    def _judge(self, camera: Cameras, clicks: ResolvedClicks) -> Tuple[float, Optional[Suggestion]]:
        """How well the clicks explain ``camera``'s render on average, and its least-explained region."""
        dismissed = torch.cat(self.dismissed) if self.dismissed else None
        labels = label_frame(self.model, camera, clicks, self.space, sigma=self.sigma, dismissed=dismissed)
        view_explained = mean_over_hits(labels.explained, labels.hit)
        pixel = weakest_region(labels.explained, labels.hit)
        if pixel is None:
            return view_explained, None
        y, x = pixel
        ray = camera.generate_rays(camera_indices=0, keep_shape=True)[y, x]
        reach = SUGGESTION_WINDOW  # the marker's footprint on screen, with a margin of its own size
        nearest = float(labels.depth[max(0, y - reach) : y + reach + 1, max(0, x - reach) : x + reach + 1].min())
        distance = MARKER_DEPTH * nearest
        marker = ray.origins.reshape(3).cpu() + distance * ray.directions.reshape(3).cpu()
        return view_explained, Suggestion(
            pixel=pixel,
            explained=float(labels.explained[y, x]),
            view_explained=view_explained,
            marker=_floats(marker),
            marker_size=distance * SUGGESTION_WINDOW / float(camera.fx[0, 0]),
            ray=ray.reshape((1,)),
        )

    def least_explained_view(
        self, cameras: Cameras, max_side: int, progress: Callable[[int, int], None] = lambda done, total: None
    ) -> ViewRanking:
        """Renders every camera with its longer side at most ``max_side`` pixels and ranks them by how well the
        clicks explain them on average; ``progress(done, total)`` after each."""
        clicks = self.resolved()
        means, suggestions = [], []
        for index in range(len(cameras)):
            mean, suggestion = self._judge(low_resolution(cameras[index : index + 1], max_side), clicks)
            means.append(mean)
            suggestions.append(suggestion)
            progress(index + 1, len(cameras))
        worst = int(np.argmin(means))
        return ViewRanking(index=worst, mean_explained=tuple(means), suggestion=suggestions[worst])

    # ---- state -------------------------------------------------------------------------------------------------

    def reset_recolor(self) -> None:
        self.recolor_delta = None
        self.publish()

    def self_responses(self, click: EvaluatedClick) -> Dict[str, Tensor]:
        """A click's response to its own perturbation, per space (the scale of "like the clicked pixel")."""
        weight, bias = self.model.head_parameters()
        probe = Probe(click.jacobian, sigma=self.sigma)
        responses = probe_responses(click.head, weight.detach(), bias.detach(), probe, self.model.config.shape_bias)
        return {space: responses[key][0, 0] for space, key in RESPONSES.items()}

    def probe(self) -> Optional[Probe]:
        """The probe of the current state: sources = [selection] + label clicks (their
        :func:`~.labelling.unit_perturbations`, as ``jacobinerf-label`` perturbs); ``None`` when there is nothing."""
        selected = [self.selection.jacobian] if self.selection is not None else []
        labelled = [unit_perturbations(click.evaluated.jacobian) for click in self.label_clicks]
        recolor = None if self.recolor_delta is None else self.recolor_strength * self.recolor_delta
        if not selected and not labelled and recolor is None:
            return None
        decoration = Decoration(
            space=self.space,
            threshold=self.threshold,
            selection_self_response=None if self.selection is None else self.self_responses(self.selection)[self.space],
            label_ids=tuple(self.classes.index(click.label) + 1 for click in self.label_clicks),
            colors=self.colors(),
        )
        sources = torch.cat(selected + labelled) if selected or labelled else None
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
