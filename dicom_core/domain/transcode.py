"""Whole instances in another transfer syntax: header, pixel data framing (PS3.10, PS3.5 A.4).

A transcoded instance is written in three pieces so that the service can stream it frame by
frame: the Part 10 header (preamble, file meta, every attribute before Pixel Data, updated to
describe the new encoding), the Pixel Data element framing, and the frames themselves
(:mod:`dicom_core.domain.pixels` transcodes those). This module builds the first two from
bytes it is handed; it reads no file and decodes no pixels.

Why not ``Dataset.decompress()`` / ``compress()``: they hold every decoded frame in memory at
once, and a multi-frame instance can decode to many times its stored size. Here only the
header is parsed; frames pass through one at a time. The pydicom route remains for instances
whose frames were not mapped at store time (see :func:`transcode_whole_file`).
"""

from __future__ import annotations

import io
import struct
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Final

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import generate_frames
from pydicom.filewriter import dcmwrite
from pydicom.pixels.utils import iter_pixels
from pydicom.tag import Tag
from pydicom.uid import UID

from dicom_core.domain.deflate import InflationGuard
from dicom_core.domain.pixels import (
    EXPLICIT_VR_BIG_ENDIAN,
    JPEG_2000_LOSSLESS,
    LOSSY_SOURCES,
    TRANSCODE_TARGETS,
    DecodedFrame,
    PixelDataError,
    PixelFormat,
    check_codestream,
    check_decoded_size,
    encode_jpeg2000_lossless,
    native_bytes,
)
from dicom_core.domain.validation.messages import brief

#: Item and sequence delimiter tags of encapsulated pixel data (PS3.5 A.4), little endian.
_ITEM: Final = b"\xfe\xff\x00\xe0"
SEQUENCE_DELIMITER: Final = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
_UNDEFINED_LENGTH: Final = 0xFFFFFFFF
# Elements describing the old encapsulation; wrong once the pixel data is re-encoded.
_ENCAPSULATION_TAGS: Final = (0x7FE00001, 0x7FE00002)  # Extended Offset Table (+ Lengths)
# Byte width of the values that must be swapped when Big Endian becomes Little Endian: the
# writer converts every other VR itself (pydicom's dcmwrite documents this split).
_SWAP_WIDTHS: Final = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


def parse_header(prefix: bytes) -> Dataset:
    """Parse the stored bytes that precede the pixel data (file meta included).

    ``prefix`` ends at or after the Pixel Data element header; parsing stops there, so the
    pixel data itself is never read.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return dcmread(io.BytesIO(prefix), stop_before_pixels=True, force=True)
        except Exception as exc:
            raise PixelDataError(f"the stored header could not be parsed: {brief(exc)}") from exc


def pixel_vr_before(prefix: bytes, value_offset: int) -> str:
    """The VR of a native Pixel Data element whose value starts at ``value_offset``.

    Explicit VR OB/OW element headers are 12 bytes: tag, VR, two reserved bytes, length.
    """
    vr = prefix[value_offset - 8 : value_offset - 6]
    return vr.decode("ascii", "replace") if vr in (b"OB", b"OW") else "OW"


def _swap_to_little_endian(ds: Dataset) -> None:
    """Byte-swap the values pydicom's writer does not convert, at every depth."""
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value or ():
                _swap_to_little_endian(item)
            continue
        width = _SWAP_WIDTHS.get(str(elem.VR))
        value = elem.value
        if width and isinstance(value, bytes | bytearray) and len(value) % width == 0:
            elem.value = np.frombuffer(value, dtype=f">u{width}").astype(f"<u{width}").tobytes()


def header_bytes(ds: Dataset, *, source_syntax: str, target_syntax: str, fmt: PixelFormat) -> bytes:
    """The Part 10 bytes of ``ds`` re-described for ``target_syntax`` and pixels of ``fmt``.

    ``fmt`` is the format of the transcoded frames: the photometric interpretation, Bits
    Stored and Pixel Representation they really have, colour-by-pixel. The SOP Instance UID
    is kept: WADO-RS returns the same instance in another encoding, not a new instance.
    """
    if target_syntax not in TRANSCODE_TARGETS:
        raise PixelDataError(f"transcoding to {target_syntax} is not supported")
    if source_syntax == EXPLICIT_VR_BIG_ENDIAN:
        _swap_to_little_endian(ds)
    for tag in _ENCAPSULATION_TAGS:
        if tag in ds:
            del ds[tag]
    ds.PhotometricInterpretation = fmt.photometric_interpretation
    if fmt.samples_per_pixel > 1:
        ds.PlanarConfiguration = 0
    elif "PlanarConfiguration" in ds:
        del ds.PlanarConfiguration
    if ds.get("BitsStored") != fmt.bits_stored:
        ds.BitsStored = fmt.bits_stored
        ds.HighBit = fmt.bits_stored - 1
    if ds.get("PixelRepresentation") != fmt.pixel_representation:
        ds.PixelRepresentation = fmt.pixel_representation
    if source_syntax in LOSSY_SOURCES:
        ds.LossyImageCompression = "01"
    meta = ds.file_meta if isinstance(getattr(ds, "file_meta", None), Dataset) else None
    new_meta = FileMetaDataset()
    if meta is not None:
        for elem in meta:
            new_meta.add(elem)
    new_meta.TransferSyntaxUID = UID(target_syntax)
    if "SOPClassUID" in ds and "MediaStorageSOPClassUID" not in new_meta:
        new_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    if "SOPInstanceUID" in ds and "MediaStorageSOPInstanceUID" not in new_meta:
        new_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if Tag(0x00020000) in new_meta:
        del new_meta[0x00020000]  # the writer recomputes the group length
    ds.file_meta = new_meta
    return _write(ds)


def native_pixel_data_header(length: int, bits_allocated: int) -> bytes:
    """Element header of native Pixel Data holding ``length`` bytes (padded to even)."""
    vr = b"OB" if bits_allocated <= 8 else b"OW"
    return struct.pack("<HH2sHI", 0x7FE0, 0x0010, vr, 0, length + (length & 1))


def encapsulated_pixel_data_header(frame_lengths: Iterable[int]) -> bytes:
    """Pixel Data element header and Basic Offset Table for frames of these (even) lengths.

    Each offset is the distance from the first fragment item to the frame's item (PS3.5
    A.4, Table A.4-1), one fragment per frame.
    """
    offsets: list[int] = []
    position = 0
    for length in frame_lengths:
        offsets.append(position)
        position += 8 + length
    if position > 0xFFFFFFFF:
        raise PixelDataError("the encoded frames are too large for a Basic Offset Table")
    table = struct.pack(f"<{len(offsets)}I", *offsets)
    return (
        struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, _UNDEFINED_LENGTH)
        + _ITEM
        + struct.pack("<I", len(table))
        + table
    )


def fragment_item(data: bytes) -> bytes:
    """One frame as a fragment item: item header plus data padded to even length."""
    padded = data + b"\x00" if len(data) & 1 else data
    return _ITEM + struct.pack("<I", len(padded)) + padded


def transcode_whole_file(data: bytes, target_syntax: str, *, max_decoded_bytes: int) -> bytes:
    """Transcode a complete Part 10 file in memory, with pydicom.

    The fallback for instances without frame byte ranges: files without pixel data (only the
    encoding changes), and pixel data whose layout did not match its attributes at store time.
    The caller bounds ``data`` by the transcoding size limit; every frame is held decoded at
    once here, so their total is checked against ``max_decoded_bytes`` before decoding.
    """
    if target_syntax not in TRANSCODE_TARGETS:
        raise PixelDataError(f"transcoding to {target_syntax} is not supported")
    ds = parse_file(data, max_inflated=max_decoded_bytes)
    source = str(getattr(ds.file_meta, "TransferSyntaxUID", "") or "")
    if "PixelData" not in ds:
        if source == EXPLICIT_VR_BIG_ENDIAN:
            _swap_to_little_endian(ds)
        ds.file_meta.TransferSyntaxUID = UID(target_syntax)
        return _write(ds)
    fmt = PixelFormat.from_dataset(ds)
    if fmt is None:
        raise PixelDataError("the instance's Image Pixel attributes are incomplete")
    check_decoded_size(fmt, fmt.number_of_frames, max_decoded_bytes)
    frames = list(decoded_frames(ds, source))
    if target_syntax == JPEG_2000_LOSSLESS:
        encoded = [encode_jpeg2000_lossless(frame) for frame in frames]
        fmt = encoded[0].format
        pixel = encapsulated_pixel_data(f.data for f in encoded)
    else:
        fmt = frames[0].format
        raw = b"".join(native_bytes(frame) for frame in frames)
        pixel = native_pixel_data_header(len(raw), fmt.bits_allocated) + raw
        pixel += b"\x00" if len(raw) & 1 else b""
    del ds.PixelData
    header = header_bytes(ds, source_syntax=source, target_syntax=target_syntax, fmt=fmt)
    return header + pixel


def parse_file(data: bytes, *, max_inflated: int) -> Dataset:
    """Parse a complete stored file, pixel data included (fallback paths only). A deflated
    file is measured first: past ``max_inflated`` bytes inflated, ``PixelDataError`` (callers
    check it before their status line with ``measure_inflation``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return dcmread(InflationGuard(io.BytesIO(data), max_inflated), force=True)
        except Exception as exc:
            raise PixelDataError(f"the stored file could not be parsed: {brief(exc)}") from exc


def _write(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            dcmwrite(buffer, ds, enforce_file_format=True, implicit_vr=False, little_endian=True)
        except Exception as exc:
            raise PixelDataError(f"the file could not be re-encoded: {brief(exc)}") from exc
    return buffer.getvalue()


def encapsulated_pixel_data(frames: Iterable[bytes]) -> bytes:
    """Complete encapsulated Pixel Data (header, offset table, items, delimiter) in memory."""
    items = [fragment_item(frame) for frame in frames]
    return (
        encapsulated_pixel_data_header(len(item) - 8 for item in items)
        + b"".join(items)
        + SEQUENCE_DELIMITER
    )


def decoded_frames(
    ds: Dataset, source: str, *, as_rgb: bool | None = None
) -> Iterator[DecodedFrame]:
    """Every frame of a fully parsed dataset, decoded by pydicom (the fallback path).

    Follows the colour rule of :mod:`dicom_core.domain.pixels`: compressed sources come back
    as RGB, native ones keep their colour space (YBR_FULL_422 samples are upsampled, so
    they become YBR_FULL).
    """
    fmt = PixelFormat.from_dataset(ds)
    if fmt is None:
        raise PixelDataError("the instance's Image Pixel attributes are incomplete")
    encapsulated = bool(UID(source).is_encapsulated) if source else False
    convert = encapsulated if as_rgb is None else as_rgb
    photometric = fmt.photometric_interpretation
    if convert and photometric.startswith("YBR"):
        photometric = "RGB"
    elif photometric == "YBR_FULL_422":
        photometric = "YBR_FULL"
    out = replace(fmt, photometric_interpretation=photometric, planar_configuration=0)
    single = replace(out, number_of_frames=1)
    if encapsulated:
        _check_codestreams(ds, source, fmt)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for array in iter_pixels(ds, as_rgb=convert):
                yield DecodedFrame(array=array, format=single)
    except Exception as exc:
        raise PixelDataError(f"the pixel data could not be decoded: {brief(exc)}") from exc


def _check_codestreams(ds: Dataset, source: str, fmt: PixelFormat) -> None:
    """Read every compressed frame's header before pydicom decodes any of them (decoders size
    their output from the codestream; see :func:`dicom_core.domain.pixels.check_codestream`)."""
    try:
        fragments = list(generate_frames(ds.PixelData, number_of_frames=fmt.number_of_frames))
    except Exception as exc:
        raise PixelDataError(
            f"the encapsulated pixel data cannot be split into frames: {brief(exc)}"
        ) from exc
    for data in fragments:
        check_codestream(data, source, fmt)
