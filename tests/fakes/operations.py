"""``FakeOperationStore``: operation records and their holds in memory, messages to a queue."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from dicom_core.domain.operations import OperationKind, OperationStatusValues
from dicom_core.domain.timestamps import utc_timestamp
from dicom_core.storage.ports import (
    Continuation,
    JobQueue,
    OperationConflict,
    OperationProgress,
    OperationRecord,
)


class FakeOperationStore:
    """The ``OperationStore`` port: a record and its message move together, as in SQLite."""

    def __init__(self, queue: JobQueue) -> None:
        self.operations: dict[str, OperationRecord] = {}
        self.holds: dict[str, str] = {}
        self._queue = queue

    async def start_operation(
        self,
        operation_id: str,
        kind: OperationKind,
        *,
        checkpoint: dict[str, Any],
        first: Continuation,
        holds: Sequence[str] = (),
    ) -> OperationRecord:
        for resource in holds:
            holder = self.operations.get(self.holds.get(resource, ""))
            if holder is not None and not holder.done:
                raise OperationConflict(resource, holder.operation_id)
        now = utc_timestamp()
        record = OperationRecord(
            operation_id=operation_id,
            type=kind.value,
            status=OperationStatusValues.NOT_STARTED,
            percent_complete=0,
            resources=(),
            checkpoint=checkpoint,
            created_at=now,
            updated_at=now,
        )
        self.operations[operation_id] = record
        self.holds.update(dict.fromkeys(holds, operation_id))
        await self._queue.send(first.queue, first.body)
        return record

    async def get_operation(self, operation_id: str) -> OperationRecord | None:
        return self.operations.get(operation_id)

    def _release(self, operation_id: str) -> None:
        for resource in [r for r, held in self.holds.items() if held == operation_id]:
            del self.holds[resource]

    async def fail_operation(self, operation_id: str) -> None:
        record = self.operations.get(operation_id)
        if record is not None and not record.done:
            self.operations[operation_id] = dataclasses.replace(
                record, status=OperationStatusValues.FAILED, updated_at=utc_timestamp()
            )
            self._release(operation_id)

    async def compare_and_set_checkpoint(
        self,
        operation_id: str,
        expected: dict[str, Any],
        progress: OperationProgress,
        continuation: Continuation | None,
    ) -> bool:
        record = self.operations.get(operation_id)
        if record is None or record.done or record.checkpoint != expected:
            return False
        self.operations[operation_id] = dataclasses.replace(
            record,
            status=progress.status,
            percent_complete=progress.percent_complete,
            checkpoint=progress.checkpoint,
            updated_at=utc_timestamp(),
        )
        if self.operations[operation_id].done:
            self._release(operation_id)
        if continuation is not None:
            await self._queue.send(continuation.queue, continuation.body)
        return True

    async def resend_continuation(
        self, operation_id: str, stale: dict[str, Any], continuation: Continuation
    ) -> None:
        """Nothing to make up for: every move sent its message."""
