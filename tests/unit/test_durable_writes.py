"""Durable stores on the local backend: what is synced, in which order, and the setting.

A power cut cannot be staged in a unit test, so these tests record the calls that make a
store durable instead: every ``os.fsync`` and ``os.fdatasync`` (resolved to the path its
descriptor names), the rename that places the file, and the COMMIT statement SQLite runs. A
store must sync the file's data and its directory entries before the COMMIT, and the WAL after
the COMMIT (outside the writers' lock, so concurrent stores share the wait), all before the
writer returns.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from dicom_core.bootstrap import build_backend, build_services
from dicom_core.domain.model import InstanceKey
from dicom_core.settings import Settings
from dicom_core.storage.local.file_blobs import FileBlobStore, start_writeback
from dicom_core.storage.local.instance_writer import SqliteInstanceWriter
from dicom_core.storage.local.sqlite_db import SqliteDatabase
from dicom_core.storage.local.sqlite_index import SqliteIndexStore
from tests.support.filesystems import directory_elsewhere
from tests.support.index_rows import stored_instance

SYNCHRONOUS_NORMAL = 1


class Recorder:
    """Records syncs, renames and commits, in the order they happen, then does them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[tuple[str, str]] = []
        real_fsync, real_fdatasync = os.fsync, os.fdatasync
        real_replace, real_link = os.replace, os.link

        def fsync(fd: int) -> None:
            self.events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
            real_fsync(fd)

        def fdatasync(fd: int) -> None:
            self.events.append(("fdatasync", os.readlink(f"/proc/self/fd/{fd}")))
            real_fdatasync(fd)

        def replace(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
            self.events.append(("place", os.fspath(target)))
            real_replace(source, target)

        def link(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
            self.events.append(("place", os.fspath(target)))
            real_link(source, target)

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "fdatasync", fdatasync)
        monkeypatch.setattr(os, "replace", replace)
        monkeypatch.setattr(os, "link", link)

    def watch(self, conn: sqlite3.Connection) -> None:
        def trace(statement: str) -> None:
            if statement.strip().upper() == "COMMIT":
                self.events.append(("commit", ""))

        conn.set_trace_callback(trace)

    def syncs(self) -> list[str]:
        return [path for kind, path in self.events if kind in {"fsync", "fdatasync"}]


class Local:
    def __init__(self, root: Path, *, durable: bool) -> None:
        self.root = root
        self.db = SqliteDatabase(root / "index.sqlite", durable=durable)
        self.index = SqliteIndexStore(self.db)
        self.blobs = FileBlobStore(root / "blobs", durable=durable)
        self.writer = SqliteInstanceWriter(self.index, self.blobs)
        self.staging = root / "staging"
        self.staging.mkdir()

    def staged(self, content: bytes) -> Path:
        path = self.staging / f"{generate_uid()}.part"
        path.write_bytes(content)
        return path


@pytest.fixture(params=[True, False], ids=["durable", "scratch"])
def local(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Local]:
    stores = Local(tmp_path, durable=request.param)
    yield stores
    stores.db.close()


@pytest.fixture
def durable(tmp_path: Path) -> Iterator[Local]:
    stores = Local(tmp_path, durable=True)
    yield stores
    stores.db.close()


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Local]:
    stores = Local(tmp_path, durable=False)
    yield stores
    stores.db.close()


def new_key(study_uid: str | None = None, series_uid: str | None = None) -> InstanceKey:
    return InstanceKey(
        study_uid or generate_uid(), series_uid or generate_uid(), generate_uid(), partition=1
    )


async def test_a_store_places_then_syncs_file_and_directories_then_commits(
    durable: Local, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = durable
    recorder = Recorder(monkeypatch)
    recorder.watch(local.db.connection())
    key = new_key()
    source = local.staged(b"DICM first")

    written = await local.writer.write_instance(source, stored_instance(key), upsert=False)

    target = local.blobs.path_for(written.blob_key)
    series_dir, study_dir, root = target.parent, target.parent.parent, local.root / "blobs"
    # The rename to a fresh name nothing refers to, the file's data, the series directory (the
    # file's name), the study directory (the series' name), the blob root (the study's name),
    # then the COMMIT, then the WAL that holds it.
    assert recorder.events == [
        ("place", str(target)),
        ("fsync", str(target)),
        ("fsync", str(series_dir)),
        ("fsync", str(study_dir)),
        ("fsync", str(root)),
        ("commit", ""),
        ("fdatasync", f"{local.db.path}-wal"),
    ]
    assert not source.exists()
    conn = local.db.connection()
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert target.read_bytes() == b"DICM first"


async def test_a_store_into_an_existing_series_syncs_every_directory_all_the_same(
    durable: Local, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The series may have been made a moment ago by a store whose syncs are still running."""
    local = durable
    first = new_key()
    await local.writer.write_instance(local.staged(b"one"), stored_instance(first), upsert=False)
    recorder = Recorder(monkeypatch)
    recorder.watch(local.db.connection())

    written = await local.writer.write_instance(
        local.staged(b"two"),
        stored_instance(new_key(first.study_uid, first.series_uid)),
        upsert=False,
    )

    target = local.blobs.path_for(written.blob_key)
    assert recorder.events == [
        ("place", str(target)),
        ("fsync", str(target)),
        ("fsync", str(target.parent)),
        ("fsync", str(target.parent.parent)),
        ("fsync", str(local.root / "blobs")),
        ("commit", ""),
        ("fdatasync", f"{local.db.path}-wal"),
    ]


async def test_scratch_mode_syncs_nothing_and_commits_with_normal(
    scratch: Local, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder(monkeypatch)
    local = scratch
    recorder.watch(local.db.connection())

    written = await local.writer.write_instance(
        local.staged(b"scratch"), stored_instance(new_key()), upsert=False
    )

    assert recorder.syncs() == []
    assert [kind for kind, _ in recorder.events] == ["place", "commit"]
    conn = local.db.connection()
    assert conn.execute("PRAGMA synchronous").fetchone() == (SYNCHRONOUS_NORMAL,)
    assert local.blobs.path_for(written.blob_key).read_bytes() == b"scratch"


async def test_put_file_syncs_the_data_before_the_name_and_the_directory_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blobs = FileBlobStore(tmp_path / "blobs")
    source = tmp_path / "part"
    source.write_bytes(b"data")
    (tmp_path / "blobs" / "a").mkdir()
    recorder = Recorder(monkeypatch)

    await blobs.put_file("a/b.dcm", source)

    target = tmp_path / "blobs" / "a" / "b.dcm"
    assert recorder.events == [
        ("fsync", str(source)),
        ("place", str(target)),
        ("fsync", str(target.parent)),
        ("fsync", str(tmp_path / "blobs")),
    ]


async def test_every_store_gets_a_file_name_of_its_own(local: Local) -> None:
    """A crash before the COMMIT leaves an orphan; no later store may be handed its name."""
    key = new_key()
    first = await local.writer.write_instance(
        local.staged(b"DICM v1"), stored_instance(key), upsert=False
    )
    second = await local.writer.write_instance(
        local.staged(b"DICM v2"), stored_instance(key), upsert=True
    )

    assert first.blob_key != second.blob_key
    assert second.obsolete_blob_keys == (first.blob_key,)
    assert local.blobs.path_for(second.blob_key).read_bytes() == b"DICM v2"


@pytest.mark.parametrize(("value", "durable"), [(None, True), ("true", True), ("false", False)])
async def test_the_setting_reaches_the_local_adapters(
    tmp_path: Path, value: str | None, durable: bool
) -> None:
    values = {"DATA_DIR": str(tmp_path)}
    if value is not None:
        values["DICOM_DURABLE_WRITES"] = value
    settings = Settings.from_mapping(values)
    assert settings.durable_writes is durable

    services = build_services(settings)
    backend = services.backend
    index, blobs = backend.index, backend.blobs
    try:
        assert isinstance(index, SqliteIndexStore) and isinstance(blobs, FileBlobStore)
        assert blobs.durable is durable
        assert index.database.durable is durable
        # Spooled parts start their writeback only where the store will sync them, and the
        # staging area the STOW route spools into is the one that does it.
        assert backend.spool_writeback is (start_writeback if durable else None)
        assert services.staging.writeback is backend.spool_writeback
    finally:
        await services.close()


@pytest.mark.parametrize(("mode", "synced"), [("durable", True), ("scratch", False)])
async def test_other_write_transactions_sync_the_wal_after_commit(
    mode: str, synced: bool, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deletes, tags and queue writes use ``transaction``: durable, the WAL is synced after
    the COMMIT and before it returns; scratch, never."""
    local: Local = request.getfixturevalue(mode)
    recorder = Recorder(monkeypatch)
    recorder.watch(local.db.connection())
    with local.db.transaction() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS probe (n INTEGER)")
        conn.execute("INSERT INTO probe VALUES (1)")
    expected = [("commit", "")] + ([("fdatasync", f"{local.db.path}-wal")] if synced else [])
    assert recorder.events == expected


@pytest.mark.skipif(start_writeback is None, reason="no sync_file_range in this C library")
def test_starting_a_writeback_takes_a_file_and_refuses_a_pipe_without_raising(
    tmp_path: Path,
) -> None:
    """The head start is only ever a hint: a descriptor it cannot take (a pipe) is a False,
    never an error of the store."""
    assert start_writeback is not None
    path = tmp_path / "part"
    with open(path, "wb") as handle:
        handle.write(b"x" * 100_000)
        handle.flush()
        assert start_writeback(handle.fileno(), 0, 100_000) is True
        assert start_writeback(handle.fileno(), 50_000, 0) is True  # to the end
    read_end, write_end = os.pipe()
    try:
        assert start_writeback(write_end, 0, 0) is False
    finally:
        os.close(read_end)
        os.close(write_end)


async def test_parts_spooled_on_another_file_system_are_not_written_out_early(
    tmp_path: Path,
) -> None:
    """Copied into place from there, a part's spool is never what gets synced: starting its
    writeback would only write it twice."""
    with directory_elsewhere(tmp_path) as elsewhere:
        settings = Settings.from_mapping(
            {"DATA_DIR": str(tmp_path), "DICOM_STAGING_DIR": str(elsewhere / "not-yet-made")}
        )
        backend = build_backend(settings)
        try:
            assert backend.spool_writeback is None
        finally:
            await backend.close()
