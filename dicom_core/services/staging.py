"""Spooling STOW parts to disk as they arrive, with the 128-byte preamble zeroed.

A request body is never held in memory: each part streams into its own staging file, and the
first 132 bytes are held back just long enough to replace the preamble with NULs (the
conformance statement's preamble sanitisation). A part that starts directly with 'DICM'
gets a zeroed preamble added, so every stored file is a proper Part 10 file.

A spool that cannot be written (a full disk, an unwritable directory) raises the storage
ports' ``StorageFull`` or ``StorageUnavailable``, so the request gets a 507 or 503 naming
the reason, never a 500.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from dicom_core.storage.ports import SpoolWriteback, storage_error
from dicom_core.storage.ports.scratch import left_by_a_dead_process, scratch_name

SPOOL_SUFFIX = ".part"
_PREAMBLE = 128
_PREFIX = b"DICM"
#: How much of a part is handed to ``Writeback`` at a time while it streams in: the call runs
#: on the event loop, and submitting a megabyte to the disk queue takes it little time, where
#: a whole large part at once could hold it up.
WRITEBACK_STEP = 1 << 20


@contextlib.contextmanager
def _spooling() -> Iterator[None]:
    """A spool that cannot be written is the ports' outage (507 for a full disk, 503)."""
    try:
        yield
    except OSError as exc:
        raise storage_error(exc, "spooling the request body") from exc


class PartSpool:
    """One part being written; call ``write`` for each chunk, then ``close``."""

    _HEAD = _PREAMBLE + len(_PREFIX)

    def __init__(self, path: Path, writeback: SpoolWriteback | None = None) -> None:
        self.path = path
        self.size = 0
        self._writeback = writeback
        self._written_back = 0
        self._head = bytearray()
        self._head_written = False
        with _spooling():
            self._handle: BinaryIO | None = open(path, "wb")  # noqa: SIM115 - closed in close()

    def write(self, data: bytes | memoryview) -> None:
        with _spooling():
            self._write(data)

    def _write(self, data: bytes | memoryview) -> None:
        assert self._handle is not None
        if not self._head_written:
            need = self._HEAD - len(self._head)
            self._head += data[:need]
            data = data[need:]
            if len(self._head) < self._HEAD:
                return
            self._write_head()
        if data:
            self._handle.write(data)
            self.size += len(data)
        if self._writeback is not None and self.size - self._written_back >= WRITEBACK_STEP:
            self._start_writeback()

    def _start_writeback(self) -> None:
        """Hand what was written since the last call to ``writeback`` (out of Python's buffer
        first, so that the range is in the file)."""
        assert self._handle is not None and self._writeback is not None
        self._handle.flush()
        self._writeback(self._handle.fileno(), self._written_back, self.size - self._written_back)
        self._written_back = self.size

    def _write_head(self) -> None:
        assert self._handle is not None
        head = bytes(self._head)
        if head[:4] == _PREFIX:
            head = bytes(_PREAMBLE) + head
        elif head[_PREAMBLE : _PREAMBLE + 4] == _PREFIX:
            head = bytes(_PREAMBLE) + head[_PREAMBLE:]
        self._handle.write(head)
        self.size += len(head)
        self._head_written = True
        self._head.clear()

    def close(self) -> None:
        """Finish the file (a part shorter than a preamble is written as it came)."""
        if self._handle is None:
            return
        with _spooling():
            if not self._head_written:
                self._write_head()
            if self._writeback is not None and self.size > self._written_back:
                self._start_writeback()
            self._handle.close()
        self._handle = None

    def discard(self) -> None:
        """Remove the file, whatever state it is in: closing may flush buffered data and fail
        again as the write did (a full disk), and that must not keep the file."""
        if self._handle is not None:
            handle, self._handle = self._handle, None
            with contextlib.suppress(OSError):
                handle.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def spool_name() -> str:
    """A new spool file's name: ``{host}.{pid}.{random}.part`` (``ports.scratch``)."""
    return scratch_name(SPOOL_SUFFIX)


class StagingArea:
    """Creates spool files in one directory and removes whatever a request leaves behind.

    With ``writeback`` (``Backend.spool_writeback``), each part's bytes are handed to it as
    they are written, a megabyte at a time and the rest at ``close``.
    """

    def __init__(
        self,
        directory: Path,
        *,
        stale_seconds: float = 3600,
        writeback: SpoolWriteback | None = None,
    ) -> None:
        self.directory = directory
        self.writeback = writeback
        directory.mkdir(parents=True, exist_ok=True)
        self._remove_stale(stale_seconds)

    def _remove_stale(self, stale_seconds: float) -> None:
        """Remove spool files a crashed process left behind: at once those of a process of
        this host that is gone (a kill -9, a lost worker), others once older than any live
        request can be. A probe's kill -9 left 2.5 MB of parts on a full disk that a restart
        kept for an hour."""
        cutoff = time.time() - stale_seconds
        for leftover in self.directory.glob("*.part"):
            with contextlib.suppress(OSError):
                if (
                    left_by_a_dead_process(leftover.name, SPOOL_SUFFIX)
                    or leftover.stat().st_mtime < cutoff
                ):
                    leftover.unlink()

    def new_part(self, *, scratch: bool = False) -> PartSpool:
        """A new spool; ``scratch`` for a copy that is read and removed, never placed in
        the store, so never worth writing to disk."""
        return PartSpool(self.directory / spool_name(), None if scratch else self.writeback)

    @staticmethod
    def remove(path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
