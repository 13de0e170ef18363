"""``jacobinerf-label``: labels for every frame of a run's dataset, a labelled scene and a labelled point cloud, from
a click set (``docs/clicks.md``).

    jacobinerf-label --load-config outputs/.../config.yml --clicks clicks.json --output-dir labelled/

Writes ``ids/``, ``overlay/``, ``confidence/`` per frame, then ``labelled_points.ply``, ``classes.json`` and
``transforms.json`` (the output folder is a labelled nerfstudio-data scene: ``ns-train ... --data labelled/``); the
layout is :mod:`jacobinerf_ns.label_export`. A rerun into the same folder resumes an interrupted export. The point
cloud takes the capture's depth where the scene has it; elsewhere the training frames' rendered depths judge its
points (:mod:`jacobinerf_ns.depth_consistency`), as they judge each click's surface.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import tyro

from jacobinerf_ns import errors
from jacobinerf_ns.errors import JacobiNerfError

MIN_FUSED_SHARE = 0.1
"""A class whose labelled pixels enter the point cloud at a lower share is named in a warning: the run renders its
surface see-through or soft, and the cloud leaves most of it out
(docs/labelling.md#a-class-the-point-cloud-leaves-out)."""


def poorly_fused_message(name: str, share: float, pixels: int, captured: bool, distortion_waited: bool) -> str:
    """Why class ``name`` is mostly missing from the point cloud (its labels in ``ids/`` stay): ``share`` of its
    ``pixels`` labelled pixels entered it; ``captured``: fused at the scene's depth maps, which the render missed;
    ``distortion_waited``: the run's distortion loss started after step 0, the advice without depth maps."""
    if captured:
        why = "the run renders its surface off the captured depth (a floater in front, or see-through)"
        fix = "the depth loss (on by default with depth maps) and a longer run place it nearer the capture"
    else:
        why = (
            "their rays place no single surface that other training views render there: the run renders it "
            "see-through or soft"
        )
        without = (
            "another training draw (--machine.seed) may render it whole: some draws render a wall or floor see-through "
            "whatever the settings (docs/training.md#no-depth-defaults)"
            if distortion_waited
            else "--pipeline.model.distortion-loss-start-step at the shaping start (docs/training.md#distortion-start)"
        )
        fix = f"depth maps place surfaces (docs/training.md#depth); for a room captured without them, {without}"
    return (
        f"class {name!r}: {share:.0%} of its {pixels} labelled pixels entered labelled_points.ply (its labels in ids/ "
        f"stay); {why}. {fix[0].upper()}{fix[1:]}."
    )


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
    propagation: Literal["surface", "nearest"] = "surface"
    """How the clicks' classes reach pixels: surface (the classes spread from the clicks over the surfaces the
    training frames see, across alike Jacobians and the run's masks: a click labels the whole surface and mask it lies
    on, and every frame agrees) or nearest (each pixel takes the class of the click its Jacobian is most like, frame by
    frame)."""
    masks: bool = True
    """--propagation surface: join the graph's nodes inside each mask of a training image (the masks the run was
    shaped with: --pipeline.datamanager.masks-dir or the dataset's labels), so a click labels the whole mask it lies
    in, and the masks of other frames through the surface they share; --no-masks spreads over the surfaces alone (a
    run shaped without masks has none)."""
    surface_pixels: int = 2048  # surface_labelling.PIXELS_PER_FRAME
    """--propagation surface: pixels of each training frame (a regular grid) that become nodes of the surface
    graph."""
    min_confidence: float = 0.0
    """Pixels whose confidence is below this get id 0 (unlabelled): (s1 − s2) / s1 of the two best class scores
    with --propagation nearest; s1 − s2 with surface, whose scores lie in [0, 1]."""
    min_explained: float = 0.5  # labelling.MIN_EXPLAINED (literal: --help imports no torch)
    """--propagation nearest: pixels that resemble no click (best |cos| of their Jacobian to a click's below this, the
    measure 'Suggest next click' uses) get id 0; 0 gives every pixel that hits a surface a class."""
    min_resemblance: float = 0.3  # surface_labelling.MIN_MASK_RESEMBLANCE
    """--propagation surface on a run with masks: a class reaches no pixel whose mask resembles its clicks' masks less
    than this (|cos| of their mean Jacobians), so a mask nobody clicked anything like stays id 0; 0 gives every pixel
    that hits a surface a class (without masks the spread labels every such pixel)."""
    min_class_score: float = 0.1  # surface_labelling.MIN_CLASS_SCORE
    """--propagation surface on a run with masks: a pixel whose best class score (the class's share of the spread ×
    its resemblance⁴, in [0, 1]: what 'Suggest next click' looks for the lowest of) is below this stays id 0: the
    clicks explain it poorly (the sky, a floater, a surface nobody clicked anything like); 0 with --min-resemblance 0
    gives every pixel that hits a surface a class."""
    voxel_size: Optional[float] = None
    """Voxel of the point cloud, in the units of the poses (default: one pixel's footprint at near depths)."""
    min_agreeing_views: int = 2  # depth_consistency.MIN_AGREEING_VIEWS
    """A labelled pixel enters the point cloud, and a click's surface passes, when at least this many other training
    views render a surface where it is (0: no depth check)."""
    depth_tolerance: float = 0.03  # depth_consistency.DEPTH_TOLERANCE
    """Relative distance within which a view's rendered depth agrees with a point's."""
    min_triangulation_angle: float = 2.0  # depth_consistency.MIN_TRIANGULATION_ANGLE
    """Degrees: a training view judges a point only if its line of sight to the point is at least this far from the
    ray the point was seen along (a view without parallax would agree with a surface placed anywhere on that ray)."""
    min_surface_share: float = 0.6  # depth_consistency.MIN_SURFACE_SHARE
    """A labelled pixel fused at its rendered depth must place one surface on its ray: at least this share of the ray's
    weight lies within 3% of its rendered depth (surface_share/); 0: no such check."""
    captured_depth: bool = True
    """Where the scene has depth maps (depth_file_path), fuse the point cloud at the captured depth, keeping the
    pixels whose rendered depth agrees with it; else (or with --no-captured-depth) at the rendered depth."""
    capture_tolerance: float = 0.03  # depth_consistency.CAPTURE_TOLERANCE
    """Relative distance within which a pixel's rendered depth agrees with the captured depth (a floater's pixel,
    rendered in front of the captured surface, stays out); looser covers more of the surface, with less sure labels."""
    overwrite: bool = False
    """Replace an export (or write into a non-empty folder) instead of refusing."""
    force: bool = False
    """Apply a click set whose scene fingerprint is not this run's scene."""

    def main(self) -> None:
        from nerfstudio.utils.rich_utils import CONSOLE
        from rich.progress import track

        from jacobinerf_ns.clicks import read_clicks, require_clicks
        from jacobinerf_ns.label_export import ExportFolder
        from jacobinerf_ns.propagation.labelling import resolve_clicks, unconfirmed_clicks
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
        judge_frames = [frame for frame in frames if frame.split == "train"] or frames
        self.check_judges(judge_frames)
        model = pipeline.model
        captured = self.captured_depths(frames, scene, model)
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
        if todo:
            label = self.labeller(model, clicks, scene.training_frames(), pipeline.datamanager)
            for frame in track(todo, description="Labelling frames", console=CONSOLE):
                folder.write_frame(frame, label(frame), colors)
        judges = folder.depth_views(judge_frames)
        check = self.fusion_check()
        views = check.min_views
        for warning in unconfirmed_clicks(clicks.surfaces, judges, check):
            CONSOLE.print(f"[yellow]jacobinerf: {warning}")
        fusion = folder.write_points(scene, frames, self.voxel_size, judges, check, captured)
        folder.write_classes(click_set.classes, colors)
        folder.write_transforms(scene, frames)  # last: marks the export complete
        waited = model.distortion_start_step > 0
        for class_id, share in fusion.class_shares().items():
            if share < MIN_FUSED_SHARE:
                name, pixels = click_set.classes[class_id - 1], int(fusion.labelled[class_id])
                message = poorly_fused_message(name, share, pixels, captured is not None, waited)
                CONSOLE.print(f"[yellow]jacobinerf: {message}")
        kept = fusion.kept_share
        checked = (
            f"{kept:.0%} of the labelled pixels: those whose ray has one surface that at least {views} other "
            "training views agree on"
            if views
            else "every labelled pixel: no depth check"
        )
        if captured is not None:
            elsewhere = f", elsewhere where the ray has one surface that {views} other views agree on" if views else ""
            checked = f"{kept:.0%} of the labelled pixels: at the captured depth where the render agrees{elsewhere}"
        CONSOLE.print(
            f"Labelled {len(frames)} frames into {self.output_dir} (ids/, overlay/, confidence/); "
            f"{fusion.points} points in labelled_points.ply (voxel {fusion.voxel:.4g}; {checked}); classes.json and "
            f"transforms.json make it a labelled scene: ns-train jacobinerf --data {self.output_dir}"
        )

    def fusion_check(self):
        """The options' :class:`~jacobinerf_ns.depth_consistency.FusionCheck`."""
        from jacobinerf_ns.depth_consistency import FusionCheck

        return FusionCheck(
            min_views=self.min_agreeing_views,
            tolerance=self.depth_tolerance,
            min_angle=self.min_triangulation_angle,
            min_surface_share=self.min_surface_share,
            capture_tolerance=self.capture_tolerance,
        )

    def labeller(self, model, clicks, frames, datamanager):
        """Frame → its labels, by ``--propagation`` (surface: the graph over ``frames``, the scene's training frames
        whatever ``--frames`` exports, and the run's masks of them is built first: a frame's labels depend on the run
        and the clicks, not on which frames are exported)."""
        from jacobinerf_ns.propagation.labelling import label_frame

        if self.propagation == "nearest":
            options = dict(min_confidence=self.min_confidence, min_explained=self.min_explained)
            return lambda frame: label_frame(model, frame.camera, clicks, self.space, self.mode, self.sigma, **options)
        surface = self.spread(model, clicks, frames, datamanager)
        return lambda frame: surface.label_frame(model, frame.camera, self.min_confidence)

    def spread(self, model, clicks, frames, datamanager):
        """``--propagation surface``'s :class:`~jacobinerf_ns.propagation.surface_labelling.SurfaceLabelling`: the
        clicks spread over the graph of ``frames`` (with a progress bar) and, with ``--masks``, their masks."""
        from nerfstudio.utils.rich_utils import CONSOLE
        from rich.progress import track

        from jacobinerf_ns.propagation.surface_labelling import SurfaceLabelling, surface_graph
        from jacobinerf_ns.scene import frame_masks

        cameras = track([frame.camera for frame in frames], "Spreading over the surfaces", console=CONSOLE)
        masks = frame_masks(datamanager, frames) if self.masks else None
        graph = surface_graph(model, cameras, self.surface_pixels, masks)
        return SurfaceLabelling.spread(
            graph, clicks, min_resemblance=self.min_resemblance, min_score=self.min_class_score
        )

    def check_options(self) -> None:
        if self.surface_pixels < 1:
            raise JacobiNerfError(f"--surface-pixels {self.surface_pixels} must be 1 or more (graph nodes per frame).")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise JacobiNerfError(
                f"--min-confidence {self.min_confidence} must lie in [0, 1] (confidence is a margin)."
            )
        for option, value, what in (
            ("--min-explained", self.min_explained, "a cosine"),
            ("--min-resemblance", self.min_resemblance, "a cosine"),
            ("--min-class-score", self.min_class_score, "a share times a cosine's power"),
        ):
            if not 0.0 <= value <= 1.0:
                raise JacobiNerfError(f"{option} {value} must lie in [0, 1] ({what}; 0 labels every pixel).")
        if self.min_agreeing_views < 0:
            raise JacobiNerfError(f"--min-agreeing-views {self.min_agreeing_views} must be 0 (no depth check) or more.")
        for option, value in (
            ("--depth-tolerance", self.depth_tolerance),
            ("--capture-tolerance", self.capture_tolerance),
        ):
            if not 0.0 < value < 1.0:
                raise JacobiNerfError(f"{option} {value} must lie in (0, 1) (a share of the distance).")
        if not 0.0 <= self.min_triangulation_angle < 90.0:
            raise JacobiNerfError(
                f"--min-triangulation-angle {self.min_triangulation_angle} must lie in [0, 90) (degrees)."
            )
        if not 0.0 <= self.min_surface_share <= 1.0:
            raise JacobiNerfError(
                f"--min-surface-share {self.min_surface_share} must lie in [0, 1] (a share of the ray's weight; 0: no "
                "check)."
            )
        if self.voxel_size is not None and not self.voxel_size > 0:
            raise JacobiNerfError(f"--voxel-size {self.voxel_size} must be positive (or left out for the default).")
        if not self.sigma > 0:
            raise JacobiNerfError(f"--sigma {self.sigma} must be positive.")
        if not self.load_config.is_file():
            raise JacobiNerfError(
                f"--load-config {self.load_config} is not a file: give the config.yml of a trained jacobinerf run."
            )

    def check_judges(self, frames) -> None:
        """The depth check projects into perspective cameras only."""
        from nerfstudio.cameras.cameras import CameraType

        if self.min_agreeing_views == 0:
            return
        for frame in frames:
            kind = int(frame.camera.camera_type.flatten()[0])
            if kind != CameraType.PERSPECTIVE.value:
                raise JacobiNerfError(
                    f"Frame {frame.name} has a {CameraType(kind).name} camera: the depth check of the point cloud "
                    "and the clicks projects into perspective cameras only; pass --min-agreeing-views 0 to export "
                    "without it."
                )

    def captured_depths(self, frames, scene, model):
        """What fuses each frame at the capture's depth (``None`` when no frame has a depth map or with
        ``--no-captured-depth``). The dataparser has checked that every depth map named exists."""
        from jacobinerf_ns.pointcloud import captured_distance, depth_file_scale

        if not self.captured_depth or all(frame.depth_file is None for frame in frames):
            return None
        scale, euclidean = depth_file_scale(scene.outputs), bool(model.config.is_euclidean_depth)
        return lambda frame: (
            None if frame.depth_file is None else captured_distance(frame.camera, frame.depth_file, scale, euclidean)
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
            "min_explained": self.min_explained,
            "min_resemblance": self.min_resemblance,
            "min_class_score": self.min_class_score,
            "propagation": self.propagation,
            "surface_pixels": self.surface_pixels,
            "masks": self.masks,
        }


def entrypoint() -> None:
    errors.report_user_errors()
    tyro.cli(Label).main()


if __name__ == "__main__":
    entrypoint()
