"""Export of the viewer's selection: a mask for every training view and the selected entity as a coloured PLY."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Tuple

import numpy as np
import torch

from jacobinerf_ns import files
from jacobinerf_ns.pointcloud import backproject, to_original_frame, write_ply
from jacobinerf_ns.visualization import to_uint8

if TYPE_CHECKING:
    from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs

    from jacobinerf_ns.viewer.selection import Selection


def export_selection(selection: Selection, train_outputs: DataparserOutputs, folder: Path) -> Tuple[int, int]:
    """``folder/masks/<image stem>.png`` (255 = selected) and ``folder/selection.ply`` (original frame).

    Returns the number of masks and of points.
    """
    cameras = train_outputs.cameras
    points, colors = [], []
    for index in range(len(cameras)):
        camera = cameras[index : index + 1]
        mask, outputs = selection.mask(camera)
        mask = mask.cpu()
        stem = Path(train_outputs.image_filenames[index]).stem
        files.save_image(folder / "masks" / f"{stem}.png", mask.numpy().astype(np.uint8) * 255)
        points.append(backproject(camera, outputs["depth"].cpu())[mask])
        colors.append(outputs["rgb"].cpu()[mask])
    world = to_original_frame(torch.cat(points), train_outputs)
    write_ply(folder / "selection.ply", world.numpy(), to_uint8(torch.cat(colors)))
    return len(cameras), len(world)
