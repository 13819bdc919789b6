"""Reading a stored instance's pixel data through the byte ranges computed at store time.

Shared by frame retrieval, transcoding and rendering: a frame is one byte-range read of the
stored file (its fragments, for encapsulated data, are contiguous but for the 8-byte item
headers between them), and the header that precedes the pixel data is another. The whole
file is read only by the fallback paths, for instances whose frames could not be mapped at
store time, and only below the transcoding size limit.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence

import orjson

from dicom_core.domain.deflate import InflatedSizeError, measure_inflation
from dicom_core.domain.model import InstanceKey, InstanceRecord
from dicom_core.domain.pixels import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    DecodedSizeError,
    PixelFormat,
    check_decoded_size,
)
from dicom_core.errors import BadRequest, NotAcceptable, NotFound
from dicom_core.storage.ports import (
    BlobDamaged,
    BlobNotFound,
    BlobReader,
    BlobStore,
    IndexStore,
)


class StoredPixels:
    """The pixel data of one stored instance, read range by range.

    Reads go by key, after the index lookup: a delete in between leaves a file missing whose
    index entry is gone too. With ``index``, such a read is a 404 (the instance was deleted),
    and only a file missing under a live entry stays ``BlobNotFound`` (a 424).

    With ``reader`` (the file opened before a response started), reads go through it instead,
    so a delete racing the answer cannot take the file away halfway.
    """

    def __init__(
        self,
        blobs: BlobStore,
        record: InstanceRecord,
        index: IndexStore | None = None,
        *,
        reader: BlobReader | None = None,
    ) -> None:
        self._blobs = blobs
        self._index = index
        self._reader = reader
        self.record = record

    async def read_range(self, offset: int, length: int) -> bytes:
        """``length`` bytes of the stored file from ``offset``; ``BlobDamaged`` (a 424) if
        the file ends before them, never fewer bytes than the index's ranges promise."""
        if self._reader is not None:
            data = await self._reader.read_range(offset, length)
        else:
            try:
                data = await self._blobs.read_range(self.record.blob_key, offset, length)
            except BlobNotFound:
                await self._raise_if_deleted()
                raise
        if len(data) != length:
            raise BlobDamaged(
                f"{self.record.blob_key} ends at byte {offset + len(data)}, before the"
                f" {length} bytes from {offset} that the index records"
            )
        return data

    async def _raise_if_deleted(self) -> None:
        if self._index is None:
            return
        key = self.record.key
        current = await self._index.get_instance(key)
        if current is None or current.blob_key != self.record.blob_key:
            raise NotFound(
                f"Instance {key.sop_uid} of series {key.series_uid} in study {key.study_uid}"
                " was deleted or replaced while it was being read."
            )

    @property
    def has_frame_ranges(self) -> bool:
        """True when store time mapped every frame to byte ranges (the fast paths)."""
        frames = self.record.frames
        return frames is not None and frames.count > 0

    @property
    def frame_count(self) -> int:
        frames = self.record.frames
        return frames.count if frames is not None else 0

    @property
    def pixel_data_offset(self) -> int:
        """Where the first frame's bytes start: everything before it is header."""
        frames = self.record.frames
        assert frames is not None and frames.count > 0
        return frames.fragments[0][0][0]

    async def frame(self, number: int) -> bytes:
        """Frame ``number`` (1-based) as stored: native bytes, or the fragments joined."""
        frames = self.record.frames
        assert frames is not None
        pieces = frames.fragments[number - 1]
        start = pieces[0][0]
        end = pieces[-1][0] + pieces[-1][1]
        data = await self.read_range(start, end - start)
        if len(pieces) == 1:
            return data
        view = memoryview(data)
        return b"".join(view[offset - start : offset - start + length] for offset, length in pieces)

    async def header(self) -> bytes:
        """The stored bytes before the first frame, Pixel Data element header included."""
        return await self.read_range(0, self.pixel_data_offset)

    async def header_and_frame(self, number: int) -> tuple[bytes, bytes]:
        """The header and frame ``number``; one read when the frame follows the header."""
        frames = self.record.frames
        assert frames is not None
        pieces = frames.fragments[number - 1]
        start = self.pixel_data_offset
        if len(pieces) > 1 or pieces[0][0] != start:
            return await self.header(), await self.frame(number)
        data = await self.read_range(0, start + pieces[0][1])
        return data[:start], data[start:]

    async def whole_file(self) -> bytes:
        if self._reader is not None:
            return b"".join([chunk async for chunk in self._reader.read_stream()])
        try:
            chunks = [chunk async for chunk in self._blobs.read_stream(self.record.blob_key)]
        except BlobNotFound:
            await self._raise_if_deleted()
            raise
        return b"".join(chunks)


async def get_record(index: IndexStore, key: InstanceKey) -> InstanceRecord:
    """The stored instance ``key`` names; 404 when there is none."""
    record = await index.get_instance(key)
    if record is None:
        raise NotFound(
            f"Instance {key.sop_uid} was not found in series {key.series_uid} of study"
            f" {key.study_uid}."
        )
    return record


async def pixel_format(index: IndexStore, record: InstanceRecord) -> PixelFormat | None:
    """The instance's Image Pixel module, from the DICOM JSON kept at store time."""
    key = record.key
    documents = await index.get_metadata(
        key.study_uid, key.series_uid, key.sop_uid, partition=key.partition
    )
    if not documents:
        return None
    return PixelFormat.from_dicom_json(orjson.loads(documents[0]))


def check_frame_numbers(numbers: Sequence[int], count: int, sop_uid: str) -> None:
    """404 for a frame the instance does not have (frame numbers are 1-based); 400 for a
    list longer than the instance's frames.

    A frame may be listed more than once (its part is then repeated), but never so often that
    the answer outgrows the instance: an 8 KB URL repeating frame 1 would otherwise ask the
    server to send one frame thousands of times.
    """
    for number in numbers:
        if number > count:
            raise NotFound(
                f"Frame {number} does not exist: instance {sop_uid} has {count}"
                f" frame{'s' if count != 1 else ''}."
            )
    if len(numbers) > count:  # never reached with count 0: every number failed above
        raise BadRequest(
            f"The frame list names {len(numbers)} frames; instance {sop_uid} has {count}"
            f" frame{'s' if count != 1 else ''}, and a request may name at most that many."
        )


def check_size(record: InstanceRecord, limit: int, action: str) -> None:
    """406 when a file is too large to transcode or render (conformance statement)."""
    if record.file_size > limit:
        raise NotAcceptable(
            f"Instance {record.key.sop_uid} is {record.file_size} bytes; files over {limit}"
            f" bytes cannot be {action}. Ask for transfer-syntax=* to receive it as stored."
            if action == "transcoded"
            else f"Instance {record.key.sop_uid} is {record.file_size} bytes; files over"
            f" {limit} bytes cannot be {action}."
        )


async def check_inflated(record: InstanceRecord, data: bytes, limit: int, action: str) -> None:
    """406 when the stored file ``data`` is deflated and inflates past ``limit`` bytes, found
    without inflating it whole (``domain.deflate``): a store now refuses such a file, but
    one stored before it did must not take a worker's memory when read."""
    if record.transfer_syntax_uid != DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        return

    try:
        await asyncio.to_thread(measure_inflation, io.BytesIO(data), limit)
    except InflatedSizeError as exc:
        raise NotAcceptable(f"Instance {record.key.sop_uid} cannot be {action}: {exc}.") from exc


def check_decoded(fmt: PixelFormat, frames: int, limit: int, sop_uid: str, action: str) -> None:
    """406 before decoding when ``frames`` frames of ``fmt`` would decode past ``limit`` bytes.

    The conformance statement answers 406 to rendered and transcoded requests for files too
    large; what costs memory and time is the decoded size, so that is what is bounded.
    """
    try:
        check_decoded_size(fmt, frames, limit)
    except DecodedSizeError as exc:
        raise NotAcceptable(f"Instance {sop_uid} cannot be {action}: {exc}.") from exc
