"""Reindex: the first long-running operation, filling new extended query tags.

Adding tags plans the operation (``plan_reindex``): its checkpoint covers every instance stored
so far, and its first ``reindex-batches`` message goes out with the tags, all or nothing. Each
message then drives one ``ReindexJob.batch``: read a bounded watermark range, write the tags'
values and errors, and compare-and-set the checkpoint together with the continuation message
(dicom-server's ContinueAsNew done by hand). A crash or a redelivery therefore repeats at most
one batch, and repeating one does no harm: values are upserts keyed by entity, and a message
whose checkpoint the operation has left is stale and does nothing.

The adapters give only the primitives (``QueryTagStore``); this module is the one home of the
algorithm, on both backends.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from dicom_core.domain.extended_query_tags import QueryTagStatusValues
from dicom_core.domain.operations import OperationKind, OperationStatusValues
from dicom_core.jobs.checkpoint import WatermarkCheckpoint
from dicom_core.jobs.messages import MalformedMessage, OperationMessage
from dicom_core.jobs.operations import CheckpointContention, StepOutcome, running_percent
from dicom_core.storage.ports import (
    Continuation,
    OperationProgress,
    OperationStart,
    ReindexPrimitives,
)

log = logging.getLogger(__name__)

REINDEX_QUEUE = "reindex-batches"
DEFAULT_BATCH_SIZE = 100


@dataclass(frozen=True, slots=True)
class ReindexCheckpoint:
    """Where a reindex stands: which tags it fills, and how far through the instances."""

    tag_keys: tuple[int, ...]
    position: WatermarkCheckpoint

    def to_json(self) -> dict[str, Any]:
        return {"tagKeys": list(self.tag_keys), **self.position.to_json()}

    @classmethod
    def from_json(cls, body: Any) -> ReindexCheckpoint:
        if not isinstance(body, dict):
            raise ValueError(f"a reindex checkpoint must be an object, not {body!r}")
        return cls(
            tag_keys=tuple(int(k) for k in body["tagKeys"]),
            position=WatermarkCheckpoint.from_json(body),
        )


def reindex_message(
    operation_id: str, checkpoint: ReindexCheckpoint, *, queue: str = REINDEX_QUEUE
) -> Continuation:
    """The message that advances ``operation_id`` from ``checkpoint``."""
    message = OperationMessage(OperationKind.REINDEX, operation_id, checkpoint.to_json())
    return Continuation(queue, message.to_json())


def plan_reindex(operation_id: str, *, queue: str = REINDEX_QUEUE) -> OperationStart:
    """How a new reindex starts: from watermark 0 up to the highest one the add saw."""

    def start(
        tag_keys: tuple[int, ...], until: int, total: int
    ) -> tuple[dict[str, Any], Continuation]:
        checkpoint = ReindexCheckpoint(tag_keys, WatermarkCheckpoint.start(until, total))
        return checkpoint.to_json(), reindex_message(operation_id, checkpoint, queue=queue)

    return start


class ReindexJob:
    """The ``reindex-batches`` queue's work: one bounded batch per message."""

    def __init__(
        self,
        store: ReindexPrimitives,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        queue: str = REINDEX_QUEUE,
    ) -> None:
        self._store = store
        self._batch_size = batch_size
        self._queue = queue

    async def handle_message(self, body: Any, *, final_attempt: bool = False) -> StepOutcome:
        """One delivery. Raises to be retried; on the final attempt (``RetryRule``) the
        operation is marked Failed first, since the message then goes to the poison queue."""
        message = OperationMessage.from_json(body)
        if message.kind is not OperationKind.REINDEX:
            raise MalformedMessage(f"not a reindex message: {body!r}")
        try:
            checkpoint = ReindexCheckpoint.from_json(message.checkpoint)
            outcome = await self.batch(message.operation_id, checkpoint)
        except Exception:
            if final_attempt:
                log.error("reindex operation %s failed for good", message.operation_id)
                await self._store.fail_operation(message.operation_id)
            raise
        if outcome is StepOutcome.STALE:
            log.info("reindex message for %s is stale (already handled)", message.operation_id)
        return outcome

    async def batch(self, operation_id: str, checkpoint: ReindexCheckpoint) -> StepOutcome:
        """Index the batch after ``checkpoint`` and move the operation past it, unless the
        operation no longer stands there (then only repair what an interrupted step left)."""
        store = self._store
        expected = checkpoint.to_json()
        operation = await store.get_operation(operation_id)
        if operation is None or operation.done or operation.checkpoint != expected:
            return await self._stale(operation_id, checkpoint)
        wanted = set(checkpoint.tag_keys)
        tags = [
            t
            for t in await store.list_tags()
            if t.key in wanted and t.status != QueryTagStatusValues.DELETING
        ]
        position = checkpoint.position
        rows = await store.read_watermark_range(position.after, position.until, self._batch_size)
        if tags:
            await store.write_values(tags, [r for r in rows if r.metadata])
        finished = len(rows) < self._batch_size or not tags
        following = ReindexCheckpoint(
            checkpoint.tag_keys,
            position.advanced(rows[-1].watermark if rows else None, len(rows), finished=finished),
        )
        continuation: Continuation | None
        if finished:
            # Tags first: a crash after this and before the CAS repeats the batch harmlessly.
            await store.mark_tags_ready(checkpoint.tag_keys)
            progress = OperationProgress(
                OperationStatusValues.COMPLETED.value, 100, following.to_json()
            )
            continuation = None
        else:
            percent = running_percent(following.position.done, position.total)
            progress = OperationProgress(
                OperationStatusValues.RUNNING.value, percent, following.to_json()
            )
            continuation = self._message(operation_id, following)
        if not await store.compare_and_set_checkpoint(
            operation_id, expected, progress, continuation
        ):
            # A duplicate of this message moved it first, or (a store retrying a write whose
            # answer was lost) this very step did: either way, settle as a stale message.
            return await self._stale(operation_id, checkpoint)
        return StepOutcome.COMPLETED if finished else StepOutcome.CONTINUED

    async def _stale(self, operation_id: str, checkpoint: ReindexCheckpoint) -> StepOutcome:
        """A message whose checkpoint the operation has left: index nothing, only repair what
        an interrupted step may have left undone."""
        store = self._store
        operation = await store.get_operation(operation_id)
        if operation is None:
            return StepOutcome.STALE
        expected = checkpoint.to_json()
        if operation.status == OperationStatusValues.COMPLETED:
            # A completed operation's tags are Ready, whatever stopped a step (idempotent).
            await store.mark_tags_ready(checkpoint.tag_keys)
        elif operation.done or operation.checkpoint is None:
            pass
        elif operation.checkpoint == expected:
            # Only after a failed move: something else wrote the record meanwhile. Completing
            # the message now would stall the operation, so have it delivered again.
            raise CheckpointContention(f"operation {operation_id} changed during its batch")
        else:
            # The move from this checkpoint happened; its own send may have failed.
            current = ReindexCheckpoint.from_json(operation.checkpoint)
            await store.resend_continuation(
                operation_id, expected, self._message(operation_id, current)
            )
        return StepOutcome.STALE

    def _message(self, operation_id: str, checkpoint: ReindexCheckpoint) -> Continuation:
        return reindex_message(operation_id, checkpoint, queue=self._queue)
