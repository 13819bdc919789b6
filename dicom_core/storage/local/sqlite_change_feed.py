"""The local ``ChangeFeedStore``: reads the ``change_feed`` table the index writes.

Entries are appended by ``SqliteIndexStore`` in the transaction of each change (see the table's
comment in ``schema.py`` for why their sequences are gap-free in commit order); this module
only reads them, joining the instance's current version for its metadata.

A durable database syncs its WAL just after each commit, outside the writers' lock, so a
reader can see a commit in the moment before it is on disk. A power cut then would lose it,
and its sequence would be given to another change: a consumer that read it would skip that
one. So a read that returns entries syncs the WAL before answering (one ``fdatasync``, the
same a store waits for): what the feed returns is durable.
"""

from __future__ import annotations

from typing import Any

from dicom_core.domain.change_feed import ChangeAction, ChangeFeedEntry
from dicom_core.domain.model import InstanceKey
from dicom_core.storage.local.sqlite_db import SqliteDatabase
from dicom_core.storage.ports.change_feed import ChangeQuery

_COLUMNS = (
    "c.sequence, c.timestamp, c.action, c.partition_key, c.study_uid, c.series_uid, c.sop_uid,"
    " c.watermark, c.current_watermark"
)
# The current version's DICOM JSON, when the reader asks for it (NULL once deleted).
_WITH_METADATA = (
    f"SELECT {_COLUMNS}, i.metadata FROM change_feed c"
    " LEFT JOIN instance i ON i.watermark = c.current_watermark AND i.status = 1"
)
_WITHOUT_METADATA = f"SELECT {_COLUMNS}, NULL FROM change_feed c"


def _entry(row: tuple[Any, ...]) -> ChangeFeedEntry:
    sequence, timestamp, action, partition, study, series, sop, watermark, current, metadata = row
    return ChangeFeedEntry(
        sequence=int(sequence),
        timestamp=str(timestamp),
        action=ChangeAction(action),
        key=InstanceKey(str(study), str(series), str(sop), partition=int(partition)),
        watermark=int(watermark),
        current_watermark=None if current is None else int(current),
        metadata=None if metadata is None else bytes(metadata),
    )


class SqliteChangeFeedStore:
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def read_changes(self, query: ChangeQuery) -> list[ChangeFeedEntry]:
        clauses = ["c.sequence > ?"]
        params: list[int | str] = [query.after_sequence]
        if query.start_time is not None:
            clauses.append("c.timestamp >= ?")
            params.append(query.start_time)
        if query.end_time is not None:
            clauses.append("c.timestamp < ?")
            params.append(query.end_time)
        if query.partition is not None:
            clauses.append("c.partition_key = ?")
            params.append(query.partition)
        select = _WITH_METADATA if query.include_metadata else _WITHOUT_METADATA
        sql = f"{select} WHERE {' AND '.join(clauses)} ORDER BY c.sequence LIMIT ? OFFSET ?"
        params.extend((query.limit, query.skip))

        def read() -> list[ChangeFeedEntry]:
            entries = [_entry(row) for row in self._db.connection().execute(sql, params)]
            if entries:
                self._db.sync_wal()
            return entries

        return await self._db.run(read)

    async def latest_change(
        self, *, include_metadata: bool = False, partition: int | None = None
    ) -> ChangeFeedEntry | None:
        select = _WITH_METADATA if include_metadata else _WITHOUT_METADATA
        where, params = (
            ("", ()) if partition is None else (" WHERE c.partition_key = ?", (partition,))
        )
        sql = f"{select}{where} ORDER BY c.sequence DESC LIMIT 1"

        def read() -> ChangeFeedEntry | None:
            row = self._db.connection().execute(sql, params).fetchone()
            if row is None:
                return None
            self._db.sync_wal()
            return _entry(row)

        return await self._db.run(read)
