"""Photometric metric helpers that behave offline."""

from __future__ import annotations

import torch
from nerfstudio.utils.rich_utils import CONSOLE


class OfflineLPIPS(torch.nn.Module):
    """LPIPS built on first use; without network (its AlexNet weights download) it reports itself unavailable.

    nerfacto builds LPIPS eagerly, which downloads at model construction and fails offline.
    """

    def __init__(self, normalize: bool = True) -> None:
        super().__init__()
        self.normalize = normalize
        self.available = True
        self._metric = None

    def forward(self, preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self._metric is None and self.available:
            from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

            try:
                self._metric = LearnedPerceptualImagePatchSimilarity(normalize=self.normalize).to(preds.device)
            except Exception as error:  # offline: URLError / OSError from the weight download
                self.available = False
                CONSOLE.print(f"[yellow]LPIPS unavailable ({type(error).__name__}); it is left out of the metrics.")
        if self._metric is None:
            return torch.full((), float("nan"))
        return self._metric(preds, target)
