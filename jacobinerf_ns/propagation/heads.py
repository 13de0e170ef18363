"""Heads on the frozen field's colour features ``h_i``, rendered like colour: ``Σ_i w_i head(h_i)``.

What the Semantic-NeRF-style and DINO-NeRF-style baselines fit after training (they train their branch jointly with
the radiance field; fitting on the frozen field lets one trained NeRF serve every row of a comparison).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Tuple

import torch
from torch import Tensor, nn

from jacobinerf_ns.propagation.protocol import PropagationProtocol, all_pixels, seeded
from jacobinerf_ns.propagation.rendering import eval_head_inputs

if TYPE_CHECKING:
    from nerfstudio.cameras.cameras import Cameras

    from jacobinerf_ns.model import JacobiNerfModel


def first_camera(pixels: Tensor) -> Tensor:
    """``(K, 2)`` (y, x) of a one-camera ``Cameras`` → ``(K, 3)`` (camera 0, y, x) for :func:`pixel_head_inputs`."""
    return torch.cat([torch.zeros_like(pixels[:, :1]), pixels], dim=-1)


def pixel_head_inputs(model: JacobiNerfModel, cameras: Cameras, indices: Tensor) -> Tuple[Tensor, Tensor]:
    """Rendering weights ``(R, N, 1)`` and colour features ``(R, N, F)`` of pixels ``(R, 3)`` = (camera, y, x)."""
    coords = indices[:, 1:].float() + 0.5  # pixel centres, as nerfstudio's ray generator
    bundle = cameras.generate_rays(camera_indices=indices[:, :1].long(), coords=coords)
    chunk = model.config.eval_num_rays_per_chunk
    weights, features = [], []
    for start in range(0, len(indices), chunk):
        _, head = eval_head_inputs(model, bundle[start : start + chunk])
        weights.append(head.weights)
        features.append(head.features)
    return torch.cat(weights), torch.cat(features)


def composite(head: nn.Module, weights: Tensor, features: Tensor) -> Tensor:
    """``Σ_i w_i head(h_i)``: a per-sample head rendered like colour, ``(R, C)``."""
    return (weights * head(features)).sum(dim=-2)


def fit_rendered_head(
    weights: Tensor,
    features: Tensor,
    targets: Tensor,
    out_dim: int,
    loss: Callable,
    protocol: PropagationProtocol,
    generator: torch.Generator,
) -> nn.Module:
    """An MLP ``F → 128 → out_dim`` fitted (Adam, ``head_steps``, 1024 rays a step) to render ``targets``."""
    with seeded(generator):
        head = nn.Sequential(nn.Linear(features.shape[-1], 128), nn.ReLU(), nn.Linear(128, out_dim))
    head = head.to(features.device)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-3)
    targets = targets.to(features.device)
    with torch.enable_grad():
        for _ in range(protocol.head_steps):
            batch = torch.randint(len(targets), (min(1024, len(targets)),), generator=generator).to(features.device)
            value = loss(composite(head, weights[batch], features[batch]), targets[batch])
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
    return head.eval()


@torch.no_grad()
def render_head(model: JacobiNerfModel, camera: Cameras, head: nn.Module) -> Tensor:
    """``(H, W, C)`` render of ``head`` for a one-camera ``camera`` (chunked like an eval render)."""
    height, width = int(camera.height), int(camera.width)
    indices = first_camera(all_pixels(height, width))
    chunk = model.config.eval_num_rays_per_chunk
    rendered = [
        composite(head, *pixel_head_inputs(model, camera, indices[start : start + chunk])).cpu()
        for start in range(0, len(indices), chunk)
    ]
    return torch.cat(rendered).view(height, width, -1)
