"""``FakeWorkitemStore``: workitems in a dict keyed by (partition, UID), versions from a
counter."""

from __future__ import annotations

import copy
import itertools
from typing import Any

from dicom_core.domain.workitems import WorkitemRecord
from dicom_core.query.workitems import WorkitemQuery, workitem_matches
from dicom_core.storage.ports import WorkitemChanged, WorkitemExists


class FakeWorkitemStore:
    """The ``WorkitemStore`` port; search filters with the reference matcher."""

    def __init__(self) -> None:
        self.records: dict[tuple[int, str], WorkitemRecord] = {}
        self._counter = itertools.count(1)

    async def create_workitem(self, uid: str, dataset: dict[str, Any], *, partition: int) -> None:
        if (partition, uid) in self.records:
            raise WorkitemExists(uid)
        number = next(self._counter)
        self.records[partition, uid] = WorkitemRecord(
            uid, copy.deepcopy(dataset), str(number), number
        )

    async def get_workitem(self, uid: str, *, partition: int) -> WorkitemRecord | None:
        record = self.records.get((partition, uid))
        # A copy, as a real store hands out: a caller's edits never reach the stored one.
        return copy.deepcopy(record)

    async def replace_workitem(
        self, uid: str, dataset: dict[str, Any], *, partition: int, version: str
    ) -> None:
        record = self.records.get((partition, uid))
        if record is None or record.version != version:
            raise WorkitemChanged(uid)
        self.records[partition, uid] = WorkitemRecord(
            uid, copy.deepcopy(dataset), str(next(self._counter)), record.sequence
        )

    async def search_workitems(self, query: WorkitemQuery) -> list[WorkitemRecord]:
        mine = [r for (p, _), r in self.records.items() if p == query.partition]
        newest_first = sorted(mine, key=lambda r: r.sequence, reverse=True)
        found = [r for r in newest_first if workitem_matches(query, r.dataset)]
        return copy.deepcopy(found[query.offset : query.offset + query.limit])
