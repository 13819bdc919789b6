"""The azure job queue adapter: ``JobQueue`` on Azure Storage queues.

Messages are JSON text, base64-encoded: the encoding the Functions queue trigger expects by
default, so a message sent here is what ``function_app``'s queue-triggered functions receive
in Azure, and what the local host's poller hands them on this machine.

- Delivery is at least once: a received message is invisible for ``visibility_timeout``;
  ``complete`` deletes it, ``abandon`` makes it visible again at once, and a handler that dies
  lets the lease run out (then it comes back with a higher dequeue count).
- The poison path is the Functions host's: ``dead_letter`` moves the message, unchanged, to
  ``{queue}-poison`` (the host does the same after ``maxDequeueCount`` failures), where an
  operator can inspect it or move it back.
- A missing queue is created when the adapter may create resources.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import orjson
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy

from dicom_core.settings import AzureSettings
from dicom_core.storage.azure.clients import StorageClients
from dicom_core.storage.azure.retry import RetryPolicy, is_transient, unexpected
from dicom_core.storage.ports import (
    POISON_SUFFIX,
    LeaseLost,
    QueueMessage,
    StorageUnavailable,
)

log = logging.getLogger(__name__)

# Storage queues: a message may be invisible for at most 7 days.
_MAX_VISIBILITY = 7 * 24 * 3600


def decode_body(text: str) -> dict[str, Any]:
    """A message body as the handlers get it; text that is not a JSON object is wrapped."""
    try:
        body = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {"raw": text}
    return body if isinstance(body, dict) else {"raw": body}


def _lease_gone(exc: HttpResponseError) -> bool:
    """The message was settled (404 MessageNotFound) or received again since this lease
    (400 PopReceiptMismatch): the receipt no longer holds it."""
    code = getattr(exc, "error_code", None)
    return isinstance(exc, ResourceNotFoundError) or code == "PopReceiptMismatch"


class StorageJobQueue:
    def __init__(
        self, clients: StorageClients, settings: AzureSettings, *, create_resources: bool = True
    ) -> None:
        self._clients = clients
        self._create = create_resources
        self._retry = RetryPolicy(settings.retry_seconds)
        self._ready: set[str] = set()

    def _queue(self, name: str) -> Any:
        return self._clients.queue_service().get_queue_client(
            name,
            message_encode_policy=TextBase64EncodePolicy(),
            message_decode_policy=TextBase64DecodePolicy(),
        )

    async def _ensure(self, name: str) -> None:
        if name in self._ready or not self._create:
            return
        with contextlib.suppress(ResourceExistsError):
            await self._queue(name).create_queue()
        self._ready.add(name)

    async def _call(self, queue: str, what: str, operation: Any) -> Any:
        """Run ``operation`` with retries; a vanished queue is recreated and tried again."""
        for attempt in range(2):
            try:
                await self._retry.run(lambda: self._ensure(queue), f"Storage queue {queue}")
                return await self._retry.run(operation, f"Storage queue {queue} ({what})")
            except StorageUnavailable:
                raise
            except ResourceNotFoundError as exc:
                if getattr(exc, "error_code", None) == "QueueNotFound" and attempt == 0:
                    self._ready.discard(queue)
                    if self._create:
                        continue
                raise unexpected(f"Storage queue {queue}", exc) from exc
            except Exception as exc:
                if type(exc).__module__.startswith(("azure.", "aiohttp")) or is_transient(exc):
                    raise unexpected(f"Storage queue {queue}", exc) from exc
                raise
        raise StorageUnavailable(f"Storage queue {queue}")  # pragma: no cover

    async def send(self, queue: str, body: dict[str, Any], *, delay_seconds: float = 0) -> None:
        text = orjson.dumps(body).decode()
        delay = min(math.ceil(delay_seconds), _MAX_VISIBILITY) if delay_seconds > 0 else None

        async def send() -> None:
            await self._queue(queue).send_message(text, visibility_timeout=delay)

        await self._call(queue, "send", send)

    async def receive(
        self, queue: str, *, max_messages: int = 1, visibility_timeout: float = 30
    ) -> Sequence[QueueMessage]:
        lease = max(1, min(math.ceil(visibility_timeout), _MAX_VISIBILITY))

        async def receive() -> list[QueueMessage]:
            received = self._queue(queue).receive_messages(
                max_messages=max(1, min(max_messages, 32)), visibility_timeout=lease
            )
            messages = []
            async for message in received:
                messages.append(
                    QueueMessage(
                        id=str(message.id),
                        queue=queue,
                        body=decode_body(str(message.content)),
                        dequeue_count=int(message.dequeue_count or 1),
                        receipt=str(message.pop_receipt),
                        inserted_at=message.inserted_on,
                        expires_at=message.expires_on,
                        next_visible_at=message.next_visible_on,
                    )
                )
                if len(messages) >= max_messages:
                    break
            return messages

        result: list[QueueMessage] = await self._call(queue, "receive", receive)
        return result

    async def complete(self, message: QueueMessage) -> None:
        async def delete() -> None:
            with contextlib.suppress(ResourceNotFoundError):  # already gone: done anyway
                await self._queue(message.queue).delete_message(message.id, message.receipt)

        await self._call(message.queue, "complete", delete)

    async def abandon(self, message: QueueMessage) -> None:
        async def release() -> None:
            try:
                await self._queue(message.queue).update_message(
                    message.id, message.receipt, visibility_timeout=0
                )
            except HttpResponseError as exc:
                if not _lease_gone(exc):  # the lease was lost: the message returns anyway
                    raise

        await self._call(message.queue, "abandon", release)

    async def extend_lease(self, message: QueueMessage, visibility_timeout: float) -> QueueMessage:
        async def extend() -> QueueMessage:
            try:
                updated = await self._queue(message.queue).update_message(
                    message.id, message.receipt, visibility_timeout=math.ceil(visibility_timeout)
                )
            except HttpResponseError as exc:
                if not _lease_gone(exc):
                    raise
                raise LeaseLost(message.id) from None
            return replace(
                message,
                receipt=str(updated.pop_receipt),
                next_visible_at=updated.next_visible_on,
            )

        result: QueueMessage = await self._call(message.queue, "extend", extend)
        return result

    async def dead_letter(self, message: QueueMessage, reason: str) -> None:
        poison = message.queue + POISON_SUFFIX
        text = orjson.dumps(message.body).decode()
        log.warning("moving message %s of %s to %s: %s", message.id, message.queue, poison, reason)

        async def park() -> None:
            await self._queue(poison).send_message(text)

        await self._call(poison, "dead-letter", park)
        await self.complete(message)

    async def close(self) -> None:
        await self._clients.close()
