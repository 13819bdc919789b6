"""Per-frame byte ranges of a stored file, computed once at store time (PS3.5 A.4, 8.2).

A frame request is then a byte-range read of the stored file: no parsing of the file,
no decoding, whatever its size. For native pixel data frames are fixed-size slices of the
Pixel Data value; for encapsulated data they are one or more fragments, mapped to frames
with the Basic Offset Table, the Extended Offset Table, or the codec's start-of-image marker.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

from dicom_core.domain.model import FrameIndex

_ITEM = 0xFFFEE000
_SEQUENCE_DELIMITER = 0xFFFEE0DD
_PIXEL_TAGS = {0x7FE00010, 0x7FE00008, 0x7FE00009}
#: The VRs PS3.5 gives Pixel Data and its float forms (UN: read from an unknown VR).
_PIXEL_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN"}
_LONG_LENGTH_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT"}
_UNDEFINED = 0xFFFFFFFF
# Markers that open a compressed frame: JPEG (SOI), JPEG 2000 codestream (SOC+SIZ).
_START_MARKERS = (b"\xff\xd8", b"\xff\x4f\xff\x51")


class FrameLayoutError(ValueError):
    """The pixel data is not laid out as its attributes say; the message names the mismatch."""


class TruncatedPixelData(FrameLayoutError):
    """The file ends before its pixel data does: an incomplete file, whose frames no reader
    can ever be given (unlike a layout mismatch, which leaves the stored bytes whole)."""


def _read_tag(f: BinaryIO, little: bool) -> tuple[int, int]:
    raw = f.read(8)
    if len(raw) < 8:
        raise FrameLayoutError("the file ends inside the pixel data element")
    group, element, length = struct.unpack("<HHL" if little else ">HHL", raw)
    return (group << 16) | element, length


def frame_index(
    f: BinaryIO,
    *,
    little_endian: bool,
    number_of_frames: int,
    rows: int,
    columns: int,
    samples_per_pixel: int,
    bits_allocated: int,
    extended_offsets: tuple[list[int], list[int]] | None = None,
    file_size: int | None = None,
) -> FrameIndex | None:
    """Map frames to byte ranges, starting with ``f`` positioned at the Pixel Data tag.

    Returns None when the file has no pixel data. Raises FrameLayoutError when the pixel data
    contradicts the image attributes, so the store can report it instead of serving garbage,
    and TruncatedPixelData when its value runs past ``file_size`` (the file's end).
    """
    head = f.read(8)
    if len(head) < 8:
        return None
    endian = "<" if little_endian else ">"
    group, element = struct.unpack(endian + "HH", head[:4])
    tag = (group << 16) | element
    if tag not in _PIXEL_TAGS:
        return None
    vr = head[4:6]
    # A header that names no pixel VR (an implicit VR header inside an explicit VR file, which
    # pydicom reads) gives a length that cannot be trusted to say where the file should end.
    trusted = file_size if vr in _PIXEL_VRS else None
    if vr in _LONG_LENGTH_VRS:
        extra = f.read(4)
        if len(extra) < 4:
            raise FrameLayoutError("the file ends inside the pixel data element header")
        (length,) = struct.unpack(endian + "L", extra)
    else:
        (length,) = struct.unpack(endian + "H", head[6:8])
    value_start = f.tell()
    frames = max(number_of_frames, 1)
    if length != _UNDEFINED:
        return _native(
            value_start, length, frames, rows, columns, samples_per_pixel, bits_allocated, trusted
        )
    return _encapsulated(f, little_endian, frames, extended_offsets, trusted)


def _native(
    start: int,
    length: int,
    frames: int,
    rows: int,
    columns: int,
    samples: int,
    bits: int,
    file_size: int | None,
) -> FrameIndex:
    if file_size is not None and start + length > file_size + 1:
        # More than a lost padding byte: the value, and so the frames, are cut short.
        raise TruncatedPixelData(
            f"Pixel Data declares {length} bytes but the file ends after"
            f" {max(file_size - start, 0)} of them"
        )
    pixel_bits = rows * columns * samples * bits
    if pixel_bits <= 0:
        raise FrameLayoutError("Rows, Columns, SamplesPerPixel or BitsAllocated is missing")
    if bits != 1 and bits % 8:
        # PS3.5 8.1.1: 1 or a multiple of 8. Byte ranges computed from another value would
        # serve frames of the wrong length (a probe's BitsAllocated 7 gave 56 of 128 bytes).
        raise FrameLayoutError(
            f"BitsAllocated is {bits}; native pixel data needs 1 or a multiple of 8"
        )
    if pixel_bits % 8:
        # Bit-packed frames (BitsAllocated 1) need not start on a byte boundary; they can only
        # be served by decoding, so no byte ranges are recorded. They must still be whole.
        needed = (pixel_bits * frames + 7) // 8
        if file_size is not None and start + needed > file_size:
            raise TruncatedPixelData(
                f"{frames} bit-packed frame(s) need {needed} bytes of Pixel Data but the file"
                f" ends after {max(file_size - start, 0)} of them"
            )
        return FrameIndex(encapsulated=False, fragments=(), frame_length=0)
    frame_length = pixel_bits // 8
    if frame_length * frames > length:
        raise FrameLayoutError(
            f"Pixel Data holds {length} bytes but {frames} frame(s) of "
            f"{rows}x{columns}x{samples} at {bits} bits need {frame_length * frames}"
        )
    if file_size is not None and start + frame_length * frames > file_size:
        # A lost padding byte is forgiven (above) only while every frame is whole.
        raise TruncatedPixelData(
            f"{frames} frame(s) need {frame_length * frames} bytes of Pixel Data but the file"
            f" ends after {max(file_size - start, 0)} of them"
        )
    fragments = tuple(((start + i * frame_length, frame_length),) for i in range(frames))
    return FrameIndex(encapsulated=False, fragments=fragments, frame_length=frame_length)


def _encapsulated(
    f: BinaryIO,
    little: bool,
    frames: int,
    extended_offsets: tuple[list[int], list[int]] | None,
    file_size: int | None,
) -> FrameIndex:
    if file_size is not None and f.tell() + 8 > file_size:
        raise TruncatedPixelData("the file ends before the Basic Offset Table")
    tag, bot_length = _read_tag(f, little)
    if tag != _ITEM:
        raise FrameLayoutError("encapsulated Pixel Data does not start with a Basic Offset Table")
    if bot_length == _UNDEFINED:
        raise FrameLayoutError("the Basic Offset Table has an undefined length")
    bot_raw = f.read(bot_length)
    if len(bot_raw) < bot_length:
        if file_size is not None:
            raise TruncatedPixelData("the file ends inside the Basic Offset Table")
        raise FrameLayoutError("the file ends inside the Basic Offset Table")
    first_item = f.tell()
    # (offset of item header relative to first fragment item, data offset in file, length)
    items: list[tuple[int, int, int]] = []
    while True:
        position = f.tell()
        if file_size is not None and position + 8 > file_size:
            # Even right after a whole fragment: without its sequence delimiter the file is
            # incomplete (pydicom cannot read it either), and frames may be missing with it.
            raise TruncatedPixelData(
                f"the file ends after {len(items)} fragment(s) of Pixel Data, before its"
                " sequence delimiter"
            )
        tag, length = _read_tag(f, little)
        if tag == _SEQUENCE_DELIMITER:
            break
        if tag != _ITEM or length == _UNDEFINED:
            raise FrameLayoutError("encapsulated Pixel Data has a malformed fragment item")
        if file_size is not None and position + 8 + length > file_size:
            raise TruncatedPixelData(
                f"fragment {len(items) + 1} of Pixel Data declares {length} bytes but the file"
                f" ends after {max(file_size - position - 8, 0)} of them"
            )
        items.append((position - first_item, position + 8, length))
        f.seek(length, 1)
    if not items:
        raise FrameLayoutError("encapsulated Pixel Data has no fragments")

    groups = _group_fragments(f, items, bot_raw, little, frames, extended_offsets)
    return FrameIndex(
        encapsulated=True,
        fragments=tuple(tuple((start, length) for _, start, length in g) for g in groups),
    )


def _group_fragments(
    f: BinaryIO,
    items: list[tuple[int, int, int]],
    bot_raw: bytes,
    little: bool,
    frames: int,
    extended_offsets: tuple[list[int], list[int]] | None,
) -> list[list[tuple[int, int, int]]]:
    if frames == 1:
        return [items]
    if len(items) == frames:
        return [[item] for item in items]
    offsets: list[int] = []
    if bot_raw:
        count = len(bot_raw) // 4
        offsets = list(struct.unpack(("<" if little else ">") + f"{count}L", bot_raw[: count * 4]))
    elif extended_offsets is not None:
        offsets = list(extended_offsets[0])
    if offsets:
        if len(offsets) != frames:
            raise FrameLayoutError(
                f"the offset table lists {len(offsets)} frames but NumberOfFrames is {frames}"
            )
        groups: list[list[tuple[int, int, int]]] = []
        bounds = [*offsets, 1 << 62]
        for i in range(frames):
            group = [it for it in items if bounds[i] <= it[0] < bounds[i + 1]]
            if not group:
                raise FrameLayoutError(f"frame {i + 1} has no fragment at its offset")
            groups.append(group)
        return groups
    # No offset table: a new frame starts at each fragment that opens a codestream.
    groups = []
    for item in items:
        f.seek(item[1])
        starts_frame = f.read(4).startswith(_START_MARKERS)
        if starts_frame or not groups:
            groups.append([item])
        else:
            groups[-1].append(item)
    if len(groups) != frames:
        raise FrameLayoutError(
            f"found {len(groups)} compressed frames but NumberOfFrames is {frames}"
        )
    return groups
