"""The operation status record's rules: how far a running operation has come.

What ``GET /operations/{id}`` reports is stored by the adapters (``OperationRecord``); the kinds
and statuses are domain values (``dicom_core.domain.operations``), and the rules that fill the
record live here once, for every kind of operation.
"""

from __future__ import annotations


def running_percent(done: int, total: int) -> int:
    """Percent complete of a running operation: never 100 before it has completed, so a
    client polling for 100 never sees an operation that is still running."""
    return min(99, done * 100 // max(total, 1))
