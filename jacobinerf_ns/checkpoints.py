"""Let nerfstudio 1.1.5 load its own checkpoints under torch >= 2.6 (``torch.load`` defaults to ``weights_only=True``).

nerfstudio's learning-rate schedulers put numpy float64 learning rates into the optimizer and
scheduler state, and ``ns-eval`` / ``ns-viewer`` / resume call ``torch.load`` without
``weights_only``. Allow-listing exactly the numpy scalar types keeps the safe loader safe.
"""

from __future__ import annotations

import numpy as np
import torch


def allow_numpy_scalars() -> None:
    """Registers numpy scalar reconstruction (and its dtypes) as safe globals for ``torch.load``."""
    if np.lib.NumpyVersion(np.__version__) >= "2.0.0":
        from numpy._core.multiarray import scalar
    else:
        from numpy.core.multiarray import scalar
    dtypes = [type(np.dtype(name)) for name in ("float64", "float32", "int64", "int32", "bool")]
    torch.serialization.add_safe_globals([scalar, np.dtype, *dtypes])
