"""What a compressed frame says about itself, read from its headers only (PS3.5 A.4, 8.2).

Why: a decoder sizes its output from the codestream, not from the DICOM attributes. A 16x16
instance whose JPEG start-of-frame claims 30000x30000 makes libjpeg allocate gigabytes before
pydicom notices that the result does not match Rows and Columns. So before a frame is handed
to a decoder, its codestream's own dimensions are read here and compared with the Image Pixel
attributes; a disagreement is refused, and nothing is allocated beyond the header bytes.

Each reader walks marker segments or boxes and stops at the first one giving dimensions:
JPEG start-of-frame markers (ISO/IEC 10918-1 B.2.2, every SOFn: baseline, extended,
progressive, lossless, arithmetic), JPEG-LS SOF55 (ISO/IEC 14495-1 C.2.2), JPEG 2000 SIZ
(ISO/IEC 15444-1 A.5.1) in a raw codestream or in the contiguous codestream box of a JP2
file, and the RLE header (PS3.5 G.5). No pixel is decoded. Every malformed input raises
:class:`CodestreamError` and nothing else.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from pydicom import uid

#: JPEG start-of-frame markers: C0-C3, C5-C7, C9-CB, CD-CF (C4 DHT, C8 JPG, CC DAC are not).
JPEG_SOF_MARKERS: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: JPEG-LS start-of-frame (SOF55).
JPEG_LS_SOF: Final = 0xF7
_SOI: Final = 0xD8
_EOI: Final = 0xD9
_SOS: Final = 0xDA
# Markers that stand alone, without a length: TEM, RST0-7, SOI, EOI.
_STANDALONE: Final = frozenset({0x01, *range(0xD0, 0xD8), _SOI, _EOI})
_J2K_SOC: Final = b"\xff\x4f"
_J2K_SIZ: Final = 0xFF51
_JP2_SIGNATURE: Final = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
_JP2_CODESTREAM_BOX: Final = b"jp2c"
_RLE_HEADER: Final = 64
_RLE_MAX_SEGMENTS: Final = 15

_JPEG_FAMILY: Final = frozenset(
    {uid.JPEGBaseline8Bit, uid.JPEGExtended12Bit, uid.JPEGLossless, uid.JPEGLosslessSV1}
)
_JPEG_LS_FAMILY: Final = frozenset({uid.JPEGLSLossless, uid.JPEGLSNearLossless})
_JPEG_2000_FAMILY: Final = frozenset(
    {
        uid.JPEG2000Lossless,
        uid.JPEG2000,
        uid.JPEG2000MCLossless,
        uid.JPEG2000MC,
        uid.HTJ2KLossless,
        uid.HTJ2KLosslessRPCL,
        uid.HTJ2K,
    }
)


class CodestreamError(ValueError):
    """A frame's codestream header is unreadable, or contradicts the instance's attributes."""


@dataclass(frozen=True, slots=True)
class CodestreamHeader:
    """The image a codestream declares: what a decoder will allocate for it.

    ``samples`` is the component count (segments per byte depth for RLE, see
    :func:`read_rle`); ``rows`` and ``columns`` are 0 for RLE, whose header has no size.
    """

    rows: int
    columns: int
    samples: int
    precision: int = 0


def read_jpeg(data: bytes) -> CodestreamHeader:
    """The start-of-frame (any SOFn) of a JPEG codestream (ISO/IEC 10918-1)."""
    return _read_jpeg_markers(data, JPEG_SOF_MARKERS, "JPEG")


def read_jpeg_ls(data: bytes) -> CodestreamHeader:
    """The SOF55 segment of a JPEG-LS codestream."""
    return _read_jpeg_markers(data, frozenset({JPEG_LS_SOF}), "JPEG-LS")


def _read_jpeg_markers(data: bytes, wanted: frozenset[int], name: str) -> CodestreamHeader:
    if len(data) < 2 or data[0] != 0xFF or data[1] != _SOI:
        raise CodestreamError(f"the {name} codestream does not start with a start-of-image marker")
    position = 2
    end = len(data)
    while True:
        # Any number of 0xFF fill bytes may precede a marker (B.1.1.2).
        if position >= end or data[position] != 0xFF:
            raise CodestreamError(
                f"the {name} codestream ends or breaks before its start-of-frame marker"
            )
        while position < end and data[position] == 0xFF:
            position += 1
        if position >= end:
            raise CodestreamError(f"the {name} codestream ends before its start-of-frame marker")
        marker = data[position]
        position += 1
        if marker in _STANDALONE:
            if marker == _EOI:
                raise CodestreamError(f"the {name} codestream has no start-of-frame marker")
            continue
        if marker == _SOS or marker == 0x00:
            raise CodestreamError(f"the {name} codestream has no start-of-frame marker")
        if position + 2 > end:
            raise CodestreamError(f"the {name} codestream ends inside a marker segment")
        (length,) = struct.unpack_from(">H", data, position)
        if length < 2 or position + length > end:
            raise CodestreamError(f"the {name} codestream has a marker segment of bad length")
        if marker in wanted:
            return _start_of_frame(data[position + 2 : position + length], name)
        position += length


def _start_of_frame(segment: bytes, name: str) -> CodestreamHeader:
    """P (precision), Y (lines), X (samples per line), Nf (components) of a SOF segment."""
    if len(segment) < 6:
        raise CodestreamError(f"the {name} start-of-frame segment is too short")
    precision, rows, columns, components = struct.unpack_from(">BHHB", segment)
    if len(segment) < 6 + 3 * components:
        raise CodestreamError(f"the {name} start-of-frame segment is too short")
    if rows == 0 or columns == 0 or components == 0:
        raise CodestreamError(
            f"the {name} start-of-frame declares {rows}x{columns} with {components} components;"
            " frames must state their size before their data"
        )
    return CodestreamHeader(rows=rows, columns=columns, samples=components, precision=precision)


def read_jpeg_2000(data: bytes) -> CodestreamHeader:
    """The SIZ segment of a JPEG 2000 codestream, raw or inside a JP2 file's ``jp2c`` box."""
    if data.startswith(_JP2_SIGNATURE):
        data = _jp2_codestream(data)
    if not data.startswith(_J2K_SOC):
        raise CodestreamError("the JPEG 2000 codestream does not start with SOC")
    if len(data) < 4 or struct.unpack_from(">H", data, 2)[0] != _J2K_SIZ:
        raise CodestreamError("the JPEG 2000 codestream does not have SIZ after SOC")
    if len(data) < 6:
        raise CodestreamError("the JPEG 2000 codestream ends inside SIZ")
    (length,) = struct.unpack_from(">H", data, 4)
    if length < 38 or len(data) < 4 + length:
        raise CodestreamError("the JPEG 2000 SIZ segment is truncated")
    # Lsiz Rsiz Xsiz Ysiz XOsiz YOsiz XTsiz YTsiz XTOsiz YTOsiz Csiz
    fields = struct.unpack_from(">HHIIIIIIIIH", data, 4)
    width, height, x_origin, y_origin, components = (
        fields[2],
        fields[3],
        fields[4],
        fields[5],
        fields[10],
    )
    if length < 38 + 3 * components or components == 0:
        raise CodestreamError("the JPEG 2000 SIZ segment does not list its components")
    if x_origin >= width or y_origin >= height:
        raise CodestreamError("the JPEG 2000 SIZ segment declares an empty image")
    precision = (data[4 + 38] & 0x7F) + 1
    return CodestreamHeader(
        rows=height - y_origin, columns=width - x_origin, samples=components, precision=precision
    )


def _jp2_codestream(data: bytes) -> bytes:
    """The content of the first contiguous codestream box of a JP2 file (ISO/IEC 15444-1 I.4)."""
    position = 0
    end = len(data)
    while position + 8 <= end:
        length, kind = struct.unpack_from(">I4s", data, position)
        header = 8
        if length == 1:
            if position + 16 > end:
                break
            (length,) = struct.unpack_from(">Q", data, position + 8)
            header = 16
        elif length == 0:
            length = end - position
        if length < header:
            raise CodestreamError("the JP2 file has a box of bad length")
        if kind == _JP2_CODESTREAM_BOX:
            return data[position + header : position + length]
        position += length
    raise CodestreamError("the JP2 file has no codestream box")


def read_rle(data: bytes) -> CodestreamHeader:
    """The RLE header (PS3.5 G.5): a segment count and 15 offsets, 64 bytes in all.

    RLE states no dimensions; ``samples`` is the segment count, one per byte of each sample.
    Offsets must start at 64, increase and stay inside the frame, or the decoder would read
    outside it.
    """
    if len(data) < _RLE_HEADER:
        raise CodestreamError("the RLE frame is shorter than its 64-byte header")
    count, *offsets = struct.unpack_from("<16I", data)
    if not 1 <= count <= _RLE_MAX_SEGMENTS:
        raise CodestreamError(f"the RLE header declares {count} segments (1 to 15 allowed)")
    used = offsets[:count]
    if used[0] != _RLE_HEADER:
        raise CodestreamError("the RLE header's first segment does not start after the header")
    if any(b <= a for a, b in zip(used, used[1:], strict=False)) or used[-1] >= len(data):
        raise CodestreamError(
            "the RLE header's segment offsets are out of order or beyond the frame"
        )
    return CodestreamHeader(rows=0, columns=0, samples=count)


def bytes_per_sample(bits_allocated: int) -> int:
    """Bytes a decoder gives each sample: at least one, even for 1-bit data."""
    return max((bits_allocated + 7) // 8, 1)


def check_frame(
    data: bytes,
    transfer_syntax: str,
    *,
    rows: int,
    columns: int,
    samples_per_pixel: int,
    bits_allocated: int,
) -> None:
    """Refuse a compressed frame whose codestream contradicts Rows, Columns, SamplesPerPixel.

    Native data (and syntaxes without a header reader) pass: their decoders size the output
    from the attributes alone.
    """
    if transfer_syntax == uid.RLELossless:
        header = read_rle(data)
        expected = samples_per_pixel * bytes_per_sample(bits_allocated)
        if header.samples != expected:
            raise CodestreamError(
                f"the RLE header declares {header.samples} segments but SamplesPerPixel"
                f" {samples_per_pixel} at BitsAllocated {bits_allocated} needs {expected}"
            )
        return
    if transfer_syntax in _JPEG_FAMILY:
        header, name = read_jpeg(data), "JPEG"
    elif transfer_syntax in _JPEG_LS_FAMILY:
        header, name = read_jpeg_ls(data), "JPEG-LS"
    elif transfer_syntax in _JPEG_2000_FAMILY:
        header, name = read_jpeg_2000(data), "JPEG 2000"
    else:
        return
    if (header.rows, header.columns, header.samples) != (rows, columns, samples_per_pixel):
        raise CodestreamError(
            f"the {name} codestream declares {header.rows}x{header.columns} pixels with"
            f" {header.samples} sample(s), but Rows, Columns and SamplesPerPixel say"
            f" {rows}x{columns} with {samples_per_pixel}"
        )
