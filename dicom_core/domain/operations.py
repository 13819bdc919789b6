"""Long-running operations as values: their kinds and run-time statuses.

The values are the spec's (``type`` and ``status`` of the Operation object in
spec/extended-query-tags.md), written as they are stored and returned. They live in the domain,
below the adapters, because the adapters write and compare them too (an operation's record, a
finished operation's stale messages): one spelling then holds on both backends and in
``dicom_core.jobs``, which owns the rules that move an operation from one status to the next.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class OperationKind(StrEnum):
    """The long-running operations; the value is the record's and the API's ``type``."""

    REINDEX = "Reindex"
    #: Bulk update; lower case, as Azure's ``update`` operations report it.
    UPDATE = "update"
    #: Export; lower case, as Azure's export operations report it.
    EXPORT = "export"


class OperationStatusValues(StrEnum):
    """Enumerated values for the run-time status of a long-running operation."""

    NOT_STARTED = "NotStarted"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"


#: The statuses an operation never leaves: its record is final, and its messages are stale.
FINISHED_STATUSES: Final = frozenset(
    {OperationStatusValues.COMPLETED, OperationStatusValues.FAILED}
)
