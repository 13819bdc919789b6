"""Retrieve (WADO-RS, PS3.18 10.4): which stored files answer a request, and their bytes."""

from __future__ import annotations

from collections.abc import AsyncIterator

from dicom_core.domain.model import InstanceKey, InstanceRecord
from dicom_core.errors import resource_not_found
from dicom_core.storage.ports import BlobStore, IndexStore


class RetrieveService:
    def __init__(self, index: IndexStore, blobs: BlobStore) -> None:
        self._index = index
        self._blobs = blobs

    async def find_instances(
        self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> list[InstanceRecord]:
        """The stored instances a retrieve names, oldest first; 404 when there are none."""
        if sop_uid is not None:
            assert series_uid is not None
            record = await self._index.get_instance(InstanceKey(study_uid, series_uid, sop_uid))
            if record is None:
                raise resource_not_found(study_uid, series_uid, sop_uid)
            return [record]
        records = await self._index.list_instances(study_uid, series_uid)
        if not records:
            raise resource_not_found(study_uid, series_uid)
        return records

    def open_file(self, record: InstanceRecord) -> AsyncIterator[bytes]:
        """The stored file's bytes, streamed in chunks."""
        return self._blobs.read_stream(record.blob_key)
