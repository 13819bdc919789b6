"""Accept negotiation for frames, rendered images and metadata (PS3.18 8.7, conformance
statement "Retrieve (WADO-RS)").

Each function walks the client's media ranges best first (q-values; header order breaks ties;
q=0 excludes) and returns the first rendition the resource offers, else raises 406. Media
types and parameter names are case-insensitive and parameters may be quoted or not, because
:func:`dicom_core.web.negotiation.parse_accept` normalises them.

Frames offer what the conformance statement lists (application/octet-stream as stored or as
Explicit VR Little Endian, image/jp2 as JPEG 2000 Lossless), plus, beyond it, a compressed
image media type when the frame is already stored in a matching transfer syntax (PS3.18 Table
8.7.3-5): a viewer that asks for ``image/jls`` with a higher q-value than octet-stream gets the
JPEG-LS frame it prefers instead of a decoded one, and never a transcoding we cannot do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from dicom_core.domain import pixels
from dicom_core.domain.media_types import (
    DICOM_JSON,
    IMAGE_JP2,
    JPEG,
    JSON,
    MULTIPART_RELATED,
    OCTET_STREAM,
    PNG,
)
from dicom_core.errors import BadRequest, NotAcceptable
from dicom_core.web.negotiation import MediaRange, parse_accept

#: Image media types of compressed frames: default transfer syntax, and all it may carry.
_IMAGE_TYPES: Final[dict[str, tuple[str, frozenset[str]]]] = {
    JPEG: (
        pixels.JPEG_LOSSLESS_SV1,
        frozenset(
            {
                pixels.JPEG_BASELINE,
                pixels.JPEG_EXTENDED,
                pixels.JPEG_LOSSLESS,
                pixels.JPEG_LOSSLESS_SV1,
            }
        ),
    ),
    "image/jls": (
        pixels.JPEG_LS_LOSSLESS,
        frozenset({pixels.JPEG_LS_LOSSLESS, pixels.JPEG_LS_NEAR_LOSSLESS}),
    ),
    IMAGE_JP2: (
        pixels.JPEG_2000_LOSSLESS,
        frozenset({pixels.JPEG_2000_LOSSLESS, pixels.JPEG_2000}),
    ),
    "image/jpx": (
        pixels.JPEG_2000_MC_LOSSLESS,
        frozenset({pixels.JPEG_2000_MC_LOSSLESS, pixels.JPEG_2000_MC}),
    ),
    "image/jphc": (
        pixels.HTJ2K_LOSSLESS,
        frozenset({pixels.HTJ2K_LOSSLESS, pixels.HTJ2K_LOSSLESS_RPCL, pixels.HTJ2K}),
    ),
    "image/dicom-rle": (pixels.RLE_LOSSLESS, frozenset({pixels.RLE_LOSSLESS})),
}
_IMAGE_TYPES["image/x-jls"] = _IMAGE_TYPES["image/jls"]
_IMAGE_TYPES["image/x-dicom-rle"] = _IMAGE_TYPES["image/dicom-rle"]

_WILDCARDS: Final = frozenset({"*/*", "application/*"})

_FRAMES_OFFERED: Final = (
    'multipart/related; type="application/octet-stream" (transfer-syntax * or'
    ' 1.2.840.10008.1.2.1), multipart/related; type="image/jp2"'
    " (transfer-syntax 1.2.840.10008.1.2.4.90), and application/octet-stream;"
    " transfer-syntax=* for a single frame"
)


@dataclass(frozen=True, slots=True)
class FrameRendition:
    """How frames are returned: multipart or not, each part's media type, and the transfer
    syntax to transcode to (None: as stored)."""

    multipart: bool
    media_type: str
    transfer_syntax: str | None


def _ranges(accept: Sequence[str]) -> tuple[MediaRange, ...]:
    """The acceptable ranges, best first; no (usable) Accept header accepts anything."""
    return _parsed(tuple(accept))


@lru_cache(maxsize=512)
def _parsed(accept: tuple[str, ...]) -> tuple[MediaRange, ...]:
    """Parse once per distinct header: a viewer sends the same Accept with every frame
    request, and parsing it costs more than the rest of the negotiation. Callers only read
    the (shared) result."""
    ranges = parse_accept(accept)
    if not ranges:
        return (MediaRange("*/*", {}, 1.0),)
    return tuple(r for r in ranges if r.q > 0)


def negotiate_frames(
    accept: Sequence[str], *, frame_count: int, stored_syntax: str
) -> FrameRendition:
    """The rendition for a frame request of ``frame_count`` frames stored in ``stored_syntax``."""
    single_part_refused = False
    for media in _ranges(accept):
        rendition = _frame_rendition(media, stored_syntax)
        if rendition is None:
            continue
        if not rendition.multipart and frame_count > 1:
            if media.media_type in _WILDCARDS:
                return FrameRendition(True, rendition.media_type, rendition.transfer_syntax)
            single_part_refused = True
            continue
        return rendition
    if single_part_refused:
        raise BadRequest(
            "A single-part response can carry one frame only; ask for"
            ' multipart/related; type="application/octet-stream" to retrieve several frames.'
        )
    raise NotAcceptable(
        f"None of the Accept media types can be served for frames; this resource offers"
        f" {_FRAMES_OFFERED}."
    )


def _frame_rendition(media: MediaRange, stored_syntax: str) -> FrameRendition | None:
    kind = media.media_type
    syntax = media.params.get("transfer-syntax")
    if kind == MULTIPART_RELATED:
        part = media.params.get("type", OCTET_STREAM).strip().lower() or OCTET_STREAM
        multipart = True
        if part in _WILDCARDS:
            # Any part type (dicomweb-client's default): the frames as stored.
            part, syntax = OCTET_STREAM, syntax or "*"
    elif kind == "multipart/*":
        part, multipart = OCTET_STREAM, True
    elif kind in _WILDCARDS:
        part, multipart = OCTET_STREAM, False
        syntax = syntax or "*"
    elif kind == OCTET_STREAM:
        part, multipart = OCTET_STREAM, False
    else:
        return None  # single-part images are not offered
    if part == OCTET_STREAM:
        syntax = syntax or pixels.EXPLICIT_VR_LITTLE_ENDIAN
        if syntax == "*":
            return FrameRendition(multipart, OCTET_STREAM, None)
        if syntax == pixels.EXPLICIT_VR_LITTLE_ENDIAN:
            return FrameRendition(multipart, OCTET_STREAM, syntax)
        return None
    if not multipart or part not in _IMAGE_TYPES:
        return None
    default, family = _IMAGE_TYPES[part]
    if part == IMAGE_JP2 and syntax in (None, pixels.JPEG_2000_LOSSLESS):
        return FrameRendition(True, IMAGE_JP2, pixels.JPEG_2000_LOSSLESS)
    if stored_syntax in family and syntax in (None, "*", stored_syntax):
        return FrameRendition(True, part, None)
    return None


def negotiate_rendered(accept: Sequence[str]) -> str:
    """image/jpeg (the default) or image/png."""
    for media in _ranges(accept):
        if media.media_type in (JPEG, "image/*", "*/*"):
            return JPEG
        if media.media_type == PNG:
            return PNG
    raise NotAcceptable(
        "None of the Accept media types can be served for a rendered image; this resource"
        " offers image/jpeg and image/png."
    )


def negotiate_metadata(accept: Sequence[str]) -> None:
    """Metadata comes in application/dicom+json only."""
    for media in _ranges(accept):
        if media.media_type in (DICOM_JSON, JSON, "application/*", "*/*"):
            return
    raise NotAcceptable(
        "None of the Accept media types can be served for metadata; this resource offers"
        " application/dicom+json."
    )
