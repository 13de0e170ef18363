"""The paper's label-propagation baselines, fitted to the same source labels and scored by the same evaluation.

* ``semantic-head`` (Semantic-NeRF style): an MLP ``s: F → 128 → L`` on the field's colour features ``h_i`` (the
  RGB head's inputs), rendered like colour, ``S(r) = Σ_i w_i s(h_i)``, trained with cross-entropy on the source
  view's labelled pixels (sparse: the clicks; dense: ``head_rays`` random labelled pixels). Space ``3d``.
* ``dino-2d``: per-pixel DINO features of each image (bilinear upsampling); a pixel takes the label of the most
  cosine-similar click. Space ``2d``.
* ``dino-field`` (DINO-NeRF style): an MLP ``d: F → 128 → C`` on ``h_i``, rendered ``D(r) = Σ_i w_i d(h_i)`` and
  regressed (MSE) to the DINO features of ``head_rays`` random training pixels; propagates like ``dino-2d`` with
  the rendered features. Space ``3d``.

The feature methods share JacobiNeRF's click logic (sparse: argmax; dense: adaptive selection by cosine + the
aggregation MLP). Reduction: the heads are fitted after training, on the frozen field (Semantic-NeRF and DINO-NeRF
train their branch jointly with the radiance field), so every row of a comparison uses one trained NeRF.
"""

from __future__ import annotations

from typing import Callable, Dict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jacobinerf_ns.evaluation import (
    FittedPropagation,
    PropagationProtocol,
    PropagationViews,
    all_pixels,
    choose_clicks,
    click_decoders,
)
from jacobinerf_ns.propagation import eval_head_inputs, sample_clicks
from jacobinerf_ns.surrogates import FeatureMapSurrogate

# ---- heads on the frozen field's colour features --------------------------------------------------------------


def first_camera(pixels: Tensor) -> Tensor:
    """``(K, 2)`` (y, x) of a one-camera ``Cameras`` → ``(K, 3)`` (camera 0, y, x) for :func:`pixel_head_inputs`."""
    return torch.cat([torch.zeros_like(pixels[:, :1]), pixels], dim=-1)


def pixel_head_inputs(model, cameras, indices: Tensor):
    """Rendering weights ``(R, N, 1)`` and colour features ``(R, N, F)`` of pixels ``indices`` ``(R, 3)`` = (camera, y, x)."""
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
    """An MLP ``F → 128 → out_dim`` fitted (Adam, ``head_steps``, 1024 rays a step) so that its render matches ``targets``."""
    torch.manual_seed(int(torch.randint(1 << 30, (1,), generator=generator)))
    head = nn.Sequential(nn.Linear(features.shape[-1], 128), nn.ReLU(), nn.Linear(128, out_dim)).to(features.device)
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
def render_head(model, camera, head: nn.Module) -> Tensor:
    """``(H, W, C)`` render of ``head`` for a one-camera ``camera`` (chunked like an eval render)."""
    height, width = int(camera.height), int(camera.width)
    indices = first_camera(all_pixels(height, width))
    chunk = model.config.eval_num_rays_per_chunk
    rendered = [
        composite(head, *pixel_head_inputs(model, camera, indices[start : start + chunk])).cpu()
        for start in range(0, len(indices), chunk)
    ]
    return torch.cat(rendered).view(height, width, -1)


# ---- the baselines ----------------------------------------------------------------------------------------------


def fit_semantic_head(
    model, views: PropagationViews, setting: str, protocol: PropagationProtocol, generator: torch.Generator
) -> FittedPropagation:
    """Semantic-NeRF style: a rendered semantic head trained on the source view's labelled pixels."""
    labels = views.source_labels.long()
    if setting == "sparse":
        pixels, click_labels = sample_clicks(labels, protocol.clicks_per_class, generator)
    elif setting == "dense":
        labelled = torch.nonzero(labels > 0)
        pixels = labelled[torch.randperm(len(labelled), generator=generator)[: protocol.head_rays]]
        click_labels = labels[pixels[:, 0], pixels[:, 1]].tolist()
    else:
        raise ValueError(f"Unknown propagation setting {setting!r}: choose sparse or dense.")
    weights, features = pixel_head_inputs(model, views.source_camera, first_camera(pixels))
    num_labels = int(labels.max()) + 1
    head = fit_rendered_head(
        weights, features, torch.tensor(click_labels), num_labels, F.cross_entropy, protocol, generator
    )
    allowed = torch.full((num_labels,), float("-inf"))
    allowed[torch.tensor(sorted(set(click_labels)))] = 0.0  # predict only labels given on the source view

    def decode(logits: Tensor) -> Tensor:
        return (logits + allowed).argmax(dim=-1)

    return FittedPropagation(
        pixels,
        click_labels,
        lambda target: {"3d": render_head(model, views.target_cameras[target], head)},
        {"3d": decode},
    )


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


def dino_maps(views: PropagationViews, images) -> Tensor:
    """``(N, h, w, C)`` DINO features of image files (cached by the extractor)."""
    if views.image_features is None:
        raise ValueError(
            "The dino-2d and dino-field baselines need DINO features: give local ViT-S/8 weights with "
            "`jacobinerf-eval --propagation.dino-weights PATH` (or `--pipeline.datamanager.dino-weights PATH` at training)."
        )
    return views.image_features(list(images))


def upsampled(maps: Tensor, height: int, width: int) -> Tensor:
    """``(N, h, w, C)`` → ``(N, H, W, C)`` bilinear, pixel centres aligned (as :func:`~jacobinerf_ns.surrogates.sample_bilinear`)."""
    maps = F.interpolate(maps.float().permute(0, 3, 1, 2), size=(height, width), mode="bilinear", align_corners=False)
    return maps.permute(0, 2, 3, 1)


def fit_dino_2d(
    model, views: PropagationViews, setting: str, protocol: PropagationProtocol, generator: torch.Generator
) -> FittedPropagation:
    """DINO-2D: clicks matched by DINO feature similarity in each image; the NeRF plays no part."""
    height, width = views.source_labels.shape
    maps = dino_maps(
        views, [views.source_image, *views.target_images]
    )  # one extraction (one model load, one cache file)
    source = upsampled(maps[:1], height, width)[0]

    def target_features(target: int) -> Tensor:
        camera = views.target_cameras[target]
        return upsampled(maps[target + 1 : target + 2], int(camera.height), int(camera.width))[0]

    return fit_feature_propagation(source, target_features, "2d", views, setting, protocol, generator)


def fit_dino_field(
    model, views: PropagationViews, setting: str, protocol: PropagationProtocol, generator: torch.Generator
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
    targets = FeatureMapSurrogate(maps, height, width).descriptors(indices)
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
