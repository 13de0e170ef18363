"""Where SAM's weights come from.

A local checkpoint (``jacobinerf-masks --weights PATH``: Meta's ``sam_vit_*.pth``, a plain state dict) wins. Without
one, Meta's checkpoint of the model type is downloaded once into torch's hub cache
(``$TORCH_HOME/hub/checkpoints``, default ``~/.cache/torch``, as DINO's weights are) and read from there on later runs.
A download that fails (no network) stops with one message naming ``--weights`` and the cache path; torch writes the
download under a temporary name, so nothing half-written is left in the cache.
"""

from __future__ import annotations

import http.client
from pathlib import Path
from typing import Dict, Optional
from urllib.parse import urlparse

import torch

from jacobinerf_ns.errors import JacobiNerfError
from jacobinerf_ns.surrogates.dino_weights import DOWNLOAD_TIMEOUT_S, socket_timeout

CHECKPOINT_URLS = {
    "vit_b": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
    "vit_l": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
    "vit_h": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
}
"""Meta's SAM checkpoints by segment-anything's model type (its README's links)."""
WEIGHTS_OPTION = "--weights PATH"


def cached_checkpoint(model_type: str) -> Path:
    """Where the downloaded checkpoint is kept: the URL's file name in ``<torch hub dir>/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(CHECKPOINT_URLS[model_type]).path).name


def load_sam(model_type: str, weights: Optional[Path], device: str, console=None) -> torch.nn.Module:
    """segment-anything's ``Sam`` of ``model_type`` (eval mode, on ``device``) with the local ``weights``, else Meta's
    checkpoint (downloaded once); prints which."""
    from segment_anything import sam_model_registry

    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise JacobiNerfError(
                f"SAM weights file not found: {path}. Fix {WEIGHTS_OPTION}, or leave it out to download Meta's "
                f"{model_type} checkpoint once into {cached_checkpoint(model_type)}."
            )
        origin = str(path)
    else:
        path = cached_checkpoint(model_type)
        origin = f"Meta's {model_type} checkpoint, {'read from' if path.is_file() else 'downloaded to'} {path}"
        if not path.is_file():
            _download(model_type, path)
    state = _read_state(path, model_type)
    model = sam_model_registry[model_type]()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        details = " ".join(str(error).split())
        raise JacobiNerfError(
            f"SAM weights {path} are not a {model_type} checkpoint: {details[:300]}. Pass the --model-type the "
            "checkpoint was trained as (vit_b, vit_l, vit_h)."
        ) from error
    if console is not None:
        console.print(f"SAM weights: {origin}")
    return model.to(device).eval()


def _download(model_type: str, path: Path) -> None:
    url = CHECKPOINT_URLS[model_type]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with socket_timeout(DOWNLOAD_TIMEOUT_S):
            torch.hub.download_url_to_file(url, str(path), progress=True)
    except (OSError, http.client.HTTPException) as error:
        raise JacobiNerfError(
            f"Downloading SAM's {model_type} weights from {url} failed ({error}). Without network, pass a local copy "
            f"({path.name}) with {WEIGHTS_OPTION}, or put it at {path}."
        ) from error


def _read_state(path: Path, model_type: str) -> Dict[str, torch.Tensor]:
    expected = f"a SAM {model_type} state dict ({cached_checkpoint(model_type).name})"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load of arbitrary bytes raises many types: a wrong or truncated file
        raise JacobiNerfError(
            f"SAM weights {path} could not be read ({error}): expected {expected}; delete a truncated download."
        ) from error
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise JacobiNerfError(f"SAM weights {path} hold a {type(state).__name__}, not {expected}.")
    return state
