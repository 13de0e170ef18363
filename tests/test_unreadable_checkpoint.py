"""A checkpoint that cannot be read (truncated, not a checkpoint, another method's) stops every command that loads one
with one message naming the file and the fix, and nothing written (issue 17, item 5)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Callable

import pytest
import torch
import yaml

from jacobinerf_ns.errors import JacobiNerfError
from jacobinerf_ns.runs import checkpoint_path, run_folder
from tests.helpers import run_command

pytestmark = pytest.mark.slow

LATEST, PREVIOUS = 5, 4  # the last two checkpoints of the tiny run (the `tiny_run` fixture)


def truncate(path: Path) -> None:
    """An interrupted save: the first half of the file."""
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def write_text(path: Path) -> None:
    path.write_text("not a checkpoint\n")


def save_a_tensor(path: Path) -> None:
    torch.save(torch.zeros(3), path)


def save_nerfacto_weights(path: Path) -> None:
    """A checkpoint of nerfacto's model (another method, its own field) in nerfstudio's layout."""
    from nerfstudio.data.scene_box import SceneBox
    from nerfstudio.fields.nerfacto_field import NerfactoField
    from nerfstudio.models.nerfacto import NerfactoModelConfig

    from jacobinerf_ns.compat import nerfacto_parts

    with nerfacto_parts(NerfactoField):  # nerfacto's own field; an LPIPS that does not download
        model = NerfactoModelConfig(log2_hashmap_size=10, num_levels=4, max_res=64).setup(
            scene_box=SceneBox(aabb=torch.tensor([[-1.0, -1, -1], [1, 1, 1]])), num_train_data=16, metadata={}
        )
    torch.save(
        {"step": LATEST, "pipeline": {f"_model.{key}": value for key, value in model.state_dict().items()}}, path
    )


CANNOT_BE_READ = r"cannot be read \({}\): it is damaged \(an interrupted save, a full disk\) or not a checkpoint\."
KINDS = {  # damage → what the message says of the file
    truncate: CANNOT_BE_READ.format("RuntimeError: PytorchStreamReader failed reading zip archive[^)]*"),
    write_text: CANNOT_BE_READ.format("[A-Za-z]+Error[^)]*"),
    save_a_tensor: r"is not a nerfstudio checkpoint \(a Tensor without a pipeline\)\.",
    save_nerfacto_weights: r"holds another model's weights \(\d+ missing, e\.g\. _model\.\S+; \d+ unexpected, e\.g\. "
    r"_model\.\S+(; \d+ of another shape, e\.g\. _model\.\S+)?\): it is another method's checkpoint, or one "
    r"trained with other model options\.",
}


def damaged_copy(run: Path, root: Path, damage: Callable[[Path], None]) -> Path:
    """A copy of ``run`` under ``root`` (its ``config.yml`` pointing at the copy) with its latest checkpoint damaged;
    returns the copy's ``config.yml``."""
    copy = run_folder(root, "run", "t")
    shutil.copytree(run, copy)
    config = yaml.load((copy / "config.yml").read_text(), Loader=yaml.Loader)
    config.output_dir = root
    (copy / "config.yml").write_text(yaml.dump(config))
    damage(checkpoint_path(copy, LATEST))
    return copy / "config.yml"


def expected_message(config: Path, problem: str) -> str:
    models = config.parent / "nerfstudio_models"
    return (
        rf"^Checkpoint {re.escape(str(models / f'step-{LATEST:09d}.ckpt'))} {problem} Move it out of "
        rf"{re.escape(str(models))} so that the latest other checkpoint \(step-{PREVIOUS:09d}\.ckpt\) loads, or "
        r"train the run again\.$"
    )


@pytest.mark.parametrize("damage", list(KINDS), ids=lambda damage: damage.__name__)
def test_ns_eval_names_the_checkpoint_and_the_fix_and_writes_nothing(tiny_run, tmp_path, damage):
    from nerfstudio.scripts.eval import ComputePSNR

    config = damaged_copy(tiny_run, tmp_path, damage)
    with pytest.raises(JacobiNerfError) as raised:
        ComputePSNR(load_config=config, output_path=tmp_path / "eval.json").main()
    assert re.match(expected_message(config, KINDS[damage]), raised.value.message), raised.value.message
    assert not (tmp_path / "eval.json").exists()


def test_moving_the_damaged_checkpoint_away_loads_the_previous_one(tiny_run, tmp_path):
    from nerfstudio.utils.eval_utils import eval_setup

    from jacobinerf_ns.compat import read_checkpoint
    from jacobinerf_ns.runs import load_step

    config = damaged_copy(tiny_run, tmp_path, truncate)
    pipeline = load_step(config.parent, PREVIOUS)  # an intact checkpoint beside it still loads
    saved = read_checkpoint(checkpoint_path(config.parent, PREVIOUS))["pipeline"]
    assert torch.equal(pipeline.model.field.rgb_head.weight, saved["_model.field.rgb_head.weight"])
    with pytest.raises(JacobiNerfError, match="cannot be read"):
        load_step(config.parent, LATEST)
    checkpoint_path(config.parent, LATEST).rename(tmp_path / "damaged.ckpt")
    _, _, loaded, step = eval_setup(config)
    assert (loaded, step) == (checkpoint_path(config.parent, PREVIOUS), PREVIOUS)


def test_the_only_checkpoint_says_to_train_again(tiny_run, tmp_path):
    from jacobinerf_ns.runs import open_run

    config = damaged_copy(tiny_run, tmp_path, truncate)
    for checkpoint in config.parent.glob("nerfstudio_models/step-*.ckpt"):
        if checkpoint != checkpoint_path(config.parent, LATEST):
            checkpoint.unlink()
    with pytest.raises(
        JacobiNerfError, match=r"cannot be read .* It is the run's only checkpoint: train the run again\.$"
    ):
        open_run(config)  # jacobinerf-eval's, jacobinerf-export-labels' loader


@pytest.mark.parametrize("damage", [truncate, save_nerfacto_weights], ids=lambda damage: damage.__name__)
def test_jacobinerf_shape_resumes_only_from_a_readable_checkpoint(tiny_run, tmp_path, damage):
    """A damaged checkpoint stops before the new run is written; another model's stops when the trainer loads it."""
    from jacobinerf_ns.commands.shape import ShapeRun

    config = damaged_copy(tiny_run, tmp_path, damage)
    with pytest.raises(JacobiNerfError) as raised:
        ShapeRun(load_config=config, steps=1, timestamp="shaped", vis="tensorboard").main()
    assert re.match(expected_message(config, KINDS[damage]), raised.value.message), raised.value.message
    if damage is truncate:
        assert not (config.parent.parent / "shaped").exists()


def test_ns_eval_command_reports_a_truncated_checkpoint_without_a_traceback(tiny_run, tmp_path):
    config = damaged_copy(tiny_run, tmp_path, truncate)
    result = run_command("ns-eval", "--load-config", config, "--output-path", tmp_path / "eval.json", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Traceback" not in output, output[-3000:]
    assert f"jacobinerf: Checkpoint {checkpoint_path(config.parent, LATEST)} cannot be read" in result.stderr
    assert "Move it out of" in result.stderr
    assert not (tmp_path / "eval.json").exists()
