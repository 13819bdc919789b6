"""The operation status record's rules: how far a running operation has come.

What ``GET /operations/{id}`` reports is stored by the adapters (``OperationRecord``); the kinds
and statuses are domain values (``dicom_core.domain.operations``), and the rules that fill the
record live here once, for every kind of operation.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any

from dicom_core.storage.ports import Continuation, OperationRecord, OperationStore


class CheckpointContention(Exception):
    """The operation's record changed under a step without moving: retry the message."""


class StepOutcome(Enum):
    """What one step of an operation did: nothing (a stale checkpoint), moved on, or finished."""

    STALE = "stale"
    CONTINUED = "continued"
    COMPLETED = "completed"


def running_percent(done: int, total: int) -> int:
    """Percent complete of a running operation: never 100 before it has completed, so a
    client polling for 100 never sees an operation that is still running."""
    return min(99, done * 100 // max(total, 1))


async def settle_stale(
    store: OperationStore,
    operation_id: str,
    expected: dict[str, Any],
    operation: OperationRecord | None,
    continuation_from: Callable[[dict[str, Any]], Continuation],
) -> StepOutcome:
    """A message whose checkpoint (``expected``) the operation has left: do nothing but make
    up for a send the move from it may have lost (``continuation_from`` builds the message
    of the operation's current checkpoint). An operation that still stands at ``expected``
    changed under the step without moving: the message is retried (``CheckpointContention``),
    since completing it would stall the operation."""
    if operation is None or operation.done or operation.checkpoint is None:
        return StepOutcome.STALE
    if operation.checkpoint == expected:
        raise CheckpointContention(f"operation {operation_id} changed during its step")
    await store.resend_continuation(operation_id, expected, continuation_from(operation.checkpoint))
    return StepOutcome.STALE
