"""JacobiNeRF's propagation: a pixel takes the label of the click whose head perturbation moves it most.

The clicks of every draw fitted by one :class:`JacobianPropagation` are probed together: each view (a source view, or
a target) is rendered once for all of them (:class:`SharedProbe`), whatever the number of draws, label kinds and
settings. The dense setting selects representative clicks by Jacobian similarity on the source view (every source
pixel's Jacobian, computed once per source view) and aggregates their responses with the protocol's MLP.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Hashable, List, Optional, Tuple

import torch
from torch import Tensor

from jacobinerf_ns.probe import RESPONSES, Probe
from jacobinerf_ns.propagation.protocol import (
    FittedPropagation,
    PropagationProtocol,
    PropagationViews,
    all_pixels,
    choose_clicks,
    click_decoders,
)
from jacobinerf_ns.propagation.rendering import pixel_jacobians, render_responses

if TYPE_CHECKING:
    from nerfstudio.cameras.cameras import Cameras

    from jacobinerf_ns.model import JacobiNerfModel


def abs_dot(descriptors: Tensor, clicks: Tensor) -> Tensor:
    """Jacobian similarity ``|⟨J_p, J_k⟩|`` (σ does not change the argmax)."""
    return (descriptors @ clicks.T).abs()


class SharedProbe:
    """The click Jacobians of many fits as one probe; the responses of the last rendered view are kept.

    Every fit adds its clicks (and gets its columns) before the first render; a view is then rendered once and each
    fit reads its columns of the ``(H, W, K)`` responses.
    """

    def __init__(self, model: JacobiNerfModel, sigma: float, mode: str) -> None:
        self.model, self.sigma, self.mode = model, sigma, mode
        self.sources: List[Tensor] = []
        self.count = 0
        self.view: Optional[Tuple[Hashable, Dict[str, Tensor]]] = None

    def add(self, jacobians: Tensor) -> slice:
        """Adds ``(K, 3, F[+1])`` click Jacobians; returns their columns in the responses."""
        self.sources.append(jacobians)
        self.count += len(jacobians)
        self.view = None
        return slice(self.count - len(jacobians), self.count)

    def probe(self) -> Probe:
        return Probe(torch.cat(self.sources), sigma=self.sigma, mode=self.mode)

    def keep(self, key: Hashable, outputs: dict) -> None:
        """Keeps the responses of a render made elsewhere with :meth:`probe` (ns-eval's photometric render)."""
        self.view = (key, {space: outputs[output].cpu() for space, output in RESPONSES.items()})

    def responses(self, key: Hashable, camera: Cameras) -> Dict[str, Tensor]:
        """``{space: (H, W, K)}`` of the view ``key`` (rendered now unless it is the one kept)."""
        if self.view is None or self.view[0] != key:
            self.keep(key, render_responses(self.model, camera, self.probe()))
        return self.view[1]  # type: ignore[index]


class JacobianPropagation:
    """JacobiNeRF: responses of the clicks' Jacobians (2D and 3D), every view rendered once for every draw."""

    def __init__(self, model: JacobiNerfModel, protocol: PropagationProtocol) -> None:
        self.model, self.protocol = model, protocol
        self.shared = SharedProbe(model, protocol.sigma, protocol.mode)
        self.source_jacobians: Dict[int, Tensor] = {}

    def descriptors(self, views: PropagationViews) -> Tensor:
        """``(H·W, D)``: every source pixel's Jacobian (dense selection), once per source camera."""
        key = views.source_index
        if key not in self.source_jacobians:
            height, width = views.source_labels.shape
            jacobians = pixel_jacobians(self.model, views.source_camera, all_pixels(height, width))
            self.source_jacobians[key] = jacobians.flatten(1)
        return self.source_jacobians[key]

    def target_probe(self) -> Optional[Probe]:
        return self.shared.probe() if self.shared.sources else None

    def keep_target(self, target: int, outputs: dict) -> None:
        self.shared.keep(("target", target), outputs)

    def fit(self, views: PropagationViews, setting: str, generator: torch.Generator) -> FittedPropagation:
        pixels, click_labels = choose_clicks(
            views, setting, self.protocol, generator, lambda: self.descriptors(views), abs_dot
        )
        columns = self.shared.add(pixel_jacobians(self.model, views.source_camera, pixels))

        def responses(key: Hashable, camera: Cameras) -> Dict[str, Tensor]:
            return {space: scores[..., columns] for space, scores in self.shared.responses(key, camera).items()}

        def source_scores() -> Dict[str, Tensor]:
            return responses(("source", views.source_index), views.source_camera)

        def target_scores(target: int) -> Dict[str, Tensor]:
            return responses(("target", target), views.target_cameras[target])

        decoders = click_decoders(
            setting, click_labels, tuple(RESPONSES), source_scores, views.source_labels, self.protocol, generator
        )
        return FittedPropagation(pixels, click_labels, target_scores, decoders)
