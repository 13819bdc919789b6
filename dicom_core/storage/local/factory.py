"""Builds the local backend from the settings (``dicom_core.bootstrap`` picks it for
``DICOM_STORAGE=local``).

One SQLite file under the data directory holds the index, the workitems, the extended query
tags and external metadata, the partition registry and the job table, so a store, a reindex
batch and the message that continues it commit together; files live beside it under ``blobs/``.
"""

from __future__ import annotations

import os
from pathlib import Path

from dicom_core.settings import Settings
from dicom_core.storage.local.file_blobs import FileBlobStore, start_writeback
from dicom_core.storage.local.instance_writer import SqliteInstanceWriter
from dicom_core.storage.local.sqlite_change_feed import SqliteChangeFeedStore
from dicom_core.storage.local.sqlite_cursors import SqliteCursorStore
from dicom_core.storage.local.sqlite_db import SqliteDatabase
from dicom_core.storage.local.sqlite_eqt import SqliteExternalMetadataStore, SqliteQueryTagStore
from dicom_core.storage.local.sqlite_index import SqliteIndexStore
from dicom_core.storage.local.sqlite_partitions import SqlitePartitionStore
from dicom_core.storage.local.sqlite_queue import SqliteJobQueue
from dicom_core.storage.local.sqlite_workitems import SqliteWorkitemStore
from dicom_core.storage.ports import Backend, JobQueue, SpoolWriteback


def _database(settings: Settings) -> SqliteDatabase:
    return SqliteDatabase(settings.data_dir / "index.sqlite", durable=settings.durable_writes)


def _spool_writeback(settings: Settings, blobs_root: Path) -> SpoolWriteback | None:
    """Start each spooled part's writeback only where the part itself will be synced: with
    durable writes, and spooled on the blobs' file system. A part spooled elsewhere
    (``DICOM_STAGING_DIR`` on another disk) is copied into place, the copy is what gets
    synced, and writing the spool out too would only double the disk's work."""
    if not settings.durable_writes or start_writeback is None:
        return None
    staging = settings.effective_staging_dir
    existing = next(path for path in (staging, *staging.parents) if path.exists())
    if os.stat(existing).st_dev != os.stat(blobs_root).st_dev:
        return None
    return start_writeback


def build_backend(settings: Settings) -> Backend:
    db = _database(settings)
    query_tags = SqliteQueryTagStore(db)
    index = SqliteIndexStore(
        db, stale_create_seconds=settings.reservation_lease_seconds, hooks=(query_tags,)
    )
    blobs = FileBlobStore(settings.data_dir / "blobs", durable=settings.durable_writes)
    return Backend(
        index=index,
        blobs=blobs,
        queue=SqliteJobQueue(db),
        workitems=SqliteWorkitemStore(db),
        query_tags=query_tags,
        external_metadata=SqliteExternalMetadataStore(db),
        change_feed=SqliteChangeFeedStore(db),
        cursors=SqliteCursorStore(db),
        operations=query_tags,
        partitions=SqlitePartitionStore(db),
        # Reserve, place the file and commit (extended query tags included) in one
        # transaction: file and index are on one machine.
        writer=SqliteInstanceWriter(index, blobs, hooks=(query_tags,)),
        # A local file held open stays readable after its delete: no delay is needed.
        blob_delete_delay_seconds=0,
        spool_writeback=_spool_writeback(settings, blobs.root),
    )


def build_job_queue(settings: Settings) -> JobQueue:
    """The queue alone, on its own connection (the local host's queue pollers)."""
    return SqliteJobQueue(_database(settings), owns_database=True)
