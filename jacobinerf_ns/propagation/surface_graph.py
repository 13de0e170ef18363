"""Labels spread over a scene's surfaces: a graph whose nodes are surface points with their unit Jacobians, the
clicks as seeds, label spreading along it (Zhou et al. 2004, "Learning with local and global consistency").

* nodes ``i``: surface points ``x_i`` (origin + rendered depth · direction) and unit Jacobians
  ``u_i = J_i / ‖J_i‖``;
* edges: each node's :data:`NEIGHBOURS` nearest nodes in 3D, weight ``w_ij = exp(−(1 − |⟨u_i, u_j⟩|) / τ)``,
  symmetrised (``max(w_ij, w_ji)``): a class crosses surfaces that touch and stops where the Jacobians turn;
* masks, where the frames have them (a segmenter's per-image masks, or the masks the run was shaped with): one more
  node per mask of each frame, joined to that frame's nodes inside the mask with weight :data:`SEGMENT_WEIGHT`, so a
  class reaches the whole mask its click lies in at once, and the masks of other frames through the surface points
  they share;
* a click's entity (the viewer's selection): with masks, the masks its mask reaches over the surface they share
  (:meth:`SurfaceGraph.mask_selection`); without, its spread against the nodes unlike it
  (:meth:`SurfaceGraph.selection_share`);
* spreading: ``F ← α S F + (1 − α) Y`` for :data:`SPREAD_STEPS` steps from ``F = Y``, ``S = D^-½ W D^-½`` (``D``:
  row sums of ``W``), ``Y`` one row per node, the seeds in their class's column; a click seeds the node near its
  surface point whose Jacobian is most like its own (with masks: that node's selection, mass 1 in all), and since
  ``F`` is linear in ``Y`` each seed's spread is computed once;
* reading a point ``p`` (surface point ``x_p``, unit Jacobian ``u_p``): ``F_c(p) = Σ_j w_pj F_jc / Σ_j w_pj`` over its
  :data:`READ_NEIGHBOURS` nearest nodes ``j``, the same kernel as the edges;
* its class scores (:func:`class_scores`): ``s_c(p) = F_c(p) / Σ_c' F_c'(p) · r_c(p)^γ``, with ``r_c(p)`` the best
  ``|cos(u_p, u_k)|`` over the clicks ``k`` of class ``c``: a class must reach p over the surfaces *and* p must look
  like its clicks. Spreading alone lets a class seeded near a large surface take its edge (an object's class spills
  onto the floor around it when the floor's click is far); the resemblance keeps it there. With masks the
  resemblance is the masks': ``|cos|`` between the mean unit Jacobians of the node's mask and of the click's node's
  mask (:meth:`SurfaceGraph.node_resemblance`, read at ``p`` like ``F``): a mask's mean is far less noisy than one
  pixel's Jacobian.

Pure functions of points and Jacobians (numpy / scipy, no model): the labelling passes that render them live in
:mod:`.labelling`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np

NEIGHBOURS = 20
"""Edges per node (nearest nodes in 3D)."""
TAU = 0.02
"""Temperature of the Jacobian kernel ``exp(−(1 − |cos|) / τ)``: an edge between Jacobians 0.9 alike weighs e^-5 of
one between identical ones (docs/propagation_levers.md compares temperatures)."""
ALPHA = 0.99
"""How far labels travel: the share of each step's scores that comes from the neighbours."""
SPREAD_STEPS = 200
READ_NEIGHBOURS = 8
"""Nodes a read point takes its scores from."""
SELECT_REST = 0.7
"""A surface selection's rest: the nodes whose ``|cos|`` to the click is below this (docs/propagation_levers.md)."""
RESEMBLANCE_POWER = 4
"""``γ`` of :func:`class_scores` (docs/propagation_levers.md compares 1, 4 and 16; with the masks' resemblance 4 and
8; with each pixel's own resemblance and masks 0.5 did best, as much of it undid what the masks join)."""
SEGMENT_WEIGHT = 30.0
"""Weight of the edge between a node and its mask's node (a Jacobian edge weighs at most 1): large enough that a mask
takes one class (docs/propagation_levers.md compares 3 to 100)."""
MASK_REACH = 1.0
"""How near, in node spacings, two nodes must lie to be on the same surface (a mask selection)."""
MASK_COVER = 0.7
"""A mask joins a selection when more than this share of its nodes that the selection's frames see lie on the
selection's surface (docs/propagation_levers.md compares 0.5 to 0.8) ..."""
MASK_MIN_SHARED = 0.1
"""... and those are more than this share of all its nodes (docs/propagation_levers.md compares 0.1 to 0.3)."""
MASK_MIN_LIKENESS = 0.5
"""... and its mean unit Jacobian is at least this like the clicked mask's (``|cos|``): a mask of another object whose
nodes a selected mask's stray nodes (a render behind a semi-transparent edge) happen to cover stays out
(docs/propagation_levers.md) ..."""
MASK_SURE_COVER = 0.9
"""... unless more than this share of what is seen of it lies on the selection's surface: then it joins whatever its
Jacobians (the other side of a two-coloured object)."""
FRAME_SHIFT = 32
"""A node's mask is ``frame << FRAME_SHIFT`` + the mask's id within its frame (:func:`mask_key`)."""


def mask_key(frames, ids):
    """The graph's mask of nodes in ``frames`` (integers) with mask ``ids`` within their frame (any shape)."""
    return (frames << FRAME_SHIFT) + ids


def unit_rows(jacobians: np.ndarray) -> np.ndarray:
    """``(N, D)`` rows scaled to unit length (float32; a zero row stays zero)."""
    jacobians = np.asarray(jacobians, dtype=np.float32)
    norms = np.linalg.norm(jacobians, axis=-1, keepdims=True)
    return jacobians / np.maximum(norms, 1e-12)


def kernel(unit_a: np.ndarray, unit_b: np.ndarray, tau: float) -> np.ndarray:
    """``exp(−(1 − |⟨a, b⟩|) / τ)`` of matching rows ``(..., D)`` (1 everywhere for ``τ = ∞``)."""
    cosines = np.abs(np.einsum("...d,...d->...", unit_a, unit_b))
    return np.ones_like(cosines) if np.isinf(tau) else np.exp(-(1.0 - cosines) / tau)


@dataclass
class SurfaceGraph:
    """Nodes (points ``(N, 3)``, unit Jacobians ``(N, D)``) and the normalised affinity ``S`` (scipy CSR,
    ``(N + M)²`` with ``M`` mask nodes after the surface nodes)."""

    points: np.ndarray
    unit: np.ndarray
    affinity: "object"
    surface_affinity: "object"
    """``S`` of the Jacobian edges alone ``(N, N)``, what a selection spreads over (``affinity`` without masks)."""
    tau: float
    tree: "object"
    masks: Optional[np.ndarray]
    """``(N,)`` each node's mask (:func:`mask_key`; −1: in none), ``None``: a graph without masks."""
    spacing: float
    """The nodes' spacing at the surface: the median distance from a masked node to the nearest other node of its
    mask (0 without masks)."""
    mask_index: Optional[np.ndarray]
    """``(N,)`` each node's row of :attr:`mask_directions` (−1: in no mask), ``None`` without masks."""
    mask_directions: Optional[np.ndarray]
    """``(M, D)`` each mask's mean unit Jacobian, made unit."""

    def __len__(self) -> int:
        return len(self.points)

    def spread_columns(
        self, initial: np.ndarray, alpha: float = ALPHA, steps: int = SPREAD_STEPS, masks: bool = True
    ) -> np.ndarray:
        """``steps`` steps of ``F ← α S F + (1 − α) Y`` from ``F = Y`` = ``initial`` ``(N, m)``; the surface nodes'
        ``(N, m)`` (mask nodes start at 0 and are left out; ``masks=False``: over the Jacobian edges alone)."""
        affinity = self.affinity if masks else self.surface_affinity
        initial = np.asarray(initial, np.float32)
        mask_nodes = np.zeros((affinity.shape[0] - len(self), initial.shape[1]), np.float32)
        initial = np.concatenate([initial, mask_nodes])
        scores = initial.copy()
        for _ in range(steps):
            scores = alpha * (affinity @ scores) + (1.0 - alpha) * initial
        return scores[: len(self)]

    def spread(self, seeds: np.ndarray, num_classes: int, steps: int = SPREAD_STEPS) -> np.ndarray:
        """``(N, C)`` scores from seed classes ``(N,)`` (0-based class per node, −1: not a seed)."""
        initial = np.zeros((len(self), num_classes), np.float32)
        seeded = seeds >= 0
        initial[np.flatnonzero(seeded), seeds[seeded]] = 1.0
        return self.spread_columns(initial, steps=steps)

    def spread_seeds(
        self, nodes: np.ndarray, classes: np.ndarray, num_classes: int, columns: Optional[Dict[int, np.ndarray]] = None
    ) -> np.ndarray:
        """``(N, C)``: ``Σ_k`` the spread of :meth:`seed` ``nodes[k]``, added to class ``classes[k]`` (0-based).
        Spreading is linear in ``Y``, so without masks this is :meth:`spread` of those seeds (a node seeded twice
        counts twice); ``columns`` (node → its seed's spread) keeps each column, so a new click costs one column."""
        columns = {} if columns is None else columns
        missing = sorted(set(int(node) for node in nodes) - set(columns))
        if missing:
            initial = np.stack([self.seed(node) for node in missing], axis=1)
            for node, column in zip(missing, self.spread_columns(initial).T):
                columns[node] = column
        scores = np.zeros((len(self), num_classes), np.float32)
        for node, label in zip(nodes, classes):
            scores[:, label] += columns[int(node)]
        return scores

    def seed(self, node: int) -> np.ndarray:
        """``(N,)`` what a click at ``node`` seeds: the node, or where it lies in a mask, its selection
        (:meth:`mask_selection` above ½), each node ``1 / size`` (the click's whole object, weighing one click)."""
        initial = np.zeros(len(self), np.float32)
        if self.masks is None or self.masks[node] < 0:
            initial[node] = 1.0
            return initial
        selected = self.mask_selection(node) > 0.5
        initial[selected] = 1.0 / selected.sum()
        return initial

    def directions(self, nodes: np.ndarray) -> np.ndarray:
        """``(K, D)`` the unit direction each of ``nodes`` resembles by: its mask's mean unit Jacobian, its own where
        it is in no mask (or the graph has none)."""
        nodes = np.asarray(nodes, dtype=np.int64)
        if self.mask_index is None:
            return self.unit[nodes]
        rows = self.mask_index[nodes]
        return np.where((rows >= 0)[:, None], self.mask_directions[np.maximum(rows, 0)], self.unit[nodes])

    def node_resemblance(self, nodes: np.ndarray, classes: np.ndarray, num_classes: int) -> np.ndarray:
        """``(N, C)`` ``r_c`` at every node: the best ``|cos|`` between its :meth:`directions` and those of the
        seeded ``nodes`` ``(K,)`` of class ``c`` (``classes`` ``(K,)``, 0-based; 0 for a class without one)."""
        clicked = self.directions(nodes)
        if self.mask_index is None:
            cosines = np.abs(self.unit @ clicked.T)
        else:
            cosines = np.abs(self.mask_directions @ clicked.T)[np.maximum(self.mask_index, 0)]
            outside = self.mask_index < 0
            cosines[outside] = np.abs(self.unit[outside] @ clicked.T)
        resemblance = np.zeros((len(self), num_classes), np.float32)
        for column, label in enumerate(np.asarray(classes)):
            resemblance[:, label] = np.maximum(resemblance[:, label], cosines[:, column])
        return resemblance

    def selection_share(
        self, node: int, rest: float = SELECT_REST, alpha: float = ALPHA, steps: int = SPREAD_STEPS, masks: bool = False
    ) -> np.ndarray:
        """``(N,)`` one click's entity share ``F_0 / (F_0 + F_1)`` at every node: ``node`` seeds the entity, every
        node whose ``|cos|`` to it is below ``rest`` seeds the rest, each side with total mass 1 (class mass
        normalisation: one click against thousands of rest nodes). A look-alike elsewhere, cut off by unlike
        surfaces, is reached by the rest only. It spreads over the Jacobian edges alone unless ``masks``: joining the
        masks selects less on a room (docs/propagation_levers.md)."""
        initial = np.zeros((len(self), 2), np.float32)
        others = np.abs(self.unit @ self.unit[node]) < rest
        others[node] = False
        initial[node, 0] = 1.0
        initial[others, 1] = 1.0 / max(int(others.sum()), 1)
        spread = self.spread_columns(initial, alpha, steps, masks)
        return spread[:, 0] / np.maximum(spread.sum(axis=1), 1e-30)

    def mask_selection(
        self,
        node: int,
        reach: float = MASK_REACH,
        cover: float = MASK_COVER,
        min_shared: float = MASK_MIN_SHARED,
        min_likeness: float = MASK_MIN_LIKENESS,
    ) -> np.ndarray:
        """``(N,)`` one click's entity over the masks, 1 selected, 0 not. From the mask of ``node``, a mask joins
        when, of its nodes that a frame with a selected mask sees (within ``reach`` · :attr:`spacing` of a node of
        that frame), more than ``cover`` lie on the selection's surface (as near a selected mask's node), those
        are more than ``min_shared`` of its nodes, and its mean unit Jacobian's ``|cos|`` to the clicked mask's is at
        least ``min_likeness`` or more than :data:`MASK_SURE_COVER` of what is seen lies on the surface; until none
        joins. Another frame's mask of the same object shares
        what both frames see of it, a neighbour's mask only its edge. A node in no mask takes the share of its
        :data:`READ_NEIGHBOURS` nearest masked nodes that are selected."""
        from scipy.spatial import cKDTree

        if self.masks is None or self.masks[node] < 0:
            raise ValueError("The click's node lies in no mask: spread its selection (selection_share) instead.")
        masked = np.flatnonzero(self.mask_index >= 0)
        of_node, frame_of_node = self.mask_index[masked], self.masks[masked] >> FRAME_SHIFT
        count = len(self.mask_directions)
        points, sizes = self.points[masked], np.bincount(of_node, minlength=count)

        def near(nodes: np.ndarray) -> np.ndarray:
            """``(M,)`` how many nodes of each mask lie within reach of one of ``nodes``."""
            distances, _ = cKDTree(points[nodes]).query(points, distance_upper_bound=reach * self.spacing)
            return np.bincount(of_node, weights=np.isfinite(distances), minlength=count)

        selected = np.arange(count) == self.mask_index[node]
        alike = np.abs(self.mask_directions @ self.mask_directions[self.mask_index[node]]) >= min_likeness
        while True:
            shared = near(selected[of_node])
            seen = near(np.isin(frame_of_node, np.unique(frame_of_node[selected[of_node]])))
            on_surface = (shared > cover * seen) & (shared > min_shared * sizes)
            grown = selected | (on_surface & (alike | (shared > MASK_SURE_COVER * seen)))
            if (grown == selected).all():
                break
            selected = grown
        share = np.zeros(len(self), np.float32)
        share[masked] = selected[of_node]
        unmasked = np.flatnonzero(self.masks < 0)
        if len(unmasked):
            _, nearest = cKDTree(points).query(self.points[unmasked], min(READ_NEIGHBOURS, len(masked)))
            share[unmasked] = selected[of_node[nearest.reshape(len(unmasked), -1)]].mean(axis=1)
        return share

    def seed_nodes(self, points: np.ndarray, unit: np.ndarray) -> np.ndarray:
        """``(K,)`` the node each click seeds: of the :data:`READ_NEIGHBOURS` nodes nearest its point ``(K, 3)``, the
        one whose Jacobian is most like its unit Jacobian ``(K, D)`` (the nearest node may lie across an edge)."""
        count = min(READ_NEIGHBOURS, len(self))
        _, nearest = self.tree.query(np.asarray(points, dtype=np.float32), count)
        nearest = nearest.reshape(len(points), count)
        cosines = np.abs(np.einsum("kd,knd->kn", np.asarray(unit, np.float32), self.unit[nearest]))
        return nearest[np.arange(len(points)), cosines.argmax(axis=1)]

    def read(self, node_scores: np.ndarray, points: np.ndarray, unit: np.ndarray) -> np.ndarray:
        """``(P, C)`` scores of points ``(P, 3)`` with unit Jacobians ``(P, D)`` from their nearest nodes' scores."""
        count = min(READ_NEIGHBOURS, len(self))
        _, nearest = self.tree.query(np.asarray(points, dtype=np.float32), count)
        nearest = nearest.reshape(len(points), count)
        weights = kernel(np.asarray(unit, np.float32)[:, None, :], self.unit[nearest], self.tau)
        weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1e-30)
        return np.einsum("pk,pkc->pc", weights, node_scores[nearest])


def build_surface_graph(
    points: np.ndarray,
    jacobians: np.ndarray,
    neighbours: int = NEIGHBOURS,
    tau: float = TAU,
    masks: Optional[np.ndarray] = None,
    segment_weight: float = SEGMENT_WEIGHT,
) -> SurfaceGraph:
    """The graph over surface ``points`` ``(N, 3)`` with Jacobians ``(N, D)`` (any length; made unit here); ``masks``
    ``(N,)``: each node's mask, :func:`mask_key` of its frame and the mask's id there (−1: in none), or ``None``: no
    mask nodes."""
    from scipy.spatial import cKDTree

    points = np.asarray(points, dtype=np.float32)
    unit = unit_rows(jacobians)
    tree = cKDTree(points)
    count = min(neighbours, len(points) - 1)
    rows, columns, weights = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    if count >= 1:
        _, nearest = tree.query(points, count + 1)
        rows = np.repeat(np.arange(len(points)), count)
        columns = nearest[:, 1:].reshape(-1)  # the first is the node itself (or a duplicate of it)
        # one neighbour at a time: gathering every edge's Jacobians at once takes N·k·D floats (GBs on a room)
        weights = np.stack([kernel(unit, unit[nearest[:, k]], tau) for k in range(1, count + 1)], axis=1)
    edges = (rows, columns, weights.reshape(-1).astype(np.float32))
    surface = normalised_affinity([edges], len(points))
    masked = np.flatnonzero(np.asarray(masks) >= 0) if masks is not None and segment_weight > 0 else []
    if len(masked) == 0:
        return SurfaceGraph(points, unit, surface, surface, tau, tree, None, 0.0, None, None)
    _, mask_node = np.unique(np.asarray(masks)[masked], return_inverse=True)
    mask_node = mask_node.reshape(-1)
    mask_edges = (masked, len(points) + mask_node, np.full(len(masked), segment_weight, np.float32))
    joined = normalised_affinity([edges, mask_edges], len(points) + int(mask_node.max()) + 1)
    node_masks = np.where(np.asarray(masks) >= 0, np.asarray(masks), -1).astype(np.int64)
    spacing = mask_spacing(points[masked], mask_node)
    mask_index = np.full(len(points), -1, np.int64)
    mask_index[masked] = mask_node
    directions = np.zeros((int(mask_node.max()) + 1, unit.shape[1]), np.float64)
    np.add.at(directions, mask_node, unit[masked])
    directions = unit_rows(directions)
    return SurfaceGraph(points, unit, joined, surface, tau, tree, node_masks, spacing, mask_index, directions)


def mask_spacing(points: np.ndarray, masks: np.ndarray) -> float:
    """The median distance from a point ``(N, 3)`` to the nearest other point of its mask (``(N,)`` ids; 0 when no
    mask has two points)."""
    from scipy.spatial import cKDTree

    order = np.argsort(masks, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(masks[order]) != 0, True])
    nearest = []
    for start, stop in zip(starts[:-1], starts[1:]):
        if stop - start > 1:
            group = points[order[start:stop]]
            nearest.append(cKDTree(group).query(group, 2)[0][:, 1])
    return float(np.median(np.concatenate(nearest))) if nearest else 0.0


def normalised_affinity(edge_sets, size: int):
    """``D^-½ W D^-½`` (scipy CSR, float32) of the symmetrised ``W = max(W, Wᵀ)`` over ``size`` nodes with the edges
    of ``edge_sets`` (each ``(rows, columns, weights)``); ``D``: row sums of ``W``."""
    import scipy.sparse as sparse

    rows, columns, weights = (np.concatenate(part) for part in zip(*edge_sets))
    affinity = sparse.coo_matrix((weights, (rows, columns)), shape=(size, size)).tocsr()
    affinity = affinity.maximum(affinity.T)
    inverse_root = 1.0 / np.sqrt(np.asarray(affinity.sum(axis=1)).ravel() + 1e-12)
    normalised = sparse.diags(inverse_root) @ affinity @ sparse.diags(inverse_root)
    return normalised.astype(np.float32).tocsr()


def class_scores(
    spread: np.ndarray,
    resemblance: np.ndarray,
    power: float = RESEMBLANCE_POWER,
    min_resemblance: float = 0.0,
    min_score: float = 0.0,
) -> np.ndarray:
    """``(P, C)`` ``F_c / Σ_c' F_c' · r_c^γ`` from read spread scores ``F`` and class resemblances ``r`` (both
    ``(P, C)``; ``r_c`` = best ``|cos|`` of the point's Jacobian to a click of class ``c``, 0 without one), and 0
    where ``r_c < min_resemblance`` (a class does not reach a point that resembles none of its clicks) and at every
    class of a point whose best score is below ``min_score`` (the clicks explain it poorly)."""
    share = spread / np.maximum(spread.sum(axis=-1, keepdims=True), 1e-30)
    resemblance = np.clip(resemblance, 0.0, 1.0)
    return floored(np.where(resemblance >= min_resemblance, share * resemblance**power, 0.0), min_score)


def floored(scores: np.ndarray, min_score: float) -> np.ndarray:
    """``(..., C)`` class scores, 0 at every class of a point whose best score is below ``min_score``."""
    if not scores.shape[-1]:
        return scores
    return np.where(scores.max(axis=-1, keepdims=True) >= min_score, scores, 0.0)
