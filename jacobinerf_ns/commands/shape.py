"""``jacobinerf-shape``: continue a trained jacobinerf run (shaped or not) into a new run folder, with MI shaping on.

    jacobinerf-shape --load-config outputs/scene/jacobinerf/RUN/config.yml --steps 1000 [--mi-loss-mult 0.1] ...

The new run is the old one's config (every field and data option as trained) with shaping on from its first step,
started from the old run's latest checkpoint (weights, optimizers, the adaptive threshold) and written to a new
timestamped folder beside it. ``ns-train --load-dir`` needs every option repeated by hand, and ``ns-train
--load-config`` ignores other flags: this is the one command for "shape this run".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import tyro

from jacobinerf_ns import errors
from jacobinerf_ns.errors import JacobiNerfError

SHAPING_OPTIONS = ("mi_loss_mult", "norm_loss_mult", "temperature", "contrastive_batch_size")
SURROGATE_OPTIONS = ("surrogate", "masks_from", "masks_dir", "masks_scope", "contrastive_images", "features_dir",
                     "dino_weights", "dino_stride", "dino_short_side")  # fmt: skip


@dataclass
class ShapeRun:
    """Shape a trained jacobinerf run: a new run folder that continues it with MI shaping from its first step."""

    load_config: Path
    """config.yml of the trained jacobinerf run to continue."""
    steps: int = 2000
    """Shaping steps to run."""
    load_step: Optional[int] = None
    """Checkpoint step to start from (default: the run's latest)."""
    timestamp: str = "{timestamp}"
    """Name of the new run folder (default: the current time, as ns-train)."""
    steps_per_save: Optional[int] = None
    """Save a checkpoint every this many steps (default: the run's setting)."""
    save_only_latest_checkpoint: bool = True
    """Keep only the latest checkpoint (off: keep one every ``steps_per_save``)."""
    shaping: bool = True
    """Shape (off: continue the run photometrically — the unshaped reference of a comparison)."""
    vis: Optional[Literal["viewer", "tensorboard", "wandb", "viewer+tensorboard"]] = None
    """Logging / viewer (default: the run's)."""
    mi_loss_mult: Optional[float] = None
    """λ of the InfoNCE loss (default: the run's)."""
    norm_loss_mult: Optional[float] = None
    """γ of the Jacobian-norm loss (default: the run's)."""
    temperature: Optional[float] = None
    """τ of the InfoNCE loss (default: the run's)."""
    contrastive_batch_size: Optional[int] = None
    """Rays of each batch in the contrastive batch (default: the run's)."""
    surrogate: Optional[Literal["dino", "masks", "features"]] = None
    """What defines positives (default: the run's); see ``--pipeline.datamanager.surrogate`` of ns-train."""
    masks_from: Optional[Literal["instances", "semantics"]] = None
    masks_dir: Optional[Path] = None
    masks_scope: Optional[Literal["auto", "image", "scene"]] = None
    """Where one mask id means one entity (default: the run's); see ``--pipeline.datamanager.masks-scope``."""
    contrastive_images: Optional[int] = None
    features_dir: Optional[Path] = None
    dino_weights: Optional[Path] = None
    dino_stride: Optional[int] = None
    dino_short_side: Optional[int] = None

    def trainer_config(self):
        """The old run's ``TrainerConfig`` turned into the shaping run's."""
        import yaml

        from jacobinerf_ns.runs import checkpoint_path, checkpoint_steps

        if not self.load_config.is_file():
            raise JacobiNerfError(f"--load-config {self.load_config} does not exist: give the config.yml of a run.")
        try:
            config = yaml.load(self.load_config.read_text(), Loader=yaml.Loader)
        except yaml.YAMLError as error:
            raise JacobiNerfError(f"--load-config {self.load_config} is not a run's config.yml ({error}).") from error
        if getattr(config, "method_name", None) != "jacobinerf":
            raise JacobiNerfError(
                f"--load-config {self.load_config} is a '{getattr(config, 'method_name', None)}' run: "
                "jacobinerf-shape continues jacobinerf runs (train one with `ns-train jacobinerf`)."
            )
        checkpoints = self.load_config.parent / "nerfstudio_models"
        saved = checkpoint_steps(self.load_config.parent)
        if not saved:
            raise JacobiNerfError(f"No checkpoint in {checkpoints}: the run has not saved one yet.")
        if self.load_step is not None and self.load_step not in saved:
            raise JacobiNerfError(f"--load-step {self.load_step}: no step-{self.load_step:09d}.ckpt in {checkpoints}.")
        if self.steps < 1:
            raise JacobiNerfError(f"--steps {self.steps}: shape for at least one step.")
        # a checkpoint file, not load_dir + load_step: ns-eval and ns-viewer re-point load_dir at the new run's own
        # checkpoints and would then look for the old step there
        config.load_dir, config.load_step = None, None
        config.load_checkpoint = checkpoint_path(
            self.load_config.parent, saved[-1] if self.load_step is None else self.load_step
        )
        config.max_num_iterations = self.steps
        config.timestamp = self.timestamp
        config.save_only_latest_checkpoint = self.save_only_latest_checkpoint
        if self.steps_per_save is not None:
            config.steps_per_save = self.steps_per_save
        if self.vis is not None:
            config.vis = self.vis
        model, datamanager = config.pipeline.model, config.pipeline.datamanager
        # the step count continues from the checkpoint: 0 = shaping from the first step
        model.shaping_start_step = 0 if self.shaping else -1
        for options, target in ((SHAPING_OPTIONS, model), (SURROGATE_OPTIONS, datamanager)):
            for name in options:
                if getattr(self, name) is not None:
                    setattr(target, name, getattr(self, name))
        return config

    def main(self) -> None:
        from nerfstudio.scripts.train import main as train

        from jacobinerf_ns.compat import progress_from_checkpoint, read_checkpoint
        from jacobinerf_ns.runs import checkpoint_step

        config = self.trainer_config()
        read_checkpoint(config.load_checkpoint)  # an unreadable one stops here, before ns-train writes the new run
        with progress_from_checkpoint(checkpoint_step(config.load_checkpoint)):
            train(config)


def entrypoint() -> None:
    errors.report_user_errors()
    tyro.cli(ShapeRun).main()


if __name__ == "__main__":
    entrypoint()
