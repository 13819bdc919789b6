"""Reading pixel data of an instance deleted after its index lookup: a 404, not a 424.

Frame, rendered and transcoded requests look the instance up, then read its file by key. A
delete in between removes both; the read must then report the instance as gone (404), while a
file missing under a live index entry stays a storage fault (424). Tiny in-memory stand-ins
for the two ports make the race deterministic.
"""

from __future__ import annotations

import dataclasses

import pytest

from dicom_core.domain.model import FrameIndex, InstanceKey, InstanceRecord
from dicom_core.errors import NotFound
from dicom_core.services.stored_pixels import StoredPixels
from dicom_core.storage.ports import BlobNotFound

KEY = InstanceKey("1.2.3", "1.2.3.4", "1.2.3.4.5", partition=1)
RECORD = InstanceRecord(
    key=KEY,
    watermark=7,
    sop_class_uid="1.2.840.10008.5.1.4.1.1.7",
    transfer_syntax_uid="1.2.840.10008.1.2.1",
    blob_key="1.2.3/1.2.3.4/1.2.3.4.5_7.dcm",
    file_size=1000,
    frames=FrameIndex(encapsulated=False, fragments=(((900, 100),),), frame_length=100),
    created_at="2026-12-06T00:00:00Z",
)


class Index:
    """Answers ``get_instance`` with whatever the test says is indexed now."""

    def __init__(self, current: InstanceRecord | None) -> None:
        self.current = current

    async def get_instance(
        self, key: InstanceKey, *, original: bool = False
    ) -> InstanceRecord | None:
        return self.current if self.current is not None and self.current.key == key else None


class Blobs:
    """Holds one file, or none."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    async def read_range(self, key: str, offset: int, length: int) -> bytes:
        if key not in self.files:
            raise BlobNotFound(key)
        return self.files[key][offset : offset + length]


def pixels(files: dict[str, bytes], indexed: InstanceRecord | None) -> StoredPixels:
    return StoredPixels(Blobs(files), RECORD, Index(indexed))  # type: ignore[arg-type]


async def test_a_frame_is_read_from_its_byte_range() -> None:
    data = bytes(900) + bytes(range(100))
    assert await pixels({RECORD.blob_key: data}, RECORD).frame(1) == bytes(range(100))


async def test_a_file_deleted_with_its_entry_is_not_found() -> None:
    with pytest.raises(NotFound, match="deleted or replaced"):
        await pixels({}, indexed=None).frame(1)


async def test_a_file_replaced_by_a_newer_version_is_not_found() -> None:
    newer = dataclasses.replace(RECORD, watermark=8, blob_key="other.dcm")
    with pytest.raises(NotFound):
        await pixels({}, indexed=newer).header()


async def test_a_file_missing_under_a_live_entry_stays_a_storage_fault() -> None:
    with pytest.raises(BlobNotFound):
        await pixels({}, indexed=RECORD).frame(1)
