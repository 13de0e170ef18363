"""``jacobinerf-export-labels``: write propagated label maps (id PNGs + colour overlays) for every eval view.

    jacobinerf-export-labels --load-config outputs/.../config.yml --output-dir labels/

Uses the run's propagation protocol (source view, seeded clicks) — the same clicks and code as ``ns-eval``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Literal, Optional, Sequence

import torch
import tyro

from jacobinerf_ns import errors
from jacobinerf_ns.propagation.protocol import MethodName


@dataclass
class ExportLabels:
    """Propagate labels from the source view's clicks to every eval view and save them as images."""

    load_config: Path
    """config.yml of a trained jacobinerf run."""
    output_dir: Path = Path("propagated_labels")
    """Where ``ids/``, ``overlay/`` and ``clicks.json`` go (the clicks as a click set: ``docs/clicks.md``; give it to
    ``jacobinerf-label`` to label every frame)."""
    kind: Literal["semantics", "instances"] = "semantics"
    """Which labels of the dataset to click from the source view."""
    setting: Literal["sparse", "dense"] = "sparse"
    space: Literal["3d", "2d"] = "3d"
    """Which space's labels to write, when the method has both (jacobian); otherwise the method's own."""
    method: Optional[MethodName] = None
    """Propagation method (default: the run's ``--pipeline.propagation.method``)."""

    def main(self) -> None:
        from nerfstudio.utils.rich_utils import CONSOLE
        from rich.progress import track

        from jacobinerf_ns import files
        from jacobinerf_ns.clicks import ClickSet, write_clicks
        from jacobinerf_ns.evaluation import fit_propagation
        from jacobinerf_ns.runs import open_run
        from jacobinerf_ns.scene import dataset_scene, pixel_click
        from jacobinerf_ns.visualization import label_image, label_overlay, load_rgb, palette, to_uint8

        _, pipeline, _ = open_run(self.load_config)
        if self.method is not None:
            pipeline.config.propagation.method = self.method
        protocol = pipeline.config.propagation
        views = pipeline.propagation_views(self.kind)
        seed = protocol.draw_seeds()[0]  # the first draw of the protocol
        fitted = fit_propagation(pipeline.model, views, self.setting, protocol, torch.Generator().manual_seed(seed))
        names = pipeline.datamanager.train_dataparser_outputs.metadata[self.kind].classes
        colors = palette(max(len(names), int(views.source_labels.max()) + 1))
        for index in track(range(len(views.target_cameras)), description="Propagating labels", console=CONSOLE):
            predicted = fitted.predict(index)
            labels = predicted.get(self.space, next(iter(predicted.values())))
            stem = Path(views.target_images[index]).stem
            files.save_image(self.output_dir / "ids" / f"{stem}.png", label_image(labels))
            rgb = load_rgb(views.target_images[index], *labels.shape)
            files.save_image(self.output_dir / "overlay" / f"{stem}.png", to_uint8(label_overlay(rgb, labels, colors)))
        scene = dataset_scene(pipeline.datamanager)
        source = next(f for f in scene.frames if f.split == "train" and f.index == views.source_index)
        classes = class_names(names, max(fitted.click_labels))
        click_set = ClickSet(
            classes=tuple(classes),
            clicks=tuple(
                pixel_click(source, y + 0.5, x + 0.5, classes[label - 1])
                for (y, x), label in zip(fitted.pixels.tolist(), fitted.click_labels)
            ),
            fingerprint=scene.fingerprint(),
        )
        about = dict(
            source_view=views.source_index,
            seed=seed,
            kind=self.kind,
            method=protocol.method,
            setting=self.setting,
            space=self.space,
        )
        write_clicks(self.output_dir / "clicks.json", click_set, about)
        CONSOLE.print(f"Wrote {len(views.target_cameras)} label maps to {self.output_dir}")


def class_names(names: Sequence[str], max_id: int) -> List[str]:
    """Names of the dataset's ids ``1..`` as a click set's classes (position + 1 = id): distinct (a repeated name gets
    its id appended, as instance tables repeat class names) and present for every clicked id."""
    names = [names[i] if i < len(names) else f"id {i}" for i in range(1, max(max_id, len(names) - 1) + 1)]
    return [f"{name} #{i}" if names.count(name) > 1 else name for i, name in enumerate(names, start=1)]


def entrypoint() -> None:
    errors.report_user_errors()
    tyro.cli(ExportLabels).main()


if __name__ == "__main__":
    entrypoint()
