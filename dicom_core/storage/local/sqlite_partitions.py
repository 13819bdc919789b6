"""The local ``PartitionStore``: the ``data_partition`` table of the index database.

The schema seeds ``Microsoft.Default`` as key 1; AUTOINCREMENT gives new partitions 2, 3, ...
and never gives a key again, even one whose row a hand-made edit deleted. A get-or-add is one
write transaction (an insert that does nothing when the folded name is there, then a read), so
of two first stores naming one partition, both under the writers' lock, the second finds the
first's row: one key, whoever wins. A name already registered is answered by a plain read,
without taking the writers' lock.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from dicom_core.domain.partitions import Partition, name_key
from dicom_core.domain.timestamps import utc_timestamp
from dicom_core.storage.local.sqlite_db import SqliteDatabase

_COLUMNS = "partition_key, name, created_at"


def _partition(row: tuple[Any, ...]) -> Partition:
    key, name, created_at = row
    return Partition(key=int(key), name=str(name), created_at=str(created_at))


def _read(conn: sqlite3.Connection, name: str) -> Partition | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM data_partition WHERE name_key = ?", (name_key(name),)
    ).fetchone()
    return None if row is None else _partition(row)


class SqlitePartitionStore:
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def list_partitions(self) -> list[Partition]:
        def read() -> list[Partition]:
            rows = (
                self._db.connection()
                .execute(f"SELECT {_COLUMNS} FROM data_partition ORDER BY partition_key")
                .fetchall()
            )
            return [_partition(row) for row in rows]

        return await self._db.run(read)

    async def get_partition(self, name: str) -> Partition | None:
        return await self._db.run(lambda: _read(self._db.connection(), name))

    async def get_or_add_partition(self, name: str) -> Partition:
        def write() -> Partition:
            # Most calls name a partition that exists: a read, without the writers' lock.
            existing = _read(self._db.connection(), name)
            if existing is not None:
                return existing
            with self._db.transaction() as conn:
                conn.execute(
                    "INSERT INTO data_partition (name, name_key, created_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (name_key) DO NOTHING",
                    (name, name_key(name), utc_timestamp()),
                )
                found = _read(conn, name)
            assert found is not None  # inserted or already there, in this transaction
            return found

        return await self._db.run(write)
