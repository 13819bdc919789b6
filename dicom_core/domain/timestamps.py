"""Wall-clock timestamps: the one place that reads the clock for a stored or returned time.

Why one home: every record a store keeps (reservations, tags, operations, errors, workitems,
queue messages) carries its creation time as text, and the operation JSON returns it as is
(``createdTime``, ``lastUpdatedTime``). Both backends must write the same form, so that the
same text sorts, compares and parses alike, and a reservation's age is judged by one rule.

The form is ISO 8601 in UTC with a ``Z`` suffix, as the Azure DICOM service writes it
(``2021-10-06T16:40:02.524708Z``). DICOM's own DT form (PS3.5 6.2) is here too, for the
attributes the service sets itself.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Literal

Timespec = Literal["seconds", "milliseconds", "microseconds"]


def utc_now() -> datetime:
    """Now, in UTC, for a time computed before it is stored (a study's expiry)."""
    return datetime.now(UTC)


def utc_timestamp(timespec: Timespec = "microseconds") -> str:
    """Now, as ISO 8601 UTC text with a ``Z`` suffix, to ``timespec`` precision."""
    return timestamp_of(datetime.now(UTC), timespec)


def timestamp_of(moment: datetime, timespec: Timespec = "microseconds") -> str:
    """A time with a zone as :func:`utc_timestamp` text, so it compares with stored ones
    (OverflowError when it falls outside the years 1 to 9999 once in UTC)."""
    return moment.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def seconds_since(timestamp: str) -> float:
    """How many seconds ago ``timestamp`` (a :func:`utc_timestamp` text) was."""
    then = datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
    return time.time() - then


def dicom_datetime_now() -> str:
    """Now, as a DICOM DT value in UTC to the second (``YYYYMMDDHHMMSS``)."""
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S")
