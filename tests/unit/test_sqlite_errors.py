"""What SQLite's failures become: the ports' ``StorageFull`` (507) for a full disk, and
``StorageUnavailable`` (503) naming SQLite's reason for a damaged or unopenable index, never
an error the web layer can only answer 500."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from dicom_core.storage.local.sqlite_db import SqliteDatabase
from dicom_core.storage.ports import StorageFull, StorageUnavailable


async def test_an_index_that_cannot_grow_is_storage_full(tmp_path: Path) -> None:
    database = SqliteDatabase(tmp_path / "index.sqlite", durable=False)

    def fill() -> None:
        conn = database.connection()
        conn.execute("CREATE TABLE ballast (data BLOB)")
        # SQLite's own limit on the file's pages answers as a full disk does: SQLITE_FULL.
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages + 2}")
        for _ in range(10):
            conn.execute("INSERT INTO ballast VALUES (zeroblob(65536))")

    with pytest.raises(StorageFull, match="is full"):
        await database.run(fill)
    database.close()


def test_an_index_whose_pages_are_damaged_is_unavailable_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    database = SqliteDatabase(path, durable=False)
    with database.transaction() as conn:
        conn.execute("CREATE TABLE filler (data BLOB)")
        conn.executemany("INSERT INTO filler VALUES (randomblob(3000))", [()] * 200)
    database.connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    database.close()
    size = path.stat().st_size
    with open(path, "r+b") as damaged:  # the header stays; pages in the middle do not
        damaged.seek(size // 2)
        damaged.write(b"\xff" * 40960)

    async def read_everything() -> None:
        reopened = SqliteDatabase(path, durable=False)
        try:
            await reopened.run(
                lambda: (
                    reopened.connection()
                    .execute("SELECT count(*), sum(length(data)) FROM filler")
                    .fetchall()
                )
            )
        finally:
            reopened.close()

    with pytest.raises(StorageUnavailable, match="malformed"):
        asyncio.run(read_everything())


def test_a_file_that_is_no_database_is_unavailable_at_open(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    path.write_bytes(b"this is not a database" * 1000)
    with pytest.raises(StorageUnavailable, match="file is not a database"):
        SqliteDatabase(path, durable=False)
    assert path.read_bytes() == b"this is not a database" * 1000


async def test_a_defect_in_a_statement_stays_itself_not_a_503(tmp_path: Path) -> None:
    """IntegrityError and ProgrammingError are bugs to see, not an index to retry later."""
    database = SqliteDatabase(tmp_path / "index.sqlite", durable=False)

    def duplicate() -> None:
        conn = database.connection()
        conn.execute("CREATE TABLE once (id INTEGER PRIMARY KEY)")
        conn.execute("INSERT INTO once VALUES (1)")
        conn.execute("INSERT INTO once VALUES (1)")

    with pytest.raises(sqlite3.IntegrityError):
        await database.run(duplicate)
    with pytest.raises(sqlite3.ProgrammingError):
        await database.run(lambda: database.connection().execute("SELECT ?", ()).fetchall())
    database.close()
