"""Placing staged files into the local blob store: from another file system, and what a
failure of the disk becomes (the ports' errors, which the web layer answers 507 or 503)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dicom_core.storage.local.file_blobs import (
    COPY_SUFFIX,
    INCOMING,
    INCOMING_MAX_AGE,
    FileBlobStore,
)
from dicom_core.storage.ports import StorageUnavailable
from tests.support.filesystems import directory_elsewhere
from tests.support.processes import dead_pid

KEY = "1.2.3/4.5.6/7.8.9_1.dcm"


@pytest.fixture()
def other_file_system(tmp_path: Path) -> Iterator[Path]:
    with directory_elsewhere(tmp_path) as directory:
        yield directory


@pytest.mark.parametrize("durable", [True, False])
@pytest.mark.parametrize("overwrite", [None, False, True])
def test_a_file_staged_on_another_file_system_is_copied_into_place(
    tmp_path: Path, other_file_system: Path, durable: bool, overwrite: bool | None
) -> None:
    """``DICOM_STAGING_DIR`` on another disk: a rename or link cannot cross it (EXDEV)."""
    blobs = FileBlobStore(tmp_path / "blobs", durable=durable)
    staged = other_file_system / "part"
    staged.write_bytes(b"DICOM bytes" * 1000)
    if overwrite is None:
        blobs.place_new_file(KEY, staged)
    else:
        blobs.place_file(KEY, staged, overwrite=overwrite)
    assert blobs.path_for(KEY).read_bytes() == b"DICOM bytes" * 1000
    assert not staged.exists()
    # Nothing but the file itself is left beside it, and no copy under a temporary name.
    assert [p.name for p in blobs.path_for(KEY).parent.iterdir()] == ["7.8.9_1.dcm"]
    assert list((blobs.root / INCOMING).iterdir()) == []


def test_a_start_removes_the_copies_that_killed_processes_of_this_host_left(
    tmp_path: Path, other_file_system: Path
) -> None:
    """A process killed mid-copy leaves a partial copy in the blob root's incoming directory,
    named after it, so the next start can tell it from a live process's copy."""
    blobs = FileBlobStore(tmp_path / "blobs")
    incoming = blobs.root / INCOMING
    host = socket.gethostname()
    dead = incoming / f"{host}.{dead_pid()}.{'a' * 32}{COPY_SUFFIX}"
    live = incoming / f"{host}.{os.getppid()}.{'b' * 32}{COPY_SUFFIX}"
    elsewhere = incoming / f"another-host.{dead_pid()}.{'c' * 32}{COPY_SUFFIX}"
    for path in (dead, live, elsewhere):
        path.write_bytes(b"half a copy")
    FileBlobStore(tmp_path / "blobs")
    assert sorted(p.name for p in incoming.iterdir()) == sorted([live.name, elsewhere.name])
    # A day later, whoever made them: no live copy takes that long.
    day_old = time.time() - INCOMING_MAX_AGE - 60
    for path in (live, elsewhere):
        os.utime(path, (day_old, day_old))
    FileBlobStore(tmp_path / "blobs")
    assert list(incoming.iterdir()) == []


def test_a_study_directory_moved_to_another_disk_still_takes_new_files(
    tmp_path: Path, other_file_system: Path
) -> None:
    """An operator moved a study's directory to another disk and linked it back: a file
    staged beside the blobs must cross to it, and a copy into the blob root's .incoming
    could not be renamed there either (it recursed, holding a copy per level)."""
    blobs = FileBlobStore(tmp_path / "blobs")
    moved = other_file_system / "1.2.3"
    moved.mkdir()
    (blobs.root / "1.2.3").symlink_to(moved)
    staged = tmp_path / "part"
    staged.write_bytes(b"DICOM bytes" * 1000)
    blobs.place_new_file(KEY, staged)
    assert blobs.path_for(KEY).read_bytes() == b"DICOM bytes" * 1000
    assert [p.name for p in blobs.path_for(KEY).parent.iterdir()] == ["7.8.9_1.dcm"]
    assert list((blobs.root / INCOMING).iterdir()) == [] and not staged.exists()


def test_a_copy_from_another_file_system_stays_create_only(
    tmp_path: Path, other_file_system: Path
) -> None:
    blobs = FileBlobStore(tmp_path / "blobs")
    first = other_file_system / "first"
    first.write_bytes(b"first")
    blobs.place_new_file(KEY, first)
    second = other_file_system / "second"
    second.write_bytes(b"second")
    with pytest.raises(FileExistsError):
        blobs.place_new_file(KEY, second)
    assert blobs.path_for(KEY).read_bytes() == b"first"
    assert [p.name for p in blobs.path_for(KEY).parent.iterdir()] == ["7.8.9_1.dcm"]


@pytest.mark.parametrize("new", [True, False])
def test_a_directory_that_cannot_be_made_is_storage_unavailable(tmp_path: Path, new: bool) -> None:
    """Any system error while placing is the store's outage (503 for the request, or 272 for
    one part of a request that already stored others), never an internal error."""
    blobs = FileBlobStore(tmp_path / "blobs")
    (tmp_path / "blobs" / "1.2.3").write_bytes(b"a file where the study's directory goes")
    staged = tmp_path / "part"
    staged.write_bytes(b"DICOM")
    with pytest.raises(StorageUnavailable, match="writing the stored file .* failed"):
        if new:
            blobs.place_new_file(KEY, staged)
        else:
            blobs.place_file(KEY, staged)
    assert staged.read_bytes() == b"DICOM"  # the caller still owns and removes it
