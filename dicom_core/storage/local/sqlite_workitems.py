"""UPS-RS workitems on the local SQLite file (tables ``workitem`` and ``workitem_value``).

The dataset is kept whole as JSON; ``version`` is bumped on every write and a replace names
the version it read, so concurrent claims of one workitem cannot both succeed. Searches are
compiled to SQL: ``workitem_value`` holds one row per matching key of a searchable attribute
(``query.workitems.workitem_keys``, several for a path through a sequence), and each condition
becomes an ``EXISTS`` over those rows with the same key tests as QIDO (``sqlite_query``), except
that a search with a selective condition starts from that condition's rows
(``RARE_WORKITEM_ROWS``).

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
from dicom_core.query.conditions import Condition, ListMatch, RangeMatch, ValueMatch
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


def _write_values(
    conn: sqlite3.Connection, key: int, dataset: dict[str, Any], partition: int
) -> None:
    """Replace the matching keys of the workitem ``key`` (in the caller's transaction)."""
    conn.execute("DELETE FROM workitem_value WHERE workitem_key = ?", (key,))
    conn.executemany(
        "INSERT INTO workitem_value (workitem_key, partition_key, path, value) VALUES (?, ?, ?, ?)",
        [
            (key, partition, path, value)
            for path, values in workitem_keys(dataset).items()
            for value in values
        ],
    )


RARE_WORKITEM_ROWS = 2000
"""Below this many matching keys, a workitem search starts from the condition's keys.

Each condition can be answered two ways, as a ModalitiesInStudy search can
(``sqlite_query.RARE_MODALITY_ROWS``). Walking the partition's workitems newest first and
testing each (``EXISTS``, the default) stops after a page of matches: quick when many match,
but a selective condition (one patient's PatientID, the SCHEDULED state in a worklist whose
history is mostly COMPLETED) is tested on nearly every workitem ever made, so its cost grows
with the history (about 40 ms at 10^5 workitems, benchmarks/SCALE.md). Starting from the
condition's keys in ``workitem_value_by_partition`` reads only the workitems that match: quick
when they are few. ``workitem_probes`` counts those keys, up to this limit, for each condition the
index seeks (an equality, a list, a range), and the search starts from the fewest below it.
"""


def _seekable(condition: Condition) -> bool:
    """Whether ``workitem_value_by_partition`` (partition, path, value) seeks the condition's
    keys; the others (wildcards, fuzzy words) would read every key of the path to count them."""
    return isinstance(condition, ValueMatch | ListMatch | RangeMatch)


def _value_test(condition: Condition, params: list[object]) -> str:
    """The test of a ``workitem_value`` row (``v``) against ``condition``: its path, then the
    same key test as QIDO."""
    params.append(path_name(condition.attribute.path))
    return f"v.path = ? AND {sql_predicate(condition, 'v.value', params)}"


def _keys_of(
    condition: Condition, partition: int, params: list[object], *, column: str = "v.workitem_key"
) -> str:
    """The SELECT of the keys of the partition's workitems whose ``workitem_value`` rows match
    ``condition`` (``column``: what it selects), from ``workitem_value_by_partition`` alone."""
    params.append(partition)
    test = _value_test(condition, params)
    return f"SELECT {column} FROM workitem_value v WHERE v.partition_key = ? AND {test}"


def workitem_probes(
    query: WorkitemQuery, limit: int = RARE_WORKITEM_ROWS
) -> list[tuple[int, str, list[object]]]:
    """For each condition the index seeks: its position in ``query.conditions`` and the SQL
    (with its parameters) that counts its keys in the query's partition, up to ``limit``."""
    probes = []
    for position, condition in enumerate(query.conditions):
        if _seekable(condition):
            params: list[object] = []
            keys = _keys_of(condition, query.partition, params, column="1")
            params.append(limit)
            probes.append((position, f"SELECT count(*) FROM ({keys} LIMIT ?)", params))
    return probes


def compile_workitem_search(
    query: WorkitemQuery, *, start_from: int | None = None
) -> tuple[str, list[object]]:
    """The SQL of one page of a workitem search, newest first, and its parameters.

    ``start_from``: the position of the condition whose keys the search starts from
    (``RARE_WORKITEM_ROWS``); its partition test is then a filter only (``+``), or SQLite
    would walk the partition's index instead. The results are the same either way.
    """
    params: list[object] = [query.partition]
    clauses = ["+w.partition_key = ?" if start_from is not None else "w.partition_key = ?"]
    for position, condition in enumerate(query.conditions):
        if position == start_from:
            clauses.append(f"w.workitem_key IN ({_keys_of(condition, query.partition, params)})")
            continue
        clauses.append(
            "EXISTS (SELECT 1 FROM workitem_value v WHERE v.workitem_key = w.workitem_key"
            f" AND {_value_test(condition, params)})"
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

    def __init__(self, db: SqliteDatabase, *, rare_rows: int = RARE_WORKITEM_ROWS) -> None:
        """``rare_rows`` replaces ``RARE_WORKITEM_ROWS`` (tests take each route with it)."""
        self._rare_rows = rare_rows
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
                    _write_values(conn, key, dataset, partition)
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
                    _write_values(conn, rows[0][0], dataset, partition)
            if not rows:
                raise WorkitemChanged(uid)

        await self._db.run(replace)

    async def search_workitems(self, query: WorkitemQuery) -> list[WorkitemRecord]:
        probes = workitem_probes(query, self._rare_rows)

        def read() -> list[WorkitemRecord]:
            conn = self._db.connection()
            start_from, fewest = None, self._rare_rows
            for position, probe, probe_params in probes:
                (count,) = conn.execute(probe, probe_params).fetchone()
                if int(count) < fewest:
                    start_from, fewest = position, int(count)
            sql, params = compile_workitem_search(query, start_from=start_from)
            rows = conn.execute(sql, params).fetchall()
            return [_record(row) for row in rows]

        return await self._db.run(read)
