"""A checkpoint the disk has no room for, on a real full disk (a tiny tmpfs): one clear error
naming the folder, its free space and the checkpoint's size, no partial file, the last
checkpoint intact; training skips such a checkpoint with one warning and fails only at the end,
and resumes from the last one written once there is room again."""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from rl_core.common.config import SACConfig
from rl_core.policy.checkpoint import DiskFullError, load_checkpoint, save_actor, save_checkpoint
from rl_core.run.training import train
from rl_core.sac.networks import Actor
from tests.full_disk import FILLER, fill, small_disk

DISK_SIZE = 256 * 1024
TINY = dict(
    hidden_sizes=(8, 8),
    batch_size=16,
    learning_starts=50,
    total_timesteps=800,
    checkpoint_every=200,  # Pendulum's episodes are 200 steps: checkpoints at 200, 400, 600, 800
    eval_every=400,  # and the hook below hears steps 400 and 800
    progress_eval_seeds=(2000,),
    torch_threads=1,
)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with small_disk(tmp_path / "disk", DISK_SIZE) as mounted:
        yield mounted


@pytest.mark.parametrize(
    ("in_tmpdir", "remedy"),
    [(False, "write it to a larger disk"), (True, "point TMPDIR at a larger disk")],
)
def test_a_checkpoint_without_room_fails_in_one_line_and_leaves_the_last_one_whole(
    disk: Path, in_tmpdir: bool, remedy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The pipeline's case: checkpoints go through the worker's TMPDIR; the CLI's: a path given.
    monkeypatch.setattr(tempfile, "tempdir", str(disk if in_tmpdir else disk.parent / "other"))
    path = disk / "c.pt"
    save_checkpoint(path, {"step": 1, "weights": torch.ones(1000)})
    big = torch.zeros(2 * DISK_SIZE // 4)  # twice the disk
    with pytest.raises(DiskFullError) as full:
        save_checkpoint(path, {"step": 2, "weights": big})
    free = shutil.disk_usage(disk).free
    assert str(full.value) == (
        f"no room for c.pt in {disk}: {free // 1024} KiB free, it needs at least 512 KiB; "
        f"free space there or {remedy}"
    )
    assert sorted(p.name for p in disk.iterdir()) == ["c.pt"]  # no partial file
    assert load_checkpoint(path)["step"] == 1


def test_an_actor_file_without_room_is_the_same_clear_error(disk: Path) -> None:
    fill(disk)
    with pytest.raises(DiskFullError, match=rf"^no room for actor.pt in {disk}: 0 KiB free"):
        save_actor(
            disk / "actor.pt", Actor(3, 1, (8, 8), -torch.ones(1), torch.ones(1)), "Pendulum-v1"
        )
    assert sorted(p.name for p in disk.iterdir()) == [FILLER]


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def _skipped_step(warning: str, disk: Path) -> int:
    """The step of a skipped checkpoint's warning, which must say all of why and what to do."""
    skipped = re.fullmatch(
        r"checkpoint at step (\d+) skipped, training goes on \(a retry resumes from the last one "
        rf"written\): no room for c\.pt in {re.escape(str(disk))}: 0 KiB free, it needs at "
        r"least \d+ KiB; free space there or point TMPDIR at a larger disk",
        warning,
    )
    assert skipped, warning
    return int(skipped[1])


def test_training_skips_checkpoints_while_the_disk_is_full_and_goes_on(
    disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Full from step 400 until the evaluation of step 800 frees it: the checkpoints of 400 and
    600 are skipped, one warning each, and the run ends with its checkpoint of step 800."""

    def fill_then_free(step: int, _: float) -> None:
        if step == 400:
            fill(disk)
        else:
            (disk / FILLER).unlink()

    path = disk / "c.pt"
    result = train(
        SACConfig(**TINY), checkpoint_path=path, on_evaluation=fill_then_free, show_progress=False
    )
    assert result.steps == 800
    assert load_checkpoint(path)["step"] == 800
    assert [_skipped_step(message, disk) for message in _warnings(caplog)] == [400, 600]
    assert sorted(p.name for p in disk.iterdir()) == ["actor.pt", "best_actor.pt", "c.pt"]


def test_a_disk_still_full_at_the_end_fails_the_run_which_resumes_once_there_is_room(
    disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = SACConfig(**TINY)
    path = disk / "c.pt"
    with pytest.raises(DiskFullError, match=rf"^no room for c.pt in {disk}: 0 KiB free"):
        train(
            config, checkpoint_path=path, on_evaluation=lambda *_: fill(disk), show_progress=False
        )
    # the end of training's (step 800) is the error
    assert [_skipped_step(message, disk) for message in _warnings(caplog)] == [400, 600]
    assert sorted(p.name for p in disk.iterdir()) == ["c.pt", FILLER]
    assert load_checkpoint(path)["step"] == 200  # the resume point

    (disk / FILLER).unlink()
    resumed = train(config, checkpoint_path=path, resume_from=path, show_progress=False)
    assert (resumed.start_step, resumed.steps) == (200, 800)
    assert load_checkpoint(path)["step"] == 800
