"""``jacobinerf-export-labels``: write propagated label maps (id PNGs + colour overlays) for every eval view.

    jacobinerf-export-labels --load-config outputs/.../config.yml --output-dir labels/

Uses the run's propagation protocol (source view, seeded clicks) — the same clicks and code as ``ns-eval``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import tyro
from PIL import Image


@dataclass
class ExportLabels:
    """Propagate labels from the source view's clicks to every eval view and save them as images."""

    load_config: Path
    """config.yml of a trained jacobinerf run."""
    output_dir: Path = Path("propagated_labels")
    """Where ``ids/``, ``overlay/`` and ``clicks.json`` go."""
    kind: Literal["semantics", "instances"] = "semantics"
    """Which labels of the dataset to click from the source view."""
    setting: Literal["sparse", "dense"] = "sparse"
    space: Literal["3d", "2d"] = "3d"

    def main(self) -> None:
        from nerfstudio.utils.eval_utils import eval_setup
        from nerfstudio.utils.rich_utils import CONSOLE
        from rich.progress import track

        from jacobinerf_ns.dataparsers.labels import palette
        from jacobinerf_ns.evaluation import fit_propagation
        from jacobinerf_ns.surrogates import load_label_maps

        _, pipeline, _, _ = eval_setup(self.load_config, test_mode="test")
        train_outputs = pipeline.datamanager.train_dataparser_outputs
        eval_outputs = pipeline.datamanager.eval_dataset._dataparser_outputs
        if self.kind not in train_outputs.metadata:
            raise SystemExit(f"This dataset has no {self.kind} labels to click; label maps need a labelled source view.")
        protocol = pipeline.config.propagation
        source_camera = train_outputs.cameras[protocol.source_view : protocol.source_view + 1]
        source = load_label_maps([train_outputs.metadata[self.kind].filenames[protocol.source_view]], int(source_camera.height), int(source_camera.width))[0]
        fitted = fit_propagation(pipeline.model, source_camera, source, self.setting, protocol, torch.Generator().manual_seed(protocol.seed))
        names = train_outputs.metadata[self.kind].classes
        colors = palette(max(len(names), int(source.max()) + 1))
        for folder in ("ids", "overlay"):
            (self.output_dir / folder).mkdir(parents=True, exist_ok=True)
        for index in track(range(len(eval_outputs.cameras)), description="Propagating labels", console=CONSOLE):
            predicted, outputs = fitted.predict(pipeline.model, eval_outputs.cameras[index : index + 1])
            labels = predicted[self.space]
            stem = Path(eval_outputs.image_filenames[index]).stem
            Image.fromarray(labels.numpy().astype(np.uint8 if labels.max() < 256 else np.uint16)).save(self.output_dir / "ids" / f"{stem}.png")
            overlay = 0.5 * outputs["rgb"].cpu().clamp(0, 1) + 0.5 * colors[labels]
            Image.fromarray((overlay.numpy() * 255).astype(np.uint8)).save(self.output_dir / "overlay" / f"{stem}.png")
        clicks = [{"y": int(y), "x": int(x), "label": int(label), "name": names[label] if label < len(names) else str(label)} for (y, x), label in zip(fitted.pixels.tolist(), fitted.click_labels)]
        (self.output_dir / "clicks.json").write_text(json.dumps({"source_view": protocol.source_view, "kind": self.kind, "setting": self.setting, "space": self.space, "clicks": clicks}, indent=2))
        CONSOLE.print(f"Wrote {len(eval_outputs.cameras)} label maps to {self.output_dir}")


def entrypoint() -> None:
    tyro.cli(ExportLabels).main()


if __name__ == "__main__":
    entrypoint()
