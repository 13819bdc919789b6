"""The local ``InstanceWriter``: reserve, place the file and commit in one SQLite transaction.

The generic store protocol (``begin_instance``, write the file, ``commit_instance``) exists for
backends whose index and files live in different services. Locally both are on one disk, so
one write transaction covers all three steps: the rename that places the file costs
microseconds, a crash can leave no reservation behind, and each store takes SQLite's write
lock once instead of twice.

The transaction runs on the event loop, not in a worker thread. It is short (well under a
millisecond for a store), and a thread holding the write lock would have to win the GIL back
from the event loop between statements, which under load stretches the time every other
process waits for the lock by milliseconds. When another writer holds the database the store
does not block the loop: it retries after a short sleep.

Extended-query-tag values are written in the same transaction, so an instance never becomes
visible before a ready tag can find it.

Durability (``DICOM_DURABLE_WRITES``, on by default): a store is acknowledged only once the
file's data, its directory entry and the index commit are on disk, synced in that order so
that no crash can leave a committed row naming a missing or empty file:

1. the staged file's data, in a worker thread before the write lock is taken, so the sync
   that costs the most (it writes the instance's bytes) runs concurrently with other stores;
2. under the lock: the rename into place, then the file's directory (and the parent of any
   directory created), before the COMMIT can become durable;
3. the COMMIT, then, with the lock released and off the event loop, the WAL that holds it
   (``SqliteDatabase.sync_wal``): other stores commit meanwhile, and one sync may cover
   several commits.

A crash between 2 and 3 leaves a file no committed row names; its watermark was never
committed, so the next reservation may get it again, and the rename then replaces the
orphan (see ``_write``).
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Protocol

from dicom_core.domain.model import InstanceKey, StoredInstance
from dicom_core.storage.local.file_blobs import FileBlobStore, sync_file
from dicom_core.storage.local.sqlite_db import (
    FIRST_RETRY,
    LAST_RETRY,
    LOCK_TIMEOUT_SECONDS,
    WriterBusy,
)
from dicom_core.storage.local.sqlite_index import SqliteIndexStore
from dicom_core.storage.ports import StorageUnavailable, WrittenInstance


class CommitHook(Protocol):
    """Runs inside the instance's write transaction, after its row is committed-to-be."""

    def index_in_transaction(
        self, conn: sqlite3.Connection, key: InstanceKey, watermark: int, metadata_json: bytes
    ) -> None: ...


class SqliteInstanceWriter:
    def __init__(
        self,
        index: SqliteIndexStore,
        blobs: FileBlobStore,
        *,
        hooks: tuple[CommitHook, ...] = (),
        lock_timeout: float = LOCK_TIMEOUT_SECONDS,
    ) -> None:
        self._lock_timeout = lock_timeout
        self._index = index
        self._blobs = blobs
        self._db = index.database
        self._hooks = hooks

    async def write_instance(
        self, source: Path, instance: StoredInstance, *, upsert: bool
    ) -> WrittenInstance:
        if self._blobs.durable:
            await asyncio.to_thread(sync_file, source)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._lock_timeout
        delay = FIRST_RETRY
        try:
            while True:
                try:
                    written = self._write(source, instance, upsert)
                    # The WAL sync that makes the commit durable, outside the writers' lock and
                    # off the event loop; nothing is acknowledged before it returns.
                    if self._db.durable:
                        await asyncio.to_thread(self._db.sync_wal)
                    return written
                except WriterBusy:
                    if loop.time() > deadline:
                        raise StorageUnavailable(
                            "the local index stayed locked by another writer"
                        ) from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, LAST_RETRY)
        except sqlite3.OperationalError as exc:
            raise StorageUnavailable(f"the local index is unavailable: {exc}") from exc

    def _write(self, source: Path, instance: StoredInstance, upsert: bool) -> WrittenInstance:
        placed: str | None = None
        try:
            with self._db.transaction(wait=False, defer_sync=True) as conn:
                reservation = self._index.reserve(conn, instance.key, upsert=upsert)
                # The watermark is fresh (AUTOINCREMENT never hands out a committed one), so a
                # file already at this key is an orphan of a store whose commit a crash lost:
                # replace it rather than fail the store.
                self._blobs.place_file(
                    reservation.blob_key, source, overwrite=True, source_synced=True
                )
                placed = reservation.blob_key
                replaced = self._index.finish(conn, reservation, instance)
                for hook in self._hooks:
                    hook.index_in_transaction(
                        conn, instance.key, reservation.watermark, instance.metadata_json
                    )
        except BaseException:
            # Rolled back: the file must not outlive the index entry it was placed for.
            if placed is not None:
                self._blobs.remove_file(placed)
            raise
        return WrittenInstance(
            watermark=reservation.watermark,
            blob_key=reservation.blob_key,
            obsolete_blob_keys=(*replaced, *reservation.abandoned_blob_keys),
        )
