"""The operation port: long-running operations (reindex, bulk update), their checkpoints,
the messages that drive them, and the resources each holds while it runs.

An operation's record is created together with its first queue message, and every batch step
moves its checkpoint with a compare-and-set that sends the next message, so a crash or a
redelivery repeats at most one step (``dicom_core.jobs`` owns the algorithms; adapters treat
checkpoints as opaque JSON). An operation may hold resources (a bulk update, its studies): no
other unfinished operation can start on them, and they are freed when it finishes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from dicom_core.domain.operations import FINISHED_STATUSES, OperationKind


class OperationConflict(Exception):
    """A resource the new operation would hold is held by an unfinished one (409)."""

    def __init__(self, resource: str, operation_id: str) -> None:
        super().__init__(f"{resource} is held by operation {operation_id}")
        self.resource = resource
        self.operation_id = operation_id


@dataclass(frozen=True, slots=True)
class Continuation:
    """A job message to enqueue once an operation's checkpoint moves (or first starts)."""

    queue: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class OperationProgress:
    """What a batch step writes to an operation: status, percentage and the next checkpoint."""

    status: str
    percent_complete: int
    checkpoint: dict[str, Any]


@dataclass(frozen=True, slots=True)
class OperationRecord:
    """A long-running operation (a reindex) as stored, with the checkpoint it stands at
    (opaque JSON here; ``dicom_core.jobs`` reads it)."""

    operation_id: str
    type: str
    status: str
    percent_complete: int
    resources: tuple[str, ...]
    checkpoint: dict[str, Any] | None
    created_at: str
    updated_at: str

    @property
    def done(self) -> bool:
        return self.status in FINISHED_STATUSES


class OperationStore(Protocol):
    """Operation records: start, read, move a checkpoint, fail."""

    async def start_operation(
        self,
        operation_id: str,
        kind: OperationKind,
        *,
        checkpoint: dict[str, Any],
        first: Continuation,
        holds: Sequence[str] = (),
    ) -> OperationRecord:
        """Record a new operation (NotStarted) at ``checkpoint``, holding ``holds``, and send
        its ``first`` message; all or nothing. Raises ``OperationConflict`` when an unfinished
        operation holds one of ``holds``."""
        ...

    async def get_operation(self, operation_id: str) -> OperationRecord | None: ...

    async def fail_operation(self, operation_id: str) -> None:
        """Mark an unfinished operation Failed and free what it holds."""
        ...

    async def compare_and_set_checkpoint(
        self,
        operation_id: str,
        expected: dict[str, Any],
        progress: OperationProgress,
        continuation: Continuation | None,
    ) -> bool:
        """Move the operation from checkpoint ``expected`` to ``progress`` and enqueue
        ``continuation``, as one step; False (nothing written) when the operation no longer
        stands at ``expected`` or is done. Once True, the continuation is sent at least once:
        a store that cannot enqueue in the same write notes whether it was sent, and
        ``resend_continuation`` makes up for a send that failed."""
        ...

    async def resend_continuation(
        self, operation_id: str, stale: dict[str, Any], continuation: Continuation
    ) -> None:
        """Send ``continuation`` if the operation moved on from ``stale`` but the message of
        that move is not known to have gone out; otherwise nothing."""
        ...
