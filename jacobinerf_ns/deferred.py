"""A class named by its module path and imported when first called: the ``_target`` of a config dataclass that
nerfstudio builds at plugin load (every ``ns-*`` command), so that loading the plugin imports no implementation."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Deferred:
    """``Deferred(module, name)(*arguments)`` = ``module.name(*arguments)``, ``module`` imported on that call."""

    module: str
    name: str

    def __call__(self, *arguments: Any, **options: Any) -> Any:
        return getattr(importlib.import_module(self.module), self.name)(*arguments, **options)
