"""The local ``OperationStore``: operation records in the SQLite index's ``operation`` table.

Every change of a record and the queue message it sends commit in one transaction (the job
table is in the same database), so no move is ever left unsent. What an operation holds is in
``operation_hold``: one row per resource, naming its holder; a row whose holder has finished
is free to take.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from dicom_core.domain.operations import FINISHED_STATUSES, OperationKind, OperationStatusValues
from dicom_core.domain.timestamps import utc_timestamp
from dicom_core.storage.local.sqlite_db import SqliteDatabase
from dicom_core.storage.local.sqlite_queue import insert_job
from dicom_core.storage.ports import (
    Continuation,
    OperationConflict,
    OperationProgress,
    OperationRecord,
)


def operation_record(row: Sequence[Any]) -> OperationRecord:
    return OperationRecord(
        operation_id=str(row[0]),
        type=str(row[1]),
        status=str(row[2]),
        percent_complete=int(row[3]),
        resources=tuple(orjson.loads(row[4])),
        checkpoint=orjson.loads(row[5]) if row[5] else None,
        created_at=str(row[6]),
        updated_at=str(row[7]),
    )


def _release(conn: sqlite3.Connection, operation_id: str) -> None:
    conn.execute("DELETE FROM operation_hold WHERE operation_id = ?", (operation_id,))


class SqliteOperationStore:
    """``OperationStore`` on SQLite."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def start_operation(
        self,
        operation_id: str,
        kind: OperationKind,
        *,
        checkpoint: dict[str, Any],
        first: Continuation,
        holds: Sequence[str] = (),
    ) -> OperationRecord:
        def write() -> OperationRecord:
            now = utc_timestamp()
            with self._db.transaction() as conn:
                for resource in holds:
                    holder = conn.execute(
                        "SELECT h.operation_id FROM operation_hold h JOIN operation o"
                        " ON o.operation_id = h.operation_id"
                        " WHERE h.resource = ? AND o.status NOT IN (?, ?)",
                        (resource, *FINISHED_STATUSES),
                    ).fetchone()
                    if holder is not None:
                        raise OperationConflict(resource, str(holder[0]))
                    conn.execute(
                        "INSERT OR REPLACE INTO operation_hold (resource, operation_id)"
                        " VALUES (?, ?)",
                        (resource, operation_id),
                    )
                conn.execute(
                    "INSERT INTO operation (operation_id, type, status, percent_complete,"
                    " resources, checkpoint, created_at, updated_at)"
                    " VALUES (?, ?, ?, 0, '[]', ?, ?, ?)",
                    (
                        operation_id,
                        kind.value,
                        OperationStatusValues.NOT_STARTED,
                        orjson.dumps(checkpoint).decode(),
                        now,
                        now,
                    ),
                )
                insert_job(conn, first.queue, first.body)
                row = conn.execute(
                    "SELECT * FROM operation WHERE operation_id = ?", (operation_id,)
                ).fetchone()
            return operation_record(row)

        return await self._db.run(write)

    async def get_operation(self, operation_id: str) -> OperationRecord | None:
        def read() -> OperationRecord | None:
            row = (
                self._db.connection()
                .execute("SELECT * FROM operation WHERE operation_id = ?", (operation_id,))
                .fetchone()
            )
            return None if row is None else operation_record(row)

        return await self._db.run(read)

    async def fail_operation(self, operation_id: str) -> None:
        def write() -> None:
            with self._db.transaction() as conn:
                failed = conn.execute(
                    "UPDATE operation SET status = ?, updated_at = ?"
                    " WHERE operation_id = ? AND status NOT IN (?, ?)",
                    (
                        OperationStatusValues.FAILED,
                        utc_timestamp(),
                        operation_id,
                        *FINISHED_STATUSES,
                    ),
                ).rowcount
                if failed:
                    _release(conn, operation_id)

        await self._db.run(write)

    async def compare_and_set_checkpoint(
        self,
        operation_id: str,
        expected: dict[str, Any],
        progress: OperationProgress,
        continuation: Continuation | None,
    ) -> bool:
        """The move and its message in one transaction: nothing is ever left unsent."""

        def write() -> bool:
            with self._db.transaction() as conn:
                row = conn.execute(
                    "SELECT status, checkpoint FROM operation WHERE operation_id = ?",
                    (operation_id,),
                ).fetchone()
                if row is None or row[0] in FINISHED_STATUSES:
                    return False
                if (orjson.loads(row[1]) if row[1] else None) != expected:
                    return False
                conn.execute(
                    "UPDATE operation SET status = ?, percent_complete = ?, checkpoint = ?,"
                    " updated_at = ? WHERE operation_id = ?",
                    (
                        progress.status,
                        progress.percent_complete,
                        orjson.dumps(progress.checkpoint).decode(),
                        utc_timestamp(),
                        operation_id,
                    ),
                )
                if continuation is not None:
                    insert_job(conn, continuation.queue, continuation.body)
                if progress.status in FINISHED_STATUSES:
                    _release(conn, operation_id)
            return True

        return await self._db.run(write)

    async def resend_continuation(
        self, operation_id: str, stale: dict[str, Any], continuation: Continuation
    ) -> None:
        """Nothing to make up for: every move enqueued its message in its own transaction."""
