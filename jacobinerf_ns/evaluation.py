"""Evaluation: the paper's label-propagation metrics for every method, and the Jacobian-cosine gap shaping opens.

A :class:`PropagationEvaluation` fits the method to every draw — (source view, seed) for every label kind and
setting — then scores the eval views one at a time; a metric is reported as its mean over the draws under the
paper's key, its ``_std``, and one value per draw (``_view{v}_seed{s}``), all plain floats (tensorboard logs them).

The protocol's types live in :mod:`jacobinerf_ns.propagation.protocol`; ``PropagationProtocol`` is also importable
from here, because saved ``config.yml`` files name it ``jacobinerf_ns.evaluation.PropagationProtocol``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Set

import torch
from torch import Tensor

from jacobinerf_ns.metrics import confusion_matrix, label_metrics
from jacobinerf_ns.probe import Probe
from jacobinerf_ns.propagation.dino import fit_dino_2d, fit_dino_field
from jacobinerf_ns.propagation.jacobian import JacobianPropagation
from jacobinerf_ns.propagation.protocol import (
    FittedPropagation,
    Method,
    MethodName,
    PropagationProtocol,
    PropagationViews,
)
from jacobinerf_ns.propagation.rendering import pixel_jacobians
from jacobinerf_ns.propagation.semantic_head import fit_semantic_head
from jacobinerf_ns.propagation.surface_labelling import SurfacePropagation
from jacobinerf_ns.shaping import abs_cosine

if TYPE_CHECKING:
    from nerfstudio.cameras.cameras import Cameras

    from jacobinerf_ns.model import JacobiNerfModel

__all__ = ["METHODS", "MethodName", "PropagationEvaluation", "PropagationProtocol", "evaluate_propagation"]


class PerDrawMethod:
    """A method given as a function ``fit(model, views, setting, protocol, generator)``: it renders what it needs
    for each draw itself (the baselines fit a head, or match DINO features, per draw)."""

    def __init__(self, fit: Callable[..., FittedPropagation], model: JacobiNerfModel, protocol: PropagationProtocol):
        self._fit, self.model, self.protocol = fit, model, protocol

    def fit(self, views: PropagationViews, setting: str, generator: torch.Generator) -> FittedPropagation:
        return self._fit(self.model, views, setting, self.protocol, generator)

    def target_probe(self) -> Optional[Probe]:
        return None

    def keep_target(self, target: int, outputs: dict) -> None:
        raise ValueError(f"{self._fit.__name__} renders its targets itself.")


def per_draw(fit: Callable[..., FittedPropagation]) -> Callable[..., Method]:
    return lambda model, protocol: PerDrawMethod(fit, model, protocol)


METHODS: Dict[str, Callable[..., Method]] = {
    "jacobian": JacobianPropagation,
    "jacobian-surface": SurfacePropagation,
    "semantic-head": per_draw(fit_semantic_head),
    "dino-2d": per_draw(fit_dino_2d),
    "dino-field": per_draw(fit_dino_field),
}
"""``--propagation.method`` → the method, built as ``METHODS[name](model, protocol)`` once per evaluation."""


def build_method(model: JacobiNerfModel, protocol: PropagationProtocol) -> Method:
    if protocol.method not in METHODS:
        raise ValueError(f"Unknown propagation method {protocol.method!r}: choose {', '.join(METHODS)}.")
    return METHODS[protocol.method](model, protocol)


def fit_propagation(
    model: JacobiNerfModel,
    views: PropagationViews,
    setting: str,
    protocol: PropagationProtocol,
    generator: torch.Generator,
) -> FittedPropagation:
    """``protocol.method`` fitted to one draw's source labels for ``setting``."""
    return build_method(model, protocol).fit(views, setting, generator)


@dataclass
class Draw:
    """One fit of the evaluation: a label kind (``prefix``), a source view, a seed and a setting."""

    prefix: str
    view: int
    seed: int
    setting: str
    views: PropagationViews
    fitted: FittedPropagation
    confusion: Dict[str, Tensor] = field(default_factory=dict)

    @property
    def labels(self) -> List[int]:
        """The labels present in the source view (void excluded): the classes the draw is scored on."""
        return sorted(set(torch.unique(self.views.source_labels).tolist()) - {0})

    @property
    def num_labels(self) -> int:
        views = self.views
        return int(max([int(views.source_labels.max())] + [int(t.max()) for t in views.target_labels])) + 1

    def key(self, space: str, metric: str) -> str:
        return f"{self.prefix}{self.setting}_{space}_{metric}"


class PropagationEvaluation:
    """The protocol's draws, fitted at construction, scored target by target (:meth:`score`), then :meth:`metrics`.

    ``tasks`` maps each label kind's metric prefix (``""`` semantic, ``"instance_"``) to its views, one
    :class:`PropagationViews` per source view; every task shares the same targets.
    """

    def __init__(
        self, model: JacobiNerfModel, tasks: Dict[str, Sequence[PropagationViews]], protocol: PropagationProtocol
    ) -> None:
        self.method = build_method(model, protocol)
        self.scored: Set[int] = set()
        """Targets already in the confusion matrices."""
        self.draws: List[Draw] = []
        for prefix, views_per_source in tasks.items():
            for views in views_per_source:
                for seed in protocol.draw_seeds():
                    generator = torch.Generator().manual_seed(seed)
                    for setting in protocol.settings:
                        fitted = self.method.fit(views, setting, generator)
                        self.draws.append(Draw(prefix, views.source_index, seed, setting, views, fitted))
        for draw in sorted(self.draws, key=lambda draw: draw.view):  # renders each source view once
            draw.fitted.decoders()

    @property
    def target_count(self) -> int:
        return len(self.draws[0].views.target_cameras) if self.draws else 0

    def target_probe(self) -> Optional[Probe]:
        """The probe whose render of a target every draw reads; ``None``: the method renders what it needs itself."""
        return self.method.target_probe()

    def score(self, target: int, outputs: Optional[dict] = None) -> None:
        """Adds target ``target`` to every draw's confusion matrices; ``outputs``: its render with :meth:`target_probe`
        made elsewhere (ns-eval's photometric render), so it is not rendered again."""
        if outputs is not None:
            self.method.keep_target(target, outputs)
        self.scored.add(target)
        for draw in self.draws:
            truth = draw.views.target_labels[target].long()
            valid = torch.isin(truth, torch.tensor(draw.labels))
            for space, predicted in draw.fitted.predict(target).items():
                counts = confusion_matrix(predicted[valid], truth[valid], draw.num_labels)
                draw.confusion[space] = draw.confusion.get(space, 0) + counts

    def score_the_rest(self) -> None:
        """Scores every target not scored yet (rendering it)."""
        for target in range(self.target_count):
            if target not in self.scored:
                self.score(target)

    def metrics(self) -> Dict[str, float]:
        """Mean over draws under the paper's key, ``_std`` (over draws; 0 for one draw), and each draw's value."""
        values: Dict[str, Dict[str, float]] = {}
        for draw in self.draws:
            for space, counts in draw.confusion.items():
                for metric, value in label_metrics(counts, draw.labels).items():
                    values.setdefault(draw.key(space, metric), {})[f"view{draw.view}_seed{draw.seed}"] = value
        results: Dict[str, float] = {}
        for key, per_draw_values in values.items():
            series = torch.tensor(list(per_draw_values.values()), dtype=torch.float64)
            results[key] = float(series.mean())
            results[f"{key}_std"] = float(series.std()) if len(series) > 1 else 0.0
            results.update({f"{key}_{draw}": value for draw, value in per_draw_values.items()})
        return results


def evaluate_propagation(
    model: JacobiNerfModel, tasks: Dict[str, Sequence[PropagationViews]], protocol: PropagationProtocol
) -> Dict[str, float]:
    """Every draw of ``protocol`` for every task, each target view rendered once (Jacobian method): the metrics."""
    evaluation = PropagationEvaluation(model, tasks, protocol)
    evaluation.score_the_rest()
    return evaluation.metrics()


@torch.no_grad()
def jacobian_cosine_gap(
    model: JacobiNerfModel, cameras: Cameras, label_maps: Sequence[Tensor], pixels_per_view: int = 512, seed: int = 0
) -> Dict[str, float]:
    """Mean ``|cos(J_p, J_q)|`` over pixel pairs of the same label vs of different labels (void excluded), per view,
    pooled. A shaped field has a clear gap (same ≫ different); an unshaped one has little."""
    generator = torch.Generator().manual_seed(seed)
    same, different = [], []
    for index, label_map in enumerate(label_maps):
        labelled = torch.nonzero(label_map > 0)
        picks = labelled[torch.randperm(len(labelled), generator=generator)[:pixels_per_view]]
        cosine = abs_cosine(pixel_jacobians(model, cameras[index : index + 1], picks).flatten(1).float())
        labels = label_map[picks[:, 0], picks[:, 1]].to(cosine.device)
        is_same = labels[:, None] == labels[None, :]
        off_diagonal = ~torch.eye(len(labels), dtype=torch.bool, device=cosine.device)
        same.append(cosine[is_same & off_diagonal])
        different.append(cosine[~is_same])
    same_mean, different_mean = torch.cat(same).mean().item(), torch.cat(different).mean().item()
    return {"cos_same": same_mean, "cos_different": different_mean, "cos_gap": same_mean - different_mean}
