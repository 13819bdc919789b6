"""The azure ``CursorStore``: one small document per cursor in the ``system`` container.

A move is a compare-and-set on the document's ETag: the first move creates the document
(create-only, so of two first moves one conflicts), later ones replace it if nobody changed it
since it was read. A move retried after its answer was lost finds the ETag changed and reports
False; the caller then reads the cursor again and finds it moved, so nothing is skipped.
"""

from __future__ import annotations

from azure.cosmos.exceptions import CosmosResourceExistsError

from dicom_core.domain.timestamps import utc_timestamp
from dicom_core.storage.azure.cosmos_io import read_item, replace_if_unchanged
from dicom_core.storage.azure.cosmos_schema import CURSOR, CURSOR_PARTITION
from dicom_core.storage.azure.cosmos_session import Containers, CosmosSession


class CosmosCursorStore:
    def __init__(self, session: CosmosSession) -> None:
        self._session = session

    async def read_cursor(self, name: str) -> int:
        async def read(c: Containers) -> int:
            doc = await read_item(c.system, name, CURSOR_PARTITION)
            return 0 if doc is None else int(doc["position"])

        return await self._session.run(read)

    async def advance_cursor(self, name: str, expected: int, position: int) -> bool:
        if position <= expected:
            raise ValueError(f"a cursor moves forward only ({expected} -> {position})")

        async def move(c: Containers) -> bool:
            doc = await read_item(c.system, name, CURSOR_PARTITION)
            if (0 if doc is None else int(doc["position"])) != expected:
                return False
            fields = {"kind": CURSOR, "position": position, "updated": utc_timestamp()}
            if doc is None:
                try:
                    await c.system.create_item({"id": name, "pk": CURSOR_PARTITION, **fields})
                except CosmosResourceExistsError:
                    return False
                return True
            return await replace_if_unchanged(c.system, {**doc, **fields})

        return await self._session.run(move)
