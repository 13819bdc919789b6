"""Reading a STOW-RS answer (a DICOM JSON dataset, PS3.18 10.5.3) back onto the files sent.

The answer names instances by SOP Instance UID: ReferencedSOPSequence (0008,1199) items were
stored, perhaps with a WarningReason (0008,1196); FailedSOPSequence (0008,1198) items were
not, with a FailureReason (0008,1197) and comments in FailedAttributesSequence (0074,1048).
Failure reason 45070 means the instance is already stored: for an upload that is done.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

REFERENCED_SOP_SEQUENCE = "00081199"
FAILED_SOP_SEQUENCE = "00081198"
REFERENCED_SOP_INSTANCE_UID = "00081155"
FAILURE_REASON = "00081197"
WARNING_REASON = "00081196"
FAILED_ATTRIBUTES_SEQUENCE = "00741048"
ERROR_COMMENT = "00000902"

INSTANCE_EXISTS = 45070
#: The comment of a file the answer does not name.
NOT_NAMED = "the server's answer does not name it"

STORED = "stored"
PRESENT = "already present"
FAILED = "failed"


@dataclass(frozen=True)
class Outcome:
    """What became of one file: ``STORED``, ``PRESENT`` or ``FAILED``, with the reason code
    (a failure or warning reason) and the server's comments."""

    status: str
    reason: int | None = None
    comments: tuple[str, ...] = field(default=())

    @property
    def done(self) -> bool:
        return self.status in (STORED, PRESENT)


def _values(dataset: Mapping[str, Any], tag: str) -> list[Any]:
    element = dataset.get(tag)
    if not isinstance(element, Mapping):
        return []
    values = element.get("Value")
    return list(values) if isinstance(values, list) else []


def _first(dataset: Mapping[str, Any], tag: str) -> Any:
    values = _values(dataset, tag)
    return values[0] if values else None


def _comments(item: Mapping[str, Any]) -> tuple[str, ...]:
    found = []
    for attribute in _values(item, FAILED_ATTRIBUTES_SEQUENCE):
        if isinstance(attribute, Mapping):
            comment = _first(attribute, ERROR_COMMENT)
            if comment:
                found.append(str(comment))
    return tuple(found)


def outcomes(answer: Any, sop_uids: Sequence[str | None]) -> list[Outcome]:
    """One outcome per file sent, in order, given each file's SOP Instance UID (None when it
    could not be read). A file the answer does not name failed: the server did not say it
    stored it, and a failure item without a UID (an unreadable part) cannot be placed."""
    if not isinstance(answer, Mapping):
        answer = {}
    by_uid: dict[str, Outcome] = {}
    unnamed: list[Outcome] = []
    for item in _values(answer, FAILED_SOP_SEQUENCE):
        if not isinstance(item, Mapping):
            continue
        reason = _first(item, FAILURE_REASON)
        reason = int(reason) if isinstance(reason, int) else None
        status = PRESENT if reason == INSTANCE_EXISTS else FAILED
        outcome = Outcome(status, reason, _comments(item))
        uid = _first(item, REFERENCED_SOP_INSTANCE_UID)
        if uid:
            by_uid[str(uid)] = outcome
        else:
            unnamed.append(outcome)
    for item in _values(answer, REFERENCED_SOP_SEQUENCE):
        if not isinstance(item, Mapping):
            continue
        uid = _first(item, REFERENCED_SOP_INSTANCE_UID)
        warning = _first(item, WARNING_REASON)
        if uid:
            by_uid[str(uid)] = Outcome(
                STORED, int(warning) if isinstance(warning, int) else None, _comments(item)
            )
    result = []
    for uid in sop_uids:
        if uid is not None and uid in by_uid:
            result.append(by_uid[uid])
        elif unnamed:
            # Unnamed failures come in the order of the parts; so do the unreadable files.
            result.append(unnamed.pop(0))
        else:
            result.append(Outcome(FAILED, None, (NOT_NAMED,)))
    return result
