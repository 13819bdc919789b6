"""imagecodecs as a pydicom pixel-data plugin: faster codecs that let every core work.

Why: pydicom decodes through plugins, and the pylibjpeg ones we started with hold the GIL
while they decode or encode, so the worker threads that ``asyncio.to_thread`` hands frames to
took turns on one core. pylibjpeg-libjpeg is also slow on lossless JPEG (about a quarter of
libjpeg-turbo's rate on a 512 x 512 CT frame). imagecodecs (BSD-3) wraps libjpeg-turbo 3
(JPEG lossless here), CharLS (JPEG-LS) and OpenJPEG (JPEG 2000), and releases the GIL inside
each codec, so the existing thread offloading uses every core. ``benchmarks/codecs.py``
measures both claims.

Why threads and not a process pool: with the codec outside the GIL, what stays inside is
pydicom's bookkeeping, a fraction of a millisecond a frame. A pool would add a copy of every
frame both ways between processes, a worker start per core, and a lifecycle to manage inside
the Functions worker, for no gain once the codecs release the GIL; and it is the same code in
Azure and locally.

How it fits pydicom (``pydicom.pixels.decoders.base``, ``pydicom.pixels.encoders.base``): this
module is a plugin in pydicom's sense (``DECODER_DEPENDENCIES``, ``ENCODER_DEPENDENCIES``,
``is_available`` and the ``_decode_frame`` / ``_encode_frame`` functions), added under the
label :data:`PLUGIN` by :func:`register`. Like pydicom's own plugins it hands back the raw
decoded samples (no colour conversion; colour-by-pixel) and adjusts the runner's options the
same way, so pydicom's shared post-processing (sign and unused-bit correction, YBR to RGB)
gives the same arrays as before. pydicom tries plugins in the order they were added, so a
later plugin is only a fallback; callers ask for this one by name where :func:`preferred_decoder`
or :func:`preferred_encoder` says so, and fall back to pydicom's own order if it refuses a
frame. The preference covers only the syntaxes where it decodes identically and measurably
faster; the encoder writes the same codestream as pylibjpeg-openjpeg (same OpenJPEG options)
but for the library version in its comment marker.
"""

from __future__ import annotations

import functools
from importlib import import_module
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from pydicom import uid
from pydicom.pixels.common import PhotometricInterpretation as PI
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.encoders.base import get_encoder

if TYPE_CHECKING:
    from pydicom.pixels.decoders.base import DecodeRunner
    from pydicom.pixels.encoders.base import EncodeRunner

#: The plugin's label in pydicom's decoder and encoder registries.
PLUGIN: Final = "imagecodecs"
#: The release the syntaxes below were measured and compared with (requirements.txt pins it).
_REQUIREMENT: Final = "imagecodecs>=2026.10.10"

#: JPEG lossless (T.81 process 14), decoded by libjpeg-turbo 3, 2 to 16 bits.
_JPEG_LOSSLESS: Final = (uid.JPEGLossless, uid.JPEGLosslessSV1)
#: JPEG-LS, decoded by CharLS (T.87).
_JPEG_LS: Final = (uid.JPEGLSLossless, uid.JPEGLSNearLossless)
#: JPEG 2000 part 1 codestreams, decoded and encoded by OpenJPEG (T.800).
_JPEG_2000: Final = (uid.JPEG2000Lossless, uid.JPEG2000)

#: JPEG baseline and extended (T.81 DCT processes), decoded by libjpeg-turbo, 8 and 12 bits.
_JPEG_DCT: Final = (uid.JPEGBaseline8Bit, uid.JPEGExtended12Bit)
#: Where this plugin is tried first: it decodes these exactly as pylibjpeg does, and faster.
_PREFERRED: Final = (*_JPEG_LOSSLESS, *_JPEG_LS, *_JPEG_2000)
#: Where this plugin decodes. JPEG baseline and extended are not preferred: libjpeg-turbo's
#: inverse DCT and chroma upsampling differ from pylibjpeg-libjpeg's by a grey level or a few
#: here and there, and the images a client gets must not change. Added last, it is only the
#: fallback there, for the grayscale frames every other plugin refuses: pylibjpeg-libjpeg
#: rejects some 12-bit extended codestreams that libjpeg-turbo (and OHIF) read, and Pillow
#: has no 12-bit JPEG.
DECODER_DEPENDENCIES: Final = dict.fromkeys((*_PREFERRED, *_JPEG_DCT), (_REQUIREMENT,))
#: Where this plugin encodes, and is tried first: the one transcoding target that compresses.
ENCODER_DEPENDENCIES: Final = {uid.JPEG2000Lossless: ("numpy", _REQUIREMENT)}

#: Codec names in imagecodecs, per transfer syntax, for :func:`is_available`.
_CODEC_OF: Final[dict[str, str]] = {
    **dict.fromkeys((*_JPEG_LOSSLESS, *_JPEG_DCT), "JPEG8"),
    **dict.fromkeys(_JPEG_LS, "JPEGLS"),
    **dict.fromkeys(_JPEG_2000, "JPEG2K"),
}

#: pylibjpeg-openjpeg's fixed lossless options, which our JPEG 2000 so far was made with:
#: 6 resolutions, one tile, reversible 5-3 wavelet, 64 x 64 code blocks, LRCP.
_J2K_RESOLUTIONS: Final = 6
#: imagecodecs lowers the resolution count of images under 256 pixels either way (keeping
#: the lowest at 8 pixels or more), which pylibjpeg-openjpeg does not: smaller frames are left
#: to pylibjpeg-openjpeg so that the codestreams stay the same.
_J2K_MIN_SIZE: Final = 256
#: pylibjpeg-openjpeg refuses deeper samples; so does this plugin, to refuse what it refused.
_J2K_MAX_BITS: Final = 24


@functools.cache
def is_available(transfer_syntax: str) -> bool:
    """True if imagecodecs is installed with the codec ``transfer_syntax`` needs."""
    codec = _CODEC_OF.get(transfer_syntax)
    if codec is None:
        return False
    try:
        imagecodecs = import_module("imagecodecs")
    except ImportError:
        return False
    return bool(getattr(getattr(imagecodecs, codec, None), "available", False))


def register() -> None:
    """Add this plugin to pydicom's decoders and encoders (last, so only named use picks it).

    Idempotent: pydicom refuses a second plugin of the same label, and importing this module
    twice (a reload in tests) must not fail.
    """
    for syntax in DECODER_DEPENDENCIES:
        decoder = get_decoder(syntax)
        if PLUGIN not in decoder.available_plugins and not _missing(decoder.missing_dependencies):
            decoder.add_plugin(PLUGIN, (__name__, "_decode_frame"))
    for syntax in ENCODER_DEPENDENCIES:
        encoder = get_encoder(syntax)
        if PLUGIN not in encoder.available_plugins and not _missing(encoder.missing_dependencies):
            encoder.add_plugin(PLUGIN, (__name__, "_encode_frame"))


def _missing(missing_dependencies: list[str]) -> bool:
    """True if pydicom already lists this plugin as added but unavailable."""
    return any(line.startswith(f"{PLUGIN} ") for line in missing_dependencies)


def preferred_decoder(transfer_syntax: str) -> str:
    """The plugin to ask for by name when decoding ``transfer_syntax``; "" for pydicom's order."""
    if transfer_syntax in _PREFERRED and is_available(transfer_syntax):
        return PLUGIN
    return ""


def preferred_encoder(transfer_syntax: str, *, rows: int, columns: int, bits_stored: int) -> str:
    """The plugin to ask for by name when encoding such a frame; "" for pydicom's order.

    Decided before encoding, not by the plugin refusing: pydicom logs every refusal as an
    error with its traceback.
    """
    if (
        transfer_syntax in ENCODER_DEPENDENCIES
        and _encodes_as_openjpeg(rows, columns, bits_stored)
        and is_available(transfer_syntax)
    ):
        return PLUGIN
    return ""


def _encodes_as_openjpeg(rows: int, columns: int, bits_stored: int) -> bool:
    """True if imagecodecs encodes such a frame as pylibjpeg-openjpeg would."""
    return min(rows, columns) >= _J2K_MIN_SIZE and bits_stored <= _J2K_MAX_BITS


def _decode_frame(src: bytes, runner: DecodeRunner) -> bytes:
    """Decode one frame's codestream into raw samples, colour-by-pixel (pydicom's contract).

    The runner's options are adjusted as pydicom's pylibjpeg plugin adjusts them, because the
    decoded buffer is read with the runner's dtype afterwards.
    """
    import imagecodecs

    syntax = runner.transfer_syntax
    array: np.ndarray[Any, Any]
    if syntax in _JPEG_LOSSLESS:
        # Decode without colour conversion: what the codestream holds, as pydicom expects
        # (it converts YBR to RGB itself when asked). Naming the same colour space for the
        # codestream and the output makes libjpeg-turbo copy the samples unchanged.
        space = "GRAYSCALE" if runner.samples_per_pixel == 1 else "YCBCR"
        array = imagecodecs.jpeg8_decode(src, colorspace=space, outcolorspace=space)
    elif syntax in _JPEG_DCT:
        if runner.samples_per_pixel != 1:
            # Colour conversion would have to match pydicom's other plugins exactly; this
            # fallback keeps to grayscale, where there is none.
            raise NotImplementedError(f"{PLUGIN} decodes only grayscale {syntax} frames")
        array = imagecodecs.jpeg8_decode(src, colorspace="GRAYSCALE", outcolorspace="GRAYSCALE")
        runner.set_option("bits_allocated", array.dtype.itemsize * 8)
    elif syntax in _JPEG_LS:
        array = imagecodecs.jpegls_decode(src)
        # Colour-by-pixel whatever the interleave mode, and a container sized by precision.
        runner.set_option("planar_configuration", 0)
        runner.set_option("bits_allocated", _container_bits(runner.get_option("jls_precision")))
    elif syntax in _JPEG_2000:
        # One thread per frame: frames are decoded concurrently, one per worker thread.
        array = imagecodecs.jpeg2k_decode(src, numthreads=1)
        # OpenJPEG undoes the multi-component transform, so YBR_ICT/YBR_RCT come back as RGB.
        if runner.photometric_interpretation in (PI.YBR_ICT, PI.YBR_RCT):
            runner.set_option("photometric_interpretation", PI.RGB)
        runner.set_option("bits_allocated", _container_bits(runner.get_option("j2k_precision")))
    else:
        raise NotImplementedError(f"{PLUGIN} does not decode {syntax}")
    return np.ascontiguousarray(array).tobytes()


def _container_bits(precision: int | None) -> int:
    """Bits of the integer a decoder returns for samples of ``precision`` bits."""
    if precision is None or precision <= 0:
        raise ValueError("the codestream's sample precision is unknown")
    for bits in (8, 16, 32):
        if precision <= bits:
            return bits
    raise ValueError(f"samples of {precision} bits are not supported")


def _encode_frame(src: bytes, runner: EncodeRunner) -> bytes:
    """Encode one frame as a lossless JPEG 2000 codestream, as pylibjpeg-openjpeg would.

    pydicom hands over the frame's samples in native byte order, colour-by-pixel, each in the
    smallest integer that holds Bits Stored, and signed if Pixel Representation is 1.
    """
    import imagecodecs

    if runner.transfer_syntax != uid.JPEG2000Lossless:
        raise NotImplementedError(f"{PLUGIN} does not encode {runner.transfer_syntax}")
    if runner.samples_per_pixel > 1 and runner.planar_configuration != 0:
        raise ValueError("only colour-by-pixel frames are encoded")
    if not _encodes_as_openjpeg(runner.rows, runner.columns, runner.bits_stored):
        raise ValueError(
            f"frames under {_J2K_MIN_SIZE} pixels either way, or of more than {_J2K_MAX_BITS}"
            " bits, are left to pylibjpeg-openjpeg"
        )
    bits = _container_bits(runner.bits_stored)
    kind = "i" if runner.pixel_representation else "u"
    shape: tuple[int, ...] = (runner.rows, runner.columns)
    if runner.samples_per_pixel > 1:
        shape += (runner.samples_per_pixel,)
    array = np.frombuffer(src, dtype=f"={kind}{bits // 8}").reshape(shape)
    encoded = imagecodecs.jpeg2k_encode(
        array,
        level=0,
        codecformat="J2K",
        bitspersample=runner.bits_stored,
        resolutions=_J2K_RESOLUTIONS,
        reversible=True,
        # pydicom asks pylibjpeg-openjpeg for no multi-component transform on RGB, and the
        # transform applies to nothing else: the photometric interpretation stays true.
        mct=False,
        numthreads=1,
    )
    return bytes(encoded)
