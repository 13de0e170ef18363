"""A viewer click evaluated on the model: the clicked ray's Jacobian, head inputs, opacity, colour and marker."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Optional, Tuple

from torch import Tensor

from jacobinerf_ns.clicks import Vector, vector
from jacobinerf_ns.jacobians import HeadInputs
from jacobinerf_ns.propagation.labelling import MIN_ACCUMULATION
from jacobinerf_ns.propagation.rendering import ray_jacobians

if TYPE_CHECKING:
    from nerfstudio.cameras.rays import RayBundle

    from jacobinerf_ns.model import JacobiNerfModel

MARKER_DEPTH = 0.97
"""Markers sit on the clicked ray at this fraction of the depth it hit: just in front of the surface, so the
render's depth (which the viewer draws scene objects against) does not hide them."""


@dataclass(frozen=True)
class EvaluatedClick:
    """One clicked ray, evaluated on the model: its Jacobian, head inputs, opacity, colour and where it hit."""

    jacobian: Tensor
    """``(1, 3, F[+1])``."""
    head: HeadInputs
    accumulation: float
    color: Vector
    origin: Vector
    """The ray's origin (nerfstudio's frame)."""
    surface: Vector
    """Where the ray meets the surface: ``origin + depth · direction``."""
    marker: Vector
    """Where its marker is drawn (nerfstudio's frame): ``origin + MARKER_DEPTH · depth · direction``."""


def evaluate_rays(model: JacobiNerfModel, bundle: RayBundle) -> List[EvaluatedClick]:
    """The :class:`EvaluatedClick` of each ray of a flat bundle: one eval-mode forward pass per ray, so a click
    evaluates to the same bits alone (painted) or among others (loaded from a file)."""
    clicks = []
    for index in range(len(bundle)):
        ray = bundle[index : index + 1]
        jacobian, outputs, head = ray_jacobians(model, ray)
        depth = float(outputs["depth"].reshape(-1)[0])
        origin, direction = ray.origins.reshape(3).cpu(), ray.directions.reshape(3).cpu()
        clicks.append(
            EvaluatedClick(
                jacobian=jacobian,
                head=head,
                accumulation=float(outputs["accumulation"].reshape(-1)[0]),
                color=tuple(round(float(c), 2) for c in outputs["rgb"].reshape(3)),  # type: ignore[arg-type]
                origin=vector(origin),
                surface=vector(origin + depth * direction),
                marker=vector(origin + MARKER_DEPTH * depth * direction),
            )
        )
    return clicks


def evaluate_click(model: JacobiNerfModel, bundle: RayBundle) -> EvaluatedClick:
    """The :class:`EvaluatedClick` of a one-ray bundle."""
    return evaluate_rays(model, bundle)[0]


def surface_click(model: JacobiNerfModel, bundle: RayBundle) -> Tuple[Optional[EvaluatedClick], str]:
    """The click of a one-ray bundle, or ``None`` and why when it hits no surface."""
    click = evaluate_click(model, bundle)
    if click.accumulation < MIN_ACCUMULATION:
        return None, no_surface(click)
    return click, ""


def no_surface(click: EvaluatedClick) -> str:
    return f"No surface along that ray (opacity {click.accumulation:.2f}): click on an object."
