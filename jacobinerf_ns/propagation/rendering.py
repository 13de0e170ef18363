"""Eval-mode passes of a trained model that propagation needs: the head inputs and Jacobians of rays and pixels, and
renders with a :class:`~jacobinerf_ns.probe.Probe` (the responses' math is :mod:`jacobinerf_ns.probe`).

Every pass runs the model in eval mode (deterministic sampling) and restores its mode afterwards.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Iterator, List, Literal, Sequence, Tuple

import torch
from torch import Tensor

from jacobinerf_ns import jacobians
from jacobinerf_ns.jacobians import HeadInputs
from jacobinerf_ns.probe import RESPONSES, Probe, assign_labels

if TYPE_CHECKING:
    from nerfstudio.cameras.cameras import Cameras
    from nerfstudio.cameras.rays import RayBundle

    from jacobinerf_ns.model import JacobiNerfModel


@contextlib.contextmanager
def eval_mode(model: JacobiNerfModel) -> Iterator[None]:
    """Within the block the model is in eval mode; its former mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@torch.no_grad()
def eval_head_inputs(model: JacobiNerfModel, bundle: RayBundle) -> Tuple[dict, HeadInputs]:
    """Eval-mode outputs and head inputs of a flat ray bundle."""
    with eval_mode(model):
        return model.get_outputs_with_head_inputs(bundle.to(model.device))


def ray_jacobians(model: JacobiNerfModel, bundle: RayBundle) -> Tuple[Tensor, dict, HeadInputs]:
    """Eval-mode ray Jacobians ``(R, 3, F[+1])`` of a flat ray bundle, with the outputs and head inputs of that pass."""
    outputs, head = eval_head_inputs(model, bundle)
    return jacobians.ray_jacobian(head.weights, head.rgb, head.features, model.config.shape_bias), outputs, head


def pixel_jacobians(model: JacobiNerfModel, camera: Cameras, pixels: Tensor) -> Tensor:
    """Ray Jacobians ``(K, 3, F[+1])`` of ``pixels`` ``(K, 2)`` = (y, x) of a one-camera ``camera`` (chunked)."""
    bundle = camera.generate_rays(camera_indices=0, keep_shape=True)[pixels[:, 0].long(), pixels[:, 1].long()]
    chunk = model.config.eval_num_rays_per_chunk
    return torch.cat([ray_jacobians(model, bundle[start : start + chunk])[0] for start in range(0, len(bundle), chunk)])


def render_responses(model: JacobiNerfModel, camera: Cameras, probe: Probe) -> dict:
    """One eval render of ``camera`` with ``probe``: rgb, depth, accumulation and the ``(H, W, K)`` responses."""
    with eval_mode(model), model.probing(probe):
        return model.get_outputs_for_camera(camera)


def propagate(
    model: JacobiNerfModel,
    source_camera: Cameras,
    pixels: Tensor,
    click_labels: Sequence[int],
    target_cameras: Sequence[Cameras],
    sigma: float = 0.1,
    mode: Literal["linear", "exact"] = "linear",
    space: Literal["2d", "3d"] = "3d",
) -> List[Tensor]:
    """Clicks ``pixels`` ``(K, 2)`` (y, x) with ``click_labels`` on ``source_camera`` → ``(H, W)`` label map per target.

    Example::

        _, pipeline, _, _ = eval_setup(Path("outputs/.../config.yml"), test_mode="test")
        cameras = pipeline.datamanager.eval_dataset.cameras
        maps = propagate(pipeline.model, pipeline.datamanager.train_dataset.cameras[0:1],
                         torch.tensor([[40, 60], [10, 5]]), [3, 7], [cameras[i : i + 1] for i in range(len(cameras))])
    """
    probe = Probe(sources=pixel_jacobians(model, source_camera, pixels), sigma=sigma, mode=mode)
    return [
        assign_labels(render_responses(model, camera, probe)[RESPONSES[space]], click_labels)
        for camera in target_cameras
    ]
