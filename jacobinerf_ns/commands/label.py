"""``jacobinerf-label``: labels for every frame of a run's dataset, a labelled scene and a labelled point cloud, from
a click set (``docs/clicks.md``).

    jacobinerf-label --load-config outputs/.../config.yml --clicks clicks.json --output-dir labelled/

Writes ``ids/``, ``overlay/``, ``confidence/`` per frame, then ``labelled_points.ply``, ``classes.json`` and
``transforms.json`` (the output folder is a labelled nerfstudio-data scene: ``ns-train ... --data labelled/``); the
layout is :mod:`jacobinerf_ns.label_export`. A rerun into the same folder resumes an interrupted export.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import tyro

from jacobinerf_ns import errors
from jacobinerf_ns.errors import JacobiNerfError


@dataclass
class Label:
    """Label every frame of a trained jacobinerf run from a click set; write label maps, a labelled nerfstudio-data
    scene and a labelled point cloud."""

    load_config: Path
    """config.yml of a trained jacobinerf run."""
    clicks: Path
    """The click set (JSON: classes and clicks; written by the viewer, by jacobinerf-export-labels or by hand)."""
    output_dir: Path
    """Where the export goes (new or empty, or an earlier export of the same click set to resume)."""
    space: Literal["3d", "2d"] = "3d"
    """Responses composited per sample (3d) or of the rendered pixel (2d); they coincide for this head."""
    mode: Literal["linear", "exact"] = "linear"
    """Responses to first order (σ|⟨J_p, J_k⟩|) or of the perturbed head (cached trunk features)."""
    sigma: float = 0.1
    """Perturbation magnitude σ."""
    frames: Literal["all", "train", "eval"] = "all"
    """Which frames of the dataset to label."""
    min_confidence: float = 0.0
    """Pixels whose confidence (s1 − s2) / s1 is below this get id 0 (unlabelled)."""
    voxel_size: Optional[float] = None
    """Voxel of the point cloud, in the units of the poses (default: one pixel's footprint at near depths)."""
    overwrite: bool = False
    """Replace an export (or write into a non-empty folder) instead of refusing."""
    force: bool = False
    """Apply a click set whose scene fingerprint is not this run's scene."""

    def main(self) -> None:
        from nerfstudio.utils.rich_utils import CONSOLE
        from rich.progress import track

        from jacobinerf_ns.clicks import read_clicks, require_clicks
        from jacobinerf_ns.label_export import ExportFolder
        from jacobinerf_ns.propagation.labelling import label_frame, resolve_clicks
        from jacobinerf_ns.scene import dataset_scene, scene_mismatch
        from jacobinerf_ns.visualization import palette

        self.check_options()
        click_set = read_clicks(self.clicks)
        require_clicks(click_set, str(self.clicks))  # before the run loads
        pipeline, checkpoint = self.load_run()
        scene = dataset_scene(pipeline.datamanager)
        mismatch = scene_mismatch(click_set, scene, str(self.clicks), self.force, "pass --force to apply it anyway")
        if mismatch is not None:
            CONSOLE.print(f"[yellow]jacobinerf: --force: applying {self.clicks} of another scene ({mismatch}).")
        frames = [frame for frame in scene.frames if self.frames in ("all", frame.split)]
        stems = Counter(frame.stem for frame in frames)
        repeated = sorted(frame.name for frame in frames if stems[frame.stem] > 1)
        if repeated:
            raise JacobiNerfError(f"Images share a file stem ({', '.join(repeated[:4])}): their outputs would clash.")
        model = pipeline.model
        clicks = resolve_clicks(model, click_set, scene, str(self.clicks))
        folder = ExportFolder(self.output_dir)
        folder.prepare(self.identity(click_set.digest(), checkpoint), scene, self.overwrite)
        for warning in clicks.skipped:
            CONSOLE.print(f"[yellow]jacobinerf: {warning}")
        for name in sorted(set(click_set.classes) - {click_set.classes[i - 1] for i in clicks.class_ids}):
            CONSOLE.print(f"[yellow]jacobinerf: class {name!r} has no click on a surface: no pixel gets it.")
        colors = palette(len(click_set.classes) + 1)
        todo = [frame for frame in frames if not folder.is_written(frame)]
        if len(todo) < len(frames):
            CONSOLE.print(f"Resuming: {len(frames) - len(todo)} of {len(frames)} frames already in {self.output_dir}")
        for frame in track(todo, description="Labelling frames", console=CONSOLE):
            labels = label_frame(model, frame.camera, clicks, self.space, self.mode, self.sigma, self.min_confidence)
            folder.write_frame(frame, labels, colors)
        points, voxel = folder.write_points(scene, frames, self.voxel_size)
        folder.write_classes(click_set.classes, colors)
        folder.write_transforms(scene, frames)  # last: marks the export complete
        CONSOLE.print(
            f"Labelled {len(frames)} frames into {self.output_dir} (ids/, overlay/, confidence/); "
            f"{points} points in labelled_points.ply (voxel {voxel:.4g}); classes.json and transforms.json make it "
            f"a labelled scene: ns-train jacobinerf --data {self.output_dir}"
        )

    def check_options(self) -> None:
        if not 0.0 <= self.min_confidence <= 1.0:
            raise JacobiNerfError(
                f"--min-confidence {self.min_confidence} must lie in [0, 1] (confidence is a margin)."
            )
        if self.voxel_size is not None and not self.voxel_size > 0:
            raise JacobiNerfError(f"--voxel-size {self.voxel_size} must be positive (or left out for the default).")
        if not self.sigma > 0:
            raise JacobiNerfError(f"--sigma {self.sigma} must be positive.")
        if not self.load_config.is_file():
            raise JacobiNerfError(
                f"--load-config {self.load_config} is not a file: give the config.yml of a trained jacobinerf run."
            )

    def load_run(self):
        """The run's pipeline (ns-eval's loader) and its checkpoint."""
        from nerfstudio.utils.eval_utils import eval_setup

        from jacobinerf_ns.pipeline import JacobiNerfPipeline

        config, pipeline, checkpoint, _ = eval_setup(self.load_config, test_mode="test")
        if not isinstance(pipeline, JacobiNerfPipeline):
            raise JacobiNerfError(
                f"--load-config {self.load_config} is a '{config.method_name}' run: give a jacobinerf run."
            )
        return pipeline, checkpoint

    def identity(self, clicks_digest: str, checkpoint: Path) -> dict:
        """What the export is made of (:data:`jacobinerf_ns.label_export.IDENTITY`), recorded in the folder."""
        return {
            "clicks": clicks_digest,
            "clicks_file": str(self.clicks),
            "config": str(self.load_config.resolve()),
            "checkpoint": str(Path(checkpoint).resolve()),
            "space": self.space,
            "mode": self.mode,
            "sigma": self.sigma,
            "min_confidence": self.min_confidence,
        }


def entrypoint() -> None:
    errors.report_user_errors()
    tyro.cli(Label).main()


if __name__ == "__main__":
    entrypoint()
