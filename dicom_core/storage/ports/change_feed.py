"""The change feed port: reading the entries the index appends with every change.

The entries themselves are written by the index adapters, inside the transaction of the
change they record (``IndexStore.commit_instance``, ``delete_instances``, the local
``InstanceWriter``), so this port only reads. Its rules are in
``dicom_core.domain.change_feed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from dicom_core.domain.change_feed import ChangeFeedEntry


@dataclass(frozen=True, slots=True)
class ChangeQuery:
    """Which entries to read, oldest first.

    ``after_sequence`` keeps entries whose sequence is greater (v1's ``offset``). The time
    window keeps entries with ``start_time <= timestamp < end_time`` (v2), both
    ``utc_timestamp`` texts. ``skip`` drops that many of the entries left by the other
    filters (v2's ``offset`` inside a window), and ``limit`` keeps at most that many.
    ``partition`` keeps one data partition's entries (None: every partition's, the feed
    Azure serves); their sequences are the feed's, with gaps where other partitions' are.
    """

    limit: int
    after_sequence: int = 0
    skip: int = 0
    start_time: str | None = None
    end_time: str | None = None
    include_metadata: bool = False
    partition: int | None = None


class ChangeFeedStore(Protocol):
    async def read_changes(self, query: ChangeQuery) -> list[ChangeFeedEntry]:
        """The entries ``query`` selects, by ascending sequence, each with its state as of
        the read (and the current version's DICOM JSON, when asked and not deleted)."""
        ...

    async def latest_change(
        self, *, include_metadata: bool = False, partition: int | None = None
    ) -> ChangeFeedEntry | None:
        """The entry with the highest sequence (of ``partition``'s entries, where given);
        None while there is none."""
        ...
