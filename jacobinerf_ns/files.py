"""Every file the package writes goes through here: written under a temporary name beside it, then renamed.

A reader therefore sees either the old file, or the complete new one, never a half-written file (an interrupted
export or cache write leaves at most a ``.partial`` file, which nothing reads). A folder written as a whole (the
sample scene) is written the same way: :func:`atomic_folder`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

PARTIAL = ".partial"
"""Marker in the names of files being written."""


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yields a temporary path beside ``path`` (same suffix, so writers that infer formats work); renames on success.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}{PARTIAL}-{os.getpid()}{path.suffix}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_folder(path: Path) -> Iterator[Path]:
    """Yields an empty temporary folder beside ``path``; on success it replaces ``path`` (a folder there is removed).

    On an exception the temporary folder is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}{PARTIAL}-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir()
    try:
        yield temporary
        if path.exists():
            shutil.rmtree(path)
        os.replace(temporary, path)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def write_json(path: Path, value: Any) -> None:
    write_text(path, json.dumps(value, indent=2))


def save_image(path: Path, array) -> None:
    """A uint8 / uint16 array as a PNG (or the format of ``path``'s suffix)."""
    from PIL import Image

    with atomic_path(path) as temporary:
        Image.fromarray(array).save(temporary)


def torch_save(path: Path, value: Any) -> None:
    import torch

    with atomic_path(path) as temporary:
        torch.save(value, temporary)
