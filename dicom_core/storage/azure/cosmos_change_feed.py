"""The azure ``ChangeFeedStore`` (placeholder until the sequencer lands)."""

from __future__ import annotations

from dicom_core.domain.change_feed import ChangeFeedEntry
from dicom_core.storage.azure.cosmos_session import CosmosSession
from dicom_core.storage.ports.change_feed import ChangeQuery


class CosmosChangeFeedStore:
    def __init__(self, session: CosmosSession) -> None:
        self._session = session

    async def read_changes(self, query: ChangeQuery) -> list[ChangeFeedEntry]:
        raise NotImplementedError

    async def latest_change(self, *, include_metadata: bool = False) -> ChangeFeedEntry | None:
        raise NotImplementedError
