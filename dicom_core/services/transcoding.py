"""Retrieving whole instances in another transfer syntax (conformance statement, "Retrieve
transfer syntax"): Explicit VR Little Endian or JPEG 2000 Lossless, from the listed sources.

The transcoded instance is produced as a stream: the stored header is parsed once (a range
read up to the pixel data), then frames are read, decoded and re-encoded one at a time in a
worker thread. Native output streams as it is made; JPEG 2000 output needs every frame's
length for the Basic Offset Table before the first frame, so encoded frames wait in a spooled
temporary file (memory up to a bound, then disk) until the header can be written.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace

from pydicom.dataset import Dataset

from dicom_core.domain import pixels
from dicom_core.domain.model import InstanceRecord
from dicom_core.domain.pixels import EncodedFrame, PixelDataError, PixelFormat
from dicom_core.domain.transcode import (
    SEQUENCE_DELIMITER,
    encapsulated_pixel_data_header,
    fragment_item,
    header_bytes,
    native_pixel_data_header,
    parse_header,
    pixel_vr_before,
    transcode_whole_file,
)
from dicom_core.errors import NotAcceptable
from dicom_core.services.stored_pixels import StoredPixels, check_size
from dicom_core.storage.ports import BlobStore

AS_STORED = "*"
_SPOOL_MEMORY = 32 * 1024 * 1024
_CHUNK = 1 << 20


class TranscodingService:
    def __init__(self, blobs: BlobStore, *, max_transcode_bytes: int) -> None:
        self._blobs = blobs
        self._limit = max_transcode_bytes

    @staticmethod
    def needs_transcoding(record: InstanceRecord, target: str) -> bool:
        return target != AS_STORED and record.transfer_syntax_uid != target

    def check(self, records: Sequence[InstanceRecord], target: str) -> None:
        """406 before any byte is sent if one of ``records`` cannot be transcoded."""
        if target != AS_STORED and target not in pixels.TRANSCODE_TARGETS:
            raise NotAcceptable(f"Transcoding to transfer syntax {target} is not supported.")
        for record in records:
            if not self.needs_transcoding(record, target):
                continue
            source = record.transfer_syntax_uid
            has_pixels = record.frames is not None
            if has_pixels and not pixels.can_decode(source):
                raise NotAcceptable(
                    f"Instance {record.key.sop_uid} is stored as {source}, which cannot be"
                    f" transcoded to {target}. Ask for transfer-syntax=* to receive it as"
                    " stored."
                )
            check_size(record, self._limit, "transcoded")

    async def stream(self, record: InstanceRecord, target: str) -> AsyncIterator[bytes]:
        """The instance as a Part 10 file in ``target``, chunk by chunk.

        Raises NotAcceptable when the pixel data turns out not to be transcodable; callers
        that have not started their response yet turn it into a 406.
        """
        stored = StoredPixels(self._blobs, record)
        if not stored.has_frame_ranges:
            data = await stored.whole_file()
            yield await asyncio.to_thread(_whole_file, data, target)
            return
        source = record.transfer_syntax_uid
        prefix = await stored.header()
        ds = await asyncio.to_thread(parse_header, prefix)
        vr = "OB" if pixels.is_encapsulated(source) else pixel_vr_before(prefix, len(prefix))
        fmt = PixelFormat.from_dataset(ds, pixel_vr=vr)
        if fmt is None:
            raise NotAcceptable(
                f"Instance {record.key.sop_uid} lacks the Image Pixel attributes needed to"
                f" transcode it to {target}."
            )
        fmt = replace(fmt, number_of_frames=stored.frame_count)

        async def frame(number: int) -> EncodedFrame:
            data = await stored.frame(number)
            return await asyncio.to_thread(_transcode_frame, data, source, target, fmt)

        if target == pixels.JPEG_2000_LOSSLESS:
            async for chunk in _encapsulated(ds, source, target, stored.frame_count, frame):
                yield chunk
            return
        first = await frame(1)
        header = await asyncio.to_thread(
            header_bytes, ds, source_syntax=source, target_syntax=target, fmt=first.format
        )
        total = len(first.data) * stored.frame_count
        yield header + native_pixel_data_header(total, first.format.bits_allocated) + first.data
        for number in range(2, stored.frame_count + 1):
            encoded = await frame(number)
            if len(encoded.data) != len(first.data):
                raise NotAcceptable(f"Frame {number} decodes to a different size than frame 1.")
            yield encoded.data
        if total & 1:
            yield b"\x00"


async def _encapsulated(
    ds: Dataset,
    source: str,
    target: str,
    count: int,
    read_frame: Callable[[int], Awaitable[EncodedFrame]],
) -> AsyncIterator[bytes]:
    """Encode every frame into a spool, then write header, offset table, items, delimiter."""
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_MEMORY)  # noqa: SIM115
    try:
        lengths: list[int] = []
        out_format: PixelFormat | None = None
        for number in range(1, count + 1):
            encoded = await read_frame(number)
            item = fragment_item(encoded.data)
            lengths.append(len(item) - 8)
            await asyncio.to_thread(spool.write, item)
            if out_format is None or encoded.format.bits_stored > out_format.bits_stored:
                out_format = encoded.format
        assert out_format is not None
        header = await asyncio.to_thread(
            header_bytes, ds, source_syntax=source, target_syntax=target, fmt=out_format
        )
        yield header + encapsulated_pixel_data_header(lengths)
        await asyncio.to_thread(spool.seek, 0)
        while chunk := await asyncio.to_thread(spool.read, _CHUNK):
            yield chunk
        yield SEQUENCE_DELIMITER
    finally:
        spool.close()


def _transcode_frame(data: bytes, source: str, target: str, fmt: PixelFormat) -> EncodedFrame:
    try:
        return pixels.transcode_frame(data, source, target, fmt)
    except PixelDataError as exc:
        raise NotAcceptable(f"The instance cannot be transcoded to {target}: {exc}.") from exc


def _whole_file(data: bytes, target: str) -> bytes:
    try:
        return transcode_whole_file(data, target)
    except PixelDataError as exc:
        raise NotAcceptable(f"The instance cannot be transcoded to {target}: {exc}.") from exc
