"""The workitem port (UPS-RS): workitems stored whole, replaced under optimistic concurrency.

A port of its own, not part of the index: workitems share no data with stored instances, and
the Worklist service (``dicom_core.services.workitems``) needs nothing else from storage.

Every method names the data partition (``dicom_core.domain.partitions``) it works in, and
nothing crosses partitions: a workitem UID is unique per partition only, as in Azure (its
unique index is on (PartitionKey, WorkitemUid)), so the same UID in two partitions names two
independent workitems. The partition is a required keyword, never defaulted, so a caller that
forgets it fails at type check rather than reaching Microsoft.Default's worklist.
"""

from __future__ import annotations

from typing import Any, Protocol

from dicom_core.domain.workitems import WorkitemRecord
from dicom_core.query.workitems import WorkitemQuery


class WorkitemExists(Exception):
    """Create of a workitem whose UID is already taken in its partition (409)."""


class WorkitemChanged(Exception):
    """A workitem write named a version that is no longer current (another write won)."""


class WorkitemStore(Protocol):
    """Workitems by (partition, UID); every write bumps the version a later replace must name."""

    async def create_workitem(self, uid: str, dataset: dict[str, Any], *, partition: int) -> None:
        """Store a new workitem (its dataset holds state and lock); WorkitemExists if the UID
        is taken in ``partition`` (another partition's workitem of that UID does not count)."""
        ...

    async def get_workitem(self, uid: str, *, partition: int) -> WorkitemRecord | None: ...

    async def replace_workitem(
        self, uid: str, dataset: dict[str, Any], *, partition: int, version: str
    ) -> None:
        """Replace the dataset if ``version`` is still current; WorkitemChanged otherwise."""
        ...

    async def search_workitems(self, query: WorkitemQuery) -> list[WorkitemRecord]:
        """Search Workitems: one page (``offset``, ``limit``) of matches in
        ``query.partition``, newest first.

        What matches is ``dicom_core.query.workitems.workitem_matches``; an adapter compiles
        the conditions against the keys of ``workitem_keys`` it stored with the workitem.
        """
        ...
