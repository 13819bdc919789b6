"""``FakeChangeFeedStore``: the change feed as a list, appended to by ``FakeIndexStore``."""

from __future__ import annotations

import dataclasses

from dicom_core.domain.change_feed import ChangeAction, ChangeFeedEntry
from dicom_core.domain.model import InstanceKey
from dicom_core.domain.timestamps import utc_timestamp
from dicom_core.storage.ports.change_feed import ChangeQuery


class FakeChangeFeedStore:
    """The ``ChangeFeedStore`` port; ``FakeIndexStore`` calls ``record`` and ``end``."""

    def __init__(self) -> None:
        self.entries: list[ChangeFeedEntry] = []
        self.metadata: dict[int, bytes] = {}
        """The DICOM JSON of each stored version, by watermark (kept by the index)."""

    def record(self, action: ChangeAction, key: InstanceKey, watermark: int) -> None:
        """Append an entry, and set the instance's version now on all of its entries."""
        current = None if action is ChangeAction.DELETE else watermark
        self._move(key, current)
        self.entries.append(
            ChangeFeedEntry(
                sequence=len(self.entries) + 1,
                timestamp=utc_timestamp(),
                action=action,
                key=key,
                watermark=watermark,
                current_watermark=current,
            )
        )

    def _move(self, key: InstanceKey, current: int | None) -> None:
        for n, entry in enumerate(self.entries):
            if entry.key == key:
                self.entries[n] = dataclasses.replace(entry, current_watermark=current)

    def _with_metadata(self, entry: ChangeFeedEntry, include: bool) -> ChangeFeedEntry:
        if not include or entry.current_watermark is None:
            return entry
        return dataclasses.replace(entry, metadata=self.metadata.get(entry.current_watermark))

    async def read_changes(self, query: ChangeQuery) -> list[ChangeFeedEntry]:
        kept = [
            entry
            for entry in self.entries
            if entry.sequence > query.after_sequence
            and (query.start_time is None or entry.timestamp >= query.start_time)
            and (query.end_time is None or entry.timestamp < query.end_time)
            and query.partition in (None, entry.key.partition)
        ]
        page = kept[query.skip : query.skip + query.limit]
        return [self._with_metadata(entry, query.include_metadata) for entry in page]

    async def latest_change(
        self, *, include_metadata: bool = False, partition: int | None = None
    ) -> ChangeFeedEntry | None:
        kept = [e for e in self.entries if partition in (None, e.key.partition)]
        if not kept:
            return None
        return self._with_metadata(kept[-1], include_metadata)
