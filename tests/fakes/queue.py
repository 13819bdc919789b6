"""``FakeJobQueue``: each queue a list of messages with a visibility time."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from dicom_core.storage.ports import POISON_SUFFIX, LeaseLost, QueueMessage


@dataclass(slots=True)
class _Waiting:
    id: str
    body: dict[str, Any]
    inserted_at: datetime
    visible_at: float
    dequeue_count: int = 0
    receipt: str = ""


class FakeJobQueue:
    """The ``JobQueue`` port: at-least-once delivery with leases, in memory.

    ``sent`` records every send in order, so a test can assert on what a service enqueued;
    ``fail_sends`` makes sends raise (a queue outage).
    """

    def __init__(self) -> None:
        self.queues: dict[str, list[_Waiting]] = {}
        self.sent: list[tuple[str, dict[str, Any], float]] = []
        self.fail_sends = False
        self._ids = itertools.count(1)

    def bodies(self, queue: str) -> list[dict[str, Any]]:
        """What waits in ``queue``, visible or leased, oldest first."""
        return [waiting.body for waiting in self.queues.get(queue, [])]

    async def send(self, queue: str, body: dict[str, Any], *, delay_seconds: float = 0) -> None:
        if self.fail_sends:
            raise ConnectionError(f"sending to {queue}: the queue service is unreachable")
        self.sent.append((queue, body, delay_seconds))
        waiting = _Waiting(
            id=str(next(self._ids)),
            body=dict(body),
            inserted_at=datetime.now(UTC),
            visible_at=time.monotonic() + delay_seconds,
        )
        self.queues.setdefault(queue, []).append(waiting)

    async def receive(
        self, queue: str, *, max_messages: int = 1, visibility_timeout: float = 30
    ) -> Sequence[QueueMessage]:
        now = time.monotonic()
        received: list[QueueMessage] = []
        for waiting in self.queues.get(queue, []):
            if len(received) == max_messages:
                break
            if waiting.visible_at > now:
                continue
            waiting.visible_at = now + visibility_timeout
            waiting.dequeue_count += 1
            waiting.receipt = str(next(self._ids))
            received.append(
                QueueMessage(
                    id=waiting.id,
                    queue=queue,
                    body=dict(waiting.body),
                    dequeue_count=waiting.dequeue_count,
                    receipt=waiting.receipt,
                    inserted_at=waiting.inserted_at,
                    next_visible_at=datetime.now(UTC) + timedelta(seconds=visibility_timeout),
                )
            )
        return received

    def _take(self, message: QueueMessage) -> _Waiting | None:
        """Remove the message if ``message`` still holds its lease."""
        waiting = self.queues.get(message.queue, [])
        for n, candidate in enumerate(waiting):
            if candidate.id == message.id and candidate.receipt == message.receipt:
                return waiting.pop(n)
        return None

    async def complete(self, message: QueueMessage) -> None:
        self._take(message)

    async def abandon(self, message: QueueMessage) -> None:
        for waiting in self.queues.get(message.queue, []):
            if waiting.id == message.id and waiting.receipt == message.receipt:
                waiting.visible_at = time.monotonic()

    async def extend_lease(self, message: QueueMessage, visibility_timeout: float) -> QueueMessage:
        """Like Storage queues: a new receipt each time; the old one no longer settles it."""
        for waiting in self.queues.get(message.queue, []):
            if waiting.id == message.id and waiting.receipt == message.receipt:
                waiting.visible_at = time.monotonic() + visibility_timeout
                waiting.receipt = str(next(self._ids))
                return replace(
                    message,
                    receipt=waiting.receipt,
                    next_visible_at=datetime.now(UTC) + timedelta(seconds=visibility_timeout),
                )
        raise LeaseLost(message.id)

    async def dead_letter(self, message: QueueMessage, reason: str) -> None:
        if self._take(message) is not None:
            parked = replace(message, queue=message.queue + POISON_SUFFIX)
            await self.send(parked.queue, parked.body)

    async def close(self) -> None:
        return None
