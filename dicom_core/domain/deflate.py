"""How large a Deflated Explicit VR Little Endian file is once inflated, found without holding it.

In that transfer syntax everything after the file meta group is one raw deflate stream, and
pydicom inflates it whole, in memory, as it reads the file (pixel data included, even when
asked to stop before it). A megabyte of deflated zeros inflates to a gigabyte: stored, parsed
and rendered, such a file took gigabytes of memory per request and got workers killed. So the
stream is inflated here first, a bounded piece at a time, output counted and dropped, and a
file that would inflate past the limit is refused before pydicom sees it. The cost is one pass
of zlib over the file (about a second per inflated gigabyte), paid only by deflated files.
"""

from __future__ import annotations

import struct
import zlib
from typing import BinaryIO, Final

from dicom_core.domain.pixels import DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN

TRANSFER_SYNTAX_TAG: Final = (0x0002, 0x0010)

# Explicit VR elements whose length field is 4 bytes after 2 reserved ones (PS3.5 7.1.2).
_LONG_VRS: Final = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_READ: Final = 1 << 20
_OUTPUT_STEP: Final = 4 << 20
_META_LIMIT: Final = 1 << 20  # a file meta group larger than this is not one we can read


class InflatedSizeError(Exception):
    """The deflated dataset inflates past the limit."""


def deflated_dataset_offset(handle: BinaryIO) -> int | None:
    """Where the deflated dataset of the Part 10 file in ``handle`` starts, or None when the
    file's transfer syntax is not Deflated Explicit VR Little Endian (or its file meta group
    cannot be walked: pydicom then reports the file as it finds it).

    Walks the file meta group (always Explicit VR Little Endian) from byte 132, element by
    element, to its end; ``handle`` is left anywhere."""
    handle.seek(132)
    offset, syntax = 132, None
    while offset - 132 < _META_LIMIT:
        head = handle.read(8)
        if len(head) < 8:
            return None
        group, element, vr = struct.unpack("<HH2s", head[:6])
        if group != 0x0002:
            break
        if vr in _LONG_VRS:
            extra = handle.read(4)
            if len(extra) < 4:
                return None
            (length,) = struct.unpack("<I", extra)
            header = 12
        else:
            (length,) = struct.unpack("<H", head[6:8])
            header = 8
        if length == 0xFFFFFFFF:
            return None
        value = handle.read(length)
        if len(value) < length:
            return None
        if (group, element) == TRANSFER_SYNTAX_TAG:
            syntax = value.decode("ascii", "replace").rstrip("\x00 ")
        offset += header + length
    else:
        return None
    return offset if syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN else None


def check_inflated_size(handle: BinaryIO, offset: int, limit: int) -> int:
    """The inflated size of the raw deflate stream at ``offset``; ``InflatedSizeError`` as soon
    as it passes ``limit`` bytes. At most a few megabytes are held at any moment. A stream
    zlib cannot read is left for pydicom to refuse (its size so far is returned)."""
    handle.seek(offset)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    try:
        while not inflater.eof:
            chunk = handle.read(_READ)
            if not chunk:
                break
            pending = chunk
            while pending:
                total += len(inflater.decompress(pending, _OUTPUT_STEP))
                if total > limit:
                    raise InflatedSizeError(
                        f"its deflated dataset inflates to more than {limit} bytes, the"
                        " service's limit on decoded data"
                    )
                pending = inflater.unconsumed_tail
                if inflater.eof:
                    break
    except zlib.error:
        return total
    return total
