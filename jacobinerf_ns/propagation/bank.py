"""A bank of pixels' ray Jacobians, computed once per field: every linear response of any click to them is a matmul.

Linear responses are ``σ |⟨J_p, J_k⟩|``; in this architecture 2D and 3D responses coincide (every Jacobian entry is
≥ 0: ``h ≥ 0``, sigmoid slope ≥ 0, weights ≥ 0), so the bank scores any click set of the protocol exactly as a
render with a probe would, without rendering again. What benchmarks use to score many click sets per checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch
from torch import Tensor

from jacobinerf_ns.propagation.probe import ray_jacobians

if TYPE_CHECKING:
    from nerfstudio.cameras.cameras import Cameras

    from jacobinerf_ns.model import JacobiNerfModel


@dataclass
class PixelBank:
    """``P`` pixels of some views: flattened ray Jacobians (fp16), rendered colours, view index and (y, x)."""

    jacobians: Tensor
    """``(P, D)`` float16."""
    rgb: Tensor
    """``(P, 3)`` rendered colour in [0, 1]."""
    view: Tensor
    """``(P,)`` index of the view in the list the bank was built from."""
    pixels: Tensor
    """``(P, 2)`` (y, x)."""


def grid_pixels(height: int, width: int, stride: int) -> Tensor:
    """``(P, 2)`` (y, x) of every ``stride``-th row and column, starting at ``stride // 2``."""
    ys, xs = torch.meshgrid(
        torch.arange(stride // 2, height, stride), torch.arange(stride // 2, width, stride), indexing="ij"
    )
    return torch.stack([ys.flatten(), xs.flatten()], dim=-1)


@torch.no_grad()
def build_bank(model: JacobiNerfModel, cameras: Sequence[Cameras], pixels: Sequence[Tensor]) -> PixelBank:
    """The bank of ``pixels[v]`` ``(P_v, 2)`` (y, x) of each one-camera ``cameras[v]`` (chunked eval-mode passes)."""
    jacobians, colors, views = [], [], []
    chunk = model.config.eval_num_rays_per_chunk
    for index, (camera, view_pixels) in enumerate(zip(cameras, pixels)):
        rays = camera.generate_rays(camera_indices=0, keep_shape=True)[view_pixels[:, 0], view_pixels[:, 1]]
        for start in range(0, len(rays), chunk):
            jacobian, outputs, _ = ray_jacobians(model, rays[start : start + chunk])
            jacobians.append(jacobian.flatten(1).half().cpu())
            colors.append(outputs["rgb"].float().cpu())
        views.append(torch.full((len(view_pixels),), index))
    return PixelBank(torch.cat(jacobians), torch.cat(colors), torch.cat(views), torch.cat(list(pixels)))


def linear_scores(jacobians: Tensor, clicks: Tensor, chunk: int = 1 << 16) -> Tensor:
    """``(P, K)`` ``|⟨J_p, J_k⟩|`` for bank Jacobians ``(P, D)`` and click Jacobians ``(K, D)`` (float32, chunked)."""
    clicks = clicks.float().T
    return torch.cat(
        [(jacobians[start : start + chunk].float() @ clicks).abs() for start in range(0, len(jacobians), chunk)]
    )
