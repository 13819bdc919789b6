"""Delete (a non-standard transaction of the service): studies, series and instances.

The index removes the instances and updates summaries in one transaction, so they vanish
from search and retrieve at once; the files follow (``BlobJanitor``), and a debt recorded
with the removal makes sure they do even if the process dies in between
(``blob_cleanup.BlobDebtSweep``). The expiry sweep (``services/expiry.py``) deletes expired
studies the same way, on the condition that they are still expired when the index removes
them.
"""

from __future__ import annotations

from datetime import datetime

from dicom_core.domain.model import StudyKey
from dicom_core.errors import resource_not_found
from dicom_core.services.blob_cleanup import BlobJanitor
from dicom_core.storage.ports import IndexStore


class DeleteService:
    def __init__(self, index: IndexStore, janitor: BlobJanitor) -> None:
        self._index = index
        self._janitor = janitor

    async def delete(
        self,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
        *,
        partition: int,
    ) -> int:
        """Delete what the UIDs name; returns the number of instances deleted (404 if none)."""
        deleted = await self._remove(partition, study_uid, series_uid, sop_uid, None)
        if not deleted:
            raise resource_not_found(study_uid, series_uid, sop_uid)
        return deleted

    async def delete_expired_study(self, study: StudyKey, now: datetime) -> int:
        """Delete a study whose expiry is at or before ``now``, as a DELETE of it would;
        returns the number of instances deleted, 0 when the study is gone or a store has
        moved or cleared its expiry (the index checks it in the step that removes them)."""
        return await self._remove(study.partition, study.study_uid, None, None, now)

    async def _remove(
        self,
        partition: int,
        study_uid: str,
        series_uid: str | None,
        sop_uid: str | None,
        expired_by: datetime | None,
    ) -> int:
        # The index hands each step's files to the janitor once the step has committed,
        # and keeps a debt of them until then (``BlobDebt``), which the debt sweep settles
        # if this process dies first.
        blob_keys = await self._index.delete_instances(
            study_uid,
            series_uid,
            sop_uid,
            partition=partition,
            release=self._janitor.delete,
            expired_by=expired_by,
        )
        return len(blob_keys)
