"""The operation status record's rules: how far a running operation has come.

What ``GET /operations/{id}`` reports is stored by the adapters (``OperationRecord``); the kinds
and statuses are domain values (``dicom_core.domain.operations``), and the rules that fill the
record live here once, for every kind of operation.
"""

from __future__ import annotations

from enum import Enum


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
