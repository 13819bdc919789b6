"""The local index's name for itself: metadata versions (ETags) carry it, so a database that
is re-created, whose watermarks start again from 1, never matches an ETag of the old one."""

from __future__ import annotations

import shutil
from pathlib import Path

from pydicom.uid import generate_uid

from dicom_core.storage.local.sqlite_db import SqliteDatabase
from dicom_core.storage.local.sqlite_index import SqliteIndexStore
from tests.support.index_rows import add_instance

STUDY, SERIES = str(generate_uid()), str(generate_uid())


async def version_after_one_store(directory: Path) -> tuple[int, str | None]:
    index = SqliteIndexStore(SqliteDatabase(directory / "index.db", durable=False))
    try:
        watermark = await add_instance(index, STUDY, SERIES, str(generate_uid()))
        return watermark, await index.metadata_version(STUDY, partition=1)
    finally:
        await index.close()


async def test_a_recreated_database_gives_other_versions_for_the_same_watermarks(
    tmp_path: Path,
) -> None:
    first_mark, first = await version_after_one_store(tmp_path / "db")
    shutil.rmtree(tmp_path / "db")
    second_mark, second = await version_after_one_store(tmp_path / "db")
    assert first_mark == second_mark  # the watermarks start again...
    assert first is not None and second is not None and first != second  # ...the ETag not


def test_a_reopened_database_keeps_its_name(tmp_path: Path) -> None:
    names = set()
    for _ in range(3):
        db = SqliteDatabase(tmp_path / "index.db", durable=False)
        names.add(db.identity)
        db.close()
    assert len(names) == 1
