"""The pixel bank: what a benchmark caches once per run (Jacobians, opacity, head inputs) and the click it suggests."""

from __future__ import annotations

import torch

from jacobinerf_ns.propagation.bank import build_bank, grid_pixels, suggested_bank_pixel, suggested_bank_pixels
from jacobinerf_ns.propagation.labelling import weakest_region
from tests.helpers import build_tiny_model, cameras_around_origin


def test_the_suggested_bank_pixel_is_the_weakest_box_of_all_views():
    grids = [(6, 8), (10, 12), (6, 8)]
    views = [torch.ones(rows, columns) for rows, columns in grids]
    views[1][6:9, 2:5] = 0.2  # an unsure region in view 1
    views[2][1:4, 4:7] = 0.4  # a less unsure one in view 2
    views[0][0, 7] = 0.0  # one unsure pixel in view 0: its box stays confident on average
    confidence = torch.cat([view.flatten() for view in views])
    hit = torch.ones_like(confidence, dtype=torch.bool)
    start = 6 * 8
    y, x = weakest_region(views[1], torch.ones(10, 12, dtype=torch.bool), 3)
    assert (y, x) == (7, 3)
    assert suggested_bank_pixel(confidence, hit, grids, 3) == start + y * 12 + x
    batch = suggested_bank_pixels(confidence, hit, grids, 3, count=5)
    assert batch[0] == start + y * 12 + x and batch[1] - start - 120 == 2 * 8 + 5, "views by their box's mean"
    assert len(batch) == 3, "one suggestion per view, at most"

    hit[start : start + 120] = False  # view 1 hits nothing: the next best view is 2
    pick = suggested_bank_pixel(confidence, hit, grids, 3)
    assert pick - start - 120 == 2 * 8 + 5
    assert suggested_bank_pixel(confidence, torch.zeros_like(hit), grids, 3) is None


def test_the_bank_keeps_jacobians_opacity_and_head_inputs_of_its_pixels():
    from jacobinerf_ns.propagation.heads import first_camera, pixel_head_inputs
    from jacobinerf_ns.propagation.rendering import pixel_jacobians

    model = build_tiny_model(seed=2).eval()
    cameras = cameras_around_origin(2, height=6, width=8)
    grid = grid_pixels(6, 8, 2)
    assert grid.tolist()[:5] == [[1, 1], [1, 3], [1, 5], [1, 7], [3, 1]]
    bank = build_bank(model, [cameras[0:1], cameras[1:2]], [grid, grid], head_inputs=True)
    assert bank.jacobians.dtype == torch.float16 and bank.view.tolist() == [0] * 12 + [1] * 12
    for view in range(2):
        rows = slice(12 * view, 12 * (view + 1))
        expected = pixel_jacobians(model, cameras[view : view + 1], grid).flatten(1)
        torch.testing.assert_close(bank.jacobians[rows].float(), expected, rtol=2e-3, atol=1e-5)
        weights, features = pixel_head_inputs(model, cameras[view : view + 1], first_camera(grid))
        torch.testing.assert_close(bank.head_weights[rows].float(), weights, rtol=2e-3, atol=1e-4)
        torch.testing.assert_close(bank.head_features[rows].float(), features, rtol=2e-3, atol=1e-4)
    assert bank.accumulation.shape == (24,) and bool(((bank.accumulation >= 0) & (bank.accumulation <= 1)).all())
    assert build_bank(model, [cameras[0:1]], [grid]).head_features is None
