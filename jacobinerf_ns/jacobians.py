"""Closed-form Jacobians of rendered colours w.r.t. the RGB head, and head perturbations.

Notation (per ray, samples i = 1..N): volume-rendering weights ``w_i`` (density only),
head inputs ``h_i ∈ R^F`` (trunk features), logits ``z_i = W h_i + b``, colours ``c_i = σ(z_i)``.
The rendered colour is ``C = Σ_i w_i c_i`` (+ a background term) and the paper's scalar per pixel
is the gray value ``g = (1/3) Σ_c C_c``.  Because ``∂c/∂z = c (1 - c)``::

    ray Jacobian      ∂g/∂W[c,:]   = (1/3) Σ_i w_i c_ic (1 - c_ic) h_i
    point Jacobian    ∂g_i/∂W[c,:] = (1/3) c_ic (1 - c_ic) h_i
    channel Jacobian  ∂C_c/∂W[c,:] = Σ_i w_i c_ic (1 - c_ic) h_i      (other rows zero)

(with ``h`` extended by a constant 1 when the bias is part of the shaped parameters).
These are ordinary differentiable tensors from the same forward pass, so the shaping loss is a
first-order loss on activations: no ``create_graph``, no per-ray autograd.

A ``last_sample`` background (nerfacto's default) adds ``(1 - Σ w) c_N``, which depends on the head;
it is the same as giving the last sample the residual weight, see :func:`effective_weights`.
Constant backgrounds (black, white, random) have zero Jacobian.

This module is the one place these formulas live: training, propagation and the viewer call it.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import torch
from torch import Tensor

GRAY = 1.0 / 3.0
"""∂g/∂C_c: the gray value is the mean of the three channels."""


class HeadInputs(NamedTuple):
    """What the head sees for a batch of R rays of N samples: enough to recompute colours and Jacobians for any head."""

    weights: Tensor
    """``(R, N, 1)`` effective rendering weights (background residual included, see :func:`effective_weights`)."""
    rgb: Tensor
    """``(R, N, 3)`` per-sample colours of the current head."""
    features: Tensor
    """``(R, N, F)`` head inputs ``h``."""


def effective_weights(weights: Tensor, background: str) -> Tensor:
    """Weights ``(..., N, 1)`` such that ``Σ_i w'_i c_i`` equals the rendered colour's head-dependent part.

    ``last_sample`` backgrounds render ``Σ w_i c_i + (1 - Σ w_i) c_N``: the residual moves onto sample N.
    """
    if background != "last_sample":
        return weights
    residual = 1.0 - weights.sum(dim=-2, keepdim=True)
    return torch.cat([weights[..., :-1, :], weights[..., -1:, :] + residual], dim=-2)


def with_bias_input(features: Tensor, shape_bias: bool) -> Tensor:
    """Head input whose outer product with ``∂c/∂z`` gives the gradient of ``[W | b]`` (or of ``W`` alone)."""
    if not shape_bias:
        return features
    return torch.cat([features, torch.ones_like(features[..., :1])], dim=-1)


def sigmoid_slope(rgb: Tensor) -> Tensor:
    """``∂c/∂z = c (1 - c)`` for ``c = sigmoid(z)``."""
    return rgb * (1.0 - rgb)


def ray_jacobian(weights: Tensor, rgb: Tensor, features: Tensor, shape_bias: bool = False) -> Tensor:
    """``∂g/∂[W|b]`` per ray, shape ``(R, 3, F[+1])``; weights ``(R,N,1)``, rgb ``(R,N,3)``, features ``(R,N,F)``."""
    slope = (weights * sigmoid_slope(rgb)).transpose(-1, -2)  # (R, 3, N)
    return GRAY * slope @ with_bias_input(features, shape_bias)


def point_jacobian(rgb: Tensor, features: Tensor, shape_bias: bool = False) -> Tensor:
    """``∂g_i/∂[W|b]`` per sample point, shape ``(R, N, 3, F[+1])``."""
    return GRAY * sigmoid_slope(rgb)[..., :, None] * with_bias_input(features, shape_bias)[..., None, :]


def channel_jacobian(weights: Tensor, rgb: Tensor, features: Tensor, channel: int, shape_bias: bool = False) -> Tensor:
    """``∂C_c/∂[W|b]`` per ray for one colour channel: row ``c`` of the ray Jacobian without the 1/3, others zero."""
    rows = ray_jacobian(weights, rgb, features, shape_bias) / GRAY
    keep = torch.zeros(3, 1, dtype=rows.dtype, device=rows.device)
    keep[channel] = 1.0
    return rows * keep


def flatten(jacobian: Tensor) -> Tensor:
    """``(..., 3, F) -> (..., 3F)``: the vector that the shaping loss and the responses compare."""
    return jacobian.flatten(start_dim=-2)


def head_colors(features: Tensor, weight: Tensor, bias: Optional[Tensor], delta: Optional[Tensor] = None) -> Tensor:
    """Per-sample colours ``σ((W + ΔW) h + b (+ Δb))``; ``delta`` has the Jacobian's shape ``(3, F[+1])``."""
    if delta is not None:
        weight = weight + delta[:, : weight.shape[1]]
        if delta.shape[1] > weight.shape[1]:
            bias = (bias if bias is not None else 0.0) + delta[:, -1]
    logits = features @ weight.T
    if bias is not None:
        logits = logits + bias
    return torch.sigmoid(logits)


def recolored(head: HeadInputs, weight: Tensor, bias: Optional[Tensor], delta: Tensor) -> Tensor:
    """Change ``(R, 3)`` of the rendered colour when the head moves by ``delta``:
    ``Σ_i w_i (σ((W + ΔW) h_i + b) − c_i)``.

    Exact for every background (the constant ones do not depend on the head; ``last_sample`` is in the weights).
    """
    return (head.weights * (head_colors(head.features, weight, bias, delta) - head.rgb)).sum(dim=-2)


def gray(colors: Tensor) -> Tensor:
    """``g = (1/3) Σ_c C_c``, keeping a trailing singleton dimension."""
    return colors.mean(dim=-1, keepdim=True)


def perturbed_gray_difference(
    weights: Tensor, features: Tensor, weight: Tensor, bias: Optional[Tensor], deltas: Tensor
) -> Tuple[Tensor, Tensor]:
    """Exact responses of K head perturbations, reusing one render's trunk features and weights.

    For ``deltas`` ``(K, 3, F[+1])`` returns ``(R, K)`` ray responses ``|g(θ+Δ_k) − g(θ)|`` (2D) and
    ``(R, K)`` composited point responses ``Σ_i w_i |g_i(θ+Δ_k) − g_i(θ)|`` (3D).
    Weights must already be :func:`effective_weights`.
    """
    base = gray(head_colors(features, weight, bias))  # (R, N, 1)
    ray_responses, point_responses = [], []
    for delta in deltas:
        diff = gray(head_colors(features, weight, bias, delta)) - base  # (R, N, 1)
        ray_responses.append((weights * diff).sum(dim=(-2, -1)).abs())
        point_responses.append((weights * diff.abs()).sum(dim=(-2, -1)))
    return torch.stack(ray_responses, dim=-1), torch.stack(point_responses, dim=-1)


ROUNDING = 1e-4
"""Relative size of the negative values that rounding leaves in factors that are ≥ 0 in exact arithmetic."""


def non_negative(factor: Tensor) -> bool:
    """``factor ≥ 0`` up to rounding: ``min ≥ −ROUNDING · max |factor|``. Render weights (``α·T``) and Jacobians
    (``c (1 − c)`` at ``c ≈ 1``) come out of float32 as small negatives (~1e-7), which must not force the slow path."""
    return bool(factor.min() >= -ROUNDING * factor.abs().max())


def ray_responses(ray_jacobians: Tensor, sources: Tensor) -> Tensor:
    """``(R, K)`` ``|⟨J_p, J_k⟩|`` of flat ray Jacobians ``(R, D)`` and sources ``(K, 3, F[+1])``."""
    return (ray_jacobians @ flatten(sources).T).abs()


def linear_responses(
    weights: Tensor, rgb: Tensor, features: Tensor, sources: Tensor, shape_bias: bool = False
) -> Tuple[Tensor, Tensor]:
    """First-order responses to perturbations ``Δ_k = σ J_k`` divided by σ: ``(R, K)`` 2D and 3D.

    2D: ``|⟨J_p, J_k⟩|`` with the ray Jacobian; 3D: ``Σ_i w_i |⟨j_i, J_k⟩|`` with the point Jacobians. When every
    factor is non-negative (``h ≥ 0`` from a ReLU trunk, ``c (1 − c) ≥ 0``, ``w ≥ 0``, and sources that are Jacobians
    of such a field), every ``⟨j_i, J_k⟩ ≥ 0`` and the 3D response *is* the 2D one: one ``(R, D)·(D, K)`` product.
    Otherwise ``⟨j_i, J_k⟩ = (1/3) Σ_c s_ic ⟨h_i, J_k[c]⟩`` is evaluated per sample, without forming the
    ``(R, N, 3, F)`` point Jacobians.
    """
    ray = ray_responses(flatten(ray_jacobian(weights, rgb, features, shape_bias)), sources)
    if all(non_negative(factor) for factor in (features, sources, weights)):
        return ray, ray
    inputs = with_bias_input(features, shape_bias)  # (R, N, F')
    projections = torch.einsum("rnf,kcf->rnkc", inputs, sources)  # ⟨h_i, J_k[c]⟩
    point = GRAY * (sigmoid_slope(rgb)[:, :, None, :] * projections).sum(dim=-1)  # (R, N, K) = ⟨j_i, J_k⟩
    return ray, (weights * point.abs()).sum(dim=1)


def recolor_delta(weights: Tensor, rgb: Tensor, features: Tensor, target: Tensor, shape_bias: bool = False) -> Tensor:
    """Head perturbation ``(3, F[+1])`` that moves one ray's colour ``C`` to ``target`` to first order.

    ``ΔW = Σ_c (t_c − C_c) J_c / ‖J_c‖²`` with the channel Jacobians ``J_c = ∂C_c/∂W`` (each touches row c only);
    in a shaped field the same perturbation recolours the whole entity the ray belongs to.
    Inputs are for a single ray: weights ``(N, 1)``, rgb ``(N, 3)``, features ``(N, F)``; ``target`` ``(3,)``.
    """
    rows = ray_jacobian(weights[None], rgb[None], features[None], shape_bias)[0] / GRAY  # row c = ∂C_c/∂W[c,:]
    color = (weights * rgb).sum(dim=0)
    step = (target.to(rows) - color) / rows.pow(2).sum(dim=-1).clamp_min(1e-12)
    return step[:, None] * rows
