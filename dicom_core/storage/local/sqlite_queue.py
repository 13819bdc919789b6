"""The local job queue adapter: ``JobQueue`` on a SQLite table.

Durable (a crash loses no job) and at-least-once, like Storage queues: a received message is
leased until ``visible_at``; if its handler neither completes nor abandons it (the process
died), it becomes visible again and is delivered once more with a higher dequeue count.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson

from dicom_core.domain.timestamps import utc_timestamp
from dicom_core.storage.local.sqlite_db import SqliteDatabase
from dicom_core.storage.ports import POISON_SUFFIX, LeaseLost, QueueMessage


def _parse_time(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def insert_job(
    conn: sqlite3.Connection, queue: str, body: dict[str, Any], *, delay_seconds: float = 0
) -> None:
    """Add a job to ``queue`` inside the caller's write transaction.

    ``send`` uses it, and so do stores that enqueue a job in the same transaction as the
    write it follows (an outbox: both happen or neither does).
    """
    conn.execute(
        "INSERT INTO job (queue, body, visible_at, created_at) VALUES (?, ?, ?, ?)",
        (queue, orjson.dumps(body).decode(), time.time() + delay_seconds, utc_timestamp("seconds")),
    )


class SqliteJobQueue:
    def __init__(self, db: SqliteDatabase, *, owns_database: bool = False) -> None:
        """``owns_database``: ``close`` closes ``db`` too (a queue opened on its own, as the
        host's queue pump opens it; the app's queue shares the index's database)."""
        self._db = db
        self._owns = owns_database

    async def send(self, queue: str, body: dict[str, Any], *, delay_seconds: float = 0) -> None:
        def insert() -> None:
            with self._db.transaction() as conn:
                insert_job(conn, queue, body, delay_seconds=delay_seconds)

        await self._db.run(insert)

    async def receive(
        self, queue: str, *, max_messages: int = 1, visibility_timeout: float = 30
    ) -> Sequence[QueueMessage]:
        def claim() -> list[QueueMessage]:
            now = time.time()
            receipt = uuid.uuid4().hex
            # Idle pollers must not take the write lock every poll: stores commit through
            # the same database file. A plain read first; the claim re-checks under the lock.
            waiting = (
                self._db.connection()
                .execute(
                    "SELECT 1 FROM job WHERE queue = ? AND visible_at <= ? LIMIT 1",
                    (queue, now),
                )
                .fetchone()
            )
            if waiting is None:
                return []
            with self._db.transaction() as conn:
                rows = conn.execute(
                    "SELECT id FROM job WHERE queue = ? AND visible_at <= ? ORDER BY id LIMIT ?",
                    (queue, now, max_messages),
                ).fetchall()
                messages = []
                for (job_id,) in rows:
                    body, count, created = conn.execute(
                        "UPDATE job SET visible_at = ?, dequeue_count = dequeue_count + 1,"
                        " receipt = ? WHERE id = ? RETURNING body, dequeue_count, created_at",
                        (now + visibility_timeout, receipt, job_id),
                    ).fetchone()
                    messages.append(
                        QueueMessage(
                            id=str(job_id),
                            queue=queue,
                            body=orjson.loads(body),
                            dequeue_count=int(count),
                            receipt=receipt,
                            inserted_at=_parse_time(created),
                            next_visible_at=datetime.fromtimestamp(now + visibility_timeout, UTC),
                        )
                    )
            return messages

        return await self._db.run(claim)

    async def complete(self, message: QueueMessage) -> None:
        def delete() -> None:
            with self._db.transaction() as conn:
                conn.execute(
                    "DELETE FROM job WHERE id = ? AND receipt = ?",
                    (int(message.id), message.receipt),
                )

        await self._db.run(delete)

    async def abandon(self, message: QueueMessage) -> None:
        def release() -> None:
            with self._db.transaction() as conn:
                conn.execute(
                    "UPDATE job SET visible_at = ? WHERE id = ? AND receipt = ?",
                    (time.time(), int(message.id), message.receipt),
                )

        await self._db.run(release)

    async def extend_lease(self, message: QueueMessage, visibility_timeout: float) -> QueueMessage:
        def extend() -> QueueMessage:
            until = time.time() + visibility_timeout
            with self._db.transaction() as conn:
                updated = conn.execute(
                    "UPDATE job SET visible_at = ? WHERE id = ? AND receipt = ?",
                    (until, int(message.id), message.receipt),
                ).rowcount
            if not updated:
                raise LeaseLost(message.id)
            return replace(message, next_visible_at=datetime.fromtimestamp(until, UTC))

        return await self._db.run(extend)

    async def dead_letter(self, message: QueueMessage, reason: str) -> None:
        def poison() -> None:
            with self._db.transaction() as conn:
                # The host's poison path: the message moves to "<queue>-poison", where an
                # operator finds it (with the reason here) and no trigger polls it.
                # Like a message sent anew there: visible now, never yet dequeued.
                conn.execute(
                    "UPDATE job SET queue = ?, poison_reason = ?, visible_at = ?,"
                    " dequeue_count = 0, receipt = NULL WHERE id = ? AND receipt = ?",
                    (
                        message.queue + POISON_SUFFIX,
                        reason or "failed",
                        time.time(),
                        int(message.id),
                        message.receipt,
                    ),
                )

        await self._db.run(poison)

    async def close(self) -> None:
        if self._owns:
            self._db.close()
