"""Per class, the share of a ``jacobinerf-label`` export's labelled pixels that enter its point cloud: the export's
frames fused again as the command fuses them (its run, the default checks), into a copy of the export.

    python bench/fused_shares.py --export OUT/labels/rendered [--no-captured-depth] [--json out.json]

``--no-captured-depth`` fuses at the rendered depth (as an export made with it, or a capture without depth maps).
Prints class → share and labelled pixels, and the share of all labelled pixels; ``jacobinerf-label`` warns about a
class under ``MIN_FUSED_SHARE`` (docs/labelling.md#a-class-the-point-cloud-leaves-out).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", type=Path, required=True, help="a complete jacobinerf-label output folder")
    parser.add_argument("--no-captured-depth", action="store_true", help="fuse at the rendered depth")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    from jacobinerf_ns.commands.label import MIN_FUSED_SHARE, Label
    from jacobinerf_ns.label_export import ExportFolder
    from jacobinerf_ns.scene import dataset_scene

    manifest = json.loads((args.export / "export.json").read_text())
    names = [row["name"] for row in json.loads((args.export / "classes.json").read_text())["semantic_classes"]]
    with tempfile.TemporaryDirectory() as temporary:
        copy = Path(temporary) / "export"
        shutil.copytree(args.export, copy)
        label = Label(Path(manifest["config"]), Path(manifest["clicks_file"]), copy,
                      captured_depth=not args.no_captured_depth)  # fmt: skip
        pipeline, _ = label.load_run()
        scene = dataset_scene(pipeline.datamanager)
        folder = ExportFolder(copy)
        frames = [frame for frame in scene.frames if folder.is_written(frame)]
        judges = folder.depth_views([frame for frame in frames if frame.split == "train"] or frames)
        captured = label.captured_depths(frames, scene, pipeline.model)
        fusion = folder.write_points(scene, frames, None, judges, label.fusion_check(), captured)
    figures = {
        "classes": {
            names[i]: {"share": share, "labelled": int(fusion.labelled[i])}
            for i, share in fusion.class_shares().items()
        },
        "kept_share": fusion.kept_share,
        "at": "rendered depth" if captured is None else "captured depth where the scene has it",
    }
    print(f"{args.export} fused at the {figures['at']} (warned under {MIN_FUSED_SHARE:.0%}):")
    for name, row in figures["classes"].items():
        print(f"  {name}: {row['share']:.3f} of {row['labelled']} labelled pixels")
    print(f"  all: {fusion.kept_share:.3f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
