"""The local ``CursorStore``: the ``cursor`` table of the index database.

The compare-and-set is one write transaction: the row is read and moved under the writers'
lock, so of two racing moves from one position only the first finds it there.
"""

from __future__ import annotations

from dicom_core.domain.timestamps import utc_timestamp
from dicom_core.storage.local.sqlite_db import SqliteDatabase


class SqliteCursorStore:
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def read_cursor(self, name: str) -> int:
        def read() -> int:
            row = (
                self._db.connection()
                .execute("SELECT position FROM cursor WHERE name = ?", (name,))
                .fetchone()
            )
            return 0 if row is None else int(row[0])

        return await self._db.run(read)

    async def advance_cursor(self, name: str, expected: int, position: int) -> bool:
        if position <= expected:
            raise ValueError(f"a cursor moves forward only ({expected} -> {position})")

        def write() -> bool:
            with self._db.transaction() as conn:
                row = conn.execute("SELECT position FROM cursor WHERE name = ?", (name,)).fetchone()
                if (0 if row is None else int(row[0])) != expected:
                    return False
                conn.execute(
                    "INSERT INTO cursor (name, position, updated_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (name) DO UPDATE SET position = excluded.position,"
                    " updated_at = excluded.updated_at",
                    (name, position, utc_timestamp()),
                )
            return True

        return await self._db.run(write)
