"""Reading the change feed (the index writes it; see ``dicom_core.domain.change_feed``)."""

from __future__ import annotations

from dicom_core.domain.change_feed import ChangeFeedEntry
from dicom_core.storage.ports import ChangeFeedStore, ChangeQuery


class ChangeFeedService:
    def __init__(self, store: ChangeFeedStore) -> None:
        self._store = store

    async def read(self, query: ChangeQuery) -> list[ChangeFeedEntry]:
        return await self._store.read_changes(query)

    async def latest(
        self, *, include_metadata: bool, partition: int | None = None
    ) -> ChangeFeedEntry | None:
        return await self._store.latest_change(
            include_metadata=include_metadata, partition=partition
        )
