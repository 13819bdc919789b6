"""Retrieve frames (PS3.18 10.4.1.1.2 "Frame Pixel Data"): which bytes answer a frame request.

As stored, a frame is a byte-range read of the stored file at the offsets computed at store
time, whatever the file's size. In another transfer syntax, the same read feeds a decoder for
that one frame (never the whole file), in a worker thread so the event loop keeps serving.
Everything that can fail is checked by :meth:`FrameService.prepare`, before the caller starts
a response: unknown frames (404), an untranscodable source, a file over the size limit or
frames whose decoded size passes the decoding limit (406). A frame whose codestream header
contradicts the instance's attributes, or that does not decode, fails when it is read (406);
the web layer reads the first frame before it answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial

from pydicom.dataset import Dataset
from pydicom.encaps import get_frame

from dicom_core.domain import pixels
from dicom_core.domain.model import InstanceKey, InstanceRecord
from dicom_core.domain.pixels import PixelDataError, PixelFormat
from dicom_core.domain.transcode import decoded_frames, parse_file, pixel_vr_before
from dicom_core.errors import NotAcceptable, NotFound
from dicom_core.services.stored_pixels import (
    StoredPixels,
    check_decoded,
    check_frame_numbers,
    check_inflated,
    check_size,
    get_record,
    pixel_format,
)
from dicom_core.storage.ports import BlobStore, IndexStore

FrameReader = Callable[[int], Awaitable[bytes]]


@dataclass(frozen=True, slots=True)
class FrameSet:
    """Frames of one instance, ready to read, all in ``transfer_syntax``.

    ``frame_length`` estimates one frame's size (exact for native data), so the web layer can
    choose between one buffered body and a streamed one.
    """

    record: InstanceRecord
    numbers: tuple[int, ...]
    transfer_syntax: str
    frame_length: int
    reader: FrameReader

    async def read(self, number: int) -> bytes:
        return await self.reader(number)


class FrameService:
    def __init__(
        self,
        index: IndexStore,
        blobs: BlobStore,
        *,
        max_transcode_bytes: int,
        max_decoded_bytes: int,
    ) -> None:
        self._index = index
        self._blobs = blobs
        self._limit = max_transcode_bytes
        self._decoded_limit = max_decoded_bytes

    async def find_instance(self, key: InstanceKey) -> InstanceRecord:
        return await get_record(self._index, key)

    async def prepare(
        self, record: InstanceRecord, numbers: Sequence[int], target: str | None
    ) -> FrameSet:
        """Check a frame request and return its reader.

        ``target`` is the transfer syntax wanted, or None for as stored.
        """
        stored = StoredPixels(self._blobs, record, self._index)
        source = record.transfer_syntax_uid
        as_stored = target is None or target == source
        if not stored.has_frame_ranges:
            return await self._prepare_unmapped(stored, tuple(numbers), target)
        check_frame_numbers(numbers, stored.frame_count, record.key.sop_uid)
        frames = record.frames
        assert frames is not None
        estimate = frames.frame_length or max(sum(length for _, length in frames.fragments[0]), 1)
        if as_stored:
            return FrameSet(record, tuple(numbers), source, estimate, stored.frame)
        assert target is not None
        self._check_transcodable(record, target)
        fmt = await pixel_format(self._index, record)
        if fmt is None:
            raise NotAcceptable(
                f"Instance {record.key.sop_uid} lacks the Image Pixel attributes needed to"
                " transcode its frames; ask for transfer-syntax=*."
            )
        check_decoded(
            fmt, len(numbers), self._decoded_limit, record.key.sop_uid, f"transcoded to {target}"
        )
        if source == pixels.EXPLICIT_VR_BIG_ENDIAN and fmt.bits_allocated <= 8:
            offset = stored.pixel_data_offset
            head = await stored.read_range(offset - 12, 12)
            fmt = replace(fmt, pixel_vr=pixel_vr_before(head, 12))

        async def transcoded(number: int) -> bytes:
            data = await stored.frame(number)
            encoded = await asyncio.to_thread(_transcode, data, source, target, fmt)
            return encoded

        return FrameSet(record, tuple(numbers), target, fmt.native_frame_length, transcoded)

    def _check_transcodable(
        self, record: InstanceRecord, target: str, source: str | None = None
    ) -> None:
        """``source``: the syntax the frames are read in, when not the stored one."""
        source = source or record.transfer_syntax_uid
        if target not in pixels.TRANSCODE_TARGETS:
            raise NotAcceptable(f"Frames cannot be transcoded to transfer syntax {target}.")
        if not pixels.can_decode(source):
            raise NotAcceptable(
                f"Instance {record.key.sop_uid} is stored as {source}, which cannot be"
                f" transcoded to {target}; ask for transfer-syntax=* to receive it as stored."
            )
        check_size(record, self._limit, "transcoded")

    async def _prepare_unmapped(
        self, stored: StoredPixels, numbers: tuple[int, ...], target: str | None
    ) -> FrameSet:
        """Frames of an instance whose frame ranges were not computed at store time.

        That happens for pixel data whose layout contradicted its attributes (subsampled
        YBR_FULL_422 native data, for one) and for instances without pixel data. The whole
        file is parsed once, so this path is bounded by the transcoding size limit.
        """
        record = stored.record
        fmt = await pixel_format(self._index, record)
        if fmt is None:
            raise NotFound(f"Instance {record.key.sop_uid} has no pixel data, so no frames.")
        check_frame_numbers(numbers, fmt.number_of_frames, record.key.sop_uid)
        # The whole file is parsed here, which inflates a deflated one: its frames are read
        # in the syntax they exist in, "as stored" included.
        source = pixels.frames_syntax(record.transfer_syntax_uid)
        wanted = target or source
        if pixels.is_encapsulated(source) and wanted == source:
            check_size(record, self._limit, "split into frames without a frame index")
        else:
            wanted = target or pixels.EXPLICIT_VR_LITTLE_ENDIAN
            self._check_transcodable(record, wanted, source)
            # Frame n is found by decoding frames 1 to n of the parsed file.
            check_decoded(
                fmt, sum(numbers), self._decoded_limit, record.key.sop_uid, f"read as {wanted}"
            )
        lock = asyncio.Lock()
        parsed: list[Dataset] = []
        read_already: list[bytes] = []
        if record.transfer_syntax_uid != source:  # deflated: its inflated size decides now
            read_already.append(await stored.whole_file())
            await check_inflated(record, read_already[0], self._decoded_limit, f"read as {wanted}")

        async def dataset() -> Dataset:
            async with lock:
                if not parsed:
                    data = read_already.pop() if read_already else await stored.whole_file()
                    parsed.append(
                        await asyncio.to_thread(
                            partial(parse_file, max_inflated=self._decoded_limit), data
                        )
                    )
                return parsed[0]

        async def read(number: int) -> bytes:
            ds = await dataset()
            return await asyncio.to_thread(_unmapped_frame, ds, number, source, wanted)

        return FrameSet(record, numbers, wanted, fmt.native_frame_length, read)


#: Pixel Data, Float Pixel Data and Double Float Pixel Data.
_PIXEL_DATA_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)


def _transcode(data: bytes, source: str, target: str, fmt: PixelFormat) -> bytes:
    try:
        return pixels.transcode_frame(data, source, target, fmt).data
    except PixelDataError as exc:
        raise NotAcceptable(f"The frame cannot be transcoded to {target}: {exc}.") from exc


def _unmapped_frame(ds: Dataset, number: int, source: str, target: str) -> bytes:
    """One frame of a fully parsed dataset: as stored when ``target`` is its own syntax
    (still subsampled, for YBR_FULL_422, as its attributes say), else transcoded."""
    if not any(tag in ds for tag in _PIXEL_DATA_TAGS):
        # Its Image Pixel attributes alone (Rows, Columns) made it look like an image.
        raise NotFound(f"Instance {ds.get('SOPInstanceUID', '')} has no pixel data, so no frames.")
    try:
        count = int(ds.get("NumberOfFrames", 1) or 1)
        if target == source and pixels.is_encapsulated(source):
            return bytes(get_frame(ds.PixelData, number - 1, number_of_frames=count))
        if target == source and len(ds.PixelData) % count == 0:
            size = len(ds.PixelData) // count
            return bytes(ds.PixelData[(number - 1) * size : number * size])
        for index, frame in enumerate(decoded_frames(ds, source)):
            if index == number - 1:
                if target == pixels.JPEG_2000_LOSSLESS:
                    return pixels.encode_jpeg2000_lossless(frame).data
                return pixels.native_bytes(frame)
    except Exception as exc:
        raise NotAcceptable(f"The frame cannot be read as {target}: {exc}.") from exc
    raise NotFound(f"Frame {number} does not exist in instance {ds.get('SOPInstanceUID', '')}.")
