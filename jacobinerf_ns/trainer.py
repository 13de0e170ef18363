"""``ns-train``'s trainer, which writes the run folder only once the run can start (a workaround listed in
:mod:`jacobinerf_ns.compat`): nerfstudio saves ``config.yml`` before it builds anything, so a bad option or bad data
used to leave a folder holding only ``config.yml``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Type

from nerfstudio.engine.trainer import Trainer, TrainerConfig


class SavedOnStartTrainer(Trainer):
    """nerfstudio's trainer, which saves its ``config.yml`` once it is set up (pipeline, data, checkpoint)."""

    def setup(self, test_mode: Literal["test", "val", "inference"] = "val") -> None:
        super().setup(test_mode)
        if self.local_rank == 0:
            TrainerConfig.save_config(self.config)


@dataclass
class SavedOnStartTrainerConfig(TrainerConfig):
    """nerfstudio's trainer config, whose ``config.yml`` :class:`SavedOnStartTrainer` writes when the run can start,
    not when ``ns-train`` asks (before anything is built)."""

    _target: Type = field(default_factory=lambda: SavedOnStartTrainer)

    def save_config(self) -> None:
        """Left to :meth:`SavedOnStartTrainer.setup`."""
