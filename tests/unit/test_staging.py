"""Spooling parts: the 128-byte preamble is zeroed however the bytes are chunked."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from dicom_core.services.staging import WRITEBACK_STEP, PartSpool, StagingArea, spool_name
from dicom_core.storage.ports import StorageFull, StorageUnavailable
from tests.support.processes import dead_pid

BODY = b"\x02\x00\x00\x00rest of the dataset" * 10


@pytest.mark.parametrize("chunk", [1, 7, 131, 132, 133, 4096])
def test_spool_zeroes_a_nonzero_preamble_for_any_chunking(tmp_path: Path, chunk: int) -> None:
    data = b"X" * 128 + b"DICM" + BODY
    spool = StagingArea(tmp_path).new_part()
    for start in range(0, len(data), chunk):
        spool.write(data[start : start + chunk])
    spool.close()
    assert spool.path.read_bytes() == bytes(128) + b"DICM" + BODY
    assert spool.size == len(data)


def test_spool_adds_a_preamble_when_the_part_starts_with_dicm(tmp_path: Path) -> None:
    spool = StagingArea(tmp_path).new_part()
    spool.write(b"DICM" + BODY)
    spool.close()
    assert spool.path.read_bytes() == bytes(128) + b"DICM" + BODY


def test_spool_keeps_other_content_as_it_came(tmp_path: Path) -> None:
    spool = StagingArea(tmp_path).new_part()
    spool.write(b"short")
    spool.close()
    assert spool.path.read_bytes() == b"short"


@pytest.mark.parametrize("data", [b"X" * 128 + b"DICM" + BODY, b"DICM" + BODY, b"short"])
def test_a_small_part_is_handed_to_writeback_whole_once_it_is_closed(
    tmp_path: Path, data: bytes
) -> None:
    """The range handed over is in the file already (out of Python's buffer, the zeroed
    preamble too), so what the store starts writing to disk is the whole part."""
    seen: list[tuple[int, int, bytes]] = []
    paths: list[Path] = []

    def writeback(fd: int, offset: int, length: int) -> None:
        seen.append((offset, length, paths[0].read_bytes()[offset : offset + length]))

    spool = StagingArea(tmp_path, writeback=writeback).new_part()
    paths.append(spool.path)
    for start in range(0, len(data), 100):
        spool.write(data[start : start + 100])
    assert seen == []
    spool.close()
    spool.close()
    stored = spool.path.read_bytes()
    assert seen == [(0, len(stored), stored)]


def test_a_large_part_is_handed_over_a_step_at_a_time_as_it_streams_in(tmp_path: Path) -> None:
    """The call runs on the event loop: a whole large part at once could hold it up."""
    seen: list[tuple[int, int]] = []
    spool = StagingArea(
        tmp_path, writeback=lambda fd, offset, length: seen.append((offset, length))
    ).new_part()
    chunk = 300_000
    for _ in range(12):  # 3.6 MB
        spool.write(b"x" * chunk)
    spool.close()
    size = 12 * chunk
    assert [offset for offset, _ in seen] == sorted({offset for offset, _ in seen})
    assert sum(length for _, length in seen) == size and seen[0][0] == 0
    assert all(a + n == b for (a, n), (b, _) in zip(seen, seen[1:], strict=False))
    assert all(length < WRITEBACK_STEP + chunk for _, length in seen)
    assert len(seen) == 3  # at 1.2, 2.4 and 3.6 MB, and nothing left at close


def test_scratch_parts_and_discarded_ones_are_never_handed_over(tmp_path: Path) -> None:
    seen: list[int] = []
    area = StagingArea(tmp_path, writeback=lambda fd, offset, length: seen.append(length))
    scratch = area.new_part(scratch=True)
    scratch.write(b"x" * (3 * WRITEBACK_STEP))
    scratch.close()
    discarded = area.new_part()
    discarded.write(b"x" * 500)
    discarded.discard()
    assert seen == []


def test_discard_removes_the_file(tmp_path: Path) -> None:
    spool = StagingArea(tmp_path).new_part()
    spool.write(b"x" * 500)
    spool.discard()
    assert not spool.path.exists()


def full_disk_spool(tmp_path: Path) -> PartSpool:
    """A spool whose file is /dev/full, where every write that reaches the disk fails with
    ENOSPC, as on a full disk (the spool's name is a link to it)."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    path = tmp_path / "full.part"
    path.symlink_to("/dev/full")
    return PartSpool(path)


def test_a_full_disk_while_spooling_is_storage_full_and_discard_still_removes_the_file(
    tmp_path: Path,
) -> None:
    spool = full_disk_spool(tmp_path)
    with pytest.raises(StorageFull, match="disk is full"):
        # Buffered writes reach the file on a large chunk or at the close.
        spool.write(bytes(128) + b"DICM" + bytes(1 << 20))
        spool.close()
    spool.discard()  # its close flushes the buffer and fails again; the name goes anyway
    assert not spool.path.exists() and not spool.path.is_symlink()


def test_a_spool_that_cannot_be_created_is_storage_unavailable(tmp_path: Path) -> None:
    with pytest.raises(StorageUnavailable, match="spooling the request body failed"):
        PartSpool(tmp_path / "missing-directory" / "x.part")


def test_a_start_removes_at_once_the_spools_of_a_dead_process_of_this_host(
    tmp_path: Path,
) -> None:
    """A probe's kill -9 mid-STOW left 2.5 MB of parts on a full disk, kept by the restart
    for an hour: only age told leftovers from the spools of live workers."""
    host = socket.gethostname()
    dead = tmp_path / f"{host}.{dead_pid()}.{'a' * 32}.part"
    live = tmp_path / f"{host}.{os.getppid()}.{'b' * 32}.part"  # the test runner's parent
    mine = tmp_path / f"{host}.{os.getpid()}.{'c' * 32}.part"
    elsewhere = tmp_path / f"another-host.{dead_pid()}.{'d' * 32}.part"
    older_version = tmp_path / f"{'e' * 32}.part"
    for path in (dead, live, mine, elsewhere, older_version):
        path.write_bytes(b"DICM")
    StagingArea(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (live, mine, elsewhere, older_version)
    )
    # The age rule still takes any of them once older than a live request can be.
    StagingArea(tmp_path, stale_seconds=-1)
    assert list(tmp_path.iterdir()) == []


def test_new_spools_carry_their_host_and_process() -> None:
    name = spool_name()
    assert name.startswith(f"{socket.gethostname()}.{os.getpid()}.") and name.endswith(".part")
