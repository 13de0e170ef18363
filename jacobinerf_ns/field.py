"""Nerfacto field whose colour branch ends in a plain, shapeable ``torch.nn.Linear`` RGB head.

The parent's ``mlp_head`` becomes the colour *trunk* (tcnn or torch); it now outputs head inputs
``h ∈ R^F`` (ReLU) instead of colours. The head ``c = sigmoid(W h + b)`` is always torch, so its
Jacobian has the closed form of :mod:`jacobinerf_ns.jacobians` on every machine (tcnn has no
double backward, and none is needed).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Dict, Iterator, List, Literal, Optional, Tuple

from nerfstudio.cameras.rays import RaySamples
from nerfstudio.field_components.field_heads import FieldHeadNames
from nerfstudio.field_components.mlp import MLP
from nerfstudio.fields.nerfacto_field import NerfactoField
from torch import Tensor, nn

from jacobinerf_ns.jacobians import head_colors

HEAD_FEATURES = "head_features"
"""Key of the per-sample head inputs ``h`` in the field's outputs."""


class JacobiNerfField(NerfactoField):
    """``NerfactoField`` with colour = ``sigmoid(rgb_head(trunk(...)))``; ``rgb_head`` is the shaped layer."""

    def __init__(
        self,
        *args,
        head_in_dim: int = 128,
        num_layers_color: int = 3,
        hidden_dim_color: int = 64,
        implementation: Literal["tcnn", "torch"] = "torch",
        **kwargs,
    ) -> None:
        if num_layers_color < 2:
            raise ValueError(f"num_layers_color must be >= 2 (trunk layers + the RGB head), got {num_layers_color}")
        super().__init__(
            *args,
            num_layers_color=num_layers_color,
            hidden_dim_color=hidden_dim_color,
            implementation=implementation,
            **kwargs,
        )
        # The trunk replaces the parent's colour MLP: same input, `num_layers_color - 1` layers, ReLU features out.
        self.mlp_head = MLP(
            in_dim=self.mlp_head.in_dim,
            num_layers=num_layers_color - 1,
            layer_width=hidden_dim_color,
            out_dim=head_in_dim,
            activation=nn.ReLU(),
            out_activation=nn.ReLU(),
            implementation=implementation,
        )
        self.rgb_head = nn.Linear(head_in_dim, 3)
        self._recording = threading.local()  # per thread: the viewer renders while clicks are handled

    @contextlib.contextmanager
    def recording(self) -> Iterator[List[Tuple[RaySamples, Dict]]]:
        """Collects ``(ray_samples, field_outputs)`` of every forward pass inside the block (models call
        ``forward`` directly, so no hook).

        Re-entrant (a nested block shares the outer block's list) and per thread.
        """
        recorded = getattr(self._recording, "passes", None)
        if recorded is not None:
            yield recorded
            return
        self._recording.passes = []
        try:
            yield self._recording.passes
        finally:
            self._recording.passes = None

    def forward(self, ray_samples: RaySamples, compute_normals: bool = False) -> Dict:
        outputs = super().forward(ray_samples, compute_normals=compute_normals)
        recorded = getattr(self._recording, "passes", None)
        if recorded is not None:
            recorded.append((ray_samples, outputs))
        return outputs

    def get_outputs(self, ray_samples: RaySamples, density_embedding: Optional[Tensor] = None) -> Dict:
        outputs = super().get_outputs(ray_samples, density_embedding)
        # The parent stores its colour MLP's output (here: the trunk features) under RGB.
        features = outputs[FieldHeadNames.RGB].to(self.rgb_head.weight.dtype)  # tcnn trunks output half
        outputs[HEAD_FEATURES] = features
        outputs[FieldHeadNames.RGB] = head_colors(features, self.rgb_head.weight, self.rgb_head.bias)
        return outputs
