"""The local one-transaction store (``SqliteInstanceWriter``) and the writers' lock.

These run on a real SQLite file and a real blob directory. A second ``SqliteDatabase`` on the
same file stands in for another server process: it has its own connection and its own
descriptor for the lock file, so the file lock conflicts exactly as between processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from dicom_core.domain.model import InstanceKey, StoredInstance, StudyKey
from dicom_core.storage.local import sqlite_db
from dicom_core.storage.local.file_blobs import FileBlobStore
from dicom_core.storage.local.instance_writer import SqliteInstanceWriter
from dicom_core.storage.local.sqlite_db import SqliteDatabase, WriterBusy
from dicom_core.storage.local.sqlite_index import SqliteIndexStore
from dicom_core.storage.ports import InstanceExists, StorageUnavailable
from tests.support.index_rows import stored_instance


class Broken(Exception):
    pass


class FailingHook:
    """A commit hook that fails after the file was placed and the row written."""

    def index_in_transaction(
        self, conn: sqlite3.Connection, key: InstanceKey, watermark: int, metadata_json: bytes
    ) -> None:
        raise Broken("indexing failed")


def stored(key: InstanceKey, patient_id: str = "P1") -> StoredInstance:
    return stored_instance(
        key,
        study={"PatientID": patient_id},
        metadata={"00100020": {"vr": "LO", "Value": [patient_id]}},
        file_size=4,
    )


def new_key() -> InstanceKey:
    return InstanceKey(generate_uid(), generate_uid(), generate_uid(), partition=1)


class Local:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.db = SqliteDatabase(root / "index.sqlite")
        self.index = SqliteIndexStore(self.db)
        self.blobs = FileBlobStore(root / "blobs")
        self.staging = root / "staging"
        self.staging.mkdir()

    def writer(self, **kwargs: object) -> SqliteInstanceWriter:
        return SqliteInstanceWriter(self.index, self.blobs, **kwargs)  # type: ignore[arg-type]

    def staged(self, content: bytes = b"DICM") -> Path:
        path = self.staging / f"{generate_uid()}.part"
        path.write_bytes(content)
        return path

    def stored_files(self) -> list[Path]:
        return sorted(p for p in (self.root / "blobs").rglob("*") if p.is_file())

    def rows(self) -> list[tuple[int, int]]:
        with contextlib.closing(sqlite3.connect(self.root / "index.sqlite")) as conn:
            return conn.execute("SELECT watermark, status FROM instance").fetchall()


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Local]:
    stores = Local(tmp_path)
    yield stores
    stores.db.close()


@pytest.fixture
def other_process(local: Local) -> Iterator[SqliteDatabase]:
    """The same database opened again, as a second server process would."""
    db = SqliteDatabase(local.root / "index.sqlite")
    yield db
    db.close()


@dataclass
class HeldLock:
    """Another process's write transaction, held in a thread until ``release`` is set.

    ``events`` records, in order, when that transaction ended, so a test can show that a
    writer waited for it without measuring time.
    """

    thread: threading.Thread
    release: threading.Event
    events: list[str]

    def let_go(self) -> None:
        self.release.set()
        self.thread.join()


def hold_write_lock(db: SqliteDatabase) -> HeldLock:
    """Take ``db``'s write transaction in a thread and keep it until released."""
    held, release, events = threading.Event(), threading.Event(), []

    def hold() -> None:
        with db.transaction():
            held.set()
            release.wait(30)
            # Recorded while the lock is still held: a writer that waited comes after it.
            events.append("other committed")

    thread = threading.Thread(target=hold)
    thread.start()
    assert held.wait(5)
    return HeldLock(thread, release, events)


async def test_file_and_index_entry_appear_together(local: Local) -> None:
    key = new_key()
    source = local.staged(b"DICM and the rest")
    written = await local.writer().write_instance(source, stored(key), upsert=False)

    record = await local.index.get_instance(key)
    assert record is not None
    assert record.watermark == written.watermark
    assert record.blob_key == written.blob_key
    assert local.blobs.path_for(written.blob_key).read_bytes() == b"DICM and the rest"
    assert not source.exists()
    assert written.obsolete_blob_keys == ()


async def test_a_store_sets_and_a_later_one_clears_the_study_s_expiry(local: Local) -> None:
    key = new_key()
    writer = local.writer()
    when = datetime(2026, 1, 1, tzinfo=UTC)
    await writer.write_instance(local.staged(), stored(key), upsert=False, expires_at=when)
    assert await local.index.expired_studies(when, 10) == [
        StudyKey(key.study_uid, partition=key.partition)
    ]
    again = InstanceKey(key.study_uid, key.series_uid, generate_uid(), partition=1)
    await writer.write_instance(local.staged(), stored(again), upsert=False)
    assert await local.index.expired_studies(when, 10) == []


async def test_a_second_post_is_refused_and_leaves_no_file(local: Local) -> None:
    key = new_key()
    writer = local.writer()
    await writer.write_instance(local.staged(), stored(key), upsert=False)
    second = local.staged(b"DICM second")
    with pytest.raises(InstanceExists):
        await writer.write_instance(second, stored(key), upsert=False)
    assert len(local.stored_files()) == 1
    assert not second.exists(), "placed before the transaction, then removed with it"
    assert [status for _, status in local.rows()] == [1]


async def test_put_replaces_and_names_the_replaced_file(local: Local) -> None:
    key = new_key()
    writer = local.writer()
    first = await writer.write_instance(local.staged(b"DICM v1"), stored(key), upsert=False)
    second = await writer.write_instance(
        local.staged(b"DICM v2"), stored(key, patient_id="P2"), upsert=True
    )
    assert second.obsolete_blob_keys == (first.blob_key,)
    record = await local.index.get_instance(key)
    assert record is not None and record.watermark == second.watermark
    assert local.rows() == [(second.watermark, 1)]
    assert local.blobs.path_for(second.blob_key).read_bytes() == b"DICM v2"


async def test_a_failure_after_placing_the_file_leaves_nothing(local: Local) -> None:
    key = new_key()
    writer = local.writer(hooks=(FailingHook(),))
    with pytest.raises(Broken):
        await writer.write_instance(local.staged(), stored(key), upsert=False)
    assert await local.index.get_instance(key) is None
    assert local.rows() == []
    assert local.stored_files() == []


async def test_a_store_waits_for_another_process_without_blocking_the_loop(
    local: Local, other_process: SqliteDatabase
) -> None:
    other = hold_write_lock(other_process)
    key = new_key()
    # A lock timeout well past the loop turns below: a store that blocked the event loop
    # while waiting would give up (StorageUnavailable) before they could run.
    store = asyncio.create_task(
        local.writer(lock_timeout=30).write_instance(local.staged(), stored(key), upsert=False)
    )
    for _ in range(20):
        await asyncio.sleep(0.01)  # the loop runs other work meanwhile
    assert not store.done(), "the store must wait for the other writer's commit"
    assert await local.index.get_instance(key) is None
    other.release.set()
    await store
    other.thread.join()
    assert await local.index.get_instance(key) is not None


async def test_a_store_gives_up_with_storage_unavailable(
    local: Local, other_process: SqliteDatabase
) -> None:
    other = hold_write_lock(other_process)
    key = new_key()
    source = local.staged()
    with pytest.raises(StorageUnavailable):
        await local.writer(lock_timeout=0.2).write_instance(source, stored(key), upsert=False)
    other.let_go()
    assert local.rows() == []
    assert local.stored_files() == []
    assert not source.exists(), "placed before the transaction, then removed with it"


def test_writers_of_two_processes_take_turns(local: Local, other_process: SqliteDatabase) -> None:
    other = hold_write_lock(other_process)
    with pytest.raises(WriterBusy), local.db.transaction(wait=False):
        pass
    threading.Timer(0.3, other.release.set).start()  # lets go while the transaction waits
    with local.db.transaction() as conn:
        other.events.append("ours began")
        conn.execute("INSERT INTO schema_version (version) VALUES (99)")
    other.thread.join()
    assert other.events == ["other committed", "ours began"]
    with other_process.transaction() as conn:
        assert conn.execute("SELECT count(*) FROM schema_version WHERE version = 99").fetchone()[0]


def test_a_rolled_back_transaction_releases_both_locks(local: Local) -> None:
    with pytest.raises(Broken), local.db.transaction():
        raise Broken
    with local.db.transaction(wait=False) as conn:
        conn.execute("SELECT 1")


async def test_a_writer_in_a_thread_gives_up_with_storage_unavailable(
    local: Local, other_process: SqliteDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_db, "LOCK_TIMEOUT_SECONDS", 0.2)
    other = hold_write_lock(other_process)

    def write() -> None:
        with local.db.transaction() as conn:
            conn.execute("INSERT INTO schema_version (version) VALUES (98)")

    with pytest.raises(StorageUnavailable):
        await local.db.run(write)
    other.let_go()
    with local.db.transaction() as conn:
        assert not conn.execute(
            "SELECT count(*) FROM schema_version WHERE version = 98"
        ).fetchone()[0]
