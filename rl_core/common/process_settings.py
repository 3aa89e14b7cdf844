"""The process-wide settings a training applies, in one place, and restored when it ends.

Three knobs belong to the whole process, not to one agent, so whoever calls `train` (the CLI,
an Airflow task, a notebook, a benchmark) would otherwise inherit them after it returns:

- torch's intra-op thread count (`config.torch_threads`): SAC's small GEMMs lose more to thread
  hand-offs than they gain beyond a core or two;
- flushing denormal floats to zero: denormals appear late in training and slow every CPU op
  they touch, but the rest of the process (numpy, evaluation, other libraries) is owed the IEEE
  arithmetic it started with;
- glibc's mmap and trim thresholds: tensors of >= 128 KiB are mmap'ed and unmapped on free by
  default, so every update paid dozens of page faults re-allocating the same buffers (measured:
  ~50 faults and ~0.2 ms of system time per update). A no-op where the C library is not glibc.

`tuned_for_training` applies all three for a block and puts them back after it.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Iterator
from contextlib import contextmanager

import torch

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
"""mallopt's parameter numbers (glibc's malloc.h)."""
GLIBC_DEFAULT_THRESHOLD = 128 * 1024
"""Both thresholds' glibc defaults, restored after training (mallopt has no getter)."""
TRAINING_THRESHOLD = 1 << 30
"""Freed blocks under 1 GiB stay in the heap while training."""


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def _set_malloc_thresholds(threshold: int) -> None:
    libc = _glibc()
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, threshold)
        libc.mallopt(M_TRIM_THRESHOLD, threshold)


@contextmanager
def tuned_for_training(torch_threads: int) -> Iterator[None]:
    """torch on `torch_threads` threads, denormals flushed and freed memory kept mapped for the
    block; the thread count, IEEE denormals and glibc's default thresholds after it."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(torch_threads)
    torch.set_flush_denormal(True)
    _set_malloc_thresholds(TRAINING_THRESHOLD)
    try:
        yield
    finally:
        _set_malloc_thresholds(GLIBC_DEFAULT_THRESHOLD)
        torch.set_flush_denormal(False)
        torch.set_num_threads(previous_threads)
