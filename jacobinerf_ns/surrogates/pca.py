"""Uncentred PCA of feature vectors (``--pipeline.datamanager.feature-dim``): fewer channels on disk, same cosines.

The basis ``B (E, d)`` is the top-``d`` eigenvectors of the second moment ``XᵀX / n`` of a sample. It is uncentred
so that ``x ↦ xB`` keeps dot products, hence the cosine similarities the affinity compares, up to the energy the
discarded directions carry (:func:`fit_basis` reports the kept fraction ``Σ_top λ / Σ λ``).
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import torch
from torch import Tensor


def fit_basis(samples: Tensor, dim: int) -> Tuple[Tensor, float]:
    """``(E, dim)`` float32 basis of ``samples (n, E)`` and the fraction of ``Σ‖x‖²`` it keeps."""
    x = samples.double()
    values, vectors = np.linalg.eigh((x.T @ x / len(x)).numpy())  # numpy's: torch's float64 eigh is slow on CPU
    top = np.argsort(values)[::-1][:dim]
    return torch.from_numpy(vectors[:, top].astype(np.float32)), float(values[top].sum() / values.sum())


def project(features: Tensor, basis: Tensor) -> Tensor:
    """``(..., E)`` → ``(..., d)`` coordinates in ``basis``."""
    return features.float() @ basis
