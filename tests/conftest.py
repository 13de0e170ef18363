"""Shared fixtures: the embedded sample scene (generated, never downloaded) and a run trained on it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jacobinerf_ns.sample_scene import make_sample_scene
from tests.helpers import TRAINED_SHAPING_START, TRAINED_STEPS


@pytest.fixture(scope="session")
def sample_scene(tmp_path_factory) -> Path:
    return make_sample_scene(tmp_path_factory.mktemp("sample_scene") / "scene", num_views=16, width=48, height=36)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """The demo's recipe: photometric steps, then MI shaping with the scene's instance masks (CPU, ~5 min).

    Checkpoints: ``TRAINED_SHAPING_START - 1`` (the field before shaping) and ``TRAINED_STEPS - 1`` (shaped).
    """
    from jacobinerf_ns.runs import train

    if os.environ.get("JACOBINERF_TRAINED_RUN"):  # reuse a run of this recipe (or the demo's) while iterating on tests
        return Path(os.environ["JACOBINERF_TRAINED_RUN"])
    root = tmp_path_factory.mktemp("trained")
    scene = make_sample_scene(root / "scene")
    return train(scene, root / "runs", TRAINED_STEPS, TRAINED_SHAPING_START, "cpu", ["--mixed-precision", "False"])


def pytest_collection_modifyitems(items) -> None:
    """Tests that need the trained run are slow (``pytest -m "not slow"`` skips them)."""
    for item in items:
        if "trained_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
