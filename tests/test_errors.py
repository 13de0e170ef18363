"""The user-error type and its reporting: one short block and a non-zero exit, never a traceback (bugs keep theirs)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from torch.utils.data import DataLoader, Dataset

from jacobinerf_ns.errors import JacobiNerfError


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_a_user_error_prints_its_message_without_a_traceback_and_exits_non_zero():
    result = run_python(
        "from jacobinerf_ns.errors import JacobiNerfError, report_user_errors\n"
        "report_user_errors()\n"
        "raise JacobiNerfError('No transforms.json at x: point --data at a nerfstudio-data folder.')\n"
    )
    assert result.returncode != 0
    assert "No transforms.json at x: point --data" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_other_errors_keep_their_traceback():
    result = run_python(
        "from jacobinerf_ns.errors import report_user_errors\nreport_user_errors()\nraise RuntimeError('a bug')\n"
    )
    assert result.returncode != 0 and "Traceback" in result.stderr and "RuntimeError: a bug" in result.stderr


class BrokenDataset(Dataset):
    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int):
        raise JacobiNerfError("Label file labels/frame_1.png is missing: 1 of 8 frames are affected.")


def test_the_message_survives_a_data_loader_worker():
    """torch re-raises a worker's exception as ``type(message + worker traceback)``: the message is recovered."""
    with pytest.raises(JacobiNerfError) as caught:
        next(iter(DataLoader(BrokenDataset(), num_workers=1)))
    assert "Original Traceback" in str(caught.value)
    assert caught.value.message == "Label file labels/frame_1.png is missing: 1 of 8 frames are affected."
