"""Feature maps on disk: one float16 ``.npy`` per image, written once, read per batch a pixel at a time.

RAM holds only the index (per image: its path and where its data starts; the common map shape); a batch reads the
rows of the pixels it samples (``E`` float16 each) with positioned reads, so memory does not grow with the number of
images (and, unlike memory maps, no page of a map stays resident). An entry is written under a temporary name and
renamed (:func:`jacobinerf_ns.files.atomic_path`), and counts only when its header says float16, C order, the
expected ``(h, w, E)``, and the file is exactly as long as that header implies. An interrupted or corrupted entry,
or one of other settings, is therefore recomputed, and complete ones never are: an interrupted extraction resumes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Callable, Dict, Iterator, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from jacobinerf_ns import cache, files
from jacobinerf_ns.errors import JacobiNerfError
from jacobinerf_ns.surrogates import pca

MapShape = Tuple[int, int, int]
Compute = Callable[[int], Tensor]
"""Item index → its ``(h, w, E)`` float map."""

DISK_RESERVE = 1 << 30
"""Bytes left free on the cache's disk after caching (for checkpoints, logs and everything else)."""
PCA_IMAGES = 8
"""Images (spread evenly over the list) whose maps the PCA basis is fitted on."""
PCA_VECTORS = 1 << 16
"""Feature vectors (random pixels of those maps) the basis is fitted on."""
BASIS = "pca_basis.npy"


class FeatureMaps:
    """An ``(N, h, w, E)`` float16 array stored as one ``.npy`` file per image; indexing reads only what it returns.

    ``maps[i]`` is image ``i``'s map and ``maps[cams, ys, xs]`` (index tensors) the ``(B, E)`` features at those
    pixels, so :func:`~jacobinerf_ns.surrogates.sample_bilinear` samples it like a tensor held in memory.
    """

    def __init__(self, paths: Sequence[Path], map_shape: MapShape) -> None:
        self.paths = [Path(path) for path in paths]
        self.shape = (len(self.paths), *map_shape)
        self.offsets = []
        """Where each file's data starts (after its header)."""
        for path in self.paths:
            layout = entry_layout(path)
            if layout is None or layout[0] != tuple(map_shape):
                raise JacobiNerfError(f"{path} is not a complete float16 array of shape {tuple(map_shape)}.")
            self.offsets.append(layout[1])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index) -> Tensor:
        if isinstance(index, tuple):
            return self.pixels(*index)
        return torch.from_numpy(np.load(self.paths[index]))

    def pixels(self, cams: Tensor, ys: Tensor, xs: Tensor) -> Tensor:
        """``(B, E)`` float16 features at pixels ``(cams, ys, xs)``: one positioned read per pixel, each image's file
        opened once per call."""
        cams, ys, xs = (index.long().cpu().numpy() for index in (cams, ys, xs))
        width, row_bytes = self.shape[2], self.shape[3] * 2
        out = np.empty((len(cams), self.shape[3]), dtype=np.float16)
        for image in np.unique(cams):
            with open(self.paths[image], "rb", buffering=0) as file:
                for row in np.flatnonzero(cams == image):
                    file.seek(self.offsets[image] + (int(ys[row]) * width + int(xs[row])) * row_bytes)
                    if file.readinto(memoryview(out[row]).cast("B")) != row_bytes:
                        raise JacobiNerfError(f"{self.paths[image]} is shorter than its header says: delete it.")
        return torch.from_numpy(out)


def entry_layout(path: Path, dtype=np.float16) -> Optional[Tuple[Tuple[int, ...], int]]:
    """``(shape, data offset)`` of the complete C-order ``dtype`` ``.npy`` at ``path``; None when it is missing,
    truncated, padded or anything else (only its header is read)."""
    try:
        with open(path, "rb") as file:
            version = np.lib.format.read_magic(file)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, fortran_order, stored_dtype = read_header(file)
            data_start = file.tell()
            size = os.fstat(file.fileno()).st_size
    except (OSError, ValueError):
        return None
    complete = size == data_start + int(np.prod(shape)) * stored_dtype.itemsize
    return (tuple(shape), data_start) if complete and not fortran_order and stored_dtype == np.dtype(dtype) else None


def stored_shape(path: Path, dtype=np.float16) -> Optional[Tuple[int, ...]]:
    """The shape of the complete C-order ``dtype`` ``.npy`` at ``path`` (:func:`entry_layout`), else None."""
    layout = entry_layout(path, dtype)
    return layout[0] if layout is not None else None


def write_entry(path: Path, array) -> None:
    """Writes ``array`` as a float16 ``.npy`` at ``path`` (write, then rename)."""
    with files.atomic_path(path) as temporary:
        np.save(temporary, np.ascontiguousarray(np.asarray(array, dtype=np.float16)))


def entry_name(source: Path) -> str:
    """``<stem>-<hash of the source's path, size and mtime>``: a changed source never reads a stale entry."""
    return f"{Path(source).stem}-{cache.digest(cache.file_signature(Path(source)), length=16)}"


def cached_feature_maps(
    folder: Path,
    sources: Sequence[Path],
    map_shape: MapShape,
    start: Callable[[int], Compute],
    *,
    description: str,
    feature_dim: Optional[int] = None,
) -> FeatureMaps:
    """The maps of ``sources`` (one per image), computed only where ``folder`` has no valid entry for them.

    ``folder`` must be keyed by everything but the source files (which key the entries, :func:`entry_name`).
    ``start(k)`` is called once before ``k`` maps are computed, after the free-space check, and returns the function
    computing map ``i`` (``map_shape``, float). With ``feature_dim``, maps are stored projected on the uncentred PCA
    basis (:mod:`.pca`) of a sample of them, kept in a subfolder keyed by that sample.
    """
    from nerfstudio.utils.rich_utils import CONSOLE

    sources = [Path(source) for source in sources]
    names = [entry_name(source) for source in sources]
    sample = sorted(set(np.linspace(0, len(sources) - 1, min(len(sources), PCA_IMAGES)).round().astype(int).tolist()))
    if feature_dim is not None:
        if not 0 < feature_dim < map_shape[-1]:
            raise JacobiNerfError(
                f"--pipeline.datamanager.feature-dim {feature_dim}: give a number of channels between 1 and "
                f"{map_shape[-1] - 1} (the maps have {map_shape[-1]}), or leave it out to keep them all."
            )
        folder = folder / f"pca{feature_dim}-{cache.digest([names[i] for i in sample], length=16)}"
    stored = (*map_shape[:2], feature_dim or map_shape[-1])
    entries = [folder / f"{name}.npy" for name in names]
    missing = [i for i, entry in enumerate(entries) if stored_shape(entry) != stored]
    if not missing:
        CONSOLE.print(f"{description}: all {len(sources)} maps cached in {folder}")
        return FeatureMaps(entries, stored)
    invalid = sum(entries[i].exists() for i in missing)
    CONSOLE.print(
        f"{description}: {len(sources) - len(missing)} of {len(sources)} maps cached in {folder}; computing "
        f"{len(missing)}" + (f" ({invalid} incomplete or of other settings)" if invalid else "")
    )
    basis = _stored_basis(folder, map_shape[-1], feature_dim) if feature_dim is not None else None
    refit = feature_dim is not None and basis is None
    count = len(set(missing) | set(sample)) if refit else len(missing)
    check_free_space(folder, len(missing) * int(np.prod(stored)) * 2)
    compute = start(count)
    with _progress(description, count) as advance:

        def computed(index: int) -> Tensor:
            features = compute(index)
            if tuple(features.shape) != tuple(map_shape):
                raise JacobiNerfError(
                    f"{description} of {sources[index]} has shape {tuple(features.shape)}, but {sources[0]} has "
                    f"{tuple(map_shape)}: every image needs a map of one shape (h, w, E)."
                )
            advance()
            return features.to(torch.float16)

        fitted: Dict[int, Tensor] = {}
        if refit:
            fitted = {index: computed(index) for index in sample}
            basis, kept = pca.fit_basis(_sample_vectors(list(fitted.values())), feature_dim)
            with files.atomic_path(folder / BASIS) as temporary:
                np.save(temporary, basis.numpy())
            CONSOLE.print(f"{description}: PCA {map_shape[-1]} → {feature_dim} channels keeps {kept:.1%} of the energy")
        for index in missing:
            features = fitted.pop(index) if index in fitted else computed(index)
            write_entry(entries[index], features if basis is None else pca.project(features, basis))
    return FeatureMaps(entries, stored)


def check_free_space(folder: Path, needed: int) -> None:
    """JacobiNerfError when ``folder``'s disk cannot take ``needed`` more bytes and keep :data:`DISK_RESERVE`."""
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < needed + DISK_RESERVE:
        raise JacobiNerfError(
            f"Caching the surrogate's feature maps needs {needed / 2**30:.1f} GiB in {folder}, whose disk has "
            f"{free / 2**30:.1f} GiB free (and {DISK_RESERVE / 2**30:.0f} GiB is kept free): free some space, point "
            "--pipeline.datamanager.cache-dir at a larger disk, or store fewer channels with "
            "--pipeline.datamanager.feature-dim (e.g. 64)."
        )


def _stored_basis(folder: Path, channels: int, feature_dim: int) -> Optional[Tensor]:
    path = folder / BASIS
    if stored_shape(path, np.float32) != (channels, feature_dim):
        return None
    return torch.from_numpy(np.load(path))


def _sample_vectors(maps: Sequence[Tensor]) -> Tensor:
    """Up to :data:`PCA_VECTORS` feature vectors drawn evenly from ``maps``, at seeded random pixels."""
    generator = torch.Generator().manual_seed(0)
    per_map = PCA_VECTORS // len(maps)
    vectors = []
    for features in maps:
        flat = features.reshape(-1, features.shape[-1])
        vectors.append(flat[torch.randperm(len(flat), generator=generator)[:per_map]].float())
    return torch.cat(vectors)


@contextlib.contextmanager
def _progress(description: str, total: int) -> Iterator[Callable[[], None]]:
    """A rich progress bar (done/total, elapsed, ETA); yields the function that advances it by one."""
    from nerfstudio.utils.rich_utils import CONSOLE
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=CONSOLE) as progress:
        task = progress.add_task(description, total=total)
        yield lambda: progress.advance(task)
