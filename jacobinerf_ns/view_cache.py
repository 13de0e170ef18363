"""The viewer's last field pass, kept so that a new click re-labels the view without rendering the field again.

A click changes the probe (responses to the clicks' Jacobians, the spread's class scores), not the field: the pixels'
ray Jacobians ``J_p`` and surface points stay what they were. When every factor of ``J_p`` is non-negative (the
case :func:`jacobinerf_ns.jacobians.linear_responses` takes its one-product path for), the linear responses are
``σ |⟨J_p, J_k⟩|`` in 2D and 3D alike, so a kept view answers any linear probe without recolouring
(:meth:`FieldView.probed`); the model renders the field again only when the camera changes, a training step changes
the field, or the probe needs more (:meth:`ViewCache.serves`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Dict, Optional, Tuple

import torch
from torch import Tensor

from jacobinerf_ns.jacobians import non_negative, ray_responses
from jacobinerf_ns.probe import JACOBIAN_NORM, RESPONSES, SURFACE_SCORES, Probe

if TYPE_CHECKING:
    from nerfstudio.cameras.cameras import Cameras


@dataclass(frozen=True)
class FieldView:
    """One camera's field pass: its outputs ``(H, W, ·)`` without a probe, and per pixel (row-major) the flat ray
    Jacobian ``(H·W, D)`` and surface point ``(H·W, 3)``; ``non_negative``: every pixel's per-sample factors were."""

    outputs: Dict[str, Tensor]
    jacobians: Tensor
    points: Tensor
    non_negative: bool

    def probed(self, probe: Optional[Probe]) -> Dict[str, Tensor]:
        """The outputs of a render with ``probe`` (before its decoration): the probe's responses
        ``σ |⟨J_p, J_k⟩|`` (2D = 3D), ``‖J_p‖`` and its surface scores."""
        height, width = self.outputs["rgb"].shape[:2]
        outputs = dict(self.outputs)
        if probe is None:
            return outputs
        if probe.sources is not None:
            responses = probe.sigma * ray_responses(self.jacobians, probe.sources.to(self.jacobians))
            responses = responses.view(height, width, -1)
            outputs[RESPONSES["2d"]] = outputs[RESPONSES["3d"]] = responses
            outputs[JACOBIAN_NORM] = self.jacobians.norm(dim=-1).view(height, width, 1)
        if probe.surface is not None:
            outputs[SURFACE_SCORES] = (
                probe.surface(self.jacobians, self.points).to(self.jacobians).view(height, width, -1)
            )
        return outputs


def camera_key(camera: Cameras) -> Tuple[float, ...]:
    """What a one-camera ``camera`` renders: pose, intrinsics, resolution, model and distortion."""
    parts = [camera.camera_to_worlds, camera.fx, camera.fy, camera.cx, camera.cy, camera.width, camera.height]
    parts += [camera.camera_type] + ([camera.distortion_params] if camera.distortion_params is not None else [])
    return tuple(torch.cat([part.flatten().double().cpu() for part in parts]).tolist())


class ViewCache:
    """The last camera's :class:`FieldView` (one: the viewer shows one view at a time)."""

    def __init__(self) -> None:
        self._view: Optional[Tuple[Tuple[float, ...], FieldView]] = None
        self.passes = 0
        """Field passes rendered (a render served from the kept view adds none)."""

    @staticmethod
    def serves(probe: Optional[Probe]) -> bool:
        """Whether a kept view can answer ``probe``: linear responses, no recolouring (it changes samples' colours)."""
        return probe is None or (probe.mode == "linear" and probe.recolor is None)

    def view(self, camera: Cameras, render: Callable[[], FieldView]) -> FieldView:
        """``camera``'s kept view, or ``render()``'s, kept."""
        key = camera_key(camera)
        if self._view is None or self._view[0] != key:
            self._view = (key, render())
            self.passes += 1
        return self._view[1]

    @property
    def kept(self) -> Optional[FieldView]:
        return None if self._view is None else self._view[1]

    def clear(self) -> None:
        """Forgets the kept view (the field changed)."""
        self._view = None


def answers(view: FieldView, probe: Optional[Probe]) -> bool:
    """Whether ``view``'s products give ``probe``'s responses exactly (``⟨j_i, J_k⟩ ≥ 0`` for every sample)."""
    return probe is None or probe.sources is None or (view.non_negative and non_negative(probe.sources))
