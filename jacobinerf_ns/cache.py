"""The cache folder (``~/.cache/jacobinerf_ns`` unless configured) and how entries in it are keyed.

Entries are derived data that is expensive to recompute: remapped label maps (per dataset), DINO features (per
extraction settings, weights and images). An entry's key covers everything it was computed from, with files
identified by :func:`file_signature`, so a changed input never reads a stale entry.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Optional

DEFAULT_ROOT = Path("~/.cache/jacobinerf_ns")


def cache_root(root: Optional[Path] = None) -> Path:
    """The configured cache folder, ``~`` expanded (default :data:`DEFAULT_ROOT`)."""
    return Path(root if root is not None else DEFAULT_ROOT).expanduser()


def file_signature(path: Path) -> list:
    """``[resolved path, size, mtime_ns]``: identifies a file's version without reading it."""
    path = Path(path)
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def digest(payload: Any, length: int = 40) -> str:
    """sha1 of a JSON-serialisable payload (keys sorted), truncated to ``length`` hex digits."""
    return hashlib.sha1(json.dumps(payload, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:length]


def dataset_cache_dir(namespace: str, data: Path, root: Optional[Path] = None) -> Path:
    """``<root>/<namespace>/<hash of the resolved data path>``: per-dataset entries (the data may be read-only)."""
    return cache_root(root) / namespace / digest(str(Path(data).expanduser().resolve()), length=16)
