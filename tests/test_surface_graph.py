"""The surface graph (:mod:`jacobinerf_ns.propagation.surface_graph`): spreading checked against its plain dense form,
and the case it exists for: an object whose Jacobians change across its surface, one click on one part."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jacobinerf_ns.propagation.labelling import confidence, label_ids
from jacobinerf_ns.propagation.surface_graph import (
    ALPHA,
    build_surface_graph,
    class_scores,
    kernel,
    mask_key,
    unit_rows,
)
from jacobinerf_ns.propagation.surface_labelling import MIN_MASK_RESEMBLANCE


def dense_spread(graph, seeds: np.ndarray, num_classes: int, steps: int) -> np.ndarray:
    """``Σ_{t<T} (αS)^t (1 − α) Y + (αS)^T Y`` with a dense ``S``: ``T`` steps of ``F ← αSF + (1 − α)Y`` from Y."""
    step = ALPHA * graph.affinity.toarray().astype(np.float64)
    initial = np.zeros((len(graph), num_classes))
    initial[np.flatnonzero(seeds >= 0), seeds[seeds >= 0]] = 1.0
    series = sum(np.linalg.matrix_power(step, t) for t in range(steps))
    return (1.0 - ALPHA) * series @ initial + np.linalg.matrix_power(step, steps) @ initial


def test_spreading_is_the_plain_series_of_the_normalised_affinity():
    rng = np.random.default_rng(0)
    points, jacobians = rng.normal(size=(40, 3)), np.abs(rng.normal(size=(40, 6)))
    graph = build_surface_graph(points, jacobians, neighbours=5, tau=0.2)
    dense = graph.affinity.toarray()
    np.testing.assert_allclose(dense, dense.T, atol=1e-7)  # symmetrised
    degree = (dense > 0).sum(axis=1)
    assert degree.min() >= 5  # each node keeps its own neighbours, and gains those that chose it
    seeds = np.full(40, -1)
    seeds[[3, 17, 29]] = [0, 1, 1]
    np.testing.assert_allclose(graph.spread(seeds, 2, steps=12), dense_spread(graph, seeds, 2, 12), rtol=1e-4,
                               atol=1e-6)  # fmt: skip


def test_spreads_kept_per_seed_add_up_to_the_spread_of_all_seeds():
    """Spreading is linear in the seeds: a click set's spread is the sum of its clicks' own spreads, each computed
    once (a new click costs one spread)."""
    rng = np.random.default_rng(2)
    graph = build_surface_graph(rng.normal(size=(60, 3)), np.abs(rng.normal(size=(60, 4))), neighbours=6, tau=0.3)
    nodes, classes = np.array([4, 19, 33, 50]), np.array([0, 1, 1, 2])
    seeds = np.full(60, -1)
    seeds[nodes] = classes
    columns = {}
    np.testing.assert_allclose(graph.spread_seeds(nodes[:3], classes[:3], 3, columns), graph.spread(np.where(
        np.isin(np.arange(60), nodes[:3]), seeds, -1), 3), rtol=1e-4, atol=1e-6)  # fmt: skip
    assert sorted(columns) == [4, 19, 33]
    kept = columns[19]
    np.testing.assert_allclose(graph.spread_seeds(nodes, classes, 3, columns), graph.spread(seeds, 3), rtol=1e-4,
                               atol=1e-6)  # fmt: skip
    assert columns[19] is kept, "a seed's spread is computed once"


def test_a_click_seeds_the_most_alike_of_the_nodes_near_it():
    points = np.array([[0.0, 0, 0], [0.01, 0, 0], [0.02, 0, 0], [5.0, 0, 0]])
    jacobians = np.array([[1.0, 0], [0.0, 1.0], [1.0, 0.1], [0.0, 1.0]])
    graph = build_surface_graph(points, jacobians, neighbours=2)
    near, far = np.array([[0.0, 0, 0]]), np.array([[4.9, 0, 0]])
    assert graph.seed_nodes(near, unit_rows(np.array([[0.0, 1.0]])))[0] == 1  # the nearest node alike, not node 0
    assert graph.seed_nodes(far, unit_rows(np.array([[1.0, 0.0]])))[0] in (0, 2)  # alike, though farther


def test_the_edge_weights_are_the_jacobian_kernel():
    points = np.array([[0.0, 0, 0], [0.1, 0, 0]])
    jacobians = np.array([[1.0, 0.0], [0.6, 0.8]])  # cos 0.6
    graph = build_surface_graph(points, jacobians, neighbours=1, tau=0.1)
    weight = float(kernel(unit_rows(jacobians[:1]), unit_rows(jacobians[1:]), 0.1)[0])
    assert weight == pytest.approx(np.exp(-4.0))
    # S = D^-½ W D^-½ with one edge each: the normalised weight of a single edge is 1 whatever its weight
    assert graph.affinity.toarray()[0, 1] == pytest.approx(1.0)


def test_the_affinity_is_the_kernel_graph_of_each_node_and_its_nearest_nodes():
    """``S = D^-½ W D^-½``, ``W = max(W, Wᵀ)``, ``W_ij`` the Jacobian kernel for ``j`` among the ``k`` nodes nearest
    ``i``: built here densely, edge by edge (the graph gathers the Jacobians one neighbour at a time)."""
    rng = np.random.default_rng(3)
    count, neighbours, tau = 50, 6, 0.3
    points, jacobians = rng.normal(size=(count, 3)), rng.normal(size=(count, 7))
    graph = build_surface_graph(points, jacobians, neighbours=neighbours, tau=tau)
    unit = jacobians / np.linalg.norm(jacobians, axis=1, keepdims=True)
    distances = np.linalg.norm(points[:, None] - points[None], axis=-1)
    weights = np.zeros((count, count))
    for i in range(count):
        for j in np.argsort(distances[i])[1 : neighbours + 1]:
            weights[i, j] = np.exp(-(1.0 - abs(unit[i] @ unit[j])) / tau)
    weights = np.maximum(weights, weights.T)
    inverse_root = 1.0 / np.sqrt(weights.sum(axis=1))
    expected = inverse_root[:, None] * weights * inverse_root[None, :]
    np.testing.assert_allclose(graph.affinity.toarray(), expected, rtol=1e-5, atol=1e-7)


def sphere(centre, radius, count, rng) -> np.ndarray:
    directions = rng.normal(size=(count, 3))
    return np.asarray(centre) + radius * directions / np.linalg.norm(directions, axis=1, keepdims=True)


def test_a_click_on_one_colour_of_an_object_labels_the_whole_object():
    """A two-coloured ball (its upper and lower halves have unlike Jacobians, cos 0.3) standing apart from a box whose
    Jacobians are more like the lower half's (cos 0.6); one click on the upper half, one on the box. Nearest-click
    labels give the lower half the box's class; spreading over the surfaces gives it the ball's, and the box stays
    the box."""
    rng = np.random.default_rng(1)
    upper, lower = np.eye(3)[0], 0.3 * np.eye(3)[0] + np.sqrt(1 - 0.09) * np.eye(3)[1]
    box_look = 0.6 * lower + 0.8 * np.cross(upper, lower)  # cos(box, lower) = 0.6, cos(box, upper) = 0
    ball = sphere((0.0, 0.0, 0.3), 0.3, 3000, rng)
    box = rng.uniform((1.0, -0.3, 0.0), (1.6, 0.3, 0.6), size=(2000, 3))  # a block, 0.7 from the ball
    on_top = ball[:, 2] > 0.3
    looks = np.concatenate([np.where(on_top[:, None], upper, lower), np.repeat(box_look[None], len(box), 0)])
    jacobians = np.abs(looks + 0.03 * rng.normal(size=looks.shape))  # every Jacobian entry is ≥ 0 (DESIGN §6)
    points = np.concatenate([ball, box])
    truth = np.concatenate([np.zeros(len(ball), int), np.ones(len(box), int)])
    clicks = [int(np.flatnonzero(on_top)[0]), len(ball)]  # the ball's upper half, the box

    unit = unit_rows(jacobians)
    nearest = np.abs(unit @ unit[clicks].T).argmax(axis=1)  # the click each point's Jacobian is most like
    assert np.mean(nearest[: len(ball)][~on_top] == 0) < 0.05, "nearest-click labels miss the ball's other colour"

    graph = build_surface_graph(points, jacobians)
    seeds = np.full(len(points), -1)
    seeds[clicks] = [0, 1]
    spread = graph.spread(seeds, 2).argmax(axis=1)
    assert np.mean(spread[: len(ball)] == 0) > 0.99, "the whole ball"
    assert np.mean(spread[len(ball) :] == 1) > 0.99, "the box stays the box"
    # the product's scores (the spread's share × the class's resemblance⁴) keep both
    labels = class_scores(graph.spread(seeds, 2), np.abs(unit @ unit[clicks].T)).argmax(axis=1)
    assert np.mean(labels[: len(ball)] == 0) > 0.99 and np.mean(labels[len(ball) :] == 1) > 0.99
    # points read from the graph (a frame's pixels) take the spread of the nodes around them
    queries = sphere((0.0, 0.0, 0.3), 0.3, 500, rng)
    query_looks = np.where(queries[:, 2:3] > 0.3, upper, lower)
    read = graph.read(graph.spread(seeds, 2), queries, unit_rows(query_looks)).argmax(axis=1)
    assert np.mean(read == truth[0]) > 0.99


def test_a_class_does_not_reach_a_point_that_resembles_none_of_its_clicks():
    """``class_scores``' gate: a class scores 0 where the point's resemblance to it is below ``min_resemblance``
    however much of the spread it has, and a point no class reaches stays unlabelled."""
    spread = np.array([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8]])
    resemblance = np.array([[0.9, 0.2], [0.3, 0.4], [0.6, 0.49]])
    np.testing.assert_allclose(class_scores(spread, resemblance, power=1), spread * resemblance)
    gated = class_scores(spread, resemblance, power=1, min_resemblance=0.5)
    np.testing.assert_allclose(gated, [[0.81, 0.0], [0.0, 0.0], [0.12, 0.0]])
    scores = torch.from_numpy(gated)
    assert label_ids(scores, confidence(scores)).tolist() == [1, 0, 1], "the middle point resembles no class"


def test_a_point_the_clicks_explain_poorly_takes_no_class():
    """``class_scores``' ``min_score``: every class scores 0 at a point whose best score is below it (the sky whose
    masks resemble a class just past the gate), and a point whose best score reaches it keeps all of its scores."""
    spread = np.array([[0.9, 0.1], [1.0, 0.0], [0.5, 0.5]])
    resemblance = np.array([[0.9, 0.5], [0.4, 0.1], [0.8, 0.6]])
    plain = class_scores(spread, resemblance, power=2)
    np.testing.assert_allclose(plain, [[0.729, 0.025], [0.16, 0.0], [0.32, 0.18]])
    floored = class_scores(spread, resemblance, power=2, min_score=0.2)
    np.testing.assert_allclose(floored, [[0.729, 0.025], [0.0, 0.0], [0.32, 0.18]])
    scores = torch.from_numpy(floored)
    assert label_ids(scores, confidence(scores)).tolist() == [1, 0, 1], "the middle point is explained poorly"
    assert class_scores(spread[:, :0], resemblance[:, :0], min_score=0.2).shape == (3, 0), "no class: no scores"


def test_a_selection_keeps_to_the_clicked_object_and_leaves_its_look_alike():
    """Two balls that look alike (same Jacobians) on a floor that does not, two metres apart; one click on the first.
    Selecting by the Jacobians alone (``|cos| > 0.8``, the viewer's rule) takes both balls; the selection spread over
    the surfaces takes the clicked ball only: the look-alike is reached across the floor by the rest, not the click."""
    rng = np.random.default_rng(2)
    ball_look, floor_look = np.array([1.0, 0.1, 0.0]), np.array([0.0, 0.2, 1.0])
    first, second = sphere((0.0, 0.0, 0.3), 0.3, 1500, rng), sphere((2.0, 0.0, 0.3), 0.3, 1500, rng)
    floor = np.column_stack([rng.uniform(-1.0, 3.0, 6000), rng.uniform(-1.0, 1.0, 6000), np.zeros(6000)])
    points = np.concatenate([first, second, floor])
    looks = np.concatenate([np.repeat(ball_look[None], 3000, 0), np.repeat(floor_look[None], 6000, 0)])
    jacobians = np.abs(looks + 0.03 * rng.normal(size=looks.shape))
    click = int(first[:, 2].argmax())  # the top of the first ball

    unit = unit_rows(jacobians)
    by_cosine = np.abs(unit @ unit[click]) > 0.8
    assert by_cosine[:1500].mean() > 0.99 and by_cosine[1500:3000].mean() > 0.99, "the look-alike is selected too"

    selected = build_surface_graph(points, jacobians).selection_share(click) > 0.5
    assert selected[:1500].mean() > 0.99, "the clicked ball"
    assert selected[1500:].mean() < 0.01, "neither the look-alike nor the floor"


def test_a_mask_carries_a_click_over_a_part_whose_jacobians_differ():
    """A ball whose halves have unlike Jacobians (cos 0) against a box that looks more like the lower half (cos 0.6);
    one click on the upper half, one on the box. Without masks the lower half goes to the box; with each of two
    frames' masks (the ball's nodes in one mask, the box's in another) it goes to the ball — a click seeds its whole
    selection, and a node resembles the click by its mask's mean Jacobian — and the box stays the box. The spread
    with mask nodes is the plain series of the affinity over surface and mask nodes; a spread selection ignores the
    masks."""
    rng = np.random.default_rng(3)
    upper, lower = np.eye(3)[0], np.eye(3)[1]
    box_look = 0.6 * lower + 0.8 * np.eye(3)[2]
    ball = sphere((0.0, 0.0, 0.3), 0.3, 2000, rng)
    box = rng.uniform((0.28, -0.3, 0.0), (0.9, 0.3, 0.3), size=(1500, 3))  # touching the lower half
    on_top = ball[:, 2] > 0.3
    looks = np.concatenate([np.where(on_top[:, None], upper, lower), np.repeat(box_look[None], len(box), 0)])
    jacobians = np.abs(looks + 0.03 * rng.normal(size=looks.shape))
    points = np.concatenate([ball, box])
    clicks = [int(np.flatnonzero(on_top)[0]), len(ball) + int(box[:, 0].argmax())]
    seeds = np.full(len(points), -1)
    seeds[clicks] = [0, 1]
    resemblance = np.abs(unit_rows(jacobians) @ unit_rows(jacobians)[clicks].T)

    plain = build_surface_graph(points, jacobians)
    labels = class_scores(plain.spread(seeds, 2), resemblance).argmax(axis=1)
    assert np.mean(labels[: len(ball)][~on_top] == 1) > 0.9, "without masks the lower half takes the box's class"

    frame = rng.integers(2, size=len(points))  # each node seen in one of two frames
    masks = mask_key(frame, np.where(np.arange(len(points)) < len(ball), 1, 2))
    masks[1::50] = -1  # a few nodes in no mask (not the clicks)
    graph = build_surface_graph(points, jacobians, masks=masks)
    assert graph.affinity.shape == (len(points) + 4,) * 2, "one node per mask of each frame"
    nodes, classes = np.array(clicks), np.array([0, 1])
    seed = graph.seed(clicks[0])
    assert np.isclose(seed.sum(), 1.0) and np.mean(seed[: len(ball)] > 0) > 0.99, "the click seeds the whole ball"
    assert np.mean(seed[len(ball) :] > 0) < 0.01, "and next to none of the box it touches"
    resemblance = graph.node_resemblance(nodes, classes, 2)  # the masks' mean directions
    in_a_mask = masks[: len(ball)] >= 0
    assert resemblance[: len(ball), 0][in_a_mask].min() > 0.9, "every masked node of the ball resembles the click"
    scores = class_scores(graph.spread_seeds(nodes, classes, 2), resemblance, min_resemblance=MIN_MASK_RESEMBLANCE)
    labels = label_ids(torch.from_numpy(scores), confidence(torch.from_numpy(scores))).numpy() - 1  # the product's
    assert np.mean(labels[: len(ball)] == 0) > 0.99, "the whole ball"
    assert np.mean(labels[len(ball) :] == 1) > 0.99, "the box stays the box"
    # a spread selection keeps to the Jacobian edges, masks or not
    np.testing.assert_allclose(graph.selection_share(clicks[0]), plain.selection_share(clicks[0]), rtol=1e-5)

    small = build_surface_graph(points[::70], jacobians[::70], neighbours=4, masks=masks[::70])
    step = ALPHA * small.affinity.toarray().astype(np.float64)
    initial = np.zeros((len(step), 2))
    initial[[0, 40], [0, 1]] = 1.0
    series = (1.0 - ALPHA) * sum(np.linalg.matrix_power(step, t) for t in range(12)) @ initial
    expected = series + np.linalg.matrix_power(step, 12) @ initial
    seeds = np.full(len(small), -1)
    seeds[[0, 40]] = [0, 1]
    np.testing.assert_allclose(small.spread(seeds, 2, steps=12), expected[: len(small)], rtol=1e-4, atol=1e-6)


def evenly_on_sphere(centre, radius, count, rotation) -> np.ndarray:
    """``count`` points spread evenly over a sphere (a Fibonacci lattice, turned by ``rotation``): a frame's grid."""
    index = np.arange(count) + 0.5
    polar, azimuth = np.arccos(1.0 - 2.0 * index / count), np.pi * (1.0 + 5**0.5) * index
    directions = np.column_stack([np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar), np.cos(polar)])
    return np.asarray(centre) + radius * directions @ rotation.T


def test_a_selection_with_masks_takes_the_masks_that_share_the_clicked_masks_surface():
    """A ball whose halves have unlike Jacobians (cos 0), a board standing against its lower half that looks like the
    lower half (cos 0.6); two frames, each seeing part of the ball (one above z 0.15, one below z 0.25, each on its
    own even grid) and all of the board, each thing in its own mask. One click on the top: spread over the Jacobians
    the selection keeps to the top half; with the masks it is the ball's two masks (the second shares with the first
    all that both frames see of it, 40% of its nodes) and no board (it shares only the line it touches), and a node
    in no mask takes what the masked nodes around it are."""
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(4)
    upper, lower = np.eye(3)[0], np.eye(3)[1]
    frames = []
    for view, (keep, shift) in enumerate([(lambda z: z > 0.15, 0.0), (lambda z: z < 0.25, 0.5)]):
        ball = evenly_on_sphere((0.0, 0.0, 0.3), 0.3, 2000, Rotation.random(random_state=view).as_matrix())
        ball = ball[keep(ball[:, 2])]
        step = 0.025
        y, z = np.meshgrid(np.arange(-0.3, 0.3, step) + shift * step, np.arange(0.0, 0.3, step) + shift * step)
        board = np.column_stack([np.full(y.size, 0.31), y.ravel(), z.ravel()])
        frames.append((ball, board))
    points = np.concatenate([part for ball, board in frames for part in (ball, board)])
    masks = np.concatenate([mask_key(np.full(len(part), view), mask) for view, (ball, board) in enumerate(frames)
                            for mask, part in ((1, ball), (2, board))])  # fmt: skip
    on_ball = (masks & 0xFF) == 1
    on_top = on_ball & (points[:, 2] > 0.3)
    looks = np.where(on_top[:, None], upper, np.where(on_ball[:, None], lower, 0.6 * lower + 0.8 * np.eye(3)[2]))
    jacobians = np.abs(looks + 0.03 * rng.normal(size=looks.shape))
    unmasked = np.flatnonzero(on_ball)[::40]
    masks[unmasked] = -1
    click = int(np.flatnonzero(on_top & (masks == mask_key(0, 1)))[0])

    graph = build_surface_graph(points, jacobians, masks=masks)
    spread = graph.selection_share(click) > 0.5
    assert spread[on_ball & ~on_top].mean() < 0.1, "spread over the Jacobians, the lower half stays out"
    selected = graph.mask_selection(click) > 0.5
    assert selected[on_ball].mean() > 0.99, "the whole ball, in both frames"
    assert selected[unmasked].all(), "the ball's nodes in no mask too"
    assert not selected[~on_ball].any(), "no board"
    with pytest.raises(ValueError, match="no mask"):
        graph.mask_selection(int(unmasked[0]))
    with pytest.raises(ValueError, match="no mask"):
        build_surface_graph(points, jacobians).mask_selection(click)
