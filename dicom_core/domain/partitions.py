"""Data partitions: separate namespaces of studies, series and instances in one service.

Azure Health Data Services can be deployed with data partitions enabled. Each request then
names a partition in its URL (``/v{n}/partitions/{name}/studies/...``); the same Study,
Series and SOP Instance UIDs may exist in two partitions with different content, and nothing
(search, retrieve, delete, ETags) crosses from one to another. Data stored before partitions
were enabled belongs to ``Microsoft.Default``, key 1.

A partition is known by two things: its *name*, chosen by the client and created implicitly
by the first store that uses it, and its *key*, a small integer the service gives it and
never reuses. Storage uses the key only, never the name: a name such as ``..`` or one that
differs from another only in case must never reach a path or a document id.

This module holds the rule a name must follow (Azure's: ASCII letters, digits, ``_``, ``.``
and ``-``, at most 64), how names are compared, and the messages the API answers with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

DEFAULT_PARTITION_KEY: Final = 1
DEFAULT_PARTITION_NAME: Final = "Microsoft.Default"
MAX_NAME_LENGTH: Final = 64

_NAME_CHARACTERS = re.compile(r"[A-Za-z0-9_.\-]+")

# The sentences Azure's DICOM service answers with (DicomCoreResource.resx), so a client
# written against it recognises them.
FEATURE_DISABLED: Final = "Data partitions feature is disabled."
PARTITION_MISSING: Final = "PartitionName value is missing in the route segment."
PARTITION_NOT_FOUND: Final = "Specified PartitionName does not exist."
INVALID_NAME: Final = "The specified PartitionName is invalid"
CANNOT_DISABLE: Final = (
    "Data partitions feature cannot be disabled while existing data has already been partitioned."
)


@dataclass(frozen=True, slots=True)
class Partition:
    """A data partition as ``GET /partitions`` lists it."""

    key: int
    name: str
    created_at: str | None
    """When the first store that named it created it (ISO 8601, UTC); None where it was not
    read (the default partition of a request while partitions are off)."""

    def to_json(self) -> dict[str, object]:
        """Azure's ``PartitionEntry``: ``partitionKey``, ``partitionName``, ``createdDate``
        (left out when unknown, as Azure leaves out null values)."""
        entry: dict[str, object] = {"partitionKey": self.key, "partitionName": self.name}
        if self.created_at is not None:
            entry["createdDate"] = self.created_at
        return entry


#: Microsoft.Default as a request with partitions off is in: no registry read.
DEFAULT_PARTITION: Final = Partition(DEFAULT_PARTITION_KEY, DEFAULT_PARTITION_NAME, None)


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a partition, or None when it can.

    Azure's rule: one to 64 characters, each an ASCII letter, a digit, ``_``, ``.`` or
    ``-``. Azure's answer does not say which part failed; ours does.
    """
    if not name:
        return "it is empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"it has {len(name)} characters; at most {MAX_NAME_LENGTH} are allowed"
    if not _NAME_CHARACTERS.fullmatch(name):
        bad = next(c for c in name if not _NAME_CHARACTERS.fullmatch(c))
        return f"it contains {bad!r}; only ASCII letters, digits, '_', '.' and '-' are allowed"
    return None


def name_key(name: str) -> str:
    """The form two names are compared in: they name the same partition when these agree.

    Case-insensitive, as Azure's partition table compares names under its database's
    case-insensitive collation; the spelling of the first store that used a name is the one
    kept and listed. The allowed characters are ASCII, so lower-casing is a complete fold.
    """
    return name.lower()


def is_default(key: int) -> bool:
    return key == DEFAULT_PARTITION_KEY
