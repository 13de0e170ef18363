"""Shared fixtures: the one sample scene (generated, never downloaded) and the runs trained on it, each built once
per session: ``trained_run`` (the demo's recipe, for quality) and ``tiny_run`` (a tiny field, for plumbing).

``bash scripts/test.sh`` runs the files in two processes (pytest-xdist, ``--dist loadfile``): each builds a shared
fixture only if no other process has (:func:`built_once`), and each runs torch on one thread, so that the two
processes share the two cores instead of fighting over them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest

from jacobinerf_ns.sample_scene import make_sample_scene
from tests.helpers import (
    DINO_MODEL,
    MACHINE_SEED,
    SCENE_HEIGHT,
    SCENE_VIEWS,
    SCENE_WIDTH,
    TEST_FIELD,
    TINY_THRESHOLD_STEP,
    TRAINED_SHAPING_START,
    TRAINED_STEPS,
    train_tiny,
    unreachable_url,
)

WORKER = os.environ.get("PYTEST_XDIST_WORKER")
"""The pytest-xdist worker this process is (``None``: pytest runs in one process)."""
if WORKER is not None:
    os.environ["OMP_NUM_THREADS"] = "1"  # the commands and runs the tests start, too
    import torch

    torch.set_num_threads(1)


def built_once(tmp_path_factory, name: str, build: Callable[[Path], Path]) -> Path:
    """``build(folder)`` once per test session: with several pytest-xdist workers, the first that needs it builds it
    in the session's shared temporary folder under a file lock, and the others wait for it and reuse it."""
    if WORKER is None:
        return build(tmp_path_factory.mktemp(name))
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp().parent  # every worker's base folder lies in it
    built = shared / f"{name}.built"  # holds the built path: written once the build succeeded
    with FileLock(str(shared / f"{name}.lock")):
        if not built.is_file():
            (shared / name).mkdir()
            built.write_text(str(build(shared / name)))
    return Path(built.read_text())


@pytest.fixture(scope="session")
def sample_scene(tmp_path_factory) -> Path:
    """The sample scene every test uses; a test that changes it works on a copy."""

    def make(folder: Path) -> Path:
        return make_sample_scene(folder / "scene", num_views=SCENE_VIEWS, width=SCENE_WIDTH, height=SCENE_HEIGHT)

    return built_once(tmp_path_factory, "sample_scene", make)


@pytest.fixture(scope="session")
def trained_run(sample_scene, tmp_path_factory) -> Path:
    """The sample scene trained as the demo does, with a cheaper field (``TEST_FIELD``): photometric steps, then MI
    shaping with the scene's instance masks.

    Checkpoints: ``TRAINED_SHAPING_START - 1`` (the field before shaping) and ``TRAINED_STEPS - 1`` (shaped).
    ``JACOBINERF_MACHINE_SEED`` trains it with another seed (to calibrate the thresholds of the tests that use it).
    """
    from jacobinerf_ns.runs import train

    if os.environ.get("JACOBINERF_TRAINED_RUN"):  # reuse a run of this recipe while iterating on tests
        return Path(os.environ["JACOBINERF_TRAINED_RUN"])
    options = [*TEST_FIELD, "--machine.seed", str(MACHINE_SEED)]

    def make(folder: Path) -> Path:
        return train(sample_scene, folder / "runs", TRAINED_STEPS, TRAINED_SHAPING_START, "cpu", options)

    return built_once(tmp_path_factory, "trained", make)


@pytest.fixture(scope="session")
def tiny_run(sample_scene, tmp_path_factory) -> Path:
    """``ns-train jacobinerf`` as a user runs it (a subprocess), tiny field: 6 steps, shaping with the scene's masks
    from step 3, checkpoints at steps 2, 4 and 5. The run folder (``config.yml`` beside ``nerfstudio_models``).

    Its threshold moves by small steps (``TINY_THRESHOLD_STEP``), so that it stays inside its bounds and each shaping
    step shows in its value: a tiny field's Jacobians all look alike, and the default step pins it at its maximum.
    """

    def make(out: Path) -> Path:
        result = train_tiny(
            sample_scene, out,
            "--max-num-iterations", "6", "--pipeline.model.shaping-start-step", "3", *TINY_THRESHOLD_STEP,
            "--pipeline.datamanager.surrogate", "masks",
            "--steps-per-save", "2", "--save-only-latest-checkpoint", "False",
            "--pipeline.datamanager.cache-dir", str(out / "cache"),
            in_process=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-4000:]
        assert "MI shaping on from step 3" in result.stdout
        return out / "run" / "jacobinerf" / "t"

    return built_once(tmp_path_factory, "tiny_run", make)


@pytest.fixture
def offline(tmp_path, monkeypatch) -> None:
    """No network for timm's DINO weights, whether or not this machine is online: an empty torch hub cache, and the
    weights' URL on a closed port of this machine, so the real download fails as it does offline."""
    from timm.models.registry import _model_pretrained_cfgs

    url = unreachable_url(Path(_model_pretrained_cfgs[DINO_MODEL]["url"]).name)
    monkeypatch.setitem(_model_pretrained_cfgs[DINO_MODEL], "url", url)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


LONGEST_FIRST = (
    "test_viewer_panel.py", "test_label_command.py", "test_browser.py", "test_shape_command.py", "test_bad_input.py",
    "test_shaping_effect.py", "test_training.py",
)  # fmt: skip
"""The files that take longest on the 2-core CPU box, longest first ([time per file](../docs/testing.md#time-per-file)).
``bash scripts/test.sh`` hands whole files to its processes in collection order (``--no-loadscope-reorder``), so they
are collected first: a long file handed out last would run alone while the other process idles."""


def pytest_collection_modifyitems(items) -> None:
    """The files of ``LONGEST_FIRST`` first, in its order (the others after them, as collected), and in each file the
    tests that need ``trained_run`` first: the first file's process builds it at once while the second's trains its
    own run (``test_label_command``'s ``runs``, which asks for ``trained_run`` only then: ``request.getfixturevalue``,
    not in the fixture closure), instead of waiting for it afterwards. Tests that need a trained run are slow
    (``pytest -m "not slow"`` skips them)."""

    def order(item) -> tuple:
        name = item.path.name
        needs_trained_run = "trained_run" in getattr(item, "fixturenames", ())
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST), not needs_trained_run

    items.sort(key=order)
    for item in items:
        if {"trained_run", "tiny_run", "runs"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
