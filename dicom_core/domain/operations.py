"""Long-running operations as values: their kinds and run-time statuses.

The values are the spec's (``type`` and ``status`` of the Operation object in
spec/extended-query-tags.md), written as they are stored and returned. They live in the domain,
below the adapters, because the adapters write and compare them too (an operation's record, a
finished operation's stale messages): one spelling then holds on both backends and in
``dicom_core.jobs``, which owns the rules that move an operation from one status to the next.
"""

from __future__ import annotations

import re
import uuid
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


_GUID = re.compile(r"[0-9a-fA-F]{32}|[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")


def new_operation_id() -> str:
    """A fresh operation id: a GUID as 32 hex digits, the spelling Azure answers with."""
    return uuid.uuid4().hex


def operation_id_spellings(text: str) -> tuple[str, ...]:
    """The record ids that ``GET /operations/{text}`` may mean, most likely first.

    Azure's route takes any spelling of the GUID (32 digits, with hyphens, in braces or
    parentheses, any case), and its .NET client asks with 32 digits whatever the 202 said.
    Records are kept under 32 lower-case digits, except bulk updates started before this
    version, which kept the hyphenated form. Text that is no GUID is looked up as given.
    """
    stripped = text.strip()
    if stripped[:1] + stripped[-1:] in ("{}", "()"):
        stripped = stripped[1:-1]
    if not _GUID.fullmatch(stripped):
        return (text,)
    guid = uuid.UUID(stripped)
    return (guid.hex, str(guid))
