"""Unit tests for dicom_core.domain.pixels and dicom_core.domain.transcode.

Frames are decoded from their own bytes (one frame, never the file) and must equal what
pydicom decodes from the whole file; re-encoded frames and headers must make valid files.
"""

from __future__ import annotations

import io
import struct
import warnings

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames, parse_basic_offsets
from pydicom.pixels import pixel_array
from pydicom.uid import RLELossless

from dicom_core.domain import pixels
from dicom_core.domain.pixels import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    DecodedFrame,
    PixelDataError,
    PixelFormat,
    decode_frame,
    encode_jpeg2000_lossless,
    native_bytes,
    transcode_frame,
)
from dicom_core.domain.transcode import (
    SEQUENCE_DELIMITER,
    encapsulated_pixel_data,
    encapsulated_pixel_data_header,
    fragment_item,
    header_bytes,
    native_pixel_data_header,
    parse_header,
    pixel_vr_before,
    transcode_whole_file,
)
from dicom_core.domain.validation.messages import brief
from tests.support.factories import make_dataset


def load(name: str) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dcmread(get_testdata_file(name))


def frame_bytes(ds: Dataset, index: int) -> bytes:
    fmt = PixelFormat.from_dataset(ds)
    assert fmt is not None
    if ds.file_meta.TransferSyntaxUID.is_encapsulated:
        return list(generate_frames(ds.PixelData, number_of_frames=fmt.number_of_frames))[index]
    size = fmt.native_frame_length
    return ds.PixelData[index * size : (index + 1) * size]


def expected(ds: Dataset, index: int) -> np.ndarray:
    """Frame ``index`` as pydicom's ``pixel_array`` gives it (its default options)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pixel_array(ds, index=index)


SAMPLES = [
    ("CT_small.dcm", 0),
    ("MR_small_bigendian.dcm", 0),
    ("OBXXXX1A_expb_2frame.dcm", 1),
    ("SC_rgb_expb_16bit_2frame.dcm", 1),
    ("SC_rgb_jpeg_dcmtk.dcm", 0),
    ("color3d_jpeg_baseline.dcm", 77),
    ("JPEG-LL.dcm", 0),
    ("SC_rgb_jpeg_gdcm.dcm", 0),
    ("emri_small_jpeg_2k_lossless.dcm", 9),
    ("US1_J2KR.dcm", 0),
    ("US1_J2KI.dcm", 0),
    ("RG3_J2KI.dcm", 0),
    ("SC_rgb_rle_2frame.dcm", 1),
    ("rtdose_rle.dcm", 14),
    ("emri_small_jpeg_ls_lossless.dcm", 3),
    ("liver.dcm", 2),
]


@pytest.mark.parametrize(("name", "index"), SAMPLES)
def test_decode_frame_equals_pydicom_whole_file_decoding(name: str, index: int) -> None:
    ds = load(name)
    fmt = PixelFormat.from_dataset(ds, pixel_vr=ds["PixelData"].VR)
    assert fmt is not None
    decoded = decode_frame(frame_bytes(ds, index), ds.file_meta.TransferSyntaxUID, fmt)
    np.testing.assert_array_equal(decoded.array, expected(ds, index))


@pytest.mark.parametrize(
    ("name", "photometric"),
    [("SC_rgb_jpeg_dcmtk.dcm", "RGB"), ("US1_J2KR.dcm", "RGB"),
     ("color3d_jpeg_baseline.dcm", "RGB"), ("OBXXXX1A_expb_2frame.dcm", "PALETTE COLOR"),
     ("RG3_J2KI.dcm", "MONOCHROME1")],
)  # fmt: skip
def test_decoded_format_names_the_resulting_colour_space(name: str, photometric: str) -> None:
    ds = load(name)
    fmt = PixelFormat.from_dataset(ds, pixel_vr=ds["PixelData"].VR)
    assert fmt is not None
    decoded = decode_frame(frame_bytes(ds, 0), ds.file_meta.TransferSyntaxUID, fmt)
    assert decoded.format.photometric_interpretation == photometric
    assert decoded.format.planar_configuration == 0


def test_native_sources_keep_their_colour_space() -> None:
    ds = load("SC_ybr_full_uncompressed.dcm")
    fmt = PixelFormat.from_dataset(ds)
    assert fmt is not None
    decoded = decode_frame(frame_bytes(ds, 0), "1.2.840.10008.1.2.1", fmt)
    assert decoded.format.photometric_interpretation == "YBR_FULL"
    assert native_bytes(decoded) == ds.PixelData


# rtdose is 32-bit (beyond JPEG 2000 here), liver 1-bit.
@pytest.mark.parametrize(
    ("name", "index"), [s for s in SAMPLES if s[0] not in {"rtdose_rle.dcm", "liver.dcm"}]
)
def test_transcode_frame_to_jpeg2000_round_trips(name: str, index: int) -> None:
    ds = load(name)
    fmt = PixelFormat.from_dataset(ds, pixel_vr=ds["PixelData"].VR)
    assert fmt is not None
    source = ds.file_meta.TransferSyntaxUID
    encoded = transcode_frame(frame_bytes(ds, index), source, pixels.JPEG_2000_LOSSLESS, fmt)
    assert encoded.data[:4] == b"\xff\x4f\xff\x51"
    back = decode_frame(encoded.data, pixels.JPEG_2000_LOSSLESS, encoded.format)
    np.testing.assert_array_equal(back.array, expected(ds, index))


def test_transcode_frame_to_explicit_le_is_little_endian_bytes() -> None:
    ds = load("MR_small_bigendian.dcm")
    fmt = PixelFormat.from_dataset(ds)
    assert fmt is not None
    encoded = transcode_frame(ds.PixelData, "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1", fmt)
    assert encoded.data == load("MR_small.dcm").PixelData


@pytest.mark.parametrize(
    ("shape", "dtype", "photometric", "bits_stored"),
    [((3, 3, 3), np.uint8, "RGB", 8), ((16, 16), np.uint16, "MONOCHROME2", 12),
     ((8, 31), np.uint8, "MONOCHROME2", 8), ((1, 1), np.uint16, "MONOCHROME2", 16)],
)  # fmt: skip
def test_small_images_encode_as_jpeg2000(
    shape: tuple[int, ...], dtype: type, photometric: str, bits_stored: int
) -> None:
    rng = np.random.default_rng(1)
    array = rng.integers(0, 1 << bits_stored, size=shape).astype(dtype)
    fmt = PixelFormat(
        rows=shape[0],
        columns=shape[1],
        samples_per_pixel=3 if len(shape) == 3 else 1,
        bits_allocated=np.dtype(dtype).itemsize * 8,
        bits_stored=bits_stored,
        pixel_representation=0,
        photometric_interpretation=photometric,
    )
    encoded = encode_jpeg2000_lossless(DecodedFrame(array=array, format=fmt))
    back = decode_frame(encoded.data, pixels.JPEG_2000_LOSSLESS, encoded.format)
    np.testing.assert_array_equal(back.array, array)


def test_values_beyond_bits_stored_widen_instead_of_losing_bits() -> None:
    array = np.array([[0, 4095], [8191, 65535]] * 32, dtype=np.uint16).reshape(64, 2)
    array = np.tile(array, (1, 32))
    fmt = PixelFormat(64, 64, 1, 16, 12, 0, "MONOCHROME2")
    encoded = encode_jpeg2000_lossless(DecodedFrame(array=array, format=fmt))
    assert encoded.format.bits_stored == 16
    back = decode_frame(encoded.data, pixels.JPEG_2000_LOSSLESS, encoded.format)
    np.testing.assert_array_equal(back.array, array)


def test_float_pixels_cannot_become_jpeg2000() -> None:
    fmt = PixelFormat(64, 64, 1, 32, 32, 0, "MONOCHROME2")
    frame = DecodedFrame(array=np.zeros((64, 64), dtype=np.float32), format=fmt)
    with pytest.raises(PixelDataError, match="JPEG 2000"):
        encode_jpeg2000_lossless(frame)


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.201", "1.2.3"])
def test_unknown_or_undecodable_syntaxes_are_refused(syntax: str) -> None:
    assert not pixels.can_decode(syntax)
    fmt = PixelFormat(2, 2, 1, 8, 8, 0, "MONOCHROME2")
    with pytest.raises(PixelDataError, match=syntax):
        decode_frame(b"\x00" * 4, syntax, fmt)


def test_corrupt_frames_raise_pixel_data_error() -> None:
    fmt = PixelFormat(64, 64, 1, 16, 16, 0, "MONOCHROME2")
    with pytest.raises(PixelDataError, match="SIZ segment is truncated"):
        decode_frame(b"\xff\x4f\xff\x51garbage", pixels.JPEG_2000_LOSSLESS, fmt)
    ds = load("MR_small_jp2klossless.dcm")
    whole = frame_bytes(ds, 0)
    broken = whole[: len(whole) // 2]  # a sound SIZ, then the data breaks off
    with pytest.raises(PixelDataError, match="decoded"):
        decode_frame(broken, pixels.JPEG_2000_LOSSLESS, PixelFormat.from_dataset(ds) or fmt)


def test_pixel_format_from_dicom_json() -> None:
    instance = {
        "00280002": {"vr": "US", "Value": [3]},
        "00280004": {"vr": "CS", "Value": ["YBR_FULL_422"]},
        "00280006": {"vr": "US", "Value": [0]},
        "00280008": {"vr": "IS", "Value": [30]},
        "00280010": {"vr": "US", "Value": [240]},
        "00280011": {"vr": "US", "Value": [320]},
        "00280100": {"vr": "US", "Value": [8]},
        "00280101": {"vr": "US", "Value": [8]},
        "00280103": {"vr": "US", "Value": [0]},
    }
    fmt = PixelFormat.from_dicom_json(instance)
    assert fmt == PixelFormat(240, 320, 3, 8, 8, 0, "YBR_FULL_422", 0, 30)
    assert fmt.native_frame_length == 240 * 320 * 3
    assert PixelFormat.from_dicom_json({"00100010": {"vr": "PN"}}) is None


# --- file assembly -------------------------------------------------------------------------


def test_encapsulated_pixel_data_has_a_basic_offset_table() -> None:
    frames = [b"\x01" * 10, b"\x02" * 7, b"\x03" * 4]
    element = encapsulated_pixel_data(frames)
    assert element[:12] == struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, 0xFFFFFFFF)
    assert element.endswith(SEQUENCE_DELIMITER)
    value = element[12:]
    assert parse_basic_offsets(value) == [0, 18, 34]
    assert list(generate_frames(value, number_of_frames=3)) == [
        frames[0],
        frames[1] + b"\x00",
        frames[2],
    ]


def test_fragment_items_are_even_and_headers_match_lengths() -> None:
    assert fragment_item(b"abc") == b"\xfe\xff\x00\xe0\x04\x00\x00\x00abc\x00"
    assert encapsulated_pixel_data_header([4])[-8:] == b"\x04\x00\x00\x00\x00\x00\x00\x00"
    assert native_pixel_data_header(5, 8) == struct.pack("<HH2sHI", 0x7FE0, 0x10, b"OB", 0, 6)
    assert native_pixel_data_header(8, 16)[4:6] == b"OW"


def _prefix(name: str) -> tuple[bytes, Dataset]:
    with open(get_testdata_file(name), "rb") as handle:
        data = handle.read()
    ds = load(name)
    marker = b"\xe0\x7f\x10\x00" if ds.is_little_endian else b"\x7f\xe0\x00\x10"
    start = data.rindex(marker)
    return data[: start + 12], ds


def test_header_bytes_rewrite_a_big_endian_header_as_explicit_le() -> None:
    prefix, original = _prefix("OBXXXX1A_expb.dcm")
    assert pixel_vr_before(prefix, len(prefix)) == "OW"
    header = parse_header(prefix)
    fmt = PixelFormat.from_dataset(header, pixel_vr="OW")
    assert fmt is not None
    # 8-bit samples in a Big Endian OW value come byte-swapped in pairs: decode, not copy.
    frame = native_bytes(decode_frame(original.PixelData, "1.2.840.10008.1.2.2", fmt))
    assert frame != original.PixelData
    pixel = native_pixel_data_header(len(frame), 8) + frame
    out = header_bytes(
        header,
        source_syntax="1.2.840.10008.1.2.2",
        target_syntax="1.2.840.10008.1.2.1",
        fmt=fmt,
    )
    ds = dcmread(io.BytesIO(out + pixel))
    little = load("OBXXXX1A.dcm")
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert ds.RedPaletteColorLookupTableData == little.RedPaletteColorLookupTableData
    assert ds.SOPInstanceUID == original.SOPInstanceUID
    np.testing.assert_array_equal(ds.pixel_array, little.pixel_array)


def test_header_bytes_describe_the_new_pixels() -> None:
    prefix, original = _prefix("color3d_jpeg_baseline.dcm")
    header = parse_header(prefix)
    header.ExtendedOffsetTable = b"\x00" * 8
    fmt = PixelFormat(480, 640, 3, 8, 8, 0, "RGB", number_of_frames=120)
    out = dcmread(
        io.BytesIO(
            header_bytes(
                header,
                source_syntax="1.2.840.10008.1.2.4.50",
                target_syntax="1.2.840.10008.1.2.4.90",
                fmt=fmt,
            )
        )
    )
    assert out.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.90"
    assert out.PhotometricInterpretation == "RGB"
    assert out.PlanarConfiguration == 0
    assert out.LossyImageCompression == "01"
    assert "ExtendedOffsetTable" not in out
    assert out.file_meta.MediaStorageSOPInstanceUID == original.SOPInstanceUID


def test_transcode_whole_file_without_pixel_data_changes_only_the_encoding() -> None:
    with open(get_testdata_file("test-SR.dcm"), "rb") as handle:
        data = handle.read()
    out = dcmread(
        io.BytesIO(transcode_whole_file(data, "1.2.840.10008.1.2.4.90", max_decoded_bytes=1 << 30))
    )
    assert out.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.90"
    assert out.ContentSequence == load("test-SR.dcm").ContentSequence


def test_transcode_whole_file_decodes_unmapped_pixel_data() -> None:
    with open(get_testdata_file("SC_ybr_full_422_uncompressed.dcm"), "rb") as handle:
        data = handle.read()
    out = dcmread(
        io.BytesIO(transcode_whole_file(data, "1.2.840.10008.1.2.4.90", max_decoded_bytes=1 << 30))
    )
    assert out.PhotometricInterpretation == "YBR_FULL"
    np.testing.assert_array_equal(
        out.pixel_array, load("SC_ybr_full_422_uncompressed.dcm").pixel_array
    )


def test_transcode_to_an_unsupported_target_is_refused() -> None:
    with pytest.raises(PixelDataError, match="not supported"):
        transcode_whole_file(b"", "1.2.840.10008.1.2.4.50", max_decoded_bytes=1 << 30)


def test_a_library_error_reaches_the_message_as_one_line_without_its_traceback() -> None:
    """A fuzzing probe's RLE file (two frames declared, one fragment, a stray sequence
    delimiter after Pixel Data) answered 406 with pydicom's whole traceback in the message,
    the server's file paths in it: pydicom's error text embeds one."""

    def item(data: bytes) -> bytes:
        return struct.pack("<HHI", 0xFFFE, 0xE000, len(data)) + data

    source = make_dataset(rows=8, columns=8)
    source.compress(
        RLELossless,
        (np.arange(64, dtype=np.uint16) % 4096).reshape(8, 8),
        encoding_plugin="pydicom",
    )
    [fragment, *_] = generate_frames(source.PixelData)
    ds = make_dataset(rows=8, columns=8)
    ds.NumberOfFrames = 2
    ds.file_meta.TransferSyntaxUID = RLELossless
    ds.PixelData = item(b"") + item(fragment) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    with pytest.raises(PixelDataError) as raised:
        transcode_whole_file(
            buffer.getvalue(), EXPLICIT_VR_LITTLE_ENDIAN, max_decoded_bytes=1 << 30
        )
    message = str(raised.value)
    assert "Traceback" not in message and "\n" not in message, message
    assert message.startswith("the file could not be re-encoded: "), message
    assert len(message) < 300


def test_brief_keeps_the_first_line_and_cuts_long_ones() -> None:
    assert brief(ValueError("first line\nTraceback (most recent call last):\n  File x")) == (
        "first line"
    )
    assert brief(ValueError("")) == "ValueError"
    assert brief(ValueError("x" * 500)) == "x" * 200 + "..."
