"""A bank of pixels' ray Jacobians, computed once per field: every linear response of any click to them is a matmul.

Linear responses are ``σ |⟨J_p, J_k⟩|``; in this architecture 2D and 3D responses coincide (every Jacobian entry is
≥ 0: ``h ≥ 0``, sigmoid slope ≥ 0, weights ≥ 0), so the bank scores any click set of the protocol exactly as a
render with a probe would, without rendering again. What benchmarks use to score many click sets per checkpoint.
A bank can also keep its pixels' head inputs (rendering weights and colour features), so a head fitted on the frozen
field (:mod:`.heads`) is scored on the same pixels without rendering again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from jacobinerf_ns.propagation.labelling import weakest_region
from jacobinerf_ns.propagation.rendering import ray_jacobians

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
    accumulation: Tensor
    """``(P,)`` rendered opacity (a pixel hits a surface when it reaches ``labelling.MIN_ACCUMULATION``)."""
    head_weights: Optional[Tensor] = None
    """``(P, N, 1)`` float16 rendering weights of each pixel's samples (``build_bank``'s ``head_inputs``; ``None``:
    not kept)."""
    head_features: Optional[Tensor] = None
    """``(P, N, F)`` float16 colour features ``h_i`` of those samples."""


def grid_pixels(height: int, width: int, stride: int) -> Tensor:
    """``(P, 2)`` (y, x) of every ``stride``-th row and column, starting at ``stride // 2``."""
    ys, xs = torch.meshgrid(
        torch.arange(stride // 2, height, stride), torch.arange(stride // 2, width, stride), indexing="ij"
    )
    return torch.stack([ys.flatten(), xs.flatten()], dim=-1)


@torch.no_grad()
def build_bank(
    model: JacobiNerfModel, cameras: Sequence[Cameras], pixels: Sequence[Tensor], head_inputs: bool = False
) -> PixelBank:
    """The bank of ``pixels[v]`` ``(P_v, 2)`` (y, x) of each one-camera ``cameras[v]`` (chunked eval-mode passes).

    ``head_inputs`` also keeps every sample's weight and colour features: ``P × N × (F + 1)`` float16 values, the
    memory to budget (N samples per ray).
    """
    jacobians, colors, views, opacities, weights, features = [], [], [], [], [], []
    chunk = model.config.eval_num_rays_per_chunk
    for index, (camera, view_pixels) in enumerate(zip(cameras, pixels)):
        rays = camera.generate_rays(camera_indices=0, keep_shape=True)[view_pixels[:, 0], view_pixels[:, 1]]
        for start in range(0, len(rays), chunk):
            jacobian, outputs, head = ray_jacobians(model, rays[start : start + chunk])
            jacobians.append(jacobian.flatten(1).half().cpu())
            colors.append(outputs["rgb"].float().cpu())
            opacities.append(outputs["accumulation"].reshape(-1).float().cpu())
            if head_inputs:
                weights.append(head.weights.half().cpu())
                features.append(head.features.half().cpu())
        views.append(torch.full((len(view_pixels),), index))
    return PixelBank(
        torch.cat(jacobians),
        torch.cat(colors),
        torch.cat(views),
        torch.cat(list(pixels)),
        torch.cat(opacities),
        torch.cat(weights) if head_inputs else None,
        torch.cat(features) if head_inputs else None,
    )


def linear_scores(jacobians: Tensor, clicks: Tensor, chunk: int = 1 << 16) -> Tensor:
    """``(P, K)`` ``|⟨J_p, J_k⟩|`` for bank Jacobians ``(P, D)`` and click Jacobians ``(K, D)`` (float32, chunked)."""
    clicks = clicks.float().T
    return torch.cat(
        [(jacobians[start : start + chunk].float() @ clicks).abs() for start in range(0, len(jacobians), chunk)]
    )


def suggested_bank_pixels(
    guide: Tensor, hit: Tensor, grids: Sequence[Tuple[int, int]], window: int, count: int = 1
) -> List[int]:
    """Indices of the bank pixels *Suggest next click* points at, over views whose pixels are consecutive regular grids
    (``grids[v]`` = (rows, columns) of view v, row-major, e.g. :func:`grid_pixels`): each view's
    :func:`~.labelling.weakest_region` of ``guide`` on its grid, then the ``count`` views whose suggested box has the
    lowest mean, lowest first (pixels that hit nothing count as 1, as there). ``guide``, ``hit``: ``(P,)``; views
    where no pixel hits a surface suggest nothing."""
    found: List[Tuple[float, int]] = []
    start = 0
    for rows, columns in grids:
        view_guide = guide[start : start + rows * columns].view(rows, columns).float()
        view_hit = hit[start : start + rows * columns].view(rows, columns)
        where = weakest_region(view_guide, view_hit, window)
        if where is not None:
            y, x = where
            known = torch.where(view_hit, view_guide, torch.ones_like(view_guide))
            box = known[max(y - window // 2, 0) : y + window // 2 + 1, max(x - window // 2, 0) : x + window // 2 + 1]
            found.append((float(box.mean()), start + y * columns + x))
        start += rows * columns
    return [index for _, index in sorted(found)[:count]]


def suggested_bank_pixel(guide: Tensor, hit: Tensor, grids: Sequence[Tuple[int, int]], window: int) -> Optional[int]:
    """The first of :func:`suggested_bank_pixels` (``None`` when no pixel hits a surface)."""
    found = suggested_bank_pixels(guide, hit, grids, window)
    return found[0] if found else None
