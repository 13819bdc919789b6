"""Unit tests for dicom_core.domain.codecs, the imagecodecs plugin of pydicom.

The plugin is preferred only where it gives what pylibjpeg gave: every test here compares
the two on the same frame, through pydicom, and the encoder's codestreams byte for byte.
"""

from __future__ import annotations

import logging
import re
import warnings
from typing import Any

import imagecodecs
import numpy as np
import pytest
from pydicom import dcmread, uid
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.encoders.base import get_encoder

from dicom_core.domain import codecs, pixels
from dicom_core.domain.pixels import DecodedFrame, PixelFormat, decode_frame

OLD = "pylibjpeg"


def first_frame(name: str) -> tuple[bytes, str, PixelFormat]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = dcmread(get_testdata_file(name))
    fmt = PixelFormat.from_dataset(ds)
    assert fmt is not None
    frame = next(generate_frames(ds.PixelData, number_of_frames=fmt.number_of_frames))
    return frame, str(ds.file_meta.TransferSyntaxUID), fmt


def decode_with(plugin: str, frame: bytes, syntax: str, fmt: PixelFormat, as_rgb: bool) -> Any:
    options = {**fmt.decoder_options(), "as_rgb": as_rgb, "decoding_plugin": plugin}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return get_decoder(syntax).as_array(encapsulate([frame]), index=0, **options)


def ct_frame(rows: int = 512, columns: int = 512) -> np.ndarray:
    """A 12-bit CT-like frame: a disc of soft tissue over air, with noise."""
    y, x = np.ogrid[:rows, :columns]
    body = ((y - rows / 2) / (rows * 0.4)) ** 2 + ((x - columns / 2) / (columns * 0.45)) ** 2
    image = np.where(body <= 1.0, 1064, 24).astype(np.uint16)
    noise = np.random.default_rng(7).integers(0, 40, (rows, columns), dtype=np.uint16)
    return image + noise


def test_plugin_is_preferred_where_it_decodes_as_before_and_a_fallback_for_jpeg_dct() -> None:
    for syntax in (uid.JPEGLosslessSV1, uid.JPEGLossless, uid.JPEGLSLossless, uid.JPEG2000):
        assert codecs.PLUGIN in get_decoder(syntax).available_plugins
        assert codecs.preferred_decoder(syntax) == codecs.PLUGIN
    frame = {"rows": 512, "columns": 512, "bits_stored": 16}
    assert codecs.preferred_encoder(uid.JPEG2000Lossless, **frame) == codecs.PLUGIN
    assert codecs.preferred_encoder(uid.JPEG2000, **frame) == ""
    for syntax in (uid.JPEGBaseline8Bit, uid.JPEGExtended12Bit):
        # Last in pydicom's order (the order plugins were added in, which available_plugins
        # sorts away): tried only when every other plugin refused the frame.
        assert list(get_decoder(syntax)._available)[-1] == codecs.PLUGIN
        assert codecs.preferred_decoder(syntax) == ""
    assert codecs.PLUGIN not in get_decoder(uid.RLELossless).available_plugins
    assert codecs.preferred_decoder(uid.RLELossless) == ""


def test_a_12_bit_extended_frame_the_other_plugins_refuse_is_decoded_by_the_fallback() -> None:
    """The OHIF probe's render of pydicom's JPEG-lossy.dcm was a 406: pylibjpeg-libjpeg calls
    its scan misplaced and Pillow has no 12-bit JPEG, while libjpeg-turbo (and OHIF) read it."""
    frame, syntax, fmt = first_frame("JPEG-lossy.dcm")
    assert syntax == uid.JPEGExtended12Bit
    with pytest.raises(Exception, match="misplaced marker"):
        decode_with(OLD, frame, syntax, fmt, as_rgb=False)
    decoded = decode_frame(frame, syntax, fmt, as_rgb=True)
    np.testing.assert_array_equal(decoded.array, imagecodecs.jpeg8_decode(frame))
    assert decoded.array.shape == (fmt.rows, fmt.columns)


def test_register_twice_changes_nothing() -> None:
    before = get_decoder(uid.JPEGLosslessSV1).available_plugins
    codecs.register()
    assert get_decoder(uid.JPEGLosslessSV1).available_plugins == before


@pytest.mark.parametrize(
    "name",
    [
        "JPEG-LL.dcm",  # SV1, 16-bit signed
        "JPGLosslessP14SV1_1s_1f_8b.dcm",  # SV1, 8-bit
        "SC_rgb_jpeg_gdcm.dcm",  # SV1, RGB
        "bad_sequence.dcm",  # SV1, 512 x 512 CT, 12 bits stored
        "MR_small_jpeg_ls_lossless.dcm",
        "emri_small_jpeg_ls_lossless.dcm",
        "SC_rgb_jls_lossy_line.dcm",
        "SC_rgb_jls_lossy_sample.dcm",
        "JPEGLSNearLossless_16.dcm",
        "693_J2KR.dcm",
        "693_J2KI.dcm",
        "US1_J2KR.dcm",  # YBR_RCT
        "US1_J2KI.dcm",  # YBR_ICT
        "J2K_pixelrep_mismatch.dcm",
        "GDCMJ2K_TextGBR.dcm",
        "MR2_J2KI.dcm",
    ],
)
@pytest.mark.parametrize("as_rgb", [True, False])
def test_decoding_equals_pylibjpeg(name: str, as_rgb: bool) -> None:
    frame, syntax, fmt = first_frame(name)
    old, old_meta = decode_with(OLD, frame, syntax, fmt, as_rgb)
    new, new_meta = decode_with(codecs.PLUGIN, frame, syntax, fmt, as_rgb)
    assert new.dtype == old.dtype
    assert np.array_equal(new, old)
    assert new_meta == old_meta


@pytest.mark.parametrize("predictor", range(1, 8))
def test_lossless_jpeg_of_every_predictor_equals_pylibjpeg(predictor: int) -> None:
    image = ct_frame(256, 320)
    data = imagecodecs.jpeg8_encode(image, lossless=True, predictor=predictor, bitspersample=12)
    fmt = PixelFormat(
        rows=256,
        columns=320,
        samples_per_pixel=1,
        bits_allocated=16,
        bits_stored=12,
        pixel_representation=0,
        photometric_interpretation="MONOCHROME2",
    )
    syntax = uid.JPEGLosslessSV1 if predictor == 1 else uid.JPEGLossless
    old, _ = decode_with(OLD, bytes(data), syntax, fmt, True)
    new, _ = decode_with(codecs.PLUGIN, bytes(data), syntax, fmt, True)
    assert np.array_equal(new, old)
    assert np.array_equal(new, image)


def without_version(codestream: bytes) -> bytes:
    """The codestream with its "Created by OpenJPEG version x.y.z" comment made neutral."""
    return re.sub(rb"OpenJPEG version [0-9.]+", b"OpenJPEG version x", codestream)


@pytest.mark.parametrize(
    ("array", "photometric", "bits_stored"),
    [
        (ct_frame(), "MONOCHROME2", 12),
        (ct_frame(300, 512).astype(np.int16) - 1024, "MONOCHROME2", 16),
        (np.dstack([ct_frame(256, 384).astype(np.uint8)] * 3), "RGB", 8),
    ],
    ids=["ct-12bit", "signed-16bit", "rgb-8bit"],
)
def test_encoding_equals_pylibjpeg_but_for_the_version_comment(
    array: np.ndarray, photometric: str, bits_stored: int
) -> None:
    options: dict[str, Any] = {
        "rows": array.shape[0],
        "columns": array.shape[1],
        "samples_per_pixel": 1 if array.ndim == 2 else 3,
        "bits_allocated": array.dtype.itemsize * 8,
        "bits_stored": bits_stored,
        "pixel_representation": int(array.dtype.kind == "i"),
        "photometric_interpretation": photometric,
        "number_of_frames": 1,
    }
    if array.ndim == 3:
        options["planar_configuration"] = 0
    encoder = get_encoder(uid.JPEG2000Lossless)
    old = encoder.encode(array, encoding_plugin=OLD, **options)
    new = encoder.encode(array, encoding_plugin=codecs.PLUGIN, **options)
    assert without_version(new) == without_version(old)


@pytest.mark.parametrize(
    ("rows", "columns", "bits_stored"), [(255, 512, 16), (512, 200, 8), (512, 512, 32)]
)
def test_frames_imagecodecs_would_encode_otherwise_are_not_given_to_it(
    rows: int, columns: int, bits_stored: int
) -> None:
    frame = {"rows": rows, "columns": columns, "bits_stored": bits_stored}
    assert codecs.preferred_encoder(uid.JPEG2000Lossless, **frame) == ""


def test_small_frames_are_encoded_as_before(caplog: pytest.LogCaptureFixture) -> None:
    """imagecodecs would use fewer resolutions under 256 pixels: pylibjpeg encodes those,
    without a refusal first (pydicom would log it as an error)."""
    image = ct_frame(128, 600)
    fmt = PixelFormat(
        rows=128,
        columns=600,
        samples_per_pixel=1,
        bits_allocated=16,
        bits_stored=12,
        pixel_representation=0,
        photometric_interpretation="MONOCHROME2",
    )
    options = {**fmt.decoder_options()}
    old = get_encoder(uid.JPEG2000Lossless).encode(image, encoding_plugin=OLD, **options)
    caplog.clear()
    encoded = pixels.encode_jpeg2000_lossless(DecodedFrame(array=image, format=fmt))
    assert encoded.data == old
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


def test_a_frame_the_preferred_plugin_refuses_goes_to_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    frame, syntax, fmt = first_frame("JPEG-LL.dcm")
    expected, _ = decode_with(OLD, frame, syntax, fmt, True)
    # A plugin that is not registered for this syntax refuses every frame.
    monkeypatch.setattr(codecs, "preferred_decoder", lambda _syntax: "pillow")
    decoded = decode_frame(frame, syntax, fmt)
    assert np.array_equal(decoded.array, expected)
