"""The local ``InstanceWriter``: place the file, then reserve and commit in one transaction.

The generic store protocol (``begin_instance``, write the file, ``commit_instance``) exists for
backends whose index and files live in different services. Locally both are on one disk, so
the writer places the file first, under a fresh key nothing names yet, and then one write
transaction reserves the key and commits the instance: a crash can leave no reservation
behind, and each store takes SQLite's write lock once instead of twice.

The transaction runs on the event loop, not in a worker thread. It is short (well under a
millisecond for a store), and a thread holding the write lock would have to win the GIL back
from the event loop between statements, which under load stretches the time every other
process waits for the lock by milliseconds. When another writer holds the database the store
does not block the loop: it retries after a short sleep.

Extended-query-tag values are written in the same transaction, so an instance never becomes
visible before a ready tag can find it.

Durability (``DICOM_DURABLE_WRITES``, on by default): a store is acknowledged only once the
file's data, its directory entries and the index commit are on disk, synced in that order so
that no crash can leave a committed row naming a missing or empty file:

1. in a worker thread, with no lock held: the rename to a fresh key, then the file's data and
   the directories (``FileBlobStore.place_new_file``). Concurrent stores sync at the same
   time, and the file system's journal commits them together (group commit);
2. the transaction, with no sync in it, so the writers' lock is held for SQLite's work only;
3. with the lock released and off the event loop, the WAL that holds the commit
   (``SqliteDatabase.sync_wal``): other stores commit meanwhile, and one sync may cover
   several commits.

A crash before 3 leaves at worst a file no committed row names (an orphan under a key no
store will reuse); an instance the index shows is always whole. A store that fails at 2 (a
conflict, a locked index) removes its file.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from pathlib import Path

from dicom_core.domain.identifiers import blob_key_for
from dicom_core.domain.model import StoredInstance
from dicom_core.storage.local.file_blobs import FileBlobStore
from dicom_core.storage.local.sqlite_db import (
    FIRST_RETRY,
    LAST_RETRY,
    LOCK_TIMEOUT_SECONDS,
    WriterBusy,
)
from dicom_core.storage.local.sqlite_index import CommitHook, SqliteIndexStore
from dicom_core.storage.ports import (
    BlobDebt,
    BlobRelease,
    StorageUnavailable,
    WrittenInstance,
    settled_keys,
)


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
        self,
        source: Path,
        instance: StoredInstance,
        *,
        upsert: bool,
        expires_at: datetime | None = None,
        release: BlobRelease | None = None,
    ) -> WrittenInstance:
        key = instance.key
        blob_key = blob_key_for(key.study_uid, key.series_uid, key.sop_uid, uuid.uuid4().hex)
        if self._blobs.durable:
            await asyncio.to_thread(self._blobs.place_new_file, blob_key, source)
        else:
            self._blobs.place_new_file(blob_key, source)
        try:
            written, debt = await self._commit(blob_key, instance, upsert, expires_at)
        except BaseException:
            # Never committed: nothing names the file.
            self._blobs.remove_file(blob_key)
            raise
        # The WAL sync that makes the commit durable, outside the writers' lock and off the
        # event loop; nothing is acknowledged before it returns.
        if self._db.durable:
            await asyncio.to_thread(self._db.sync_wal)
        await settled_keys(debt, release, self._index.forget_blob_debt)
        return written

    async def _commit(
        self, blob_key: str, instance: StoredInstance, upsert: bool, expires_at: datetime | None
    ) -> tuple[WrittenInstance, BlobDebt | None]:
        """The transaction, retried while another writer holds the database."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._lock_timeout
        delay = FIRST_RETRY
        with self._db.errors_as_unavailable():
            while True:
                try:
                    return self._write(blob_key, instance, upsert, expires_at)
                except WriterBusy:
                    if loop.time() > deadline:
                        raise StorageUnavailable(
                            "the local index stayed locked by another writer"
                        ) from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, LAST_RETRY)

    def _write(
        self, blob_key: str, instance: StoredInstance, upsert: bool, expires_at: datetime | None
    ) -> tuple[WrittenInstance, BlobDebt | None]:
        with self._db.transaction(wait=False, defer_sync=True) as conn:
            reservation = self._index.reserve(conn, instance.key, upsert=upsert, blob_key=blob_key)
            replaced = self._index.finish(conn, reservation, instance, expires_at=expires_at)
            for hook in self._hooks:
                hook.index_in_transaction(
                    conn, instance.key, reservation.watermark, instance.metadata_json
                )
            obsolete = (*replaced, *reservation.abandoned_blob_keys)
            debt = self._index.owe(conn, instance.key, obsolete)
        written = WrittenInstance(
            watermark=reservation.watermark, blob_key=blob_key, obsolete_blob_keys=obsolete
        )
        return written, debt
