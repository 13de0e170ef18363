"""The viewer's label clicks as click-set files (``docs/clicks.md``): saved with the scene's fingerprint, loaded and
resolved on the run (clicks that hit nothing are skipped with a warning naming them)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, List, Optional, Sequence

import torch

from jacobinerf_ns.clicks import ClickSet, write_clicks
from jacobinerf_ns.errors import JacobiNerfError
from jacobinerf_ns.propagation.labelling import MIN_ACCUMULATION, keep_hits
from jacobinerf_ns.scene import Scene, click_rays, scene_mismatch
from jacobinerf_ns.viewer.click_evaluation import evaluate_rays
from jacobinerf_ns.viewer.labels import LabelClick, LabelClicks

if TYPE_CHECKING:
    from jacobinerf_ns.model import JacobiNerfModel

TO_FORCE = "tick 'Load from another scene' to load it anyway"


class ClickFiles:
    """Click-set files of the label clicks ``labels`` on ``model``; ``scene()`` gives the run's scene (``None``: no
    dataset, nothing can be saved or loaded)."""

    def __init__(self, model: JacobiNerfModel, labels: LabelClicks, scene: Callable[[], Optional[Scene]]) -> None:
        self.model, self.labels, self.scene = model, labels, scene

    def click_set(self) -> ClickSet:
        """The classes and label clicks as a click set of this scene (with its fingerprint)."""
        scene = self.scene()
        if scene is None:
            raise JacobiNerfError("This viewer session has no dataset: its clicks cannot be saved.")
        return ClickSet(
            classes=tuple(self.labels.classes),
            clicks=tuple(click.record for click in self.labels.clicks),
            fingerprint=scene.fingerprint(),
        )

    def save(self, path: Path) -> str:
        saved = self.click_set()
        write_clicks(path, saved)
        return f"Saved {len(saved.clicks)} clicks of {len(saved.classes)} classes to {path}"

    def load(self, loaded: ClickSet, source: str, force: bool = False) -> str:
        """Replaces the classes and label clicks by those of ``loaded`` resolved on this run: clicks that hit nothing
        are skipped with a warning naming them; a set made on another scene is refused unless ``force``."""
        scene = self.scene()
        if scene is None:
            raise JacobiNerfError("This viewer session has no dataset: clicks cannot be loaded into it.")
        other = scene_mismatch(loaded, scene, source, force, TO_FORCE)
        kept: List[LabelClick] = []
        skipped: Sequence[str] = ()
        if loaded.clicks:
            rays = click_rays(loaded, scene, source)
            evaluated = evaluate_rays(self.model, rays.bundle())
            accumulation = torch.tensor([click.accumulation for click in evaluated])
            jacobian = torch.cat([click.jacobian.cpu() for click in evaluated])
            skipped = keep_hits(loaded, rays.names, jacobian, accumulation, source).skipped
            kept = [
                LabelClick(record, click)
                for record, click in zip(loaded.clicks, evaluated)
                if click.accumulation >= MIN_ACCUMULATION
            ]
        self.labels.replace(loaded.classes, kept)
        message = f"Loaded {len(kept)} clicks of {len(self.labels.classes)} classes from {source}"
        if other:
            message += f" (made on another scene: {other})"
        return message + "." + "".join(f" {warning}" for warning in skipped)
