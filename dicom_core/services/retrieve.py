"""Retrieve (WADO-RS, PS3.18 10.4): which stored files answer a request, and their bytes.

Every file of an answer is opened before the answer starts (``open_instances``). A file
missing then is still a status code; once open, a concurrent delete of the study cannot cut
the stream (``BlobReader``). A delete that wins the race between listing and opening is seen
by listing again, so the answer is the study as it stands after that delete.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from dicom_core.domain.model import InstanceKey, InstanceRecord
from dicom_core.errors import resource_not_found
from dicom_core.storage.ports import BlobDamaged, BlobNotFound, BlobReader, BlobStore, IndexStore

# Listings retried when deletes keep removing files between listing and opening.
_LIST_ATTEMPTS = 4


@dataclass(frozen=True, slots=True)
class OpenedInstance:
    """An instance of an answer with its file already open."""

    record: InstanceRecord
    reader: BlobReader


class RetrieveService:
    def __init__(self, index: IndexStore, blobs: BlobStore) -> None:
        self._index = index
        self._blobs = blobs

    async def find_instances(
        self,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
        *,
        partition: int,
        original: bool = False,
    ) -> list[InstanceRecord]:
        """The stored instances a retrieve names, oldest first; 404 when there are none.
        ``original`` picks each instance's original version where a bulk update kept one."""
        if sop_uid is not None:
            assert series_uid is not None
            key = InstanceKey(study_uid, series_uid, sop_uid, partition=partition)
            record = await self._index.get_instance(key, original=original)
            if record is None:
                raise resource_not_found(study_uid, series_uid, sop_uid)
            return [record]
        records = await self._index.list_instances(
            study_uid, series_uid, partition=partition, original=original
        )
        if not records:
            raise resource_not_found(study_uid, series_uid)
        return records

    async def open_instances(
        self,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
        *,
        partition: int,
        original: bool = False,
    ) -> list[OpenedInstance]:
        """The instances a retrieve names, each with its file open; 404 when there are none.

        A file found missing whose index entry is gone too was deleted after the listing:
        list again. One whose entry still names it is really missing (BlobNotFound, a 424).
        """
        for _ in range(_LIST_ATTEMPTS):
            records = await self.find_instances(
                study_uid, series_uid, sop_uid, partition=partition, original=original
            )
            try:
                readers = await self._open_all(records)
            except BlobNotFound as missing:
                if await self._still_indexed(records, str(missing), original):
                    raise
                continue
            return [OpenedInstance(r, reader) for r, reader in zip(records, readers, strict=True)]
        raise BlobNotFound(f"files of {study_uid} kept vanishing while it was being read")

    async def _open_all(self, records: Sequence[InstanceRecord]) -> Sequence[BlobReader]:
        """Open every file, or none (``BlobStore.open_readers``).

        A file whose size is not the one the index recorded at store time is ``BlobDamaged``
        (a 424 before the answer starts), not an answer that is short or long; records
        without a size (Cosmos documents older than the field) are not checked.
        """
        readers = await self._blobs.open_readers([record.blob_key for record in records])
        for record, reader in zip(records, readers, strict=True):
            if record.file_size and reader.size != record.file_size:
                await close_all(readers)
                raise BlobDamaged(
                    f"{record.blob_key} holds {reader.size} bytes; the index recorded"
                    f" {record.file_size}"
                )
        return readers

    async def _still_indexed(
        self, records: Sequence[InstanceRecord], missing_key: str, original: bool
    ) -> bool:
        """Whether the index still points at a file that is missing (not a delete race, nor
        an update that dropped the version between listing and opening)."""
        for record in records:
            if record.blob_key != missing_key:
                continue
            current = await self._index.get_instance(record.key, original=original)
            return current is not None and current.blob_key == record.blob_key
        return True  # not one of ours: report it

    def open_file(self, record: InstanceRecord) -> AsyncIterator[bytes]:
        """The stored file's bytes, streamed in chunks (read lazily: no delete protection)."""
        return self._blobs.read_stream(record.blob_key)


async def close_all(readers: Sequence[BlobReader]) -> None:
    """Close every reader; closing never fails an answer."""
    for reader in readers:
        with contextlib.suppress(Exception):
            await reader.close()
