"""Retrieve rendered (PS3.18 10.4.1.1.3): one frame of an instance as a JPEG or PNG image.

Rendering needs the lookup tables and windows of the header (the precomputed DICOM JSON
leaves binary VRs such as palette LUT data out), so the stored header is parsed from a range
read that stops before the pixel data; the frame comes from its own range read. Decoding and
rendering run in a worker thread. Files over the size limit, frames whose decoded size passes
the decoding limit and frames whose codestream header contradicts the instance's attributes
answer 406 before any decoding (conformance statement, "Retrieve response status codes").
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass

from pydicom.dataset import Dataset

from dicom_core.domain import pixels
from dicom_core.domain.model import InstanceKey
from dicom_core.domain.pixels import (
    PixelDataError,
    PixelFormat,
    check_decoded_size,
    decode_frame,
)
from dicom_core.domain.render import render_frame
from dicom_core.domain.transcode import decoded_frames, parse_file, parse_header, pixel_vr_before
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

#: Parsed headers kept per stored file: enough for the instances a viewer pages through.
_HEADER_CACHE_SIZE = 256


@dataclass(frozen=True, slots=True)
class _RenderHeader:
    """A stored file's parsed header, ready to render any of its frames.

    The first render converts the elements rendering reads from their raw form before the
    header is shared; an element first read later (another frame's functional group) is
    converted on the spot, which pydicom does idempotently.
    """

    dataset: Dataset
    format: PixelFormat


class RenderingService:
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
        # Keyed by blob key, which names one immutable stored version: a replaced instance
        # gets a new key, so an entry can never go stale.
        self._headers: OrderedDict[str, _RenderHeader] = OrderedDict()

    async def render(
        self, key: InstanceKey, frame_number: int, *, media_type: str, quality: int
    ) -> bytes:
        """Render frame ``frame_number`` (1-based) of the instance ``key`` names."""
        record = await get_record(self._index, key)
        stored = StoredPixels(self._blobs, record, self._index)
        if not stored.has_frame_ranges:
            fmt = await pixel_format(self._index, record)
            if fmt is None:
                raise NotFound(f"Instance {key.sop_uid} has no pixel data to render.")
            check_frame_numbers([frame_number], fmt.number_of_frames, key.sop_uid)
            check_size(record, self._limit, "rendered")
            # The fallback decodes frames 1 to frame_number to reach the one asked for.
            check_decoded(fmt, frame_number, self._decoded_limit, key.sop_uid, "rendered")
            data = await stored.whole_file()
            await check_inflated(record, data, self._decoded_limit, "rendered")
            return await asyncio.to_thread(
                _render_parsed, data, frame_number, media_type, quality, self._decoded_limit
            )
        check_frame_numbers([frame_number], stored.frame_count, key.sop_uid)
        check_size(record, self._limit, "rendered")
        source = record.transfer_syntax_uid
        if not pixels.can_decode(source):
            raise NotAcceptable(
                f"Instance {key.sop_uid} is stored as {source}, which cannot be rendered."
            )
        limit = self._decoded_limit
        cached = self._headers.get(record.blob_key)
        if cached is not None:
            self._headers.move_to_end(record.blob_key)
            frame = await stored.frame(frame_number)
            return await asyncio.to_thread(
                _render, cached, frame, source, frame_number, media_type, quality, limit
            )
        prefix, frame = await stored.header_and_frame(frame_number)
        header, image = await asyncio.to_thread(
            _parse_and_render, prefix, frame, source, frame_number, media_type, quality, limit
        )
        self._headers[record.blob_key] = header
        if len(self._headers) > _HEADER_CACHE_SIZE:
            self._headers.popitem(last=False)
        return image


def _parse_and_render(
    prefix: bytes,
    frame: bytes,
    source: str,
    number: int,
    media_type: str,
    quality: int,
    limit: int,
) -> tuple[_RenderHeader, bytes]:
    """Parse the stored header, then render with it (which converts what rendering reads)."""
    try:
        dataset = parse_header(prefix)
        vr = "OB" if pixels.is_encapsulated(source) else pixel_vr_before(prefix, len(prefix))
        fmt = PixelFormat.from_dataset(dataset, pixel_vr=vr)
    except PixelDataError as exc:
        raise NotAcceptable(f"The instance cannot be rendered: {exc}.") from exc
    if fmt is None:
        raise NotAcceptable(
            "The instance cannot be rendered: its Image Pixel attributes are incomplete."
        )
    header = _RenderHeader(dataset=dataset, format=fmt)
    return header, _render(header, frame, source, number, media_type, quality, limit)


def _render(
    header: _RenderHeader,
    frame: bytes,
    source: str,
    number: int,
    media_type: str,
    quality: int,
    limit: int,
) -> bytes:
    """Decode and render one frame; the size limit and the codestream header are checked
    first (``decode_frame`` reads the header), so a refused frame allocates nothing."""
    try:
        check_decoded_size(header.format, 1, limit)
        decoded = decode_frame(frame, source, header.format, as_rgb=True)
        return render_frame(
            header.dataset, decoded, frame_index=number - 1, media_type=media_type, quality=quality
        )
    except PixelDataError as exc:
        raise NotAcceptable(f"The frame cannot be rendered: {exc}.") from exc


def _render_parsed(
    data: bytes, number: int, media_type: str, quality: int, max_inflated: int
) -> bytes:
    """The fallback for instances without frame ranges: parse the whole file once."""
    try:
        ds: Dataset = parse_file(data, max_inflated=max_inflated)
        if "PixelData" not in ds:
            raise NotFound("The instance has no pixel data to render.")
        source = str(getattr(ds.file_meta, "TransferSyntaxUID", "") or "")
        for index, decoded in enumerate(decoded_frames(ds, source, as_rgb=True)):
            if index == number - 1:
                return render_frame(
                    ds, decoded, frame_index=index, media_type=media_type, quality=quality
                )
    except PixelDataError as exc:
        raise NotAcceptable(f"The frame cannot be rendered: {exc}.") from exc
    raise NotFound(f"Frame {number} does not exist in this instance.")
