"""Delete (a non-standard transaction of the service): studies, series and instances.

The index removes the instances and updates summaries in one transaction, so they vanish
from search and retrieve at once; the files follow (``BlobJanitor``), and a debt recorded
with the removal makes sure they do even if the process dies in between
(``blob_cleanup.BlobDebtSweep``). The expiry sweep (``services/expiry.py``) deletes expired
studies the same way, on the condition that they are still expired when the index removes
them.

Extended query tags at study and series level hold the value of the newest instance that has
one (latest wins, as the summaries). When a delete takes that instance and leaves others,
``after_delete`` (the extended query tag service's ``refresh_after_delete``) takes the value
again from the newest remaining one, so a search does not match the study by a value it no
longer shows. It runs after the delete has committed, best effort: if it fails, the delete
stands and the old value stays searchable until a later delete in the study refreshes it or
the tag is deleted and added again, as Azure's service keeps it (its instance delete leaves
study- and series-level tag rows alone).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from dicom_core.domain.model import StudyKey
from dicom_core.errors import resource_not_found
from dicom_core.services.blob_cleanup import BlobJanitor
from dicom_core.storage.ports import IndexStore

log = logging.getLogger(__name__)

AfterDelete = Callable[[str, int], Awaitable[None]]


class DeleteService:
    def __init__(
        self, index: IndexStore, janitor: BlobJanitor, *, after_delete: AfterDelete | None = None
    ) -> None:
        self._index = index
        self._janitor = janitor
        self._after_delete = after_delete

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
        partial = series_uid is not None or sop_uid is not None
        if blob_keys and partial and self._after_delete is not None:
            try:
                await self._after_delete(study_uid, partition)
            except Exception:
                log.warning(
                    "could not refresh the study-level tag values of study %s after a delete",
                    study_uid,
                    exc_info=True,
                )
        return len(blob_keys)
