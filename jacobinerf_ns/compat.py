"""Every workaround for nerfstudio 1.1.5's internals, in one place; each is applied where it is needed.

* :func:`allow_numpy_scalars` — nerfstudio's schedulers store numpy float64 learning rates in checkpoints, and
  ``ns-eval`` / ``ns-viewer`` / resume call ``torch.load`` without ``weights_only`` (``True`` by default since torch
  2.6). Applied when a jacobinerf pipeline is built, before nerfstudio loads a checkpoint.
* :func:`nerfacto_parts` — nerfacto builds its field and its LPIPS inside ``populate_modules`` by module-level names.
  The model swaps in its field and an LPIPS that does not download by replacing those names for the duration of that
  one call (an explicit, scoped replacement; overriding ``populate_modules`` would copy ~80 lines of nerfacto), and
  :func:`check_nerfacto_parts` verifies afterwards that the swap took.
* :class:`OfflineLPIPS` — nerfacto's LPIPS downloads AlexNet weights when it is built, which fails offline.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import numpy as np
import torch
from nerfstudio.utils.rich_utils import CONSOLE

NERFSTUDIO_VERSION = "1.1.5"
"""The nerfstudio release these workarounds are written for (``pyproject.toml`` pins it)."""


def allow_numpy_scalars() -> None:
    """Registers numpy scalar reconstruction (and its dtypes) as safe globals for ``torch.load``."""
    if np.lib.NumpyVersion(np.__version__) >= "2.0.0":
        from numpy._core.multiarray import scalar
    else:
        from numpy.core.multiarray import scalar
    dtypes = [type(np.dtype(name)) for name in ("float64", "float32", "int64", "int32", "bool")]
    torch.serialization.add_safe_globals([scalar, np.dtype, *dtypes])


class OfflineLPIPS(torch.nn.Module):
    """LPIPS built on first use; without network (its AlexNet weights download) it reports itself unavailable."""

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


@contextlib.contextmanager
def replaced_attributes(owner: object, **replacements: object) -> Iterator[None]:
    """Within the block, ``owner.<name>`` is ``replacements[name]``; the originals are restored afterwards."""
    originals = {name: getattr(owner, name) for name in replacements}
    try:
        for name, value in replacements.items():
            setattr(owner, name, value)
        yield
    finally:
        for name, value in originals.items():
            setattr(owner, name, value)


@contextlib.contextmanager
def nerfacto_parts(field_class: Callable) -> Iterator[None]:
    """During ``NerfactoModel.populate_modules``: nerfacto builds ``field_class`` and :class:`OfflineLPIPS`."""
    import nerfstudio.models.nerfacto as nerfacto
    import torchmetrics.image.lpip as lpip

    with replaced_attributes(nerfacto, NerfactoField=field_class):
        with replaced_attributes(lpip, LearnedPerceptualImagePatchSimilarity=OfflineLPIPS):
            yield


def check_nerfacto_parts(model: torch.nn.Module, field_type: type) -> None:
    """Raises when :func:`nerfacto_parts` did not take (a nerfstudio other than the pinned release)."""
    from importlib.metadata import version

    built = {"field": (model.field, field_type), "lpips": (model.lpips, OfflineLPIPS)}
    wrong = [
        f"{name} is a {type(part).__name__}"
        for name, (part, expected) in built.items()
        if not isinstance(part, expected)
    ]
    if wrong:
        raise RuntimeError(
            f"jacobinerf could not build its parts into nerfacto ({', '.join(wrong)}): it supports nerfstudio "
            f"{NERFSTUDIO_VERSION}, and nerfstudio {version('nerfstudio')} is installed. "
            f"Install nerfstudio=={NERFSTUDIO_VERSION}."
        )
