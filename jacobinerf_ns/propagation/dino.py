"""DINO baselines, propagating clicks by DINO feature similarity.

* ``dino-2d``: per-pixel DINO features of each image (bilinear upsampling); a pixel takes the label of the most
  cosine-similar click. Space ``2d``.
* ``dino-field`` (DINO-NeRF style): an MLP ``d: F → 128 → C`` on the colour features, rendered
  ``D(r) = Σ_i w_i d(h_i)`` and regressed (MSE) to the DINO features of ``head_rays`` random training pixels, then
  propagated like ``dino-2d`` with the rendered features. Space ``3d``.

Both share JacobiNeRF's click logic (sparse: argmax; dense: adaptive selection by cosine + the aggregation MLP).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Dict

import torch
import torch.nn.functional as F
from torch import Tensor

from jacobinerf_ns.propagation.heads import fit_rendered_head, pixel_head_inputs, render_head
from jacobinerf_ns.propagation.protocol import (
    FittedPropagation,
    PropagationProtocol,
    PropagationViews,
    choose_clicks,
    click_decoders,
)
from jacobinerf_ns.surrogates import FeatureMapSurrogate

if TYPE_CHECKING:
    from jacobinerf_ns.model import JacobiNerfModel


def fit_feature_propagation(
    source_features: Tensor,
    target_features: Callable[[int], Tensor],
    space: str,
    views: PropagationViews,
    setting: str,
    protocol: PropagationProtocol,
    generator: torch.Generator,
) -> FittedPropagation:
    """Clicks on ``(H, W, C)`` feature maps; a pixel's score for click k is the cosine of their features."""
    unit_source = F.normalize(source_features.float(), dim=-1)

    def cosine(descriptors: Tensor, clicks: Tensor) -> Tensor:
        return descriptors @ clicks.T

    pixels, click_labels = choose_clicks(views, setting, protocol, generator, lambda: unit_source.flatten(0, 1), cosine)
    clicks = unit_source[pixels[:, 0], pixels[:, 1]]

    def scores(features: Tensor) -> Dict[str, Tensor]:
        return {space: cosine(F.normalize(features.float(), dim=-1), clicks)}

    decoders = click_decoders(
        setting, click_labels, (space,), lambda: scores(unit_source), views.source_labels, protocol, generator
    )
    return FittedPropagation(pixels, click_labels, lambda target: scores(target_features(target)), decoders)


def dino_maps(views: PropagationViews, images):
    """``(N, h, w, C)`` DINO features of image files: a tensor, or the extractor's on-disk
    :class:`~jacobinerf_ns.surrogates.feature_cache.FeatureMaps` (``maps[i]`` reads image ``i``'s map)."""
    if views.image_features is None:
        raise ValueError(
            "The dino-2d and dino-field baselines need DINO features (PropagationViews.image_features): the jacobinerf "
            "pipeline gives them, with timm's pretrained ViT-S/8 or local weights from "
            "`jacobinerf-eval --propagation.dino-weights PATH`."
        )
    return views.image_features(list(images))


def upsampled(maps: Tensor, height: int, width: int) -> Tensor:
    """``(N, h, w, C)`` → ``(N, H, W, C)`` bilinear, pixel centres aligned (as
    :func:`~jacobinerf_ns.surrogates.sample_bilinear`)."""
    maps = F.interpolate(maps.float().permute(0, 3, 1, 2), size=(height, width), mode="bilinear", align_corners=False)
    return maps.permute(0, 2, 3, 1)


def fit_dino_2d(
    model: JacobiNerfModel,
    views: PropagationViews,
    setting: str,
    protocol: PropagationProtocol,
    generator: torch.Generator,
) -> FittedPropagation:
    """DINO-2D: clicks matched by DINO feature similarity in each image; the NeRF plays no part."""
    height, width = views.source_labels.shape
    maps = dino_maps(views, [views.source_image, *views.target_images])  # one extraction call (one model load)
    source = upsampled(maps[0][None], height, width)[0]

    def target_features(target: int) -> Tensor:
        camera = views.target_cameras[target]
        return upsampled(maps[target + 1][None], int(camera.height), int(camera.width))[0]

    return fit_feature_propagation(source, target_features, "2d", views, setting, protocol, generator)


def fit_dino_field(
    model: JacobiNerfModel,
    views: PropagationViews,
    setting: str,
    protocol: PropagationProtocol,
    generator: torch.Generator,
) -> FittedPropagation:
    """DINO-NeRF style: a rendered feature head distilled from the training views' DINO features."""
    if views.train_cameras is None or not views.train_images:
        raise ValueError("dino-field needs the training cameras and images to distil DINO features from.")
    maps = dino_maps(views, views.train_images)
    height, width = int(views.train_cameras.height[0]), int(views.train_cameras.width[0])
    count = protocol.head_rays
    indices = torch.stack(
        [
            torch.randint(len(maps), (count,), generator=generator),
            torch.randint(height, (count,), generator=generator),
            torch.randint(width, (count,), generator=generator),
        ],
        dim=-1,
    )
    targets = FeatureMapSurrogate(maps, height, width).descriptors(indices)  # reads only the sampled pixels
    weights, features = pixel_head_inputs(model, views.train_cameras, indices)
    head = fit_rendered_head(weights, features, targets, targets.shape[-1], F.mse_loss, protocol, generator)

    def render(camera) -> Tensor:
        return render_head(model, camera, head)

    return fit_feature_propagation(
        render(views.source_camera),
        lambda target: render(views.target_cameras[target]),
        "3d",
        views,
        setting,
        protocol,
        generator,
    )
