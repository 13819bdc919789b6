"""Retrieving whole instances in another transfer syntax (conformance statement, "Retrieve
transfer syntax"): Explicit VR Little Endian or JPEG 2000 Lossless, from the listed sources.

The stored header is parsed once (a range read up to the pixel data), then frames are read,
decoded and re-encoded one at a time in a worker thread, so memory holds one decoded frame.
Before anything is decoded, the instance's decoded size (every frame) is checked against the
decoding limit, and each frame's codestream header against the instance's attributes.

Every frame is encoded before the first byte of the instance is produced: encoded frames wait
in a spooled temporary file (memory up to a bound, then disk). JPEG 2000 output needs every
frame's length for the Basic Offset Table anyway; for native output it means that a frame
that fails to decode is known before the caller answers (a 406 for a single instance, or,
inside a multipart answer already under way, before that instance's part has any content).
A transcoded instance is never a well-formed file with fewer frames than it declares.
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
from dicom_core.services.stored_pixels import (
    StoredPixels,
    check_decoded,
    check_inflated,
    check_size,
)
from dicom_core.storage.ports import BlobReader, BlobStore

AS_STORED = "*"
_SPOOL_MEMORY = 32 * 1024 * 1024
_CHUNK = 1 << 20


class TranscodingService:
    def __init__(
        self, blobs: BlobStore, *, max_transcode_bytes: int, max_decoded_bytes: int
    ) -> None:
        self._blobs = blobs
        self._limit = max_transcode_bytes
        self._decoded_limit = max_decoded_bytes

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

    async def stream(
        self, record: InstanceRecord, target: str, reader: BlobReader | None = None
    ) -> AsyncIterator[bytes]:
        """The instance as a Part 10 file in ``target``, chunk by chunk.

        ``reader`` is the file as opened before the response started: reading through it,
        a delete racing a multi-instance answer cannot cut a later instance short.
        Raises NotAcceptable when the pixel data turns out not to be transcodable; callers
        that have not started their response yet turn it into a 406.
        """
        stored = StoredPixels(self._blobs, record, reader=reader)
        if not stored.has_frame_ranges:
            data = await stored.whole_file()
            await check_inflated(record, data, self._decoded_limit, f"transcoded to {target}")
            yield await asyncio.to_thread(_whole_file, data, target, self._decoded_limit)
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
        check_decoded(
            fmt,
            stored.frame_count,
            self._decoded_limit,
            record.key.sop_uid,
            f"transcoded to {target}",
        )

        async def frame(number: int) -> EncodedFrame:
            data = await stored.frame(number)
            return await asyncio.to_thread(_transcode_frame, data, source, target, fmt)

        async for chunk in _spooled(ds, source, target, stored.frame_count, frame):
            yield chunk


async def _spooled(
    ds: Dataset,
    source: str,
    target: str,
    count: int,
    read_frame: Callable[[int], Awaitable[EncodedFrame]],
) -> AsyncIterator[bytes]:
    """Encode every frame into a spool, then write the header, the pixel data framing (offset
    table and items for JPEG 2000, one element for native data) and the frames."""
    encapsulated = target == pixels.JPEG_2000_LOSSLESS
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_MEMORY)  # noqa: SIM115
    try:
        lengths: list[int] = []
        out_format: PixelFormat | None = None
        for number in range(1, count + 1):
            encoded = await read_frame(number)
            if encapsulated:
                item = fragment_item(encoded.data)
                lengths.append(len(item) - 8)
                await asyncio.to_thread(spool.write, item)
                if out_format is None or encoded.format.bits_stored > out_format.bits_stored:
                    out_format = encoded.format
                continue
            if lengths and len(encoded.data) != lengths[0]:
                raise NotAcceptable(f"Frame {number} decodes to a different size than frame 1.")
            lengths.append(len(encoded.data))
            await asyncio.to_thread(spool.write, encoded.data)
            out_format = out_format or encoded.format
        assert out_format is not None
        header = await asyncio.to_thread(
            header_bytes, ds, source_syntax=source, target_syntax=target, fmt=out_format
        )
        total = sum(lengths)
        if encapsulated:
            yield header + encapsulated_pixel_data_header(lengths)
        else:
            yield header + native_pixel_data_header(total, out_format.bits_allocated)
        await asyncio.to_thread(spool.seek, 0)
        while chunk := await asyncio.to_thread(spool.read, _CHUNK):
            yield chunk
        if encapsulated:
            yield SEQUENCE_DELIMITER
        elif total & 1:
            yield b"\x00"
    finally:
        spool.close()


def _transcode_frame(data: bytes, source: str, target: str, fmt: PixelFormat) -> EncodedFrame:
    try:
        return pixels.transcode_frame(data, source, target, fmt)
    except PixelDataError as exc:
        raise NotAcceptable(f"The instance cannot be transcoded to {target}: {exc}.") from exc


def _whole_file(data: bytes, target: str, max_decoded_bytes: int) -> bytes:
    try:
        return transcode_whole_file(data, target, max_decoded_bytes=max_decoded_bytes)
    except PixelDataError as exc:
        raise NotAcceptable(f"The instance cannot be transcoded to {target}: {exc}.") from exc
