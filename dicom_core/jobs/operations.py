"""The operation status record's rules: kinds, statuses and percent complete.

What ``GET /operations/{id}`` reports is stored by the adapters (``OperationRecord``), but the
rules that fill it live here once, for every kind of operation.
"""

from __future__ import annotations

from enum import StrEnum


class OperationKind(StrEnum):
    """The long-running operations; the value is the record's and the API's ``type``."""

    REINDEX = "Reindex"


class OperationStatusValues(StrEnum):
    NOT_STARTED = "NotStarted"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"


def running_percent(done: int, total: int) -> int:
    """Percent complete of a running operation: never 100 before it has completed, so a
    client polling for 100 never sees an operation that is still running."""
    return min(99, done * 100 // max(total, 1))
