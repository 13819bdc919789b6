"""Blob debts on SQLite (``ports.index.BlobDebt``): rows of ``blob_debt``.

A debt is written by the transaction that stops naming its files, so the two commit together;
``SqliteIndexStore`` forgets it once the janitor took every file, and the sweep reads what a
dead process left.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import orjson

from dicom_core.domain.model import StudyKey
from dicom_core.storage.local.sqlite_db import SqliteDatabase
from dicom_core.storage.ports import BlobDebt


def record_debt(conn: sqlite3.Connection, study: StudyKey, blob_keys: Sequence[str]) -> BlobDebt:
    """Add a debt inside the caller's write transaction."""
    now = int(time.time() * 1000)  # milliseconds, as Cosmos DB's debts keep it
    cursor = conn.execute(
        "INSERT INTO blob_debt (partition_key, study_uid, blob_keys, recorded_at)"
        " VALUES (?, ?, ?, ?)",
        (study.partition, study.study_uid, orjson.dumps(list(blob_keys)).decode(), now),
    )
    return BlobDebt(
        id=str(cursor.lastrowid),
        study=study,
        blob_keys=tuple(blob_keys),
        recorded_at=datetime.fromtimestamp(now / 1000, UTC),
    )


async def read_debts(db: SqliteDatabase, recorded_before: datetime, limit: int) -> list[BlobDebt]:
    def read() -> list[BlobDebt]:
        rows = (
            db.connection()
            .execute(
                "SELECT id, partition_key, study_uid, blob_keys, recorded_at FROM blob_debt"
                " WHERE recorded_at < ? ORDER BY recorded_at LIMIT ?",
                (int(recorded_before.timestamp() * 1000), limit),
            )
            .fetchall()
        )
        return [
            BlobDebt(
                id=str(id_),
                study=StudyKey(str(study), partition=int(partition)),
                blob_keys=tuple(str(key) for key in orjson.loads(keys)),
                recorded_at=datetime.fromtimestamp(int(at) / 1000, UTC),
            )
            for id_, partition, study, keys, at in rows
        ]

    return await db.run(read)


async def forget_debt(db: SqliteDatabase, debt: BlobDebt) -> None:
    """Delete the debt's row without waiting for the disk: a forget that a power cut loses
    only makes the sweep delete files already gone, and the next durable commit syncs it."""

    def delete() -> None:
        with db.transaction(defer_sync=True) as conn:
            conn.execute("DELETE FROM blob_debt WHERE id = ?", (int(debt.id),))

    await db.run(delete)
