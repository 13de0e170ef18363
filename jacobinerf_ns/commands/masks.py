"""``jacobinerf-masks``: masks from SAM's automatic mask generator for the training images of a scene, in the layout
``--pipeline.datamanager.masks-dir`` reads.

    jacobinerf-masks --data SCENE --output-dir masks [jacobinerf-replica ...]
    ns-train jacobinerf --data SCENE --pipeline.datamanager.surrogate masks --pipeline.datamanager.masks-dir masks

The scene is read by the dataparser ``ns-train`` would use (the same subcommand and split options), and each training
image gets ``<stem>.png``: uint16 ids, 0 = no mask, the smaller mask winning where masks overlap
(:mod:`jacobinerf_ns.segmentation.id_maps`). A rerun into the same folder segments only the images without a mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import tyro
from nerfstudio.configs.dataparser_configs import AnnotatedDataParserUnion

from jacobinerf_ns import errors
from jacobinerf_ns.dataparsers.nerfstudio_labelled import LabelledNerfstudioDataParserConfig
from jacobinerf_ns.errors import JacobiNerfError, require


@dataclass
class Masks:
    """Segment every training image of a scene with SAM's automatic mask generator: one uint16 id PNG per image,
    the folder --pipeline.datamanager.masks-dir reads."""

    output_dir: Path
    """Where the masks go (<image stem>.png; images that already have one are skipped)."""
    data: Optional[Path] = None
    """The scene, as ns-train's --data (or the dataparser subcommand's own --data)."""
    dataparser: AnnotatedDataParserUnion = field(default_factory=LabelledNerfstudioDataParserConfig)
    """How the scene is read (ns-train's dataparser subcommand and its options, e.g. jacobinerf-replica)."""
    model_type: Literal["vit_b", "vit_l", "vit_h"] = "vit_b"
    """SAM's image encoder (vit_h is segment-anything's default; vit_b is the cheapest)."""
    weights: Optional[Path] = None
    """A local SAM checkpoint of --model-type (default: Meta's, downloaded once into torch's hub cache)."""
    points_per_side: int = 32
    """The generator's prompt grid: points_per_side² points per image (cost grows with it)."""
    points_per_batch: int = 64
    """Prompts decoded together (memory against speed)."""
    pred_iou_thresh: float = 0.88
    """Masks whose predicted IoU is lower are dropped."""
    stability_score_thresh: float = 0.95
    """Masks whose stability score is lower are dropped."""
    device: Optional[str] = None
    """Torch device (default: cuda when available, else cpu)."""

    def main(self) -> None:
        from nerfstudio.utils.rich_utils import CONSOLE

        from jacobinerf_ns.segmentation.mask_folder import write_mask_folder

        device = self.check_options()
        images = self.training_images()
        written = write_mask_folder(images, self.output_dir, lambda: self.generator(device, CONSOLE), CONSOLE)
        CONSOLE.print(
            f"Masks for {len(images)} training images in {self.output_dir} ({written} segmented now); shape with "
            f"them: ns-train jacobinerf ... --pipeline.datamanager.surrogate masks "
            f"--pipeline.datamanager.masks-dir {self.output_dir}"
        )

    def check_options(self) -> str:
        """The torch device; JacobiNerfError naming the option otherwise."""
        import torch

        require(self.points_per_side >= 1, f"--points-per-side {self.points_per_side}", "must be at least 1.")
        require(self.points_per_batch >= 1, f"--points-per-batch {self.points_per_batch}", "must be at least 1.")
        for option in ("pred_iou_thresh", "stability_score_thresh"):
            value = getattr(self, option)
            require(0.0 <= value <= 1.0, f"--{option.replace('_', '-')} {value}", "must lie in [0, 1].")
        require(
            not self.output_dir.exists() or self.output_dir.is_dir(),
            f"--output-dir {self.output_dir}",
            "is a file: give a folder.",
        )
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            torch.empty(0, device=device)
        except (RuntimeError, AssertionError) as error:  # a malformed name, or CUDA absent from this machine/build
            raise JacobiNerfError(f"--device {device} is not usable here ({error}): use --device cpu.") from error
        return device

    def training_images(self):
        """The training images as the dataparser lists them for ns-train."""
        if self.data is not None:
            self.dataparser.data = self.data
        return list(self.dataparser.setup().get_dataparser_outputs(split="train").image_filenames)

    def generator(self, device: str, console):
        from segment_anything import SamAutomaticMaskGenerator

        from jacobinerf_ns.segmentation.sam_weights import load_sam

        sam = load_sam(self.model_type, self.weights, device, console)
        return SamAutomaticMaskGenerator(sam, **self.generator_options())

    def generator_options(self) -> dict:
        """segment-anything's ``SamAutomaticMaskGenerator`` arguments besides the model."""
        return {
            "points_per_side": self.points_per_side,
            "points_per_batch": self.points_per_batch,
            "pred_iou_thresh": self.pred_iou_thresh,
            "stability_score_thresh": self.stability_score_thresh,
        }


def entrypoint() -> None:
    errors.report_user_errors()
    tyro.cli(Masks).main()


if __name__ == "__main__":
    entrypoint()
