"""The change feed as values: what happened to an instance, and what its entry says now.

Every change to a stored instance (a store, a replacing store, a bulk update, a delete)
appends one entry, in the same transaction as the change. An entry names the version it
recorded (``watermark``) and the instance's version now (``current_watermark``), which each
later change of the instance sets on all of its entries: a store or an update sets its own
version, a delete sets None. The entry's ``state`` follows from the two:

- ``current``: the entry's version is the instance's version now;
- ``replaced``: the instance exists now in another version (a replacing store, a bulk
  update, or a store after a delete);
- ``deleted``: the instance is deleted (every entry of it, the delete's own included).

The Azure DICOM service keeps the same pair (``OriginalWatermark`` and ``CurrentWatermark``
of its ChangeFeed table), updates it the same way and derives the state the same way, so
create, delete, create reads ``replaced, replaced, current`` on both.

A store that replaces an instance (PUT) records ``create``: the client sent a whole new
instance, as a delete and a store would. ``update`` is a bulk update's new version of the
same instance.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from dicom_core.domain.model import InstanceKey


class ChangeAction(StrEnum):
    """What an entry records; the value is the feed's ``Action``."""

    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


class ChangeState(StrEnum):
    """What the entry's version is now; the value is the feed's ``State``."""

    CURRENT = "current"
    REPLACED = "replaced"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class ChangeFeedEntry:
    """One entry, as the index keeps it.

    ``sequence`` orders the feed: strictly increasing, never reused, and assigned so that an
    entry is visible only after every entry with a lower sequence is (a reader going forward
    from the last sequence it saw misses nothing). ``timestamp`` is the change's time as
    ``dicom_core.domain.timestamps.utc_timestamp`` text. ``metadata`` is the current
    version's DICOM JSON when the reader asked for it and the instance still exists.
    """

    sequence: int
    timestamp: str
    action: ChangeAction
    key: InstanceKey
    watermark: int
    current_watermark: int | None
    metadata: bytes | None = None

    @property
    def state(self) -> ChangeState:
        if self.current_watermark is None:
            return ChangeState.DELETED
        if self.current_watermark == self.watermark:
            return ChangeState.CURRENT
        return ChangeState.REPLACED
