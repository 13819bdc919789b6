"""A directory on another file system than the tests' own, for what must cross one (a
staging directory on another disk than the blobs)."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def directory_elsewhere(near: Path) -> Iterator[Path]:
    """A fresh directory on another file system than ``near`` (the RAM disk /dev/shm),
    removed afterwards; the test is skipped where there is none."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(near).st_dev:
        pytest.skip("no second file system to stage on")
    directory = shm / f"elsewhere-{uuid.uuid4().hex}"
    directory.mkdir()
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
