"""The local adapter of the extended-query-tag and operation store, on the shared SQLite file.

Why it shares the database with the job queue: moving an operation's checkpoint and enqueuing
the continuation message is one transaction (an outbox by construction), so a crash anywhere
leaves either the old checkpoint with its message, or the new checkpoint with the next
message; never both, never neither. The reindex algorithm itself is ``dicom_core.jobs``'.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from dicom_core.domain.extended_query_tags import (
    QueryStatusValues,
    QueryTagDefinition,
    QueryTagStatusValues,
    value_entity,
)
from dicom_core.domain.model import InstanceKey
from dicom_core.domain.operations import OperationKind, OperationStatusValues
from dicom_core.domain.partitions import DEFAULT_PARTITION_NAME
from dicom_core.domain.timestamps import utc_timestamp
from dicom_core.query.indexed_values import (
    IndexedValue,
    InvalidValue,
    extract_value,
    query_attribute,
)
from dicom_core.storage.local.sqlite_db import SqliteDatabase
from dicom_core.storage.local.sqlite_operations import SqliteOperationStore, operation_record
from dicom_core.storage.local.sqlite_queue import insert_job
from dicom_core.storage.ports import (
    ExternalValue,
    ExternalVrConflict,
    IndexedInstance,
    OperationRecord,
    OperationStart,
    QueryTagRecord,
    TagConflict,
    TooManyTags,
)

_TAG_COLUMNS = (
    "tag_key, path, vr, private_creator, level, status, query_status, error_count,"
    " operation_id, created_at"
)


def _tag(row: Sequence[Any]) -> QueryTagRecord:
    return QueryTagRecord(
        key=int(row[0]),
        path=str(row[1]),
        vr=str(row[2]),
        private_creator=row[3],
        level=str(row[4]),
        status=str(row[5]),
        query_status=str(row[6]),
        error_count=int(row[7]),
        operation_id=row[8],
    )


def _refresh_study_values(conn: sqlite3.Connection, study_uid: str, partition: int) -> None:
    stale = conn.execute(
        "SELECT v.tag_key, v.series_uid FROM eqt_value v"
        " WHERE v.partition_key = ? AND v.study_uid = ? AND v.sop_uid = ''"
        " AND NOT EXISTS (SELECT 1 FROM instance i WHERE i.watermark = v.watermark"
        " AND i.status = 1)",
        (partition, study_uid),
    ).fetchall()
    if not stale:
        return
    tags = {
        tag.key: tag
        for tag in (
            _tag(r)
            for r in conn.execute(
                f"SELECT {_TAG_COLUMNS} FROM extended_query_tag WHERE status != ?",
                (QueryTagStatusValues.DELETING,),
            ).fetchall()
        )
    }
    pending: set[tuple[int, str]] = set()
    for tag_key, series in stale:
        conn.execute(
            "DELETE FROM eqt_value WHERE tag_key = ? AND partition_key = ? AND study_uid = ?"
            " AND series_uid = ? AND sop_uid = ''",
            (tag_key, partition, study_uid, series),
        )
        if int(tag_key) in tags:
            pending.add((int(tag_key), str(series)))
    rows = conn.execute(
        "SELECT watermark, series_uid, sop_uid FROM instance"
        " WHERE partition_key = ? AND study_uid = ? AND status = 1 ORDER BY watermark DESC",
        (partition, study_uid),
    )
    while pending and (batch := rows.fetchmany(64)):
        for watermark, series, sop in batch:
            wanted = [(k, s) for k, s in pending if s in ("", series)]
            if not wanted:
                continue
            (metadata,) = conn.execute(
                "SELECT metadata FROM instance WHERE watermark = ?", (watermark,)
            ).fetchone()
            if not metadata:
                continue
            doc = orjson.loads(metadata)
            key = InstanceKey(study_uid, str(series), str(sop), partition=partition)
            for tag_key, entity in wanted:
                tag = tags[tag_key]
                attribute = query_attribute(tag.path, tag.vr, tag.level, tag.private_creator)
                try:
                    value = extract_value(doc, attribute)
                except InvalidValue:
                    continue
                if value is not None:
                    _write_value(conn, tag, key, int(watermark), value)
                    pending.discard((tag_key, entity))


def _index_one(
    conn: sqlite3.Connection,
    tag: QueryTagRecord,
    key: InstanceKey,
    watermark: int,
    doc: dict[str, Any],
    *,
    record_errors: bool = True,
) -> None:
    """Upsert one instance's value for one tag, or record why it cannot be indexed.

    Idempotent: values are keyed by (tag, entity) and the latest watermark wins; errors are
    keyed by (tag, instance), and only a newly recorded error disables the tag. At store time
    (``record_errors=False``) an invalid value is only left out: the store answer already
    reported it as a validation warning, and such warnings are not indexing errors (the
    conformance statement, "Search changes from v1").
    """
    attribute = query_attribute(tag.path, tag.vr, tag.level, tag.private_creator)
    try:
        value = extract_value(doc, attribute)
    except InvalidValue as exc:
        if not record_errors:
            return
        inserted = conn.execute(
            "INSERT OR IGNORE INTO eqt_error"
            " (tag_key, partition_key, study_uid, series_uid, sop_uid, created_at, message)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                tag.key,
                key.partition,
                key.study_uid,
                key.series_uid,
                key.sop_uid,
                utc_timestamp(),
                str(exc),
            ),
        ).rowcount
        if inserted:
            conn.execute(
                "UPDATE extended_query_tag SET query_status = ?,"
                " error_count = (SELECT COUNT(*) FROM eqt_error WHERE tag_key = ?)"
                " WHERE tag_key = ?",
                (QueryStatusValues.DISABLED, tag.key, tag.key),
            )
        return
    if value is not None:
        _write_value(conn, tag, key, watermark, value)


def _write_value(
    conn: sqlite3.Connection,
    tag: QueryTagRecord,
    key: InstanceKey,
    watermark: int,
    value: IndexedValue,
) -> None:
    """Upsert ``value`` for the entity of ``key`` at the tag's level; the latest wins."""
    study, series, sop = value_entity(tag.level, key)
    conn.execute(
        "INSERT INTO eqt_value (tag_key, partition_key, study_uid, series_uid, sop_uid,"
        " watermark, text_value, num_value, norm_value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (tag_key, partition_key, study_uid, series_uid, sop_uid) DO UPDATE SET"
        " watermark = excluded.watermark, text_value = excluded.text_value,"
        " num_value = excluded.num_value, norm_value = excluded.norm_value"
        " WHERE excluded.watermark >= eqt_value.watermark",
        (
            tag.key,
            key.partition,
            study,
            series,
            sop,
            watermark,
            value.text,
            value.number,
            value.norm,
        ),
    )


class SqliteQueryTagStore(SqliteOperationStore):
    """``QueryTagStore`` on SQLite (the port: ``dicom_core.storage.ports.query_tags``); its
    reindex operations are ``SqliteOperationStore``'s."""

    # -- tags ----------------------------------------------------------------------------------

    async def list_tags(self) -> list[QueryTagRecord]:
        def read() -> list[QueryTagRecord]:
            rows = self._db.connection().execute(
                f"SELECT {_TAG_COLUMNS} FROM extended_query_tag ORDER BY tag_key"
            )
            return [_tag(r) for r in rows.fetchall()]

        return await self._db.run(read)

    async def get_tag(self, path: str) -> QueryTagRecord | None:
        def read() -> QueryTagRecord | None:
            row = (
                self._db.connection()
                .execute(f"SELECT {_TAG_COLUMNS} FROM extended_query_tag WHERE path = ?", (path,))
                .fetchone()
            )
            return None if row is None else _tag(row)

        return await self._db.run(read)

    async def add_tags(
        self,
        definitions: Sequence[QueryTagDefinition],
        operation_id: str,
        *,
        max_tags: int,
        start: OperationStart,
    ) -> OperationRecord:
        def write() -> OperationRecord:
            now = utc_timestamp()
            with self._db.transaction() as conn:
                paths = [d.path for d in definitions]
                marks = ", ".join("?" for _ in paths)
                existing = [
                    r[0]
                    for r in conn.execute(
                        f"SELECT path FROM extended_query_tag WHERE path IN ({marks})", paths
                    )
                ]
                if existing:
                    raise TagConflict(existing)
                (count,) = conn.execute("SELECT COUNT(*) FROM extended_query_tag").fetchone()
                if count + len(definitions) > max_tags:
                    raise TooManyTags(count)
                keys = []
                for d in definitions:
                    (key,) = conn.execute(
                        "INSERT INTO extended_query_tag (path, vr, private_creator, level, status,"
                        " query_status, error_count, operation_id, created_at)"
                        " VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?) RETURNING tag_key",
                        (
                            d.path,
                            d.vr,
                            d.private_creator,
                            d.level,
                            QueryTagStatusValues.ADDING,
                            QueryStatusValues.ENABLED,
                            operation_id,
                            now,
                        ),
                    ).fetchone()
                    keys.append(int(key))
                (high, total) = conn.execute(
                    "SELECT COALESCE(MAX(watermark), 0), COUNT(*) FROM instance WHERE status = 1"
                ).fetchone()
                checkpoint, first = start(tuple(keys), int(high), int(total))
                conn.execute(
                    "INSERT INTO operation (operation_id, type, status, percent_complete,"
                    " resources, checkpoint, created_at, updated_at)"
                    " VALUES (?, ?, ?, 0, ?, ?, ?, ?)",
                    (
                        operation_id,
                        OperationKind.REINDEX,
                        OperationStatusValues.NOT_STARTED,
                        orjson.dumps(paths).decode(),
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

    async def set_query_status(self, path: str, query_status: str) -> QueryTagRecord | None:
        def write() -> QueryTagRecord | None:
            with self._db.transaction() as conn:
                conn.execute(
                    "UPDATE extended_query_tag SET query_status = ? WHERE path = ?",
                    (query_status, path),
                )
                row = conn.execute(
                    f"SELECT {_TAG_COLUMNS} FROM extended_query_tag WHERE path = ?", (path,)
                ).fetchone()
            return None if row is None else _tag(row)

        return await self._db.run(write)

    async def delete_tag(self, path: str, *, batch_size: int = 5000) -> bool:
        """Mark the tag Deleting, remove its values in bounded transactions, then the tag."""

        def mark() -> int | None:
            with self._db.transaction() as conn:
                row = conn.execute(
                    "UPDATE extended_query_tag SET status = ? WHERE path = ? RETURNING tag_key",
                    (QueryTagStatusValues.DELETING, path),
                ).fetchone()
            return None if row is None else int(row[0])

        key = await self._db.run(mark)
        if key is None:
            return False

        def purge_some() -> int:
            with self._db.transaction() as conn:
                return conn.execute(
                    "DELETE FROM eqt_value WHERE rowid IN"
                    " (SELECT rowid FROM eqt_value WHERE tag_key = ? LIMIT ?)",
                    (key, batch_size),
                ).rowcount

        while await self._db.run(purge_some):
            pass

        def finish() -> None:
            with self._db.transaction() as conn:
                conn.execute("DELETE FROM eqt_error WHERE tag_key = ?", (key,))
                conn.execute("DELETE FROM extended_query_tag WHERE tag_key = ?", (key,))

        await self._db.run(finish)
        return True

    async def list_errors(self, tag_key: int, *, limit: int, offset: int) -> list[dict[str, str]]:
        def read() -> list[dict[str, str]]:
            rows = self._db.connection().execute(
                "SELECT e.study_uid, e.series_uid, e.sop_uid, e.created_at, e.message, p.name"
                " FROM eqt_error e"
                " LEFT JOIN data_partition p ON p.partition_key = e.partition_key"
                " WHERE e.tag_key = ? ORDER BY e.created_at, e.sop_uid LIMIT ? OFFSET ?",
                (tag_key, limit, offset),
            )
            return [
                {
                    "studyInstanceUid": r[0],
                    "seriesInstanceUid": r[1],
                    "sopInstanceUid": r[2],
                    "createdTime": r[3],
                    "errorMessage": r[4],
                    "partitionName": r[5] or DEFAULT_PARTITION_NAME,
                }
                for r in rows.fetchall()
            ]

        return await self._db.run(read)

    # -- the primitives of a reindex batch --------------------------------------------------------

    async def read_watermark_range(
        self, after: int, until: int, limit: int
    ) -> list[IndexedInstance]:
        def read() -> list[IndexedInstance]:
            rows = self._db.connection().execute(
                "SELECT watermark, partition_key, study_uid, series_uid, sop_uid, metadata"
                " FROM instance WHERE status = 1 AND watermark > ? AND watermark <= ?"
                " ORDER BY watermark LIMIT ?",
                (after, until, limit),
            )
            return [
                IndexedInstance(
                    InstanceKey(study, series, sop, partition=int(partition)),
                    int(watermark),
                    metadata or None,
                )
                for watermark, partition, study, series, sop, metadata in rows.fetchall()
            ]

        return await self._db.run(read)

    async def write_values(
        self, tags: Sequence[QueryTagRecord], instances: Sequence[IndexedInstance]
    ) -> None:
        def write() -> None:
            with self._db.transaction() as conn:
                # The caller listed the tags before this transaction; a delete may have marked
                # one since, and its purge would then run before these rows exist and leave
                # them behind for good. Only tags still standing are written.
                marks = ", ".join("?" for _ in tags)
                standing = {
                    int(row[0])
                    for row in conn.execute(
                        f"SELECT tag_key FROM extended_query_tag WHERE tag_key IN ({marks})"
                        " AND status != ?",
                        (*(tag.key for tag in tags), QueryTagStatusValues.DELETING),
                    )
                }
                live = [tag for tag in tags if tag.key in standing]
                for instance in instances:
                    if instance.metadata is None or not live:
                        continue
                    doc = orjson.loads(instance.metadata)
                    for tag in live:
                        _index_one(conn, tag, instance.key, instance.watermark, doc)

        await self._db.run(write)

    async def mark_tags_ready(self, tag_keys: Sequence[int]) -> None:
        def write() -> None:
            marks = ", ".join("?" for _ in tag_keys)
            with self._db.transaction() as conn:
                conn.execute(
                    "UPDATE extended_query_tag SET status = ?, operation_id = NULL"
                    f" WHERE tag_key IN ({marks}) AND status = ?",
                    (QueryTagStatusValues.READY, *tag_keys, QueryTagStatusValues.ADDING),
                )

        await self._db.run(write)

    # -- store time ----------------------------------------------------------------------------

    async def index_instance(self, key: InstanceKey, watermark: int, metadata_json: bytes) -> None:
        """Index a newly stored instance for every tag being added or ready."""

        def write() -> None:
            with self._db.transaction() as conn:
                self.index_in_transaction(conn, key, watermark, metadata_json)

        await self._db.run(write)

    def index_in_transaction(
        self, conn: sqlite3.Connection, key: InstanceKey, watermark: int, metadata_json: bytes
    ) -> None:
        """``index_instance`` inside the caller's write transaction (the local store's).

        Indexing in the instance's own commit means no reader ever sees it stored but not yet
        searchable by a ready tag.
        """
        tags = [
            _tag(r)
            for r in conn.execute(
                f"SELECT {_TAG_COLUMNS} FROM extended_query_tag WHERE status != ?",
                (QueryTagStatusValues.DELETING,),
            ).fetchall()
        ]
        if not tags:
            return
        doc = orjson.loads(metadata_json)
        for tag in tags:
            _index_one(conn, tag, key, watermark, doc, record_errors=False)

    async def refresh_after_delete(self, study_uid: str, *, partition: int) -> None:
        """One transaction: the stale study- and series-level values (their writer is no
        longer a stored instance) are dropped and written again from the newest remaining
        instance that has a value, reading the stored DICOM JSON newest first and stopping
        once every stale value is found (usually at the first instance)."""

        def write() -> None:
            with self._db.transaction() as conn:
                _refresh_study_values(conn, study_uid, partition)

        await self._db.run(write)


class SqliteExternalMetadataStore:
    """``ExternalMetadataStore`` on SQLite: ``external_metadata_tag`` fixes each tag's VR."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def tag_vrs(self, tags: Sequence[str]) -> dict[str, str]:
        def read() -> dict[str, str]:
            marks = ", ".join("?" for _ in tags)
            rows = self._db.connection().execute(
                f"SELECT tag, vr FROM external_metadata_tag WHERE tag IN ({marks})", list(tags)
            )
            return {str(t): str(v) for t, v in rows.fetchall()}

        return await self._db.run(read)

    async def known_tags(self) -> dict[str, str]:
        def read() -> dict[str, str]:
            rows = self._db.connection().execute("SELECT tag, vr FROM external_metadata_tag")
            return {str(t): str(v) for t, v in rows.fetchall()}

        return await self._db.run(read)

    async def save(
        self, study_uids: Sequence[str], values: Sequence[ExternalValue], *, partition: int
    ) -> None:
        def write() -> None:
            with self._db.transaction() as conn:
                for value in values:
                    conn.execute(
                        "INSERT OR IGNORE INTO external_metadata_tag (tag, vr) VALUES (?, ?)",
                        (value.tag, value.vr),
                    )
                    (vr,) = conn.execute(
                        "SELECT vr FROM external_metadata_tag WHERE tag = ?", (value.tag,)
                    ).fetchone()
                    if vr != value.vr:  # another request fixed it first
                        raise ExternalVrConflict(value.tag, str(vr))
                    for study in study_uids:
                        conn.execute(
                            "INSERT INTO external_metadata (partition_key, study_uid, tag, vr,"
                            " text_value, num_value, norm_value) VALUES (?, ?, ?, ?, ?, ?, ?)"
                            " ON CONFLICT (partition_key, study_uid, tag) DO UPDATE"
                            " SET vr = excluded.vr, text_value = excluded.text_value,"
                            " num_value = excluded.num_value, norm_value = excluded.norm_value",
                            (
                                partition,
                                study,
                                value.tag,
                                value.vr,
                                value.value,
                                value.indexed.number,
                                value.indexed.norm,
                            ),
                        )

        await self._db.run(write)

    async def study_values(
        self, study_uids: Sequence[str], *, partition: int
    ) -> dict[str, list[tuple[str, str, str]]]:
        def read() -> dict[str, list[tuple[str, str, str]]]:
            marks = ", ".join("?" for _ in study_uids)
            rows = self._db.connection().execute(
                "SELECT study_uid, tag, vr, text_value FROM external_metadata"
                f" WHERE partition_key = ? AND study_uid IN ({marks}) ORDER BY tag",
                [partition, *study_uids],
            )
            out: dict[str, list[tuple[str, str, str]]] = {}
            for study, tag, vr, text in rows.fetchall():
                out.setdefault(str(study), []).append((str(tag), str(vr), str(text)))
            return out

        return await self._db.run(read)
