"""Where the DINO ViT's weights come from.

A local file (``--pipeline.datamanager.dino-weights`` / ``--propagation.dino-weights``) wins: timm's state dict of
the model, or DINO's own ``dino_deitsmall8_pretrain.pth`` (a plain state dict with the same key names, the file timm
itself downloads). Without one, timm's pretrained mechanism fetches that file once into torch's hub cache
(``$TORCH_HOME/hub/checkpoints``, default ``~/.cache/torch``) and reads it from there on later runs. A fetch that
fails (no network) stops with one message saying what to do instead; a socket timeout keeps it from hanging.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
from pathlib import Path
from typing import Iterator, Optional, Union
from urllib.parse import urlparse

import torch

from jacobinerf_ns import cache
from jacobinerf_ns.errors import JacobiNerfError

DOWNLOAD_TIMEOUT_S = 30.0
"""Socket timeout (connect and each read) while timm fetches pretrained weights."""
WEIGHTS_OPTIONS = "--pipeline.datamanager.dino-weights PATH (jacobinerf-eval: --propagation.dino-weights PATH)"


def pretrained_url(model_name: str) -> str:
    """The URL of timm's pretrained weights for ``model_name`` (its default pretrained config)."""
    from timm.models.registry import get_pretrained_cfg

    return get_pretrained_cfg(model_name)["url"]


def pretrained_file(model_name: str) -> Path:
    """Where timm (``torch.hub.load_state_dict_from_url``) keeps the downloaded weights: the URL's file name in
    ``<torch hub dir>/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(pretrained_url(model_name)).path).name


def weights_identity(model_name: str, weights: Optional[Path]) -> Union[list, dict]:
    """What identifies the weights in cache keys: the local file's signature, or timm's pretrained URL."""
    if weights is None:
        return {"timm_pretrained": pretrained_url(model_name)}
    return cache.file_signature(local_file(weights))


def local_file(weights: Path) -> Path:
    """``weights`` (``~`` expanded) when it is a file; JacobiNerfError naming it otherwise."""
    path = Path(weights).expanduser()
    if not path.is_file():
        raise JacobiNerfError(
            f"DINO weights file not found: {path}. Fix {WEIGHTS_OPTIONS}, or leave it out to use timm's pretrained "
            "weights (downloaded once)."
        )
    return path


def ensure_available(model_name: str, weights: Optional[Path]) -> None:
    """Fails now (JacobiNerfError) rather than later when the weights are neither a local file nor fetchable."""
    if weights is not None:
        local_file(weights)
    elif not pretrained_file(model_name).is_file():
        load_vit(model_name, None)


def load_vit(model_name: str, weights: Optional[Path]) -> torch.nn.Module:
    """timm's ``model_name`` (eval mode, CPU) with the local ``weights``, else timm's pretrained ones; prints which."""
    from nerfstudio.utils.rich_utils import CONSOLE

    if weights is not None:
        path = local_file(weights)
        model = _from_file(model_name, path)
        CONSOLE.print(f"DINO weights: {path}")
        return model.eval()
    import timm

    file = pretrained_file(model_name)
    cached = file.is_file()
    try:
        with socket_timeout(DOWNLOAD_TIMEOUT_S):
            model = timm.create_model(model_name, pretrained=True)
    except (OSError, http.client.HTTPException) as error:
        raise JacobiNerfError(
            f"Downloading timm's pretrained {model_name} weights from {pretrained_url(model_name)} failed ({error}). "
            f"Without network, pass a local copy (DINO's {file.name} or a timm state dict) with {WEIGHTS_OPTIONS}, "
            f"or put it at {file}; or shape without DINO: --pipeline.datamanager.surrogate masks (the dataset's "
            "instance masks, or --pipeline.datamanager.masks-dir DIR) or --pipeline.datamanager.surrogate features "
            "--pipeline.datamanager.features-dir DIR."
        ) from error
    CONSOLE.print(
        f"DINO weights: timm's pretrained {model_name}, {'read from its cache' if cached else 'downloaded to'} {file}"
    )
    return model.eval()


def _from_file(model_name: str, path: Path) -> torch.nn.Module:
    import timm

    expected = f"a state dict of timm's {model_name} (or DINO's {pretrained_file(model_name).name})"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load of arbitrary bytes raises many types: the user gave a wrong file
        raise JacobiNerfError(f"DINO weights {path} could not be read ({error}): expected {expected}.") from error
    for wrapper_key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(wrapper_key), dict):
            state = state[wrapper_key]
            break
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise JacobiNerfError(f"DINO weights {path} hold a {type(state).__name__}, not {expected}.")
    model = timm.create_model(model_name, pretrained=False)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        details = " ".join(str(error).split())
        raise JacobiNerfError(f"DINO weights {path} are not {expected}: {details[:300]}") from error
    return model


@contextlib.contextmanager
def socket_timeout(seconds: float) -> Iterator[None]:
    """Sets the default socket timeout (which urllib's fetches use) for the duration of the block."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)
