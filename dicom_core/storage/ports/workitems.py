"""The workitem port (UPS-RS): workitems stored whole, replaced under optimistic concurrency.

A port of its own, not part of the index: workitems share no data with stored instances, and
the Worklist service (``dicom_core.services.workitems``) needs nothing else from storage.
"""

from __future__ import annotations

from typing import Any, Protocol

from dicom_core.domain.workitems import WorkitemRecord
from dicom_core.query.workitems import WorkitemQuery


class WorkitemExists(Exception):
    """Create of a workitem whose UID is already taken (409)."""


class WorkitemChanged(Exception):
    """A workitem write named a version that is no longer current (another write won)."""


class WorkitemStore(Protocol):
    """Workitems by UID; every write bumps the version a later replace must name."""

    async def create_workitem(self, uid: str, dataset: dict[str, Any]) -> None:
        """Store a new workitem (its dataset holds state and lock); WorkitemExists if taken."""
        ...

    async def get_workitem(self, uid: str) -> WorkitemRecord | None: ...

    async def replace_workitem(self, uid: str, dataset: dict[str, Any], *, version: str) -> None:
        """Replace the dataset if ``version`` is still current; WorkitemChanged otherwise."""
        ...

    async def search_workitems(self, query: WorkitemQuery) -> list[WorkitemRecord]:
        """Search Workitems: one page (``offset``, ``limit``) of matches, newest first.

        What matches is ``dicom_core.query.workitems.workitem_matches``; an adapter compiles
        the conditions against the keys of ``workitem_keys`` it stored with the workitem.
        """
        ...
