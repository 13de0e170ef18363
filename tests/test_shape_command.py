"""``jacobinerf-shape`` continues a run into a new run folder with shaping on, every option as trained."""

from __future__ import annotations

import re

import pytest
import yaml

from jacobinerf_ns.runs import cosine_gap, load_step
from tests.helpers import TRAINED_SHAPING_START, invoke

SHAPING_STEPS = 200


@pytest.fixture(scope="module")
def shaped_copy(trained_run, tmp_path_factory):
    """The trained sample-scene run's field right before shaping, shaped for 200 steps by ``jacobinerf-shape``."""
    cwd = tmp_path_factory.mktemp("shape")
    result = invoke(
        "jacobinerf-shape", "--load-config", str(trained_run / "config.yml"), "--load-step",
        str(TRAINED_SHAPING_START - 1), "--steps", str(SHAPING_STEPS), "--timestamp", "shaped_copy",
        "--vis", "tensorboard", "--mi-loss-mult", "0.1", cwd=cwd,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"MI shaping on from step {TRAINED_SHAPING_START}" in result.stdout
    done = [float(share) for share in re.findall(r"\(([0-9.]+)%\)", result.stdout)]  # nerfstudio's "590 (98.33%)"
    assert done and 90 <= max(done) <= 100, done  # % of the continued run's last step, not of --steps
    return trained_run.parent / "shaped_copy"


def test_the_shaped_continuation_keeps_the_run_options_and_opens_the_cosine_gap(trained_run, shaped_copy):
    original = yaml.load((trained_run / "config.yml").read_text(), Loader=yaml.Loader)
    shaped = yaml.load((shaped_copy / "config.yml").read_text(), Loader=yaml.Loader)
    assert shaped.pipeline.model.num_levels == original.pipeline.model.num_levels  # every field option as trained
    assert shaped.pipeline.model.mi_loss_mult == 0.1 and shaped.pipeline.model.shaping_start_step == 0
    assert shaped.load_step is None and shaped.load_dir is None  # ns-eval and ns-viewer load the new run's latest
    last = TRAINED_SHAPING_START - 1 + SHAPING_STEPS
    assert (shaped_copy / "nerfstudio_models" / f"step-{last:09d}.ckpt").is_file()
    before = cosine_gap(load_step(trained_run, TRAINED_SHAPING_START - 1))
    after = cosine_gap(load_step(shaped_copy, last))
    print("cosine gap before/after jacobinerf-shape", before, after)  # the figures the threshold was calibrated on
    assert after["cos_gap"] > before["cos_gap"] + 0.3, (before, after)
