"""The directory export sink: an export to a ``file://`` directory of this machine.

For laptops: ``make run`` exports to a folder instead of a blob container. Any directory the
server process can write to would be too much to hand to whoever may call the API, so file
destinations are off unless ``DICOM_EXPORT_LOCAL_ROOT`` names a directory, and then only that
directory and those below it are accepted. Paths are compared after resolving symbolic links
(``realpath``), once when the destination is opened and again for each directory an export
writes into, so neither ``..`` nor a link leads outside. Path segments below the destination
are the operation id and UIDs that were validated before they got here, checked once more.

Files are written in the operation's ``.incoming`` directory and renamed into place once
complete and synced, so a file under its final name is always whole, also after a kill. The
partial files are named after the process writing them (``ports.scratch``): the first write
of a sink (a batch of the export, after a restart too) removes those that dead processes of
this host left, and any a day old.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from dicom_core.domain.export import DirectoryDestination, error_log_path, result_path
from dicom_core.domain.identifiers import identifier_problem
from dicom_core.domain.model import InstanceKey
from dicom_core.storage.local.file_blobs import sync_directory
from dicom_core.storage.ports import ExportDestinationError
from dicom_core.storage.ports.scratch import left_by_a_dead_process, scratch_name

_OPERATION_ID = re.compile(r"^[0-9A-Za-z-]{1,64}$")
ROOT_SETTING = "DICOM_EXPORT_LOCAL_ROOT"
INCOMING = ".incoming"
PARTIAL_SUFFIX = ".partial"
#: Seconds after which a partial file is removed whoever wrote it.
PARTIAL_MAX_AGE = 86_400


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


class DirectoryExportSink:
    """``ExportSink`` on a directory below the allowed root."""

    def __init__(
        self, destination: DirectoryDestination, operation_id: str, *, root: Path | None
    ) -> None:
        if root is None:
            raise ExportDestinationError(
                f"file:// destinations are turned off on this server: {ROOT_SETTING} names"
                " no directory exports may write under."
            )
        if not _OPERATION_ID.match(operation_id):
            raise ValueError(f"unexpected operation id {operation_id!r}")
        self._root = Path(os.path.realpath(root))
        self._directory = Path(os.path.realpath(destination.path))
        self._uri = destination.uri
        if not _within(self._directory, self._root):
            raise ExportDestinationError(
                f"The directory {destination.uri} is outside the directory exports may write"
                f" under ({ROOT_SETTING})."
            )
        self._operation_id = operation_id
        self._incoming = self._directory / operation_id / INCOMING
        self._swept = False

    @property
    def error_href(self) -> str:
        return self._errors.as_uri()

    @property
    def _errors(self) -> Path:
        return self._directory.joinpath(*error_log_path(self._operation_id).split("/"))

    def _make_parent(self, path: Path) -> None:
        """Create ``path``'s directory, and check that it still resolves below the root."""
        path.parent.mkdir(parents=True, exist_ok=True)
        if not _within(Path(os.path.realpath(path.parent)), self._root):
            raise ExportDestinationError(
                f"A directory of the export leads outside {ROOT_SETTING}: {path.parent}."
            )

    async def prepare(self) -> None:
        def create() -> None:
            if not self._directory.is_dir():
                raise ExportDestinationError(f"The directory {self._uri} does not exist.")
            try:
                self._make_parent(self._errors)
                with open(self._errors, "ab"):
                    pass
            except PermissionError as exc:
                raise ExportDestinationError(
                    f"The server may not write to the directory {self._uri}."
                ) from exc

        await asyncio.to_thread(create)

    def _result(self, key: InstanceKey) -> Path:
        for uid in (key.study_uid, key.series_uid, key.sop_uid):
            problem = identifier_problem(uid)
            if problem is not None or "/" in uid:
                raise ValueError(f"unsafe UID in an export path: {problem or uid!r}")
        return self._directory.joinpath(*result_path(self._operation_id, key).split("/"))

    async def write_instance(
        self, key: InstanceKey, chunks: AsyncIterator[bytes], size: int
    ) -> None:
        target = self._result(key)
        await asyncio.to_thread(self._make_parent, target)
        if not self._swept:
            await asyncio.to_thread(self._remove_dead_partials)
            self._swept = True
        partial = self._incoming / scratch_name(PARTIAL_SUFFIX)
        handle: BinaryIO = await asyncio.to_thread(open, partial, "wb")
        try:
            written = 0
            async for chunk in chunks:
                await asyncio.to_thread(handle.write, chunk)
                written += len(chunk)
            if written != size:
                raise OSError(f"{key.sop_uid}: read {written} of {size} bytes")
            await asyncio.to_thread(_sync_and_close, handle)
            await asyncio.to_thread(os.replace, partial, target)
            # The rename is durable once its directory is synced: only then may the step's
            # checkpoint count the file as exported.
            await asyncio.to_thread(sync_directory, target.parent)
        except BaseException:
            handle.close()
            with contextlib.suppress(OSError):
                partial.unlink()
            raise

    def _remove_dead_partials(self) -> None:
        """Make the operation's ``.incoming`` and remove what killed writers left in it."""
        self._make_parent(self._incoming / "x")
        cutoff = time.time() - PARTIAL_MAX_AGE
        for leftover in self._incoming.glob(f"*{PARTIAL_SUFFIX}"):
            with contextlib.suppress(OSError):
                dead = left_by_a_dead_process(leftover.name, PARTIAL_SUFFIX)
                if dead or leftover.stat().st_mtime < cutoff:
                    leftover.unlink()

    async def append_errors(self, lines: bytes) -> None:
        def append() -> None:
            with open(self._errors, "ab") as log:
                log.write(lines)
                log.flush()
                os.fsync(log.fileno())

        await asyncio.to_thread(append)

    async def close(self) -> None:
        return None


def _sync_and_close(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()
