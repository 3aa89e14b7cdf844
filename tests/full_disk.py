"""A real disk that fills up: a tmpfs of a few pages mounted on a folder, and a filler file
that takes its last byte. For the tests of what a full disk does to checkpoints; mounting
needs root, which the suite has here (Postgres as its own OS user needs it already)."""

from __future__ import annotations

import errno
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FILLER = "filler"


@contextmanager
def small_disk(folder: Path, size: int) -> Iterator[Path]:
    """A tmpfs of `size` bytes on `folder` (made if missing), unmounted afterwards: lazily when
    a process still holds a file in it, so a failing test never leaves the mount behind."""
    folder.mkdir(parents=True, exist_ok=True)
    options = f"size={size},mode=0755"
    mount = ["mount", "-t", "tmpfs", "-o", options, "rlops-small-disk", str(folder)]
    mounted = subprocess.run(mount, capture_output=True, text=True)
    if mounted.returncode:
        raise RuntimeError(f"cannot mount a tmpfs on {folder} (needs root): {mounted.stderr}")
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode:
            subprocess.run(["umount", "--lazy", str(folder)], check=True)


def fill(disk: Path) -> Path:
    """Write zeros to `disk`/filler until the disk has no byte left; the filler's path."""
    filler = disk / FILLER
    chunk = bytes(64 * 1024)
    with filler.open("ab", buffering=0) as file:
        try:
            while True:
                file.write(chunk)  # the last one may fit in part; the next raises
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    assert shutil.disk_usage(disk).free == 0, shutil.disk_usage(disk)
    return filler
