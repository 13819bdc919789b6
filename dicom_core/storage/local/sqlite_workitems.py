"""UPS-RS workitems on the local SQLite file (tables ``workitem`` and ``workitem_value``).

The dataset is kept whole as JSON; ``version`` is bumped on every write and a replace names
the version it read, so concurrent claims of one workitem cannot both succeed. Searches are
compiled to SQL: ``workitem_value`` holds one row per matching key of a searchable attribute
(``query.workitems.workitem_keys``, several for a path through a sequence), and each condition
becomes an ``EXISTS`` over those rows with the same key tests as QIDO (``sqlite_query``).

A workitem is named by its data partition and UID (``partition_key``, ``workitem_uid``:
unique together, as in Azure), and every statement names both, so no read, write or search
crosses partitions.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from dicom_core.domain.timestamps import utc_timestamp
from dicom_core.domain.workitems import (
    PATIENT_ID,
    PATIENT_NAME,
    PROCEDURE_STEP_STATE,
    SCHEDULED_START,
    STUDY_UID,
    TRANSACTION_UID,
    State,
    WorkitemRecord,
    first_string,
)
from dicom_core.query.workitems import WorkitemQuery, path_name, workitem_keys
from dicom_core.storage.local.sqlite_db import SqliteDatabase
from dicom_core.storage.local.sqlite_query import MAX_SQL_OFFSET, sql_predicate
from dicom_core.storage.ports import WorkitemChanged, WorkitemExists


def _columns(dataset: dict[str, Any]) -> tuple[Any, ...]:
    """The denormalised columns (state, lock, a few searchable values) kept for inspection."""
    return (
        first_string(dataset, PROCEDURE_STEP_STATE) or State.SCHEDULED.value,
        first_string(dataset, TRANSACTION_UID),
        first_string(dataset, PATIENT_NAME),
        first_string(dataset, PATIENT_ID),
        first_string(dataset, STUDY_UID),
        first_string(dataset, SCHEDULED_START),
        orjson.dumps(dataset),
    )


def _write_values(conn: sqlite3.Connection, key: int, dataset: dict[str, Any]) -> None:
    """Replace the matching keys of the workitem ``key`` (in the caller's transaction)."""
    conn.execute("DELETE FROM workitem_value WHERE workitem_key = ?", (key,))
    conn.executemany(
        "INSERT INTO workitem_value (workitem_key, path, value) VALUES (?, ?, ?)",
        [(key, path, value) for path, values in workitem_keys(dataset).items() for value in values],
    )


def compile_workitem_search(query: WorkitemQuery) -> tuple[str, list[object]]:
    """The SQL of one page of a workitem search, newest first, and its parameters."""
    params: list[object] = [query.partition]
    clauses = ["w.partition_key = ?"]
    for condition in query.conditions:
        params.append(path_name(condition.attribute.path))
        test = sql_predicate(condition, "v.value", params)
        clauses.append(
            "EXISTS (SELECT 1 FROM workitem_value v WHERE v.workitem_key = w.workitem_key"
            f" AND v.path = ? AND {test})"
        )
    where = f" WHERE {' AND '.join(clauses)}"
    # The parser caps the offset (query.parser.MAX_OFFSET); the clamp keeps a query built
    # elsewhere within the 64-bit integer SQLite binds.
    params.extend((query.limit, min(query.offset, MAX_SQL_OFFSET)))
    sql = (
        "SELECT w.workitem_uid, w.dataset, w.version, w.workitem_key FROM workitem w"
        f"{where} ORDER BY w.workitem_key DESC LIMIT ? OFFSET ?"
    )
    return sql, params


def _record(row: tuple[Any, ...]) -> WorkitemRecord:
    uid, dataset, version, key = row
    return WorkitemRecord(
        uid=str(uid), dataset=orjson.loads(dataset), version=str(version), sequence=int(key)
    )


class SqliteWorkitemStore:
    """``WorkitemStore`` on the local SQLite file (the index's database)."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def create_workitem(self, uid: str, dataset: dict[str, Any], *, partition: int) -> None:
        def insert() -> None:
            now = utc_timestamp()
            try:
                with self._db.transaction() as conn:
                    key = conn.execute(
                        "INSERT INTO workitem (partition_key, workitem_uid, state,"
                        " transaction_uid, patient_name, patient_id, study_uid,"
                        " scheduled_start_datetime, dataset, created_at, updated_at, version)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
                        (partition, uid, *_columns(dataset), now, now),
                    ).lastrowid
                    assert key is not None
                    _write_values(conn, key, dataset)
            except sqlite3.IntegrityError as exc:
                raise WorkitemExists(uid) from exc

        await self._db.run(insert)

    async def get_workitem(self, uid: str, *, partition: int) -> WorkitemRecord | None:
        def read() -> WorkitemRecord | None:
            row = (
                self._db.connection()
                .execute(
                    "SELECT workitem_uid, dataset, version, workitem_key FROM workitem"
                    " WHERE partition_key = ? AND workitem_uid = ?",
                    (partition, uid),
                )
                .fetchone()
            )
            return _record(row) if row else None

        return await self._db.run(read)

    async def replace_workitem(
        self, uid: str, dataset: dict[str, Any], *, partition: int, version: str
    ) -> None:
        def replace() -> None:
            with self._db.transaction() as conn:
                rows = conn.execute(
                    "UPDATE workitem SET state = ?, transaction_uid = ?, patient_name = ?,"
                    " patient_id = ?, study_uid = ?, scheduled_start_datetime = ?, dataset = ?,"
                    " updated_at = ?, version = version + 1"
                    " WHERE partition_key = ? AND workitem_uid = ? AND version = ?"
                    " RETURNING workitem_key",
                    (*_columns(dataset), utc_timestamp(), partition, uid, int(version)),
                ).fetchall()  # to the end: the statement is done before the commit
                if rows:
                    _write_values(conn, rows[0][0], dataset)
            if not rows:
                raise WorkitemChanged(uid)

        await self._db.run(replace)

    async def search_workitems(self, query: WorkitemQuery) -> list[WorkitemRecord]:
        sql, params = compile_workitem_search(query)

        def read() -> list[WorkitemRecord]:
            rows = self._db.connection().execute(sql, params).fetchall()
            return [_record(row) for row in rows]

        return await self._db.run(read)
