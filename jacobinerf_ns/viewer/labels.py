"""The viewer's classes and label clicks, kept as click-set records, with their legend and markers.

A label click is kept as what a click-set file stores (:mod:`jacobinerf_ns.clicks`): a viewer click becomes a
:class:`~jacobinerf_ns.clicks.RayClick` in the original frame of the poses, a loaded click stays the pixel or ray
click it was. Its Jacobian is always computed from that record's ray, so a session saved and loaded again shows the
same labels. Classes keep their order (id = position + 1, colour ``palette(C + 1)[id]`` as ``jacobinerf-label``
draws them); a class stays when its last click is deleted, so ids and colours do not move.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from jacobinerf_ns.clicks import ClickSet, PixelClick, RayClick, Vector, vector
from jacobinerf_ns.errors import JacobiNerfError
from jacobinerf_ns.propagation.labelling import MIN_ACCUMULATION, ClickSurface, ResolvedClicks
from jacobinerf_ns.scene import Scene, click_rays
from jacobinerf_ns.viewer.click_evaluation import EvaluatedClick, evaluate_click, no_surface
from jacobinerf_ns.visualization import palette

if TYPE_CHECKING:
    from nerfstudio.cameras.rays import RayBundle

    from jacobinerf_ns.clicks import Click
    from jacobinerf_ns.model import JacobiNerfModel

VIEWER_SOURCE = "the viewer's clicks"
"""How messages name clicks made in the viewer."""


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
    color: Vector
    """In [0, 1]."""
    clicks: int


class LabelClicks:
    """Classes and label clicks on one model; ``scene()`` gives the run's :class:`~jacobinerf_ns.scene.Scene`
    (``None``: clicks stay in nerfstudio's frame), ``changed()`` runs after every change, ``check(click)`` says whether
    a new click's surface may be a floater (``""``: no)."""

    def __init__(
        self,
        model: JacobiNerfModel,
        scene: Callable[[], Optional[Scene]],
        changed: Callable[[], None],
        check: Callable[[EvaluatedClick], str],
    ) -> None:
        self.model, self.scene, self.changed, self.check = model, scene, changed, check
        self.classes: List[str] = []
        self.clicks: List[LabelClick] = []

    def add(self, bundle: RayBundle, name: str) -> str:
        """Labels the surface a viewer ray hits as class ``name`` (a new name adds a class)."""
        name = name.strip()
        if not name:
            return "Type a class name first: the label click paints that class."
        origin, direction = bundle.origins.reshape(3), bundle.directions.reshape(3)
        scene = self.scene()
        if scene is None:
            record, rays = RayClick(name, vector(origin), vector(direction)), bundle
        else:
            record = scene.ray_click(origin, direction, name)
            rays = click_rays(ClickSet((name,), (record,)), scene, VIEWER_SOURCE).bundle()
        click = evaluate_click(self.model, rays)
        if click.accumulation < MIN_ACCUMULATION:
            return no_surface(click)
        if name not in self.classes:
            self.classes.append(name)
        self.clicks.append(LabelClick(record, click))
        self.changed()
        return (
            f"Painted '{name}' ({self.count(name)} of {len(self.clicks)} label clicks): "
            "see the jacobinerf_labels and jacobinerf_confidence outputs." + self.check(click)
        )

    def replace(self, classes: Sequence[str], clicks: Sequence[LabelClick]) -> None:
        """The classes and label clicks become these (a loaded click set)."""
        self.classes, self.clicks = list(classes), list(clicks)
        self.changed()

    def count(self, name: str) -> int:
        return sum(click.label == name for click in self.clicks)

    def class_ids(self) -> Tuple[int, ...]:
        """Class id (position in the classes + 1) of each label click."""
        return tuple(self.classes.index(click.label) + 1 for click in self.clicks)

    def colors(self) -> Tensor:
        """``(C + 1, 3)`` class colours, 0 = unlabelled."""
        return palette(len(self.classes) + 1)

    def legend(self) -> List[LegendEntry]:
        colors = self.colors()
        return [
            LegendEntry(name, vector(colors[index + 1]), self.count(name)) for index, name in enumerate(self.classes)
        ]

    def markers(self) -> Tuple[np.ndarray, np.ndarray]:
        """``(N, 3)`` marker positions of the label clicks (nerfstudio's frame) and their class colours."""
        colors = self.colors()
        points = [click.evaluated.marker for click in self.clicks]
        shades = [colors[index].tolist() for index in self.class_ids()]
        return np.array(points, dtype=np.float32).reshape(-1, 3), np.array(shades, dtype=np.float32).reshape(-1, 3)

    def undo(self) -> str:
        if not self.clicks:
            return "No label clicks to undo."
        return self.delete(len(self.clicks) - 1)

    def delete(self, index: int) -> str:
        if not 0 <= index < len(self.clicks):
            return f"There is no label click {index + 1} ({len(self.clicks)} label clicks)."
        click = self.clicks.pop(index)
        self.changed()
        return f"Deleted label click {index + 1} ({click.describe()}); {len(self.clicks)} label clicks left."

    def clear(self) -> None:
        self.replace([], [])

    def resolved(self) -> ResolvedClicks:
        """The label clicks as :func:`~jacobinerf_ns.propagation.labelling.label_frame` takes them."""
        if not self.clicks:
            raise JacobiNerfError("Paint a label first: suggestions rank pixels by how well the clicks explain them.")
        return ResolvedClicks(
            jacobians=torch.cat([click.evaluated.jacobian for click in self.clicks]),
            class_ids=self.class_ids(),
            num_classes=len(self.classes),
            skipped=(),
            surfaces=tuple(
                ClickSurface(click.describe(), *map(torch.tensor, (click.evaluated.origin, click.evaluated.surface)))
                for click in self.clicks
            ),
        )
