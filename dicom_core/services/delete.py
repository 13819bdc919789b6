"""Delete (a non-standard transaction of the service): studies, series and instances.

The index removes the instances and updates summaries in one transaction, so they vanish
from search and retrieve at once; the files follow (``BlobJanitor``).
"""

from __future__ import annotations

from dicom_core.errors import resource_not_found
from dicom_core.services.blob_cleanup import BlobJanitor
from dicom_core.storage.ports import IndexStore


class DeleteService:
    def __init__(self, index: IndexStore, janitor: BlobJanitor) -> None:
        self._index = index
        self._janitor = janitor

    async def delete(
        self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> int:
        """Delete what the UIDs name; returns the number of instances deleted (404 if none)."""
        # An index that deletes in several steps hands the janitor the files of the steps
        # already done when a later one fails, so no file outlives its index entry.
        blob_keys = await self._index.delete_instances(
            study_uid, series_uid, sop_uid, orphans=self._janitor.delete
        )
        if not blob_keys:
            raise resource_not_found(study_uid, series_uid, sop_uid)
        for blob_key in blob_keys:
            await self._janitor.delete(blob_key)
        return len(blob_keys)
