"""One frame at a time: decoding stored pixel data and encoding it again (PS3.5 8, A.4).

Why a frame at a time: WADO-RS asks for single frames of instances that may hold thousands
of them, so decoding must start from the bytes of that one frame (its fragments, for
encapsulated data) and never from the whole file. The web and service layers hand this
module the frame's bytes and a :class:`PixelFormat`, read from the DICOM JSON kept at store
time or from a parsed header; nothing here performs I/O.

Decoding and encoding go through pydicom's pixel-data plugins, one call per frame: the
imagecodecs plugin of :mod:`dicom_core.domain.codecs` first where it is preferred (JPEG
lossless, JPEG-LS, JPEG 2000), for speed and because it leaves the GIL to other threads;
otherwise, or if it refuses a frame, pydicom's own order (pylibjpeg with its openjpeg, libjpeg
and rle plugins, then pillow). Colour rule: compressed
sources are decoded the way pydicom's ``pixel_array`` decodes them by default, so YBR colour
spaces come back as RGB (the JPEG decoders upsample YBR_FULL_422 anyway); native sources keep
their colour space, so Big Endian to Little Endian is a pure byte-order change. The
photometric interpretation that results travels with the decoded frame, so a transcoded file
or frame always describes its pixels truthfully.
"""

from __future__ import annotations

import io
import math
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.encoders.base import get_encoder
from pydicom.pixels.utils import pack_bits
from pydicom.uid import UID

from dicom_core.domain import codecs
from dicom_core.domain.codestreams import CodestreamError, bytes_per_sample, check_frame
from dicom_core.domain.validation.messages import brief

# The one place where the imagecodecs plugin joins pydicom's registries: every decode and
# encode of the service goes through this module.
codecs.register()

# Transfer Syntax UIDs (PS3.6 Table A-1): the names every layer uses for them.
EXPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2"
EXPLICIT_VR_BIG_ENDIAN: Final = "1.2.840.10008.1.2.2"
JPEG_BASELINE: Final = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED: Final = "1.2.840.10008.1.2.4.51"
JPEG_LOSSLESS: Final = "1.2.840.10008.1.2.4.57"
JPEG_LOSSLESS_SV1: Final = "1.2.840.10008.1.2.4.70"
JPEG_LS_LOSSLESS: Final = "1.2.840.10008.1.2.4.80"
JPEG_LS_NEAR_LOSSLESS: Final = "1.2.840.10008.1.2.4.81"
JPEG_2000_LOSSLESS: Final = "1.2.840.10008.1.2.4.90"
JPEG_2000: Final = "1.2.840.10008.1.2.4.91"
JPEG_2000_MC_LOSSLESS: Final = "1.2.840.10008.1.2.4.92"
JPEG_2000_MC: Final = "1.2.840.10008.1.2.4.93"
HTJ2K_LOSSLESS: Final = "1.2.840.10008.1.2.4.201"
HTJ2K_LOSSLESS_RPCL: Final = "1.2.840.10008.1.2.4.202"
HTJ2K: Final = "1.2.840.10008.1.2.4.203"
RLE_LOSSLESS: Final = "1.2.840.10008.1.2.5"
#: The whole dataset deflated; its pixel data is native once the file is inflated.
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2.1.99"

#: What can be transcoded from: the conformance statement's list, plus the JPEG Extended and
#: JPEG-LS syntaxes that the installed libjpeg plugin decodes as well.
TRANSCODE_SOURCES: Final = frozenset(
    {
        IMPLICIT_VR_LITTLE_ENDIAN,
        EXPLICIT_VR_LITTLE_ENDIAN,
        EXPLICIT_VR_BIG_ENDIAN,
        JPEG_BASELINE,
        JPEG_EXTENDED,
        JPEG_LOSSLESS,
        JPEG_LOSSLESS_SV1,
        JPEG_LS_LOSSLESS,
        JPEG_LS_NEAR_LOSSLESS,
        JPEG_2000_LOSSLESS,
        JPEG_2000,
        RLE_LOSSLESS,
    }
)
#: What can be transcoded to (conformance statement, "Retrieve transfer syntax").
TRANSCODE_TARGETS: Final = frozenset({EXPLICIT_VR_LITTLE_ENDIAN, JPEG_2000_LOSSLESS})
#: Lossy source syntaxes: re-encoding them losslessly keeps the loss, which the header says.
LOSSY_SOURCES: Final = frozenset({JPEG_BASELINE, JPEG_EXTENDED, JPEG_LS_NEAR_LOSSLESS, JPEG_2000})
#: pylibjpeg-openjpeg encodes with 6 resolution levels: smaller images go through Pillow.
_MIN_OPENJPEG_SIZE: Final = 32
#: One JPEG 2000 encode at a time through pydicom's plugin order (see _encode_jpeg2000).
_PYDICOM_ORDER_ENCODING: Final = threading.Lock()

# DICOM JSON keys of the Image Pixel module attributes (PS3.3 C.7.6.3).
_SAMPLES, _PHOTOMETRIC, _PLANAR, _FRAMES = "00280002", "00280004", "00280006", "00280008"
_ROWS, _COLUMNS = "00280010", "00280011"
_BITS_ALLOCATED, _BITS_STORED, _PIXEL_REPRESENTATION = "00280100", "00280101", "00280103"


class PixelDataError(ValueError):
    """Pixel data that cannot be decoded or encoded as asked; the message names why."""


class DecodedSizeError(PixelDataError):
    """Decoding would produce more bytes than the service allows (DICOM_MAX_DECODED_BYTES)."""


@dataclass(frozen=True, slots=True)
class PixelFormat:
    """The Image Pixel module values a decoder needs, for one instance.

    ``pixel_vr`` matters only for Big Endian native data, where 8-bit samples in an OW value
    are byte-swapped in pairs (PS3.5 7.3).
    """

    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    photometric_interpretation: str
    planar_configuration: int = 0
    number_of_frames: int = 1
    pixel_vr: str = "OW"

    @classmethod
    def from_dicom_json(cls, instance: Mapping[str, Any]) -> PixelFormat | None:
        """Read the format from an instance's DICOM JSON; None if it describes no image."""

        def first(tag: str, default: Any = None) -> Any:
            values = instance.get(tag, {}).get("Value")
            return values[0] if values else default

        rows, columns, bits = first(_ROWS), first(_COLUMNS), first(_BITS_ALLOCATED)
        if not rows or not columns or not bits:
            return None
        try:
            return cls(
                rows=int(rows),
                columns=int(columns),
                samples_per_pixel=int(first(_SAMPLES, 1)),
                bits_allocated=int(bits),
                bits_stored=int(first(_BITS_STORED, bits)),
                pixel_representation=int(first(_PIXEL_REPRESENTATION, 0)),
                photometric_interpretation=str(first(_PHOTOMETRIC, "MONOCHROME2")).strip(),
                planar_configuration=int(first(_PLANAR, 0)),
                number_of_frames=max(int(first(_FRAMES, 1) or 1), 1),
            )
        except (TypeError, ValueError):
            return None

    @classmethod
    def from_dataset(cls, ds: Dataset, pixel_vr: str = "OW") -> PixelFormat | None:
        """Read the format from a parsed header; None if it describes no image."""

        def value(keyword: str, default: Any = None) -> Any:
            found = ds.get(keyword, default)
            return default if found in (None, "") else found

        rows, columns, bits = value("Rows"), value("Columns"), value("BitsAllocated")
        if not rows or not columns or not bits:
            return None
        try:
            return cls(
                rows=int(rows),
                columns=int(columns),
                samples_per_pixel=int(value("SamplesPerPixel", 1)),
                bits_allocated=int(bits),
                bits_stored=int(value("BitsStored", bits)),
                pixel_representation=int(value("PixelRepresentation", 0)),
                photometric_interpretation=str(
                    value("PhotometricInterpretation", "MONOCHROME2")
                ).strip(),
                planar_configuration=int(value("PlanarConfiguration", 0)),
                number_of_frames=max(int(value("NumberOfFrames", 1) or 1), 1),
                pixel_vr=pixel_vr,
            )
        except (TypeError, ValueError):
            return None

    @property
    def decoded_frame_bytes(self) -> int:
        """Bytes a decoder allocates for one frame: at least one byte per sample."""
        return (
            self.rows
            * self.columns
            * self.samples_per_pixel
            * bytes_per_sample(self.bits_allocated)
        )

    @property
    def native_frame_length(self) -> int:
        """Bytes of one uncompressed, colour-by-pixel frame (bit-packed when 1 bit)."""
        bits = self.rows * self.columns * self.samples_per_pixel * self.bits_allocated
        return (bits + 7) // 8

    def decoder_options(self) -> dict[str, Any]:
        """Options describing one frame of this format to pydicom's decoders and encoders."""
        options: dict[str, Any] = {
            "rows": self.rows,
            "columns": self.columns,
            "samples_per_pixel": self.samples_per_pixel,
            "bits_allocated": self.bits_allocated,
            "bits_stored": self.bits_stored,
            "pixel_representation": self.pixel_representation,
            "photometric_interpretation": self.photometric_interpretation,
            "number_of_frames": 1,
        }
        if self.samples_per_pixel > 1:
            options["planar_configuration"] = self.planar_configuration
        return options


@dataclass(frozen=True, slots=True)
class DecodedFrame:
    """A decoded frame and the format that now describes it (colour space may have changed)."""

    array: np.ndarray
    format: PixelFormat


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """A frame encoded in a target transfer syntax, with the format of what it holds."""

    data: bytes
    format: PixelFormat


def check_decoded_size(fmt: PixelFormat, frames: int, limit: int) -> None:
    """Refuse, before any decoding, a request whose decoded frames would pass ``limit`` bytes.

    The limit bounds what decoding allocates and produces, not what is stored: a few kilobytes
    of JPEG may legitimately decode to gigabytes.
    """
    size = fmt.decoded_frame_bytes * max(frames, 1)
    if size > limit:
        raise DecodedSizeError(
            f"{frames} frame{'s' if frames != 1 else ''} of {fmt.rows}x{fmt.columns} pixels,"
            f" {fmt.samples_per_pixel} sample(s) of {fmt.bits_allocated} bits, decode to {size}"
            f" bytes, over the service's limit of {limit} bytes"
        )


def check_codestream(data: bytes, transfer_syntax: str, fmt: PixelFormat) -> None:
    """Refuse a compressed frame whose own header contradicts ``fmt`` (read, not decoded).

    Decoders size their output from the codestream, so a frame claiming more pixels than the
    instance declares must never reach one.
    """
    try:
        check_frame(
            data,
            transfer_syntax,
            rows=fmt.rows,
            columns=fmt.columns,
            samples_per_pixel=fmt.samples_per_pixel,
            bits_allocated=fmt.bits_allocated,
        )
    except CodestreamError as exc:
        raise PixelDataError(str(exc)) from exc


def is_encapsulated(transfer_syntax: str) -> bool:
    return bool(UID(transfer_syntax).is_encapsulated)


def frames_syntax(transfer_syntax: str) -> str:
    """The syntax the frames of an instance stored in ``transfer_syntax`` exist in: its own,
    but for Deflated Explicit VR Little Endian, whose whole dataset is deflated and whose
    pixel data is native Explicit VR Little Endian once the file is inflated (parsed)."""
    if transfer_syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        return EXPLICIT_VR_LITTLE_ENDIAN
    return transfer_syntax


def can_decode(transfer_syntax: str) -> bool:
    """True if frames stored in ``transfer_syntax`` can be decoded here."""
    if transfer_syntax not in TRANSCODE_SOURCES:
        return False
    try:
        return bool(get_decoder(transfer_syntax).is_available)
    except NotImplementedError:
        return False


def decode_frame(
    data: bytes,
    transfer_syntax: str,
    fmt: PixelFormat,
    *,
    as_rgb: bool | None = None,
) -> DecodedFrame:
    """Decode one frame's bytes (a native frame, or one frame's fragments joined).

    ``as_rgb`` defaults to the module's colour rule: True for compressed sources (YBR data
    becomes RGB, as in pydicom's ``pixel_array``), False for native ones. Rendering passes
    True always.
    """
    if not can_decode(transfer_syntax):
        raise PixelDataError(
            f"pixel data in transfer syntax {transfer_syntax} cannot be decoded by this service"
        )
    encapsulated = is_encapsulated(transfer_syntax)
    if encapsulated:
        check_codestream(data, transfer_syntax, fmt)
    if as_rgb is None:
        as_rgb = encapsulated
    options = fmt.decoder_options()
    options["pixel_keyword"] = "PixelData"
    options["as_rgb"] = as_rgb
    if not encapsulated:
        options["pixel_vr"] = fmt.pixel_vr if fmt.bits_allocated <= 8 else "OW"
    source = encapsulate([data]) if encapsulated else data
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            array, meta = _decode(transfer_syntax, source, options)
    except Exception as exc:  # the plugins raise anything from ValueError to RuntimeError
        raise PixelDataError(f"the frame could not be decoded: {brief(exc)}") from exc
    photometric = str(meta.get("photometric_interpretation", fmt.photometric_interpretation))
    if photometric.startswith("YBR") and as_rgb:
        photometric = "RGB"  # converted (or MCT undone), whatever label pydicom kept
    elif photometric == "YBR_FULL_422":
        photometric = "YBR_FULL"  # decoders upsample the chroma: full-size samples now
    decoded = replace(
        fmt,
        photometric_interpretation=photometric,
        planar_configuration=0,
        bits_stored=int(meta.get("bits_stored", fmt.bits_stored)),
        pixel_representation=int(meta.get("pixel_representation", fmt.pixel_representation)),
        number_of_frames=1,
    )
    return DecodedFrame(array=array, format=decoded)


def _decode(
    transfer_syntax: str, source: bytes, options: dict[str, Any]
) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode frame 0 of ``source`` with the preferred plugin, else with pydicom's order.

    A frame the preferred plugin refuses goes to every plugin, in pydicom's order, as it did
    before the preferred one existed; so a frame decodes wherever it decoded before.
    """
    decoder = get_decoder(transfer_syntax)
    if preferred := codecs.preferred_decoder(transfer_syntax):
        try:
            return decoder.as_array(source, index=0, decoding_plugin=preferred, **options)
        except Exception:  # the fallback below reports every plugin's failure
            pass
    return decoder.as_array(source, index=0, **options)


def native_bytes(frame: DecodedFrame) -> bytes:
    """The frame as Explicit VR Little Endian pixel data: little-endian, colour-by-pixel."""
    fmt = frame.format
    array = frame.array
    if fmt.bits_allocated == 1:
        return bytes(pack_bits(array.astype(np.uint8, copy=False).ravel()))
    if array.dtype.kind == "f":
        wanted = np.dtype(f"<f{fmt.bits_allocated // 8}")
    else:
        kind = "i" if fmt.pixel_representation else "u"
        wanted = np.dtype(f"<{kind}{max(fmt.bits_allocated // 8, 1)}")
    return np.ascontiguousarray(array, dtype=wanted).tobytes()


def encode_jpeg2000_lossless(frame: DecodedFrame) -> EncodedFrame:
    """Encode a decoded frame as a JPEG 2000 lossless codestream (PS3.5 A.4.4).

    RGB is encoded without the multi-component transform, so the photometric interpretation
    stays RGB (allowed by PS3.5 8.2.4). When stored values overflow Bits Stored (overlay bits
    left in the high bits, say), the frame is encoded at the full Bits Allocated instead of
    losing those bits, and the returned format says so.
    """
    fmt = frame.format
    if fmt.bits_allocated not in (8, 16, 24, 32) or frame.array.dtype.kind == "f":
        raise PixelDataError(
            f"{fmt.bits_allocated}-bit {'float ' if frame.array.dtype.kind == 'f' else ''}"
            "pixel data cannot be encoded as JPEG 2000"
        )
    if min(fmt.rows, fmt.columns) < _MIN_OPENJPEG_SIZE:
        return _encode_small_jpeg2000(frame)
    options = fmt.decoder_options()
    options.pop("planar_configuration", None)
    if fmt.samples_per_pixel > 1:
        options["planar_configuration"] = 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = _encode_jpeg2000(frame.array, options)
        return EncodedFrame(data=bytes(data), format=fmt)
    except Exception as first_error:
        if fmt.bits_stored >= fmt.bits_allocated:
            raise PixelDataError(
                f"the frame could not be encoded as JPEG 2000: {first_error}"
            ) from first_error
    widened = replace(fmt, bits_stored=fmt.bits_allocated)
    options["bits_stored"] = widened.bits_stored
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = _encode_jpeg2000(frame.array, options)
    except Exception as exc:
        raise PixelDataError(f"the frame could not be encoded as JPEG 2000: {brief(exc)}") from exc
    return EncodedFrame(data=bytes(data), format=widened)


def _encode_jpeg2000(array: np.ndarray, options: dict[str, Any]) -> bytes:
    """Encode with the preferred plugin, else with pydicom's order (as :func:`_decode`).

    pydicom's order starts with pylibjpeg-openjpeg, whose encoder is not thread-safe: two
    threads encoding at once crash the process now and then (5 runs in 12 of two threads
    doing 40 encodes each). So that path encodes one frame at a time; imagecodecs, which
    takes every frame of 256 pixels or more either way, needs no lock.
    """
    encoder = get_encoder(JPEG_2000_LOSSLESS)
    preferred = codecs.preferred_encoder(
        JPEG_2000_LOSSLESS,
        rows=options["rows"],
        columns=options["columns"],
        bits_stored=options["bits_stored"],
    )
    if preferred:
        try:
            return encoder.encode(array, encoding_plugin=preferred, **options)
        except Exception:  # the fallback below reports every plugin's failure
            pass
    with _PYDICOM_ORDER_ENCODING:
        return encoder.encode(array, **options)


def _encode_small_jpeg2000(frame: DecodedFrame) -> EncodedFrame:
    """Encode an image too small for pylibjpeg-openjpeg, which always uses 6 resolution
    levels (so at least 32 pixels each way); Pillow's encoder, on the same OpenJPEG library,
    lets the level count follow the image size.

    Pillow takes 8-bit gray, 16-bit unsigned gray and 8-bit RGB; it writes 16-bit samples at
    16-bit precision, so Bits Stored becomes 16 (values are unchanged).
    """
    fmt = frame.format
    array = np.ascontiguousarray(frame.array)
    if fmt.samples_per_pixel == 1 and array.dtype == np.uint8:
        image = Image.fromarray(array, mode="L")
        out_format = fmt
    elif fmt.samples_per_pixel == 1 and array.dtype == np.uint16:
        size = (fmt.columns, fmt.rows)
        raw = array.astype("<u2", copy=False).tobytes()
        image = Image.frombuffer("I;16", size, raw, "raw", "I;16", 0, 1)
        out_format = replace(fmt, bits_stored=16)
    elif fmt.samples_per_pixel == 3 and array.dtype == np.uint8:
        image = Image.fromarray(array, mode="RGB")
        out_format = fmt
    else:
        raise PixelDataError(
            f"images smaller than {_MIN_OPENJPEG_SIZE} pixels cannot be encoded as JPEG 2000"
            f" with {fmt.samples_per_pixel} sample(s) of {array.dtype}"
        )
    levels = min(6, int(math.log2(min(fmt.rows, fmt.columns))) + 1)
    buffer = io.BytesIO()
    try:
        image.save(
            buffer,
            format="JPEG2000",
            irreversible=False,
            no_jp2=True,
            num_resolutions=levels,
            mct=0,
        )
    except Exception as exc:
        raise PixelDataError(f"the frame could not be encoded as JPEG 2000: {brief(exc)}") from exc
    return EncodedFrame(data=buffer.getvalue(), format=out_format)


def transcode_frame(
    data: bytes, source_syntax: str, target_syntax: str, fmt: PixelFormat
) -> EncodedFrame:
    """Re-encode one stored frame in ``target_syntax`` (one of TRANSCODE_TARGETS)."""
    if target_syntax not in TRANSCODE_TARGETS:
        raise PixelDataError(f"transcoding to {target_syntax} is not supported")
    decoded = decode_frame(data, source_syntax, fmt)
    if target_syntax == EXPLICIT_VR_LITTLE_ENDIAN:
        return EncodedFrame(data=native_bytes(decoded), format=decoded.format)
    return encode_jpeg2000_lossless(decoded)
