"""The job queue port: durable queues with at-least-once delivery (queue-triggered functions)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class QueueMessage:
    """A job message as received from a queue, with what is needed to settle it."""

    id: str
    queue: str
    body: dict[str, Any]
    dequeue_count: int
    receipt: str
    # What the queue trigger reports beside the body (its InsertionTime, ExpirationTime and
    # NextVisibleTime metadata), where the queue knows it.
    inserted_at: datetime | None = None
    expires_at: datetime | None = None
    next_visible_at: datetime | None = None


class LeaseLost(Exception):
    """The message's lease ended before it could be extended (it may be running again)."""


#: Where ``JobQueue.dead_letter`` moves a message of queue ``q``: ``q + POISON_SUFFIX``, the
#: Functions host's own poison queue name.
POISON_SUFFIX = "-poison"


class JobQueue(Protocol):
    """Durable job queues driving the queue-triggered functions (at-least-once delivery)."""

    async def send(self, queue: str, body: dict[str, Any], *, delay_seconds: float = 0) -> None: ...

    async def receive(
        self, queue: str, *, max_messages: int = 1, visibility_timeout: float = 30
    ) -> Sequence[QueueMessage]: ...

    async def complete(self, message: QueueMessage) -> None: ...

    async def abandon(self, message: QueueMessage) -> None:
        """Make a message visible again at once (the handler failed)."""
        ...

    async def extend_lease(self, message: QueueMessage, visibility_timeout: float) -> QueueMessage:
        """Keep a message invisible for ``visibility_timeout`` more seconds while its handler
        runs, as the Functions host does for a running queue function. Returns the message
        to settle it with from now on (Storage queues hand out a new pop receipt); raises
        ``LeaseLost`` when the message was received again or settled meanwhile."""
        ...

    async def dead_letter(self, message: QueueMessage, reason: str) -> None:
        """Move a message that keeps failing to the queue's poison path."""
        ...

    async def close(self) -> None: ...
